"""SLO thresholds per region and path: judged exactly, breaches named one per line, exit 1, and
the default scenario's thresholds consistent with its own no-block latency law."""

from __future__ import annotations

import numpy as np
import pytest

from loadtests import analysis
from loadtests.analysis import Joined
from loadtests.run import FAILING_CHECKS, verdict
from scenarios.distributions import sample
from scenarios.loader import load
from tests.loadtests.test_analysis import rec, row

TIGHT = ("slos.min_requests=10",
         "slos.thresholds=[{region: US, path: direct, ttft_p99_ms: 500, latency_p99_ms: 2000},"
         " {region: DE, path: direct, latency_p99_ms: 99999}, {region: CN, path: relay,"
         " ttft_p99_ms: 100}]")


def _us(i: int, latency_s: float, ttft_ms: float | None) -> Joined:
    r = rec(i, "allow", region="US", org="us-startup-000001", intended=100.0 + i,
            done=100.0 + i + latency_s, stream=ttft_ms is not None, ttft_ms=ttft_ms)
    return Joined(r, row(i, "allow", home_region="US", country="US", org="us-startup-000001"))


def _joined() -> list[Joined]:
    # 100 served US requests: latency 1.0 s .. 2.98 s (p99 2.9602 s); 50 streamed, TTFT 100..590 ms
    out = [_us(i, 1.0 + 0.02 * i, 100.0 + 10 * (i // 2) if i % 2 == 0 else None)
           for i in range(100)]
    out += [Joined(rec(200 + i, "allow", region="DE", done=100.5 + 200 + i, intended=300.0 + i),
                   row(200 + i, "allow", home_region="DE", country="DE")) for i in range(5)]
    return out


def test_thresholds_are_judged_on_the_regions_served_requests_by_path() -> None:
    s = load("openai-2024-cn-hk", TIGHT).scenario
    checks = analysis.threshold_checks(s, _joined())
    got = [(c["region"], c["path"], c["metric"], c["requests"], c["passed"]) for c in checks]
    assert got == [("US", "direct", "ttft_p99_ms", 50, False),
                   ("US", "direct", "latency_p99_ms", 100, False),
                   ("DE", "direct", "latency_p99_ms", 5, None),   # 5 < min_requests: not judged
                   ("CN", "relay", "ttft_p99_ms", 0, None)]
    ttft = np.percentile([100.0 + 10 * k for k in range(50)], 99)
    assert checks[0]["value"] == ttft
    assert checks[1]["value"] == pytest.approx(np.percentile(
        [(1.0 + 0.02 * i) * 1000 for i in range(100)], 99), abs=1e-6)


def test_a_breach_fails_the_run_with_one_line_per_breached_threshold() -> None:
    s = load("openai-2024-cn-hk", TIGHT).scenario
    slo = analysis.slo_check(s, _joined())
    assert slo["passed"] is False and "slo" in FAILING_CHECKS
    assert slo["breaches"] == ["US direct: TTFT p99 (streamed) 585 ms > 500 ms (n=50)",
                               "US direct: latency p99 2960 ms > 2000 ms (n=100)"]
    others = {k: {"skipped": True, "reason": "not in this test"}
              for k in ("reconciliation", "revenue", "tokens", "rate_accuracy")}
    summary = {"checks": {**others, "slo": slo}, "passed": False, "failed_checks": ["slo"]}
    lines = verdict(summary).splitlines()
    assert lines[0] == "load test: FAILED (slo)"
    assert lines[-2:] == ["  SLO breached: US direct: TTFT p99 (streamed) 585 ms > 500 ms (n=50)",
                          "  SLO breached: US direct: latency p99 2960 ms > 2000 ms (n=100)"]


def test_the_same_requests_pass_the_default_thresholds() -> None:
    slo = analysis.slo_check(load("openai-2024-cn-hk").scenario, _joined())
    assert slo["passed"] is True and slo["breaches"] == []


def test_default_thresholds_hold_for_the_no_block_baseline_latency_law() -> None:
    """The simulator's sum (sim.latency: RTT of the path + queue + TTFT + tokens / rate) for the
    incumbent, by region and path, without the block (the incumbent's queue is empty at its
    capacity): each threshold is above its p99, and above the 99th percentile of a p99 measured
    on ``min_requests`` requests, so a baseline run fails it in under 1 % of runs."""
    s = load("openai-2024-cn-hk").scenario
    p = s.incumbent
    rng = np.random.default_rng(20240709)
    n = 200_000
    for t in s.slos.thresholds:
        region = s.region(t.region)
        weights = np.array([g.share.get(t.region, 0.0) * g.requests_per_hour.mean()
                            for g in s.segments])
        seg = rng.choice(len(s.segments), size=n, p=weights / weights.sum())
        tokens = np.zeros(n)
        for i, g in enumerate(s.segments):
            mine = seg == i
            tokens[mine] = np.maximum(np.rint(sample(g.tokens_out, rng, int(mine.sum()))), 0)
        if t.path == "direct":
            rtt = sample(region.rtt_ms.direct, rng, n)
        else:
            rtt = sample(region.rtt_ms.relay, rng, n) + sample(s.behaviour.relay.extra_latency_ms,
                                                                rng, n)
        first = rtt + sample(p.latency.ttft_ms, rng, n)
        total = first + tokens / sample(p.latency.tokens_per_s, rng, n) * 1000
        runs = rng.integers(0, n, size=(1000, s.slos.min_requests))  # 1,000 small runs
        if t.ttft_p99_ms is not None:
            assert np.percentile(first, 99) < 0.85 * t.ttft_p99_ms, t
            assert np.percentile(np.percentile(first[runs], 99, axis=1), 99) < t.ttft_p99_ms, t
        if t.latency_p99_ms is not None:
            assert np.percentile(total, 99) < 0.85 * t.latency_p99_ms, t
            assert np.percentile(np.percentile(total[runs], 99, axis=1), 99) < t.latency_p99_ms, t
    assert s.slos.p99_latency_ms >= max(t.latency_p99_ms or 0 for t in s.slos.thresholds
                                        if t.path == "direct")


def test_an_informative_check_that_is_off_does_not_read_failed() -> None:
    """Rate accuracy is not among FAILING_CHECKS: off, it reads "off", beside "all checks passed"."""
    assert "rate_accuracy" not in FAILING_CHECKS
    others = {k: {"skipped": True, "reason": "not in this test"}
              for k in ("reconciliation", "revenue", "tokens", "slo")}
    rate = {"passed": False, "judged_periods": 47, "judged_days": 120, "worst_error": 0.1333,
            "tolerance": 0.05, "send_lateness_ms": {"p99": 8.26}}
    summary = {"checks": {**others, "rate_accuracy": rate}, "passed": True, "failed_checks": []}
    lines = verdict(summary).splitlines()
    assert lines[0] == "load test: all checks passed"
    assert lines[-1] == ("  rate_accuracy   off      worst 13.33% over 120 days in 47 periods of "
                         "consecutive days with >= 50 sends (tolerance ±5%); send lateness p99 "
                         "8.3 ms (informative: does not fail the run)")


def test_a_run_in_scaled_time_judges_no_latency_and_every_error() -> None:
    s = load("openai-2024-cn-hk", TIGHT).scenario
    why = "time scaled ×40: not the scenario's latencies"
    slo = analysis.slo_check(s, _joined(), latencies_not_judged=why)
    # the same requests breach two latency thresholds in true time (above); here none is judged
    assert slo["passed"] is True and slo["breaches"] == []
    assert [t["passed"] for t in slo["thresholds"]] == [None, None, None, None]
    assert slo["overall"]["latency_judged"] is False and slo["latencies_not_judged"] == why
    others = {k: {"skipped": True, "reason": "not in this test"}
              for k in ("reconciliation", "revenue", "tokens", "rate_accuracy")}
    line = next(x for x in verdict({"checks": {**others, "slo": slo}, "passed": True,
                                    "failed_checks": []}).splitlines() if "slo" in x)
    assert line == (f"  slo             ok       DE/JP/SG/US: latencies not judged ({why}), "
                    "errors 0.00% (max 1.00%)")
    # an error is still judged: 2 of 105 requests failed is 1.9 % > 1 %
    joined = _joined()
    for i in (0, 1):
        joined[i] = Joined(rec(i, "failed", region="US", org="us-startup-000001"), None)
    failed = analysis.slo_check(s, joined, latencies_not_judged=why)
    assert failed["passed"] is False
    assert failed["breaches"][0] == "SLO regions: error rate 1.90% > 1.00% (n=105)"
