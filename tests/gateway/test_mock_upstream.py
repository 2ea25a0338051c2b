"""The mock upstream over real sockets (aiohttp's test server and client)."""

from __future__ import annotations

import asyncio
import errno
import json
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.faults import FaultSettings, plan_fault
from gateway.mock_upstream import (
    MIN_CHUNK_INTERVAL_S,
    SHUTDOWN_GRACE_S,
    make_upstream_app,
    provider_rng,
    start_upstreams,
)
from gateway.mock_upstream_errors import ListenError
from gateway.mock_upstream_wire import filler
from scenarios.loader import load
from scenarios.schema import Provider, Scenario

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]

SCENARIO = "openai-2024-cn-hk"
MESSAGES = [{"role": "system", "content": "You are terse."},       # 14 chars -> 4 tokens
            {"role": "user", "content": "Say hello to the world, please."}]  # 31 chars -> 8 tokens
PROMPT_TOKENS = 4 + 8


def _scenario(*overrides: str) -> Scenario:
    return load(SCENARIO, overrides).scenario


def _openai(*overrides: str, ttft_ms: float = 0, tps: float = 1e6) -> Provider:
    """The incumbent with constant latency (and any further overrides)."""
    return _scenario(f"providers[0].latency.ttft_ms={{dist: constant, value: {ttft_ms}}}",
                     f"providers[0].latency.tokens_per_s={{dist: constant, value: {tps}}}",
                     *overrides).providers[0]


def _chat(max_tokens: int = 7, **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": MESSAGES, "max_tokens": max_tokens, **extra}


def _events(raw: bytes) -> list[Any]:
    """The data of each server-sent event ('[DONE]' kept as the string)."""
    out: list[Any] = []
    for block in raw.decode().split("\n\n"):
        if block:
            assert block.startswith("data: "), block
            data = block.removeprefix("data: ")
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


# ---------------------------------------------------------------- the API


async def test_non_streamed_completion_has_exact_usage(aiohttp_client: MakeClient) -> None:
    client = await aiohttp_client(make_upstream_app(_openai()))
    resp = await client.post("/v1/chat/completions", json=_chat(max_tokens=7))
    assert resp.status == 200
    assert resp.headers["x-request-id"] == "req_openai_0000000001"
    assert int(resp.headers["openai-processing-ms"]) >= 0
    body = await resp.json()
    assert body["object"] == "chat.completion" and body["model"] == "gpt-4o"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": filler(0, 7),
                                             "refusal": None}
    assert body["choices"][0]["finish_reason"] == "length"  # the answer ran on to max_tokens
    assert body["usage"] == {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": 7,
                             "total_tokens": PROMPT_TOKENS + 7}


async def test_streamed_completion_chunk_sequence(aiohttp_client: MakeClient) -> None:
    client = await aiohttp_client(make_upstream_app(_openai(tps=10)))
    resp = await client.post("/v1/chat/completions", json=_chat(
        max_tokens=4, stream=True, stream_options={"include_usage": True}))
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    events = _events(await resp.read())
    # 10 tokens/s is one token per 100 ms > the 20 ms chunk interval: one token per chunk.
    assert [e["choices"][0]["delta"] for e in events[:5]] == [
        {"role": "assistant", "content": "", "refusal": None}, {"content": "lorem "},
        {"content": "ipsum "}, {"content": "dolor "}, {"content": "sit "}]
    assert all(e["choices"][0]["finish_reason"] is None and e["usage"] is None for e in events[:5])
    assert events[5]["choices"] == [{"index": 0, "delta": {}, "logprobs": None,
                                     "finish_reason": "length"}]
    assert events[6]["choices"] == []
    assert events[6]["usage"] == {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": 4,
                                  "total_tokens": PROMPT_TOKENS + 4}
    assert events[7] == "[DONE]" and len(events) == 8
    assert {e["id"] for e in events[:7]} == {"chatcmpl-0000000001"}
    assert {e["object"] for e in events[:7]} == {"chat.completion.chunk"}


async def test_fast_tokens_are_batched_into_few_chunks(aiohttp_client: MakeClient) -> None:
    """10 000 tokens/s: all 200 tokens are ready 20 ms after the first, so two content chunks."""
    client = await aiohttp_client(make_upstream_app(_openai(tps=10_000)))
    resp = await client.post("/v1/chat/completions", json=_chat(max_tokens=200, stream=True))
    events = _events(await resp.read())
    content = [e["choices"][0]["delta"].get("content") for e in events[:-1]]
    assert content[:3] == ["", filler(0, 1), filler(1, 199)] and content[3] is None
    assert "usage" not in events[0] and len(events) == 5  # role, 2 content, finish, [DONE]
    assert MIN_CHUNK_INTERVAL_S == 0.020


async def test_models_healthz_and_unknown_model(aiohttp_client: MakeClient) -> None:
    client = await aiohttp_client(make_upstream_app(_scenario().provider("zhipu")))
    models = await (await client.get("/v1/models")).json()
    assert models == {"object": "list", "data": [
        {"id": "glm-4", "object": "model", "created": 0, "owned_by": "zhipu"},
        {"id": "glm-4-air", "object": "model", "created": 0, "owned_by": "zhipu"},
        {"id": "embedding-2", "object": "model", "created": 0, "owned_by": "zhipu"}]}
    assert await (await client.get("/healthz")).json() == {"status": "ok", "provider": "zhipu"}
    resp = await client.post("/v1/chat/completions", json=_chat())  # gpt-4o is not Zhipu's
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "model_not_found"
    resp = await client.post("/v1/chat/completions", data=b"not json")
    assert resp.status == 400 and (await resp.json())["error"]["type"] == "invalid_request_error"


async def test_other_paths_and_methods_are_invalid_urls(aiohttp_client: MakeClient) -> None:
    client = await aiohttp_client(make_upstream_app(_openai()))
    for method, path in (("GET", "/v1/chat/completions"), ("POST", "/v1/images/generations")):
        resp = await client.request(method, path)
        assert resp.status == 404
        assert await resp.json() == {"error": {"message": f"Invalid URL ({method} {path})",
                                               "type": "invalid_request_error", "param": None,
                                               "code": None}}


# ---------------------------------------------------------------- latency and capacity


async def test_latency_is_at_least_ttft_plus_generation(aiohttp_client: MakeClient) -> None:
    client = await aiohttp_client(make_upstream_app(_openai(ttft_ms=200, tps=25)))
    start = time.monotonic()
    resp = await client.post("/v1/chat/completions", json=_chat(max_tokens=10))
    await resp.read()
    assert time.monotonic() - start >= 0.200 + 10 / 25

    start = time.monotonic()
    resp = await client.post("/v1/chat/completions", json=_chat(max_tokens=10, stream=True))
    first_byte = (await resp.content.readany(), time.monotonic() - start)[1]
    await resp.read()
    total = time.monotonic() - start
    assert first_byte >= 0.200
    assert total >= 0.200 + 10 / 25
    assert first_byte < total - 0.2  # the tokens really are spread over the generation time


async def test_time_scale_divides_latency(aiohttp_client: MakeClient) -> None:
    app = make_upstream_app(_openai(ttft_ms=3000, tps=1e6), time_scale=20)
    client = await aiohttp_client(app)
    start = time.monotonic()
    await (await client.post("/v1/chat/completions", json=_chat())).read()
    elapsed = time.monotonic() - start
    assert 3.0 / 20 <= elapsed < 3.0 / 2  # scaled: 150 ms, far below the unscaled 3 s


async def test_beyond_queue_limit_exactly_k_get_429(aiohttp_client: MakeClient) -> None:
    c, q, k = 2, 3, 4
    provider = _openai(f"providers[0].capacity={{concurrency: {c}, queue_limit: {q}}}",
                       ttft_ms=300_000, tps=1e6)
    app = make_upstream_app(provider, time_scale=1000)  # 300 s scaled to 0.3 s of service
    client = await aiohttp_client(app)

    async def one() -> tuple[int, Any]:
        resp = await client.post("/v1/chat/completions", json=_chat())
        return resp.status, await resp.json()

    results = await asyncio.gather(*(one() for _ in range(c + q + k)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * (c + q) + [429] * k
    refused = [body for status, body in results if status == 429]
    assert refused[0]["error"]["type"] == "requests"
    assert refused[0]["error"]["code"] == "rate_limit_exceeded"
    assert refused[0]["error"]["param"] is None
    stats = await (await client.get("/admin/stats")).json()
    assert {key: stats[key] for key in ("served", "queued", "queued_total", "rejected", "concurrency")} \
        == {"served": c + q, "queued": 0, "queued_total": q, "rejected": k, "concurrency": 0}


# ---------------------------------------------------------------- faults


async def test_error_rate_one_errors_every_request(aiohttp_client: MakeClient) -> None:
    provider = _openai("providers[0].faults={error_rate: 1.0, error_status: 503}")
    client = await aiohttp_client(make_upstream_app(provider))
    for _ in range(5):
        resp = await client.post("/v1/chat/completions", json=_chat())
        assert resp.status == 503
        assert await resp.json() == {"error": {
            "message": "The engine is currently overloaded, please try again later.",
            "type": "server_error", "param": None, "code": None}}
    stats = await (await client.get("/admin/stats")).json()
    assert (stats["served"], stats["faults"]["error"]) == (0, 5)


async def test_seeded_fault_decisions_are_exact(aiohttp_client: MakeClient) -> None:
    provider = _openai("providers[0].faults.error_rate=0.5")
    client = await aiohttp_client(make_upstream_app(provider, seed=7))
    statuses = []
    for _ in range(30):
        resp = await client.post("/v1/chat/completions", json=_chat(max_tokens=1))
        await resp.read()
        statuses.append(resp.status)
    rng = provider_rng(7, "openai", 2)
    settings = FaultSettings(error_rate=0.5)
    assert statuses == [500 if plan_fault(settings, rng).kind == "error" else 200 for _ in range(30)]
    assert 0 < statuses.count(500) < 30


async def test_reset_is_a_connection_error(aiohttp_client: MakeClient) -> None:
    client = await aiohttp_client(make_upstream_app(_openai("providers[0].faults.reset_rate=1")))
    with pytest.raises(aiohttp.ClientOSError) as info:
        await client.post("/v1/chat/completions", json=_chat())
    assert info.value.errno == errno.ECONNRESET  # a TCP RST, not an orderly close
    stats = await (await client.get("/admin/stats")).json()
    assert stats["faults"]["reset"] == 1


async def test_stall_holds_then_drops_the_connection(aiohttp_client: MakeClient) -> None:
    provider = _openai("providers[0].faults={stall_rate: 1.0, stall_s: 0.3}")
    client = await aiohttp_client(make_upstream_app(provider))
    start = time.monotonic()
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await client.post("/v1/chat/completions", json=_chat())
    assert time.monotonic() - start >= 0.3


async def test_spike_adds_latency(aiohttp_client: MakeClient) -> None:
    provider = _openai("providers[0].faults={spike_rate: 1.0, spike_ms: {dist: constant, value: 300}}")
    client = await aiohttp_client(make_upstream_app(provider))
    start = time.monotonic()
    resp = await client.post("/v1/chat/completions", json=_chat())
    await resp.read()
    assert resp.status == 200 and time.monotonic() - start >= 0.3


async def test_runtime_put_changes_behaviour(aiohttp_client: MakeClient) -> None:
    client = await aiohttp_client(make_upstream_app(_openai()))
    assert (await client.post("/v1/chat/completions", json=_chat())).status == 200
    resp = await client.put("/admin/faults", json={"error_rate": 1.0, "error_status": 502})
    assert resp.status == 200
    assert (await resp.json())["error_rate"] == 1.0
    assert (await client.post("/v1/chat/completions", json=_chat())).status == 502
    assert (await (await client.get("/admin/faults")).json())["error_status"] == 502
    await client.put("/admin/faults", json={"error_rate": 0})
    assert (await client.post("/v1/chat/completions", json=_chat())).status == 200


@pytest.mark.parametrize(("data", "param", "message"), [
    (b'{"error_rate": 2}', "error_rate",
     "faults: error_rate: Input should be less than or equal to 1 (got 2)"),
    (b'{"explode": true}', "explode",
     "faults: unknown field 'explode' (known: error_rate, error_status, spike_rate, spike_ms, "
     "reset_rate, stall_rate, stall_s)"),
    (b"[1]", None, "faults: expected a JSON object of fault settings"),
])
async def test_bad_put_is_a_400_and_changes_nothing(aiohttp_client: MakeClient, data: bytes,
                                                    param: str | None, message: str) -> None:
    client = await aiohttp_client(make_upstream_app(_openai()))
    before = await (await client.get("/admin/faults")).json()
    resp = await client.put("/admin/faults", data=data)
    assert resp.status == 400
    assert await resp.json() == {"error": {"message": message, "type": "invalid_request_error",
                                           "param": param, "code": None}}
    assert await (await client.get("/admin/faults")).json() == before


async def test_put_of_invalid_json_is_a_400(aiohttp_client: MakeClient) -> None:
    client = await aiohttp_client(make_upstream_app(_openai()))
    resp = await client.put("/admin/faults", data=b"{error_rate")
    assert resp.status == 400
    assert (await resp.json())["error"]["message"].startswith("invalid JSON: ")


# ---------------------------------------------------------------- all of them at once


async def test_start_upstreams_serves_every_provider_and_the_relay() -> None:
    scenario = _scenario()
    async with start_upstreams(scenario, base_port=0, time_scale=1000) as running, \
            aiohttp.ClientSession() as session:
        assert [s.name for s in running.upstreams] == [p.name for p in scenario.providers]
        for server in running.upstreams:
            async with session.get(server.url + "/healthz") as resp:
                assert (await resp.json())["provider"] == server.name
        assert running.upstream("deepseek").detail == "deepseek-chat"
        assert running.relay.name == "relay"


async def test_shutdown_does_not_wait_for_a_stall() -> None:
    """A request stalled for 100 s is cut off after the shutdown grace period."""
    scenario = _scenario("providers[0].faults={stall_rate: 1.0, stall_s: 100}")
    async with aiohttp.ClientSession() as session:
        async with start_upstreams(scenario, base_port=0) as running:
            url = running.upstreams[0].url
            stalled = asyncio.create_task(session.post(url + "/v1/chat/completions", json=_chat()))
            deadline = time.monotonic() + 10
            while (await (await session.get(url + "/admin/stats")).json())["faults"]["stall"] < 1:
                assert time.monotonic() < deadline, "the request never reached the upstream"
            leaving = time.monotonic()
        assert time.monotonic() - leaving < SHUTDOWN_GRACE_S + 2.0
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await stalled


async def test_a_taken_port_is_one_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        one = _scenario()
        with pytest.raises(ListenError, match=rf"127.0.0.1:{port} \(openai\) is already in use"):
            async with start_upstreams(one, base_port=port):
                pass  # pragma: no cover - never starts


def test_the_latency_stream_does_not_depend_on_faults() -> None:
    """Latency and fault draws use separate generators per provider."""
    a, b = provider_rng(0, "openai", 1), provider_rng(0, "openai", 2)
    assert not np.array_equal(a.random(4), b.random(4))
    assert np.array_equal(provider_rng(3, "zhipu", 1).random(3), provider_rng(3, "zhipu", 1).random(3))
