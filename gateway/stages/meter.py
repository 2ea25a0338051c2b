"""Meter: exactly one ledger row per request, durable before the client sees the end.

Runs last, whatever the earlier stages did. For a whole answer: the row is committed, then the
answer is written. For a stream (already under way): the row is committed, then the stream ends
with ``data: [DONE]`` if the upstream finished it, or is broken off (an error event and no
terminating chunk) if the upstream broke off; a client that left gets nothing more. If the
ledger cannot commit, an answer not yet started becomes 503 ``ledger_unavailable``: nothing is
served that is not metered.
"""

from __future__ import annotations

import asyncio
import time

from gateway.context import STREAM_BROKEN, STREAM_DONE, STREAM_GONE, ChatContext, Meter
from gateway.errors import error_body
from gateway.ledger import Ledger
from gateway.metering import Credits
from gateway.metrics import Metrics

_JSON = ("content-type", "application/json")


class MeterStage:
    def __init__(self, ledger: Ledger, metrics: Metrics, credits: Credits) -> None:
        self.ledger = ledger
        self.metrics = metrics
        self.credits = credits

    def finish(self, ctx: ChatContext, committed: asyncio.Future[None]) -> None:
        """Once ``committed`` (the row's future, from :meth:`submit`) is done: the answer, or the
        stream's end. (The pipeline awaits the future itself: a coroutine less to resume.)"""
        writer = ctx.writer
        failed = committed.exception()
        if failed is not None:  # LedgerError: nothing is served that is not metered
            if not writer.started:
                writer.send(503, [_JSON, ("x-request-id", ctx.meter.request_id)],
                            error_body(f"metering unavailable: {failed}", type_="server_error",
                                       code="ledger_unavailable"))
            else:
                writer.abort()
            return
        end = ctx.stream_end
        if end == STREAM_DONE:
            writer.end(ctx.stream_last)
        elif end == STREAM_BROKEN:
            writer.abort(_error_event(ctx))
        elif end == STREAM_GONE:
            writer.abort()
        else:
            answer = ctx.answer
            if answer is not None:
                writer.send(answer.status, answer.headers, answer.body)

    def submit(self, ctx: ChatContext) -> asyncio.Future[None]:
        """Bill the request and queue its row; the future completes once the row is durable
        (LedgerError if the ledger refused it)."""
        meter = ctx.meter
        total = time.perf_counter() - ctx.req.started
        self.bill(meter)
        self.metrics.record(meter, total)
        return self.ledger.submit(meter.row(total * 1000))

    def bill(self, meter: Meter) -> None:
        """Revenue and free-token credit of the request's tokens (the ledger contract)."""
        target = meter.target
        if target is None:
            return
        (meter.free_tokens_in, meter.free_tokens_out, meter.revenue_usd, meter.credit_opened,
         meter.credit_left) = self.credits.bill(org=meter.org, provider=target.provider,
                                                model=target.model, path=meter.path, at=meter.at,
                                                tokens_in=meter.tokens_in,
                                                tokens_out=meter.tokens_out)


def _error_event(ctx: ChatContext) -> bytes:
    """The SSE event the openai SDK raises APIError on, naming why the stream broke off."""
    message = f"upstream {ctx.meter.provider} broke off the stream: {ctx.meter.error}"
    return b"data: " + error_body(message, type_="server_error", code=ctx.meter.error) + b"\n\n"
