"""The traffic curve's shape and the open-model arrival process, against theory."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from loadtests import traffic

MONDAY = dt.datetime(2024, 7, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize("offset", [-5.0, 0.0, 3.0, 8.0, 9.5])
def test_activity_averages_exactly_one_over_a_week(offset: float) -> None:
    # Hourly midpoints integrate a cosine exactly over whole days; whole local weeks then give 1.
    curve = traffic.hourly_activity(offset, MONDAY - dt.timedelta(hours=offset), 24 * 7)
    assert curve.mean() == pytest.approx(1.0, abs=1e-12)


def test_activity_peaks_at_two_pm_local_and_falls_on_weekends() -> None:
    weekday_peak = traffic.activity(8.0, dt.datetime(2024, 7, 1, 6, tzinfo=dt.UTC))  # 14:00 CST
    weekday_trough = traffic.activity(8.0, dt.datetime(2024, 7, 1, 18, tzinfo=dt.UTC))  # 02:00
    saturday_peak = traffic.activity(8.0, dt.datetime(2024, 7, 6, 6, tzinfo=dt.UTC))
    assert weekday_peak == pytest.approx(1.5 / traffic.WEEK_MEAN)
    assert weekday_trough == pytest.approx(0.5 / traffic.WEEK_MEAN)
    assert saturday_peak == pytest.approx(1.5 * traffic.WEEKEND_FACTOR / traffic.WEEK_MEAN)


def test_window_hours_counts_a_partial_hour() -> None:
    assert traffic.window_hours(MONDAY, MONDAY + dt.timedelta(hours=2, minutes=1)) == 3


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
