"""``regionblock demo [--out DIR]``: the main job on the default scenario, in a few minutes.

A simulation with replications (and its no-block baseline), a short load test of the same
scenario in true time (the real gateway; mock providers at the scenario's latency laws; the
relay; each region's WAN round trip), the paired simulation of the load test's own organisations,
then the report of all three. Prints five headline numbers, the verdict table (the load test
against its paired simulation) and the path of report.html.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import Any

from regionblock.commands.simulate import REPLICATIONS
from regionblock.common import (
    check_out_dir,
    default_runs_dir,
    nonempty_path,
    nonempty_text,
    process_count,
    stderr_console,
    whole_number,
)
from scenarios.rundir import stamp, thin_percentile
from scenarios.verdict import PAIRED_REPLICATIONS

DEFAULT_SCENARIO = "openai-2024-cn-hk"
#: Enough organisations that every region x segment stratum is played by several.
DEMO_USERS = 1000


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the main job on the default scenario",
                       description="Simulate the default scenario (with replications and its "
                                   "no-block baseline), load-test it against the real gateway, "
                                   "and build the report of both.")
    p.add_argument("--out", type=nonempty_path, default=default_runs_dir(), metavar="DIR",
                   help="runs root (default: runs/)")
    p.add_argument("--scenario", default=DEFAULT_SCENARIO, metavar="SCENARIO",
                   type=nonempty_text("a scenario file or a shipped scenario name"),
                   help=f"scenario to run (default: {DEFAULT_SCENARIO})")
    p.add_argument("--replications", type=REPLICATIONS, default=10, metavar="N",
                   help="simulation replications (default 10)")
    p.add_argument("--jobs", type=process_count(1), default=2, metavar="K",
                   help="simulation processes (default 2)")
    p.add_argument("--duration", default="60s", metavar="D",
                   help="wall duration of the load test (default 60s)")
    p.add_argument("--users", type=whole_number(1), default=DEMO_USERS, metavar="N",
                   help=f"organisations in the load test (default {DEMO_USERS})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from loadtests.plan import DEFAULT_RATE
    from loadtests.run import loadtest
    from regionblock.commands.loadtest import check_load
    from reports.build import build_report
    from scenarios.clock import parse_duration
    from scenarios.loader import load
    from sim.model import market_context
    from sim.run import Paired, simulate

    duration_s = parse_duration(args.duration, what="--duration")
    check_out_dir(args.out)
    loaded = load(args.scenario)
    check_load(loaded.scenario, duration_s=duration_s, duration_text=args.duration,
               users=args.users, workers=0, rate=DEFAULT_RATE)
    console = stderr_console()
    out: Path = args.out

    console.print(f"demo 1/4: simulating {loaded.scenario.name} "
                  f"({args.replications} replications + no-block baseline)")
    sim_dir = simulate(loaded, replications=args.replications, seed=0, jobs=args.jobs, out=out)
    console.print(f"          {sim_dir}")
    console.print(f"demo 2/4: load test of the same scenario, {duration_s:g} s in true time "
                  f"({args.users} organisations)")
    lt_dir, lt_code = loadtest(loaded, duration_s=duration_s, users=args.users, out=out,
                               console=console, market=market_context(loaded.scenario, 0))
    console.print(f"demo 3/4: the paired simulation: the load test's own {args.users} organisations "
                  f"in the full market's context ({PAIRED_REPLICATIONS} replications)")
    paired_dir = simulate(loaded, replications=PAIRED_REPLICATIONS, seed=0, jobs=args.jobs, out=out,
                          paired=Paired.of_run(lt_dir, loaded))
    console.print(f"          {paired_dir}")
    console.print("demo 4/4: report")
    report_dir = out / f"{stamp(dt.datetime.now(dt.UTC))}-{loaded.scenario.name}-report"
    html = build_report([sim_dir, lt_dir, paired_dir], report_dir)

    print(headline_text(_summary(sim_dir), _summary(lt_dir), loaded.scenario.incumbent.name,
                        loaded.scenario.slos.min_requests))
    print("\n" + verdict_text(paired_dir, lt_dir))
    print(f"\nreport: {html}")
    if lt_code != 0:
        print(f"the load test's checks failed: see {lt_dir / 'summary.json'}")
    return lt_code


def verdict_text(sim_dir: Path, lt_dir: Path) -> str:
    """The verdict table of ``regionblock compare`` for the demo's load test and its paired
    simulation, with what it means."""
    from regionblock.commands.compare import reference_line, render
    from scenarios.figures import compare
    from scenarios.loader import load_text
    from scenarios.rundir import read_run

    sim, lt = read_run(sim_dir), read_run(lt_dir)
    s = load_text(sim.scenario_yaml, file=str(sim_dir / "scenario.yaml")).scenario
    return ("Does the real system agree with the model? (regionblock compare: the load test against "
            "the simulation of its own organisations;\nagree = the 90 % interval of the difference "
            "within ±10 %, ±1 point for shares under 10 %: see the README)\n"
            + reference_line(sim, lt) + "\n" + render(compare(s, sim, lt), lt.summary))


def _summary(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    return data


def _mean(summary: dict[str, Any], key: str) -> float:
    return float(summary.get("headline", {}).get(key, {}).get("mean", 0.0))


def _band(summary: dict[str, Any], key: str, fmt: str) -> str:
    h = summary.get("headline", {}).get(key)
    if not h:
        return "n/a"
    return f"{fmt.format(h['mean'])} [{fmt.format(h['p5'])} – {fmt.format(h['p95'])}]"


def _timing(lt: dict[str, Any]) -> str:
    timing = lt.get("loadtest", {}).get("timing", "true")
    return "true time" if timing == "true" else f"{timing} time: not comparable"


def _lt_latency(lt: dict[str, Any], key: str, min_requests: int) -> str:
    """A load test's latency percentile with the requests it rests on — or, on fewer than the
    scenario's ``slos.min_requests``, why it is no figure (its value would be about the
    slowest of a handful)."""
    b = lt.get("headline", {}).get(key)
    if not b:
        return "n/a (no served requests)"
    thin = thin_percentile(b, min_requests)
    if thin is not None:
        return f"not read ({thin})"
    n = b.get("requests")
    return f"{b['mean']:,.0f} ms" + (f" ({n:,} requests)" if n is not None else "")


def headline_text(sim: dict[str, Any], lt: dict[str, Any], incumbent: str,
                  min_requests: int) -> str:
    """The five numbers a decision maker asks for first (simulation means, 5–95 % bands);
    ``min_requests``: the scenario's ``slos.min_requests``, the fewest requests a load test's
    latency percentile is read on."""
    alt_keys = [k for k in sim.get("headline", {}) if k.startswith("alt_revenue_gained_usd.")]
    alt_total = sum(_mean(sim, k) for k in alt_keys)
    top = max(alt_keys, key=lambda k: _mean(sim, k), default="")
    blocked = sorted(k.split(".", 1)[1] for k, v in sim.get("headline", {}).items()
                     if k.startswith("block_rate.") and v.get("mean", 0) > 0)
    rates = ", ".join(f"{r} {_mean(sim, 'block_rate.' + r):.1%}" for r in blocked[:3])
    lines = [
        "",
        "Headline (simulation: mean [5 % – 95 %] over replications)",
        f"1. {incumbent} revenue lost vs. the no-block baseline: "
        f"{_band(sim, 'incumbent_revenue_lost_usd', '${:,.0f}')} = "
        f"{_band(sim, 'incumbent_revenue_lost_pct', '{:.1f} %')}",
        f"2. revenue gained by the alternatives: ${alt_total:,.0f}"
        + (f" (most: {top.split('.', 1)[1]}, ${_mean(sim, top):,.0f})" if top else ""),
        f"3. organisations at the end: migrated {_mean(sim, 'orgs_final.migrated'):,.0f}, "
        f"circumventing {_mean(sim, 'orgs_final.circumventing'):,.0f}, "
        f"churned {_mean(sim, 'orgs_final.churned'):,.0f}",
        f"4. share of the incumbent's requests blocked after the block (the whole market): "
        f"{rates or 'n/a'} (the load test's sample, against its own organisations' simulation: "
        "the verdict table below)",
        f"5. latency p99 after the block: direct "
        f"{_mean(sim, 'latency_ms.direct.p99.after'):,.0f} ms, relay "
        f"{_mean(sim, 'latency_ms.relay.p99.after'):,.0f} ms (simulated); load test ({_timing(lt)}): "
        f"direct {_lt_latency(lt, 'latency_ms.direct.p99.after', min_requests)}, "
        f"relay {_lt_latency(lt, 'latency_ms.relay.p99.after', min_requests)}",
    ]
    return "\n".join(lines)
