"""The relay: what the target sees, what the client gets back, and the delay in between."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict

from gateway.mock_upstream import make_upstream_app, start_upstreams
from gateway.relay import VIA, RelayAddresses, RelayConfig, make_relay_app, org_of
from scenarios.distributions import Constant
from scenarios.geo import default_geo
from scenarios.loader import load

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]
MakeServer = Callable[[web.Application], Awaitable[TestServer]]

ORG_A, ORG_B = "cn-startup-000001", "hk-hobbyist-000002"


@dataclass
class Seen:
    """A request as the relay's target received it."""

    method: str
    path_qs: str
    headers: CIMultiDict[str]
    body: bytes


@dataclass
class Target:
    """A stand-in for the gateway: records requests; /stream waits for ``release`` mid-stream."""

    seen: list[Seen] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/stream", self.stream)
        app.router.add_get("/broken", self.broken)
        app.router.add_route("*", "/{tail:.*}", self.record)
        return app

    async def record(self, request: web.Request) -> web.Response:
        self.seen.append(Seen(request.method, request.path_qs, CIMultiDict(request.headers),
                              await request.read()))
        return web.Response(status=201, body=b'{"ok":true}', content_type="application/json",
                            headers={"X-Upstream": "yes", "Keep-Alive": "timeout=99"})

    async def stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: one\n\n")
        await self.release.wait()
        await response.write(b"data: two\n\n")
        await response.write_eof()
        return response

    async def broken(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "1000"})
        await response.prepare(request)
        await response.write(b"x" * 10)
        assert request.transport is not None
        request.transport.abort()
        return response


def _config(target: str, *, latency_ms: float = 0.0, time_scale: float = 1.0) -> RelayConfig:
    return RelayConfig(target=target, extra_latency_ms=Constant(dist="constant", value=latency_ms),
                       country="SG", hosting=True, time_scale=time_scale, seed=0)


async def _relay_to_target(aiohttp_client: MakeClient, aiohttp_server: MakeServer,
                           **config: Any) -> tuple[Client, Target]:
    target = Target()
    server = await aiohttp_server(target.app())
    client = await aiohttp_client(make_relay_app(_config(str(server.make_url("")), **config)))
    return client, target


async def test_request_is_forwarded_with_relay_identity(aiohttp_client: MakeClient,
                                                        aiohttp_server: MakeServer) -> None:
    client, target = await _relay_to_target(aiohttp_client, aiohttp_server)
    body = json.dumps({"model": "gpt-4o", "messages": []}).encode()
    resp = await client.post("/v1/chat/completions?x=1", data=body, headers={
        "Authorization": f"Bearer sk-{ORG_A}", "X-Forwarded-For": "1.2.3.4, 10.0.0.1",
        "Forwarded": "for=1.2.3.4", "X-Real-IP": "1.2.3.4", "Content-Type": "application/json",
        "X-Custom": "kept", "Connection": "keep-alive, X-Hop", "X-Hop": "dropped"})
    assert resp.status == 201
    [seen] = target.seen
    assert (seen.method, seen.path_qs, seen.body) == ("POST", "/v1/chat/completions?x=1", body)
    assert seen.headers["Authorization"] == f"Bearer sk-{ORG_A}"
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["X-Custom"] == "kept"
    assert seen.headers["Via"] == VIA == "1.1 regionblock-relay"
    for gone in ("X-Hop", "Forwarded", "X-Real-IP"):
        assert gone not in seen.headers
    address = seen.headers["X-Forwarded-For"]
    info = default_geo().lookup(address)
    assert (info.country, info.hosting, info.private) == ("SG", True, False)


async def test_one_address_per_organisation(aiohttp_client: MakeClient,
                                            aiohttp_server: MakeServer) -> None:
    client, target = await _relay_to_target(aiohttp_client, aiohttp_server)
    for key in (f"sk-{ORG_A}", f"sk-{ORG_B}", ORG_A):  # a bare org id is the same organisation
        await client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
    a1, b, a2 = (s.headers["X-Forwarded-For"] for s in target.seen)
    assert a1 == a2 != b
    # Fixed seed, fixed data: the exact addresses (they change only if scenarios.geo's draw does).
    assert (a1, b) == ("47.129.115.151", "155.62.99.142")


def test_addresses_differ_across_many_organisations() -> None:
    addresses = RelayAddresses(default_geo(), "SG", True, seed=0)
    drawn = {addresses.for_org(f"cn-startup-{i:06d}") for i in range(200)}
    assert len(drawn) == 200
    assert all(default_geo().lookup(ip).country == "SG" for ip in drawn)
    assert RelayAddresses(default_geo(), "SG", True, seed=1).for_org(ORG_A) != addresses.for_org(ORG_A)


async def test_existing_via_is_appended_to(aiohttp_client: MakeClient,
                                          aiohttp_server: MakeServer) -> None:
    client, target = await _relay_to_target(aiohttp_client, aiohttp_server)
    await client.get("/", headers={"Via": "1.0 corp-proxy"})
    assert target.seen[0].headers["Via"] == "1.0 corp-proxy, 1.1 regionblock-relay"


async def test_response_status_headers_and_body_pass_through(aiohttp_client: MakeClient,
                                                             aiohttp_server: MakeServer) -> None:
    client, _ = await _relay_to_target(aiohttp_client, aiohttp_server)
    resp = await client.get("/anything")
    assert resp.status == 201
    assert resp.headers["X-Upstream"] == "yes"
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.headers["Content-Length"] == "11"
    assert "Keep-Alive" not in resp.headers  # hop-by-hop
    assert await resp.read() == b'{"ok":true}'


async def test_streaming_passes_through_chunk_by_chunk(aiohttp_client: MakeClient,
                                                      aiohttp_server: MakeServer) -> None:
    """The first event reaches the client while the target is still holding the second."""
    client, target = await _relay_to_target(aiohttp_client, aiohttp_server)
    resp = await client.get("/stream")
    assert resp.headers["Content-Type"] == "text/event-stream"
    assert await asyncio.wait_for(resp.content.readuntil(b"\n\n"), timeout=5) == b"data: one\n\n"
    assert not target.release.is_set()
    target.release.set()
    assert await resp.read() == b"data: two\n\n"


async def test_extra_latency_is_applied_and_scaled(aiohttp_client: MakeClient,
                                                   aiohttp_server: MakeServer) -> None:
    client, _ = await _relay_to_target(aiohttp_client, aiohttp_server, latency_ms=250)
    start = time.monotonic()
    await (await client.get("/")).read()
    assert time.monotonic() - start >= 0.250
    client, _ = await _relay_to_target(aiohttp_client, aiohttp_server, latency_ms=3000,
                                       time_scale=10)
    start = time.monotonic()
    await (await client.get("/")).read()
    assert 0.300 <= time.monotonic() - start < 3.0


async def test_the_relay_answers_its_own_health_check(aiohttp_client: MakeClient,
                                                      aiohttp_server: MakeServer) -> None:
    client, target = await _relay_to_target(aiohttp_client, aiohttp_server)
    body = await (await client.get("/__relay/healthz")).json()
    assert (body["status"], body["country"], body["forwarded"]) == ("ok", "SG", 0)
    assert target.seen == []


async def test_unreachable_target_is_a_502(aiohttp_client: MakeClient,
                                           unused_tcp_port: int) -> None:
    client = await aiohttp_client(make_relay_app(_config(f"http://127.0.0.1:{unused_tcp_port}")))
    resp = await client.get("/v1/models")
    assert resp.status == 502
    error = (await resp.json())["error"]
    assert error["type"] == "relay_error" and error["message"].startswith("relay: cannot reach")


async def test_a_target_breaking_off_breaks_the_client_response(
        aiohttp_client: MakeClient, aiohttp_server: MakeServer) -> None:
    client, _ = await _relay_to_target(aiohttp_client, aiohttp_server)
    resp = await client.get("/broken")
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()


@pytest.mark.parametrize(("header", "org"), [
    ("Bearer sk-cn-startup-000001", "cn-startup-000001"),
    ("bearer cn-startup-000001", "cn-startup-000001"),
    ("sk-cn-startup-000001", "cn-startup-000001"),
    ("", ""),
    (None, ""),
])
def test_org_of_authorization(header: str | None, org: str) -> None:
    assert org_of(header) == org


async def test_streamed_completion_through_the_relay(aiohttp_server: MakeServer) -> None:
    """Relay -> a mock upstream: the SSE stream arrives complete and in order, usage exact."""
    scenario = load("openai-2024-cn-hk", (
        "behaviour.relay.extra_latency_ms={dist: constant, value: 0}",)).scenario
    upstream = await aiohttp_server(make_upstream_app(scenario.providers[0], time_scale=1000))
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "abcdefgh"}],
            "max_tokens": 3, "stream": True, "stream_options": {"include_usage": True}}
    target = str(upstream.make_url("")).rstrip("/")
    async with start_upstreams(scenario, base_port=0, time_scale=1000, relay_target=target) as running, \
            aiohttp.ClientSession() as session, \
            session.post(running.relay.url + "/v1/chat/completions", json=body) as resp:
        assert resp.status == 200 and resp.headers["x-request-id"].startswith("req_openai_")
        events = [block for block in (await resp.read()).decode().split("\n\n") if block]
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[-2].removeprefix("data: "))["usage"] == {
        "prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
