"""``loadtest()``: mock upstreams + relay + WAN paths + gateway + Locust, then checks and the run directory.

Without ``host`` it starts, as subprocesses on free loopback ports, the mock upstreams, the
relay and the WAN-path proxies (``regionblock upstreams``: true time by default, every latency
divided by ``time_scale`` otherwise, which labels the run *scaled*) and the gateway
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
import dataclasses
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
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

from loadtests import analysis, credits
from loadtests.errors import RunOutputError, ServiceFailedError, ServiceStartError
from loadtests.events import Tail, count_records, read_events
from loadtests.ledger import check_shard, merge_shards, read_ledger
from loadtests.plan import (
    DEFAULT_DRAIN_S,
    DEFAULT_MAX_TOKENS_IN,
    DEFAULT_MAX_TOKENS_OUT,
    DEFAULT_RATE,
    DEFAULT_USERS,
    PATHS,
    LoadConfig,
    Plan,
    build_plan,
)
from loadtests.procs import Child, Processes, free_port, free_port_block, http_ok, tcp_open, wait_until
from scenarios.clock import format_instant
from scenarios.errors import UsageError
from scenarios.loader import Loaded, resolved_yaml
from scenarios.market import MarketContext
from scenarios.rundir import meta, run_dir_name, staged_run_dir, write_json, write_timeseries
from scenarios.sample import MARKET_FILE, SAMPLE_FILE
from scenarios.schema import Scenario

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
DEFAULT_DURATION_S = 60.0
#: 1: true time, every request at the scenario's latency laws (only the calendar is compressed).
DEFAULT_TIME_SCALE = 1.0
#: Streamed tokens ready within this of the previous chunk share the next one (several tokens
#: per chunk, as real streams sometimes carry): fewer chunks for thousands of concurrent streams.
DEFAULT_CHUNK_MS = 200.0
#: The gateway waits this long for an upstream's head or next chunk: an uncapped completion at a
#: slow provider's rate may take minutes, as it would for real (the openai SDK waits 600 s).
UPSTREAM_TIMEOUT_S = 600.0
#: In true time a request holds its slot for seconds (a stream's whole generation): thousands
#: are in flight at a few hundred requests per second, more than the gateway's default 1,024.
GATEWAY_MAX_INFLIGHT = 16384
#: Checks whose failure fails the run (exit 1); the others are reported only.
FAILING_CHECKS = ("slo", "reconciliation", "revenue", "tokens")
#: The gateway starts with its clock this far in the future, until everything is ready.
PROVISIONAL_EPOCH_S = 86400.0
#: From fixing the epoch to the scenario's start: time for the clock PUT and the users' poll.
START_MARGIN_S = 0.5
ADMIN_TOKEN_ENV = "REGIONBLOCK_ADMIN_TOKEN"
#: A probe through a WAN path waits out a long sampled round trip (a heavy tail of seconds).
WAN_PROBE_TIMEOUT_S = 10.0


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
    chunk_ms: float = DEFAULT_CHUNK_MS
    max_tokens_in: int = DEFAULT_MAX_TOKENS_IN
    max_tokens_out: int = DEFAULT_MAX_TOKENS_OUT
    epoch: float | None = None
    ledgers: tuple[Path, ...] = ()
    drain_s: float = DEFAULT_DRAIN_S
    ready_timeout_s: float = 30.0
    #: the full-market simulation's market context (None: the closed-form stand-in)
    market: MarketContext | None = None


def loadtest(loaded: Loaded, *, duration_s: float = DEFAULT_DURATION_S, users: int = DEFAULT_USERS,
             host: str | None = None, workers: int = 0, out: Path = Path("runs"),
             rate: float = DEFAULT_RATE, seed: int = 0, time_scale: float = DEFAULT_TIME_SCALE,
             max_tokens_in: int = DEFAULT_MAX_TOKENS_IN,
             max_tokens_out: int = DEFAULT_MAX_TOKENS_OUT, epoch: float | None = None,
             ledgers: tuple[Path, ...] = (), drain_s: float = DEFAULT_DRAIN_S,
             chunk_ms: float = DEFAULT_CHUNK_MS, market: MarketContext | None = None,
             console: Console | None = None) -> tuple[Path, int]:
    """Run a load test of ``loaded``; returns (run directory, exit code 0 ok / 1 a check failed).

    ``market`` is what the organisations' choices take from the whole market (imitation shares,
    the anticipation hazard): the record of the full-market simulation of the same scenario and
    seed (``scenarios.market``), written to the run directory as market.json."""
    opts = Options(duration_s=duration_s, users=users, rate=rate, host=host, workers=workers,
                   seed=seed, time_scale=time_scale, chunk_ms=chunk_ms,
                   max_tokens_in=max_tokens_in,
                   max_tokens_out=max_tokens_out, epoch=epoch, ledgers=ledgers, drain_s=drain_s,
                   market=market)
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
    if not (o.time_scale > 0 and math.isfinite(o.time_scale)):
        raise UsageError(f"--time-scale: {o.time_scale!r} must be greater than zero")
    if not (o.chunk_ms >= 0 and math.isfinite(o.chunk_ms)):
        raise UsageError(f"--chunk-ms: {o.chunk_ms!r} must not be negative")
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
    wan: tuple[tuple[str, str], ...] = ()  # "REGION/path" -> the WAN-path proxy's URL


def _run(loaded: Loaded, opts: Options, d: Path, started: dt.datetime, console: Console) -> int:
    scenario_file = d / "scenario.yaml"
    scenario_file.write_text(resolved_yaml(loaded.scenario), encoding="utf-8")
    events_dir = d / "events"
    market_file = ""
    if opts.market is not None:
        opts.market.write(d / MARKET_FILE)
        market_file = str(d / MARKET_FILE)
    ports = None if opts.host else Ports.pick(loaded.scenario)
    # Every process starts at once. Unless the user fixed the epoch, the scenario clock starts
    # only once all of them are ready: the gateway's clock is then set through its admin API and
    # the Locust processes read the epoch from a file they wait for.
    fixed = opts.epoch is not None
    provisional = opts.epoch if opts.epoch is not None else time.time() + PROVISIONAL_EPOCH_S
    admin_token = secrets.token_hex(16)
    config = LoadConfig(scenario=str(scenario_file), duration_s=opts.duration_s,
                        epoch=provisional, users=opts.users, rate=opts.rate, seed=opts.seed,
                        max_tokens_in=opts.max_tokens_in, max_tokens_out=opts.max_tokens_out,
                        events_dir=str(events_dir), epoch_file="" if fixed else str(d / "epoch"),
                        drain_s=opts.drain_s, run_id=secrets.token_hex(4),
                        workers=max(1, opts.workers), market_file=market_file)
    scales = credits.write(build_plan(config, loaded), d)  # the gateway's --credit-scale
    with Processes(log_dir=d / "logs") as procs:
        services = _start_services(procs, opts, scenario_file, d, provisional, ports, admin_token,
                                   scales)
        config = dataclasses.replace(config, relay_url=services.relay_url, wan=services.wan)
        plan = build_plan(config, loaded)
        # who the load test replays, for the paired simulation (simulate --sample-of)
        # (a gateway at --host was not given the credit scales: it grants whole credits)
        plan.sample(loaded.sha256, credits.credit_scales(plan) if services.gateway else {}
                    ).write(d / SAMPLE_FILE)
        console.print(_intro(plan, services, opts), soft_wrap=True)
        console.print(precision_table(plan), soft_wrap=True)
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
    """Loopback ports of our own services: providers on base+i, the relay after, then the WAN
    paths (``regionblock upstreams``' layout), and the gateway."""

    base: int
    providers: int
    regions: tuple[str, ...]
    gateway: int

    @classmethod
    def pick(cls, scenario: Scenario) -> Ports:
        regions = tuple(r.code for r in scenario.regions)
        n = len(scenario.providers) + 1 + len(PATHS) * len(regions)
        base = free_port_block(n)
        gateway = free_port()
        while base <= gateway < base + n:
            gateway = free_port()
        return cls(base, len(scenario.providers), regions, gateway)

    @property
    def relay(self) -> int:
        return self.base + self.providers

    def wan(self) -> tuple[tuple[str, str], ...]:
        """"REGION/path" -> URL of its WAN-path proxy, in the order ``upstreams`` listens."""
        keys = [f"{r}/{p}" for r in self.regions for p in PATHS]
        return tuple((k, f"http://127.0.0.1:{self.relay + 1 + i}") for i, k in enumerate(keys))


def _start_services(procs: Processes, opts: Options, scenario_file: Path, d: Path, epoch: float,
                    ports: Ports | None, admin_token: str, credit_scales: Path) -> Services:
    """The mock upstreams + relay and the gateway (nothing when targeting --host)."""
    if ports is None:
        assert opts.host is not None
        return Services(opts.host.rstrip("/"), "", None, None)
    procs.start("upstreams", [
        *_python(), "regionblock", "upstreams", str(scenario_file), "--base-port", str(ports.base),
        "--time-scale", f"{opts.time_scale:g}", "--chunk-ms", f"{opts.chunk_ms:g}",
        "--relay-target", f"http://127.0.0.1:{ports.gateway}", "--seed", str(opts.seed)],
        env=_child_env())
    ledger = d / "ledger.sqlite"
    gateway = procs.start("gateway", [
        *_python(), "regionblock", "gateway", str(scenario_file),
        "--port", str(ports.gateway), "--upstream-base-port", str(ports.base),
        "--trusted-proxy", "127.0.0.1/32", "--compress", f"{opts.duration_s:g}s@{epoch!r}",
        "--upstream-timeout", f"{UPSTREAM_TIMEOUT_S:g}", "--max-inflight", str(GATEWAY_MAX_INFLIGHT),
        "--ledger", str(ledger), "--credit-scale", str(credit_scales),
        "--insecure-org-keys"],  # the agents' keys are their org ids
        env=_child_env({ADMIN_TOKEN_ENV: admin_token}))
    return Services(f"http://127.0.0.1:{ports.gateway}", f"http://127.0.0.1:{ports.relay}",
                    ledger, gateway, ports.wan())


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
        for key, url in services.wan:  # through each WAN path, to what lies behind it
            probe = url + ("/__relay/healthz" if key.endswith("/relay") else "/readyz")
            wait_until(http_ok(probe, timeout_s=WAN_PROBE_TIMEOUT_S), deadline=deadline,
                       child=upstreams, what=f"the WAN path {key} answering {probe}")
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
    # No -u/-r: the locustfile's load shape runs exactly the plan's users.
    return [*_python(), "locust", "-f", str(LOCUSTFILE), "--headless", "-t", f"{run_time}s",
            "--host", host,
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


def precision_table(plan: Plan) -> str:
    """Before the run: per region what it can judge (users, planned requests after the block,
    the worst-case 95 % half-width of the block share and revenue share it will measure)."""

    def pm(v: float | None) -> str:
        return "n/a" if v is None else f"±{v * 100:.1f} pt"

    lines = ["load test plan: region  users  requests after block  block share  revenue share"]
    for p in plan.precision():
        lines.append(f"                {p.region:<6} {p.users:>6} {p.requests_after:>21,}  "
                     f"{pm(p.block_share_pm):>11}  {pm(p.revenue_share_pm):>13}")
    lines.append("                (planned requests before behaviour thins them; half-widths are "
                 "95 %, worst case, organisations as clusters)")
    return "\n".join(lines)


# ---------------------------------------------------------------- results


def locust_post_count(path: Path) -> int:
    """Requests Locust itself counted: its Aggregated row (every entry is a request)."""
    if not path.is_file():
        raise RunOutputError(f"{path}: Locust wrote no statistics")
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    aggregated = [int(r["Request Count"]) for r in rows if r.get("Name") == "Aggregated"]
    if not aggregated:
        raise RunOutputError(f"{path}: no Aggregated row")
    return aggregated[0]


def write_ttft_csv(path: Path, requests: list[Any]) -> None:
    """Time to first token of streamed, served requests by Locust's names (provider|REGION|path),
    in the columns of Locust's own statistics: its own file, never part of the request totals."""
    groups: dict[str, list[float]] = {}
    for r in requests:
        if r.ttft_ms is not None:
            groups.setdefault(f"{r.provider}|{r.region}|{r.path}", []).append(float(r.ttft_ms))
    everything = [v for vs in groups.values() for v in vs]
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["Type", "Name", "Count", "Median (ms)", "95%", "99%", "Min (ms)", "Max (ms)",
                    "Average (ms)"])
        for name, values in [*sorted(groups.items()), ("Aggregated", everything)]:
            if not values:
                continue
            q = analysis.quantiles(values)
            w.writerow(["TTFT", name, len(values), f"{q[0]:.1f}", f"{q[1]:.1f}", f"{q[2]:.1f}",
                        f"{min(values):.1f}", f"{max(values):.1f}",
                        f"{sum(values) / len(values):.1f}"])


def _write_results(plan: Plan, loaded: Loaded, opts: Options, d: Path, services: Services,
                   started: dt.datetime, finished: dt.datetime, console: Console) -> int:
    events = read_events(d / "events")
    ledger_rows, ledger_meta = read_ledger(services.ledger) if services.ledger else (None, {})
    joined = analysis.join(events.requests, ledger_rows)
    # delays divided by --time-scale are no latencies the SLOs speak of: errors alone are judged
    unjudged = (f"time scaled ×{opts.time_scale:g}: not the scenario's latencies"
                if _timing_label(opts, services) == "scaled" else None)
    checks: dict[str, Any] = {"slo": analysis.slo_check(plan.scenario, joined,
                                                        latencies_not_judged=unjudged),
                              "rate_accuracy": analysis.rate_accuracy(plan, events.requests)}
    locust_count = locust_post_count(d / "locust_stats.csv")
    write_ttft_csv(d / "locust_ttft.csv", list(events.requests))
    if ledger_rows is not None:
        rec = analysis.reconcile(events.requests, ledger_rows)
        rec["locust_stats_requests"] = locust_count
        rec["passed"] = rec["passed"] and locust_count == len(events.requests)
        checks["reconciliation"] = rec
        checks["revenue"] = analysis.revenue_check(plan.scenario, ledger_rows,
                                                   analysis.applied_scales(ledger_meta),
                                                   credits.credit_scales(plan))
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
        "plan_precision": [asdict(p) for p in plan.precision()],
        "loadtest": {"target": services.host, "own_gateway": services.gateway is not None,
                     "ledger": "ledger.sqlite" if services.ledger else None,
                     "ledger_meta": ledger_meta, "workers": opts.workers,
                     "time_scale": opts.time_scale if services.gateway else None,
                     "timing": _timing_label(opts, services),
                     "epoch": plan.config.epoch, "duration_s": plan.config.duration_s,
                     "requests_sent": len(events.requests), "users_started": len(events.users),
                     "note": _timing_note(opts, services)},
    }
    write_json(d / "summary.json", summary)
    write_json(d / "meta.json", meta(kind="loadtest", scenario=plan.scenario.name,
                                     sha256=loaded.sha256, source=str(loaded.source),
                                     seeds=[opts.seed], started=started, finished=finished,
                                     loadtest={"users": opts.users, "rate": opts.rate,
                                               "duration_s": opts.duration_s,
                                               "workers": opts.workers, "host": opts.host,
                                               "ledgers": [str(x) for x in opts.ledgers],
                                               "time_scale": opts.time_scale,
                                               "timing": _timing_label(opts, services)}))
    _cleanup(d)
    console.print(verdict(summary), soft_wrap=True)
    return 1 if failed else 0


def _timing_label(opts: Options, services: Services) -> str:
    """``true`` (every latency as the scenario's laws say), ``scaled`` (divided by time_scale: no
    agreement check may use them) or ``external`` (--host: whatever that system's time is)."""
    if services.gateway is None:
        return "external"
    return "true" if opts.time_scale == 1.0 else "scaled"


def _timing_note(opts: Options, services: Services) -> str:
    label = _timing_label(opts, services)
    base = "latencies are measured from each request's intended send instant"
    if label == "true":
        return (f"{base}, in true time: mock providers at the scenario's latency laws, each "
                "region's WAN round trip added by its WAN-path proxy")
    if label == "scaled":
        return (f"{base}; SCALED: every mock, relay and WAN-path latency was divided by "
                f"{opts.time_scale:g}, so no latency figure of this run compares with the model")
    return f"{base}, against {services.host} (its own network and providers)"


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
        note = ""
        if c.get("skipped"):
            state = "skipped"
        elif c.get("passed"):
            state = "ok"
        elif name in FAILING_CHECKS:
            state = "FAILED"
        else:   # rate accuracy: never FAILED beside "all checks passed"
            state, note = "off", " (informative: does not fail the run)"
        lines.append(f"  {name:<15} {state:<8} {_detail(name, c)}{note}")
    head = "load test: all checks passed" if summary["passed"] else \
        f"load test: FAILED ({', '.join(summary['failed_checks'])})"
    breaches = [f"  SLO breached: {line}" for line in checks.get("slo", {}).get("breaches", [])]
    return "\n".join([head, *lines, *breaches])


def _detail(name: str, c: dict[str, Any]) -> str:
    if c.get("skipped"):
        return str(c.get("reason", ""))
    if name == "reconciliation":
        by = ", ".join(f"{d} {v['locust']}/{v['ledger']}" for d, v in c["by_decision"].items())
        return (f"locust/ledger by decision: {by}; unmatched {c['unmatched_locust']}/"
                f"{c['unmatched_ledger']}, mismatched {c['decision_mismatches']}")
    if name == "revenue":
        return (f"{c['rows']} rows, {c['mismatches']} off the contract (free tokens, price); "
                f"${c['revenue_usd']:.6f}; {c['free_tokens']} free tokens; credits opened "
                f"{c['credits']['opened']}, {c['credits']['problems']} with problems")
    if name == "tokens":
        return f"{c['mismatches']} served requests whose ledger tokens differ from the response"
    if name == "slo":
        o = c["overall"]
        th = c.get("thresholds", [])
        if c.get("latencies_not_judged"):
            return (f"{'/'.join(c['regions'])}: latencies not judged ({c['latencies_not_judged']}), "
                    f"errors {o['error_rate']:.2%} (max {c['error_rate_max']:.2%})")
        judged = [t for t in th if t["passed"] is not None]
        ok = sum(1 for t in judged if t["passed"])
        return (f"{'/'.join(c['regions'])}: p99 {o['p99_latency_ms']:.0f} ms (max "
                f"{c['p99_latency_ms_max']:g}), errors {o['error_rate']:.2%} (max "
                f"{c['error_rate_max']:.2%}); region/path thresholds {ok}/{len(judged)} met"
                f" ({len(th) - len(judged)} not judged: too few requests)")
    if name == "rate_accuracy":
        pooled = c["judged_periods"] < c["judged_days"]
        over = (f"{c['judged_periods']} periods of consecutive days" if pooled else "days")
        return (f"worst {c['worst_error']:.2%} over {c['judged_days']} days in {over} with >= "
                f"{analysis.RATE_MIN_PER_DAY} sends (tolerance ±{c['tolerance']:.0%}); "
                f"send lateness p99 {c['send_lateness_ms']['p99']:.1f} ms")
    return ""
