"""Failover by segment, by organisation id and by both: the gateway (a real request through the
in-process gateway) and the simulator (its piece resolver) send the same organisation to the same
provider by the same path."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from scenarios.loader import load
from scenarios.policy import Policy, PolicyRequest
from sim.pieces import _Resolver
from sim.population import build
from tests.gateway.conftest import CN_IP, StartGateway, chat_body

SEG_RULE = 'routing.failover=[{"from": openai, "to": [alibaba, deepseek], "segments": [enterprise]}]'
ORG_RULE = 'routing.failover=[{"from": openai, "to": [deepseek], "orgs": [cn-startup-000007]}]'
BOTH_RULE = ('routing.failover=[{"from": openai, "to": [zhipu], "segments": [enterprise], '
             '"orgs": [cn-startup-000007]}]')
# zhipu closed to CN by its own policy: the next target serves
CLOSED = ('policy.zhipu={"stages": [{"name": z, "start": 2024-07-01T00:00:00Z, "action": block, '
          '"regions": [CN]}]}')
AT = dt.datetime(2024, 7, 10, 12, tzinfo=dt.UTC)

CASES = [
    # (overrides, org, expected (provider, path, decision))
    ([SEG_RULE], "cn-enterprise-000001", ("alibaba", "failover", "allow")),
    ([SEG_RULE], "cn-startup-000007", ("openai", "direct", "block")),
    ([ORG_RULE], "cn-startup-000007", ("deepseek", "failover", "allow")),
    ([ORG_RULE], "cn-startup-000008", ("openai", "direct", "block")),
    ([ORG_RULE], "cn-enterprise-000001", ("openai", "direct", "block")),
    ([BOTH_RULE], "cn-startup-000007", ("zhipu", "failover", "allow")),
    ([BOTH_RULE], "cn-enterprise-000002", ("zhipu", "failover", "allow")),
    ([BOTH_RULE], "cn-startup-000009", ("openai", "direct", "block")),
    ([BOTH_RULE.replace("[zhipu]", "[zhipu, alibaba]"), CLOSED], "cn-startup-000007",
     ("alibaba", "failover", "allow")),
]


def _simulated(overrides: list[str], org: str) -> tuple[str, str, str]:
    s = load("openai-2024-cn-hk", overrides).scenario
    resolver = _Resolver(s, Policy(s), build(s, 1, scale=0.01), True, {})
    segment = org.split("-")[1]
    fate = resolver._decide(AT, PolicyRequest(provider="openai", country="CN", org=org, segment=segment,
                                              home_country="CN"), relay=False, migrated=False)
    return fate.provider, fate.path, "block" if fate.action == "deny" else fate.action


@pytest.mark.parametrize(("overrides", "org", "expected"), CASES)
async def test_gateway_and_simulator_fail_over_alike(start_gateway: StartGateway, overrides: list[str],
                                                     org: str, expected: tuple[str, str, str]) -> None:
    assert _simulated(overrides, org) == expected
    gw = await start_gateway(clock=f"at:{AT.isoformat()}", scenario=load("openai-2024-cn-hk", overrides))
    status, headers, _ = await gw.chat(chat_body(model="gpt-4o"), ip=CN_IP, key=f"sk-{org}")
    row = gw.row(headers["x-request-id"])
    assert (row["provider"], row["path"], row["decision"]) == expected
    assert status == (200 if expected[2] == "allow" else 403)


# ---------------------------------------------------------------- what the organisation notices


def _first_noticed_denial(overrides: list[str], org: str) -> float | None:
    """The simulator's first request of ``org`` that it sees denied (hours), over the window."""
    import simpy

    from scenarios import lifecycle as lc
    from scenarios.market import MarketRecorder
    from sim.model import World
    from sim.profile import Profile

    s = load("openai-2024-cn-hk", [*overrides, "behaviour.announcement=null"]).scenario
    pop = build(s, 1, scale=0.01)
    i = pop.ids.index(org)
    policy = Policy(s)
    market = MarketRecorder(s.window.start)
    world = World(env=simpy.Environment(), s=s, policy=policy, pop=pop, profile=Profile.of(s), seed=1,
                  timelines=[[] for _ in range(pop.size)], credit=np.zeros(pop.size, dtype=np.int64),
                  decided_at=np.full(pop.size, np.nan), market=market, ctx=lc.Context(s, policy, market))
    world.prepare()
    return world.next_denied_request(i, 0.0)


def test_a_request_failed_over_and_served_is_no_denial_to_the_organisation() -> None:
    """The gateway answers an enterprise's denied request from alibaba (200): its Locust user
    sees a served response and does not react; the simulator's organisation must not either."""
    start = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
    block_h = (dt.datetime(2024, 7, 9, tzinfo=dt.UTC) - start).total_seconds() / 3600
    without = _first_noticed_denial(["routing.failover=[]"], "cn-enterprise-000001")
    assert without is not None and without >= block_h       # no rule: it sees the block
    assert _first_noticed_denial([SEG_RULE], "cn-enterprise-000001") is None
    # a start-up is not covered by the rule: it still sees the block as before
    assert (_first_noticed_denial([SEG_RULE], "cn-startup-000007")
            == _first_noticed_denial(["routing.failover=[]"], "cn-startup-000007") is not None)
    # alibaba, the only target, closing to CN (its own policy) ends the failover: the denial
    # shows from then on
    closed = ('policy.alibaba={"stages": [{"name": a, "start": 2024-08-01T00:00:00Z, '
              '"action": block, "regions": [CN]}]}')
    later = _first_noticed_denial([SEG_RULE.replace("[alibaba, deepseek]", "[alibaba]"), closed],
                                  "cn-enterprise-000001")
    aug = (dt.datetime(2024, 8, 1, tzinfo=dt.UTC) - start).total_seconds() / 3600
    assert later is not None and later >= aug
