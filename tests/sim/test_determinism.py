"""Same scenario and seed: byte-identical timeseries.csv, summary.json and headline.csv, with any --jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scenarios.loader import Loaded
from scenarios.rundir import read_run
from sim.run import simulate


def test_byte_identical_with_any_jobs(default: Loaded, tmp_path: Path) -> None:
    one = simulate(default, replications=3, seed=42, jobs=1, out=tmp_path / "a", scale=0.02)
    two = simulate(default, replications=3, seed=42, jobs=2, out=tmp_path / "b", scale=0.02)
    for name in ("timeseries.csv", "summary.json", "scenario.yaml", "headline.csv"):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    run = read_run(one)
    assert run.kind == "simulate" and run.summary["replications"] == 3
    assert not list((tmp_path / "a").glob(".*partial*"))


def test_another_seed_differs(default: Loaded, tmp_path: Path) -> None:
    a = simulate(default, replications=1, seed=1, out=tmp_path, scale=0.02)
    b = simulate(default, replications=1, seed=2, out=tmp_path, scale=0.02)
    assert (a / "timeseries.csv").read_bytes() != (b / "timeseries.csv").read_bytes()


def test_streamed_timeseries_is_what_the_results_write(default: Loaded, tmp_path: Path) -> None:
    """simulate writes timeseries.csv while the pool runs (replications arriving out of order):
    the bytes are those of writing every result's block after the last one."""
    from sim.metrics import bin_times
    from sim.run import replicate, write_blocks

    path = simulate(default, replications=4, seed=5, jobs=2, out=tmp_path / "run", scale=0.02)
    rep = replicate(default.scenario, replications=4, seed=5, jobs=1, scale=0.02)
    write_blocks(tmp_path / "after.csv", default.scenario, bin_times(default.scenario, rep.setup.edges),
                 rep.results)
    assert (path / "timeseries.csv").read_bytes() == (tmp_path / "after.csv").read_bytes()
    assert [p.name for p in (tmp_path / "run").iterdir()] == [path.name]


def test_a_failed_run_leaves_nothing(default: Loaded, tmp_path: Path, monkeypatch: Any) -> None:
    """A replication failing after others were streamed out: no partial timeseries, no staging
    directory, and the output directories the run made are gone again."""
    import sim.run as run_mod

    real = run_mod._one

    def failing(setup: Any, index: int, seq: Any, streamed: bool = False) -> Any:
        if index == 2:
            raise RuntimeError("replication 2 failed")
        return real(setup, index, seq, streamed)

    monkeypatch.setattr(run_mod, "_one", failing)
    out = tmp_path / "new" / "runs"
    try:
        simulate(default, replications=4, seed=5, jobs=1, out=out, scale=0.02)
    except RuntimeError as exc:
        assert str(exc) == "replication 2 failed"
    else:
        raise AssertionError("the failure did not propagate")
    assert list(tmp_path.iterdir()) == []
