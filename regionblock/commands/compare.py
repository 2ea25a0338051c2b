"""``regionblock compare SIM_RUN LOADTEST_RUN``: the verdict table (exit 1 on any 'disagree')."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from scenarios.errors import RunDirError, UsageError
from scenarios.rundir import Run
from scenarios.verdict import DISAGREE, Verdict


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare", help="does the load test agree with the simulation? one verdict per figure",
        description="Compare a load test with a simulation of the same scenario, figure by figure "
                    "(block share per region, revenue share per provider, organisations per state, "
                    "direct-path latency percentiles in true time): agree when the 90 % interval "
                    "of the difference lies within ±10 % (±1 point for shares under 10 %), "
                    "disagree when the 95 % interval excludes zero outside that margin, else "
                    "inconclusive. Exit 1 if any figure disagrees.")
    p.add_argument("sim_run", type=Path, metavar="SIM_RUN", help="a simulation's run directory")
    p.add_argument("loadtest_run", type=Path, metavar="LOADTEST_RUN", help="a load test's run directory")
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from scenarios.figures import compare, compare_series, is_paired
    from scenarios.loader import load_text
    from scenarios.rundir import expand_sets, read_run

    sims = [read_run(p) for p in expand_sets([args.sim_run])]
    lts = [read_run(p) for p in expand_sets([args.loadtest_run])]
    for sim in sims:
        if sim.kind != "simulate":
            raise UsageError(f"{sim.path}: SIM_RUN must be a simulation's run directory (it is a "
                             f"{sim.kind})")
    for lt in lts:
        if lt.kind != "loadtest":
            raise UsageError(f"{lt.path}: LOADTEST_RUN must be a load test's run directory "
                             f"(it is a {lt.kind})")
    pairs = [(_reference(sims, lt, args.sim_run), lt) for lt in lts]
    for sim, lt in pairs:
        _check_pair(sim, lt)
    sim0 = pairs[0][0]
    s = load_text(sim0.scenario_yaml, file=str(sim0.path / "scenario.yaml")).scenario
    table = compare(s, *pairs[0]) if len(pairs) == 1 else compare_series(s, pairs)
    paired = all(is_paired(sim, lt) for sim, lt in pairs)
    if args.json:
        print(json.dumps({"reference": "paired" if paired else "forecast",
                          "simulation": [sim.path.name for sim, _ in pairs] if len(pairs) > 1
                          else sim0.path.name,
                          "loadtest": [lt.path.name for lt in lts] if len(lts) > 1 else lts[0].path.name,
                          "verdicts": [v.as_dict() for v in table]}, indent=2, allow_nan=False))
    else:
        for sim, lt in pairs:
            print(reference_line(sim, lt))
        if len(pairs) > 1:
            print(f"{len(pairs)} load tests pooled (differences weighted by their n)")
        print(render(table, lts[0].summary))
    return 1 if any(v.verdict == DISAGREE for v in table) else 0


def _reference(sims: list[Run], lt: Run, given: Path) -> Run:
    """The load test's paired simulation among ``sims``, else the one forecast given."""
    from scenarios.figures import is_paired

    for sim in sims:
        if is_paired(sim, lt):
            return sim
    if len(sims) == 1:
        return sims[0]    # a forecast, or a paired simulation of another load test (refused later)
    forecasts = [sim for sim in sims if sim.sample_of is None]
    if len(forecasts) == 1:
        return forecasts[0]
    raise UsageError(f"{given}: holds no paired simulation of load test {lt.path.name}")


def _check_pair(sim: Run, lt: Run) -> None:
    from scenarios.figures import check_ledger

    sim_sc, lt_sc = _scenario_of(sim), _scenario_of(lt)
    if sim_sc.get("name") != lt_sc.get("name"):
        raise UsageError(f"{lt.path}: a run of scenario {lt_sc.get('name')!r}, but "
                         f"{sim.path} simulates {sim_sc.get('name')!r}")
    if sim_sc.get("sha256") != lt_sc.get("sha256"):
        raise UsageError(f"{lt.path}: a run of another version of {lt_sc.get('name')!r} "
                         f"than {sim.path} (the resolved scenarios differ: a --set, or an edited "
                         "file)")
    of = sim.sample_of
    if of is not None and of.get("run") != lt.path.name:
        raise UsageError(f"{sim.path}: the paired simulation of load test {of.get('run')}, "
                         f"not of {lt.path.name}")
    if not (lt.path / "ledger.sqlite").is_file():
        raise RunDirError(f"{lt.path}: no ledger.sqlite (a load test with --host needs "
                          "--ledger to be compared)")
    check_ledger(lt)   # a ledger of the contract, read as finished: nothing left beside it


def _scenario_of(run: Run) -> dict[str, object]:
    """meta.json's scenario: {name, sha256, source} (a bare name in runs of older versions)."""
    sc = run.meta.get("scenario")
    return sc if isinstance(sc, dict) else {"name": sc}


def reference_line(sim: Run, lt: Run) -> str:
    """What the load test is judged against: its paired simulation, or the forecast."""
    from scenarios.figures import is_paired

    if is_paired(sim, lt):
        return (f"reference: {sim.path.name}, the paired simulation of this load test (its own "
                "organisations in the full market's context: like for like)")
    return (f"reference: {sim.path.name}, a simulation of the whole market (the forecast): the "
            "load test's sample is part of every difference; `regionblock simulate SCENARIO "
            f"--sample-of {lt.path}` gives the like-for-like reference")


def render(table: list[Verdict], lt_summary: dict[str, object]) -> str:
    """The verdict table as text: figure, simulation, load test, difference [90 % CI], n, verdict."""
    from scenarios.figures import LATENCIES

    head = (f"{'figure':<28} {'simulation':>11} {'load test':>11} {'difference [90% CI]':>30} "
            f"{'n':>8}  verdict")
    lines = [head, "-" * len(head)]
    for v in table:
        fmt = _ms if v.figure.startswith(LATENCIES) else _pct
        ci = f"{fmt(v.diff, sign=True)} [{fmt(v.ci90[0], sign=True)}, {fmt(v.ci90[1], sign=True)}]"
        lines.append(f"{v.figure:<28} {fmt(v.sim_mean):>11} {fmt(v.loadtest):>11} {ci:>30} "
                     f"{v.n:>8,}  {v.verdict}{'  (' + v.why + ')' if v.why else ''}")
    info = lt_summary.get("loadtest")
    if isinstance(info, dict) and info.get("timing") == "scaled":
        lines.append("latency figures left out: the load test ran at a scaled time (--time-scale)")
    counts = {k: sum(v.verdict == k for v in table) for k in ("agree", "inconclusive", "disagree")}
    lines.append(", ".join(f"{n} {k}" for k, n in counts.items()))
    return "\n".join(lines)


def _pct(x: float, sign: bool = False) -> str:
    if not math.isfinite(x):
        return "—"
    return f"{100 * x:+.2f} pt" if sign else f"{100 * x:.2f} %"


def _ms(x: float, sign: bool = False) -> str:
    if not math.isfinite(x):
        return "—"
    return f"{x:+,.0f} ms" if sign else f"{x:,.0f} ms"
