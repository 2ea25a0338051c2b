"""The traffic curve both engines follow: relative request intensity over scenario time.

A region's intensity at a UTC instant is ``diurnal[local hour] × weekly[local weekday]`` from the
scenario's :class:`~scenarios.schema.TrafficPattern`, each shape normalised to a mean of 1, so the
mean over any whole local week is exactly 1 and a segment's ``requests_per_hour`` is its weekly
average. The simulator integrates it per bin; the load test turns it into open-model send times.
Both evaluate it once per scenario hour, at the hour's midpoint, and hold it within the hour.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np

from scenarios.schema import TrafficPattern

_HALF_HOUR = dt.timedelta(minutes=30)


def _normalised(shape: tuple[float, ...]) -> tuple[float, ...]:
    mean = sum(shape) / len(shape)
    return tuple(x / mean for x in shape)


def intensity(pattern: TrafficPattern, utc: dt.datetime, utc_offset: float) -> float:
    """Relative request intensity at a UTC instant for a region at ``utc_offset`` hours."""
    local = utc + dt.timedelta(hours=utc_offset)
    return _normalised(pattern.diurnal)[local.hour] * _normalised(pattern.weekly)[local.weekday()]


def hourly_intensity(pattern: TrafficPattern, utc_offset: float, start: dt.datetime,
                     hours: int) -> np.ndarray:
    """:func:`intensity` at the midpoint of each scenario hour from ``start`` (one value an hour)."""
    diurnal, weekly = _normalised(pattern.diurnal), _normalised(pattern.weekly)
    out = np.empty(hours, dtype=float)
    for h in range(hours):
        local = start + dt.timedelta(hours=h + utc_offset) + _HALF_HOUR
        out[h] = diurnal[local.hour] * weekly[local.weekday()]
    return out


def window_hours(start: dt.datetime, end: dt.datetime) -> int:
    """Whole scenario hours in a window (a last partial hour counts as one)."""
    return math.ceil((end - start).total_seconds() / 3600)
