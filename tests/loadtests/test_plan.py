"""The load plan: stratified users, their rate shares, their schedules, the env round trip."""

from __future__ import annotations

import numpy as np
import pytest

from loadtests.plan import LoadConfig, allocate, build_plan, sample_users, strata
from scenarios.distributions import Lognormal
from scenarios.errors import UsageError
from scenarios.loader import Loaded, load
from scenarios.population import build_population

SCENARIO = "openai-2024-cn-hk"


@pytest.fixture(scope="module")
def loaded() -> Loaded:
    return load(SCENARIO)


def config(**kw: object) -> LoadConfig:
    base: dict[str, object] = {"scenario": SCENARIO, "duration_s": 60.0, "epoch": 1000.0}
    base.update(kw)
    return LoadConfig(**base)  # type: ignore[arg-type]


def test_every_stratum_gets_a_user_when_there_are_enough(loaded: Loaded) -> None:
    groups = strata(build_population(loaded.scenario, 0))
    assert len(groups) == 31  # 8 regions x 4 segments, RU has no enterprise-azure
    alloc = allocate(40, groups)
    assert sum(alloc) == 40 and min(alloc) == 1


def test_every_region_gets_its_largest_segment_when_users_are_few(loaded: Loaded) -> None:
    groups = strata(build_population(loaded.scenario, 0))
    alloc = allocate(8, groups)
    picked = [(g.region, g.segment) for g, a in zip(groups, alloc, strict=True) if a]
    assert sorted(r for r, _ in picked) == sorted(r.code for r in loaded.scenario.regions)
    assert dict(picked)["CN"] == "hobbyist" and dict(picked)["US"] in ("startup", "hobbyist")


def test_weights_add_up_to_the_population_and_shares_to_one(loaded: Loaded) -> None:
    users = sample_users(loaded.scenario, 40, seed=0)
    total = sum(r.organisations for r in loaded.scenario.regions)
    assert sum(u.weight for u in users) == pytest.approx(total, rel=1e-12)
    assert sum(u.share for u in users) == pytest.approx(1.0, rel=1e-12)
    assert [u.index for u in users] == list(range(40))
    assert len({u.org.id for u in users}) == 40


def test_region_traffic_shares_match_the_population(loaded: Loaded) -> None:
    s = loaded.scenario
    population = build_population(s, 0)
    full: dict[str, float] = {}
    for org in population:
        full[org.region] = full.get(org.region, 0.0) + org.requests_per_hour
    total = sum(full.values())
    users = sample_users(s, 40, seed=0)  # every stratum present: shares are exact
    by_region: dict[str, float] = {}
    for u in users:
        by_region[u.org.region] = by_region.get(u.org.region, 0.0) + u.share
    for region, rph in full.items():
        assert by_region[region] == pytest.approx(rph / total, rel=1e-9)


def test_schedules_are_deterministic_uncapped_and_follow_the_mix(loaded: Loaded) -> None:
    a, b = build_plan(config(), loaded), build_plan(config(), loaded)
    user = a.users[1]  # a CN enterprise: plenty of requests
    sa, sb = a.schedule(user), b.schedule(user)
    assert sa.offsets.tolist() == sb.offsets.tolist() and sa.models == sb.models
    assert len(sa) > 50
    assert set(sa.models) <= set(loaded.scenario.segment(user.org.segment).model_mix)
    assert np.all((sa.offsets >= 0) & (sa.offsets < 60.0))
    # no cap by default, as in the simulator: the segment's law, rounded, at least one token
    seg = loaded.scenario.segment(user.org.segment)
    assert sa.tokens_out.min() >= 1 and sa.tokens_in.max() > 2048
    logs = np.log(sa.tokens_out.astype(float))
    n = len(sa)
    assert isinstance(seg.tokens_out, Lognormal)
    assert abs(np.median(logs) - np.log(seg.tokens_out.median)) < 4 * 1.26 * seg.tokens_out.sigma / np.sqrt(n)
    assert abs(logs.std() - seg.tokens_out.sigma) < 4 * seg.tokens_out.sigma / np.sqrt(2 * n)


def test_a_token_cap_caps_every_request(loaded: Loaded) -> None:
    plan = build_plan(config(max_tokens_in=2048, max_tokens_out=64), loaded)
    sch = plan.schedule(plan.users[1])
    assert sch.tokens_in.max() == 2048 and sch.tokens_out.max() == 64
    assert sch.tokens_out.min() >= 1


def test_each_region_and_path_goes_through_its_wan_path(loaded: Loaded) -> None:
    wan = (("CN/direct", "http://127.0.0.1:7001"), ("CN/relay", "http://127.0.0.1:7002/"))
    plan = build_plan(config(wan=wan, relay_url="http://127.0.0.1:9"), loaded)
    assert plan.base_url("CN", "direct", "") == "http://127.0.0.1:7001"
    assert plan.base_url("CN", "relay", "") == "http://127.0.0.1:7002"
    assert plan.base_url("US", "relay", "") == "http://127.0.0.1:9"  # no WAN path: the relay
    assert plan.base_url("US", "direct", "http://gw:1/") == "http://gw:1"


def test_planned_total_matches_the_rate_times_duration(loaded: Loaded) -> None:
    plan = build_plan(config(rate=50.0, users=40), loaded)
    expected = plan.target_curve().sum() * plan.step_wall_s
    planned = sum(len(plan.schedule(u)) for u in plan.users)
    # The window (122 days) is not whole weeks, so the expectation is near but not exactly 3000.
    assert expected == pytest.approx(50.0 * 60.0, rel=0.02)
    assert abs(planned - expected) < 4 * np.sqrt(expected)


def test_clock_mapping_is_the_gateways_compression(loaded: Loaded) -> None:
    from scenarios.clock import CompressedClock

    plan = build_plan(config(), loaded)
    w = loaded.scenario.window
    clock = CompressedClock(w.start, w.end, 60.0, 1000.0)
    for wall in (1000.0, 1017.25, 1059.9):
        assert plan.scenario_at(wall) == clock.scenario_at(wall)
        assert plan.wall_at(clock.scenario_at(wall)) == pytest.approx(wall)


def test_config_round_trips_through_the_environment() -> None:
    c = config(overrides=("window.bin=hour", "slos.error_rate=0.02"), users=7, rate=12.5,
               relay_url="http://127.0.0.1:1", events_dir="/tmp/x", epoch_file="/tmp/e",
               workers=3, seed=4, drain_s=2.5, max_tokens_out=64,
               wan=(("CN/direct", "http://127.0.0.1:7001"), ("US/relay", "http://127.0.0.1:7")))
    assert LoadConfig.from_env(c.to_env(), default_epoch=0.0) == c


def test_without_an_epoch_the_clock_starts_on_test_start() -> None:
    env = {"REGIONBLOCK_SCENARIO": "openai-2024-cn-hk", "REGIONBLOCK_DURATION": "60s"}
    assert LoadConfig.from_env(env, default_epoch=5.0).epoch_on_start
    assert not LoadConfig.from_env({**env, "REGIONBLOCK_EPOCH": "7"}, default_epoch=5.0).epoch_on_start
    assert not LoadConfig.from_env({**env, "REGIONBLOCK_EPOCH_FILE": "/e"},
                                   default_epoch=5.0).epoch_on_start


def test_config_refuses_bad_values() -> None:
    with pytest.raises(UsageError, match="--users: 0"):
        config(users=0)
    with pytest.raises(UsageError, match="REGIONBLOCK_SCENARIO: not set"):
        LoadConfig.from_env({}, default_epoch=0.0)
    with pytest.raises(UsageError, match="REGIONBLOCK_DURATION"):
        LoadConfig.from_env({"REGIONBLOCK_SCENARIO": "x", "REGIONBLOCK_DURATION": "soon"},
                            default_epoch=0.0)
