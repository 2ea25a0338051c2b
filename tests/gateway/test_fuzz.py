"""Hypothesis fuzzing of malformed requests, in-process: never a 5xx, never a crash.

The gateway and the fake upstream run on their own event loop in a background thread (Hypothesis
drives a synchronous test); requests go over real sockets with http.client.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.app import Gateway
from gateway.config import GatewayConfig, Limits, UpstreamPolicy, parse_networks, parse_upstream_url
from gateway.server import GatewayServer
from scenarios.geo import default_geo
from scenarios.loader import Loaded
from tests.gateway.fake_upstream import FakeUpstream

FUZZ = settings(max_examples=120, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def live(loaded: Loaded, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A gateway (at 2024-07-10) in a background thread; yields its port."""
    ready = threading.Event()
    port: list[int] = []
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    ledger = tmp_path_factory.mktemp("fuzz") / "ledger.sqlite"

    async def main() -> None:
        runner = web.AppRunner(FakeUpstream().app())
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        up_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{up_port}/p/"
        config = GatewayConfig(
            port=0, clock="at:2024-07-10", ledger_path=Path(ledger),
            upstreams={p.name: parse_upstream_url(base + p.name, what="t")
                       for p in loaded.scenario.providers},
            trusted_proxies=parse_networks(["127.0.0.1/32"], what="t"), insecure_org_keys=True,
            limits=Limits(header_timeout_s=1.0, max_body_bytes=64 * 1024),
            upstream=UpstreamPolicy(retries=0))
        server = GatewayServer(Gateway(config, loaded, geo=default_geo(), loop=loop))
        port.append(await server.start("127.0.0.1", 0))
        ready.set()
        await stop.wait()
        await server.stop()
        await runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    yield port[0]
    loop.call_soon_threadsafe(stop.set)
    thread.join(10)


def send(port: int, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def assert_clean(status: int, body: bytes) -> None:
    assert status < 500, body
    if status >= 400:
        assert "error" in json.loads(body)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
messages = st.one_of(
    st.just([{"role": "user", "content": "hi"}]),
    st.lists(st.dictionaries(st.sampled_from(["role", "content", "name"]), json_values, max_size=3),
             max_size=3),
    json_values)
near_valid = st.fixed_dictionaries(
    {"model": st.one_of(st.sampled_from(["gpt-4o", "deepseek-chat", "gpt-9", ""]), json_values),
     "messages": messages},
    optional={"stream": st.one_of(st.booleans(), json_values),
              "max_tokens": st.one_of(st.integers(-5, 5), json_values),
              "stream_options": st.one_of(st.just({"include_usage": True}), json_values),
              "temperature": json_values, "n": json_values})
header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=40)


@FUZZ
@given(body=near_valid, xff=header_text, key=header_text, cf=header_text)
def test_fuzzed_json_bodies_and_headers_never_5xx(live: int, body: dict[str, Any], xff: str,
                                                  key: str, cf: str) -> None:
    headers = {"Content-Type": "application/json", "X-Forwarded-For": xff,
               "Authorization": f"Bearer {key}", "CF-IPCountry": cf}
    assert_clean(*send(live, json.dumps(body).encode(), headers))


@FUZZ
@given(body=st.binary(max_size=300))
def test_fuzzed_raw_bodies_never_5xx(live: int, body: bytes) -> None:
    assert_clean(*send(live, body, {"Authorization": "Bearer sk-us-startup-000001"}))


@FUZZ
@given(head=st.binary(max_size=200))
def test_fuzzed_request_heads_get_a_clean_answer(live: int, head: bytes) -> None:
    with socket.create_connection(("127.0.0.1", live), timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\n" + head.replace(b"\r\n\r\n", b"")
                     + b"\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    if data:  # a head that asks for a body we never send ends in EOF: nothing to answer
        assert data.startswith(b"HTTP/1.1 ") and int(data.split(b" ", 2)[1]) < 500, data
