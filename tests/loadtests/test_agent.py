"""The load test's adapter to the organisation's life, driven by explicit instants (no clock)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from loadtests.agent import OrgAgent, Route, first_block
from scenarios import behaviour
from scenarios import lifecycle as lc
from scenarios.loader import load
from scenarios.market import MarketContext
from scenarios.policy import Policy
from scenarios.schema import Scenario

BLOCK = dt.datetime(2024, 7, 9, tzinfo=dt.UTC)
START = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
DIRECT = Route("openai", "direct")
RELAY = Route("openai", "relay")


def scenario(*overrides: str) -> Scenario:
    return load("openai-2024-cn-hk", overrides).scenario


def agent(s: Scenario, *, segment: str = "startup", relay: bool = True, seed: int = 0,
          org: str | None = None) -> OrgAgent:
    ctx = lc.Context(s, Policy(s), MarketContext.closed_form(s))
    oid = org or f"cn-{segment}-000001"
    return OrgAgent(lc.Org(oid, "CN", segment, relay_available=relay),
                    rng=np.random.default_rng(seed), ctx=ctx, start=START)


def test_first_block_is_the_block_stage_start() -> None:
    assert first_block(scenario(), "openai") == BLOCK
    assert first_block(scenario(), "zhipu") is None


def test_a_blocked_org_that_churns_stops_sending() -> None:
    s = scenario("behaviour.choice.asc_churn=50", "behaviour.announcement=null")
    a = agent(s)
    assert a.route(BLOCK) == DIRECT
    a.observe(BLOCK, "block", DIRECT)
    assert a.route(BLOCK + dt.timedelta(hours=1)) is None
    assert [(t.state, t.at) for t in a.log] == [("direct", START), ("churned", BLOCK)]


def test_a_throttle_is_noticed_as_a_denial_too() -> None:
    s = scenario("behaviour.choice.asc_churn=50", "behaviour.announcement=null")
    a = agent(s)
    a.observe(BLOCK, "throttle", DIRECT)
    assert a.state == "churned"


def test_allowed_warned_and_failed_responses_change_nothing() -> None:
    s = scenario("behaviour.choice.asc_churn=50", "behaviour.announcement=null")
    a = agent(s)
    for decision in ("allow", "warn", "failed"):
        a.observe(BLOCK, decision, DIRECT)
    assert a.state == "direct" and len(a.log) == 1


def test_a_circumventing_org_uses_the_relay_until_detected_then_never_again() -> None:
    s = scenario("behaviour.choice.asc_circumvent=50", "behaviour.announcement=null")
    a = agent(s)
    a.observe(BLOCK, "block", DIRECT)
    assert a.route(BLOCK) == RELAY
    later = BLOCK + dt.timedelta(days=3)
    a.observe(later, "block", RELAY)  # detected: circumventing is out for good
    assert behaviour.CIRCUMVENT in a.life.excluded
    assert a.state != "circumventing"
    assert [t.state for t in a.log][:2] == ["direct", "circumventing"]
    for k in range(1, 20):  # however often it is denied again, it never relays again
        a.observe(later + dt.timedelta(days=k), "block", DIRECT)
        assert a.state != "circumventing"


def test_without_a_relay_nobody_circumvents() -> None:
    s = scenario("behaviour.choice.asc_circumvent=50", "behaviour.announcement=null")
    a = agent(s, relay=False)
    a.observe(BLOCK, "block", DIRECT)
    assert a.state != "circumventing"


def test_a_migrating_org_arrives_after_its_migration_days() -> None:
    s = scenario("behaviour.choice.asc_migrate=50", "behaviour.announcement=null",
                 "segments[2].migration_days={dist: constant, value: 5}")
    a = agent(s)
    a.observe(BLOCK, "block", DIRECT)
    assert a.state == "migrating" and a.target in {"zhipu", "baidu", "tencent", "alibaba", "deepseek"}
    assert a.route(BLOCK + dt.timedelta(days=4.9)) == DIRECT
    route = a.route(BLOCK + dt.timedelta(days=6))
    assert route == Route(a.target, "direct")
    assert a.log[-1].at == BLOCK + dt.timedelta(days=5)  # logged when due, not when noticed
    assert a.model_for(route, "gpt-4o") == s.provider(a.target).substitute_for("gpt-4o").name


def test_timed_events_after_the_last_request_still_happen_by_the_window_end() -> None:
    # warned at the announcement, moves in anticipation, migrates within 5 days: no request needed
    s = scenario("behaviour.announcement.anticipation.p=0.9", "behaviour.announcement.anticipation.q=0",
                 "segments[2].migration_days={dist: constant, value: 5}")
    a = agent(s)
    ann = s.behaviour.announcement
    assert ann is not None
    a.route(ann.at - dt.timedelta(hours=1))          # its last request: before the e-mail
    assert [t.state for t in a.log] == ["direct"]
    a.finish(s.window.end)
    (_, due, _), (_, arrived, provider) = [(t.state, t.at, t.provider) for t in a.log[1:]]
    assert [t.state for t in a.log] == ["direct", "migrating", "migrated"]
    assert ann.at <= due < BLOCK and arrived == due + dt.timedelta(days=5) and provider
    assert not a.timers


def test_finish_leaves_what_is_due_at_or_after_the_window_end() -> None:
    s = scenario("behaviour.choice.asc_migrate=50", "behaviour.announcement=null",
                 "segments[2].migration_days={dist: constant, value: 5}")
    a = agent(s)
    a.observe(BLOCK, "block", DIRECT)
    a.finish(BLOCK + dt.timedelta(days=5))           # the migration ends exactly at the end
    assert a.state == "migrating" and len(a.timers) == 1


def test_waiting_defers_the_next_decision_without_drawing() -> None:
    s = scenario("behaviour.choice.asc_wait=50", "behaviour.wait_days={dist: constant, value: 2}",
                 "behaviour.announcement=null")
    a = agent(s)
    a.observe(BLOCK, "block", DIRECT)
    assert a.state == "direct" and a.life.decide_after == BLOCK + dt.timedelta(days=2)
    nxt = a.rng.random()  # the generator's next value, to prove no decision consumed it
    b = agent(s)
    b.observe(BLOCK, "block", DIRECT)
    b.observe(BLOCK + dt.timedelta(days=1), "block", DIRECT)  # still waiting: no draw
    assert b.rng.random() == nxt


def test_a_warned_org_may_migrate_in_anticipation_before_the_block() -> None:
    # a huge innovation rate: the anticipation instant is right after the announcement
    s = scenario("behaviour.announcement.anticipation.p=0.9", "behaviour.announcement.anticipation.q=0")
    a = agent(s)
    ann = s.behaviour.announcement
    assert ann is not None
    a.route(ann.at)                                  # the e-mail arrives: its threshold is drawn
    assert a.life.warned and a.life.threshold is not None
    (due, _, _), = a.timers
    # the closed form: F = 1 - e^-E is reached after the Bass inverse of F days
    days = a.life.threshold / 0.9   # q = 0: F(t) = 1 - e^(-p t)
    assert due == pytest.approx(ann.at + dt.timedelta(days=days), abs=dt.timedelta(milliseconds=1))
    assert ann.at <= due < BLOCK
    a.route(due - dt.timedelta(seconds=1))
    assert a.state == "direct"
    a.route(due)
    assert (a.log[-1].state, a.log[-1].at) == ("migrating", due)


def test_same_seed_same_choices() -> None:
    s = scenario()
    outcomes = set()
    for _ in range(2):
        a = agent(s, seed=42)
        a.observe(BLOCK, "block", DIRECT)
        outcomes.add((a.state, a.target))
    assert len(outcomes) == 1


def test_choice_frequencies_follow_the_logit_probabilities() -> None:
    s = scenario("behaviour.announcement=null")
    probs = behaviour.probabilities(behaviour.utilities(
        s, segment="startup", region="CN", now=BLOCK, migrated_share={}))
    n = 4000
    seen: dict[str, int] = {}
    for seed in range(n):
        a = agent(s, seed=seed)
        a.observe(BLOCK, "block", DIRECT)
        key = {"direct": "wait", "circumventing": "circumvent", "churned": "churn"}.get(a.state, a.target)
        seen[key] = seen.get(key, 0) + 1
    for alt, p in probs.items():
        se = np.sqrt(p * (1 - p) / n)
        assert abs(seen.get(alt, 0) / n - p) < 4 * se + 1e-9
