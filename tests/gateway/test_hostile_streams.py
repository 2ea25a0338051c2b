"""Broken streams, slow readers, unsafe header values and the remaining gaps of issue 12.

Over raw sockets where the wire matters (the bytes of a broken-off stream, an HTTP/1.0 stream),
with the official openai SDK where what matters is that a client notices.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
from typing import Any, cast

import openai
import pytest

from gateway.config import Limits, UpstreamPolicy
from gateway.connection import HttpConnection, ResponseWriter
from gateway.http11 import encode_head
from gateway.stages.forward import ForwardStage
from gateway.validation import parse_chat
from scenarios.loader import load
from tests.gateway.conftest import CN_IP, US_IP, US_KEY, StartGateway, chat_body
from tests.gateway.fake_upstream import Faults
from tests.gateway.test_hardening import AUTH, body_of, post, raw, status_of
from tests.gateway.test_hostile import error_code, header


async def until(condition: Any, seconds: float = 10.0) -> None:
    """Poll ``condition()`` until it holds (a deadline, not a sleep that hopes)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


# ------------------------------------------------------------------ item 6: broken streams


async def test_upstream_death_mid_stream_is_broken_off_on_the_wire(start_gateway: StartGateway
                                                                   ) -> None:
    gw = await start_gateway(upstream_policy=UpstreamPolicy(retries=0))
    gw.fake.faults["openai"] = Faults(die_after_tokens=5)
    response = await raw(gw, post(json.dumps(chat_body(max_tokens=50, stream=True)).encode()))
    body = body_of(response)
    assert header(response, b"transfer-encoding") == b"chunked"
    assert b"[DONE]" not in body
    assert not body.endswith(b"0\r\n\r\n")  # no terminating chunk: the body is incomplete
    assert b'"code": "upstream_connect_error"' in body  # the error event names the failure
    [row] = gw.rows()
    assert (row["decision"], row["error"], row["status"]) == ("failed", "upstream_connect_error",
                                                              200)


async def test_openai_sdk_raises_on_a_stream_the_upstream_broke_off(start_gateway: StartGateway
                                                                    ) -> None:
    gw = await start_gateway(upstream_policy=UpstreamPolicy(retries=0))
    gw.fake.faults["openai"] = Faults(die_after_tokens=5)
    client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=US_KEY, max_retries=0,
                                default_headers={"X-Forwarded-For": US_IP})
    received = []
    with pytest.raises(openai.APIError):
        stream = await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=50,
            stream=True)
        async for event in stream:
            received.append(event)
    assert 0 < len(received) <= 6
    await client.close()


async def test_http10_stream_is_close_delimited_not_chunked(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    body = json.dumps(chat_body(max_tokens=3, stream=True)).encode()
    data = (b"POST /v1/chat/completions HTTP/1.0\r\n" + AUTH
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    response = await raw(gw, data)
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert header(response, b"transfer-encoding") is None
    assert header(response, b"connection") == b"close"
    events = body_of(response).split(b"\n\n")
    assert events[-2:] == [b"data: [DONE]", b""]
    assert len(events) == 1 + 3 + 1 + 1 + 1  # role, 3 tokens, finish, [DONE], end


# ------------------------------------------------------------------ item 3: slow readers


def _reader_that_never_reads(port: int, request: bytes) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(request)
    return sock


async def test_slow_readers_release_their_slots(start_gateway: StartGateway) -> None:
    gw = await start_gateway(limits=Limits(max_inflight=4, send_timeout_s=0.3))
    gw.fake.faults["openai"] = Faults(token_text="z" * 2000)
    port = int(gw.url.rsplit(":", 1)[1])
    request = post(json.dumps(chat_body(max_tokens=8000, stream=True)).encode())
    readers = [_reader_that_never_reads(port, request) for _ in range(4)]
    try:
        await until(lambda: gw.gateway.inflight == 4)
        await until(lambda: gw.gateway.inflight == 0)  # cut off by the send timeout
        status, _, _ = await gw.chat()  # a normal client is served again
        assert status == 200
        rows = [r for r in gw.rows() if r["stream"] == 1]
        assert [r["error"] for r in rows] == ["client_disconnected"] * 4
    finally:
        for sock in readers:
            sock.close()


# ------------------------------------------------------------------ item 7: header values


async def test_non_latin1_and_crlf_in_a_warning_are_sent_safely(start_gateway: StartGateway
                                                                ) -> None:
    message = "Ваш регион\r\nX-Injected: 1 — будет заблокирован"
    scenario = load("openai-2024-cn-hk", [f"policy.openai.stages[0].message={json.dumps(message)}"])
    gw = await start_gateway(clock="at:2024-07-01", scenario=scenario)
    response = await raw(gw, post(json.dumps(chat_body()).encode(), b"X-Forwarded-For: "
                                  + CN_IP.encode() + b"\r\n"))
    assert status_of(response) == 200
    assert header(response, b"x-injected") is None
    sent = header(response, b"x-regionblock-warning")
    assert sent is not None
    assert sent.decode("utf-8") == "Ваш регион  X-Injected: 1 — будет заблокирован"


class _Wire:
    """What a ResponseWriter needs of its connection, recording the bytes written."""

    keep_alive = True
    closed = False

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data


def test_a_bad_header_value_fails_before_the_response_starts() -> None:
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        encode_head(200, [("x-a", "b\r\nx-c: d")])
    wire = _Wire()
    writer = ResponseWriter(cast(HttpConnection, wire))
    with pytest.raises(ValueError, match="Latin-1"):
        writer.send(200, [("x-a", "→")], b"{}")
    assert (writer.started, wire.data) == (False, b"")  # so the handler can still answer
    writer.send(500, [], b"{}")
    assert wire.data.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")


# ------------------------------------------------------------------ item 4: max_tokens


async def test_max_tokens_above_the_cap_is_400_and_the_breaker_stays_closed(
        start_gateway: StartGateway) -> None:
    gw = await start_gateway(max_completion_tokens=16384)
    results = await asyncio.gather(*(gw.chat(chat_body(max_tokens=1_000_000)) for _ in range(2)))
    for status, _, body in results:
        error = json.loads(body)["error"]
        assert (status, error["param"], error["code"]) == (400, "max_tokens", "invalid_value")
    assert gw.gateway.upstreams.states()["openai"] == "closed"
    assert gw.fake.calls == []


def test_upstream_timeout_scales_with_the_generation_asked_for() -> None:
    stage = ForwardStage.__new__(ForwardStage)
    stage.policy = UpstreamPolicy(response_timeout_s=60.0)
    stage.min_tokens_per_s = 20.0
    chat = parse_chat(json.dumps(chat_body(max_tokens=4800)).encode())
    assert stage.response_timeout(chat) == 60.0 + 4800 / 20.0
    streamed = parse_chat(json.dumps(chat_body(max_tokens=4800, stream=True)).encode())
    assert stage.response_timeout(streamed) == 60.0  # chunks are bounded one by one instead


async def test_a_long_completion_outlasting_the_base_timeout_is_served(
        start_gateway: StartGateway) -> None:
    gw = await start_gateway(upstream_policy=UpstreamPolicy(response_timeout_s=0.2, retries=0),
                             min_tokens_per_s=10.0)
    gw.fake.faults["openai"] = Faults(stall_s=0.6)  # as 6 tokens at 10 tokens/s would take
    status, _, body = await gw.chat(chat_body(max_tokens=6))
    assert status == 200, body


# ------------------------------------------------------------------ item 8: gaps


async def test_an_internal_error_has_a_request_id_and_a_ledger_row(start_gateway: StartGateway
                                                                   ) -> None:
    gw = await start_gateway()

    def broken_stage(ctx: object) -> None:
        raise RuntimeError("a bug")

    gw.gateway.chat_stages.insert(3, broken_stage)
    status, headers, body = await gw.chat()
    assert (status, json.loads(body)["error"]["code"]) == (500, "internal_error")
    row = gw.row(headers["x-request-id"])
    assert (row["status"], row["error"]) == (500, "internal_error")
    assert gw.gateway.inflight == 0


@pytest.mark.parametrize(("data", "status"), [
    (b"GARBAGE\r\n\r\n", 400),
    (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n", 413),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431),
])
async def test_http_level_refusals_are_metered(start_gateway: StartGateway, data: bytes,
                                               status: int) -> None:
    gw = await start_gateway()
    response = await raw(gw, data)
    assert status_of(response) == status
    request_id = header(response, b"x-request-id")
    assert request_id is not None
    await until(lambda: len(gw.rows()) == 1)
    row = gw.row(request_id.decode())
    assert (row["status"], row["decision"]) == (status, "failed")


async def test_a_head_timeout_is_metered(start_gateway: StartGateway) -> None:
    gw = await start_gateway(limits=Limits(header_timeout_s=0.2))
    response = await raw(gw, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n", deadline=3)
    assert (status_of(response), error_code(response)) == (408, "request_timeout")
    await until(lambda: len(gw.rows()) == 1)
    assert gw.rows()[0]["error"] == "request_timeout"


async def test_date_header_and_head_requests(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    response = await raw(gw, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status_of(response) == 200
    assert header(response, b"content-length") == b"15"
    assert body_of(response) == b""
    date = header(response, b"date")
    assert date is not None and date.endswith(b" GMT")


async def test_readyz_is_not_ready_when_every_upstream_circuit_is_open(
        start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    now = gw.gateway.loop.time()
    for breaker in gw.gateway.upstreams._breakers.values():
        for _ in range(breaker.failures):
            breaker.failure(now)
    async with gw.session.get(gw.url + "/readyz") as r:
        assert (r.status, (await r.json())["ready"]) == (503, False)


async def test_admin_reload_of_a_path_with_nul_is_400(start_gateway: StartGateway) -> None:
    gw = await start_gateway(admin_token="t")
    async with gw.session.post(gw.url + "/admin/reload", json={"scenario": "bad\u0000name"},
                               headers={"Authorization": "Bearer t"}) as r:
        assert r.status == 400
        assert (await r.json())["error"]["code"] == "invalid_admin_request"


async def test_latencies_are_not_quantised_to_milliseconds(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    for _ in range(5):
        await gw.chat()
    db = sqlite3.connect(gw.ledger)
    totals = [r[0] for r in db.execute("SELECT total_ms FROM requests")]
    db.close()
    assert any(t != round(t) for t in totals)
