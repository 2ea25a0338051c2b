"""The shape of the traffic curve, and open-model arrival times that follow it.

An organisation's request rate at scenario instant ``t`` is its mean rate times
:func:`activity` ``(utc_offset, t)``: a diurnal cosine in the region's local time (peak at
14:00, trough at 02:00, amplitude ±50 %) times a weekend factor (0.6 on local Saturday and
Sunday), normalised so that the mean over any whole local week is exactly 1. (ASSUMPTION: no
public diurnal profile of API traffic exists; this is the common office-hours shape.) The
curve is evaluated once per scenario hour, at the hour's midpoint, and held constant within the
hour: the target rate is piecewise constant per scenario hour, which makes the arrival process
below exact and testable against theory.

Arrivals are a non-homogeneous Poisson process in *wall* time: the scenario window is mapped
linearly onto the load test's duration (the compressed clock), so a scenario hour lasts
``duration_s / window_hours`` wall seconds. :func:`arrival_times` draws the count from the
integrated rate and places the arrivals by inverting the cumulative intensity: no thinning, no
rejection, one draw per arrival.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import numpy.typing as npt

DIURNAL_AMPLITUDE = 0.5
PEAK_LOCAL_HOUR = 14.0
WEEKEND_FACTOR = 0.6
#: The mean of the un-normalised curve over a whole local week (5 weekdays, 2 weekend days).
WEEK_MEAN = (5.0 + 2.0 * WEEKEND_FACTOR) / 7.0

FloatArray = npt.NDArray[np.float64]


def activity(utc_offset: float, t: dt.datetime) -> float:
    """Relative request rate of a region at scenario instant ``t`` (mean 1 over a week)."""
    local = t + dt.timedelta(hours=utc_offset)
    hour = local.hour + local.minute / 60 + local.second / 3600
    diurnal = 1.0 + DIURNAL_AMPLITUDE * math.cos(2 * math.pi * (hour - PEAK_LOCAL_HOUR) / 24)
    weekly = WEEKEND_FACTOR if local.weekday() >= 5 else 1.0
    return diurnal * weekly / WEEK_MEAN


def hourly_activity(utc_offset: float, start: dt.datetime, hours: int) -> FloatArray:
    """:func:`activity` at the midpoint of each scenario hour from ``start``."""
    half = dt.timedelta(minutes=30)
    return np.array([activity(utc_offset, start + dt.timedelta(hours=h) + half)
                     for h in range(hours)], dtype=float)


def window_hours(start: dt.datetime, end: dt.datetime) -> int:
    """Whole scenario hours in the window (a last partial hour counts as one)."""
    return math.ceil((end - start).total_seconds() / 3600)


def arrival_times(rate_per_hour_step: FloatArray, step_wall_s: float,
                  rng: np.random.Generator) -> FloatArray:
    """Arrival instants (wall seconds from the epoch) of a Poisson process with the given rate.

    ``rate_per_hour_step[h]`` is the rate in arrivals per wall second during step ``h``, which
    lasts ``step_wall_s`` wall seconds. The instants are sorted.
    """
    per_step = np.asarray(rate_per_hour_step, dtype=float) * step_wall_s
    cumulative = np.concatenate(([0.0], np.cumsum(per_step)))
    total = float(cumulative[-1])
    n = int(rng.poisson(total)) if total > 0 else 0
    marks = np.sort(rng.uniform(0.0, total, size=n))
    edges = np.arange(len(per_step) + 1, dtype=float) * step_wall_s
    # Λ is piecewise linear in wall time, so linear interpolation inverts it exactly. Steps with
    # zero rate are flat segments that no mark can land inside.
    return np.asarray(np.interp(marks, cumulative, edges), dtype=float)
