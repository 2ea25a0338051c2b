"""The FIFO capacity limiter: slots, a bounded queue, refusal beyond it, cancellation."""

from __future__ import annotations

import asyncio

import pytest

from gateway.mock_upstream_capacity import CapacityLimiter, QueueFull


async def _hold(limiter: CapacityLimiter, name: str, log: list[str], release: asyncio.Event) -> None:
    async with limiter.slot():
        log.append(name)
        await release.wait()


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_slots_then_queue_then_refusal_in_fifo_order() -> None:
    limiter = CapacityLimiter(concurrency=2, queue_limit=2)
    log: list[str] = []
    gates = {name: asyncio.Event() for name in "abcd"}
    tasks = []
    for name in "abcd":
        tasks.append(asyncio.create_task(_hold(limiter, name, log, gates[name])))
        await _settle()
    assert (log, limiter.in_service, limiter.queued) == (["a", "b"], 2, 2)
    with pytest.raises(QueueFull):
        async with limiter.slot():
            pass  # pragma: no cover - refused
    gates["b"].set()
    await _settle()
    assert log == ["a", "b", "c"]  # the oldest waiter, not a newcomer
    for gate in gates.values():
        gate.set()
    await asyncio.gather(*tasks)
    assert log == ["a", "b", "c", "d"]
    assert (limiter.in_service, limiter.queued) == (0, 0)
    assert (limiter.stats.admitted, limiter.stats.queued_total, limiter.stats.rejected) == (4, 2, 1)


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    limiter = CapacityLimiter(concurrency=1, queue_limit=1)
    log: list[str] = []
    gate = asyncio.Event()
    first = asyncio.create_task(_hold(limiter, "a", log, gate))
    await _settle()
    waiting = asyncio.create_task(_hold(limiter, "b", log, gate))
    await _settle()
    assert limiter.queued == 1
    waiting.cancel()
    await _settle()
    assert limiter.queued == 0
    gate.set()
    await first
    assert (log, limiter.in_service) == (["a"], 0)


async def test_a_waiter_cancelled_after_being_handed_a_slot_passes_it_on() -> None:
    limiter = CapacityLimiter(concurrency=1, queue_limit=2)
    log: list[str] = []
    gate = asyncio.Event()
    tasks: dict[str, asyncio.Task[None]] = {}

    async def first() -> None:
        async with limiter.slot():
            log.append("a")
            await gate.wait()
        # Same event-loop step as the release: b's future holds the slot, b has not run yet.
        tasks["b"].cancel()

    tasks["a"] = asyncio.create_task(first())
    await _settle()
    tasks["b"] = asyncio.create_task(_hold(limiter, "b", log, gate))
    tasks["c"] = asyncio.create_task(_hold(limiter, "c", log, gate))
    await _settle()
    gate.set()
    await asyncio.gather(*tasks.values(), return_exceptions=True)
    assert tasks["b"].cancelled()
    assert log == ["a", "c"] and limiter.in_service == 0


def test_bad_limits() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        CapacityLimiter(concurrency=0, queue_limit=1)
