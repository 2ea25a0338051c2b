"""scenarios.failover: which rules cover whom, and which targets serve the client's country."""

from __future__ import annotations

import pytest

from scenarios.failover import covers, failover_targets
from scenarios.loader import load
from scenarios.schema import FailoverRule

SEG_RULE = 'routing.failover=[{"from": openai, "to": [alibaba, deepseek], "segments": [enterprise]}]'
ORG_RULE = 'routing.failover=[{"from": openai, "to": [deepseek], "orgs": [cn-startup-000007]}]'
BOTH_RULE = ('routing.failover=[{"from": openai, "to": [alibaba], "segments": [enterprise], '
             '"orgs": [cn-startup-000007]}]')
EVERYONE_RULE = 'routing.failover=[{"from": openai, "to": [zhipu], "when": [error]}]'


def _rule(**fields: object) -> FailoverRule:
    return FailoverRule.model_validate({"from": "openai", "to": ["alibaba"], **fields})


@pytest.mark.parametrize(("fields", "segment", "org", "expected"), [
    ({}, "startup", "cn-startup-000001", True),                       # nothing listed: everyone
    ({"segments": ["enterprise"]}, "enterprise", "cn-enterprise-000001", True),
    ({"segments": ["enterprise"]}, "startup", "cn-startup-000007", False),
    ({"orgs": ["cn-startup-000007"]}, "startup", "cn-startup-000007", True),
    ({"orgs": ["cn-startup-000007"]}, "startup", "cn-startup-000008", False),
    ({"orgs": ["cn-startup-000007"]}, "enterprise", "cn-enterprise-000001", False),
    # both listed: the union of the segment's organisations and the named ones
    ({"segments": ["enterprise"], "orgs": ["cn-startup-000007"]}, "enterprise", "cn-enterprise-000001", True),
    ({"segments": ["enterprise"], "orgs": ["cn-startup-000007"]}, "startup", "cn-startup-000007", True),
    ({"segments": ["enterprise"], "orgs": ["cn-startup-000007"]}, "startup", "cn-startup-000008", False),
])
def test_covers(fields: dict[str, object], segment: str, org: str, expected: bool) -> None:
    assert covers(_rule(**fields), segment=segment, org=org) is expected


def _names(overrides: list[str], **request: str) -> list[str]:
    s = load("openai-2024-cn-hk", overrides).scenario
    return [p.name for p in failover_targets(s, **request)]  # type: ignore[arg-type]


def test_targets_in_rule_order_for_a_covered_block() -> None:
    got = _names([SEG_RULE], provider="openai", when="block", segment="enterprise",
                 org="cn-enterprise-000001", country="CN")
    assert got == ["alibaba", "deepseek"]


def test_no_target_for_another_provider_or_an_unlisted_event() -> None:
    assert _names([SEG_RULE], provider="zhipu", when="block", segment="enterprise",
                  org="cn-enterprise-000001", country="CN") == []
    assert _names([EVERYONE_RULE], provider="openai", when="block", segment="startup",
                  org="cn-startup-000001", country="CN") == []
    assert _names([EVERYONE_RULE], provider="openai", when="error", segment="startup",
                  org="cn-startup-000001", country="CN") == ["zhipu"]


def test_by_org_id_and_by_both() -> None:
    org = {"provider": "openai", "when": "block", "country": "CN"}
    assert _names([ORG_RULE], segment="startup", org="cn-startup-000007", **org) == ["deepseek"]
    assert _names([ORG_RULE], segment="startup", org="cn-startup-000008", **org) == []
    assert _names([BOTH_RULE], segment="startup", org="cn-startup-000007", **org) == ["alibaba"]
    assert _names([BOTH_RULE], segment="enterprise", org="cn-enterprise-000003", **org) == ["alibaba"]
    assert _names([BOTH_RULE], segment="startup", org="cn-startup-000008", **org) == []


def test_targets_must_serve_the_clients_country_not_the_home() -> None:
    # alibaba serves CN/HK/MO, deepseek everyone: a CN enterprise relayed through SG keeps deepseek
    req = {"provider": "openai", "when": "block", "segment": "enterprise", "org": "cn-enterprise-000001"}
    assert _names([SEG_RULE], country="CN", **req) == ["alibaba", "deepseek"]
    assert _names([SEG_RULE], country="SG", **req) == ["deepseek"]
    assert _names([SEG_RULE], country="", **req) == ["alibaba", "deepseek"]  # unknown: not dropped


def test_a_provider_named_by_two_rules_comes_once() -> None:
    rules = ('routing.failover=[{"from": openai, "to": [deepseek, alibaba], "orgs": [cn-startup-000007]},'
             '{"from": openai, "to": [alibaba, zhipu]}]')
    assert _names([rules], provider="openai", when="block", segment="startup", org="cn-startup-000007",
                  country="CN") == ["deepseek", "alibaba", "zhipu"]


def test_first_admitting_asks_each_candidate_as_the_same_client() -> None:
    import datetime as dt

    from scenarios.failover import first_admitting
    from scenarios.policy import Policy, PolicyRequest

    closed = ('policy.zhipu={"stages": [{"name": z, "start": 2024-07-01T00:00:00Z, "action": block, '
              '"regions": [CN]}]}')
    s = load("openai-2024-cn-hk", [closed]).scenario
    at = dt.datetime(2024, 7, 10, tzinfo=dt.UTC)
    cn = PolicyRequest(provider="openai", country="CN", org="cn-startup-000001", segment="startup",
                       home_country="CN")
    hit = first_admitting(Policy(s), at, cn, ["zhipu", "alibaba", "deepseek"])
    assert hit is not None and (hit[0], hit[1].action) == (1, "allow")
    assert first_admitting(Policy(s), at, cn, ["zhipu"]) is None
    # the client's country, not the home: from the US zhipu's CN stage does not apply
    us = PolicyRequest(provider="openai", country="US", org="cn-startup-000001", segment="startup",
                       home_country="CN")
    hit = first_admitting(Policy(s), at, us, ["zhipu"])
    assert hit is not None and hit[0] == 0
