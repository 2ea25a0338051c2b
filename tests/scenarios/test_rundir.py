"""scenarios/rundir.py: staging, the timeseries format, bands, meta, and read_run's errors."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from scenarios.errors import RunDirError
from scenarios.rundir import (
    COLUMNS,
    band,
    fmt_value,
    meta,
    read_run,
    read_timeseries,
    run_dir_name,
    staged_run_dir,
    thin_percentile,
    write_json,
    write_timeseries,
)

UTC = dt.UTC


class Boom(Exception):
    pass


def test_staged_run_dir_renames_on_success(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    with staged_run_dir(root, "r1") as staging:
        assert staging.path == root / f".r1.partial-{os.getpid()}"
        assert staging.final is None
        (staging.path / "a.txt").write_text("x")
        assert not (root / "r1").exists()
    assert staging.final == root / "r1"
    assert (root / "r1" / "a.txt").read_text() == "x"
    assert sorted(p.name for p in root.iterdir()) == ["r1"]
    with staged_run_dir(root, "r1") as second:
        pass
    assert second.final == root / "r1-2"
    assert sorted(p.name for p in root.iterdir()) == ["r1", "r1-2"]


def test_staged_run_dir_leaves_nothing_on_exception(tmp_path: Path) -> None:
    """Nothing of a failed run is left: its staged files, and the root directories made for it."""
    root = tmp_path / "runs" / "deep"
    with pytest.raises(Boom), staged_run_dir(root, "r1") as staging:
        (staging.path / "half.csv").write_text("time\n")
        raise Boom
    assert list(tmp_path.iterdir()) == []
    assert staging.final is None


def test_staged_run_dir_keeps_a_root_that_was_there_and_what_it_holds(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    (root / "earlier").mkdir(parents=True)
    with pytest.raises(Boom), staged_run_dir(root / "new", "r1"):
        raise Boom
    assert sorted(p.name for p in root.iterdir()) == ["earlier"]


def test_a_refused_write_names_the_run_it_was_for(tmp_path: Path) -> None:
    """A write the disk refused names the run (where it would have been), not the hidden staging
    file or nothing; other errors keep their own names."""
    import errno

    root = tmp_path / "runs"
    with pytest.raises(OSError) as full, staged_run_dir(root, "r1") as staging:
        raise OSError(errno.ENOSPC, "No space left on device", str(staging.path / "summary.json"))
    assert (full.value.filename, full.value.filename2) == (str(root / "r1"), None)
    with pytest.raises(OSError) as other, staged_run_dir(root, "r2") as staging:
        raise OSError(errno.ENOENT, "No such file or directory", "elsewhere.yaml")
    assert other.value.filename == "elsewhere.yaml"


def test_staged_run_dir_clears_a_stale_partial(tmp_path: Path) -> None:
    stale = tmp_path / f".r.partial-{os.getpid()}"
    stale.mkdir()
    (stale / "old").write_text("stale")
    with staged_run_dir(tmp_path, "r") as staging:
        assert list(staging.path.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_run_dir_name() -> None:
    now = dt.datetime(2024, 7, 9, 9, 2, 3, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    assert run_dir_name(now, "openai-2024-cn-hk", "simulate") == "20240709T010203Z-openai-2024-cn-hk-simulate"


@pytest.mark.parametrize(("value", "text"), [
    (3, "3"), (np.int64(5), "5"), (2.0, "2"), (-0.0, "0"), (0.1, "0.1"), (1 / 3, "0.3333333333"),
    (123456.789012345, "123456.789"), (float("nan"), "nan"), (1e20, "1e+20"), (1.5e15, "1.5e+15"),
    (999999999999999.0, "999999999999999"), (np.float32(0.5), "0.5"), (-2.5e-7, "-2.5e-07"),
])
def test_fmt_value(value: float, text: str) -> None:
    assert fmt_value(value) == text


def test_timeseries_round_trip(tmp_path: Path) -> None:
    rows = [
        ("2024-07-09T00:00:00Z", 0, "sim", "requests", "CN", "openai", "direct", "", 1200),
        ("2024-07-09T00:00:00Z", 1, "sim", "revenue_usd", "CN", "openai", "", "", 1 / 3),
        ("2024-07-10T00:00:00Z", 0, "loadtest", "orgs", "HK", "", "", "migrated", 7.0),
    ]
    path = tmp_path / "timeseries.csv"
    assert write_timeseries(path, rows) == 3
    assert path.read_text().splitlines() == [
        "time,replication,source,metric,region,provider,path,state,value",
        "2024-07-09T00:00:00Z,0,sim,requests,CN,openai,direct,,1200",
        "2024-07-09T00:00:00Z,1,sim,revenue_usd,CN,openai,,,0.3333333333",
        "2024-07-10T00:00:00Z,0,loadtest,orgs,HK,,,migrated,7",
    ]
    cols = read_timeseries(path)
    assert list(cols) == list(COLUMNS)
    assert cols["replication"].dtype == np.int64 and cols["value"].dtype == float
    assert cols["replication"].tolist() == [0, 1, 0]
    assert cols["value"].tolist() == [1200.0, 0.3333333333, 7.0]
    assert cols["state"].tolist() == ["", "", "migrated"]
    assert cols["metric"].tolist() == ["requests", "revenue_usd", "orgs"]


def test_empty_timeseries(tmp_path: Path) -> None:
    path = tmp_path / "timeseries.csv"
    assert write_timeseries(path, []) == 0
    cols = read_timeseries(path)
    assert all(len(v) == 0 for v in cols.values()) and list(cols) == list(COLUMNS)


def test_timeseries_header_checked(tmp_path: Path) -> None:
    path = tmp_path / "timeseries.csv"
    path.write_text("time,value\n1,2\n")
    with pytest.raises(RunDirError) as info:
        read_timeseries(path)
    assert str(info.value) == f"{path}: header must be {','.join(COLUMNS)}"


def test_band() -> None:
    assert band(list(range(1, 101)), unit="usd", label="revenue") == {
        "mean": 50.5, "p5": 5.95, "p95": 95.05, "n": 100, "sd": 29.01149198, "unit": "usd",
        "label": "revenue"}
    # sd = sqrt(n(n+1)/12) for 1..n with n − 1 in the denominator: 29.0114919759
    assert band([1.0, 3.0])["sd"] == 1.414213562   # sqrt(2)
    assert band([1 / 3, 1 / 3])["sd"] == 0.0
    assert band([2.0]) == {"mean": 2.0, "p5": 2.0, "p95": 2.0, "n": 1}
    assert band([2.0], unit="ms", requests=15) == {"mean": 2.0, "p5": 2.0, "p95": 2.0, "n": 1,
                                                   "unit": "ms", "requests": 15}
    assert band([]) == {"mean": 0.0, "p5": 0.0, "p95": 0.0, "n": 0}
    assert band([1 / 3, 1 / 3])["mean"] == 0.3333333333
    with np.errstate(invalid="ignore"):  # numpy's percentile of inf warns; band still answers
        assert band([1.0, math.inf]) == {"mean": 0.0, "p5": 0.0, "p95": 0.0, "n": 2}  # never inf/nan


def test_a_percentile_on_fewer_requests_than_the_slos_judge_on_is_not_read() -> None:
    assert thin_percentile(band([9.0], requests=199), 200) == "199 requests, fewer than 200: too few to read"
    assert thin_percentile(band([9.0], requests=1), 200) == "1 request, fewer than 200: too few to read"
    assert thin_percentile(band([9.0], requests=200), 200) is None
    assert thin_percentile(band([9.0]), 200) is None   # a simulation's band: no request count


def test_meta() -> None:
    started = dt.datetime(2024, 7, 9, 0, 0, 0, tzinfo=UTC)
    m = meta(kind="simulate", scenario="x", sha256="ab", source="x.yaml", seeds=[1, 2],
             started=started, finished=started + dt.timedelta(seconds=1.2345), replications=2)
    assert (m["format"], m["format_version"], m["kind"]) == ("regionblock-run", 1, "simulate")
    assert m["scenario"] == {"name": "x", "sha256": "ab", "source": "x.yaml"}
    assert m["seeds"] == [1, 2] and m["replications"] == 2
    assert m["timings"] == {"started": "2024-07-09T00:00:00Z", "finished": "2024-07-09T00:00:01.234500Z",
                            "wall_s": 1.234}
    assert "python" in m["versions"]


def _run(tmp_path: Path, **meta_fields: object) -> Path:
    path = tmp_path / "run"
    path.mkdir()
    m = {"format": "regionblock-run", "format_version": 1, "kind": "simulate"} | meta_fields
    write_json(path / "meta.json", m)
    write_json(path / "summary.json", {"headline": {}})
    (path / "scenario.yaml").write_text("name: x\n")
    row = ("2024-07-09T00:00:00Z", 0, "sim", "requests", "", "", "", "", 1)
    write_timeseries(path / "timeseries.csv", [row])
    return path


def test_read_run(tmp_path: Path) -> None:
    run = read_run(_run(tmp_path))
    assert (run.kind, run.summary, run.scenario_yaml) == ("simulate", {"headline": {}}, "name: x\n")
    assert run.timeseries()["value"].tolist() == [1.0]


def test_read_run_sweep_needs_no_timeseries(tmp_path: Path) -> None:
    path = _run(tmp_path, kind="sweep")
    (path / "timeseries.csv").unlink()
    assert read_run(path).kind == "sweep"


def test_read_run_errors(tmp_path: Path) -> None:
    def error(path: Path) -> str:
        with pytest.raises(RunDirError) as info:
            read_run(path)
        assert "\n" not in str(info.value)
        return str(info.value)

    file = tmp_path / "file.txt"
    file.write_text("x")
    assert error(file) == f"{file}: not a directory"
    assert error(tmp_path / "missing") == f"{tmp_path / 'missing'}: not a directory"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert error(empty) == f"{empty}: not a run directory (no meta.json)"

    path = _run(tmp_path)
    m = path / "meta.json"
    m.write_text(json.dumps({"format": "other", "format_version": 1, "kind": "simulate"}))
    assert error(path) == f"{path}: meta.json: not a regionblock run (format 'other')"
    m.write_text(json.dumps({"format_version": 1}))
    assert error(path) == f"{path}: meta.json: not a regionblock run (format None)"
    m.write_text(json.dumps({"format": "regionblock-run", "format_version": 2, "kind": "simulate"}))
    assert error(path) == f"{path}: meta.json: format_version 2 is not supported (this version reads 1)"
    m.write_text(json.dumps({"format": "regionblock-run", "format_version": 1, "kind": "bogus"}))
    assert error(path) == f"{path}: meta.json: unknown kind 'bogus'"
    m.write_text("[1, 2]")
    assert error(path) == f"{m}: expected a JSON object"
    m.write_text("{not json")
    assert error(path).startswith(f"{m}: unreadable: Expecting property name enclosed in double quotes")
    m.write_text(json.dumps({"format": "regionblock-run", "format_version": 1, "kind": "simulate"}))
    (path / "timeseries.csv").unlink()
    assert error(path) == f"{path}: not a run directory (no timeseries.csv)"
    (path / "scenario.yaml").unlink()
    assert error(path) == f"{path}: not a run directory (no scenario.yaml)"
    (path / "summary.json").unlink()
    assert error(path) == f"{path}: not a run directory (no summary.json)"


def test_write_json_refuses_nan(tmp_path: Path) -> None:
    write_json(tmp_path / "a.json", {"b": 1, "a": [1.5]})
    assert (tmp_path / "a.json").read_text() == '{\n  "a": [\n    1.5\n  ],\n  "b": 1\n}\n'
    with pytest.raises(ValueError):
        write_json(tmp_path / "b.json", {"x": float("nan")})


def test_times_with_an_offset_read_in_the_one_form_we_write(tmp_path: Path) -> None:
    """Readers match times as text: an instant written with an offset reads as our `Z` form."""
    path = tmp_path / "timeseries.csv"
    path.write_text(",".join(COLUMNS) + "\n"
                    "2024-07-09T08:00:00+08:00,0,sim,requests,CN,,,,1\n"
                    "2024-07-09T00:00:00Z,1,sim,requests,CN,,,,2\n"
                    "2024-07-09T01:00:00+00:00,0,sim,requests,CN,,,,3\n", encoding="utf-8")
    assert read_timeseries(path)["time"].tolist() == [
        "2024-07-09T00:00:00Z", "2024-07-09T00:00:00Z", "2024-07-09T01:00:00Z"]
