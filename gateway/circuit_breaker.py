"""A circuit breaker per upstream: stop calling a provider that keeps failing, probe it later.

closed --(``failures`` consecutive failures)--> open --(``cooldown_s`` later)--> half-open
half-open lets one probe through: success closes the circuit, failure opens it again, and a
probe that ends with neither (its client left, the request was cancelled) is abandoned: the next
request may probe. Time is passed in (``now``), so the breaker is tested without sleeping.
"""

from __future__ import annotations

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATE_VALUE = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


class CircuitBreaker:
    __slots__ = ("_failures", "_opened_at", "_probing", "cooldown_s", "failures", "opened_total")

    def __init__(self, *, failures: int, cooldown_s: float) -> None:
        self.failures = failures
        self.cooldown_s = cooldown_s
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        self.opened_total = 0

    def state(self, now: float) -> str:
        if self._opened_at is None:
            return CLOSED
        return HALF_OPEN if now >= self._opened_at + self.cooldown_s else OPEN

    def allow(self, now: float) -> bool:
        """May a request go to the upstream now? (In half-open state: only one probe at a time.)"""
        if self._opened_at is None:  # closed: the usual case
            return True
        state = self.state(now)
        if state == CLOSED:
            return True
        if state == HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def abandon(self) -> None:
        """A call let through ended without an answer either way (cancelled): if it was the
        half-open probe, the next request may probe — else the circuit would stay open for good."""
        self._probing = False

    def success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def failure(self, now: float) -> None:
        self._failures += 1
        if self._probing or (self._opened_at is None and self._failures >= self.failures):
            if self._opened_at is None or self._probing:
                self.opened_total += 1
            self._opened_at = now
            self._probing = False
