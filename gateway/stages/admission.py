"""Admission: at most ``max_inflight`` chat requests in progress; beyond it, 503 at once."""

from __future__ import annotations

from gateway.context import ChatContext
from gateway.errors import Overloaded
from gateway.metrics import Metrics


class Admission:
    """Counts requests in progress; the slot is released when the request is over."""

    def __init__(self, limit: int, metrics: Metrics) -> None:
        self.limit = limit
        self.metrics = metrics
        self.inflight = 0

    def __call__(self, ctx: ChatContext) -> None:
        if self.inflight >= self.limit:
            self.metrics.reject("overloaded")
            raise Overloaded("The server is overloaded; please retry shortly.",
                             headers=[("retry-after", "1")])
        self.inflight += 1
        ctx.cleanups.append(self._release)

    def _release(self) -> None:
        self.inflight -= 1
