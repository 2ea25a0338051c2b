"""Per-key limits from the key store: a token bucket of requests per second and a cap on the
key's requests in progress. Beyond either: OpenAI's 429 ``rate_limit_exceeded``, so one key
cannot take every admission slot (or every upstream connection) from the others."""

from __future__ import annotations

import time

from gateway.context import ChatContext
from gateway.errors import RateLimited
from gateway.keystore import KeyEntry


class KeyLimits:
    """Bucket levels and in-progress counts per key id (kept across key-file reloads)."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # key id → (tokens, at)
        self._active: dict[str, int] = {}

    def __call__(self, ctx: ChatContext) -> None:
        entry = ctx.who.entry if ctx.who is not None else None
        if entry is None:
            return
        if entry.rate_per_s is not None and not self.take(entry, time.monotonic()):
            raise RateLimited(f"Rate limit reached for key {entry.key_id}: {entry.rate_per_s:g} "
                              "requests per second. Please retry shortly.",
                              headers=[("retry-after", "1")])
        if entry.max_concurrent is not None:
            active = self._active.get(entry.key_id, 0)
            if active >= entry.max_concurrent:
                raise RateLimited(f"Too many concurrent requests for key {entry.key_id}: at most "
                                  f"{entry.max_concurrent} at once.",
                                  headers=[("retry-after", "1")])
            self._active[entry.key_id] = active + 1
            ctx.cleanups.append(lambda: self._release(entry.key_id))

    def take(self, entry: KeyEntry, now: float) -> bool:
        """One token from the key's bucket at time ``now``; False if it is empty."""
        assert entry.rate_per_s is not None and entry.burst is not None
        tokens, at = self._buckets.get(entry.key_id, (entry.burst, now))
        tokens = min(entry.burst, tokens + (now - at) * entry.rate_per_s)
        if tokens < 1.0:
            self._buckets[entry.key_id] = (tokens, now)
            return False
        self._buckets[entry.key_id] = (tokens - 1.0, now)
        return True

    def _release(self, key_id: str) -> None:
        left = self._active[key_id] - 1
        if left:
            self._active[key_id] = left
        else:
            del self._active[key_id]
