"""Synthetic run directories (see builders.py) and one report built from all of them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from reports.build import build_report
from tests.reports import builders

NOW = dt.datetime(2024, 10, 3, 9, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    builders.write_sim_run(root)
    builders.write_loadtest_run(root)
    builders.write_sweep_run(root)
    return root


@pytest.fixture(scope="session")
def sim_run(runs_root: Path) -> Path:
    return next(runs_root.glob("*-simulate"))


@pytest.fixture(scope="session")
def loadtest_run(runs_root: Path) -> Path:
    return next(runs_root.glob("*-loadtest"))


@pytest.fixture(scope="session")
def sweep_run(runs_root: Path) -> Path:
    return next(runs_root.glob("*-sweep"))


@pytest.fixture(scope="session")
def report(tmp_path_factory: pytest.TempPathFactory, sim_run: Path, loadtest_run: Path,
           sweep_run: Path) -> Path:
    """report.html of a report over a simulation, a load test and a sweep."""
    out = tmp_path_factory.mktemp("report") / "all"
    return build_report([sim_run, loadtest_run, sweep_run], out, now=NOW)
