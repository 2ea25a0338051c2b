"""sim.replication's per-cell sums (flows, 429s): np.bincount gives np.add.at's sums bit for bit."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from scenarios.rundir import PATHS
from sim.replication import FLOW_METRICS, _flows, _rejected


def _flows_add_at(setup: Any, run: Any, base: Any) -> np.ndarray:
    """The code :func:`_flows` replaced: ``np.add.at`` with the index tuple."""
    s = setup.s
    nb = setup.edges.size - 1
    cube = np.zeros((len(FLOW_METRICS), nb, len(s.regions), len(s.providers), len(PATHS)))
    for which, r in (("run", run), ("base", base)):
        k = r.fa.provider[r.cells.fate]
        j = r.fa.path[r.cells.fate]
        idx = (r.cells.bin, r.cells.region, k, j)
        if which == "run":
            for m, name in enumerate(FLOW_METRICS[:11]):
                values = r.out.markup_usd if name == "relay_markup_usd" else getattr(r.out, name)
                np.add.at(cube[m], idx, values)
        else:
            np.add.at(cube[FLOW_METRICS.index("baseline_requests")], idx, r.out.requests)
            np.add.at(cube[FLOW_METRICS.index("baseline_revenue_usd")], idx, r.out.revenue_usd)
    return cube


def _rejected_add_at(setup: Any, run: Any) -> np.ndarray:
    """The code :func:`_rejected` replaced."""
    out = np.zeros((len(setup.s.providers), setup.edges.size - 1))
    k = run.fa.provider[run.cells.fate]
    np.add.at(out, (k, run.cells.bin), run.out.rejected_429)
    return out


def _run(rng: np.random.Generator, n: int, nb: int, regions: int, providers: int) -> Any:
    """Cells with random fates (some without provider or path: index -1), integer counts and
    fractional money, many cells per (bin, region, provider, path): the order of the sums shows."""
    fates = 7
    fa = SimpleNamespace(provider=rng.integers(-1, providers, fates),
                         path=rng.integers(-1, len(PATHS), fates))
    cells = SimpleNamespace(fate=rng.integers(0, fates, n), bin=rng.integers(0, nb, n),
                            region=rng.integers(0, regions, n))
    money = {name: rng.lognormal(0.0, 3.0, n) for name in ("revenue_usd", "markup_usd")}
    counts = {name: rng.integers(0, 1000, n) for name in FLOW_METRICS[:11]
              if name not in ("revenue_usd", "relay_markup_usd")}
    out = SimpleNamespace(**counts, **money, rejected_429=rng.integers(0, 50, n))
    return SimpleNamespace(fa=fa, cells=cells, out=out)


@pytest.mark.parametrize("n", [0, 1, 5_000])
def test_flows_and_rejections_are_those_of_add_at(n: int) -> None:
    rng = np.random.default_rng(n + 1)
    nb, regions, providers = 9, 4, 3
    setup = SimpleNamespace(s=SimpleNamespace(regions=[None] * regions, providers=[None] * providers),
                            edges=np.arange(nb + 1, dtype=float))
    run, base = _run(rng, n, nb, regions, providers), _run(rng, n // 2, nb, regions, providers)
    assert _flows(setup, run, base).tobytes() == _flows_add_at(setup, run, base).tobytes()  # type: ignore[arg-type]
    assert _rejected(setup, run).tobytes() == _rejected_add_at(setup, run).tobytes()  # type: ignore[arg-type]
