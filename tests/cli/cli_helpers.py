"""Helpers for the CLI tests: run ``regionblock`` in-process, compare with golden texts.

Golden texts live in tests/cli/golden/*.txt. After an intended change of output, rewrite them
with ``REGEN_GOLDEN=1 .venv/bin/pytest tests/cli`` and review the diff.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from regionblock.cli import main

GOLDEN = Path(__file__).parent / "golden"
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Result:
    """``regionblock ARGV...`` in this process; argparse's own exits become exit codes too."""
    capsys.readouterr()  # drop anything printed before
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def assert_golden(name: str, text: str) -> None:
    """``text`` equals tests/cli/golden/NAME exactly (REGEN_GOLDEN=1 rewrites it instead)."""
    path = GOLDEN / name
    if os.environ.get("REGEN_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
        return
    assert path.is_file(), f"no golden file {path}; run with REGEN_GOLDEN=1 to create it"
    assert text == path.read_text(encoding="utf-8"), f"output differs from {path}"


def assert_one_line_error(result: Result, expected: str) -> None:
    """Exit 2, nothing on stdout, exactly ``expected`` as the one line on stderr."""
    assert (result.code, result.out, result.err) == (2, "", expected + "\n")
