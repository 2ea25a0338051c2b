"""The open-model arrival process, against theory."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from loadtests import traffic

MONDAY = dt.datetime(2024, 7, 1, tzinfo=dt.UTC)


def test_arrivals_follow_the_piecewise_constant_rate() -> None:
    # Rates 0, 50, 200 arrivals per wall second for 10 s each: counts are Poisson(0), (500), (2000)
    # per step; summed over 200 seeds each step's mean must sit within 4 standard errors.
    rate = np.array([0.0, 50.0, 200.0])
    counts = np.zeros((200, 3))
    for seed in range(200):
        t = traffic.arrival_times(rate, 10.0, np.random.default_rng(seed))
        assert np.all(np.diff(t) >= 0)
        counts[seed] = np.histogram(t, bins=[0, 10, 20, 30])[0]
    assert counts[:, 0].sum() == 0
    for step, expected in ((1, 500.0), (2, 2000.0)):
        se = np.sqrt(expected / 200)
        assert abs(counts[:, step].mean() - expected) < 4 * se
        # Poisson: the variance equals the mean (within sampling error of a variance, ~10 %).
        assert counts[:, step].var(ddof=1) == pytest.approx(expected, rel=0.25)


def test_arrivals_within_a_step_are_uniform() -> None:
    t = traffic.arrival_times(np.array([1000.0]), 10.0, np.random.default_rng(1))
    hist = np.histogram(t, bins=10, range=(0, 10))[0]
    expected = len(t) / 10
    chi2 = float(((hist - expected) ** 2 / expected).sum())
    assert chi2 < 27.9  # the 99.9 % point of chi-square with 9 degrees of freedom


def test_arrivals_are_reproducible_from_the_seed() -> None:
    a = traffic.arrival_times(np.array([3.0, 4.0]), 2.0, np.random.default_rng([0, 7, 3]))
    b = traffic.arrival_times(np.array([3.0, 4.0]), 2.0, np.random.default_rng([0, 7, 3]))
    assert a.tolist() == b.tolist()
