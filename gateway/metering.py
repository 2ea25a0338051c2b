"""Metering: exact token usage from the upstream's answer, revenue and free-token credits.

Money follows the ledger contract (:mod:`scenarios.ledger`): revenue at the served model's list
price net of free tokens, credits opened and drawn exactly as the simulator does. ``Credits`` holds
the balance of every open (org, provider) credit in memory, loaded from the ledger's ``credits``
table at start (so it survives a restart); each request is billed when its ledger row is made,
on the event loop, so concurrent requests of one organisation draw on the credit one at a time.

Non-streamed answers carry ``usage`` in their JSON body. Streamed answers carry it in a final
chunk when ``stream_options.include_usage`` is set — the gateway always sets it upstream and, if
the client did not ask for it, removes that chunk from the client's stream. ``SseMeter`` reads
the event stream as it passes: it finds the usage chunk, holds back ``data: [DONE]`` (so the
ledger row is durable before the client sees the end), and notes the time of the first event.
If an upstream sends no usage at all, output tokens are counted from the content chunks and the
row's ``error`` says ``usage_missing`` — never a silent zero.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from scenarios import ledger
from scenarios.schema import Model, Provider

_DONE = b"data: [DONE]"
DONE_EVENT = _DONE + b"\n\n"
_USAGE = b'"usage"'
_NULL_USAGE = (b'"usage":null', b'"usage": null')
#: ``"usage": {"prompt_tokens": N, "completion_tokens": M`` then the next member or the end: the
#: counts as JSON integers (no leading zero, sign, fraction or exponent), whitespace as JSON allows.
_WS = rb"[ \t\n\r]*"
_INT = rb"(0|[1-9][0-9]*)"
_USAGE_COUNTS = re.compile(rb'"usage"' + _WS + rb":" + _WS + rb"\{" + _WS + rb'"prompt_tokens"' + _WS
                           + rb":" + _WS + _INT + _WS + rb"," + _WS + rb'"completion_tokens"' + _WS
                           + rb":" + _WS + _INT + _WS + rb"[,}]")


class Bill(NamedTuple):
    """The money of one request, as its ledger row records it."""

    free_in: int
    free_out: int
    revenue_usd: float
    credit_opened: int        # tokens granted by this request (0: none)
    credit_left: int | None   # the (org, provider) credit after it (None: no credit)


class Credits:
    """Free-token credits per (org, provider), drawn in the order requests are billed."""

    def __init__(self, balances: dict[tuple[str, str], int],
                 scales: Mapping[str, float] | None = None) -> None:
        self._balances = balances
        self._scales = scales or {}  # org → credit scale (a load test's sampled users)

    def balance(self, org: str, provider: str) -> int | None:
        return self._balances.get((org, provider))

    def bill(self, *, org: str, provider: Provider, model: Model, path: str, at: dt.datetime,
             tokens_in: int, tokens_out: int) -> Bill:
        """Open the credit on the organisation's first request while the offer is on, draw on it
        for the tokens, and price the rest (the ledger contract's grant, draw and revenue)."""
        if not (org and ledger.draws_credit(provider, path)):  # most requests: no credit
            return Bill(0, 0, ledger.revenue_usd(model.price_in, model.price_out, tokens_in,
                                                 tokens_out), 0, None)
        key = (org, provider.name)
        left = self._balances.get(key)
        opened = 0
        if left is None:
            opened = ledger.grants_credit(provider, at, self._scales.get(org, 1.0))
            if opened == 0:
                return Bill(0, 0, ledger.revenue_usd(model.price_in, model.price_out, tokens_in,
                                                     tokens_out), 0, None)
            left = opened
        free_in, free_out = ledger.credit_draw(tokens_in, tokens_out, left)
        left -= free_in + free_out
        self._balances[key] = left
        revenue = ledger.revenue_usd(model.price_in, model.price_out, tokens_in, tokens_out,
                                     free_in, free_out)
        return Bill(free_in, free_out, revenue, opened, left)


def usage_from(obj: Any) -> tuple[int, int] | None:
    """(prompt_tokens, completion_tokens) of an OpenAI ``usage`` object, if well-formed."""
    usage = obj.get("usage") if isinstance(obj, dict) else None
    if not isinstance(usage, dict):
        return None
    tin, tout = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if isinstance(tin, int) and isinstance(tout, int) and tin >= 0 and tout >= 0:
        return tin, tout
    return None


def usage_of_body(body: bytes) -> tuple[int, int] | None:
    """The usage of a whole chat.completion body. Only the ``usage`` object is read when it can
    be found on its own (near the end), which is cheaper than decoding the whole body: read
    directly when it starts with the two counts (as OpenAI writes it), else decoded alone."""
    at = body.rfind(_USAGE)
    if at >= 0:
        counts = _USAGE_COUNTS.match(body, at)
        if counts is not None:
            return int(counts[1]), int(counts[2])
        start = body.find(b"{", at)
        end = body.find(b"}", start)
        if 0 <= start < end and start - at < 16:
            try:
                return usage_from({"usage": json.loads(body[start:end + 1])})
            except ValueError:
                pass
    try:
        return usage_from(json.loads(body))
    except (ValueError, RecursionError):
        return None


@dataclass(slots=True)
class SseMeter:
    """Passes server-sent events through, watching for usage and the end of the stream."""

    keep_usage_chunk: bool
    usage: tuple[int, int] | None = None
    done: bool = False
    events: int = 0  # data events with choices seen (for the usage_missing fallback)
    final: bytes = DONE_EVENT  # what ends the stream, held back until the row is durable
    _pending: bytes = b""

    def estimate_out(self) -> int:
        """Output tokens when no usage came: the chunks but the role and the finish chunk."""
        return max(1, self.events - 2)

    def feed(self, data: bytes) -> bytes:
        """Bytes to forward to the client now (whole events only; [DONE] is held back)."""
        if self.done:
            return b""
        buf = self._pending + data if self._pending else data
        cut = buf.rfind(b"\n\n")
        if cut < 0:
            self._pending = buf
            return b""
        complete, self._pending = buf[:cut + 2], buf[cut + 2:]
        if _DONE not in complete and _USAGE not in complete:
            self.events += complete.count(b"data:")
            return complete
        return self._slow(complete)

    def _slow(self, complete: bytes) -> bytes:
        out: list[bytes] = []
        for event in complete.split(b"\n\n")[:-1]:
            payload = _data_of(event)
            if payload == b"[DONE]":
                self.done = True
                break
            if payload is not None and _USAGE in payload and not any(n in payload for n in _NULL_USAGE):
                found = _usage_of_chunk(payload)
                if found is not None:
                    self.usage = found
                    if not self.keep_usage_chunk and _has_no_choices(payload):
                        continue
            if payload is not None:
                self.events += 1
            out.append(event + b"\n\n")
        return b"".join(out)


def _data_of(event: bytes) -> bytes | None:
    """The data of an event (one ``data:`` line, as OpenAI sends); None for comments etc."""
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            return line[5:].strip()
    return None


def _usage_of_chunk(payload: bytes) -> tuple[int, int] | None:
    try:
        return usage_from(json.loads(payload))
    except ValueError:
        return None


def _has_no_choices(payload: bytes) -> bool:
    try:
        obj = json.loads(payload)
    except ValueError:
        return False
    return isinstance(obj, dict) and not obj.get("choices")
