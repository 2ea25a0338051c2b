"""Open-model arrival times that follow the scenario's traffic curve.

An organisation's request rate at scenario instant ``t`` is its mean rate times the shared
curve of :mod:`scenarios.traffic` (the same one the simulator integrates): evaluated once per
scenario hour, at the hour's midpoint, and held constant within the hour, so the target rate is
piecewise constant per scenario hour, which makes the arrival process below exact and testable
against theory.

Arrivals are a non-homogeneous Poisson process in *wall* time: the scenario window is mapped
linearly onto the load test's duration (the compressed clock), so a scenario hour lasts
``duration_s / window_hours`` wall seconds. :func:`arrival_times` draws the count from the
integrated rate and places the arrivals by inverting the cumulative intensity: no thinning, no
rejection, one draw per arrival.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


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
