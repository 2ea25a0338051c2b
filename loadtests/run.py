"""``loadtest()``: mock upstreams + relay + gateway + Locust, then checks and the run directory.

Without ``host`` it starts, as subprocesses on free loopback ports, the mock upstreams and the
relay (``regionblock upstreams``, latencies divided by ``time_scale``) and the gateway
(``regionblock gateway``, its clock compressing the scenario window onto ``duration_s`` from the
shared epoch, trusting X-Forwarded-For from 127.0.0.1, its ledger in the run directory); with
``host`` it targets that OpenAI-compatible endpoint, and reconciles with the ledgers the user names
(``ledgers``: one shard per gateway replica behind ``host``, merged into the run's ledger), or
with none. Locust runs
headless (one process, or a master and ``workers`` local workers). Every process started is
stopped on the way out, also on Ctrl-C, SIGTERM or an error; a run that does not finish leaves no
run directory behind (it is staged and renamed into place only when complete).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
import secrets
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

from loadtests import analysis
from loadtests.errors import RunOutputError, ServiceFailedError, ServiceStartError
from loadtests.events import Tail, count_records, read_events
from loadtests.ledger import check_shard, merge_shards, read_ledger
from loadtests.plan import (
    DEFAULT_MAX_TOKENS_IN,
    DEFAULT_MAX_TOKENS_OUT,
    DEFAULT_RATE,
    DEFAULT_USERS,
    LoadConfig,
    Plan,
    build_plan,
)
from loadtests.procs import Child, Processes, free_port, free_port_block, http_ok, tcp_open, wait_until
from scenarios.clock import format_instant
from scenarios.errors import UsageError
from scenarios.loader import Loaded, resolved_yaml
from scenarios.rundir import meta, run_dir_name, staged_run_dir, write_json, write_timeseries

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
DEFAULT_DURATION_S = 60.0
DEFAULT_TIME_SCALE = 40.0
#: Checks whose failure fails the run (exit 1); the others are reported only.
FAILING_CHECKS = ("slo", "reconciliation", "revenue", "tokens")
#: The gateway starts with its clock this far in the future, until everything is ready.
PROVISIONAL_EPOCH_S = 86400.0
#: From fixing the epoch to the scenario's start: time for the clock PUT and the users' poll.
START_MARGIN_S = 0.5
ADMIN_TOKEN_ENV = "REGIONBLOCK_ADMIN_TOKEN"


@dataclass(frozen=True, kw_only=True)
class Options:
    """How to run one load test (validated by :func:`loadtest`)."""

    duration_s: float = DEFAULT_DURATION_S
    users: int = DEFAULT_USERS
    rate: float = DEFAULT_RATE
    host: str | None = None
    workers: int = 0
    seed: int = 0
    time_scale: float = DEFAULT_TIME_SCALE
    max_tokens_in: int = DEFAULT_MAX_TOKENS_IN
    max_tokens_out: int = DEFAULT_MAX_TOKENS_OUT
    epoch: float | None = None
    ledgers: tuple[Path, ...] = ()
    drain_s: float = 5.0
    ready_timeout_s: float = 30.0


def loadtest(loaded: Loaded, *, duration_s: float = DEFAULT_DURATION_S, users: int = DEFAULT_USERS,
             host: str | None = None, workers: int = 0, out: Path = Path("runs"),
             rate: float = DEFAULT_RATE, seed: int = 0, time_scale: float = DEFAULT_TIME_SCALE,
             max_tokens_in: int = DEFAULT_MAX_TOKENS_IN,
             max_tokens_out: int = DEFAULT_MAX_TOKENS_OUT, epoch: float | None = None,
             ledgers: tuple[Path, ...] = (), drain_s: float = 5.0,
             console: Console | None = None) -> tuple[Path, int]:
    """Run a load test of ``loaded``; returns (run directory, exit code 0 ok / 1 a check failed)."""
    opts = Options(duration_s=duration_s, users=users, rate=rate, host=host, workers=workers,
                   seed=seed, time_scale=time_scale, max_tokens_in=max_tokens_in,
                   max_tokens_out=max_tokens_out, epoch=epoch, ledgers=ledgers, drain_s=drain_s)
    _validate(opts)
    console = console or Console(stderr=True, highlight=False)
    started = dt.datetime.now(dt.UTC)
    name = run_dir_name(started, loaded.scenario.name, "loadtest")
    with staged_run_dir(out, name) as staging:
        code = _run(loaded, opts, staging.path, started, console)
    assert staging.final is not None
    return staging.final, code


def _validate(o: Options) -> None:
    if not (o.duration_s > 0 and math.isfinite(o.duration_s)):
        raise UsageError(f"--duration: {o.duration_s!r} must be greater than zero")
    if o.users < 1:
        raise UsageError(f"--users: {o.users} must be at least 1")
    if o.workers < 0:
        raise UsageError(f"--workers: {o.workers} must not be negative")
    if not (o.rate > 0 and math.isfinite(o.rate)):
        raise UsageError(f"--rate: {o.rate!r} must be greater than zero")
    if not o.time_scale > 0:
        raise UsageError(f"--time-scale: {o.time_scale!r} must be greater than zero")
    if o.host is not None and not o.host.startswith(("http://", "https://")):
        raise UsageError(f"--host: {o.host!r} is not an http:// or https:// URL")
    if o.ledgers and o.host is None:
        raise UsageError("--ledger: only with --host (without it the load test starts its own "
                         "gateway and reads that gateway's ledger)")
    if len(set(o.ledgers)) < len(o.ledgers):
        raise UsageError("--ledger: the same shard is named twice")
    for shard in o.ledgers:
        try:
            check_shard(shard)
        except RunOutputError as exc:
            raise UsageError(f"--ledger: {exc}") from exc


# ---------------------------------------------------------------- the run


@dataclass
class Services:
    host: str
    relay_url: str
    ledger: Path | None
    gateway: Child | None


def _run(loaded: Loaded, opts: Options, d: Path, started: dt.datetime, console: Console) -> int:
    scenario_file = d / "scenario.yaml"
    scenario_file.write_text(resolved_yaml(loaded.scenario), encoding="utf-8")
    events_dir = d / "events"
    ports = None if opts.host else Ports.pick(len(loaded.scenario.providers))
    # Every process starts at once. Unless the user fixed the epoch, the scenario clock starts
    # only once all of them are ready: the gateway's clock is then set through its admin API and
    # the Locust processes read the epoch from a file they wait for.
    fixed = opts.epoch is not None
    provisional = opts.epoch if opts.epoch is not None else time.time() + PROVISIONAL_EPOCH_S
    admin_token = secrets.token_hex(16)
    with Processes(log_dir=d / "logs") as procs:
        services = _start_services(procs, opts, scenario_file, d, provisional, ports, admin_token)
        config = LoadConfig(scenario=str(scenario_file), duration_s=opts.duration_s,
                            epoch=provisional, users=opts.users, rate=opts.rate, seed=opts.seed,
                            max_tokens_in=opts.max_tokens_in, max_tokens_out=opts.max_tokens_out,
                            relay_url=services.relay_url, events_dir=str(events_dir),
                            epoch_file="" if fixed else str(d / "epoch"), drain_s=opts.drain_s,
                            run_id=secrets.token_hex(4), workers=max(1, opts.workers))
        plan = build_plan(config, loaded)
        console.print(_intro(plan, services, opts), soft_wrap=True)
        locust = _start_locust(procs, config, services.host, d, opts)
        _wait_ready(procs, services, ports, locust, plan, opts)
        if not fixed:
            plan = _start_clock(plan, services, admin_token)
        console.print(f"load test: all {len(plan.users)} users ready; scenario clock starts at "
                      f"{format_instant(dt.datetime.fromtimestamp(plan.config.epoch, dt.UTC))}",
                      soft_wrap=True)
        _monitor(procs, plan, locust, events_dir, opts, console)
        for child in (services.gateway, *procs.children):
            if child is not None:
                procs.stop(child)  # the gateway first: its ledger is complete once it has exited
    finished = dt.datetime.now(dt.UTC)
    if opts.ledgers:
        services = _merged_ledger(services, plan, opts, d, finished)
    return _write_results(plan, loaded, opts, d, services, started, finished, console)


#: Slack around the run when picking its rows out of user-named ledger shards (clock skew of the
#: gateway hosts, the users' start-up before the epoch).
SHARD_WINDOW_SLACK_S = 5.0


def _merged_ledger(services: Services, plan: Plan, opts: Options, d: Path,
                   finished: dt.datetime) -> Services:
    """The rows of this run from every --ledger shard, as the run directory's ledger.sqlite.

    A row belongs to the run if its gateway received it between the scenario epoch and the end of
    the run (with SHARD_WINDOW_SLACK_S either side): the gateways must serve only this load test in
    that window, or reconciliation reports their other requests as unmatched.
    """
    ledger = d / "ledger.sqlite"
    merge_shards(opts.ledgers, ledger, since=plan.config.epoch - SHARD_WINDOW_SLACK_S,
                 until=finished.timestamp() + SHARD_WINDOW_SLACK_S)
    return replace(services, ledger=ledger)


def _python() -> list[str]:
    return [sys.executable, "-m"]


def _child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class Ports:
    """Loopback ports of our own services: providers on base+i, the relay after, the gateway."""

    base: int
    providers: int
    gateway: int

    @classmethod
    def pick(cls, providers: int) -> Ports:
        base = free_port_block(providers + 1)
        gateway = free_port()
        while base <= gateway <= base + providers:
            gateway = free_port()
        return cls(base, providers, gateway)

    @property
    def relay(self) -> int:
        return self.base + self.providers


def _start_services(procs: Processes, opts: Options, scenario_file: Path, d: Path, epoch: float,
                    ports: Ports | None, admin_token: str) -> Services:
    """The mock upstreams + relay and the gateway (nothing when targeting --host)."""
    if ports is None:
        assert opts.host is not None
        return Services(opts.host.rstrip("/"), "", None, None)
    procs.start("upstreams", [
        *_python(), "regionblock", "upstreams", str(scenario_file), "--base-port", str(ports.base),
        "--time-scale", f"{opts.time_scale:g}",
        "--relay-target", f"http://127.0.0.1:{ports.gateway}", "--seed", str(opts.seed)],
        env=_child_env())
    ledger = d / "ledger.sqlite"
    gateway = procs.start("gateway", [
        *_python(), "regionblock", "gateway", str(scenario_file),
        "--port", str(ports.gateway), "--upstream-base-port", str(ports.base),
        "--trusted-proxy", "127.0.0.1/32", "--compress", f"{opts.duration_s:g}s@{epoch!r}",
        "--ledger", str(ledger), "--insecure-org-keys"],  # the agents' keys are their org ids
        env=_child_env({ADMIN_TOKEN_ENV: admin_token}))
    return Services(f"http://127.0.0.1:{ports.gateway}", f"http://127.0.0.1:{ports.relay}",
                    ledger, gateway)


def _wait_ready(procs: Processes, services: Services, ports: Ports | None, locust: Child,
                plan: Plan, opts: Options) -> None:
    """Every server answering and every Locust user started (and waiting for the epoch)."""
    deadline = time.monotonic() + opts.ready_timeout_s
    if ports is not None and services.gateway is not None:
        upstreams = next(c for c in procs.children if c.name == "upstreams")
        for i in range(ports.providers):
            wait_until(http_ok(f"http://127.0.0.1:{ports.base + i}/healthz"), deadline=deadline,
                       child=upstreams, what=f"mock upstream {i} answering /healthz")
        wait_until(tcp_open("127.0.0.1", ports.relay), deadline=deadline, child=upstreams,
                   what="the relay listening")
        wait_until(http_ok(services.host + "/readyz"), deadline=deadline, child=services.gateway,
                   what="the gateway answering /readyz")
    events_dir = Path(plan.config.events_dir)
    wait_until(lambda: count_records(events_dir, "user") >= len(plan.users), deadline=deadline,
               child=locust, what=f"all {len(plan.users)} Locust users starting")


def _start_clock(plan: Plan, services: Services, admin_token: str) -> Plan:
    """Fix the epoch a moment from now: set the gateway's clock, then release the users."""
    epoch = time.time() + START_MARGIN_S
    if services.gateway is not None:
        spec = f"compress:{plan.config.duration_s!r}s@{epoch!r}"
        body = json.dumps({"clock": spec}).encode()
        req = urllib.request.Request(services.host + "/admin/clock", data=body, method="PUT",
                                     headers={"Authorization": f"Bearer {admin_token}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                resp.read()
        except (urllib.error.URLError, OSError) as exc:
            raise ServiceStartError(f"gateway: could not set its clock ({spec}): {exc}") from exc
    path = Path(plan.config.epoch_file)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(repr(epoch), encoding="utf-8")
    tmp.rename(path)  # atomic: a reader sees the whole number or no file
    return replace(plan, config=replace(plan.config, epoch=epoch))


def _locust_args(config: LoadConfig, host: str, d: Path, opts: Options) -> list[str]:
    # Locust stops itself after the last answer is due (stop_after_run); -t is a safety net.
    run_time = math.ceil(max(0.0, config.epoch - time.time()) if not config.epoch_file else 0.0) \
        + math.ceil(opts.ready_timeout_s + config.duration_s + opts.drain_s + 30)
    return [*_python(), "locust", "-f", str(LOCUSTFILE), "--headless", "-u", str(config.users),
            "-r", str(config.users), "-t", f"{run_time}s", "--host", host,
            "--csv", str(d / "locust"), "--csv-full-history", "--html", str(d / "locust.html"),
            "--only-summary", "--exit-code-on-error", "0", "--stop-timeout", "5"]


def _start_locust(procs: Processes, config: LoadConfig, host: str, d: Path,
                  opts: Options) -> Child:
    env = _child_env(config.to_env())
    args = _locust_args(config, host, d, opts)
    if opts.workers <= 0:
        return procs.start("locust", args, env=env)
    port = free_port()
    master = procs.start("locust-master", [*args, "--master", "--master-bind-host", "127.0.0.1",
                                           "--master-bind-port", str(port),
                                           "--expect-workers", str(opts.workers)], env=env)
    for i in range(opts.workers):
        procs.start(f"locust-worker-{i}", [*_python(), "locust", "-f", str(LOCUSTFILE), "--worker",
                                           "--master-host", "127.0.0.1", "--master-port",
                                           str(port)], env=env)
    return master


def _monitor(procs: Processes, plan: Plan, locust: Child, events_dir: Path, opts: Options,
             console: Console) -> None:
    """Wait for Locust to finish, showing progress; fail fast if a service dies."""
    deadline = time.monotonic() + max(0.0, plan.config.epoch - time.time()) \
        + plan.config.duration_s + opts.drain_s + 60
    locusts = [c for c in procs.children if c.name.startswith("locust")]
    progress = Progress(plan, events_dir)
    with Live(progress.render(), console=console, refresh_per_second=4, transient=True) as live:
        while locust.exited() is None:
            procs.check_alive(except_=locusts)
            if time.monotonic() > deadline:
                raise ServiceFailedError(f"{locust.name} did not finish by its deadline:\n"
                                         f"{locust.tail()}")
            time.sleep(0.25)
            live.update(progress.render())
    console.print(progress.render(), soft_wrap=True)
    if locust.exited() != 0:
        raise ServiceFailedError(f"{locust.name} exited with status {locust.exited()}:\n"
                                 f"{locust.tail()}")


class Progress:
    """The progress line: scenario date, current rate, decisions and errors so far."""

    def __init__(self, plan: Plan, events_dir: Path) -> None:
        self.plan = plan
        self.tail = Tail(events_dir)
        self.counts: Counter[str] = Counter()
        self.recent: list[float] = []

    def render(self) -> Text:
        if self.tail.directory.is_dir():
            for obj in self.tail.poll():
                self.counts[str(obj.get("decision"))] += 1
                self.recent.append(float(obj.get("sent", 0.0)))
        now = time.time()
        self.recent = [t for t in self.recent if t > now - 2.0]
        cfg = self.plan.config
        if now < cfg.epoch:
            return Text(f"load test: starting, scenario begins in {cfg.epoch - now:.1f} s")
        when = self.plan.scenario_at(min(now, cfg.epoch + cfg.duration_s))
        total = sum(self.counts.values())
        return Text(
            f"scenario {when:%Y-%m-%d %H:%M}  {len(self.recent) / 2.0:6.1f} req/s  sent {total}  "
            f"allow {self.counts['allow']}  warn {self.counts['warn']}  "
            f"block {self.counts['block'] + self.counts['throttle']}  "
            f"errors {self.counts['failed']}  "
            f"{max(0.0, cfg.epoch + cfg.duration_s - now):.0f} s left")


def _intro(plan: Plan, services: Services, opts: Options) -> str:
    scale = plan.scale()
    target = "its own gateway" if services.gateway else services.host
    workers = f", {opts.workers} Locust workers" if opts.workers else ""
    return (f"load test: {plan.scenario.name} onto {plan.config.duration_s:g} s "
            f"(x{plan.speedup:,.0f}), {len(plan.users)} organisations at {plan.config.rate:g} req/s "
            f"against {target}{workers}; requests scale {scale['requests_scale']:.3g}")


# ---------------------------------------------------------------- results


def locust_post_count(path: Path) -> int:
    """Requests Locust itself counted (its TTFT entries are not requests)."""
    if not path.is_file():
        raise RunOutputError(f"{path}: Locust wrote no statistics")
    with path.open(newline="", encoding="utf-8") as fh:
        return sum(int(row["Request Count"]) for row in csv.DictReader(fh)
                   if row.get("Type") == "POST")


def _write_results(plan: Plan, loaded: Loaded, opts: Options, d: Path, services: Services,
                   started: dt.datetime, finished: dt.datetime, console: Console) -> int:
    events = read_events(d / "events")
    ledger_rows, ledger_meta = read_ledger(services.ledger) if services.ledger else (None, {})
    joined = analysis.join(events.requests, ledger_rows)
    checks: dict[str, Any] = {"slo": analysis.slo_check(plan.scenario, joined),
                              "rate_accuracy": analysis.rate_accuracy(plan, events.requests)}
    locust_count = locust_post_count(d / "locust_stats.csv")
    if ledger_rows is not None:
        rec = analysis.reconcile(events.requests, ledger_rows)
        rec["locust_stats_requests"] = locust_count
        rec["passed"] = rec["passed"] and locust_count == len(events.requests)
        checks["reconciliation"] = rec
        checks["revenue"] = analysis.revenue_check(plan.scenario, ledger_rows)
        checks["tokens"] = analysis.token_check(joined)
    else:
        skipped = {"skipped": True, "reason": f"--host {services.host}: a gateway this run did not "
                   "start, and no --ledger shard was named to reconcile with"}
        checks["reconciliation"] = {**skipped, "locust_requests": len(events.requests),
                                    "locust_stats_requests": locust_count}
        checks["revenue"] = dict(skipped)
        checks["tokens"] = dict(skipped)
    failed = [k for k in FAILING_CHECKS if checks[k].get("passed") is False]
    headline, waterfall = analysis.headline(plan, joined, events.states, ledger_rows is not None)
    rows = analysis.timeseries_rows(plan, joined, events.states)
    write_timeseries(d / "timeseries.csv", rows)
    summary = {
        "format": "regionblock-run", "format_version": 1, "kind": "loadtest",
        "scenario": plan.scenario.name, "replications": 1, "seed": opts.seed,
        "headline": headline, "waterfall": waterfall,
        "capacity_hotspots": analysis.capacity_hotspots(plan, joined),
        "checks": checks, "passed": not failed, "failed_checks": failed,
        "scale": plan.scale(),
        "loadtest": {"target": services.host, "own_gateway": services.gateway is not None,
                     "ledger": "ledger.sqlite" if services.ledger else None,
                     "ledger_meta": ledger_meta, "workers": opts.workers,
                     "time_scale": opts.time_scale if services.gateway else None,
                     "epoch": plan.config.epoch, "duration_s": plan.config.duration_s,
                     "requests_sent": len(events.requests), "users_started": len(events.users),
                     "note": "latencies are measured from each request's intended send instant; "
                             "mock upstream latencies are divided by time_scale; loopback has "
                             "no WAN round trip"},
    }
    write_json(d / "summary.json", summary)
    write_json(d / "meta.json", meta(kind="loadtest", scenario=plan.scenario.name,
                                     sha256=loaded.sha256, source=str(loaded.source),
                                     seeds=[opts.seed], started=started, finished=finished,
                                     loadtest={"users": opts.users, "rate": opts.rate,
                                               "duration_s": opts.duration_s,
                                               "workers": opts.workers, "host": opts.host,
                                               "ledgers": [str(x) for x in opts.ledgers],
                                               "time_scale": opts.time_scale}))
    _cleanup(d)
    console.print(verdict(summary), soft_wrap=True)
    return 1 if failed else 0


def _cleanup(d: Path) -> None:
    """Locust's exceptions CSV is always empty here (exceptions go to the failures CSV)."""
    path = d / "locust_exceptions.csv"
    if path.is_file() and sum(1 for _ in path.open(encoding="utf-8")) <= 1:
        path.unlink()
    for leftover in (d / "ledger.sqlite-wal", d / "ledger.sqlite-shm"):
        if leftover.exists() and leftover.stat().st_size == 0:
            leftover.unlink()


def verdict(summary: dict[str, Any]) -> str:
    """The summary as a few lines for the terminal."""
    checks = summary["checks"]
    lines = []
    for name in ("reconciliation", "revenue", "tokens", "slo", "rate_accuracy"):
        c = checks.get(name, {})
        state = "skipped" if c.get("skipped") else ("ok" if c.get("passed") else "FAILED")
        lines.append(f"  {name:<15} {state:<8} {_detail(name, c)}")
    head = "load test: all checks passed" if summary["passed"] else \
        f"load test: FAILED ({', '.join(summary['failed_checks'])})"
    return "\n".join([head, *lines])


def _detail(name: str, c: dict[str, Any]) -> str:
    if c.get("skipped"):
        return str(c.get("reason", ""))
    if name == "reconciliation":
        by = ", ".join(f"{d} {v['locust']}/{v['ledger']}" for d, v in c["by_decision"].items())
        return (f"locust/ledger by decision: {by}; unmatched {c['unmatched_locust']}/"
                f"{c['unmatched_ledger']}, mismatched {c['decision_mismatches']}")
    if name == "revenue":
        return f"{c['rows']} rows, {c['mismatches']} off tokens x price; ${c['revenue_usd']:.6f}"
    if name == "tokens":
        return f"{c['mismatches']} served requests whose ledger tokens differ from the response"
    if name == "slo":
        o = c["overall"]
        return (f"{'/'.join(c['regions'])}: p99 {o['p99_latency_ms']:.0f} ms (max "
                f"{c['p99_latency_ms_max']:g}), errors {o['error_rate']:.2%} (max "
                f"{c['error_rate_max']:.2%})")
    if name == "rate_accuracy":
        pooled = c["judged_periods"] < c["judged_days"]
        over = (f"{c['judged_periods']} periods of consecutive days" if pooled else "days")
        return (f"worst {c['worst_error']:.2%} over {c['judged_days']} days in {over} with >= "
                f"{analysis.RATE_MIN_PER_DAY} sends (tolerance ±{c['tolerance']:.0%}); "
                f"send lateness p99 {c['send_lateness_ms']['p99']:.1f} ms")
    return ""
