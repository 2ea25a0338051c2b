"""``regionblock simulate`` and ``regionblock sweep`` end to end (in-process, real files)."""

from __future__ import annotations

import csv
import json
import os
import re
import sys
from pathlib import Path

import pytest

from regionblock.cli import main
from scenarios.rundir import COLUMNS, HEADLINE_FILE, SHARED_METRICS, read_headline, read_run
from sim.sweep import split_top_level

Capsys = pytest.CaptureFixture[str]


def _cli(capsys: Capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_simulate_writes_a_run_directory_and_prints_it(capsys: Capsys, tmp_path: Path) -> None:
    code, out, err = _cli(capsys, "simulate", "openai-2024-cn-hk", "--replications", "2", "--seed", "3",
                          "--scale", "0.02", "--out", str(tmp_path))
    assert code == 0, err
    path = Path(out.splitlines()[0])
    assert path.parent == tmp_path and path.name.endswith("-openai-2024-cn-hk-simulate")
    assert "Incumbent revenue lost vs. the baseline" in out
    run = read_run(path)
    assert run.meta["kind"] == "simulate" and run.meta["replications"] == 2
    assert run.summary["seed"] == 3 and run.summary["replications"] == 2
    assert [w["label"] for w in run.summary["waterfall"]] == [
        "baseline", "blocked", "kept via relay", "kept via allow-list", "lost to alternatives",
        "lost to churn", "actual"]
    assert run.summary["checks"]["requests_balance"] is True
    band = run.summary["headline"]["incumbent_revenue_lost_usd"]
    assert set(band) == {"mean", "p5", "p95", "n", "sd", "unit", "label"} and band["unit"] == "usd"
    # headline.csv holds what the band is made of: its mean and sd are the band's
    per_rep = read_headline(path / HEADLINE_FILE)
    assert set(per_rep) == set(run.summary["headline"])
    values = [per_rep["incumbent_revenue_lost_usd"][i] for i in (0, 1)]
    assert band["mean"] == pytest.approx(sum(values) / 2, rel=1e-9)
    assert band["sd"] == pytest.approx(abs(values[0] - values[1]) / 2 ** 0.5, rel=1e-9)
    ts = run.timeseries()
    assert set(ts["source"]) == {"sim"}
    assert set(SHARED_METRICS) <= set(ts["metric"])
    assert set(ts["replication"]) == {0, 1}
    with (path / "timeseries.csv").open() as fh:
        assert tuple(next(csv.reader(fh))) == COLUMNS
    assert ts["time"][0] == "2024-06-01T00:00:00Z"


@pytest.mark.parametrize(("argv", "message"), [
    (("--replications", "0"), "--replications: must be at least 1"),
    (("--jobs", "0"), "--jobs: must be at least 1"),
    (("--scale", "2"), "--scale: must be in (0, 1]"),
    (("--set", "policy.openai.stages[1].percent=150"), "percent"),
    (("--scale", "0.00001"), "no organisations to simulate at scale 1e-05"),
])
def test_simulate_bad_input_is_one_line_and_exit_2(capsys: Capsys, tmp_path: Path,
                                                   argv: tuple[str, ...], message: str) -> None:
    code, _out, err = _cli(capsys, "simulate", "openai-2024-cn-hk", "--out", str(tmp_path), *argv)
    assert code == 2
    # exactly one line: no empty line before it (rich's transient bar left one on a pipe)
    assert message in err and err.endswith("\n") and len(err.splitlines()) == 1, repr(err)
    assert not any(tmp_path.iterdir())


def test_split_top_level_keeps_brackets_and_quotes() -> None:
    assert split_top_level("10,50,100") == ["10", "50", "100"]
    assert split_top_level("[CN,HK],[CN,HK,MO],CN") == ["[CN,HK]", "[CN,HK,MO]", "CN"]
    assert split_top_level("{a: 1, b: 2},'x,y'") == ["{a: 1, b: 2}", "'x,y'"]


def test_sweep_grid_directory_and_table(capsys: Capsys, tmp_path: Path) -> None:
    code, out, err = _cli(capsys, "sweep", "openai-2024-cn-hk",
                          "--set", "policy.openai.stages[1].regions=[CN,HK],[CN,HK,MO,RU]",
                          "--set", "behaviour.relay.markup=0.1,0.5",
                          "--replications", "1", "--scale", "0.02", "--out", str(tmp_path))
    assert code == 0, err
    path = Path(out.splitlines()[0])
    assert path.name.endswith("-openai-2024-cn-hk-sweep")
    summary = json.loads((path / "summary.json").read_text())
    assert summary["kind"] == "sweep"
    assert summary["parameters"] == {
        "policy.openai.stages[1].regions": [["CN", "HK"], ["CN", "HK", "MO", "RU"]],
        "behaviour.relay.markup": [0.1, 0.5]}
    assert [p["overrides"] for p in summary["points"]] == [
        {"policy.openai.stages[1].regions": ["CN", "HK"], "behaviour.relay.markup": 0.1},
        {"policy.openai.stages[1].regions": ["CN", "HK"], "behaviour.relay.markup": 0.5},
        {"policy.openai.stages[1].regions": ["CN", "HK", "MO", "RU"], "behaviour.relay.markup": 0.1},
        {"policy.openai.stages[1].regions": ["CN", "HK", "MO", "RU"], "behaviour.relay.markup": 0.5}]
    for i, point in enumerate(summary["points"]):
        run = read_run(path / point["run_dir"])
        assert point["run_dir"] == f"point-{i:03d}" and run.kind == "simulate"
        assert point["headline"] == run.summary["headline"]
    assert read_run(path).kind == "sweep"
    with (path / "sweep.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert [r["index"] for r in table] == ["0", "1", "2", "3"]
    assert table[2]["policy.openai.stages[1].regions"] == "[CN,HK,MO,RU]"
    lost = [float(r["incumbent_revenue_lost_usd_mean"]) for r in table]
    # common random numbers across the grid: blocking more regions loses more
    assert lost[2] > lost[0] and lost[3] > lost[1]
    # the mark-up changes what relays earn
    markup = [float(r["relay_markup_usd_mean"]) for r in table]
    assert markup[1] > markup[0]
    # the printed table names each parameter and figure in full, one row per point, never "…"
    printed = out.splitlines()[1:]
    header = next(line for line in printed if "point" in line and "┃" in line)
    assert [c.strip() for c in header.strip("┃").split("┃")] == [
        "point", "behaviour.relay.markup", "policy.openai.stages[1].regions",
        "incumbent revenue lost usd", "incumbent revenue lost pct", "relay markup usd"]
    assert "…" not in out
    rows = [line for line in printed if line.startswith("│ point-")]
    assert [r.split("│")[1].strip() for r in rows] == [f"point-{i:03d}" for i in range(4)]
    assert [c.strip() for c in rows[2].split("│")[2:4]] == ["0.1", '["CN", "HK", "MO", "RU"]']


def test_sweep_on_a_dask_cluster(capsys: Capsys, tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(processes=False, n_workers=1, threads_per_worker=1,
                                  dashboard_address=None) as cluster:
        code, out, err = _cli(capsys, "sweep", "openai-2024-cn-hk", "--set", "behaviour.relay.markup=0.1,0.3",
                              "--replications", "1", "--scale", "0.02", "--out", str(tmp_path / "dask"),
                              "--dask", cluster.scheduler_address)
    assert code == 0, err
    dask_dir = Path(out.splitlines()[0])
    code, out, err = _cli(capsys, "sweep", "openai-2024-cn-hk", "--set", "behaviour.relay.markup=0.1,0.3",
                          "--replications", "1", "--scale", "0.02", "--out", str(tmp_path / "pool"))
    pool_dir = Path(out.splitlines()[0])
    assert (dask_dir / "sweep.csv").read_bytes() == (pool_dir / "sweep.csv").read_bytes()


def test_sweep_errors_are_one_line(capsys: Capsys, tmp_path: Path) -> None:
    code, _, err = _cli(capsys, "sweep", "openai-2024-cn-hk", "--out", str(tmp_path))
    assert code == 2 and "--set: a sweep needs at least one" in err
    code, _, err = _cli(capsys, "sweep", "openai-2024-cn-hk", "--set", "behaviour.relay.markup=[0.1,0.2",
                        "--out", str(tmp_path))
    assert code == 2 and "unclosed bracket" in err
    code, _, err = _cli(capsys, "sweep", "openai-2024-cn-hk", "--set", "behaviour.relay.markup=0.1,-3",
                        "--out", str(tmp_path))
    assert code == 2 and "markup" in err and len(err.strip().splitlines()) == 1
    code, _, err = _cli(capsys, "sweep", "openai-2024-cn-hk", "--set", "behaviour.relay.markup=0.1",
                        "--out", str(tmp_path), "--dask", "tcp://127.0.0.1:1")
    assert code == 2 and err.startswith("--dask tcp://127.0.0.1:1: cannot reach")
    assert not any(tmp_path.iterdir())


def test_sweep_without_dask_installed(capsys: Capsys, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` now fails
    code, out, err = _cli(capsys, "sweep", "openai-2024-cn-hk", "--set", "behaviour.relay.markup=0.1",
                          "--out", str(tmp_path), "--dask", "tcp://127.0.0.1:8786")
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        "--dask: dask.distributed is not installed (install the 'cluster' extra: "
        "pip install 'regionblock[cluster]')"]


@pytest.mark.parametrize("command", ["simulate", "sweep"])
def test_unwritable_out_fails_before_any_work(capsys: Capsys, tmp_path: Path, command: str) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    extra = ("--set", "behaviour.relay.markup=0.1,0.2") if command == "sweep" else ()
    for out, message in ((blocker, "exists and is not a directory"),
                         (blocker / "runs", f"{blocker} is not a directory")):
        code, stdout, err = _cli(capsys, command, "openai-2024-cn-hk", *extra, "--out", str(out))
        assert code == 2 and stdout == ""
        assert err.strip() == f"--out: {out}: {message}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def _children(pid: int) -> list[int]:
    """Process ids of ``pid``'s children (Linux /proc)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(t) for t in text]
    return out


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0
    return int(fields[11]) + int(fields[12])   # utime + stime


def test_ctrl_c_stops_the_pool_and_leaves_nothing_half_written(tmp_path: Path) -> None:
    import signal
    import subprocess
    import time

    proc = subprocess.Popen([sys.executable, "-m", "regionblock", "simulate", "openai-2024-cn-hk",
                             "--replications", "50", "--jobs", "2", "--out", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        # wait until both workers have spent a second of CPU: they are running replications
        deadline = time.monotonic() + 120
        workers: list[int] = []
        while time.monotonic() < deadline and proc.poll() is None:
            workers = [c for c in _children(proc.pid)
                       if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text(errors="replace")]
            if len(workers) >= 2 and all(_cpu_ticks(w) >= 100 for w in workers):
                break
        assert len(workers) >= 2, "the pool never started"
        os.killpg(proc.pid, signal.SIGINT)   # what a terminal's Ctrl-C does: the whole group
        t0 = time.monotonic()
        _out, err = proc.communicate(timeout=10)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interrupted"
    assert "Traceback" not in err
    assert elapsed < 2.0, f"took {elapsed:.1f} s to stop"
    assert not any(Path(f"/proc/{w}").exists() for w in workers)
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_mid_run_is_one_line_and_leaves_nothing(capsys: Capsys, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC while the run is written (after the work): one line, exit 2, no traceback, and the
    staged run directory removed — as for Ctrl-C."""
    import errno

    import sim.run

    def full(path: Path, _obj: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(sim.run, "write_json", full)
    code, out, err = _cli(capsys, "simulate", "openai-2024-cn-hk", "--scale", "0.01",
                          "--replications", "1", "--out", str(tmp_path))
    assert code == 2 and out == ""
    [line] = err.splitlines()
    # it names the run it was writing (its staged files are gone), not a hidden staging file
    assert re.fullmatch(f"simulate: {re.escape(str(tmp_path))}/\\d{{8}}T\\d{{6}}Z-openai-2024-cn-hk-"
                        "simulate: cannot write: No space left on device", line), line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("command", "limit"), [
    # the disk refuses the timeseries.csv streamed while the replications run (7.6 MB here;
    # a refusal after the work is the test above)
    (("simulate", "openai-2024-cn-hk", "--replications", "2", "--scale", "0.02"), 20_000),
    # a sweep's points are runs staged inside the sweep's: the sweep is named
    (("sweep", "openai-2024-cn-hk", "--set", "behaviour.relay.markup=0.1,0.2",
      "--replications", "1", "--scale", "0.02"), 20_000),
])
def test_a_file_size_limit_is_one_line_naming_the_run_and_leaves_nothing(
        tmp_path: Path, command: tuple[str, ...], limit: int) -> None:
    """A real refused write: the kernel's file-size limit (RLIMIT_FSIZE; Python ignores SIGXFSZ,
    so write() fails with EFBIG, as it fails with ENOSPC on a full disk) on a real run. One
    line naming the run being written, exit 2, no traceback; nothing is left, not even the
    --out directories the run made."""
    import resource
    import subprocess

    out = tmp_path / "runs" / "deep"

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run([sys.executable, "-m", "regionblock", *command, "--out", str(out)],
                          capture_output=True, text=True, preexec_fn=limited, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    kind = "sweep" if command[0] == "sweep" else "simulate"
    assert re.fullmatch(f"{command[0]}: {re.escape(str(out))}/\\d{{8}}T\\d{{6}}Z-openai-2024-cn-hk-"
                        f"{kind}: cannot write: File too large\n", proc.stderr), proc.stderr
    assert list(tmp_path.iterdir()) == []
