"""The simulator grants a migrant's free-token credit by the ledger contract's rule, as the gateway.

The gateway opens a credit on an organisation's first request to the provider while the offer is
on; a simulated migrant's first requests there start when its migration completes, so the
simulator asks :func:`scenarios.ledger.grants_credit` at that instant (not at the decision).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import simpy

from scenarios import lifecycle as lc
from scenarios.loader import load
from scenarios.market import MarketRecorder
from scenarios.policy import Policy
from sim.model import World
from sim.replication import Setup

DEADLINE = dt.datetime(2024, 8, 1, tzinfo=dt.UTC)  # Tencent's offer ends


def _world() -> World:
    s = load("openai-2024-cn-hk").scenario
    setup = Setup.of(s, 0, 0.01)
    n = setup.pop.size
    policy = Policy(s)
    market = MarketRecorder(s.window.start)
    return World(env=simpy.Environment(), s=s, policy=policy, pop=setup.pop, profile=setup.profile,
                 seed=1, timelines=[[(0.0, "direct", s.incumbent.name, "direct", None)] for _ in range(n)],
                 credit=np.zeros(n, dtype=np.int64), decided_at=np.full(n, np.nan), market=market,
                 ctx=lc.Context(s, policy, market))


def _arrive(world: World, provider: str, at: dt.datetime) -> None:
    """Organisation 0 decided for ``provider`` earlier; its migration completes at ``at``."""
    world.lives[0] = lc.Life(state=lc.MIGRATING, provider=provider, denied_seen=True)
    world.deliver(0, lc.MigrationDone(at))


@pytest.mark.parametrize(("arrives", "granted"), [
    (DEADLINE - dt.timedelta(hours=1), 100_000_000),  # done an hour before the deadline
    (DEADLINE + dt.timedelta(hours=1), 0),            # (decided while the offer was on) done after it
])
def test_the_credit_is_granted_when_the_migrants_traffic_reaches_the_provider(
        arrives: dt.datetime, granted: int) -> None:
    world = _world()
    _arrive(world, "tencent", arrives)
    assert int(world.credit[0]) == granted
    migrated = [c for c in world.timelines[0] if c[1] == "migrated"]
    assert [c[0] for c in migrated] == [world.hours(arrives)]


def test_no_offer_no_credit() -> None:
    world = _world()
    _arrive(world, "deepseek", DEADLINE - dt.timedelta(days=3))
    assert int(world.credit[0]) == 0
