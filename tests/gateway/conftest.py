"""In-process gateway fixtures: the fake upstream, and a gateway served on a free port."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from gateway.app import Gateway
from gateway.config import GatewayConfig, Limits, UpstreamPolicy, parse_networks, parse_upstream_url
from gateway.server import GatewayServer
from scenarios.geo import default_geo
from scenarios.loader import Loaded, load
from tests.gateway.fake_upstream import FakeUpstream

US_IP = "73.0.0.1"  # Comcast, US
CN_IP = "1.2.4.8"  # CNNIC, CN
HK_IP = "202.181.0.1"  # HK ISP
SG_HOSTING_IP = "13.228.0.1"  # AWS Singapore
US_KEY = "sk-us-startup-000001"
CN_KEY = "sk-cn-startup-000001"
BEFORE_BLOCK = "at:2024-06-10"
AFTER_BLOCK = "at:2024-07-10"


@dataclass
class Harness:
    url: str
    gateway: Gateway
    server: GatewayServer
    fake: FakeUpstream
    session: aiohttp.ClientSession
    ledger: Path

    async def chat(self, body: dict[str, Any] | bytes | None = None, *, ip: str | None = US_IP,
                   key: str | None = US_KEY, headers: dict[str, str] | None = None,
                   ) -> tuple[int, dict[str, str], bytes]:
        h = dict(headers or {})
        if ip is not None:
            h["X-Forwarded-For"] = ip
        if key is not None:
            h["Authorization"] = f"Bearer {key}"
        payload = chat_body() if body is None else body
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        h.setdefault("Content-Type", "application/json")
        async with self.session.post(self.url + "/v1/chat/completions", data=data, headers=h) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, await r.read()

    def rows(self) -> list[dict[str, Any]]:
        db = sqlite3.connect(self.ledger)
        db.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in db.execute("SELECT * FROM requests ORDER BY wall_time")]
        finally:
            db.close()

    def row(self, request_id: str) -> dict[str, Any]:
        found = [r for r in self.rows() if r["request_id"] == request_id]
        assert len(found) == 1, f"{request_id} not in the ledger"
        return found[0]


def chat_body(model: str = "gpt-4o", content: str = "x" * 40, max_tokens: int = 5,
              **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}],
            "max_tokens": max_tokens, **extra}


@pytest.fixture(scope="session")
def loaded() -> Loaded:
    return load("openai-2024-cn-hk")


@pytest.fixture
async def fake_server() -> AsyncIterator[tuple[FakeUpstream, TestServer]]:
    fake = FakeUpstream()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    yield fake, server
    await server.close()


StartGateway = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def start_gateway(loaded: Loaded, fake_server: tuple[FakeUpstream, TestServer],
                        tmp_path: Path) -> AsyncIterator[StartGateway]:
    fake, upstream = fake_server
    started: list[Harness] = []

    async def start(clock: str = AFTER_BLOCK, scenario: Loaded | None = None,
                    limits: Limits | None = None, upstream_policy: UpstreamPolicy | None = None,
                    ledger: Path | None = None, **fields: Any) -> Harness:
        chosen = scenario or loaded
        base = f"http://127.0.0.1:{upstream.port}/p/"
        upstreams = {p.name: parse_upstream_url(base + p.name, what="test")
                     for p in chosen.scenario.providers}
        ledger = ledger or tmp_path / f"ledger-{len(started)}.sqlite"  # reuse one: a restart
        fields.setdefault("scenario_ref", "openai-2024-cn-hk")
        fields.setdefault("trusted_proxies", parse_networks(["127.0.0.1/32"], what="test"))
        fields.setdefault("insecure_org_keys", True)
        config = GatewayConfig(
            port=0, upstreams=upstreams, clock=clock, ledger_path=ledger, limits=limits or Limits(),
            upstream=upstream_policy or UpstreamPolicy(retries=1), **fields)
        gateway = Gateway(config, chosen, geo=default_geo(), loop=asyncio.get_running_loop())
        server = GatewayServer(gateway)
        port = await server.start("127.0.0.1", 0)
        session = aiohttp.ClientSession()
        harness = Harness(f"http://127.0.0.1:{port}", gateway, server, fake, session, ledger)
        started.append(harness)
        return harness

    yield start
    for h in started:
        await h.session.close()
        await h.server.stop()


def replace_limits(**changes: Any) -> Limits:
    return dataclasses.replace(Limits(), **changes)
