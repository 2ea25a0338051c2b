"""Every command that writes a run directory or a report checks its ``--out`` for real, before
any work: one line naming the argument, exit 2, nothing made (regionblock.common.check_out_dir)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from regionblock.common import check_out_dir
from scenarios.errors import UsageError
from tests.cli.cli_helpers import run_cli

# /proc takes no new directories, for root too (whom os.access lets write there)
UNWRITABLE = Path("/proc/regionblock-nosuch/runs")
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux") or not Path("/proc").is_dir(),
                                reason="needs Linux's /proc")


@linux_only
@pytest.mark.parametrize("argv", [
    ["simulate", "mmc-validation", "--replications", "1"],
    ["sweep", "mmc-validation", "--set", "behaviour.relay.markup=0.1,0.2"],
    ["loadtest", "mmc-validation", "--duration", "5s"],
    ["demo", "--duration", "5s"],
    ["report", "RUN"],
], ids=["simulate", "sweep", "loadtest", "demo", "report"])
def test_an_out_that_cannot_be_made_stops_before_any_work(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str]) -> None:
    if argv[0] == "report":
        run = tmp_path / "run"
        run.mkdir()
        argv = ["report", str(run)]
    result = run_cli(capsys, *argv, "--out", str(UNWRITABLE))
    assert result.code == 2 and result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"--out: {UNWRITABLE}: cannot write there (/proc: "), lines[0]
    assert not UNWRITABLE.parent.exists()
    assert list(tmp_path.rglob("*")) == ([tmp_path / "run"] if argv[0] == "report" else [])


def test_the_probe_leaves_nothing(tmp_path: Path) -> None:
    check_out_dir(tmp_path / "new" / "deeper")          # creatable: no error, nothing made
    check_out_dir(tmp_path)                             # existing and writable
    assert list(tmp_path.iterdir()) == []


def test_a_file_on_the_way_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(UsageError, match=rf"^--out: {blocker}/runs: {blocker} is not a directory$"):
        check_out_dir(blocker / "runs")
    with pytest.raises(UsageError, match=rf"^--out: {blocker}: exists and is not a directory$"):
        check_out_dir(blocker)


def test_every_help_text_reads_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    # argparse %-formats help strings but prints a description as it is: "%%" there shows twice
    from regionblock.cli import command_modules

    for command in command_modules():
        result = run_cli(capsys, command, "--help")
        assert result.code == 0, command
        assert "%%" not in result.out, command
    assert "agree when the 90 % interval" in " ".join(run_cli(capsys, "compare", "--help").out.split())
