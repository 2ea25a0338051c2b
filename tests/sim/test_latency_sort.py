"""sim.latency.stable_argsort: numpy's stable argsort, whatever the ties."""

from __future__ import annotations

import numpy as np
import pytest

from sim.latency import stable_argsort


@pytest.mark.parametrize("case", ["distinct", "ties", "signed zeros", "nan"])
def test_stable_argsort_is_the_stable_argsort(case: str) -> None:
    rng = np.random.default_rng(7)
    values = rng.lognormal(7.0, 0.5, 5000)
    if case == "ties":
        values = np.round(values, -2)          # many equal values
    elif case == "signed zeros":
        values[::7] = 0.0
        values[::11] = -0.0
    elif case == "nan":
        values[::13] = np.nan
    want = np.argsort(values, kind="stable")
    assert np.array_equal(stable_argsort(values), want)
