"""One chat request as it goes through the stages: what is known so far, and its ledger record.

Every stage reads and fills in the same ``ChatContext``. A stage that decides the answer (a
refusal, a denial, an upstream failure) sets ``answer``; the pipeline then skips the remaining
stages and the meter stage records the row and writes the answer. A stream is written by the
forward stage as it arrives; the meter stage records the row, then ends the stream.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from gateway.client_address import ClientAddress
from gateway.connection import ResponseWriter
from gateway.http11 import Request
from gateway.identity import Identity
from gateway.metering import DONE_EVENT
from gateway.region import ClientRegion
from gateway.routing import Target
from gateway.runtime import Runtime
from gateway.validation import ChatRequest
from scenarios.ledger import COLUMN_NAMES
from scenarios.policy import Decision

Headers = list[tuple[str, str]]

#: How a streamed answer ended: the upstream finished it, broke off, or the client left.
STREAM_DONE, STREAM_BROKEN, STREAM_GONE = "done", "broken", "gone"


class Meter:
    """The ledger record of one request, filled in as the pipeline learns more: one attribute per
    column of the ledger contract (:data:`scenarios.ledger.COLUMN_NAMES`), plus the scenario
    instant, the target the money is computed from and the endpoint (a metrics label)."""

    __slots__ = (*COLUMN_NAMES, "at", "target", "endpoint")

    def __init__(self, request_id: str, wall_time: float, scenario_time: str,
                 at: dt.datetime) -> None:
        self.request_id = request_id
        self.wall_time = wall_time
        self.scenario_time = scenario_time
        self.at = at
        self.target: Target | None = None
        self.endpoint = "chat"
        self.org = self.home_region = self.country = self.provider = self.model = ""
        self.asn: int | None = None
        self.asn_class = "unknown"
        self.decision = "failed"
        self.stage = self.error = ""
        self.status = 0
        self.tokens_in = self.tokens_out = self.free_tokens_in = self.free_tokens_out = 0
        self.revenue_usd = 0.0
        self.credit_opened = 0
        self.credit_left: int | None = None
        self.upstream_ms: float | None = None
        self.total_ms = 0.0
        self.ttft_ms: float | None = None
        self.path = "direct"
        self.stream = 0

    def row(self, total_ms: float) -> tuple[Any, ...]:
        self.total_ms = total_ms
        return _ROW_OF(self)


def _tuple_of(names: tuple[str, ...]) -> Callable[[Meter], tuple[Any, ...]]:
    """``lambda m: (m.name1, m.name2, ...)`` for ``names``, compiled: each attribute load then
    specialises to a slot read (operator.attrgetter looks every name up generically, about ten
    times the cost for a row's 26 columns)."""
    assert all(name.isidentifier() for name in names)
    namespace: dict[str, Any] = {}
    exec(f"def row_of(m):\n    return ({', '.join(f'm.{name}' for name in names)},)\n", namespace)
    return cast(Callable[[Meter], tuple[Any, ...]], namespace["row_of"])


_ROW_OF = _tuple_of(COLUMN_NAMES)


@dataclass(slots=True)
class Answer:
    """A whole response decided by a stage."""

    status: int
    headers: Headers
    body: bytes


class ChatContext:
    """The request, its runtime and scenario instant, and what the stages found out."""

    __slots__ = (
        "addr",
        "answer",
        "chat",
        "cleanups",
        "decision",
        "meter",
        "now",
        "req",
        "response_headers",
        "rt",
        "stream_end",
        "stream_last",
        "target",
        "where",
        "who",
        "writer",
    )

    def __init__(self, req: Request, writer: ResponseWriter, rt: Runtime, now: dt.datetime,
                 meter: Meter) -> None:
        self.req = req
        self.writer = writer
        self.rt = rt
        self.now = now
        self.meter = meter
        self.who: Identity | None = None
        self.addr: ClientAddress | None = None
        self.where: ClientRegion | None = None
        self.chat: ChatRequest | None = None
        self.target: Target | None = None
        self.decision: Decision | None = None
        self.answer: Answer | None = None
        self.response_headers: Headers = [("x-request-id", meter.request_id)]
        self.stream_end = ""  # "" not streamed; else STREAM_DONE / STREAM_BROKEN / STREAM_GONE
        self.stream_last = DONE_EVENT  # what ends a finished stream, once its row is durable
        self.cleanups: list[Callable[[], None]] = []  # run once the request is over

    def refuse(self, status: int, body: bytes, *, error: str,
               headers: Headers | None = None) -> None:
        """Answer with a refusal (or failure) now: the remaining stages are skipped."""
        meter = self.meter
        meter.status = status
        meter.decision = "failed"
        meter.error = error
        self.answer = Answer(status, [("content-type", "application/json"),
                                      ("x-request-id", meter.request_id), *(headers or [])], body)
