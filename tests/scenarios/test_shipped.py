"""The shipped scenario library: every file validates, derived files say what they mean, and the
resolved form round-trips with a stable hash."""

from __future__ import annotations

import datetime as dt

import pytest

from scenarios.loader import load, load_text, resolved_yaml, scenario_sha256, shipped

UTC = dt.UTC
NAMES = sorted(shipped())


def test_library_contents() -> None:
    assert NAMES == ["mmc-validation", "no-incentives", "openai-2024-cn-hk", "staged-percent-rollout",
                     "strict-enforcement"]


@pytest.mark.parametrize("name", NAMES)
def test_every_shipped_scenario_validates(name: str) -> None:
    loaded = load(name)
    assert loaded.scenario.name == name
    assert loaded.source == f"{name}.yaml"
    assert loaded.sha256 == scenario_sha256(loaded.scenario)


@pytest.mark.parametrize("name", NAMES)
def test_resolved_yaml_round_trips(name: str) -> None:
    s = load(name).scenario
    text = resolved_yaml(s)
    again = load_text(text, file="resolved.yaml").scenario
    assert again == s
    assert resolved_yaml(again) == text
    assert scenario_sha256(again) == scenario_sha256(s)


def test_sha256_is_stable_and_sensitive() -> None:
    a, b = load("openai-2024-cn-hk"), load("openai-2024-cn-hk")
    assert a.sha256 == b.sha256 and len(a.sha256) == 64
    changed = load("openai-2024-cn-hk", ["behaviour.relay.markup=0.31"])
    assert changed.sha256 != a.sha256
    same_value = load("openai-2024-cn-hk", ["behaviour.relay.markup=0.3"])
    assert same_value.sha256 == a.sha256


def test_default_scenario_facts() -> None:
    s = load("openai-2024-cn-hk").scenario
    stages = s.policy["openai"].stages
    assert [(st.name, st.action, st.start) for st in stages] == [
        ("announce", "warn", dt.datetime(2024, 6, 25, tzinfo=UTC)),
        ("block", "block", dt.datetime(2024, 7, 9, tzinfo=UTC)),
    ]
    assert stages[1].allow_list.segments == ("enterprise-azure",)
    det = s.policy["openai"].detection
    assert det is not None and (det.per_day, det.start) == (0.02, dt.datetime(2024, 7, 25, tzinfo=UTC))
    assert s.incumbent.name == "openai"
    assert sum(r.organisations for r in s.regions) == 55_150


def test_staged_percent_rollout() -> None:
    stages = load("staged-percent-rollout").scenario.policy["openai"].stages
    assert len(stages) == 4
    assert [(st.name, st.action, st.percent) for st in stages] == [
        ("announce", "warn", 100.0), ("block-10", "block", 10.0), ("block-50", "block", 50.0),
        ("block-100", "block", 100.0)]
    assert [st.start.date() for st in stages] == [
        dt.date(2024, 6, 25), dt.date(2024, 7, 9), dt.date(2024, 7, 16), dt.date(2024, 7, 30)]
    assert all(st.allow_list.segments == ("enterprise-azure",) for st in stages[1:])


def test_strict_enforcement() -> None:
    s = load("strict-enforcement").scenario
    det = s.policy["openai"].detection
    assert det is not None
    assert (det.per_day, det.start) == (0.25, dt.datetime(2024, 7, 9, tzinfo=UTC))
    base = load("openai-2024-cn-hk").scenario
    assert s.policy["openai"].stages == base.policy["openai"].stages
    assert det.response == base.policy["openai"].detection.response  # type: ignore[union-attr]


def test_no_incentives() -> None:
    s = load("no-incentives").scenario
    assert [p.incentive for p in s.providers] == [None] * len(s.providers)
    base = load("openai-2024-cn-hk").scenario
    assert sum(p.incentive is not None for p in base.providers) == 4  # the counterfactual removes 4
    assert [p.model_copy(update={"incentive": None}) for p in base.providers] == list(s.providers)
