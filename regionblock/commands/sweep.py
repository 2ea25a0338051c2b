"""``regionblock sweep SCENARIO --set PATH=V1,V2,... [--set ...] [--replications N] [--jobs K]
[--dask ADDRESS] [--out DIR]``."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from regionblock.commands.simulate import (
    add_run_options,
    check_run_options,
    fmt,
    progress_bar,
    wide_console,
)
from regionblock.common import SCENARIO_REF, nonempty_text, stderr_console

#: Headline figures shown per point in the terminal (all of them are in sweep.csv).
SHOWN = ("incumbent_revenue_lost_usd", "incumbent_revenue_lost_pct", "relay_markup_usd")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="simulate every point of a parameter grid",
                       description="Simulate a scenario over a grid of parameter values (the "
                                   "cartesian product of every --set PATH=V1,V2,...), in a process "
                                   "pool or on a Dask cluster. Writes one run directory per point "
                                   "and a sweep table; prints the sweep directory's path.")
    p.add_argument("scenario", metavar="SCENARIO", type=SCENARIO_REF,
                   help="a scenario file or a shipped scenario name")
    p.add_argument("--set", dest="grid", action="append", default=[], metavar="PATH=V1,V2,...",
                   help="a swept field and its values (comma-separated; [a,b] stays one value); "
                        "a single value overrides the field at every point")
    add_run_options(p)
    p.add_argument("--dask", metavar="ADDRESS", default=None,
                   type=nonempty_text("a Dask scheduler's address, e.g. tcp://10.0.0.5:8786"),
                   help="run on the Dask scheduler at ADDRESS (needs the 'cluster' extra)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_run_options(args)
    from sim.sweep import check, sweep

    check(args.scenario, list(args.grid), dask=args.dask)  # bad input fails before any work
    console = stderr_console()
    with progress_bar(console, "sweep") as bar:
        task = bar.add_task("sweep", total=None)
        path = sweep(args.scenario, (), list(args.grid), replications=args.replications,
                     seed=args.seed, jobs=args.jobs, out=args.out, scale=args.scale, dask=args.dask,
                     progress=lambda done, total: bar.update(task, completed=done, total=total))
    print(path)
    summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
    table = points_table(summary)
    console = wide_console()
    # as wide as the table wants: a parameter's path is what a point means, never cut to "…"
    unbounded = Console(width=10_000)
    natural = Measurement.get(unbounded, unbounded.options, table).maximum
    if natural > console.width:
        console = Console(highlight=False, width=natural)
    console.print(table)
    return 0


def points_table(summary: dict[str, object]) -> Table:
    params = list(summary["parameters"])  # type: ignore[call-overload]
    table = Table(title=f"{summary['scenario']} sweep — {summary['replications']} replications per "
                        f"point, seed {summary['seed']} (mean)")
    table.add_column("point")
    for p in params:
        table.add_column(p)
    for key in SHOWN:
        table.add_column(key.replace("_", " "), justify="right")
    for pt in summary["points"]:  # type: ignore[attr-defined]
        head = pt["headline"]
        table.add_row(pt["run_dir"], *(json.dumps(pt["overrides"][p]) for p in params),
                      *(fmt(head[k]["mean"], head[k].get("unit", "")) if k in head else "" for k in SHOWN))
    return table
