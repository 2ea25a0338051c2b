"""``regionblock report``: output paths on stdout; bad input is one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from regionblock.cli import main
from tests.reports import builders


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_report_prints_html_and_summary_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = builders.write_minimal_run(tmp_path)
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [str(run / "report" / "report.html"), str(run / "report" / "summary.md")]
    assert (run / "report" / "report.html").is_file()


def test_a_directory_that_is_not_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert one_error_line(capsys) == f"{tmp_path}: not a run directory (no meta.json)"


def test_an_unknown_format_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = builders.write_sweep_run(tmp_path)
    meta = json.loads((run / "meta.json").read_text())
    meta["format_version"] = 99
    (run / "meta.json").write_text(json.dumps(meta))
    assert main(["report", str(run)]) == 2
    assert "format_version 99 is not supported" in one_error_line(capsys)


def test_a_malformed_timeseries(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = builders.write_sweep_run(tmp_path)
    meta = json.loads((run / "meta.json").read_text())
    meta["kind"] = "simulate"
    (run / "meta.json").write_text(json.dumps(meta))
    (run / "timeseries.csv").write_text(
        "time,replication,source,metric,region,provider,path,state,value\n"
        "yesterday,0,sim,requests,CN,openai,,,1\n")
    assert main(["report", str(run)]) == 2
    assert one_error_line(capsys) == (f"{run / 'timeseries.csv'}: line 2: time 'yesterday' is not an "
                                      "ISO-8601 instant")


def test_out_that_is_not_a_report_is_left_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = builders.write_sweep_run(tmp_path / "runs")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert main(["report", str(run), "--out", str(tmp_path / "mine")]) == 2
    assert "is not a report directory" in one_error_line(capsys)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
