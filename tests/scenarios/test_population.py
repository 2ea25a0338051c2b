"""scenarios/population.py: exact segment counts, ids that parse back, determinism, scale."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scenarios.population import build_population, org_id, parse_org_id, segment_counts
from scenarios.schema import Scenario


@pytest.mark.parametrize(("total", "shares", "expected"), [
    (10, [0.5, 0.3, 0.2], [5, 3, 2]),
    (10, [0.27, 0.33, 0.4], [3, 3, 4]),      # 2.7, 3.3, 4.0: the one leftover goes to the .7
    (7, [1 / 3, 1 / 3, 1 / 3], [3, 2, 2]),   # equal remainders: the earlier segment first
    (5, [0.5, 0.5], [3, 2]),
    (100, [0.29, 0.71], [29, 71]),           # 100·0.29 = 28.999999999999996 in floating point
    (0, [1.0], [0]),
    (3, [0.0, 1.0], [0, 3]),
    # Shares within the schema's 1e-6 tolerance but over 1: the floors overshoot the total (here
    # 1e6, 1e6, 1e6, 1000002 = total + 2, all remainders 0), and the surplus comes back from the
    # smallest remainders, ties from the last segment first.
    (4_000_000, [0.25, 0.25, 0.25, 0.2500005], [1_000_000, 1_000_000, 999_999, 1_000_001]),
    (2_000_000, [0.500001, 0.4999995], [1_000_002, 999_998]),  # 1000002 + 999999 = total + 1
    (2_120_935, [1.0000009], [2_120_935]),   # one share overshooting by two organisations
    (5_000_000, [0.999999], [5_000_000]),    # ... or falling five short
])
def test_largest_remainder(total: int, shares: list[float], expected: list[int]) -> None:
    assert segment_counts(total, shares) == expected


@settings(max_examples=100, deadline=None)
@given(total=st.integers(0, 5_000_000),
       weights=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=6).filter(lambda w: sum(w) > 0),
       error=st.floats(-1e-6, 1e-6))
def test_counts_add_up_and_stay_within_one(total: int, weights: list[float], error: float) -> None:
    shares = [w / sum(weights) * (1 + error) for w in weights]  # as the schema allows: 1 ± 1e-6
    counts = segment_counts(total, shares)
    assert sum(counts) == total
    assert all(c >= 0 and abs(c - total * s) < 1 + 1e-6 * total for c, s in zip(counts, shares, strict=True))


def test_default_scenario_counts(scenario: Scenario) -> None:
    orgs = build_population(scenario, seed=1)
    assert len(orgs) == sum(r.organisations for r in scenario.regions) == 55_150
    counts = Counter((o.region, o.segment) for o in orgs)
    segs = ("enterprise-azure", "enterprise", "startup", "hobbyist")
    assert [counts[("CN", g)] for g in segs] == [480, 1120, 6400, 8000]
    # MO: 150 × (0.03, 0.07, 0.4, 0.5) = 4.5, 10.500000000000002, 60, 75 — the leftover
    # organisation goes to the larger remainder, enterprise.
    assert [counts[("MO", g)] for g in segs] == [4, 11, 60, 75]
    assert counts[("RU", "enterprise-azure")] == 0
    for r in scenario.regions:
        assert sum(counts[(r.code, g)] for g in segs) == r.organisations


def test_ids_parse_back(scenario: Scenario) -> None:
    orgs = build_population(scenario, seed=1, scale=0.05)
    assert len({o.id for o in orgs}) == len(orgs)
    assert all(parse_org_id(o.id) == (o.region, o.segment) for o in orgs)
    assert org_id("CN", "enterprise-azure", 42) == "cn-enterprise-azure-000042"
    assert parse_org_id("cn-enterprise-azure-000042") == ("CN", "enterprise-azure")
    for other in ("sk-abc", "CN-startup-000001", "cn-startup-42", "cn--000001", "", "cn-startup-0000001"):
        assert parse_org_id(other) is None, other


def test_ids_are_numbered_per_region_and_segment(scenario: Scenario) -> None:
    orgs = build_population(scenario, seed=1, scale=0.01)
    hk_startups = [o.id for o in orgs if (o.region, o.segment) == ("HK", "startup")]
    assert hk_startups == [f"hk-startup-{i:06d}" for i in range(16)]  # round(4000·0.01)·0.4


def test_deterministic_for_a_seed(scenario: Scenario) -> None:
    a = build_population(scenario, seed=7, scale=0.1)
    assert a == build_population(scenario, seed=7, scale=0.1)
    b = build_population(scenario, seed=8, scale=0.1)
    assert [o.id for o in a] == [o.id for o in b]
    assert [o.requests_per_hour for o in a] != [o.requests_per_hour for o in b]


def test_scale(scenario: Scenario) -> None:
    full = {o.id for o in build_population(scenario, seed=3)}
    tenth = build_population(scenario, seed=3, scale=0.1)
    by_region = Counter(o.region for o in tenth)
    assert {r.code: by_region[r.code] for r in scenario.regions} == {
        r.code: round(r.organisations * 0.1) for r in scenario.regions}
    assert {o.id for o in tenth} <= full
    assert build_population(scenario, seed=3, scale=0.0) == []


def test_rates_follow_the_segment_distribution(scenario: Scenario) -> None:
    # startup: lognormal(median 20, sigma 1.5). The log of the sample median is within 4 standard
    # errors (sqrt(pi/2)·sigma/sqrt(n)) of ln 20.
    rates = np.array([o.requests_per_hour for o in build_population(scenario, seed=11)
                      if o.segment == "startup"])
    se = math.sqrt(math.pi / 2) * 1.5 / math.sqrt(rates.size)
    assert abs(math.log(float(np.median(rates))) - math.log(20)) < 4 * se
    assert (rates > 0).all()
