"""Same scenario and seed: byte-identical timeseries.csv and summary.json, with any --jobs."""

from __future__ import annotations

from pathlib import Path

from scenarios.loader import Loaded
from scenarios.rundir import read_run
from sim.run import simulate


def test_byte_identical_with_any_jobs(default: Loaded, tmp_path: Path) -> None:
    one = simulate(default, replications=3, seed=42, jobs=1, out=tmp_path / "a", scale=0.02)
    two = simulate(default, replications=3, seed=42, jobs=2, out=tmp_path / "b", scale=0.02)
    for name in ("timeseries.csv", "summary.json", "scenario.yaml"):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    run = read_run(one)
    assert run.kind == "simulate" and run.summary["replications"] == 3
    assert not list((tmp_path / "a").glob(".*partial*"))


def test_another_seed_differs(default: Loaded, tmp_path: Path) -> None:
    a = simulate(default, replications=1, seed=1, out=tmp_path, scale=0.02)
    b = simulate(default, replications=1, seed=2, out=tmp_path, scale=0.02)
    assert (a / "timeseries.csv").read_bytes() != (b / "timeseries.csv").read_bytes()
