"""The shared traffic curve: normalisation, local time, and custom patterns."""

from __future__ import annotations

import datetime as dt

import pytest

from scenarios.schema import DEFAULT_DIURNAL, DEFAULT_WEEKLY, TrafficPattern
from scenarios.traffic import hourly_intensity, intensity, window_hours

MONDAY = dt.datetime(2024, 7, 1, tzinfo=dt.UTC)
DEFAULT = TrafficPattern()


@pytest.mark.parametrize("offset", [-5.0, 0.0, 3.0, 8.0, 9.5])
def test_the_curve_averages_exactly_one_over_a_local_week(offset: float) -> None:
    curve = hourly_intensity(DEFAULT, offset, MONDAY - dt.timedelta(hours=offset), 24 * 7)
    assert curve.mean() == pytest.approx(1.0, abs=1e-12)


def test_intensity_is_the_product_of_the_normalised_shapes_in_local_time() -> None:
    d_mean, w_mean = sum(DEFAULT_DIURNAL) / 24, sum(DEFAULT_WEEKLY) / 7
    # 06:00 UTC on Monday 2024-07-01 is 14:00 on Monday in China (UTC+8).
    assert intensity(DEFAULT, MONDAY + dt.timedelta(hours=6), 8.0) == pytest.approx(
        (DEFAULT_DIURNAL[14] / d_mean) * (DEFAULT_WEEKLY[0] / w_mean), rel=1e-12)
    # 20:00 UTC on Friday 2024-07-05 is 04:00 on Saturday in China.
    friday_20 = dt.datetime(2024, 7, 5, 20, tzinfo=dt.UTC)
    assert intensity(DEFAULT, friday_20, 8.0) == pytest.approx(
        (DEFAULT_DIURNAL[4] / d_mean) * (DEFAULT_WEEKLY[5] / w_mean), rel=1e-12)


def test_hourly_values_are_taken_at_each_hours_midpoint() -> None:
    curve = hourly_intensity(DEFAULT, -5.0, MONDAY, 48)
    for h in (0, 7, 23, 31, 47):
        mid = MONDAY + dt.timedelta(hours=h, minutes=30)
        assert curve[h] == intensity(DEFAULT, mid, -5.0)


def test_a_flat_pattern_gives_a_constant_curve() -> None:
    flat = TrafficPattern(diurnal=(2.0,) * 24, weekly=(5.0,) * 7)
    assert set(hourly_intensity(flat, 8.0, MONDAY, 24 * 14).tolist()) == {1.0}


def test_window_hours_counts_a_partial_hour() -> None:
    assert window_hours(MONDAY, MONDAY + dt.timedelta(hours=2, minutes=1)) == 3
