"""The relay: the circumvention path, a forwarding proxy in a supported country.

A blocked organisation that circumvents sends its requests to the relay, which forwards them to
the gateway as a reseller's server would: after an extra delay (``behaviour.relay.extra_latency_ms``
sampled per request from a seeded generator, divided by the time scale), from an address of a
hosting network in ``behaviour.relay.country``.

Per request the relay

* replaces any ``X-Forwarded-For`` (and drops ``Forwarded`` and ``X-Real-IP``, which would leak the
  client's own address) with the relay address of the organisation: one address per organisation,
  drawn with ``scenarios.geo`` from a generator seeded by (seed, organisation), so the same
  organisation always appears from the same address and different organisations almost always
  from different ones. The organisation is the API key of ``Authorization: Bearer KEY`` (``sk-ORG``
  or ``ORG``); a request without a key is the organisation ``""``;
* appends ``1.1 regionblock-relay`` to ``Via``;
* forwards the method, path, query, body and every other end-to-end header (``Authorization``
  included) and streams the response back as it arrives (server-sent events chunk by chunk), with
  its status and end-to-end headers unchanged and undecoded (``Content-Encoding`` passes through).

The one path the relay answers itself is ``GET /__relay/healthz`` (readiness, for orchestration).
Hop-by-hop headers (RFC 9110 §7.6.1, and any named in ``Connection``) are dropped both ways.
An unreachable target is answered 502 with an OpenAI-style error body; a target that breaks off
mid-response makes the relay break off its response too, so the client sees the failure.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

import aiohttp
import numpy as np
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.mock_upstream_wire import error_body
from scenarios.distributions import Distribution, sample_one
from scenarios.geo import Geo, default_geo
from scenarios.schema import Scenario

DEFAULT_RELAY_TARGET = "http://127.0.0.1:18080"
VIA = "1.1 regionblock-relay"
#: The one path the relay answers itself instead of forwarding.
HEALTH_PATH = "/__relay/healthz"
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "transfer-encoding", "upgrade"})
# Request headers the relay sets itself or must not pass on (they would reveal the client).
_REPLACED_REQUEST = frozenset({"host", "content-length", "x-forwarded-for", "forwarded",
                               "x-real-ip", "expect"})
# aiohttp's client adds these unless told not to; the relay sends only what the client sent.
_NO_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
# Stream separation for the relay's own draws (see gateway.mock_upstream.provider_rng).
_LATENCY_STREAM, _ADDRESS_STREAM = 11, 12


@dataclass(frozen=True, kw_only=True)
class RelayConfig:
    """Where the relay forwards to and how it looks and behaves."""

    target: str = DEFAULT_RELAY_TARGET
    extra_latency_ms: Distribution
    country: str
    hosting: bool = True
    time_scale: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.time_scale > 0:
            raise ValueError(f"time_scale ({self.time_scale}) must be > 0")
        if not self.target.startswith(("http://", "https://")):
            raise ValueError(f"relay target {self.target!r} must be an http:// or https:// URL")

    @classmethod
    def from_scenario(cls, scenario: Scenario, *, target: str = DEFAULT_RELAY_TARGET,
                      time_scale: float = 1.0, seed: int = 0) -> RelayConfig:
        relay = scenario.behaviour.relay
        return cls(target=target, extra_latency_ms=relay.extra_latency_ms, country=relay.country,
                   hosting=relay.hosting, time_scale=time_scale, seed=seed)


def org_of(authorization: str | None) -> str:
    """The organisation behind ``Authorization: Bearer sk-ORG`` (or ``Bearer ORG``); '' if none."""
    if not authorization:
        return ""
    scheme, _, key = authorization.strip().partition(" ")
    key = key.strip() if scheme.lower() == "bearer" else authorization.strip()
    return key.removeprefix("sk-")


@dataclass
class RelayAddresses:
    """The relay address of each organisation: drawn once per org from (seed, org), then kept."""

    geo: Geo
    country: str
    hosting: bool
    seed: int
    _known: dict[str, str] = field(default_factory=dict)

    def for_org(self, org: str) -> str:
        address = self._known.get(org)
        if address is None:
            address = self.draw(org)
            self._known[org] = address
        return address

    def draw(self, org: str) -> str:
        digest = int.from_bytes(hashlib.sha256(org.encode()).digest()[:8], "big")
        rng = np.random.default_rng([self.seed, _ADDRESS_STREAM, digest])
        return self.geo.sample_ips(self.country, 1, rng, hosting=self.hosting)[0]


@dataclass
class RelayState:
    config: RelayConfig
    addresses: RelayAddresses
    latency_rng: np.random.Generator
    session: aiohttp.ClientSession | None = None
    forwarded: int = 0


RELAY = web.AppKey("relay", RelayState)


def make_relay_app(config: RelayConfig, *, geo: Geo | None = None) -> web.Application:
    """The relay's aiohttp app (``geo`` defaults to the embedded GeoIP data)."""
    app = web.Application(client_max_size=64 * 1024**2)
    app[RELAY] = RelayState(
        config=config,
        addresses=RelayAddresses(geo or default_geo(), config.country, config.hosting, config.seed),
        latency_rng=np.random.default_rng([config.seed, _LATENCY_STREAM]))
    app.cleanup_ctx.append(_client_session)
    app.router.add_get(HEALTH_PATH, relay_health)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


async def relay_health(request: web.Request) -> web.Response:
    """The relay's own readiness check (every other path is forwarded)."""
    state = request.app[RELAY]
    return web.json_response({"status": "ok", "target": state.config.target,
                              "country": state.config.country, "forwarded": state.forwarded})


async def _client_session(app: web.Application) -> AsyncIterator[None]:
    state = app[RELAY]
    # The first draw builds the country's address tables (about a second): do it before serving.
    await asyncio.get_running_loop().run_in_executor(None, state.addresses.for_org, "")
    state.session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), auto_decompress=False,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10), skip_auto_headers=_NO_AUTO_HEADERS)
    yield
    await state.session.close()


async def forward(request: web.Request) -> web.StreamResponse:
    state = request.app[RELAY]
    assert state.session is not None, "the relay's client session starts with the app"
    body = await request.read()
    address = state.addresses.for_org(org_of(request.headers.get("Authorization")))
    delay_ms = max(0.0, sample_one(state.config.extra_latency_ms, state.latency_rng))
    await asyncio.sleep(delay_ms / 1000.0 / state.config.time_scale)
    try:
        upstream = await state.session.request(
            request.method, state.config.target.rstrip("/") + request.rel_url.raw_path_qs,
            headers=request_headers(request.headers, address), data=body if body else None,
            allow_redirects=False)
    except aiohttp.ClientError as exc:
        message = f"relay: cannot reach {state.config.target}: {exc}"
        return web.Response(text=json.dumps(error_body(message, kind="relay_error")), status=502,
                            content_type="application/json")
    state.forwarded += 1
    async with upstream:
        return await _relay_response(request, upstream)


async def _relay_response(request: web.Request,
                          upstream: aiohttp.ClientResponse) -> web.StreamResponse:
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason,
                                  headers=end_to_end(upstream.headers))
    try:
        await response.prepare(request)
        async for data in upstream.content.iter_any():
            await response.write(data)
        await response.write_eof()
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError):
        # The target broke off mid-response: break off too, so the client sees it.
        if request.transport is not None:
            request.transport.abort()
    except ConnectionResetError:
        pass  # the client went away; closing the upstream response (async with) is all to do
    return response


def request_headers(headers: CIMultiDictProxy[str], address: str) -> CIMultiDict[str]:
    """The client's end-to-end headers, with the relay's X-Forwarded-For and Via."""
    out = end_to_end(headers, also_drop=_REPLACED_REQUEST)
    out["X-Forwarded-For"] = address
    via = ", ".join(headers.getall("Via", []))
    out["Via"] = f"{via}, {VIA}" if via else VIA
    return out


def end_to_end(headers: CIMultiDictProxy[str], *,
               also_drop: Iterable[str] = ()) -> CIMultiDict[str]:
    """``headers`` without hop-by-hop headers (and those named in Connection) or ``also_drop``."""
    named = {h.strip().lower() for value in headers.getall("Connection", []) for h in value.split(",")}
    drop = HOP_BY_HOP | named | {h.lower() for h in also_drop}
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in drop)
