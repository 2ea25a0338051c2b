"""scenarios.verdict: the equivalence verdict and the cluster-robust ratio error, exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scenarios.verdict import AGREE, DISAGREE, INCONCLUSIVE, Z90, Z95, cluster_ratio_se, judge, margin


def test_margins() -> None:
    assert margin(0.5, share=True) == pytest.approx(0.05)
    assert margin(0.05, share=True) == 0.01          # one point below a 10 % share
    assert margin(4000.0, share=False) == pytest.approx(400.0)


def test_agree_when_the_90_interval_fits_the_margin() -> None:
    sim = [0.50, 0.50, 0.50, 0.50]
    v = judge("block_share.CN", sim, 0.52, 0.01, 1000, share=True)
    assert v.diff == pytest.approx(0.02)
    assert v.ci90 == pytest.approx((0.02 - Z90 * 0.01, 0.02 + Z90 * 0.01))
    assert v.verdict == AGREE                         # [0.0036, 0.0364] within ±0.05


def test_disagree_when_the_95_interval_is_outside_the_margin() -> None:
    v = judge("block_share.CN", [0.5] * 4, 0.62, 0.02, 1000, share=True)
    assert v.ci95[0] == pytest.approx(0.12 - Z95 * 0.02)
    assert v.verdict == DISAGREE                      # [0.081, 0.159] all above 0.05


def test_inconclusive_says_what_would_settle_it() -> None:
    v = judge("block_share.CN", [0.5] * 4, 0.51, 0.03, 400, share=True)
    assert v.verdict == INCONCLUSIVE                  # [-0.039, 0.059] crosses 0.05
    # the load test's error must fall to (0.05 - 0.01) / Z90: n x (Z90·0.03 / 0.04)² requests
    need = (Z90 * 0.03 / 0.04) ** 2
    assert v.why == (f"needs about {math.ceil(400 * need):,} load-test requests (has 400): about "
                     f"{math.ceil(need)}× this run — a longer --duration or a higher --rate, or "
                     f"--repeat {math.ceil(need)}")
    orgs = judge("orgs_share.migrated", [0.5] * 4, 0.51, 0.03, 400, share=True, unit="organisations")
    assert orgs.why.startswith(f"needs about {math.ceil(400 * need):,} load-test organisations")
    assert "more users (--users)" in orgs.why
    few = judge("block_share.MO", [0.5] * 4, 0.5, 0.0, 29, share=True)
    assert (few.verdict, few.why) == (INCONCLUSIVE, "29 load-test requests: fewer than 30, too few to judge")
    wide = judge("x", [0.5] * 4, 0.58, 0.1, 400, share=True)
    assert wide.verdict == INCONCLUSIVE and "beyond the margin" in wide.why


def test_the_simulations_spread_widens_the_interval() -> None:
    sim = [0.48, 0.52, 0.49, 0.51]
    v = judge("x", sim, 0.5, 0.0, 100, share=True)
    sd = float(np.std(sim, ddof=1))
    assert v.sim_sd == pytest.approx(sd)
    assert v.ci90[1] - v.ci90[0] == pytest.approx(2 * Z90 * sd / 2)   # sd / sqrt(4)


def test_nothing_to_judge_is_inconclusive() -> None:
    assert judge("x", [0.5], 0.5, 0.0, 0, share=True).verdict == INCONCLUSIVE


def test_cluster_ratio_se_matches_the_formula_and_grows_with_clustering() -> None:
    # 4 organisations of 10 requests: blocked all or nothing vs. 5 of 10 each
    lumpy = cluster_ratio_se([10, 10, 0, 0], [10, 10, 10, 10])
    even = cluster_ratio_se([5, 5, 5, 5], [10, 10, 10, 10])
    assert lumpy[0] == even[0] == 0.5
    assert lumpy[1] == pytest.approx(math.sqrt(4 / 3 * 4 * 25) / 40)
    assert even[1] == 0.0
    r, se = cluster_ratio_se([1], [3])
    assert (r, se) == (pytest.approx(1 / 3), math.inf)   # one cluster: no error estimate


def test_pooled_load_tests_weigh_their_differences_by_n() -> None:
    from scenarios.verdict import pooled

    a = judge("block_share.CN", [0.30] * 4, 0.32, 0.02, 300, share=True)
    b = judge("block_share.CN", [0.34] * 4, 0.33, 0.01, 100, share=True)
    p = pooled([a, b], share=True)
    assert p.n == 400 and p.replications == 8
    assert p.diff == pytest.approx(0.75 * 0.02 + 0.25 * -0.01)
    assert p.sim_mean == pytest.approx(0.75 * 0.30 + 0.25 * 0.34)
    se = math.sqrt((0.75 * 0.02) ** 2 + (0.25 * 0.01) ** 2)
    assert p.ci90 == pytest.approx((p.diff - Z90 * se, p.diff + Z90 * se))
    # pooling narrows a's interval (±3.3 → ±2.5 points), not yet inside the ±3.1-point margin
    assert (a.verdict, b.verdict, p.verdict) == (INCONCLUSIVE, AGREE, INCONCLUSIVE)
    assert p.ci90[1] - p.ci90[0] < a.ci90[1] - a.ci90[0] and p.margin == pytest.approx(0.031)
    assert pooled([a], share=True) is a


def test_what_settles_a_figure_reads_in_its_own_units() -> None:
    # a share: the difference and the margin in points, as the verdict table shows them
    hk = judge("block_share.HK", [0.2318] * 4, 0.2584, 0.05, 89, share=True)
    assert hk.why == ("the difference +2.66 pt is at or beyond the margin ±2.32 pt: a larger run "
                      "can only tell whether it is outside it")
    # a latency: in the unit its caller names
    slow = judge("latency_ms.direct.p95", [1000.0] * 4, 1150.0, 80.0, 500, share=False,
                 value_unit=" ms")
    assert slow.why == ("the difference +150 ms is at or beyond the margin ±100 ms: a larger run "
                        "can only tell whether it is outside it")


def test_a_run_past_practical_reach_is_not_offered() -> None:
    # unpaired, no simulation spread: need = (Z90·se / (m − |d|))², m = 0.05, d = 0.01
    def at(need: float) -> str:
        se = 0.04 * math.sqrt(need) / Z90
        v = judge("block_share.CN", [0.5] * 4, 0.51, se, 400, share=True)
        assert v.verdict == INCONCLUSIVE
        return v.why

    room = 0.1 * 0.5 - (0.51 - 0.5)   # the margin less the difference, as judged
    need = (Z90 * (0.04 * math.sqrt(99.5) / Z90) / room) ** 2
    assert at(99.5) == (f"needs about {math.ceil(400 * need):,} load-test requests (has 400): "
                        "about 100× this run — a longer --duration or a higher --rate, or --repeat 100")
    assert at(100.5) == ("only a run about 101× this one could settle the difference +1.00 pt "
                         "against the margin ±5.00 pt: past any practical run (over 100×)")
    # the demo's case: +694 ms against ±698.2 ms needs hundreds of thousands of runs
    v = judge("latency_ms.direct.tencent.p50", [6982.0] * 20, 7676.0, 1000.0, 33, share=False,
              value_unit=" ms")
    factor = math.ceil((Z90 * 1000.0 / (698.2 - 694.0)) ** 2)
    assert factor > 100_000
    assert v.why == (f"only a run about {factor:,}× this one could settle the difference +694 ms "
                     "against the margin ±698.2 ms: past any practical run (over 100×)")


def test_figures_name_the_unit_of_their_values() -> None:
    from scenarios.figures import _value_unit

    assert [_value_unit(k) for k in ("latency_ms.direct.p99", "ttft_ms.direct.openai.p50",
                                     "block_share.CN", "revenue_share.openai")] == [" ms", " ms", "", ""]
