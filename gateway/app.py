"""The gateway: the request pipeline assembled in one place.

``POST /v1/chat/completions`` goes through, in order:

    admission (hardening) → client address → region → identity → request validation
    → model → provider (routing) → policy (enforcement, with policy-aware failover)
    → upstream (retries, circuit breaker, error failover) → meter (usage, revenue, ledger)

Each stage is a function or a small class in its own module; this file only wires them, holds
the per-request record and writes the response. The scenario, its compiled policy and catalog,
and the clock form one immutable ``Runtime`` that the admin API swaps atomically: a request uses
the runtime it started with from start to end.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import secrets
import time
from dataclasses import dataclass, replace
from typing import Any

from gateway import admin
from gateway.client_address import AddressResolver
from gateway.config import GatewayConfig
from gateway.connection import ClientGone, ResponseWriter
from gateway.enforcement import RelayMemory, decide
from gateway.errors import (
    BadRequest,
    CircuitOpen,
    ClientError,
    LedgerError,
    NotFound,
    Overloaded,
    UpstreamError,
    UpstreamStatusError,
    error_body,
)
from gateway.http11 import Request
from gateway.identity import Identity, identify
from gateway.ledger import Ledger
from gateway.metering import SseMeter, revenue_usd, usage_of_body
from gateway.metrics import Metrics
from gateway.region import ClientRegion, RegionResolver
from gateway.routing import Catalog, Target
from gateway.upstream_client import UpstreamResponse
from gateway.upstreams import Upstreams
from gateway.validation import ChatRequest, parse_chat
from scenarios.clock import Clock, format_instant, parse_clock
from scenarios.geo import Geo
from scenarios.loader import Loaded
from scenarios.policy import Decision, Policy

CHAT_PATH = "/v1/chat/completions"
RELAY_VIA = "regionblock-relay"
_JSON = ("content-type", "application/json")
_SSE_HEADERS = [("content-type", "text/event-stream; charset=utf-8"), ("cache-control", "no-cache")]
_DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True, slots=True)
class Runtime:
    """What the admin API may swap, as one value: scenario, compiled policy, catalog, clock."""

    loaded: Loaded
    policy: Policy
    catalog: Catalog
    clock: Clock
    clock_spec: str

    @classmethod
    def build(cls, loaded: Loaded, clock_spec: str, clock: Clock) -> Runtime:
        return cls(loaded, Policy(loaded.scenario), Catalog(loaded.scenario), clock, clock_spec)


class Meter:
    """The ledger record of one request, filled in as the pipeline learns more."""

    __slots__ = (
        "asn",
        "asn_class",
        "country",
        "decision",
        "error",
        "home_region",
        "model",
        "org",
        "path",
        "provider",
        "request_id",
        "revenue",
        "scenario_time",
        "stage",
        "status",
        "stream",
        "tokens_in",
        "tokens_out",
        "ttft_ms",
        "upstream_ms",
        "wall_time",
    )

    def __init__(self, request_id: str, wall_time: float, scenario_time: str) -> None:
        self.request_id = request_id
        self.wall_time = wall_time
        self.scenario_time = scenario_time
        self.org = self.home_region = self.country = self.provider = self.model = ""
        self.asn: int | None = None
        self.asn_class = "unknown"
        self.decision = "failed"
        self.stage = self.error = ""
        self.status = 0
        self.tokens_in = self.tokens_out = 0
        self.revenue = 0.0
        self.upstream_ms: float | None = None
        self.ttft_ms: float | None = None
        self.path = "direct"
        self.stream = 0

    def row(self, total_ms: float) -> tuple[Any, ...]:
        return (self.request_id, self.wall_time, self.scenario_time, self.org, self.home_region,
                self.country, self.asn, self.asn_class, self.provider, self.model, self.decision,
                self.stage, self.status, self.tokens_in, self.tokens_out, self.revenue,
                self.upstream_ms, total_ms, self.ttft_ms, self.path, self.stream, self.error)


class Gateway:
    """Routes requests and owns the gateway's collaborators (ledger, upstreams, metrics)."""

    def __init__(self, config: GatewayConfig, loaded: Loaded, *, geo: Geo,
                 loop: asyncio.AbstractEventLoop, clock: Clock | None = None) -> None:
        self.config = config
        self.loop = loop
        window = loaded.scenario.window
        clock = clock or parse_clock(config.clock, window_start=window.start, window_end=window.end,
                                     now_wall=time.time())
        self.runtime = Runtime.build(loaded, config.clock, clock)
        self.addresses = AddressResolver(config.trusted_proxies)
        self.regions = RegionResolver(geo, unknown_country=config.unknown_country,
                                      trust_cf_ipcountry=config.trust_cf_ipcountry)
        self.relays = RelayMemory(config.relay_memory)
        self.metrics = Metrics()
        self.upstreams = Upstreams(config.upstream, self.metrics, loop)
        self.upstreams.configure(config.upstreams)
        self.ledger = Ledger(config.ledger_path, meta=self._ledger_meta(), sync=config.ledger_sync)
        self.inflight = 0
        self.ready = False
        self._ids = 0
        self._id_prefix = f"req_{os.getpid():x}{secrets.token_hex(4)}_"
        epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        self._last_instant = (epoch, format_instant(epoch))
        self._register_gauges()

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
                "gateway_pid": str(os.getpid()), "clock": rt.clock.describe()}

    def set_runtime(self, runtime: Runtime) -> None:
        """Swap scenario/policy/clock atomically (the admin API)."""
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
        m.gauges["ledger_rows"] = ("Ledger rows committed", lambda: float(self.ledger.written))
        m.gauges["relay_orgs_tracked"] = ("Organisations remembered as relaying",
                                          lambda: float(len(self.relays)))
        m.labelled_gauges["upstream_up"] = ("Upstream circuit: 1 closed, 0.5 half-open, 0 open",
                                            "provider", self.upstreams.health)

    # ------------------------------------------------------------------ dispatch

    async def handle(self, req: Request, writer: ResponseWriter) -> None:
        path = req.path
        if path == CHAT_PATH:
            if req.method != "POST":
                return _method_not_allowed(writer, req)
            return await self.chat(req, writer)
        if path.startswith("/admin/"):
            status, body = admin.handle(self, req)
            return writer.send(status, [_JSON], body)
        if req.method != "GET":
            return _not_found(writer, req)
        if path == "/v1/models":
            return self._models(req, writer)
        if path == "/healthz":
            return writer.send(200, [_JSON], b'{"status":"ok"}')
        if path == "/readyz":
            return self._readyz(writer)
        if path == "/metrics":
            return writer.send(200, [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                               self.metrics.exposition())
        return _not_found(writer, req)

    def _models(self, req: Request, writer: ResponseWriter) -> None:
        now = self.runtime.clock.scenario_at(req.wall_time)
        data = [{"id": t.model.name, "object": "model", "created": 0, "owned_by": t.provider.name}
                for t in self.runtime.catalog.models(now)]
        writer.send(200, [_JSON], json.dumps({"object": "list", "data": data}).encode())

    def _readyz(self, writer: ResponseWriter) -> None:
        ok = self.ready and self.ledger.alive
        body = {"ready": ok, "scenario": self.runtime.loaded.scenario.name,
                "upstreams": self.upstreams.states()}
        writer.send(200 if ok else 503, [_JSON], json.dumps(body).encode())

    def _format_instant(self, now: dt.datetime) -> str:
        """``format_instant(now)``, remembered for the last instant (a pinned clock returns the same
        instant for every request; formatting an aware datetime costs more than comparing two)."""
        last = self._last_instant
        if last[0] != now:
            last = self._last_instant = (now, format_instant(now))
        return last[1]

    # ------------------------------------------------------------------ the chat pipeline

    async def chat(self, req: Request, writer: ResponseWriter) -> None:
        rt = self.runtime
        now = rt.clock.scenario_at(req.wall_time)
        self._ids += 1
        meter = Meter(f"{self._id_prefix}{self._ids:x}", req.wall_time, self._format_instant(now))
        if self.inflight >= self.config.limits.max_inflight:
            self.metrics.reject("overloaded")
            return await self._refuse(req, writer, meter, Overloaded(
                "The server is overloaded; please retry shortly."), [("retry-after", "1")])
        self.inflight += 1
        try:
            await self._chat(rt, now, req, writer, meter)
        finally:
            self.inflight -= 1

    async def _chat(self, rt: Runtime, now: dt.datetime, req: Request, writer: ResponseWriter,
                    meter: Meter) -> None:
        headers = req.headers
        addr = self.addresses.resolve(req.peer, headers.get("x-forwarded-for"))
        where = self.regions.resolve(addr.ip, peer_trusted=addr.peer_trusted,
                                     cf_country=headers.get("cf-ipcountry"))
        meter.country, meter.asn, meter.asn_class = where.country, where.asn, where.asn_class
        if addr.peer_trusted and RELAY_VIA in headers.get("via", ""):
            meter.path = "relay"
        try:
            who = identify(headers.get("authorization"))
            meter.org, meter.home_region = who.org, who.home_region
            chat = parse_chat(req.body)
            meter.stream = int(chat.stream)
            meter.model = chat.model
            target = rt.catalog.lookup(chat.model, now)
            if target is None:
                raise NotFound(f"The model `{chat.model}` does not exist or you do not have access "
                               "to it.", code="model_not_found", param="model")
        except ClientError as exc:
            return await self._refuse(req, writer, meter, exc)
        decision = decide(rt.policy, self.relays, now, target.provider.name, who, where)
        if decision.denied:
            routed = self._failover(rt, now, target, "block", who, where)
            if routed is None:
                return await self._deny(req, writer, meter, target, decision)
            target, decision = routed
            meter.path = "failover"
        await self._forward(rt, now, req, writer, meter, chat, who, where, target, decision)

    def _failover(self, rt: Runtime, now: dt.datetime, origin: Target, when: str, who: Identity,
                  where: ClientRegion) -> tuple[Target, Decision] | None:
        """The first alternative a failover rule allows and whose own policy admits the request."""
        for alt in rt.catalog.failover(origin, when, who, where.country, now):
            decision = decide(rt.policy, self.relays, now, alt.provider.name, who, where)
            if not decision.denied:
                return alt, decision
        return None

    async def _forward(self, rt: Runtime, now: dt.datetime, req: Request, writer: ResponseWriter,
                       meter: Meter, chat: ChatRequest, who: Identity, where: ClientRegion,
                       target: Target, decision: Decision) -> None:
        tried: set[str] = set()
        while True:
            tried.add(target.provider.name)
            self._admit(meter, target, decision)
            body = _upstream_body(req.body, chat, target)
            started = self.loop.time()
            try:
                response = await self.upstreams.call(target.provider.name, CHAT_PATH, body)
            except UpstreamError as exc:
                self.metrics.upstream_time(target.provider.name, self.loop.time() - started)
                routed = self._failover(rt, now, target, "error", who, where)
                if routed is not None and routed[0].provider.name not in tried:
                    target, decision = routed
                    meter.path = "failover"
                    continue
                meter.upstream_ms = (self.loop.time() - started) * 1000
                return await self._upstream_failed(req, writer, meter, exc)
            break
        extra = [("x-request-id", meter.request_id), *decision.headers,
                 ("x-regionblock-provider", target.provider.name)]
        if meter.path != "direct":
            extra.append(("x-regionblock-path", meter.path))
        if chat.stream and response.status == 200:
            await self._stream(req, writer, meter, chat, target, response, started, extra)
        else:
            await self._complete(req, writer, meter, target, response, started, extra)

    def _admit(self, meter: Meter, target: Target, decision: Decision) -> None:
        meter.provider, meter.model = target.provider.name, target.model.name
        meter.decision, meter.stage = decision.action, decision.stage

    # ------------------------------------------------------------------ responses

    async def _complete(self, req: Request, writer: ResponseWriter, meter: Meter, target: Target,
                        response: UpstreamResponse, started: float,
                        extra: list[tuple[str, str]]) -> None:
        try:
            body = await response.read()
        except UpstreamError as exc:
            meter.upstream_ms = (self.loop.time() - started) * 1000
            return await self._upstream_failed(req, writer, meter, exc)
        meter.upstream_ms = (self.loop.time() - started) * 1000
        self.metrics.upstream_time(meter.provider, meter.upstream_ms / 1000)
        meter.status = response.status
        if response.status >= 400:
            meter.decision, meter.error = "failed", f"upstream_{response.status}"
        else:
            usage = usage_of_body(body)
            if usage is None:
                meter.error = "usage_missing"
            else:
                meter.tokens_in, meter.tokens_out = usage
                meter.revenue = revenue_usd(target.model, *usage)
        if not await self._record(req, meter, writer):
            return
        ctype = response.headers.get("content-type", "application/json")
        writer.send(response.status, [("content-type", ctype), *extra], body)

    async def _stream(self, req: Request, writer: ResponseWriter, meter: Meter, chat: ChatRequest,
                      target: Target, response: UpstreamResponse, started: float,
                      extra: list[tuple[str, str]]) -> None:
        meter.status = 200
        sse = SseMeter(keep_usage_chunk=chat.include_usage)
        writer.start(200, [*_SSE_HEADERS, *extra])
        try:
            async for chunk in response.chunks():
                out = sse.feed(chunk)
                if out:
                    if meter.ttft_ms is None:
                        meter.ttft_ms = (self.loop.time() - req.started) * 1000
                    await writer.write(out)
        except UpstreamError as exc:
            meter.decision, meter.error = "failed", exc.code
        except ClientGone:
            response.close()
            meter.error = "client_disconnected"
        meter.upstream_ms = (self.loop.time() - started) * 1000
        self.metrics.upstream_time(meter.provider, meter.upstream_ms / 1000)
        self._stream_usage(meter, sse, target)
        if not await self._record(req, meter, None) or writer.closed:
            return
        if sse.done and meter.decision != "failed" and not writer.closed:
            writer.end(_DONE)
        else:
            writer.end()

    def _stream_usage(self, meter: Meter, sse: SseMeter, target: Target) -> None:
        if sse.usage is not None:
            meter.tokens_in, meter.tokens_out = sse.usage
        else:
            # No usage chunk: estimate from the chunks (all but the role and the finish chunk)
            # rather than record a silent zero; the error column flags the estimate.
            meter.tokens_out = max(1, sse.events - 2)
            if not meter.error:
                meter.error = "usage_missing"
        meter.revenue = revenue_usd(target.model, meter.tokens_in, meter.tokens_out)

    async def _deny(self, req: Request, writer: ResponseWriter, meter: Meter, target: Target,
                    decision: Decision) -> None:
        assert decision.response is not None
        self._admit(meter, target, decision)
        meter.status = decision.response.status
        if not await self._record(req, meter, writer):
            return
        headers = [*decision.response.headers, ("x-request-id", meter.request_id)]
        writer.send(decision.response.status, headers, decision.response.body)

    async def _refuse(self, req: Request, writer: ResponseWriter, meter: Meter, exc: ClientError,
                      headers: list[tuple[str, str]] | None = None) -> None:
        meter.status, meter.decision = exc.status, "failed"
        meter.error = exc.code or f"http_{exc.status}"
        if not await self._record(req, meter, writer):
            return
        writer.send(exc.status, [_JSON, ("x-request-id", meter.request_id), *(headers or [])],
                    exc.body())

    async def _upstream_failed(self, req: Request, writer: ResponseWriter, meter: Meter,
                               exc: UpstreamError) -> None:
        meter.decision, meter.error = "failed", exc.code
        if isinstance(exc, UpstreamStatusError):
            status, body = exc.status, exc.body
            ctype = dict(exc.headers).get("content-type", "application/json")
        else:
            status = 504 if "timeout" in exc.code else 503 if isinstance(exc, CircuitOpen) else 502
            body, ctype = error_body(f"upstream {meter.provider} failed: {exc}", type_="server_error",
                                     code=exc.code), "application/json"
        meter.status = status
        if not await self._record(req, meter, writer):
            return
        writer.send(status, [("content-type", ctype), ("x-request-id", meter.request_id)], body)

    async def _record(self, req: Request, meter: Meter, writer: ResponseWriter | None) -> bool:
        """Write the ledger row and wait until it is durable; False if the response must not go."""
        total = self.loop.time() - req.started
        self.metrics.request(meter.country, meter.provider, meter.decision, meter.status, total)
        try:
            await self.ledger.submit(meter.row(total * 1000))
        except LedgerError as exc:
            if writer is not None and not writer.started:
                writer.send(503, [_JSON], error_body(f"metering unavailable: {exc}",
                                                     type_="server_error", code="ledger_unavailable"))
            return False
        return True


def _upstream_body(raw: bytes, chat: ChatRequest, target: Target) -> bytes:
    """The body for the upstream: as received, unless the model or the usage option must change."""
    needs_usage = chat.stream and not chat.include_usage
    if not needs_usage and target.model.name == chat.model:
        return raw
    body = dict(chat.body)
    body["model"] = target.model.name
    if chat.stream:
        options = body.get("stream_options")
        body["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                  "include_usage": True}
    return json.dumps(body, ensure_ascii=False).encode()


def _not_found(writer: ResponseWriter, req: Request) -> None:
    body = error_body(f"Invalid URL ({req.method} {req.path})", type_="invalid_request_error",
                      code=None)
    writer.send(404, [_JSON], body)


def _method_not_allowed(writer: ResponseWriter, req: Request) -> None:
    exc = BadRequest(f"Method {req.method} not allowed on {req.path}", code="method_not_allowed",
                     status=405)
    writer.send(405, [_JSON, ("allow", "POST")], exc.body())
