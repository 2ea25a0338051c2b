"""A provider's capacity: ``concurrency`` requests in service, a bounded FIFO queue behind them.

A request that finds every slot busy waits in the queue; one that finds the queue holding
``queue_limit`` waiters is refused at once (:class:`QueueFull`; the upstream answers 429).
A finishing request hands its slot straight to the oldest waiter, so the order of service is
strictly first in, first out and a newcomer can never overtake the queue.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass


class QueueFull(Exception):
    """Every slot is busy and the queue is at its limit."""


@dataclass(slots=True)
class CapacityStats:
    """Counters since start: requests admitted to service, queued at some point, refused."""

    admitted: int = 0
    queued_total: int = 0
    rejected: int = 0


class CapacityLimiter:
    """FIFO admission with ``concurrency`` slots and at most ``queue_limit`` waiters."""

    def __init__(self, concurrency: int, queue_limit: int) -> None:
        if concurrency < 1 or queue_limit < 0:
            raise ValueError(f"concurrency ({concurrency}) must be >= 1 and queue_limit "
                             f"({queue_limit}) >= 0")
        self.concurrency = concurrency
        self.queue_limit = queue_limit
        self.in_service = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.stats = CapacityStats()

    @property
    def queued(self) -> int:
        """Requests waiting for a slot now."""
        return len(self._waiters)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot for the body of the ``async with``; raise QueueFull if refused."""
        await self._acquire()
        try:
            yield
        finally:
            self._release()

    async def _acquire(self) -> None:
        if self.in_service < self.concurrency and not self._waiters:
            self.in_service += 1
            self.stats.admitted += 1
            return
        if len(self._waiters) >= self.queue_limit:
            self.stats.rejected += 1
            raise QueueFull
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self.stats.queued_total += 1
        try:
            await waiter
        except asyncio.CancelledError:
            self._abandon(waiter)
            raise
        self.stats.admitted += 1

    def _abandon(self, waiter: asyncio.Future[None]) -> None:
        """A waiter was cancelled: leave the queue, or pass on a slot it was already handed."""
        if waiter.done() and not waiter.cancelled():
            self._release()
        elif waiter in self._waiters:
            self._waiters.remove(waiter)

    def _release(self) -> None:
        # The slot passes directly to the oldest waiter, so in_service does not change.
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.in_service -= 1
