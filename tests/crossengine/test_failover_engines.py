"""Failover by segment, by organisation id and by both: the gateway (a real request through the
in-process gateway) and the simulator (its piece resolver) send the same organisation to the same
provider by the same path."""

from __future__ import annotations

import datetime as dt

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
