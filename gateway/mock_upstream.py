"""Mock OpenAI-compatible providers: real aiohttp servers with latency, capacity and faults.

One app per scenario provider (:func:`make_upstream_app`):

* ``POST /v1/chat/completions`` — validates the JSON and the model (OpenAI-style 400/404), then,
  after fault injection (:mod:`gateway.faults`) and admission (:mod:`gateway.mock_upstream_capacity`:
  ``capacity.concurrency`` in service, a FIFO queue of ``capacity.queue_limit``, 429 beyond),
  answers after the provider's latency: time to first token ``ttft_ms`` and ``tokens_per_s``, both
  sampled per request from a seeded generator, all divided by the time scale. Non-streamed, the
  whole ``chat.completion`` arrives after ``ttft + n / tps``; streamed, the headers and the first
  token arrive after ``ttft``, token ``k`` is ready ``k / tps`` later, and ready tokens are batched
  so a chunk goes out at most every ``chunk_interval_s`` (:mod:`gateway.mock_upstream_timing`);
  then a chunk with
  ``finish_reason``, the usage chunk if ``stream_options.include_usage``, and ``data: [DONE]``.
  Token counts follow the rule in :mod:`gateway.mock_upstream_wire` (exact, documented).
* ``GET /v1/models``, ``GET /healthz``, ``GET/PUT /admin/faults``, ``GET /admin/stats``; any
  other path or method is the API's 404 ``Invalid URL (METHOD /path)``.

Faults act before admission: an injected error, reset or stall answers at once (or after the stall)
without taking a capacity slot, as a failing front end would; a latency spike lengthens the service
of an admitted request. Stall and spike durations are divided by the time scale too.

:func:`start_upstreams` runs every provider of a scenario plus the relay (:mod:`gateway.relay`)
on consecutive ports in the running event loop, as an async context manager.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import web

from gateway.faults import FaultPlan, FaultSettings, injected_error_body, plan_fault
from gateway.listeners import bound_port, listen_all
from gateway.mock_chat import chat_answer
from gateway.mock_completion import Answer
from gateway.mock_endpoints import (
    all_models,
    embedding_answer,
    legacy_answer,
    model_object,
    moderation_answer,
    require_kind,
)
from gateway.mock_responses import responses_answer
from gateway.mock_upstream_capacity import CapacityLimiter, QueueFull
from gateway.mock_upstream_errors import FaultSettingsError
from gateway.mock_upstream_timing import DEFAULT_CHUNK_INTERVAL_S, Timing, draw_timing
from gateway.mock_upstream_wire import RequestError, error_body, models_body, parse_chat_request
from gateway.relay import DEFAULT_RELAY_TARGET, RelayConfig, make_relay_app
from scenarios.geo import Geo, default_geo
from scenarios.schema import Provider, Scenario

DEFAULT_BASE_PORT = 18100
#: Streamed tokens that become ready closer together than this share one chunk (the default).
MIN_CHUNK_INTERVAL_S = DEFAULT_CHUNK_INTERVAL_S
#: On shutdown, requests still in flight (long streams, stalls) get this long, then are cancelled.
SHUTDOWN_GRACE_S = 1.0
RATE_LIMIT_BODY = error_body("Rate limit reached for requests: the provider's queue is full. "
                             "Please try again later.", kind="requests",
                             code="rate_limit_exceeded")

# Independent random streams per upstream, so switching faults on does not shift latencies.
_LATENCY_STREAM, _FAULT_STREAM = 1, 2


@dataclass(slots=True)
class FaultCounts:
    """Requests each injected fault has hit since start."""

    error: int = 0
    reset: int = 0
    stall: int = 0
    spike: int = 0


@dataclass(slots=True)
class UpstreamState:
    """Everything one mock upstream keeps between requests (one per app; no module state)."""

    provider: Provider
    time_scale: float
    faults: FaultSettings
    limiter: CapacityLimiter
    latency_rng: np.random.Generator
    fault_rng: np.random.Generator
    model_names: tuple[str, ...]
    chunk_interval_s: float = DEFAULT_CHUNK_INTERVAL_S
    served: int = 0
    counter: int = 0
    fault_counts: FaultCounts = field(default_factory=FaultCounts)

    def next_ids(self) -> tuple[str, str]:
        """(x-request-id, completion id) for a new request: unique and deterministic."""
        self.counter += 1
        return f"req_{self.provider.name}_{self.counter:010d}", f"chatcmpl-{self.counter:010d}"


UPSTREAM = web.AppKey("upstream", UpstreamState)


def provider_rng(seed: int, provider: str, stream: int) -> np.random.Generator:
    """A generator for one provider and purpose, stable across runs and processes."""
    return np.random.default_rng([seed, zlib.crc32(provider.encode()), stream])


def make_upstream_app(provider: Provider, *, time_scale: float = 1.0, seed: int = 0,
                      faults: FaultSettings | None = None,
                      chunk_interval_s: float = DEFAULT_CHUNK_INTERVAL_S) -> web.Application:
    """The aiohttp app of one mock provider (faults default to the scenario's ``provider.faults``)."""
    if not time_scale > 0:
        raise ValueError(f"time_scale ({time_scale}) must be > 0")
    app = web.Application()
    app[UPSTREAM] = UpstreamState(
        provider=provider, time_scale=time_scale,
        faults=faults if faults is not None else FaultSettings.from_scenario(provider.faults),
        limiter=CapacityLimiter(provider.capacity.concurrency, provider.capacity.queue_limit),
        latency_rng=provider_rng(seed, provider.name, _LATENCY_STREAM),
        fault_rng=provider_rng(seed, provider.name, _FAULT_STREAM),
        model_names=tuple(m.name for m in all_models(provider)), chunk_interval_s=chunk_interval_s)
    app.router.add_post("/v1/chat/completions", endpoint(parse_chat))
    app.router.add_post("/v1/completions", endpoint(parse_legacy))
    app.router.add_post("/v1/embeddings", endpoint(parse_embeddings))
    app.router.add_post("/v1/responses", endpoint(parse_responses))
    app.router.add_post("/v1/moderations", endpoint(parse_moderations))
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model}", retrieve_model)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/admin/faults", get_faults)
    app.router.add_put("/admin/faults", put_faults)
    app.router.add_get("/admin/stats", get_stats)
    app.router.add_route("*", "/{tail:.*}", invalid_url)  # last: only what nothing else matched
    return app


# ---------------------------------------------------------------- completions of every endpoint

#: What an endpoint makes of a request body: (x-request-id, the answer), or RequestError.
Parse = Callable[[bytes, "UpstreamState"], tuple[str, Answer]]


def parse_chat(raw: bytes, state: UpstreamState) -> tuple[str, Answer]:
    req = parse_chat_request(raw, state.model_names)
    require_kind(state.provider, req.model, "chat_completions")
    request_id, completion_id = state.next_ids()
    return request_id, chat_answer(req, completion_id=completion_id, created=int(time.time()))


def parse_legacy(raw: bytes, state: UpstreamState) -> tuple[str, Answer]:
    request_id, completion_id = state.next_ids()
    return request_id, legacy_answer(raw, state.provider, created=int(time.time()),
                                     completion_id=completion_id.replace("chatcmpl-", "cmpl-"))


def parse_embeddings(raw: bytes, state: UpstreamState) -> tuple[str, Answer]:
    request_id, _ = state.next_ids()
    return request_id, embedding_answer(raw, state.provider)


def parse_moderations(raw: bytes, state: UpstreamState) -> tuple[str, Answer]:
    request_id, completion_id = state.next_ids()
    return request_id, moderation_answer(raw, state.provider,
                                         moderation_id=completion_id.replace("chatcmpl-", "modr-"))


def parse_responses(raw: bytes, state: UpstreamState) -> tuple[str, Answer]:
    request_id, completion_id = state.next_ids()
    return request_id, responses_answer(raw, state.provider, created=int(time.time()),
                                        response_id=completion_id.replace("chatcmpl-", "resp_"))


def endpoint(parse: Parse) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The handler of one endpoint: parse, faults, admission, then the paced answer."""
    async def handler(request: web.Request) -> web.StreamResponse:
        return await _complete(request, parse)
    return handler


async def _complete(request: web.Request, parse: Parse) -> web.StreamResponse:
    state = request.app[UPSTREAM]
    started = time.monotonic()
    try:
        request_id, answer = parse(await request.read(), state)
    except RequestError as exc:
        return _json(exc.body(), status=exc.status)
    plan = plan_fault(state.faults, state.fault_rng)
    if plan.kind != "none":
        return await _inject(request, state, plan)
    if plan.spike_s:
        state.fault_counts.spike += 1
    try:
        async with state.limiter.slot():
            response = await _serve(request, state, request_id, answer, plan, started)
    except QueueFull:
        return _json(RATE_LIMIT_BODY, status=429)
    state.served += 1
    return response


async def _inject(request: web.Request, state: UpstreamState, plan: FaultPlan) -> web.StreamResponse:
    """A reset, a stall or an error response, decided before the request is admitted."""
    settings = state.faults
    if plan.kind == "error":
        state.fault_counts.error += 1
        return _json(injected_error_body(settings.error_status), status=settings.error_status)
    if plan.kind == "stall":
        state.fault_counts.stall += 1
        await asyncio.sleep(settings.stall_s / state.time_scale)
        _close(request, reset=False)
    else:
        state.fault_counts.reset += 1
        _close(request, reset=True)
    # The transport is gone: aiohttp's attempt to send this fails quietly as a client disconnect.
    return web.Response(status=500)


def _close(request: web.Request, *, reset: bool) -> None:
    """Drop the connection without a response; with ``reset`` the peer gets a TCP RST."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if reset and sock is not None:
        # Linger on, timeout 0: close() sends RST instead of FIN (Toxiproxy's reset_peer).
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if reset:
        transport.abort()
    else:
        transport.close()


async def _serve(request: web.Request, state: UpstreamState, request_id: str, answer: Answer,
                 plan: FaultPlan, started: float) -> web.StreamResponse:
    timing = draw_timing(state.provider.latency, state.latency_rng, spike_s=plan.spike_s,
                         time_scale=state.time_scale)
    headers = {"x-request-id": request_id, "openai-version": "2020-10-01"}
    if answer.stream:
        return await _stream(request, answer, timing, started, headers, state.chunk_interval_s)
    await asyncio.sleep(timing.total_s(answer.tokens))
    return _json(answer.body(), headers={**headers, **_processing_ms(started)})


async def _stream(request: web.Request, reply: Answer, timing: Timing, started: float,
                  headers: Mapping[str, str], chunk_interval_s: float) -> web.StreamResponse:
    await asyncio.sleep(timing.ttft_s)
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
        **headers, **_processing_ms(started)})
    n = reply.tokens
    try:
        await response.prepare(request)
        first_at = asyncio.get_running_loop().time()
        await response.write(reply.head() + reply.deltas(0, 1))
        await _stream_tokens(response, reply, timing, first_at, chunk_interval_s)
        await _sleep_until(first_at + n * timing.per_token_s)
        await response.write(reply.tail())
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client went away mid-stream; nothing left to send it
    return response


async def _stream_tokens(response: web.StreamResponse, reply: Answer, timing: Timing,
                         first_at: float, chunk_interval_s: float) -> None:
    """Tokens 1..n-1: token k is ready at first_at + k·per_token; ready tokens share a chunk."""
    loop = asyncio.get_running_loop()
    n = reply.tokens
    sent, last_emit = 1, first_at
    while sent < n:
        await _sleep_until(max(first_at + sent * timing.per_token_s, last_emit + chunk_interval_s))
        last_emit = loop.time()
        ready = min(n, max(int((last_emit - first_at) / timing.per_token_s) + 1, sent + 1))
        await response.write(reply.deltas(sent, ready))
        sent = ready


async def _sleep_until(deadline: float) -> None:
    delay = deadline - asyncio.get_running_loop().time()
    if delay > 0:
        await asyncio.sleep(delay)


def _processing_ms(started: float) -> dict[str, str]:
    """The real API's header: milliseconds from arrival to the response headers."""
    return {"openai-processing-ms": str(round((time.monotonic() - started) * 1000))}


def _json(body: Mapping[str, Any], *, status: int = 200,
          headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(text=json.dumps(body, separators=(",", ":")), status=status,
                        content_type="application/json", headers=headers)


# ---------------------------------------------------------------- models, health, admin


async def list_models(request: web.Request) -> web.Response:
    state = request.app[UPSTREAM]
    return _json(models_body(state.model_names, owner=state.provider.name, created=0))


async def retrieve_model(request: web.Request) -> web.Response:
    try:
        return _json(model_object(request.app[UPSTREAM].provider, request.match_info["model"]))
    except RequestError as exc:
        return _json(exc.body(), status=exc.status)


async def invalid_url(request: web.Request) -> web.Response:
    """What the real API answers for a path or method it does not serve."""
    message = f"Invalid URL ({request.method} {request.path})"
    return _json(error_body(message, kind="invalid_request_error"), status=404)


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok", "provider": request.app[UPSTREAM].provider.name})


async def get_faults(request: web.Request) -> web.Response:
    return _json(request.app[UPSTREAM].faults.to_json())


async def put_faults(request: web.Request) -> web.Response:
    """Merge a JSON object of fault settings into the current ones (all-or-nothing)."""
    state = request.app[UPSTREAM]
    try:
        patch = json.loads(await request.read())
        state.faults = state.faults.merged(patch)
    except ValueError as exc:  # FaultSettingsError is a ValueError, as is a JSON syntax error
        param = exc.param if isinstance(exc, FaultSettingsError) else None
        message = str(exc) if isinstance(exc, FaultSettingsError) else f"invalid JSON: {exc}"
        return _json(error_body(message, kind="invalid_request_error", param=param or None),
                     status=400)
    return _json(state.faults.to_json())


async def get_stats(request: web.Request) -> web.Response:
    state = request.app[UPSTREAM]
    limiter = state.limiter
    return _json({
        "provider": state.provider.name, "served": state.served, "queued": limiter.queued,
        "queued_total": limiter.stats.queued_total, "rejected": limiter.stats.rejected,
        "concurrency": limiter.in_service, "admitted": limiter.stats.admitted,
        "capacity": {"concurrency": limiter.concurrency, "queue_limit": limiter.queue_limit},
        "faults": {"error": state.fault_counts.error, "reset": state.fault_counts.reset,
                   "stall": state.fault_counts.stall, "spike": state.fault_counts.spike},
    })


# ---------------------------------------------------------------- running them all


@dataclass(frozen=True, slots=True)
class Server:
    """One running server: its name, base URL, what it serves, and its app (for tests)."""

    name: str
    url: str
    detail: str
    app: web.Application

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


@dataclass(frozen=True, slots=True)
class Running:
    """The servers :func:`start_upstreams` started: the upstreams in scenario order, the relay."""

    upstreams: tuple[Server, ...]
    relay: Server

    def upstream(self, name: str) -> Server:
        return next(s for s in self.upstreams if s.name == name)

    @property
    def servers(self) -> tuple[Server, ...]:
        return (*self.upstreams, self.relay)


@asynccontextmanager
async def start_upstreams(scenario: Scenario, *, host: str = "127.0.0.1",
                          base_port: int = DEFAULT_BASE_PORT, time_scale: float = 1.0,
                          seed: int = 0, relay_target: str = DEFAULT_RELAY_TARGET,
                          geo: Geo | None = None,
                          chunk_interval_s: float = DEFAULT_CHUNK_INTERVAL_S,
                          socks: Sequence[socket.socket] | None = None,
                          ) -> AsyncIterator[Running]:
    """Serve every provider on base_port+i and the relay on base_port+len(providers).

    ``base_port=0`` binds every server to a free port of the system's choosing (for tests).
    Every port is bound before any server starts (:func:`gateway.listeners.listen_all`): a taken
    one raises ListenError with nothing served. ``socks``: the listening sockets, bound already
    (providers in scenario order, then the relay), for a caller that binds more servers at once.
    """
    relay_config = RelayConfig.from_scenario(scenario, target=relay_target,
                                             time_scale=time_scale, seed=seed)
    if socks is None:
        socks = listen_all(host, [(base_port + i if base_port else 0, name)
                                  for i, name in enumerate(listen_names(scenario))])
    # The embedded GeoIP data takes about a second to load: a worker thread loads it while the
    # providers start serving, so no bound server waits for it.
    geo_loading = None if geo is not None else \
        asyncio.get_running_loop().run_in_executor(None, default_geo)
    runners: list[web.AppRunner] = []
    servers: list[Server] = []

    async def serve(app: web.Application, name: str, detail: str) -> None:
        sock = socks[len(servers)]
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S)
        await runner.setup()
        runners.append(runner)
        await web.SockSite(runner, sock).start()
        servers.append(Server(name, _url(host, bound_port(sock)), detail, app))

    try:
        for p in scenario.providers:
            await serve(make_upstream_app(p, time_scale=time_scale, seed=seed,
                                          chunk_interval_s=chunk_interval_s), p.name,
                        ", ".join(m.name for m in all_models(p)))
        relay_geo = geo if geo_loading is None else await geo_loading
        await serve(make_relay_app(relay_config, geo=relay_geo), "relay", f"-> {relay_target}")
        yield Running(upstreams=tuple(servers[:-1]), relay=servers[-1])
    finally:
        await asyncio.gather(*(runner.cleanup() for runner in runners))
        for sock in socks[len(servers):]:   # never handed to a server
            sock.close()


def listen_names(scenario: Scenario) -> list[str]:
    """What :func:`start_upstreams` serves on each of its ports, in order: providers, the relay."""
    return [*(p.name for p in scenario.providers), "relay"]


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
