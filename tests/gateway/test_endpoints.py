"""The gateway's other endpoints in-process, against the real mock providers (gateway/endpoints.py).

Ledger rows are asserted exactly: tokens by each endpoint's usage, revenue at the served model's
price (embeddings by input tokens), failover only to a model of the same kind.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.app import Gateway
from gateway.config import GatewayConfig, UpstreamPolicy, parse_networks, parse_upstream_url
from gateway.endpoints import ENDPOINTS, EventMeter
from gateway.mock_responses import responses_answer
from gateway.mock_upstream import start_upstreams
from gateway.mock_upstream_wire import filler
from gateway.server import GatewayServer
from scenarios.geo import default_geo
from scenarios.loader import Loaded, load
from tests.gateway.conftest import AFTER_BLOCK, CN_IP, CN_KEY, US_IP, US_KEY

CN_ENTERPRISE = "sk-cn-enterprise-000001"  # the failover rule's segment


class Live:
    def __init__(self, url: str, session: aiohttp.ClientSession, ledger: Path) -> None:
        self.url, self.session, self.ledger = url, session, ledger

    async def post(self, path: str, body: dict[str, Any] | bytes, *, ip: str = US_IP,
                   key: str = US_KEY) -> tuple[int, dict[str, str], bytes]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"X-Forwarded-For": ip, "Authorization": f"Bearer {key}",
                   "Content-Type": "application/json"}
        async with self.session.post(self.url + path, data=data, headers=headers) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, await r.read()

    def row(self, request_id: str) -> dict[str, Any]:
        db = sqlite3.connect(self.ledger)
        db.row_factory = sqlite3.Row
        try:
            row = db.execute("SELECT * FROM requests WHERE request_id = ?", (request_id,)).fetchone()
        finally:
            db.close()
        assert row is not None
        return dict(row)


@pytest.fixture
async def live(loaded: Loaded, tmp_path: Path) -> AsyncIterator[Live]:
    async with start_upstreams(loaded.scenario, base_port=0, time_scale=1e4,
                               geo=default_geo()) as running:
        upstreams = {s.name: parse_upstream_url(s.url, what="test") for s in running.upstreams}
        config = GatewayConfig(port=0, upstreams=upstreams, clock=AFTER_BLOCK,
                               ledger_path=tmp_path / "ledger.sqlite", scenario_ref="openai-2024-cn-hk",
                               trusted_proxies=parse_networks(["127.0.0.1/32"], what="test"),
                               upstream=UpstreamPolicy(retries=0), insecure_org_keys=True)
        gateway = Gateway(config, loaded, geo=default_geo(), loop=asyncio.get_running_loop())
        server = GatewayServer(gateway)
        port = await server.start("127.0.0.1", 0)
        async with aiohttp.ClientSession() as session:
            yield Live(f"http://127.0.0.1:{port}", session, config.ledger_path)
        await server.stop()


async def test_embeddings_are_billed_by_input_tokens(live: Live) -> None:
    status, headers, body = await live.post("/v1/embeddings", {"model": "text-embedding-3-large",
                                                               "input": ["abcd", "abcdefghi"]})
    assert status == 200 and json.loads(body)["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    row = live.row(headers["x-request-id"])
    assert (row["provider"], row["model"], row["tokens_in"], row["tokens_out"], row["revenue_usd"],
            row["decision"], row["error"]) == ("openai", "text-embedding-3-large", 4, 0,
                                               4 * 0.13 / 1e6, "allow", "")


async def test_streamed_responses_are_metered_and_end_with_the_terminal_event(live: Live) -> None:
    status, headers, body = await live.post("/v1/responses", {"model": "gpt-4o", "input": "abcd",
                                                              "stream": True})
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = [e for e in body.decode().split("\n\n") if e]
    assert events[-1].startswith("event: response.completed\n")
    row = live.row(headers["x-request-id"])
    assert (row["tokens_in"], row["tokens_out"], row["stream"], row["error"]) == (1, 16, 1, "")
    assert row["revenue_usd"] == (1 * 5.0 + 16 * 15.0) / 1e6  # the contract: one division
    assert row["ttft_ms"] is not None


async def test_streamed_legacy_completion_drops_the_usage_chunk_it_added(live: Live) -> None:
    status, headers, body = await live.post("/v1/completions", {
        "model": "gpt-3.5-turbo-instruct", "prompt": "abcd", "max_tokens": 4, "stream": True})
    assert status == 200
    chunks = [json.loads(e[6:]) for e in body.decode().split("\n\n") if e.startswith("data: {")]
    assert all(c["choices"] for c in chunks)  # the client did not ask for the usage chunk
    assert "".join(c["choices"][0]["text"] for c in chunks) == filler(0, 4)
    assert body.endswith(b"data: [DONE]\n\n")
    row = live.row(headers["x-request-id"])
    assert (row["tokens_in"], row["tokens_out"], row["error"]) == (1, 4, "")


async def test_blocked_enterprise_fails_over_to_a_model_of_the_same_kind(live: Live) -> None:
    status, headers, body = await live.post("/v1/responses", {"model": "gpt-4o", "input": "x"},
                                            ip=CN_IP, key=CN_ENTERPRISE)
    assert status == 200 and headers["x-regionblock-path"] == "failover"
    assert json.loads(body)["model"] == "qwen-plus"  # alibaba's substitute for gpt-4o
    row = live.row(headers["x-request-id"])
    assert (row["provider"], row["model"], row["path"]) == ("alibaba", "qwen-plus", "failover")
    # No alternative in the rule (alibaba, deepseek) sells embeddings: the block stands.
    status, headers, _ = await live.post("/v1/embeddings", {"model": "text-embedding-3-small",
                                                            "input": "x"}, ip=CN_IP, key=CN_ENTERPRISE)
    assert status == 403 and live.row(headers["x-request-id"])["decision"] == "block"


@pytest.mark.parametrize(("path", "body", "status", "param", "code"), [
    ("/v1/embeddings", b"{nope", 400, None, None),
    ("/v1/embeddings", {"input": "x"}, 400, "model", "missing_required_parameter"),
    ("/v1/embeddings", {"model": "text-embedding-3-small"}, 400, "input",
     "missing_required_parameter"),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "x", "stream": True}, 400, None,
     None),
    ("/v1/completions", {"model": "gpt-4o", "prompt": "x"}, 404, "model", None),
    ("/v1/completions", {"model": "nope", "prompt": "x"}, 404, "model", "model_not_found"),
    ("/v1/responses", {"model": "gpt-4o", "input": "x", "previous_response_id": "resp_1"}, 400,
     "previous_response_id", "unsupported_parameter"),
    ("/v1/responses", {"model": "gpt-4o", "input": "x", "stream_options": {}}, 400,
     "stream_options", "invalid_value"),
])
async def test_bad_requests_answer_openai_errors_and_leave_a_row(
        live: Live, path: str, body: Any, status: int, param: str | None, code: str | None) -> None:
    got, headers, raw = await live.post(path, body)
    error = json.loads(raw)["error"]
    assert (got, error["type"], error["param"], error["code"]) == (status, "invalid_request_error",
                                                                   param, code)
    assert live.row(headers["x-request-id"])["status"] == status


async def test_get_on_an_endpoint_is_405_and_models_retrieve(live: Live) -> None:
    async with live.session.get(live.url + "/v1/embeddings") as r:
        assert r.status == 405 and r.headers["allow"] == "POST"
    async with live.session.get(live.url + "/v1/models/gpt-3.5-turbo-instruct") as r:
        assert await r.json() == {"id": "gpt-3.5-turbo-instruct", "object": "model", "created": 0,
                                  "owned_by": "openai"}
    async with live.session.get(live.url + "/v1/models/nope") as r:
        assert r.status == 404 and (await r.json())["error"]["code"] == "model_not_found"


async def test_blocked_key_is_denied_on_every_endpoint(live: Live) -> None:
    for path, body in (("/v1/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "x"}),
                       ("/v1/responses", {"model": "gpt-4o", "input": "x"})):
        status, headers, _ = await live.post(path, body, ip=CN_IP, key=CN_KEY)
        assert status == 403
        row = live.row(headers["x-request-id"])
        assert (row["decision"], row["country"], row["tokens_in"]) == ("block", "CN", 0)


async def test_chat_with_a_model_of_another_kind_is_openais_404(live: Live) -> None:
    status, headers, raw = await live.post("/v1/chat/completions", {
        "model": "text-embedding-3-small", "messages": [{"role": "user", "content": "x"}]})
    assert status == 404
    assert json.loads(raw)["error"] == {
        "message": "This is not a chat model and thus not supported in the v1/chat/completions "
                   "endpoint. Did you mean to use v1/completions?", "type": "invalid_request_error",
        "param": "model", "code": None}
    assert live.row(headers["x-request-id"])["error"] == "http_404"


@functools.cache
def _responses_stream() -> bytes:
    answer = responses_answer(json.dumps({"model": "gpt-4o", "input": "abcdefgh", "stream": True,
                                          "max_output_tokens": 20}).encode(),
                              load("openai-2024-cn-hk").scenario.provider("openai"),
                              response_id="resp_1", created=1)
    return answer.head() + answer.deltas(0, 7) + answer.deltas(7, 20) + answer.tail()


@settings(derandomize=True, max_examples=80, deadline=None)
@given(cuts=st.lists(st.integers(0, 4000), max_size=12))
def test_event_meter_passes_every_event_but_the_terminal_one_whatever_the_chunking(
        cuts: list[int]) -> None:
    """The Responses stream split anywhere: the events before the terminal one pass through
    unchanged, the terminal one is held back whole, and its usage is read."""
    stream = _responses_stream()
    meter = EventMeter(ENDPOINTS["/v1/responses"])
    points = sorted({min(c, len(stream)) for c in cuts})
    pieces = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    passed = b"".join(meter.feed(p) for p in pieces)
    assert meter.done and passed + meter.final == stream
    assert meter.final.startswith(b"event: response.incomplete\n")
    assert meter.usage == (2, 20)


async def test_a_request_through_the_relay_is_metered_as_relay(live: Live) -> None:
    data = json.dumps({"model": "text-embedding-3-small", "input": "x"}).encode()
    headers = {"X-Forwarded-For": US_IP, "Authorization": f"Bearer {US_KEY}",
               "Via": "1.1 regionblock-relay", "Content-Type": "application/json"}
    async with live.session.post(live.url + "/v1/embeddings", data=data, headers=headers) as r:
        assert r.status == 200
        request_id = r.headers["x-request-id"]
    assert live.row(request_id)["path"] == "relay"
