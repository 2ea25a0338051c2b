"""``regionblock report RUN_DIR... [--out DIR]``: charts, report.html and summary.md from runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from regionblock.common import stderr_console


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="charts, a self-contained report.html and summary.md from run directories",
        description="Build a report from one or more run directories (simulations, sweeps, load "
                    "tests, mixed): PNG and SVG charts, report.html (readable offline) and summary.md.")
    p.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR", help="a run directory")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="where to write the report (default: RUN_DIR/report of the first run); "
                        "replaced if it holds a previous report")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from reports.build import build_report  # why: matplotlib loads only when a report is built

    with stderr_console().status("building the report…"):
        page = build_report(list(args.run_dirs), args.out)
    print(page)
    print(page.with_name("summary.md"))
    return 0
