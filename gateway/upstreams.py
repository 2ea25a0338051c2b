"""Calling upstream providers: per-provider connection pool, bounded retries, circuit breaker.

A request is retried (at most ``retries`` times, with a short exponential backoff) when the
upstream fails in a way another attempt may fix: a 5xx answer, a refused or broken connection,
a timeout. Retries only happen before anything was sent to the client (so a stream is retried
only until its head arrives). A region block is never an upstream failure: it is decided in the
gateway and never retried. Each provider's circuit breaker opens after consecutive failures; an
open circuit fails at once (``CircuitOpen``) so failover can act without waiting on timeouts.
"""

from __future__ import annotations

import asyncio

from gateway.circuit_breaker import STATE_VALUE, CircuitBreaker
from gateway.config import UpstreamPolicy, UpstreamUrl
from gateway.errors import CircuitOpen, UpstreamError, UpstreamStatusError
from gateway.metrics import Metrics
from gateway.upstream_client import UpstreamPool, UpstreamResponse

_BACKOFF_S = 0.025


class Upstreams:
    """Every provider's pool and breaker; pools are kept across scenario reloads by URL."""

    def __init__(self, policy: UpstreamPolicy, metrics: Metrics,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.policy = policy
        self.metrics = metrics
        self.loop = loop
        self._targets: dict[str, UpstreamUrl] = {}
        self._pools: dict[UpstreamUrl, UpstreamPool] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        # provider → its pool (by name: a lookup by UpstreamUrl would hash that dataclass)
        self._pool_of: dict[str, UpstreamPool] = {}

    def configure(self, targets: dict[str, UpstreamUrl]) -> None:
        """Set the provider → URL map (at start and on reload)."""
        self._targets = dict(targets)
        for name, url in targets.items():
            if url not in self._pools:
                self._pools[url] = UpstreamPool(name, url, self.policy, self.loop)
            if name not in self._breakers:
                self._breakers[name] = CircuitBreaker(failures=self.policy.breaker_failures,
                                                      cooldown_s=self.policy.breaker_cooldown_s)
        self._pool_of = {name: self._pools[url] for name, url in targets.items()}

    def url(self, provider: str) -> UpstreamUrl:
        return self._targets[provider]

    def health(self) -> dict[str, float]:
        """1 closed, 0.5 half-open, 0 open: for the ``upstream_up`` gauge."""
        now = self.loop.time()
        return {name: 1.0 - STATE_VALUE[b.state(now)] / 2 for name, b in self._breakers.items()}

    def states(self) -> dict[str, str]:
        now = self.loop.time()
        return {name: b.state(now) for name, b in self._breakers.items()}

    async def call(self, provider: str, path: str, body: bytes, *,
                   response_timeout_s: float | None = None) -> UpstreamResponse:
        """POST to the provider with retries; returns any response below 500.

        Raises the last UpstreamError (UpstreamStatusError for a final 5xx) or CircuitOpen.
        """
        pool = self._pool_of[provider]
        breaker = self._breakers[provider]
        last: UpstreamError | None = None
        for attempt in range(self.policy.retries + 1):
            if not breaker.allow(self.loop.time()):
                raise last or CircuitOpen(f"circuit open for {provider}")
            try:
                response = await pool.request(path, body, response_timeout_s=response_timeout_s)
                if response.status >= 500:
                    payload = await response.read()
                    raise UpstreamStatusError(response.status, payload, list(response.headers.items()))
            except UpstreamError as exc:
                breaker.failure(self.loop.time())
                self.metrics.upstream_failure(provider, exc.code)
                last = exc
                if attempt < self.policy.retries:
                    await asyncio.sleep(_BACKOFF_S * 2**attempt)
                continue
            except BaseException:
                breaker.abandon()   # cancelled (its client left): tells nothing of the upstream
                raise
            breaker.success()
            return response
        assert last is not None
        raise last

    async def get(self, provider: str, path: str) -> UpstreamResponse:
        return await self._pools[self._targets[provider]].get(path)

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
