"""The gateway: its collaborators, its routes and the chat pipeline, assembled in one place.

``POST /v1/chat/completions`` goes through the stages of ``Gateway.chat_stages``, in order:

    admission → identity → key limits → client address → region → validation → route
    → policy (with block failover) → forward (retries, breaker, error failover, streaming)

and then, always, the meter stage (one ledger row, durable before the answer ends). Each stage
is its own module in ``gateway/stages``; a request's state is one ``ChatContext``.

Other routes are registered in ``Gateway.routes`` (``register`` adds one: how further endpoints
plug in). The scenario, its compiled policy and catalog, the clock and the key store form one
immutable ``Runtime`` (``gateway.runtime``) that the admin API swaps atomically: a request uses
the runtime it started with from start to end.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from gateway import admin, endpoints
from gateway.client_address import AddressResolver
from gateway.config import GatewayConfig
from gateway.connection import ResponseWriter
from gateway.context import ChatContext, Meter
from gateway.enforcement import RelayMemory
from gateway.errors import BadRequest, ClientError, NotFound
from gateway.http11 import Request
from gateway.keystore import KeyStore
from gateway.ledger import Ledger
from gateway.metering import Credits
from gateway.metrics import Metrics
from gateway.pipeline import run_stages
from gateway.region import RegionResolver
from gateway.runtime import Runtime
from gateway.stages import Stage, bound
from gateway.stages.admission import Admission
from gateway.stages.client_address import AddressStage
from gateway.stages.forward import CHAT_PATH, ForwardStage
from gateway.stages.identity import IdentityStage
from gateway.stages.key_limits import KeyLimits
from gateway.stages.meter import MeterStage
from gateway.stages.policy import PolicyStage
from gateway.stages.region import RegionStage
from gateway.stages.route import route_stage
from gateway.stages.validation import ValidationStage
from gateway.upstreams import Upstreams
from scenarios.clock import Clock, format_instant, parse_clock
from scenarios.geo import Geo
from scenarios.loader import Loaded

_JSON = ("content-type", "application/json")
#: how many of the chat stages (from the first) every endpoint shares: admission, identity, key
#: limits, client address, region; the rest are the chat request's own
FRONT_STAGES = 5
Route = Callable[[Request, ResponseWriter], Awaitable[None] | None]


class Gateway:
    """Owns the collaborators (ledger, upstreams, metrics), the routes and the chat stages."""

    def __init__(self, config: GatewayConfig, loaded: Loaded, *, geo: Geo,
                 loop: asyncio.AbstractEventLoop, clock: Clock | None = None,
                 keys: KeyStore | None = None) -> None:
        self.config = config
        self.loop = loop
        window = loaded.scenario.window
        clock = clock or parse_clock(config.clock, window_start=window.start, window_end=window.end,
                                     now_wall=time.time())
        if keys is None and config.keys_path is not None:
            keys = KeyStore.load(config.keys_path)
        self.runtime = Runtime.build(loaded, config.clock, clock, keys)
        self.relays = RelayMemory(config.relay_memory)
        self.metrics = Metrics()
        self.upstreams = Upstreams(config.upstream, self.metrics, loop)
        self.upstreams.configure(config.upstreams)
        self.ledger = Ledger(config.ledger_path, meta=self._ledger_meta(), sync=config.ledger_sync)
        self.credits = Credits(self.ledger.credit_balances(), config.credit_scales)
        self.admission = Admission(config.limits.max_inflight, self.metrics)
        #: the one forward loop (retries, breaker, error failover), of chat and the other endpoints
        self.forward = ForwardStage(self.upstreams, self.metrics, self.relays, config.upstream,
                                    min_tokens_per_s=config.min_tokens_per_s)
        self.chat_stages = self._chat_stages(geo)
        self.meter = MeterStage(self.ledger, self.metrics, self.credits)
        self.routes: dict[tuple[str, str], Route] = {}
        self._register_routes()
        self.ready = False
        self._ids = 0
        self._id_prefix = f"req_{os.getpid():x}{secrets.token_hex(4)}_"
        epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        self._last_instant = (epoch, format_instant(epoch))
        self._register_gauges()

    def _chat_stages(self, geo: Geo) -> list[Stage]:
        """The chat pipeline, in order: the one place where its stages are assembled."""
        config = self.config
        return [bound(stage) for stage in (
            self.admission,
            IdentityStage(insecure_org_keys=config.insecure_org_keys),
            KeyLimits(),
            AddressStage(AddressResolver(config.trusted_proxies)),
            RegionStage(RegionResolver(geo, unknown_country=config.unknown_country,
                                       trust_cf_ipcountry=config.trust_cf_ipcountry)),
            ValidationStage(config.max_completion_tokens),
            route_stage,
            PolicyStage(self.relays),
            self.forward,
        )]

    def _register_routes(self) -> None:
        self.register("POST", CHAT_PATH, self.chat)
        for path, endpoint in endpoints.ENDPOINTS.items():
            self.register("POST", path, self._endpoint_route(endpoint))
        self.register("GET", "/v1/models", self._models)
        self.register("GET", "/healthz", self._healthz)
        self.register("GET", "/readyz", self._readyz)
        self.register("GET", "/metrics", self._metrics)

    def register(self, method: str, path: str, route: Route) -> None:
        """Serve ``method path`` with ``route`` (a GET route also answers HEAD)."""
        self.routes[(method, path)] = route

    @property
    def inflight(self) -> int:
        return self.admission.inflight

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.ledger.start(self.loop)
        self.ready = True

    async def close(self) -> None:
        self.ready = False
        await self.ledger.close()
        self.upstreams.close()

    def _ledger_meta(self) -> dict[str, str]:
        rt = self.runtime
        return {"scenario": rt.loaded.scenario.name, "scenario_sha256": rt.loaded.sha256,
                "gateway_pid": str(os.getpid()), "clock": rt.clock.describe(),
                "credit_scales": json.dumps(self.config.credit_scales, sort_keys=True)}

    def set_runtime(self, runtime: Runtime) -> None:
        """Swap scenario/policy/clock/keys atomically (the admin API)."""
        self.runtime = runtime
        self.ledger.set_meta(self._ledger_meta())

    def set_clock(self, spec: str) -> Runtime:
        window = self.runtime.loaded.scenario.window
        clock = parse_clock(spec, window_start=window.start, window_end=window.end,
                            now_wall=time.time())
        self.set_runtime(replace(self.runtime, clock=clock, clock_spec=spec))
        return self.runtime

    def _register_gauges(self) -> None:
        m = self.metrics
        m.gauges["inflight"] = ("Requests in progress", lambda: float(self.inflight))
        m.gauges["ledger_lag_seconds"] = ("Enqueue to commit delay of the latest ledger group",
                                          lambda: self.ledger.last_lag_s)
        m.gauges["ledger_backlog"] = ("Ledger rows queued, not yet committed",
                                      lambda: float(self.ledger.backlog))
        m.counters["ledger_rows"] = ("Ledger rows committed", lambda: float(self.ledger.written))
        m.gauges["relay_orgs_tracked"] = ("Organisations remembered as relaying",
                                          lambda: float(len(self.relays)))
        m.labelled_gauges["upstream_up"] = ("Upstream circuit: 1 closed, 0.5 half-open, 0 open",
                                            "provider", self.upstreams.health)

    # ------------------------------------------------------------------ dispatch

    def handle(self, req: Request, writer: ResponseWriter) -> Awaitable[None] | None:
        """Answer ``req``: at once (None), or by the awaitable returned (a route's coroutine,
        returned rather than awaited here: one coroutine less per request to step through)."""
        path = req.path
        if path.startswith("/admin/"):
            status, body = admin.handle(self, req)
            writer.send(status, [_JSON], body)
            return None
        route = self.routes.get((req.method, path))
        if route is None and path.startswith(endpoints.MODELS_PATH + "/") and req.method in ("GET", "HEAD"):
            route = self._models
        if route is None and req.method == "HEAD":
            route = self.routes.get(("GET", path))  # the writer sends the head only
        if route is None:
            allowed = sorted(method for method, p in self.routes if p == path)
            exc = _method_not_allowed(req, allowed) if allowed else _not_found(req)
            headers = [_JSON, *exc.headers, *self.refused(req.peer, exc, req.wall_time)]
            writer.send(exc.status, headers, exc.body())
            return None
        return route(req, writer)

    def chat(self, req: Request, writer: ResponseWriter) -> Awaitable[None]:
        rt = self.runtime
        now = rt.clock.scenario_at(req.wall_time)
        ctx = ChatContext(req, writer, rt, now, self._new_meter(req.wall_time, now))
        return run_stages(self.chat_stages, self.meter, ctx)

    def _new_meter(self, wall_time: float, now: dt.datetime) -> Meter:
        self._ids += 1
        return Meter(f"{self._id_prefix}{self._ids:x}", wall_time, self._format_instant(now), now)

    def refused(self, peer: str, exc: ClientError, wall_time: float) -> list[tuple[str, str]]:
        """A request refused before it reached a route (400/408/413/431 from the connection, 404
        and 405 here): metered too, with its ``x-request-id``."""
        now = self.runtime.clock.scenario_at(wall_time)
        meter = self._new_meter(wall_time, now)
        meter.status, meter.error = exc.status, exc.code or f"http_{exc.status}"
        self.metrics.request("", "", "failed", exc.status, 0.0)
        if self.ledger.alive:
            future = self.ledger.submit(meter.row(0.0))
            future.add_done_callback(_ignore_result)  # nobody waits: the answer closes anyway
        return [("x-request-id", meter.request_id)]

    def _endpoint_route(self, endpoint: endpoints.Endpoint) -> Route:
        """Another OpenAI endpoint: the chat pipeline's first stages (admission → region), then
        the endpoint's own (``gateway.endpoints.EndpointStage``), then the meter stage."""
        stages: list[Stage] = [*self.chat_stages[:FRONT_STAGES],
                               bound(endpoints.EndpointStage(self, endpoint))]

        async def route(req: Request, writer: ResponseWriter) -> None:
            rt = self.runtime
            now = rt.clock.scenario_at(req.wall_time)
            meter = self._new_meter(req.wall_time, now)
            meter.endpoint = endpoint.label
            await run_stages(stages, self.meter, ChatContext(req, writer, rt, now, meter))
        return route

    def _models(self, req: Request, writer: ResponseWriter) -> None:
        endpoints.handle_models(self, req, writer)

    def _healthz(self, req: Request, writer: ResponseWriter) -> None:
        writer.send(200, [_JSON], b'{"status":"ok"}')

    def _metrics(self, req: Request, writer: ResponseWriter) -> None:
        writer.send(200, [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                    self.metrics.exposition())

    def _readyz(self, req: Request, writer: ResponseWriter) -> None:
        """Ready: started, the ledger commits, and at least one upstream's circuit is not open."""
        states = self.upstreams.states()
        upstream_ok = not states or any(state != "open" for state in states.values())
        ok = self.ready and self.ledger.alive and upstream_ok
        body = {"ready": ok, "scenario": self.runtime.loaded.scenario.name,
                "ledger": "ok" if self.ledger.alive else "failed", "upstreams": states}
        writer.send(200 if ok else 503, [_JSON], json.dumps(body).encode())

    def _format_instant(self, now: dt.datetime) -> str:
        """``format_instant(now)``, remembered for the last instant (a pinned clock returns the same
        instant for every request; formatting an aware datetime costs more than comparing two)."""
        last = self._last_instant
        if last[0] != now:
            last = self._last_instant = (now, format_instant(now))
        return last[1]


def _ignore_result(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def _not_found(req: Request) -> ClientError:
    return NotFound(f"Invalid URL ({req.method} {req.path})", code=None)


def _method_not_allowed(req: Request, allowed: list[str]) -> ClientError:
    return BadRequest(f"Method {req.method} not allowed on {req.path}", code="method_not_allowed",
                      status=405, headers=[("allow", ", ".join(allowed))])
