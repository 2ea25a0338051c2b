"""scenarios.lifecycle: the transition function, its draws, its cached choice probabilities."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from scenarios import behaviour
from scenarios import lifecycle as lc
from scenarios.loader import load
from scenarios.market import MarketContext
from scenarios.policy import Policy

BLOCK = dt.datetime(2024, 7, 9, tzinfo=dt.UTC)
ORG = lc.Org("cn-startup-000001", "CN", "startup")


class FixedMarket:
    def __init__(self, shares: dict[str, float]) -> None:
        self._shares = shares

    def shares(self, region: str, at: dt.datetime) -> dict[str, float]:
        return self._shares


def ctx(*overrides: str, shares: dict[str, float] | None = None) -> lc.Context:
    s = load("openai-2024-cn-hk", overrides).scenario
    return lc.Context(s, Policy(s), FixedMarket(shares or {}))


@pytest.mark.parametrize("when", ["2024-07-10", "2024-08-15"])  # before and after Tencent's deadline
@pytest.mark.parametrize("segment", ["startup", "hobbyist", "enterprise"])
def test_cached_probabilities_are_the_behaviour_models(when: str, segment: str) -> None:
    share = {"zhipu": 0.3, "baidu": 0.05, "alibaba": 0.2, "tencent": 0.1}
    c = ctx(shares=share)
    now = dt.datetime.fromisoformat(when).replace(tzinfo=dt.UTC)
    org = lc.Org(f"cn-{segment}-000001", "CN", segment)
    for exclude in (frozenset(), frozenset({behaviour.CIRCUMVENT, "zhipu"})):
        for _ in range(2):   # computed, then from the cache
            got = c.probabilities(org, now, exclude)
            utils = behaviour.utilities(c.s, segment=segment, region="CN", now=now,
                                        migrated_share=share, exclude=exclude)
            want = behaviour.probabilities(utils)
            assert got.keys() == want.keys()
            assert np.allclose(list(got.values()), list(want.values()), rtol=1e-12, atol=0)


def test_context_choice_is_choose_of_the_probabilities() -> None:
    """Context.choose picks what behaviour.choose picks from Context.probabilities, drawing the
    same one uniform; with every alternative excluded it picks nothing and draws nothing."""
    c = ctx(shares={"zhipu": 0.3, "baidu": 0.05})
    now = dt.datetime(2024, 7, 20, tzinfo=dt.UTC)
    everything = frozenset(behaviour.utilities(c.s, segment="startup", region="CN", now=now,
                                               migrated_share={}))
    for segment in ("startup", "hobbyist", "enterprise"):
        org = lc.Org(f"cn-{segment}-000001", "CN", segment)
        for exclude in (frozenset(), frozenset({behaviour.CIRCUMVENT, "zhipu"}), everything):
            a, b = np.random.default_rng(11), np.random.default_rng(11)
            probs = c.probabilities(org, now, exclude)
            for _ in range(300):
                got = c.choose(org, now, exclude, a)
                assert got == (behaviour.choose(probs, b) if probs else None)
            assert a.random() == b.random()   # in step: one uniform per choice, none when closed
            if exclude == everything:
                assert probs == {} and got is None


def test_a_decision_draws_one_uniform_then_one_duration() -> None:
    c = ctx("behaviour.choice.asc_wait=60", "behaviour.wait_days={dist: uniform, low: 1, high: 3}")
    rng, twin = np.random.default_rng(5), np.random.default_rng(5)
    life, actions = lc.step(lc.start(ORG), lc.Denied(BLOCK, "direct", "openai"), ORG, rng, c)
    twin.random()                                  # the choice
    days = twin.uniform(1, 3)                      # the wait
    assert life.decide_after == BLOCK + dt.timedelta(days=days)
    assert actions == (lc.AwaitDenial(life.decide_after, "direct", "openai"),)
    assert rng.random() == twin.random()           # and nothing else was drawn


def test_warned_draws_one_exponential_once() -> None:
    c = ctx()
    rng, twin = np.random.default_rng(3), np.random.default_rng(3)
    life, actions = lc.step(lc.start(ORG), lc.Warned(BLOCK), ORG, rng, c)
    threshold = twin.exponential()
    assert (life.threshold, actions) == (threshold, (lc.AwaitAnticipation(threshold),))
    again, more = lc.step(life, lc.Warned(BLOCK), ORG, rng, c)
    assert (again, more) == (life, ())
    assert rng.random() == twin.random()


def test_anticipation_is_ignored_after_a_denial() -> None:
    c = ctx("behaviour.choice.asc_wait=60")
    rng = np.random.default_rng(1)
    life, _ = lc.step(lc.start(ORG), lc.Warned(BLOCK), ORG, rng, c)
    life, _ = lc.step(life, lc.Denied(BLOCK, "direct", "openai"), ORG, rng, c)
    assert life.state == lc.DIRECT and life.denied_seen
    after, actions = lc.step(life, lc.AnticipationDue(BLOCK + dt.timedelta(days=1)), ORG, rng, c)
    assert (after, actions) == (life, ())


def test_a_migration_asks_for_its_end_and_tells_the_market() -> None:
    c = ctx("behaviour.choice.asc_migrate=60", "segments[2].migration_days={dist: constant, value: 4}")
    life, actions = lc.step(lc.start(ORG), lc.Denied(BLOCK, "direct", "openai"), ORG,
                            np.random.default_rng(0), c)
    k = life.provider
    done = BLOCK + dt.timedelta(days=4)
    assert actions == (lc.Chose(BLOCK, k), lc.Enter(BLOCK, lc.MIGRATING, k), lc.AwaitMigration(done))
    life, actions = lc.step(life, lc.MigrationDone(done), ORG, np.random.default_rng(0), c)
    assert life.state == lc.MIGRATED
    assert actions == (lc.Enter(done, lc.MIGRATED, k), lc.AwaitDenial(done, "direct", k))


def test_denied_by_the_new_provider_it_goes_back_and_decides_without_it() -> None:
    c = ctx("behaviour.choice.asc_migrate=60")
    life = lc.Life(state=lc.MIGRATED, provider="zhipu", denied_seen=True)
    after, actions = lc.step(life, lc.Denied(BLOCK, "direct", "zhipu"), ORG, np.random.default_rng(0), c)
    assert "zhipu" in after.excluded and after.state == lc.MIGRATING and after.provider != "zhipu"
    assert actions[0] == lc.Enter(BLOCK, lc.DIRECT)


def test_org_rng_depends_on_seed_and_id_only() -> None:
    a = lc.org_rng(1, "cn-startup-000001").random(3)
    assert np.array_equal(a, lc.org_rng(1, "cn-startup-000001").random(3))
    assert not np.array_equal(a, lc.org_rng(2, "cn-startup-000001").random(3))
    assert not np.array_equal(a, lc.org_rng(1, "cn-startup-000002").random(3))
    # a known value: the stream must not change between versions (runs would stop repeating)
    assert lc.org_rng(0, "x").integers(0, 2**32) == 2781824681


def test_warned_only_if_denied_after_the_announcement_inside_the_window() -> None:
    s = load("openai-2024-cn-hk").scenario
    ann = s.behaviour.announcement
    assert ann is not None
    assert lc.warned_at(s, BLOCK) == ann.at
    assert lc.warned_at(s, ann.at - dt.timedelta(days=1)) is None
    assert lc.warned_at(s, None) is None
    assert lc.denial_start(Policy(s), s, ORG, s.window.start) == BLOCK
    azure = lc.Org("cn-enterprise-azure-000001", "CN", "enterprise-azure")
    assert lc.denial_start(Policy(s), s, azure, s.window.start) is None


def test_closed_form_market_is_the_bass_curve() -> None:
    s = load("openai-2024-cn-hk", ["behaviour.announcement.anticipation.p=0.01",
                                   "behaviour.announcement.anticipation.q=0.3"]).scenario
    m = MarketContext.closed_form(s)
    ann = s.behaviour.announcement
    assert ann is not None
    for e in (0.01, 0.2, 1.0, 3.0):
        at = m.anticipation_at("CN", e)
        assert at is not None
        days = (at - ann.at).total_seconds() / 86400
        assert behaviour.bass_cdf(0.01, 0.3, days) == pytest.approx(1 - np.exp(-e), rel=1e-9)
    assert m.shares("CN", BLOCK) == {}
