"""The waiting-time samplers built once per state (:class:`sim.queueing.WaitLaw`) draw bit for
bit what the per-request code they replaced drew, from the same random numbers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sim.capacity import Hours, RetryClass, solve_hours
from sim.latency import hour_waits
from sim.queueing import MMcK, mmck, sample_mmck_waits, trunc_geometric, trunc_geometric_law

# ratios on both sides of 1: zero and subnormal, below, at and within 1e-12 of 1 (flat), just
# outside that, above, far above (a huge K·ln rho), and NaN
RATIOS = np.array([0.0, 1e-320, 1e-5, 0.3, 0.97, 1.0 - 1e-13, 1.0, 1.0 + 1e-13, 1.0 - 1e-11,
                   1.0 + 1e-11, 1.2, 1.43, 50.0, np.nan])


def _trunc_geometric_old(rho: np.ndarray, places: int, u: np.ndarray) -> np.ndarray:
    """The replaced code: every quantity computed per draw."""
    if places <= 0:
        return np.zeros_like(np.asarray(u, dtype=float))
    rho = np.maximum(np.asarray(rho, dtype=float), 1e-300)
    u = np.asarray(u, dtype=float)
    log_r = np.log(rho)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        lr = -np.abs(log_r)
        one_minus_rk = -np.expm1(places * lr)
        j = np.floor(np.log1p(-u * one_minus_rk) / lr)
        flat = np.abs(log_r) < 1e-12
        j = np.where(flat, np.floor(u * places), j)
        j = np.nan_to_num(j, nan=0.0, posinf=places - 1.0)
        j = np.clip(j, 0.0, places - 1.0)
        return np.where(log_r > 0, places - 1.0 - j, j)


def _sample_mmck_waits_old(servers: int, queue_limit: int, offered: np.ndarray,
                           service_rate: float | np.ndarray, rng: np.random.Generator,
                           state: MMcK | None = None) -> np.ndarray:
    """The replaced code: the law's constants computed per request."""
    a = np.asarray(offered, dtype=float)
    if state is None:
        state = mmck(servers, queue_limit, a)
    admitted = np.maximum(1.0 - state.p_reject, 1e-300)
    waits = rng.random(a.size) < state.p_wait / admitted
    ahead = _trunc_geometric_old(state.rho, queue_limit, rng.random(a.size))
    gam = rng.gamma(ahead + 1.0, 1.0 / (servers * service_rate))
    return np.where(waits, gam, 0.0)


def _hour_waits_old(h: Hours, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The replaced :func:`sim.latency.hour_waits`: each request's state gathered, then solved."""
    steady = h.steady.take(t)
    mu = h.mu[t]
    out = _sample_mmck_waits_old(h.servers, h.queue_limit, steady.rho * h.servers, mu, rng, steady)
    live = np.flatnonzero(h.fluid[t])
    if live.size == 0:
        return out
    tt = t[live]
    cmu = h.servers * mu[live]
    rate, q0, limit, span = h.rate_open[tt], h.q0[tt], float(h.queue_limit), h.seconds
    net = rate - cmu
    with np.errstate(divide="ignore", invalid="ignore"):
        t_full = np.where(net > 0, np.clip((limit - q0) / net, 0.0, span), span)
    mass_open = rate * t_full
    mass = mass_open + cmu * (span - t_full)
    u = rng.random(live.size) * mass
    when = np.where(u < mass_open, u / np.maximum(rate, 1e-300),
                    t_full + (u - mass_open) / np.maximum(cmu, 1e-300))
    queue = np.clip(q0 + net * when, 0.0, limit)
    busy = queue >= 1.0
    fluid_wait = rng.gamma(np.maximum(queue, 1.0), 1.0 / cmu)
    out[live] = np.where(busy, fluid_wait, out[live])
    return out


def _uniforms(n: int, seed: int) -> np.ndarray:
    """Uniforms with the edges 0 and the largest float below 1 among them."""
    u = np.random.default_rng(seed).random(n)
    u[::37] = 0.0
    u[1::41] = np.nextafter(1.0, 0.0)
    return u


def _same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("places", [0, 1, 2, 7, 100_000, 10**9])
@pytest.mark.parametrize("ratios", ["all", "below one", "above one", "flat"])
def test_trunc_geometric_at_each_ratio_is_the_old_one(places: int, ratios: str) -> None:
    rho = {"all": RATIOS, "below one": RATIOS[RATIOS < 0.99], "above one": RATIOS[RATIOS > 1.1],
           "flat": np.array([1.0, 1.0 - 1e-13])}[ratios]
    u = _uniforms(20_000, 5)
    at = np.random.default_rng(6).integers(0, rho.size, u.size)
    law = trunc_geometric_law(rho, places)
    _same(law.inverse(u, at), _trunc_geometric_old(rho[at], places, u))
    _same(trunc_geometric(rho[at], places, u), _trunc_geometric_old(rho[at], places, u))
    _same(law.inverse(u[:0], at[:0]), _trunc_geometric_old(rho[:0], places, u[:0]))
    # one ratio broadcast with all the draws
    _same(trunc_geometric(rho[-1:], places, u), _trunc_geometric_old(rho[-1:], places, u))


@pytest.mark.parametrize("servers, queue_limit", [(1, 0), (1, 1), (1, 5), (64, 0), (64, 1),
                                                  (64, 300), (8, 100_000)])
@pytest.mark.parametrize("rate", ["one", "per request"])
@pytest.mark.parametrize("given", [False, True])
def test_sample_mmck_waits_is_the_old_one(servers: int, queue_limit: int, rate: str,
                                          given: bool) -> None:
    rng = np.random.default_rng(9)
    offered = servers * np.concatenate([RATIOS[:-1], rng.uniform(0.0, 2.0, 3000)])
    mu: float | np.ndarray = 1.0 if rate == "one" else rng.uniform(0.5, 3.0, offered.size)
    for a in (offered, offered[:0]):
        state = mmck(servers, queue_limit, a) if given else None
        m = mu if isinstance(mu, float) else mu[: a.size]
        got_rng, want_rng = np.random.default_rng(10), np.random.default_rng(10)
        got = sample_mmck_waits(servers, queue_limit, a, m, got_rng, state)
        want = _sample_mmck_waits_old(servers, queue_limit, a, m, want_rng, state)
        _same(got, want)
        assert got_rng.random() == want_rng.random()     # the same number of draws


def _hours(servers: int, limit: int, curve: np.ndarray) -> Hours:
    """One provider's hours at the offered loads ``curve`` (Erlangs); overloads go fluid."""
    retry = RetryClass(rounds=np.array([2]), on_429=np.array([True]),
                       on_error=np.array([[True]]), error_rate=np.zeros(1), reset_rate=np.zeros(1))
    mu = np.linspace(0.8, 1.2, curve.size)
    return solve_hours(servers, limit, mu, (curve * mu)[None, :], 3600.0, retry, 0)


@pytest.mark.parametrize("servers, limit, fluid", [(1, 1, False), (1, 20, True), (40, 0, False),
                                                   (40, 1, False), (40, 200, True)])
def test_hour_waits_is_the_old_one(servers: int, limit: int, fluid: bool) -> None:
    """Overloads in a long enough room fill it slowly (fluid hours); steady-only hours too."""
    rng = np.random.default_rng(12)
    curve = servers * np.concatenate([[0.0, 0.5, 1.0, 0.99, 1.01], rng.uniform(0.1, 3.0, 60),
                                      [8.0, 8.0, 0.2, 0.2]])
    h = _hours(servers, limit, curve)
    assert h.fluid.any() == fluid
    t = rng.integers(0, curve.size, 50_000)
    for hours in (h, dataclasses.replace(h, fluid=np.zeros_like(h.fluid))):
        for tt in (t, t[:0], np.sort(t)):
            got_rng, want_rng = np.random.default_rng(13), np.random.default_rng(13)
            _same(hour_waits(hours, tt, got_rng), _hour_waits_old(hours, tt, want_rng))
            assert got_rng.random() == want_rng.random()
