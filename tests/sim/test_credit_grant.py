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

from scenarios.loader import load
from scenarios.policy import Policy
from sim.model import World, migrate
from sim.replication import Setup

MIGRATION_DAYS = 2.0
DEADLINE = dt.datetime(2024, 8, 1, tzinfo=dt.UTC)  # Tencent's offer ends


def _world(decided_hours_before_deadline: float) -> World:
    base = load("openai-2024-cn-hk").scenario
    loaded = load("openai-2024-cn-hk", [
        f"segments[{i}].migration_days={{dist: constant, value: {MIGRATION_DAYS}}}"
        for i in range(len(base.segments))])
    s = loaded.scenario
    setup = Setup.of(s, 0, 0.01)
    start_h = (DEADLINE - s.window.start).total_seconds() / 3600 - decided_hours_before_deadline
    n = setup.pop.size
    return World(env=simpy.Environment(initial_time=start_h), s=s, policy=Policy(s), pop=setup.pop,
                 entropy=1, timelines=[[(0.0, "direct", s.incumbent.name, "direct", None)]
                                       for _ in range(n)],
                 credit=np.zeros(n, dtype=np.int64), decided_at=np.full(n, np.nan))


@pytest.mark.parametrize(("hours_before", "granted"), [
    (MIGRATION_DAYS * 24 + 1, 100_000_000),  # done an hour before the deadline
    (MIGRATION_DAYS * 24 - 1, 0),            # decided while the offer was on, done after it
])
def test_the_credit_is_granted_when_the_migrants_traffic_reaches_the_provider(
        hours_before: float, granted: int) -> None:
    world = _world(hours_before)
    migrate(world, 0, "tencent")
    assert int(world.credit[0]) == granted
    migrated = [c for c in world.timelines[0] if c[1] == "migrated"]
    assert [round(c[0] - world.env.now, 9) for c in migrated] == [MIGRATION_DAYS * 24]


def test_no_offer_no_credit() -> None:
    world = _world(MIGRATION_DAYS * 24 + 1)
    migrate(world, 0, "deepseek")
    assert int(world.credit[0]) == 0
