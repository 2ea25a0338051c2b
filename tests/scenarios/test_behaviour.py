"""scenarios/behaviour.py against values worked out by hand for a tiny scenario."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest

from scenarios.behaviour import (
    anticipation_hazard,
    bass_cdf,
    chance_within,
    choose,
    cost_per_request,
    incentive_mtokens,
    latency_s,
    probabilities,
    quality,
    serves,
    typical,
    utilities,
)
from scenarios.loader import load_text
from scenarios.schema import Bass, Scenario

UTC = dt.UTC
TINY = """
name: tiny
window: {start: 2024-06-01, end: 2024-07-01}
regions:
  - {code: CN, organisations: 10, utc_offset: 8}
  - {code: US, organisations: 7, utc_offset: -5}
segments:
  - name: dev
    share: {CN: 1.0, US: 1.0}
    requests_per_hour: {dist: constant, value: 10}
    tokens_in: {dist: constant, value: 1000}
    tokens_out: {dist: exponential, mean: 500}
    model_mix: {big: 0.6, small: 0.4}
    migration_days: {dist: lognormal, median: 4, sigma: 0.5}
    propensity: {wait: 0.1, circumvent: 0.2, migrate: 0.3, churn: 0.4}
providers:
  - name: inc
    incumbent: true
    models:
      - {name: big, price_in: 10, price_out: 30, quality: 1.0}
      - {name: small, price_in: 1, price_out: 2, quality: 0.6}
    latency: {ttft_ms: {dist: lognormal, median: 400, sigma: 0.3}, tokens_per_s: {dist: constant, value: 50}}
    capacity: {concurrency: 10, queue_limit: 10}
  - name: alt
    models:
      - {name: alt-big, price_in: 2, price_out: 4, quality: 0.8}
      - {name: alt-small, price_in: 0, price_out: 0, quality: 0.5}
    substitutes: {big: alt-big, small: alt-small}
    latency: {ttft_ms: {dist: constant, value: 800}, tokens_per_s: {dist: uniform, low: 20, high: 40}}
    capacity: {concurrency: 10, queue_limit: 10}
    serves: [CN]
    incentive: {free_tokens: 5000000, deadline: 2024-06-20}
  - name: other
    models:
      - {name: big, price_in: 5, price_out: 10, quality: 0.9}
    latency: {ttft_ms: {dist: exponential, mean: 500}, tokens_per_s: {dist: constant, value: 100}}
    capacity: {concurrency: 10, queue_limit: 10}
behaviour:
  choice: {asc_wait: 0.5, asc_circumvent: -0.2, asc_migrate: 0.1, asc_churn: -1.0, price: -0.4,
           quality: 3.0, latency: -0.3, incentive: 0.25, switching_cost: -0.03, imitation: 1.5}
  relay: {extra_latency_ms: {dist: lognormal, median: 120, sigma: 0.5}, markup: 0.3}
slos: {p99_latency_ms: 1000, error_rate: 0.01}
"""
BEFORE_DEADLINE = dt.datetime(2024, 6, 10, tzinfo=UTC)
DEADLINE = dt.datetime(2024, 6, 20, tzinfo=UTC)

# By hand. Per request: 1000 tokens in, 500 out (the exponential's mean); mix 60 % big, 40 % small.
COST_INC = 0.6 * (1000 * 10 + 500 * 30) / 1e6 + 0.4 * (1000 * 1 + 500 * 2) / 1e6    # 0.0158 USD
COST_ALT = 0.6 * (1000 * 2 + 500 * 4) / 1e6 + 0.4 * 0.0                             # 0.0024 USD
COST_OTHER = 0.6 * (1000 * 5 + 500 * 10) / 1e6 + 0.4 * (1000 * 5 + 500 * 10) / 1e6  # no 'small': models[0]
Q_INC, Q_ALT, Q_OTHER = 0.6 * 1.0 + 0.4 * 0.6, 0.6 * 0.8 + 0.4 * 0.5, 0.9
LAT_INC = 400 / 1000 + 500 / 50          # lognormal: its median; constant 50 tokens/s
LAT_ALT = 800 / 1000 + 500 / 30          # uniform 20..40: its mean
LAT_OTHER = 500 / 1000 + 500 / 100       # exponential: its mean
SWITCHING = -0.03 * 4                    # lognormal migration days: its median


@pytest.fixture(scope="module")
def tiny() -> Scenario:
    return load_text(TINY, file="tiny.yaml").scenario


def test_costs_quality_latency(tiny: Scenario) -> None:
    seg = tiny.segment("dev")
    assert cost_per_request(tiny, seg, tiny.provider("inc")) == pytest.approx(COST_INC, abs=1e-15)
    assert cost_per_request(tiny, seg, tiny.provider("alt")) == pytest.approx(COST_ALT, abs=1e-15)
    assert cost_per_request(tiny, seg, tiny.provider("other")) == pytest.approx(COST_OTHER, abs=1e-15)
    assert [quality(seg, tiny.provider(n)) for n in ("inc", "alt", "other")] == pytest.approx(
        [Q_INC, Q_ALT, Q_OTHER], abs=1e-15)
    assert [latency_s(seg, tiny.provider(n)) for n in ("inc", "alt", "other")] == pytest.approx(
        [LAT_INC, LAT_ALT, LAT_OTHER], abs=1e-12)


def test_utilities_by_hand(tiny: Scenario) -> None:
    u = utilities(tiny, segment="dev", region="CN", now=BEFORE_DEADLINE, migrated_share={"alt": 0.2})
    expected = {
        "wait": 0.5 + 0.1,
        "circumvent": -0.2 + 0.2 + (-0.4) * 0.3 + (-0.3) * 120 / 1000,
        "churn": -1.0 + 0.4,
        "alt": (0.1 + 0.3 + SWITCHING + (-0.4) * (COST_ALT / COST_INC - 1) + 3.0 * (Q_ALT - Q_INC)
                + (-0.3) * (LAT_ALT - LAT_INC) + 0.25 * math.log1p(5.0) + 1.5 * 0.2),
        "other": (0.1 + 0.3 + SWITCHING + (-0.4) * (COST_OTHER / COST_INC - 1) + 3.0 * (Q_OTHER - Q_INC)
                  + (-0.3) * (LAT_OTHER - LAT_INC) + 0.25 * math.log1p(0.0) + 1.5 * 0.0),
    }
    assert list(u) == list(expected)  # the order is part of the contract
    for name, value in expected.items():
        assert u[name] == pytest.approx(value, abs=1e-12), name


def test_relay_latency_may_be_given(tiny: Scenario) -> None:
    u = utilities(tiny, segment="dev", region="CN", now=BEFORE_DEADLINE, migrated_share={},
                  relay_extra_ms=1000.0)
    assert u["circumvent"] == pytest.approx(-0.2 + 0.2 + (-0.4) * 0.3 + (-0.3) * 1.0, abs=1e-12)


def test_providers_that_do_not_serve_the_region_are_absent(tiny: Scenario) -> None:
    u = utilities(tiny, segment="dev", region="US", now=BEFORE_DEADLINE, migrated_share={"alt": 0.9})
    assert list(u) == ["wait", "circumvent", "churn", "other"]
    assert serves(tiny.provider("alt"), "CN") and not serves(tiny.provider("alt"), "US")
    assert serves(tiny.provider("other"), "KP")  # serves: [all] by default


def test_excluded_alternatives(tiny: Scenario) -> None:
    u = utilities(tiny, segment="dev", region="CN", now=BEFORE_DEADLINE, migrated_share={},
                  exclude=frozenset({"circumvent", "alt"}))
    assert list(u) == ["wait", "churn", "other"]
    full = utilities(tiny, segment="dev", region="CN", now=BEFORE_DEADLINE, migrated_share={})
    assert u == {k: full[k] for k in ("wait", "churn", "other")}


def test_incentives_vanish_after_the_deadline(tiny: Scenario) -> None:
    alt = tiny.provider("alt")
    assert incentive_mtokens(alt, DEADLINE - dt.timedelta(microseconds=1)) == 5.0
    assert incentive_mtokens(alt, DEADLINE) == 0.0
    assert incentive_mtokens(tiny.provider("other"), BEFORE_DEADLINE) == 0.0
    before = utilities(tiny, segment="dev", region="CN", now=BEFORE_DEADLINE, migrated_share={})
    after = utilities(tiny, segment="dev", region="CN", now=DEADLINE, migrated_share={})
    assert before["alt"] - after["alt"] == pytest.approx(0.25 * math.log1p(5.0), abs=1e-12)
    assert {k: v for k, v in before.items() if k != "alt"} == {k: v for k, v in after.items() if k != "alt"}


def test_incentive_without_deadline_lasts(scenario: Scenario) -> None:
    zhipu = scenario.provider("zhipu")
    assert incentive_mtokens(zhipu, dt.datetime(2099, 1, 1, tzinfo=UTC)) == 150.0


def test_typical() -> None:
    from scenarios.distributions import Constant, Exponential, Lognormal

    assert typical(Lognormal(dist="lognormal", median=7, sigma=2)) == 7
    assert typical(Exponential(dist="exponential", mean=3)) == 3
    assert typical(Constant(dist="constant", value=-1)) == -1


# ---------------------------------------------------------------- logit


def test_probabilities_by_hand() -> None:
    probs = probabilities({"a": 0.0, "b": math.log(2), "c": math.log(5)})
    assert list(probs) == ["a", "b", "c"]
    assert [probs["a"], probs["b"], probs["c"]] == pytest.approx([1 / 8, 2 / 8, 5 / 8], abs=1e-15)


def test_probabilities_sum_to_one(tiny: Scenario) -> None:
    u = utilities(tiny, segment="dev", region="CN", now=BEFORE_DEADLINE, migrated_share={"alt": 0.2})
    probs = probabilities(u)
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-15)
    total = sum(math.exp(v) for v in u.values())
    for name, value in u.items():
        assert probs[name] == pytest.approx(math.exp(value) / total, abs=1e-15)


def test_softmax_is_stable_for_huge_utilities() -> None:
    assert probabilities({"a": 1000.0, "b": 1000.0 - math.log(3)}) == pytest.approx(
        {"a": 0.75, "b": 0.25}, abs=1e-12)  # 1000 − ln 3 itself is only good to ~1e-13
    assert probabilities({"a": 1e6, "b": 0.0}) == {"a": 1.0, "b": 0.0}
    assert probabilities({"a": -1e6, "b": -1e6}) == {"a": 0.5, "b": 0.5}


def test_choose_frequencies_match_probabilities() -> None:
    probs = {"wait": 0.5, "circumvent": 0.3, "churn": 0.15, "alt": 0.05}
    rng = np.random.default_rng(20240709)
    n = 100_000
    draws = [choose(probs, rng) for _ in range(n)]
    for name, p in probs.items():
        sd = math.sqrt(n * p * (1 - p))
        assert abs(draws.count(name) - n * p) <= 3.29 * sd, name  # 99.9 % binomial interval


def test_choose_uses_one_uniform_per_call() -> None:
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    choose({"x": 0.2, "y": 0.8}, a)
    b.random()
    assert a.random() == b.random()


def test_choose_falls_back_to_the_last_alternative() -> None:
    # Rounding can leave the cumulative sum a hair below 1; the last alternative takes the rest.
    assert choose({"x": 0.0, "y": 0.0}, np.random.default_rng(1)) == "y"


def _reference_choose(probs: dict[str, float], u: float) -> str:
    """choose as it was: a running sum from 0.0, the first alternative it passes u at."""
    acc, last = 0.0, ""
    for name, p in probs.items():
        acc += p
        last = name
        if u < acc:
            return name
    return last


class _Uniforms:
    """A generator whose random() hands out given values."""

    def __init__(self, values: list[float]) -> None:
        self.values = values

    def random(self) -> float:
        return self.values.pop(0)


def test_choose_is_the_running_sum_reference_bit_for_bit() -> None:
    """choose (a bisection of accumulate's sums) picks what the running-sum loop picked, for
    uniforms on, just below and just above every sum, zero probabilities first, between and
    last, sums short of 1, and no alternative at all."""
    rng = np.random.default_rng(9)
    cases = [{}, {"x": 0.0, "y": 0.0}, {"x": 1.0}, {"a": 0.0, "b": 0.3, "c": 0.0, "d": 0.7, "e": 0.0}]
    for _ in range(200):
        w = rng.random(int(rng.integers(1, 9))) * (rng.random(9)[:1] < 0.8)
        w[rng.random(w.size) < 0.3] = 0.0
        total = w.sum()
        cases.append({f"k{i}": (v / total if total else 0.0) for i, v in enumerate(w.tolist())})
    for probs in cases:
        sums = [0.0]
        for p in probs.values():
            sums.append(sums[-1] + p)
        us = [0.0, 0.5, float(np.nextafter(1.0, 0.0))]
        us += [v for t in sums if 0.0 <= t < 1.0 for v in (t, float(np.nextafter(t, 0.0)),
                                                               float(np.nextafter(t, 2.0)))]
        us = [u for u in us if 0.0 <= u < 1.0]
        for u in us:
            assert choose(probs, _Uniforms([u])) == _reference_choose(probs, u), (probs, u)


# ---------------------------------------------------------------- Bass diffusion and hazards


def test_bass_cdf_known_values() -> None:
    p, q = 0.03, 0.38
    e = math.exp(-(0.03 + 0.38) * 10)
    assert bass_cdf(p, q, 10) == pytest.approx((1 - e) / (1 + (0.38 / 0.03) * e), abs=1e-15)
    assert bass_cdf(p, q, 0) == 0.0
    assert bass_cdf(p, q, 1e6) == pytest.approx(1.0, abs=1e-15)
    assert bass_cdf(0.0, q, 10) == 0.0  # nobody innovates: nobody starts
    assert bass_cdf(0.1, 0.0, 7) == pytest.approx(1 - math.exp(-0.7), abs=1e-15)  # q=0: exponential


@pytest.mark.parametrize("t", [0.5, 3.0, 12.0, 40.0])
def test_bass_cdf_solves_the_bass_equation(t: float) -> None:
    # dF/dt = (p + q F)(1 − F), checked by a central difference.
    p, q, h = 0.003, 0.08 * 5, 1e-5
    deriv = (bass_cdf(p, q, t + h) - bass_cdf(p, q, t - h)) / (2 * h)
    f = bass_cdf(p, q, t)
    assert deriv == pytest.approx((p + q * f) * (1 - f), rel=1e-7)


def test_anticipation_hazard_and_chance() -> None:
    assert anticipation_hazard(Bass(p=0.003, q=0.08), 0.25) == pytest.approx(0.003 + 0.08 * 0.25, abs=1e-15)
    assert anticipation_hazard(Bass(p=0.003, q=0.08), 0.0) == 0.003
    assert chance_within(0.023, 3) == pytest.approx(1 - math.exp(-0.069), abs=1e-15)
    assert chance_within(0.0, 100) == 0.0
    # The hazard −ln(1−p) per day gives chance p within a day (how detection per_day is meant).
    assert chance_within(-math.log(1 - 0.25), 1) == pytest.approx(0.25, abs=1e-15)
