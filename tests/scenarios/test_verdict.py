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


# ---------------------------------------------------------------- the paired replications' ranks


def test_rank_p_counts_the_replications_beyond_the_margin_ties_against_the_claim() -> None:
    from scenarios.verdict import rank_p

    sim = [0.10, 0.20, 0.30, 0.40]
    # 0.36 - 0.05 = 0.31: one replication (0.40) at or above it; 0.36 + 0.05 = 0.41: all four below
    assert rank_p(sim, 0.36, 0.05) == (2 / 5, 5 / 5)
    # exactly at a replication once shifted: the tie counts against the claim
    assert rank_p(sim, 0.45, 0.05) == (2 / 5, 5 / 5)
    assert rank_p(sim, 0.4501, 0.05) == (1 / 5, 5 / 5)
    assert rank_p(sim, 0.0, 0.05) == (5 / 5, 1 / 5)


def test_the_rank_test_holds_its_level_whatever_the_law() -> None:
    """Under "the load test is one more draw of the replications' law" the one-sided rank
    p-value is uniform on {1/(R+1), ..., 1}: P(p <= j/(R+1)) = j/(R+1) exactly for a continuous
    law, and at most that with ties (a count): checked at j = 1, 2 for R = 39 within 4 sd."""
    from scenarios.verdict import rank_p

    rng = np.random.default_rng(20261204)
    trials, reps = 20_000, 39
    for law in ("lognormal", "poisson"):
        draws = (rng.lognormal(0.0, 1.0, (trials, reps + 1)) if law == "lognormal"
                 else rng.poisson(3.0, (trials, reps + 1)).astype(float))
        ps = np.array([rank_p(row[:reps].tolist(), float(row[reps]), 0.0)[0] for row in draws])
        for j in (1, 2):
            level = j / (reps + 1)
            hit = float(np.mean(ps <= level + 1e-12))
            sd = math.sqrt(level * (1 - level) / trials)
            if law == "lognormal":
                assert abs(hit - level) < 4 * sd, (law, j, hit)
            else:   # ties with the replications count against the claim: never above the level
                assert hit < level + 4 * sd, (law, j, hit)


def test_a_count_that_did_not_vary_over_ten_replications_is_no_disagreement() -> None:
    """The case a 200-user load test met: all 10 paired replications had the same share, so the
    interval has zero width and any difference past the margin read "disagree"; by rank the load
    test outside all 10 is p = 2/11 — inconclusive, saying how many replications could tell."""
    from scenarios.verdict import MIN_PAIRED_REPLICATIONS, PAIRED_REPLICATIONS

    ten = judge("orgs_share.migrating", [0.0021] * 10, 0.0233, 0.0, 200, share=True, paired=True)
    assert ten.ci95 == (pytest.approx(0.0212), pytest.approx(0.0212))   # zero width
    assert ten.verdict == INCONCLUSIVE and ten.rank_p == pytest.approx(2 / 11)
    assert ten.why == ("the interval lies beyond the margin ±1.00 pt, but the load test's rank among "
                       "10 paired replications is p = 0.18, above 0.05: its spread rests on too few "
                       "of them — simulate --sample-of with --replications 39 or more can tell")
    assert (MIN_PAIRED_REPLICATIONS, PAIRED_REPLICATIONS) == (39, 40)
    # the fewest that can tell, and the default of a paired simulation: outside all, p = 2/(R+1)
    for reps in (MIN_PAIRED_REPLICATIONS, PAIRED_REPLICATIONS):
        v = judge("orgs_share.migrating", [0.0021] * reps, 0.0233, 0.0, 200, share=True, paired=True)
        assert (v.verdict, v.rank_p) == (DISAGREE, pytest.approx(2 / (reps + 1)))
    assert judge("x", [0.0021] * 38, 0.0233, 0.0, 200, share=True, paired=True).verdict == INCONCLUSIVE
    # inside the margin of one replication of 40 that reached it: (1 + 1)/41 one-sided, 4/41 both
    near = [0.0021] * 39 + [0.0140]
    v = judge("orgs_share.migrating", near, 0.0233, 0.0025, 200, share=True, paired=True)
    assert v.rank == (pytest.approx(2 / 41), pytest.approx(1.0)) and v.rank_p == pytest.approx(4 / 41)
    assert v.verdict == INCONCLUSIVE
    # the forecast (unpaired) has no ranks: its error is the load test's own
    unpaired = judge("x", [0.0021] * 10, 0.0233, 0.0, 200, share=True)
    assert unpaired.verdict == DISAGREE and math.isnan(unpaired.rank_p)
    assert unpaired.as_dict()["rank_p"] is None and ten.as_dict()["rank_p"] == pytest.approx(2 / 11)


def test_fisher_combines_independent_p_values_exactly() -> None:
    from scenarios.verdict import fisher_p

    assert fisher_p([0.2]) == pytest.approx(0.2)
    a, b = 0.1, 0.03
    assert fisher_p([a, b]) == pytest.approx(a * b * (1 - math.log(a * b)))   # chi² with 4 df
    x = -2 * math.log(0.1 * 0.2 * 0.3)
    assert fisher_p([0.1, 0.2, 0.3]) == pytest.approx(math.exp(-x / 2) * (1 + x / 2 + (x / 2) ** 2 / 2))
    # uniform p-values: the combination is uniform too (level 5 % within 4 sd)
    rng = np.random.default_rng(7)
    ps = [fisher_p(rng.random(3).tolist()) for _ in range(20_000)]
    hit = float(np.mean(np.array(ps) <= 0.05))
    assert abs(hit - 0.05) < 4 * math.sqrt(0.05 * 0.95 / 20_000), hit


def test_pooled_load_tests_combine_their_ranks() -> None:
    from scenarios.verdict import pooled

    # two load tests, each outside all 10 of its paired replications: 1/11 each, one-sided
    parts = [judge("orgs_share.churned", [0.02] * 10, 0.06, 0.0, 200, share=True, paired=True)
             for _ in range(2)]
    p = pooled(parts, share=True, unit="organisations")
    combined = (1 / 11) ** 2 * (1 - math.log((1 / 11) ** 2))
    assert p.rank[0] == pytest.approx(combined) and p.rank_p == pytest.approx(2 * combined)
    assert p.verdict == INCONCLUSIVE and "the 20 replications of 2 paired simulations (Fisher)" in p.why
    # three of them: 2 × 0.0257 = 0.051, still not; four: past it
    assert pooled(parts * 2, share=True).verdict == DISAGREE
    assert pooled(parts + parts[:1], share=True).rank_p == pytest.approx(0.0514, abs=1e-3)
