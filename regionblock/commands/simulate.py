"""``regionblock simulate SCENARIO [--replications N] [--seed S] [--jobs K] [--set PATH=VALUE]...
[--sample-of LOADTEST_RUN] [--out DIR]``."""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from regionblock.common import (
    add_scenario_arg,
    check_out_dir,
    default_runs_dir,
    finite_number,
    load_scenario,
    nonempty_path,
    process_count,
    seed_number,
    stderr_console,
    whole_number,
)
from scenarios.errors import UsageError
from scenarios.loader import Loaded
from scenarios.rundir import run_dir_name, set_members, staged_run_dir, write_set
from scenarios.verdict import PAIRED_REPLICATIONS

if TYPE_CHECKING:
    from sim.run import Paired

#: Headline keys shown in the terminal table (the full set is in summary.json).
#: The most replications one run takes: each is a whole simulation (with its baseline), kept until
#: the run is written, and the 5 %/95 % bands they give are settled long before.
MAX_REPLICATIONS = 10_000
REPLICATIONS = whole_number(1, MAX_REPLICATIONS, why="the 5 %/95 % bands are settled long before")
DEFAULT_REPLICATIONS = 10

SHOWN = ("incumbent_baseline_revenue_usd", "incumbent_revenue_usd", "incumbent_revenue_lost_usd",
         "incumbent_revenue_lost_pct", "blocked_regions_share_of_revenue_pct",
         "blocked_regions_revenue_lost_pct", "relay_markup_usd", "retry_amplification")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="simulate a scenario (replications, with a no-block baseline)",
                       description="Run the discrete-event simulation of a scenario: organisations as "
                                   "agents, traffic, staged blocking, circumvention, migration and "
                                   "revenue, with its no-block baseline over common random numbers. "
                                   "Writes a run directory and prints its path.")
    add_scenario_arg(p)
    add_run_options(p, paired=True)
    p.add_argument("--sample-of", type=nonempty_path, default=None, metavar="LOADTEST_RUN",
                   help="the paired simulation of a load test: exactly its organisations (ids, "
                        "rates in its units, weights, generators) in the full market's context, "
                        "replications varying only request-level chance; the like-for-like "
                        "reference `regionblock compare` judges the load test against")
    p.set_defaults(func=run)


def add_run_options(p: argparse.ArgumentParser, *, paired: bool = False) -> None:
    """The options a simulation and a sweep share; ``paired``: the parser also takes
    ``--sample-of`` (whose simulations run ``PAIRED_REPLICATIONS`` unless told)."""
    also = (f"; {PAIRED_REPLICATIONS} with --sample-of, the fewest whose ranks can show a "
            "disagreement, plus one") if paired else ""
    p.add_argument("--replications", default=None, metavar="N", type=REPLICATIONS,
                   help=f"independent replications (default {DEFAULT_REPLICATIONS}{also}; "
                        f"at most {MAX_REPLICATIONS:,})")
    p.add_argument("--seed", type=seed_number, default=0, metavar="S", help="root seed (default 0)")
    p.add_argument("--jobs", type=process_count(1), default=1, metavar="K",
                   help="worker processes (default 1)")
    p.add_argument("--scale", type=finite_number(), default=1.0, metavar="F",
                   help="simulate this fraction of every region's organisations (default 1)")
    p.add_argument("--out", type=nonempty_path, default=default_runs_dir(), metavar="DIR",
                   help="root directory for run directories (default runs/)")


def check_run_options(args: argparse.Namespace) -> None:
    """What the options' ``type=`` functions cannot say alone (the counts, seeds and paths are
    parsed and bounded by them)."""
    if args.replications is None:
        args.replications = (PAIRED_REPLICATIONS if getattr(args, "sample_of", None) is not None
                             else DEFAULT_REPLICATIONS)
    if not 0.0 < args.scale <= 1.0:
        raise UsageError(f"--scale: must be in (0, 1] (got {args.scale:g})")
    check_out_dir(args.out)


def wide_console() -> Console:
    """stdout, at least 110 columns wide so a table of figures never wraps its labels."""
    return Console(highlight=False, width=max(110, Console().width))


def progress_bar(console: Console, what: str) -> Progress:
    """A bar on a terminal; nothing at all elsewhere (rich's transient bar left an empty line on
    a pipe or a file, before the run's path or its error)."""
    return Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True, disable=not console.is_terminal)


def run(args: argparse.Namespace) -> int:
    check_run_options(args)
    loaded = load_scenario(args)
    from sim.run import Paired, simulate

    paired = None
    if args.sample_of is not None:
        if args.scale != 1.0:
            raise UsageError("--scale: not with --sample-of (the load test's sample is simulated "
                             "as it is, in its own units)")
        members = set_members(args.sample_of) if args.sample_of.is_dir() else None
        if members is not None:
            return _paired_set(args, loaded, [Paired.of_run(m, loaded) for m in members])
        paired = Paired.of_run(args.sample_of, loaded)
    console = stderr_console()
    with progress_bar(console, "replications") as bar:
        task = bar.add_task("simulate", total=args.replications)
        path = simulate(loaded, replications=args.replications, seed=args.seed, jobs=args.jobs,
                        out=args.out, scale=args.scale, paired=paired,
                        progress=lambda done, total: bar.update(task, completed=done))
    print(path)
    summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
    console_out = wide_console()
    console_out.print(headline_table(summary))
    if summary.get("bands"):
        console_out.print(f"Bands: {summary['bands']}")
    if summary.get("magnitudes"):
        console_out.print(f"Magnitudes: {summary['magnitudes']}")
    return 0


def _paired_set(args: argparse.Namespace, loaded: Loaded, pairs: list[Paired]) -> int:
    """``--sample-of`` a run set (``loadtest --repeat``): one paired simulation per load test,
    in one run set of their own (all or nothing)."""
    from sim.run import simulate

    console = stderr_console()
    name = run_dir_name(dt.datetime.now(dt.UTC), loaded.scenario.name, "paired-set")
    with staged_run_dir(args.out, name) as staging:
        members = []
        for k, paired in enumerate(pairs):
            with progress_bar(console, f"paired {k + 1}/{len(pairs)}") as bar:
                task = bar.add_task("simulate", total=args.replications)
                members.append(simulate(loaded, replications=args.replications, seed=args.seed,
                                        jobs=args.jobs, out=staging.path, paired=paired,
                                        progress=functools.partial(_advance, bar, task)))
        write_set(staging.path, kind="paired-set", scenario=loaded.scenario.name, members=members,
                  seeds=[p.sample.seed for p in pairs])
    assert staging.final is not None
    print(staging.final)
    for m, p in zip(members, pairs, strict=True):
        print(f"  {m.name}: the paired simulation of {p.run.name}")
    return 0


def _advance(bar: Progress, task: Any, done: int, _total: int) -> None:
    bar.update(task, completed=done)


def headline_table(summary: dict[str, Any]) -> Table:
    head = summary["headline"]
    table = Table(title=f"{summary['scenario']} — {summary['replications']} replications, "
                        f"seed {summary['seed']} (mean [5 %, 95 %])")
    table.add_column("figure", no_wrap=True)
    table.add_column("mean", justify="right")
    table.add_column("5 %", justify="right")
    table.add_column("95 %", justify="right")
    keys = [k for k in SHOWN if k in head]
    keys += sorted(k for k in head if k.startswith(("alt_revenue_gained_usd.", "orgs_final.")))
    for key in keys:
        b = head[key]
        table.add_row(b.get("label", key), *(fmt(b[f], b.get("unit", "")) for f in ("mean", "p5", "p95")))
    return table


def fmt(value: float, unit: str) -> str:
    if unit == "usd":
        return f"${value:,.0f}"
    if unit == "pct":
        return f"{value:.1f} %"
    if unit == "orgs":
        return f"{value:,.0f}"
    if unit == "ms":
        return f"{value:,.0f} ms"
    return f"{value:.3f}"
