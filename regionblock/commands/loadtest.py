"""``regionblock loadtest SCENARIO``: the scenario's world on real sockets (see loadtests.run)."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from loadtests.errors import LoadTestError
from loadtests.plan import DEFAULT_MAX_TOKENS_OUT, DEFAULT_RATE, DEFAULT_USERS
from loadtests.run import DEFAULT_CHUNK_MS, DEFAULT_TIME_SCALE, loadtest
from regionblock.common import (
    add_scenario_arg,
    check_out_dir,
    default_runs_dir,
    load_scenario,
    stderr_console,
)
from scenarios.clock import parse_duration, parse_when
from scenarios.errors import UsageError
from scenarios.rundir import run_dir_name, staged_run_dir, write_set
from sim.model import market_context

EPILOG = """\
Distributed: one host runs the master, the others the workers (same scenario and environment);
the scenario clock starts on the master's test_start, which sends the epoch to every worker and
sets the gateway's clock (with the gateway's admin token):
  REGIONBLOCK_SCENARIO=S REGIONBLOCK_DURATION=5m REGIONBLOCK_USERS=N REGIONBLOCK_WORKERS=W \\
  REGIONBLOCK_ADMIN_TOKEN=T locust -f loadtests/locustfile.py --master --headless \\
      --expect-workers W --host http://GATEWAY:18080
  (on each worker host, same environment)  locust -f loadtests/locustfile.py --worker \\
      --master-host MASTER
The load shape runs exactly N users (one organisation each); -u and -r are ignored.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "loadtest", help="replay the scenario against a real gateway with Locust",
        description="Put the scenario's organisations, policy and behaviour onto real sockets on a "
                    "compressed clock, each request in true time: start mock upstreams at the "
                    "scenario's latency laws, the relay, a WAN-path proxy per region and path and "
                    "the gateway (unless --host), run Locust headless with one user per sampled "
                    "organisation at an open-model rate following the scenario's traffic curve, then "
                    "reconcile "
                    "Locust's requests with the gateway's ledger, check the scenario's SLOs and "
                    "write a run directory. Exit 1 if a check fails.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_scenario_arg(p)
    p.add_argument("--duration", default="60s", metavar="D",
                   help="wall time the scenario window is compressed onto (default 60s)")
    p.add_argument("--users", type=int, default=DEFAULT_USERS, metavar="N",
                   help=f"organisations (Locust users), stratified by region x segment "
                        f"(default {DEFAULT_USERS})")
    p.add_argument("--rate", type=float, default=DEFAULT_RATE, metavar="R",
                   help=f"mean target requests per wall second over a week, all organisations "
                        f"active (default {DEFAULT_RATE:g})")
    p.add_argument("--host", default=None, metavar="URL",
                   help="target this OpenAI-compatible endpoint instead of starting a gateway "
                        "(reconciled only with --ledger)")
    p.add_argument("--ledger", action="append", default=[], metavar="PATH",
                   help="with --host: a ledger shard of a gateway serving it (repeat for each "
                        "replica); this run's rows are merged into the run's ledger and reconciled")
    p.add_argument("--workers", type=int, default=0, metavar="N",
                   help="run a Locust master and N local worker processes (default 0: one process)")
    p.add_argument("--out", default=str(default_runs_dir()), metavar="DIR",
                   help="runs root (default runs/)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed (default 0)")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="run N load tests back to back, seeds S, S+1, ... (each its own sample of "
                        "organisations), into one run set: `regionblock compare` pools their "
                        "verdicts, so a longer series tightens an inconclusive interval (default 1)")
    p.add_argument("--time-scale", type=float, default=DEFAULT_TIME_SCALE, metavar="X",
                   help="divide every mock, relay and WAN-path latency by X (default "
                        f"{DEFAULT_TIME_SCALE:g}: true time; another X labels the run scaled, and "
                        "its latencies are compared with nothing)")
    p.add_argument("--chunk-ms", type=float, default=DEFAULT_CHUNK_MS, metavar="MS",
                   help="streamed tokens ready within MS of the previous chunk share the next one "
                        f"(default {DEFAULT_CHUNK_MS:g}; neither TTFT nor the last token moves)")
    p.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS_OUT, metavar="N",
                   help="cap on completion tokens per request (default 0: none, as in the "
                        "simulator; a cap makes latencies and revenue differ from the model's)")
    p.add_argument("--epoch", default=None, metavar="WHEN",
                   help="wall instant the scenario starts (unix time or ISO-8601; default a few "
                        "seconds from now) — for --host targets running --compress D@EPOCH")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    loaded = load_scenario(args)
    duration = parse_duration(args.duration, what="--duration")
    epoch = _epoch(args.epoch) if args.epoch else None
    if args.repeat < 1:
        raise UsageError(f"--repeat: must be at least 1 (got {args.repeat})")
    if args.repeat > 1 and (epoch is not None or args.ledger):
        raise UsageError("--repeat: not with --epoch or --ledger (each repeat needs its own "
                         "scenario clock and its own gateway ledger)")
    if args.seed < 0:
        raise UsageError(f"--seed: must be non-negative (got {args.seed})")
    check_out_dir(Path(args.out))
    console = stderr_console()

    def one(seed: int, out: Path) -> tuple[Path, int]:
        return loadtest(loaded, duration_s=duration, users=args.users, host=args.host,
                        workers=args.workers, out=out, rate=args.rate, seed=seed,
                        time_scale=args.time_scale, chunk_ms=args.chunk_ms,
                        max_tokens_out=args.max_tokens, epoch=epoch,
                        ledgers=tuple(Path(p) for p in args.ledger),
                        market=market_context(loaded.scenario, seed), console=console)

    try:
        if args.repeat == 1:
            run_dir, code = one(args.seed, Path(args.out))
        else:
            run_dir, code = _repeated(loaded.scenario.name, args, one, console)
    except LoadTestError as exc:
        console.print(f"load test failed: {exc}")
        return 1
    print(run_dir)
    return code


def _repeated(scenario: str, args: argparse.Namespace, one: Callable[[int, Path], tuple[Path, int]],
              console: Console) -> tuple[Path, int]:
    """``--repeat N``: N load tests, seeds S…S+N−1, staged in one run set (all or nothing)."""
    seeds = list(range(args.seed, args.seed + args.repeat))
    name = run_dir_name(dt.datetime.now(dt.UTC), scenario, "loadtest-set")
    codes = []
    with staged_run_dir(Path(args.out), name) as staging:
        members = []
        for k, seed in enumerate(seeds):
            console.print(f"load test {k + 1}/{len(seeds)} (seed {seed})")
            member, code = one(seed, staging.path)
            members.append(member)
            codes.append(code)
        write_set(staging.path, kind="loadtest-set", scenario=scenario, members=members, seeds=seeds)
    assert staging.final is not None
    return staging.final, max(codes)


def _epoch(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return parse_when(text, what="--epoch").timestamp()
