"""The mock providers' timing: the scenario's latency laws per request, divided only by the scale."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.mock_upstream_timing import MIN_TOKENS_PER_S, draw_timing
from scenarios.distributions import Constant, Lognormal
from scenarios.loader import load
from scenarios.schema import Latency


def test_draws_follow_the_providers_laws() -> None:
    latency = load("openai-2024-cn-hk").scenario.incumbent.latency
    assert isinstance(latency.ttft_ms, Lognormal) and isinstance(latency.tokens_per_s, Lognormal)
    rng = np.random.default_rng(7)
    n = 20_000
    draws = [draw_timing(latency, rng) for _ in range(n)]
    ttft_ms = np.log([d.ttft_s * 1000 for d in draws])
    tps = np.log([1.0 / d.per_token_s for d in draws])
    for logs, law in ((ttft_ms, latency.ttft_ms), (tps, latency.tokens_per_s)):
        # mean and sd of log(x) within 4 standard errors of the law's
        assert abs(logs.mean() - np.log(law.median)) < 4 * law.sigma / np.sqrt(n)
        assert abs(logs.std() - law.sigma) < 4 * law.sigma / np.sqrt(2 * n)


def test_time_scale_and_spike_and_the_total() -> None:
    latency = Latency(ttft_ms=Constant(dist="constant", value=400.0),
                      tokens_per_s=Constant(dist="constant", value=50.0))
    rng = np.random.default_rng(0)
    true = draw_timing(latency, rng)
    assert (true.ttft_s, true.per_token_s) == (0.4, 0.02)
    assert true.total_s(100) == pytest.approx(0.4 + 2.0)
    scaled = draw_timing(latency, rng, spike_s=0.6, time_scale=10.0)
    assert scaled.ttft_s == pytest.approx(0.1) and scaled.per_token_s == pytest.approx(0.002)


def test_a_zero_rate_is_raised_to_the_minimum() -> None:
    # the schema refuses a speed law that draws 0 (scenarios.distributions.Positive); the mock's
    # floor still guards a latency built without validation
    latency = Latency.model_construct(ttft_ms=Constant(dist="constant", value=0.0),
                                      tokens_per_s=Constant(dist="constant", value=0.0))
    t = draw_timing(latency, np.random.default_rng(0))
    assert t.per_token_s == 1.0 / MIN_TOKENS_PER_S
