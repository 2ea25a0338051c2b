"""What every subcommand shares: the SCENARIO argument with ``--set``, loading, and the console."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

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
