"""What every subcommand shares: the SCENARIO argument with ``--set``, loading, the console, and
the check of an output directory."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from rich.console import Console

from scenarios.errors import UsageError
from scenarios.loader import Loaded, load


def add_scenario_arg(p: argparse.ArgumentParser) -> None:
    """SCENARIO (a path or a shipped name) and repeatable ``--set PATH=VALUE`` overrides."""
    p.add_argument("scenario", metavar="SCENARIO", help="a scenario file or a shipped scenario name")
    add_set_arg(p)


def add_set_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                   help="override a scenario field, e.g. --set policy.openai.stages[1].percent=50")


def load_scenario(args: argparse.Namespace) -> Loaded:
    """Load SCENARIO with the command's overrides (raises ScenarioError on bad input)."""
    return load(args.scenario, tuple(getattr(args, "overrides", ()) or ()))


def stderr_console() -> Console:
    """Progress and notices go to stderr so stdout stays clean for data."""
    return Console(stderr=True, highlight=False)


def default_runs_dir() -> Path:
    return Path("runs")


def check_out_dir(out: Path, flag: str = "--out") -> None:
    """``out`` must be a directory we can write into, or creatable in one — checked before any
    work, so a typo does not cost a whole simulation and a traceback.

    The nearest existing directory is tried for real: a directory made in it and removed at once
    (nothing is left). Permission bits alone do not tell: root passes ``os.access`` on /proc and
    /sys, and a read-only mount or a full quota says no only when something is made."""
    probe = out
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        what = "exists and is not a directory" if probe == out else f"{probe} is not a directory"
        raise UsageError(f"{flag}: {out}: {what}")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".regionblock-probe-", dir=probe))
    except OSError as exc:
        raise UsageError(f"{flag}: {out}: cannot write there ({probe}: "
                         f"{(exc.strerror or str(exc)).lower()})") from None
