"""A bounded memo of a pure function, for the lookups every request repeats.

``functools.lru_cache`` costs about a microsecond per hit on this path (a key tuple, its hash,
the recency list); most of the gateway's per-request lookups are one string (a key, an address)
whose hash Python has already cached, so a plain dict hit is a tenth of that. ``Memo`` is a dict:
``memo[key]`` is the hit, ``__missing__`` computes and stores a miss. When full it is emptied
rather than trimmed (what it holds is recomputed on demand; only the bound on memory matters).
A call that raises stores nothing, as with ``lru_cache``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Memo(dict[K, V]):
    """``memo[key]`` is ``compute(key)``, computed once while at most ``size`` keys are held."""

    __slots__ = ("compute", "size")

    def __init__(self, compute: Callable[[K], V], size: int) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"size ({size}) must be at least 1")
        self.compute = compute
        self.size = size

    def __missing__(self, key: K) -> V:
        value = self.compute(key)
        if len(self) >= self.size:
            self.clear()
        self[key] = value
        return value

    def __repr__(self) -> str:
        return f"Memo({getattr(self.compute, '__qualname__', self.compute)!r}, {len(self)}/{self.size})"
