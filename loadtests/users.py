"""The Locust side: one user per organisation, replaying its open-model schedule.

:class:`World` is this process's view of the load test (plan, agents, event log), built once
when Locust initialises and hung on the Locust ``Environment``; :class:`OrgUser` is the user.

A user sleeps until each planned instant and then *spawns* the request (a greenlet per request,
up to the connection pool's size in flight), so the arrival process does not slow down when the
system does: an open model. Locust's statistics get each request's time from its *intended*
send instant (no coordinated omission), under the name ``provider|REGION|path`` (split by
region, path and provider). Time to first token is recorded with each request in the event log,
not as a Locust request (which Locust would add to its request totals): ``regionblock loadtest``
writes it to ``locust_ttft.csv``, by the same names. Policy denials are marked as failures
(``block: HTTP 403``), so ``locust_failures.csv`` shows them by region and path.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import numpy as np
from gevent.pool import Pool
from locust import FastHttpUser, constant, task
from locust.contrib.fasthttp import FastHttpSession
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import WORKER_REPORT_INTERVAL, MasterRunner, WorkerRunner
from locust.stats import CSV_STATS_INTERVAL_SEC

from loadtests.agent import OrgAgent, Route
from loadtests.events import EventWriter, RequestRecord, StateRecord
from loadtests.plan import LoadConfig, Plan, Schedule, UserSpec, build_plan, in_flight_bound
from loadtests.wire import (
    PROVIDER_HEADER,
    REQUEST_ID_HEADER,
    DenialStatuses,
    chat_body,
    classify,
    read_sse_lines,
    usage_of,
)
from scenarios import lifecycle as lc
from scenarios.clock import format_instant
from scenarios.distributions import sample_one
from scenarios.geo import default_geo
from scenarios.market import MarketContext
from scenarios.policy import Policy
from scenarios.schema import Scenario

CHAT_PATH = "/v1/chat/completions"
WORLD_ATTR = "regionblock_world"
EPOCH_POLL_S = 0.01
#: Locust messages between master and workers: the epoch (master -> workers), a worker done.
EPOCH_MESSAGE = "regionblock_epoch"
DONE_MESSAGE = "regionblock_done"
#: The admin token of the gateway whose clock Locust sets at test_start (the gateway's variable).
ADMIN_TOKEN_ENV = "REGIONBLOCK_ADMIN_TOKEN"
#: A user idle this long drops its kept-alive connections before its next request, as httpx does
#: with connections the server may have closed: the gateway closes idle ones after 75 s, and
#: geventhttpclient would otherwise send into a closed one (a failure no real client sees).
IDLE_CLOSE_S = 60.0
#: From the last answer to quitting: Locust's CSV writer writes every CSV_STATS_INTERVAL_SEC and
#: not again on quit, so quitting sooner would leave the last answers out of locust_stats.csv.
QUIT_AFTER_S = 2 * CSV_STATS_INTERVAL_SEC + 0.5
#: Users Locust spawns per second, for the lead between test_start and the epoch.
SPAWN_PER_S = 1000.0
log = logging.getLogger("regionblock.loadtest")


class Completion:
    """When the scenario starts (the epoch) and when this process's part of the run is done.

    The epoch is known at once (``REGIONBLOCK_EPOCH``), from the epoch file, or at Locust's
    ``test_start`` (:func:`on_test_start`; workers get it from the master's message). Done: a
    stand-alone runner quits when all its users are; a worker tells the master, which quits when
    every worker has.
    """

    def __init__(self, environment: Environment, config: LoadConfig) -> None:
        self.environment = environment
        self.config = config
        self.epoch: gevent.event.AsyncResult = gevent.event.AsyncResult()
        self.workers_done: set[int] = set()

    def listen(self) -> None:
        runner = self.environment.runner
        if self.config.epoch_file:
            gevent.spawn(lambda: self.epoch.set(await_epoch(Path(self.config.epoch_file))))
        elif not self.config.epoch_on_start:
            self.epoch.set(self.config.epoch)
        if isinstance(runner, WorkerRunner):
            runner.register_message(EPOCH_MESSAGE, lambda environment, msg, **_: self.epoch.set(
                float(msg.data["epoch"])))
        elif isinstance(runner, MasterRunner):
            runner.register_message(DONE_MESSAGE, self._worker_done)

    def _worker_done(self, environment: Environment, msg: Any, **_: Any) -> None:
        self.workers_done.add(int(msg.data["worker"]))
        if len(self.workers_done) >= self.config.workers and environment.runner is not None:
            # the workers' last statistics arrive with their next report
            gevent.spawn_later(WORKER_REPORT_INTERVAL + QUIT_AFTER_S, end_run, environment)

    def local_done(self) -> None:
        """Every user of this process is done."""
        runner = self.environment.runner
        if isinstance(runner, WorkerRunner):
            runner.send_message(DONE_MESSAGE, {"worker": max(runner.worker_index, 0)})
        elif runner is not None and not isinstance(runner, MasterRunner):
            gevent.spawn_later(QUIT_AFTER_S, end_run, self.environment)


def end_run(environment: Environment) -> None:
    """Headless: quit (Locust writes its reports and exits). In the web UI: stop, so the page
    keeps the run's statistics and charts for the user to read and download."""
    runner = environment.runner
    if runner is None:
        return
    options = environment.parsed_options
    if options is not None and not getattr(options, "headless", True):
        runner.stop()
    else:
        runner.quit()


def on_test_start(environment: Environment, config: LoadConfig, completion: Completion,
                  lead_s: float) -> None:
    """The Start button (or a headless start): fix the epoch a moment ahead, for every process
    and the gateway's clock."""
    if completion.epoch.ready():
        log.error("regionblock: this Locust process already played the scenario once; restart "
                  "Locust to play it again")
        return
    epoch = time.time() + lead_s + config.users / SPAWN_PER_S
    set_gateway_clock(environment.host or "", config, epoch)
    if isinstance(environment.runner, MasterRunner):
        environment.runner.send_message(EPOCH_MESSAGE, {"epoch": epoch})
    completion.epoch.set(epoch)
    log.info("regionblock: scenario clock starts at %s",
             format_instant(dt.datetime.fromtimestamp(epoch, dt.UTC)))


def set_gateway_clock(host: str, config: LoadConfig, epoch: float) -> None:
    """Compress the scenario onto the run from ``epoch`` in the gateway too (its admin API)."""
    token = os.environ.get(ADMIN_TOKEN_ENV, "")
    spec = f"compress:{config.duration_s!r}s@{epoch!r}"
    if not token or not host:
        log.warning("regionblock: %s is not set, so the gateway's clock is not set from here: "
                    "give the gateway --compress %gs@%r (or the same admin token)",
                    ADMIN_TOKEN_ENV, config.duration_s, epoch)
        return
    req = urllib.request.Request(host.rstrip("/") + "/admin/clock", method="PUT",
                                 data=json.dumps({"clock": spec}).encode(),
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            resp.read()
    except (urllib.error.URLError, OSError) as exc:
        log.error("regionblock: could not set the gateway's clock (%s): %s", spec, exc)


class World:
    """Everything the users of one Locust process share."""

    def __init__(self, environment: Environment, config: LoadConfig,
                 completion: Completion) -> None:
        self.environment = environment
        self.config = config
        self.completion = completion
        self.plan: Plan = build_plan(config)
        s = self.plan.scenario
        self.denials = DenialStatuses.of(s)
        self.ips = self.plan.source_ips(default_geo())
        self.agents: dict[int, OrgAgent] = {}
        self.context = lc.Context(s, Policy(s), self._market(s))
        self.logged: dict[int, int] = {}
        self.events = EventWriter(config.events_dir)
        self._claims = itertools.count()
        self.finished = 0
        self.started = 0
        self.go = gevent.event.Event()

    def start(self) -> None:
        """Start waiting for the epoch (in the gevent loop that runs the users)."""
        gevent.spawn(self._await_epoch)

    def _await_epoch(self) -> None:
        epoch = float(self.completion.epoch.get())
        self.config = replace(self.config, epoch=epoch)
        self.plan = replace(self.plan, config=self.config)
        self.go.set()

    def _market(self, s: Scenario) -> MarketContext:
        """The full-market simulation's record (``market.json``), or the closed-form stand-in."""
        if self.config.market_file:
            return MarketContext.read(Path(self.config.market_file))
        return MarketContext.closed_form(s)

    def claim(self) -> UserSpec | None:
        """The next organisation for a starting user of this process (None: none left).

        Locust's master hands users to workers round robin, so worker ``w`` of ``W`` plays
        organisations ``w, w+W, w+2W, ...``.
        """
        runner = self.environment.runner
        worker = runner.worker_index if isinstance(runner, WorkerRunner) else 0
        index = next(self._claims) * self.config.workers + max(worker, 0)
        if index >= len(self.plan.users):
            return None
        return self.plan.users[index]

    def agent(self, user: UserSpec) -> OrgAgent:
        """The organisation's life, its generator seeded from (seed, organisation id) as in the
        simulator (``scenarios.lifecycle.org_rng``)."""
        agent = self.agents.get(user.index)
        if agent is None:
            s = self.plan.scenario
            org = lc.Org(user.org.id, user.org.region, user.org.segment,
                         relay_available=bool(self.config.relay_url))
            agent = self.agents[user.index] = OrgAgent(
                org, rng=lc.org_rng(self.config.seed, user.org.id), ctx=self.context,
                start=s.window.start)
        return agent

    def sync_states(self, user: UserSpec, agent: OrgAgent) -> None:
        """Write the agent's transitions not written yet."""
        done = self.logged.get(user.index, 0)
        for t in agent.log[done:]:
            self.events.state(StateRecord(user.index, user.org.id, user.org.region,
                                          format_instant(t.at), t.state, t.provider))
        self.logged[user.index] = len(agent.log)

    def owned(self) -> int:
        """Planned organisations this process plays (see :meth:`claim`)."""
        runner = self.environment.runner
        worker = max(runner.worker_index, 0) if isinstance(runner, WorkerRunner) else 0
        return len(range(worker, len(self.plan.users), self.config.workers))

    def user_finished(self) -> None:
        """When every local user is done, the run ends for this process (no idle tail)."""
        self.finished += 1
        if self.finished == self.owned():
            self.completion.local_done()


def await_epoch(path: Path) -> float:
    """The orchestrator writes the epoch once every process is ready: then the clock starts."""
    while not path.is_file():
        gevent.sleep(EPOCH_POLL_S)
    return float(path.read_text(encoding="utf-8").strip())


def stop_after_run(environment: Environment, config: LoadConfig, completion: Completion) -> None:
    """Quit the runner (which writes the reports) at the latest ``drain_s`` after the last
    planned send (normally every user is done earlier, see :class:`Completion`)."""
    epoch = float(completion.epoch.get())
    gevent.sleep(max(0.0, epoch + config.duration_s + config.drain_s - time.time()))
    end_run(environment)


class WorldHolder:
    """Builds the World off the gevent loop, so a worker keeps sending heartbeats meanwhile
    (drawing the plan and the source addresses takes seconds on a busy machine)."""

    def __init__(self) -> None:
        self.ready = gevent.event.Event()
        self.world: World | None = None
        self.error = ""

    def build(self, environment: Environment, config: LoadConfig,
              completion: Completion) -> None:
        try:
            self.world = gevent.get_hub().threadpool.apply(World, (environment, config,
                                                                   completion))
            self.world.start()
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self.ready.set()


def world_of(environment: Environment) -> World:
    holder = getattr(environment, WORLD_ATTR, None)
    if holder is None:
        raise RuntimeError("the regionblock load-test world was not initialised "
                           "(run Locust with -f loadtests/locustfile.py)")
    holder.ready.wait()
    if holder.world is None:
        raise RuntimeError(f"the regionblock load-test world could not be built: {holder.error}")
    return holder.world


class OrgUser(FastHttpUser):
    """One organisation of the scenario, replaying its planned requests."""

    host = "http://127.0.0.1:18080"
    wait_time = constant(0)
    concurrency = 32  # requests one organisation may have in flight (the open model's headroom)
    network_timeout = 600.0  # a long completion at a slow provider's rate (no cap) takes minutes
    connection_timeout = 10.0
    insecure = False

    def on_start(self) -> None:
        self.world = world_of(self.environment)
        spec = self.world.claim()
        if spec is None:
            log.warning("more Locust users than planned organisations: this user stays idle")
            raise StopUser()
        self.spec = spec
        self.world.started += 1
        self.agent = self.world.agent(spec)
        self.backoff_rng = np.random.default_rng([self.world.config.seed, 17, spec.index])
        self.schedule: Schedule = self.world.plan.schedule(spec)
        self.seq = itertools.count()
        concurrency = in_flight_bound(self.schedule.offsets, self.concurrency)
        if concurrency > self.concurrency:  # the connection pool too: FastHttpUser sized it at 32
            self.concurrency = concurrency
            self.client = FastHttpSession(
                base_url=self.host, request_event=self.environment.events.request,
                network_timeout=self.network_timeout, connection_timeout=self.connection_timeout,
                max_redirects=self.max_redirects, max_retries=self.max_retries,
                insecure=self.insecure, concurrency=concurrency, user=self,
                client_pool=self.client_pool, ssl_context_factory=self.ssl_context_factory,
                headers=self.default_headers, proxy_host=self.proxy_host,
                proxy_port=self.proxy_port)
        self.inflight = Pool(self.concurrency)
        self.last_done = time.time()  # when this user's connections were last used
        self.world.events.user(spec.index, spec.org.id, time.time())

    @task
    def replay(self) -> None:
        self.world.go.wait()
        plan, epoch = self.world.plan, self.world.config.epoch
        for k in range(len(self.schedule)):
            intended = epoch + float(self.schedule.offsets[k])
            gevent.sleep(max(0.0, intended - time.time()))
            route = self.agent.route(plan.scenario_at(intended))
            self.world.sync_states(self.spec, self.agent)
            if route is None:
                break  # churned: this organisation sends nothing more
            self._drop_idle_connections()
            self.inflight.spawn(self._send_with_retries, k, intended, route)
        self.inflight.join()
        self.agent.finish(plan.scenario.window.end)
        self.world.sync_states(self.spec, self.agent)
        self.world.events.done(self.spec.index, time.time())
        self.world.user_finished()
        while True:  # done: idle until the runner stops (a task that returns would run again)
            gevent.sleep(3600)

    def _drop_idle_connections(self) -> None:
        if len(self.inflight) == 0 and time.time() - self.last_done > IDLE_CLOSE_S:
            self.client.client.clientpool.close()

    # ------------------------------------------------------------ one request

    def _send_with_retries(self, k: int, intended: float, route: Route) -> None:
        retry = self.world.plan.scenario.segment(self.spec.org.segment).retry
        attempt = 0
        while True:
            rec = self._send(k, intended, route, attempt)
            plan = self.world.plan
            self.agent.observe(plan.scenario_at(rec.sent), rec.decision, route)
            self.world.sync_states(self.spec, self.agent)
            if rec.status not in retry.statuses or attempt >= retry.max_retries:
                return
            attempt += 1
            # (its own generator: the organisation's is the state machine's alone)
            backoff_s = max(0.0, sample_one(retry.backoff_s, self.backoff_rng)) / plan.speedup
            intended = rec.done + backoff_s  # scenario seconds on the compressed clock
            gevent.sleep(max(0.0, intended - time.time()))

    def _send(self, k: int, intended: float, route: Route, attempt: int) -> RequestRecord:
        sch, spec, world = self.schedule, self.spec, self.world
        model = self.agent.model_for(route, sch.models[k])
        stream = bool(sch.stream[k])
        tin, tout = int(sch.tokens_in[k]), int(sch.tokens_out[k])
        client_id = f"{world.config.run_id}-{spec.index}-{next(self.seq)}"
        name = f"{route.provider}|{spec.org.region}|{route.path}"
        # the region's WAN path (direct: to the gateway; relay: to the relay), else host/relay_url
        url = world.plan.base_url(spec.org.region, route.path, "") + CHAT_PATH
        headers = {"Authorization": f"Bearer sk-{spec.org.id}", "X-Forwarded-For": world.ips[spec.index],
                   "Content-Type": "application/json", "Accept-Encoding": "identity",
                   "X-Client-Request-Id": client_id}
        ttft: list[float] = []
        sent = time.time()
        body: Any = chat_body(model, tin, tout, stream)  # bytes: geventhttpclient sends them as is
        with self.client.request("POST", url, data=body,
                                 headers=headers, name=name, stream=stream,
                                 catch_response=True) as resp:
            status = int(resp.status_code or 0)
            got = {key.lower(): value for key, value in (resp.headers or {}).items()}
            usage, complete, error = self._read_body(resp, status, stream, ttft)
            done = self.last_done = time.time()
            decision = classify(status, got, world.denials, complete=complete)
            resp.request_meta["response_time"] = (done - intended) * 1000
            if decision in ("allow", "warn"):
                resp.success()
            else:
                resp.failure(f"{decision}: HTTP {status}{' ' + error if error else ''}")
        # Not a Locust request event: Locust would count it as a request (see loadtests.analysis
        # for the TTFT statistics, written to locust_ttft.csv).
        ttft_ms = (ttft[0] - intended) * 1000 if ttft else None
        rec = RequestRecord(
            id=got.get(REQUEST_ID_HEADER, ""), client_id=client_id, user=spec.index,
            org=spec.org.id, region=spec.org.region, segment=spec.org.segment,
            provider=route.provider, path=route.path, model=model, stream=stream, attempt=attempt,
            intended=intended, sent=sent, done=done, status=status, decision=decision,
            tokens_in=tin, tokens_out=tout, usage_in=usage[0] if usage else -1,
            usage_out=usage[1] if usage else -1, ttft_ms=ttft_ms,
            served_by=got.get(PROVIDER_HEADER, ""), error=error)
        world.events.request(rec)
        return rec

    def _read_body(self, resp: Any, status: int, stream: bool,
                   ttft: list[float]) -> tuple[tuple[int, int] | None, bool, str]:
        """(usage, complete, error) of the response body; records the first token's instant."""
        if status == 0:
            return None, False, type(getattr(resp, "error", None)).__name__
        try:
            if stream and status == 200:
                reading = read_sse_lines(_lines(resp), lambda: ttft.append(time.time()))
                ok = reading.done and reading.usage is not None
                return reading.usage, ok, "" if ok else "stream_incomplete"
            usage = usage_of(resp.content or b"") if status == 200 else None
            return usage, usage is not None, "" if status != 200 or usage else "usage_missing"
        except Exception as exc:  # a connection broken mid-body: the request failed
            return None, False, type(exc).__name__


def _lines(resp: Any) -> Iterator[bytes]:
    """The body of a streamed response, line by line, each as soon as it is complete.

    geventhttpclient's ``readline`` returns a line once its newline has arrived. Locust's
    ``iter_content(chunk_size)`` would instead wait for ``chunk_size`` bytes, which holds back
    the first token (and the time to first token measured) until later chunks fill the buffer.
    """
    raw = getattr(resp, "_response", None)
    if raw is not None and hasattr(raw, "readline"):
        while line := raw.readline(b"\n"):
            yield line
        return
    buffer = b""
    for chunk in resp.iter_content(chunk_size=1, decode_content=False):
        buffer += chunk if isinstance(chunk, bytes) else chunk.encode()
        *lines, buffer = buffer.split(b"\n")
        yield from lines
    if buffer:
        yield buffer
