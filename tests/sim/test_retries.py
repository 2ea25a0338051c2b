"""Client retries multiply throttled traffic (and not a 403 block); free tokens come first."""

from __future__ import annotations

import numpy as np

from scenarios.loader import load
from scenarios.rundir import PATHS
from sim.replication import FLOW_METRICS, Setup, run_replication

SCALE = 0.02


def _run(*overrides: str):
    s = load("openai-2024-cn-hk", overrides).scenario
    setup = Setup.of(s, 0, SCALE)
    return setup, run_replication(setup, 0, np.random.SeedSequence(4).spawn(1)[0])


def _flow(result, metric: str) -> np.ndarray:
    return result.flows[FLOW_METRICS.index(metric)]


def test_a_403_block_is_not_retried() -> None:
    _setup, result = _run()
    inc = 0
    assert _flow(result, "blocked")[:, :, inc].sum() > 0
    assert _flow(result, "retries")[:, :, inc].sum() == 0


def test_a_429_throttle_is_retried_by_the_sdk_policy() -> None:
    """openai SDK: max_retries 2 on 429 — each throttled request becomes three denied attempts."""
    _setup, result = _run("policy.openai.stages[1].action=throttle",
                         "policy.openai.stages[1].response={preset: openai_429}")
    inc = 0
    blocked = _flow(result, "blocked")[:, :, inc]
    retries = _flow(result, "retries")[:, :, inc]
    assert blocked.sum() > 0
    np.testing.assert_array_equal(3 * retries, 2 * blocked)
    # The run-wide figure, attempts per first denied attempt, also counts the alternatives' own
    # 429s (capacity scales with --scale, so their small pools reject at peaks), whose retries
    # often succeed. With F their first denied attempts, R_alt their retries and X their 429s:
    # R_alt <= 2F (two retries at most) and F <= X (a first denied attempt is a 429), so
    # 1 + (2·F_inc + R_alt) / (F_inc + F) lies between its value at F = X and 3 (F = R_alt / 2).
    first_inc = float(blocked.sum()) / 3
    r_alt = float(_flow(result, "retries")[:, :, 1:].sum())
    x_alt = float(result.rejected[1:].sum())
    assert r_alt > 0   # the alternatives' 429s are part of this run's figure
    lo = 1 + (2 * first_inc + r_alt) / (first_inc + x_alt)
    assert lo <= result.headline["retry_amplification"] <= 3.0


def test_partial_throttle_lets_retries_through() -> None:
    _setup, result = _run("policy.openai.stages[1].action=throttle",
                         "policy.openai.stages[1].response={preset: openai_429}",
                         "policy.openai.stages[1].throttle_fraction=0.5")
    inc = 0
    requests = _flow(result, "requests")[:, :, inc]
    served = _flow(result, "allowed")[:, :, inc] + _flow(result, "warned")[:, :, inc]
    blocked = _flow(result, "blocked")[:, :, inc]
    retries = _flow(result, "retries")[:, :, inc]
    assert np.array_equal(requests, served + blocked + _flow(result, "failed")[:, :, inc])
    # a denied attempt is retried unless it was the last; half of the retries pass
    assert 0 < retries.sum() < blocked.sum()
    assert 1.0 < result.headline["retry_amplification"] < 3.0


def test_free_tokens_only_where_offered() -> None:
    setup, result = _run()
    names = [p.name for p in setup.s.providers]
    free = _flow(result, "free_tokens").sum(axis=(0, 1, 3))
    assert free[names.index("deepseek")] == 0 and free[names.index("openai")] == 0
    assert free[names.index("zhipu")] > 0
    # only migrated organisations get credits: failover traffic never does
    assert _flow(result, "free_tokens")[..., PATHS.index("failover")].sum() == 0
