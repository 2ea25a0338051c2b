"""Running the chat stages over one request context; the meter stage always runs last.

The order of the stages is not decided here but in ``Gateway.chat_stages`` (the one place
they are assembled); this module only runs them and turns what they raise into answers:
a ``ClientError`` is the client's 4xx, anything else an internal error (500, still with its
``x-request-id`` and its ledger row). Cleanups (admission slot, per-key counts) run at the end.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from gateway.context import STREAM_BROKEN, ChatContext
from gateway.errors import ClientError, LedgerError, error_body
from gateway.stages import Stage
from gateway.stages.meter import MeterStage

log = logging.getLogger("regionblock.gateway")


async def run_stages(stages: Sequence[Stage], meter: MeterStage, ctx: ChatContext) -> None:
    """``stages`` in order, then the meter stage, whatever they did: its row, once durable, then
    the answer."""
    try:
        try:
            for stage in stages:
                pending = stage(ctx)
                if pending is not None:
                    await pending
                if ctx.answer is not None or ctx.stream_end:
                    break
        except ClientError as exc:
            ctx.refuse(exc.status, exc.body(), error=exc.code or f"http_{exc.status}",
                       headers=exc.headers)
        except Exception:  # a bug: answered (and metered) as one, never a hang or a traceback
            log.exception("internal error in the chat pipeline (%s)", ctx.meter.request_id)
            if ctx.writer.started:
                ctx.meter.decision, ctx.meter.error = "failed", "internal_error"
                ctx.stream_end = STREAM_BROKEN
            else:
                ctx.refuse(500, error_body("internal error", type_="server_error",
                                           code="internal_error"), error="internal_error")
        committed = meter.submit(ctx)
        # A refused row is answered by the meter stage (nothing unmetered is served). Not
        # contextlib.suppress: a context manager per request costs more than a try.
        try:  # noqa: SIM105
            await committed
        except LedgerError:
            pass
        meter.finish(ctx, committed)
    finally:
        for cleanup in ctx.cleanups:
            cleanup()
