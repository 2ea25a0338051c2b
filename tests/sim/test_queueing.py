"""The request-level queueing engine against queueing theory (Erlang C, Erlang B, M/M/c/K)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scenarios.distributions import sample
from scenarios.loader import load
from sim.queueing import (
    erlang_b,
    erlang_b_vector,
    erlang_c,
    fcfs,
    mmc_mean_wait,
    mmck,
    sample_mmck_waits,
)

REPLICATIONS = 20
CUSTOMERS = 60_000
WARM_UP = 5_000
T_975 = 2.093  # Student t, 19 degrees of freedom


def _mmc_parameters(overrides: tuple[str, ...] = ()) -> tuple[float, int, int | None, object]:
    """λ (per second), c, queue limit and the service-time distribution, from mmc-validation."""
    s = load("mmc-validation", overrides).scenario
    seg, provider, region = s.segments[0], s.providers[0], s.regions[0]
    rate = region.organisations * seg.requests_per_hour.mean() / 3600.0
    assert seg.tokens_out.mean() == 0  # service time = time to first token
    return rate, provider.capacity.concurrency, provider.capacity.queue_limit, provider.latency.ttft_ms


def _replications(rate: float, servers: int, limit: int | None,
                  service: object) -> list[tuple[float, float, float]]:
    """(mean wait, P(wait), P(reject)) per seeded replication, after the warm-up cut."""
    out = []
    for seq in np.random.SeedSequence(2024).spawn(REPLICATIONS):
        rng = np.random.default_rng(seq)
        arrivals = np.cumsum(rng.exponential(1.0 / rate, CUSTOMERS))
        services = sample(service, rng, CUSTOMERS) / 1000.0  # type: ignore[arg-type]
        res = fcfs(arrivals, services, servers=servers, queue_limit=limit)
        wait, rejected = res.wait[WARM_UP:], res.rejected[WARM_UP:]
        admitted = wait[~rejected]
        out.append((float(admitted.mean()), float((admitted > 0).mean()), float(rejected.mean())))
    return out


def _ci(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values)
    half = T_975 * arr.std(ddof=1) / math.sqrt(arr.size)
    return float(arr.mean() - half), float(arr.mean() + half)


def test_mmc_scenario_states_the_theory() -> None:
    rate, c, _, service = _mmc_parameters()
    mu = 1000.0 / service.mean()  # type: ignore[attr-defined]
    assert (rate, c, mu) == (6.0, 8, 1.0)
    assert erlang_c(c, rate / mu) == pytest.approx(0.356981, abs=1e-6)
    assert mmc_mean_wait(c, rate, mu) == pytest.approx(0.178491, abs=1e-6)
    assert erlang_b(c, rate / mu) == pytest.approx(0.121876, abs=1e-6)


def test_erlang_c_mean_wait_and_wait_probability_within_confidence_interval() -> None:
    rate, c, limit, service = _mmc_parameters()
    runs = _replications(rate, c, limit, service)
    lo, hi = _ci([r[0] for r in runs])
    assert lo <= mmc_mean_wait(c, rate, 1.0) <= hi
    lo, hi = _ci([r[1] for r in runs])
    assert lo <= erlang_c(c, rate) <= hi
    assert all(r[2] == 0.0 for r in runs)  # a queue this long never overflows


def test_erlang_b_blocking_with_no_queue() -> None:
    rate, c, limit, service = _mmc_parameters(("providers[0].capacity.queue_limit=0",))
    assert limit == 0
    runs = _replications(rate, c, limit, service)
    lo, hi = _ci([r[2] for r in runs])
    assert lo <= erlang_b(c, rate) <= hi
    assert all(r[1] == 0.0 for r in runs)  # nobody waits: admitted means served at once


def test_finite_queue_matches_mmck() -> None:
    rate, c, _, service = _mmc_parameters()
    runs = _replications(rate * 1.2, c, 4, service)   # overloaded-ish: a = 7.2, K = c + 4
    theory = mmck(c, 4, np.array([7.2]))
    lo, hi = _ci([r[2] for r in runs])
    assert lo <= theory.p_reject[0] <= hi
    # P(wait | admitted) from the sampled waiting-time law agrees with the engine too
    waits = sample_mmck_waits(c, 4, np.full(200_000, 7.2), 1.0, np.random.default_rng(1))
    lo, hi = _ci([r[0] for r in runs])
    assert lo <= waits.mean() <= hi


def test_erlang_b_vector_agrees_with_the_recursion() -> None:
    loads = np.array([0.0, 0.5, 6.0, 7.9, 40.0, 3000.0])
    got = erlang_b_vector(8, loads)
    assert got[0] == 0.0
    np.testing.assert_allclose(got[1:5], [erlang_b(8, a) for a in loads[1:5]], rtol=1e-12)
    assert got[5] == pytest.approx(erlang_b(8, 3000.0), rel=1e-9)
    far = erlang_b_vector(200_000, np.array([3000.0]))
    assert 0.0 <= far[0] < 1e-30


def test_fcfs_exact_timeline() -> None:
    # two servers, arrivals at 0, 0, 0, 1, 5; services 3, 2, 4, 1, 1; one waiting place
    res = fcfs(np.array([0.0, 0.0, 0.0, 1.0, 5.0]), np.array([3.0, 2.0, 4.0, 1.0, 1.0]),
               servers=2, queue_limit=1)
    # c0 on s1 [0,3); c1 on s2 [0,2); c2 waits for s2, starts 2; c3 arrives at 1 with the
    # queue full (c2 waiting) → rejected; c4 at 5: s1 free since 3 → no wait
    assert res.rejected.tolist() == [False, False, False, True, False]
    assert np.nan_to_num(res.wait, nan=-1.0).tolist() == [0.0, 0.0, 2.0, -1.0, 0.0]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 100), st.floats(0.001, 50)), min_size=1, max_size=60))
def test_infinite_servers_never_wait(jobs: list[tuple[float, float]]) -> None:
    """M/G/∞ (at least as many servers as requests): nobody ever waits or is rejected."""
    jobs.sort()
    arrivals = np.array([a for a, _ in jobs])
    services = np.array([s for _, s in jobs])
    res = fcfs(arrivals, services, servers=len(jobs), queue_limit=0)
    assert not res.rejected.any()
    assert np.all(res.wait == 0.0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 100), st.floats(0.001, 50)), min_size=1, max_size=60),
       st.integers(1, 4), st.integers(0, 5))
def test_fcfs_invariants(jobs: list[tuple[float, float]], servers: int, limit: int) -> None:
    """Starts never go backwards (FCFS); waits are non-negative; a rejection means a full house."""
    jobs.sort()
    arrivals = np.array([a for a, _ in jobs])
    services = np.array([s for _, s in jobs])
    res = fcfs(arrivals, services, servers=servers, queue_limit=limit)
    admitted = ~res.rejected
    starts = arrivals[admitted] + res.wait[admitted]
    assert np.all(res.wait[admitted] >= 0.0)
    assert np.all(np.diff(starts) >= -1e-9)
    ends = starts + services[admitted]
    for i in np.flatnonzero(res.rejected):
        t = arrivals[i]
        in_system = int(np.sum((starts <= t) & (ends > t)) + np.sum(starts > t))
        before = arrivals[admitted] <= t
        assert int(np.sum(before & (ends > t))) >= servers + limit or in_system >= servers + limit
