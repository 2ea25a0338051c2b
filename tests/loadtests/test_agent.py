"""The behaviour state machine, driven by explicit instants (no clock, no sleeping)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from loadtests.agent import OrgAgent, Route, bass_inverse, first_block
from scenarios import behaviour
from scenarios.loader import load
from scenarios.schema import Scenario

BLOCK = dt.datetime(2024, 7, 9, tzinfo=dt.UTC)
START = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)


def scenario(*overrides: str) -> Scenario:
    return load("openai-2024-cn-hk", overrides).scenario


def agent(s: Scenario, *, segment: str = "startup", relay: bool = True, seed: int = 0) -> OrgAgent:
    return OrgAgent(s, region="CN", segment=segment, rng=np.random.default_rng(seed),
                    relay_available=relay, start=START)


@pytest.mark.parametrize("u", [0.001, 0.1, 0.5, 0.9, 0.999])
def test_bass_inverse_inverts_the_closed_form(u: float) -> None:
    t = bass_inverse(0.003, 0.08, u)
    assert behaviour.bass_cdf(0.003, 0.08, t) == pytest.approx(u, rel=1e-12)


def test_bass_inverse_without_innovation_never_happens() -> None:
    assert bass_inverse(0.0, 0.5, 0.5) == float("inf")


def test_first_block_is_the_block_stage_start() -> None:
    assert first_block(scenario(), "openai") == BLOCK
    assert first_block(scenario(), "zhipu") is None


def test_a_blocked_org_that_churns_stops_sending() -> None:
    s = scenario("behaviour.choice.asc_churn=50")
    a = agent(s)
    assert a.route(BLOCK, {}) == Route("openai", "direct")
    a.observe(BLOCK, "block", "direct", {})
    assert a.route(BLOCK + dt.timedelta(hours=1), {}) is None
    assert [(t.state, t.at) for t in a.log] == [("direct", START), ("churned", BLOCK)]


def test_a_circumventing_org_uses_the_relay_until_detected() -> None:
    s = scenario("behaviour.choice.asc_circumvent=50")
    a = agent(s)
    a.observe(BLOCK, "block", "direct", {})
    assert a.route(BLOCK, {}) == Route("openai", "relay")
    later = BLOCK + dt.timedelta(days=3)
    a.observe(later, "block", "relay", {})  # detected: the relay is excluded from now on
    assert behaviour.CIRCUMVENT in a.excluded
    assert a.state != "circumventing"
    assert a.log[-2].state == "circumventing"


def test_without_a_relay_nobody_circumvents() -> None:
    s = scenario("behaviour.choice.asc_circumvent=50")
    a = agent(s, relay=False)
    a.observe(BLOCK, "block", "direct", {})
    assert a.state != "circumventing"


def test_a_migrating_org_arrives_after_its_migration_days() -> None:
    s = scenario("behaviour.choice.asc_migrate=50",
                 "segments[2].migration_days={dist: constant, value: 5}")
    a = agent(s)
    a.observe(BLOCK, "block", "direct", {})
    assert a.state == "migrating" and a.target in {"zhipu", "baidu", "tencent", "alibaba", "deepseek"}
    assert a.route(BLOCK + dt.timedelta(days=4.9), {}) == Route("openai", "direct")
    route = a.route(BLOCK + dt.timedelta(days=6), {})
    assert route == Route(a.target, "direct")
    assert a.log[-1].at == BLOCK + dt.timedelta(days=5)  # logged when due, not when noticed
    expected = s.provider(a.target).substitute_for("gpt-4o").name
    assert a.model_for(route, "gpt-4o") == expected


def test_waiting_defers_the_next_decision() -> None:
    s = scenario("behaviour.choice.asc_wait=50", "behaviour.wait_days={dist: constant, value: 2}")
    a = agent(s)
    a.observe(BLOCK, "block", "direct", {})
    assert a.state == "direct" and a.decide_after == BLOCK + dt.timedelta(days=2)
    draws = a.rng.random()  # the generator's next value, to prove no decision consumed it
    b = agent(s)
    b.observe(BLOCK, "block", "direct", {})
    b.observe(BLOCK + dt.timedelta(days=1), "block", "direct", {})  # still waiting: no draw
    assert b.rng.random() == draws


def test_a_warned_org_may_migrate_in_anticipation_before_the_block() -> None:
    # A huge innovation rate: the anticipation instant is right after the warning.
    s = scenario("behaviour.announcement.anticipation.p=0.9", "behaviour.announcement.anticipation.q=0")
    a = agent(s)
    warned = dt.datetime(2024, 6, 26, tzinfo=dt.UTC)
    a.observe(warned, "warn", "direct", {})
    at = a.anticipate_at
    assert at is not None and warned <= at < BLOCK
    a.route(at - dt.timedelta(seconds=1), {})
    assert a.state == "direct"
    a.route(at, {})
    assert (a.log[-1].state, a.log[-1].at) == ("migrating", at)


def test_same_seed_same_choices() -> None:
    s = scenario()
    outcomes = set()
    for _ in range(2):
        a = agent(s, seed=42)
        a.observe(BLOCK, "block", "direct", {})
        outcomes.add((a.state, a.target))
    assert len(outcomes) == 1


def test_choice_frequencies_follow_the_logit_probabilities() -> None:
    s = scenario()
    probs = behaviour.probabilities(behaviour.utilities(
        s, segment="startup", region="CN", now=BLOCK, migrated_share={}))
    n = 4000
    seen: dict[str, int] = {}
    for seed in range(n):
        a = agent(s, seed=seed)
        a.observe(BLOCK, "block", "direct", {})
        key = {"direct": "wait", "circumventing": "circumvent", "churned": "churn"}.get(
            a.state, a.target)
        seen[key] = seen.get(key, 0) + 1
    for alt, p in probs.items():
        se = np.sqrt(p * (1 - p) / n)
        assert abs(seen.get(alt, 0) / n - p) < 4 * se + 1e-9
