"""The affected organisations' first denied requests, found in arrays (``sim.model``), are exactly
those that ``World.next_denied_request`` finds one organisation at a time — the same instants, the
same request-stream draws consumed — including organisations whose first request falls after the
block has ended again (then the one-by-one search goes on from there)."""

from __future__ import annotations

import numpy as np
import pytest
import simpy

from scenarios import lifecycle as lc
from scenarios.loader import load
from scenarios.market import MarketRecorder
from scenarios.policy import Policy
from sim.model import World, _first_denials, _first_denied_requests
from sim.replication import Setup


def _world(overrides: tuple[str, ...], scale: float) -> World:
    s = load("openai-2024-cn-hk", overrides).scenario
    setup = Setup.of(s, 0, scale)
    n = setup.pop.size
    policy = Policy(s)
    market = MarketRecorder(s.window.start)
    world = World(env=simpy.Environment(), s=s, policy=policy, pop=setup.pop, profile=setup.profile,
                  seed=11, timelines=[[(0.0, "direct", s.incumbent.name, "direct", None)]
                                      for _ in range(n)],
                  credit=np.zeros(n, dtype=np.int64), decided_at=np.full(n, np.nan), market=market,
                  ctx=lc.Context(s, policy, market))
    world.prepare()
    return world


# the block as shipped; and a block that lasts two hours, so that many organisations' first
# request after it started comes when it is over (warned again from the next stage, or never)
@pytest.mark.parametrize("overrides", [(), ("policy.openai.stages[1].end=2024-07-09T02:00:00Z",)])
def test_arrays_find_the_same_first_denied_requests_as_one_by_one(overrides: tuple[str, ...]) -> None:
    one, arrays = _world(overrides, 0.1), _world(overrides, 0.1)
    first = _first_denials(one, one.points)
    assert first == _first_denials(arrays, arrays.points) and len(first) > 1000
    expected = sorted((t, i) for i, h in first.items()
                      if (t := one.next_denied_request(i, h)) is not None)
    got = sorted(_first_denied_requests(arrays, first))
    assert got == expected            # exact floats, not approximately
    assert arrays._arrivals == one._arrivals   # the same draws of each request stream used
    drew = len(arrays._arrivals)      # organisations whose request stream was drawn from
    if overrides:
        # the case the arrays hand back to the one-by-one search: a first request not denied
        assert len(got) < drew
    else:
        assert len(got) == drew
