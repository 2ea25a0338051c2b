"""When requests arrive: the scenario's traffic curve, integrated for the simulator.

A region's request intensity at scenario hour ``t`` is the shared curve of
:mod:`scenarios.traffic` (diurnal by local hour × weekly by local weekday, each normalised to a
mean of 1; the load test follows the same curve). :class:`Profile` integrates it once per region
on the scenario's hour grid, so
the expected requests of an organisation over any interval ``[t0, t1)`` is
``rate × (C(t1) − C(t0))``: a non-homogeneous Poisson process with this cumulative intensity.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np

from scenarios.schema import Scenario
from scenarios.traffic import hourly_intensity


@dataclass(frozen=True, slots=True)
class Profile:
    """Hourly intensity and its running integral per region, on the scenario's hour grid.

    ``hourly[r, h]`` is the intensity during scenario hour h (evaluated at its midpoint) and
    ``cum[r, h]`` the integral from the window start to hour h (piecewise linear in between).
    """

    start: dt.datetime
    hours: float
    hourly: np.ndarray
    cum: np.ndarray

    @classmethod
    def of(cls, s: Scenario) -> Profile:
        n = math.ceil(s.window.hours)
        hourly = np.array([hourly_intensity(s.traffic, r.utc_offset, s.window.start, n)
                           for r in s.regions])
        cum = np.zeros((len(s.regions), n + 1))
        cum[:, 1:] = np.cumsum(hourly, axis=1)
        return cls(start=s.window.start, hours=s.window.hours, hourly=hourly, cum=cum)

    def integral(self, region: np.ndarray, t: np.ndarray) -> np.ndarray:
        """C_region(t) for arrays of region indices and hours since the window start."""
        t = np.clip(t, 0.0, self.hours)
        h = np.minimum(np.floor(t).astype(np.int64), self.cum.shape[1] - 2)
        frac = t - h
        lo = self.cum[region, h]
        return lo + frac * (self.cum[region, h + 1] - lo)

    def sample_times(self, region: int, t0: float, t1: float, n: int,
                     rng: np.random.Generator) -> np.ndarray:
        """``n`` arrival instants in [t0, t1), distributed as the process's arrivals (inverse CDF)."""
        c0, c1 = self.integral(np.array([region]), np.array([t0, t1]))
        u = c0 + (c1 - c0) * rng.random(n)
        return np.interp(u, self.cum[region], np.arange(self.cum.shape[1], dtype=float))
