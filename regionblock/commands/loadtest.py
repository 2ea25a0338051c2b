"""``regionblock loadtest SCENARIO``: the scenario's world on real sockets (see loadtests.run)."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from rich.console import Console

from loadtests.errors import LoadTestError
from loadtests.plan import DEFAULT_MAX_TOKENS_OUT, DEFAULT_RATE, DEFAULT_USERS, MAX_USERS_PER_PROCESS
from loadtests.run import DEFAULT_CHUNK_MS, DEFAULT_TIME_SCALE, loadtest
from regionblock.common import (
    MAX_SEED,
    add_scenario_arg,
    check_out_dir,
    cpu_count,
    default_runs_dir,
    finite_number,
    load_scenario,
    nonempty_path,
    process_count,
    seed_number,
    stderr_console,
    whole_number,
)
from scenarios.clock import check_compression, parse_duration, parse_epoch
from scenarios.errors import UsageError
from scenarios.rundir import run_dir_name, staged_run_dir, write_set
from scenarios.schema import Scenario
from scenarios.verdict import PRACTICAL_FACTOR
from sim.model import market_context

#: The most requests a load test plans: every one is drawn up front, in the orchestrator and in
#: every Locust process (~30 bytes and ~0.5 µs each), and each is joined with its ledger row
#: afterwards. Ten million is 28 hours at the 100 req/s one machine sustains in true time
#: (BENCHMARKS.md); a plan of 10**11 requests was a MemoryError or numpy's "lam value too large".
MAX_PLANNED_REQUESTS = 10_000_000

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
    p.add_argument("--users", type=whole_number(1), default=None, metavar="N",
                   help=f"organisations (Locust users), stratified by region x segment "
                        f"(default {DEFAULT_USERS}, or every organisation of a smaller scenario; "
                        f"at most {MAX_USERS_PER_PROCESS:,} per Locust process)")
    p.add_argument("--rate", type=finite_number(above=0), default=DEFAULT_RATE, metavar="R",
                   help=f"mean target requests per wall second over a week, all organisations "
                        f"active (default {DEFAULT_RATE:g})")
    p.add_argument("--host", default=None, metavar="URL",
                   help="target this OpenAI-compatible endpoint instead of starting a gateway "
                        "(reconciled only with --ledger)")
    p.add_argument("--ledger", action="append", default=[], metavar="PATH", type=nonempty_path,
                   help="with --host: a ledger shard of a gateway serving it (repeat for each "
                        "replica); this run's rows are merged into the run's ledger and reconciled")
    p.add_argument("--workers", type=process_count(0), default=0, metavar="N",
                   help="run a Locust master and N local worker processes (default 0: one process)")
    p.add_argument("--out", type=nonempty_path, default=default_runs_dir(), metavar="DIR",
                   help="runs root (default runs/)")
    p.add_argument("--seed", type=seed_number, default=0, metavar="S", help="seed (default 0)")
    p.add_argument("--repeat", default=1, metavar="N",
                   type=whole_number(1, PRACTICAL_FACTOR,
                                     why="compare calls a series longer than that past any "
                                         "practical run"),
                   help="run N load tests back to back, seeds S, S+1, ... (each its own sample of "
                        "organisations), into one run set: `regionblock compare` pools their "
                        "verdicts, so a longer series tightens an inconclusive interval (default 1)")
    p.add_argument("--time-scale", type=finite_number(above=0), default=DEFAULT_TIME_SCALE,
                   metavar="X",
                   help="divide every mock, relay and WAN-path latency by X (default "
                        f"{DEFAULT_TIME_SCALE:g}: true time; another X labels the run scaled, and "
                        "its latencies are compared with nothing)")
    p.add_argument("--chunk-ms", type=finite_number(minimum=0), default=DEFAULT_CHUNK_MS, metavar="MS",
                   help="streamed tokens ready within MS of the previous chunk share the next one "
                        f"(default {DEFAULT_CHUNK_MS:g}; neither TTFT nor the last token moves)")
    p.add_argument("--max-tokens", type=whole_number(0), default=DEFAULT_MAX_TOKENS_OUT, metavar="N",
                   help="cap on completion tokens per request (default 0: none, as in the "
                        "simulator; a cap makes latencies and revenue differ from the model's)")
    p.add_argument("--epoch", type=_epoch, default=None, metavar="WHEN",
                   help="wall instant the scenario starts (unix time or ISO-8601; default a few "
                        "seconds from now) — for --host targets running --compress D@EPOCH")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    loaded = load_scenario(args)
    duration = parse_duration(args.duration, what="--duration")
    epoch = args.epoch
    if args.repeat > 1 and (epoch is not None or args.ledger):
        raise UsageError("--repeat: not with --epoch or --ledger (each repeat needs its own "
                         "scenario clock and its own gateway ledger)")
    if args.seed + args.repeat - 1 > MAX_SEED:
        raise UsageError(f"--repeat: {args.repeat} runs from --seed {args.seed} need seeds up to "
                         f"{args.seed + args.repeat - 1}, past the largest, 2**64-1")
    if args.host is not None:
        check_target(args.host)
    check_out_dir(Path(args.out))
    users = args.users if args.users is not None else default_users(loaded.scenario)
    check_load(loaded.scenario, duration_s=duration, duration_text=args.duration,
               users=users, workers=args.workers, rate=args.rate)
    console = stderr_console()

    def one(seed: int, out: Path) -> tuple[Path, int]:
        return loadtest(loaded, duration_s=duration, users=users, host=args.host,
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


def check_load(s: Scenario, *, duration_s: float, duration_text: str, users: int, workers: int,
               rate: float) -> None:
    """What a load test of ``s`` can be asked, before any of it starts (UsageError if not): a
    duration no longer than the window it compresses, no more users than organisations to play
    or than its Locust processes can start, no more requests than it can plan."""
    check_compression(duration_s, s.window.start, s.window.end, what="--duration",
                      text=duration_text)
    organisations = sum(r.organisations for r in s.regions)
    if users > organisations:
        raise UsageError(f"--users: {users:,} is more than the scenario's {organisations:,} "
                         f"organisation{'s' if organisations != 1 else ''} (each user plays one)")
    cpus = cpu_count()
    processes = max(1, min(workers, cpus))  # more workers than CPUs start no more users
    if users > MAX_USERS_PER_PROCESS * processes:
        where = (f"{processes} Locust processes start within the readiness deadline "
                 f"({MAX_USERS_PER_PROCESS:,} each)" if processes > 1 else
                 "one Locust process starts within the readiness deadline "
                 f"({MAX_USERS_PER_PROCESS:,}"
                 + (f"; --workers N runs N of them, up to {cpus}, one per CPU)" if cpus > 1 else ")"))
        raise UsageError(f"--users: {users:,} is more than {where}")
    planned = rate * duration_s
    if planned > MAX_PLANNED_REQUESTS:
        raise UsageError(f"--rate/--duration: {rate:g} req/s over {duration_s:,.0f} s plans about "
                         f"{planned:,.0f} requests; a load test plans at most "
                         f"{MAX_PLANNED_REQUESTS:,} (each one drawn up front)")


def default_users(s: Scenario) -> int:
    """DEFAULT_USERS, or every organisation of a scenario with fewer."""
    return min(DEFAULT_USERS, sum(r.organisations for r in s.regions))


def check_target(url: str) -> None:
    """``--host URL``: an http(s) URL with a host and, if any, a valid port."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # urllib's "Port out of range" was a traceback
        raise UsageError(f"--host: {url!r} has a bad port (1-65535)") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--host: {url!r} is not an http:// or https:// URL")
    if port == 0:
        raise UsageError(f"--host: {url!r} has a bad port (1-65535)")


def _epoch(text: str) -> float:
    """``type=`` of ``--epoch``: a unix time or an ISO-8601 instant, in a datetime's range."""
    try:
        return parse_epoch(text, prefix="")
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc).strip()) from None
