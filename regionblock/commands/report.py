"""``regionblock report RUN_DIR... [--out DIR]``: charts, report.html and summary.md from runs.

A load test given without its paired simulation (``simulate --sample-of`` it) gets one first,
written beside it, so that its verdicts are judged like for like (``--no-paired`` skips it).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from regionblock.commands.simulate import REPLICATIONS
from regionblock.common import check_out_dir, stderr_console
from scenarios.errors import RunDirError, UsageError
from scenarios.rundir import Run
from scenarios.verdict import PAIRED_REPLICATIONS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="charts, a self-contained report.html and summary.md from run directories",
        description="Build a report from one or more run directories (simulations, sweeps, load "
                    "tests, mixed): PNG and SVG charts, report.html (readable offline) and "
                    "summary.md. A load test given without its paired simulation gets one first "
                    "(its own organisations in the full market's context), written beside it.")
    p.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR", help="a run directory")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="where to write the report (default: RUN_DIR/report of the first run); "
                        "replaced if it holds a previous report")
    p.add_argument("--no-paired", action="store_true",
                   help="do not run a paired simulation for a load test given without one (its "
                        "verdicts are then judged against a full-market simulation, if given)")
    p.add_argument("--paired-replications", type=REPLICATIONS, default=PAIRED_REPLICATIONS, metavar="N",
                   help=f"replications of a paired simulation run here (default {PAIRED_REPLICATIONS})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from reports.build import (  # why: matplotlib loads only when a report is built
        DEFAULT_HINT,
        build_report,
        check_destination,
        default_destination,
    )
    from reports.data import load_run
    from scenarios.rundir import expand_sets

    run_dirs = expand_sets(list(args.run_dirs))   # a run set (loadtest --repeat): its members
    if args.out is not None:
        check_out_dir(args.out)           # before anything is read or simulated
        check_destination(args.out)
    # every run read and checked (each file the report reads) before any simulation runs
    loaded = {p: load_run(p) for p in run_dirs}
    if args.out is None:
        try:
            check_out_dir(default_destination(run_dirs), flag="report")
        except UsageError as exc:
            raise UsageError(f"{exc}{DEFAULT_HINT}") from None
        check_destination(default_destination(run_dirs), "report", DEFAULT_HINT)
    made: list[Path] = []
    try:
        if not args.no_paired:
            paired_runs([loaded[p].run for p in run_dirs], args.paired_replications, made)
        loaded |= {p: load_run(p) for p in made}
        with stderr_console().status("building the report…"):
            page = build_report(run_dirs + made, args.out, loaded=loaded)
    except BaseException:
        for path in made:   # a report that failed leaves no paired simulation of its own behind
            shutil.rmtree(path, ignore_errors=True)
        raise
    print(page)
    print(page.with_name("summary.md"))
    return 0


def paired_runs(runs: list[Run], replications: int, made: list[Path]) -> None:
    """The paired simulation of every load test among ``runs`` that has none among them,
    simulated now (beside the load test), each appended to ``made`` once written. A load test
    without a sample (sample.json: made before paired simulations existed) is said so and left;
    one whose sample or market context cannot be read is bad input (RunDirError), found before
    the first simulation runs."""
    from scenarios.loader import load_text
    from scenarios.sample import SAMPLE_FILE
    from sim.run import Paired, simulate

    have = {str(r.sample_of.get("run")) for r in runs if r.sample_of is not None}
    console = stderr_console()
    todo = []
    for lt in runs:
        if lt.kind != "loadtest" or lt.path.name in have:
            continue
        loaded = load_text(lt.scenario_yaml, file=str(lt.path / "scenario.yaml"))
        try:
            todo.append((lt, loaded, Paired.of_run(lt.path, loaded)))
        except RunDirError as exc:
            if (lt.path / SAMPLE_FILE).is_file():
                raise    # its sample or market context is damaged: bad input, not an older run
            console.print(f"report: no paired simulation for {lt.path.name}: {exc}", soft_wrap=True,
                          highlight=False, markup=False)
    for lt, _, _ in todo:    # where each goes, before the first one runs
        check_out_dir(lt.path.parent, flag=f"report: paired simulation of {lt.path.name}")
    for lt, loaded, paired in todo:
        with console.status(f"paired simulation of {lt.path.name} ({replications} replications)…"):
            path = simulate(loaded, replications=replications, seed=0, out=lt.path.parent,
                            paired=paired)
        made.append(path)
        console.print(f"report: paired simulation of {lt.path.name}: {path}", soft_wrap=True,
                      highlight=False, markup=False)
