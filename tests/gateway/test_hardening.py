"""Hardening over raw sockets: limits, malformed HTTP, slowloris, admission, pipelining."""

from __future__ import annotations

import asyncio
import json

from gateway.config import Limits
from gateway.validation import JSON_MESSAGE
from tests.gateway.conftest import Harness, StartGateway, chat_body
from tests.gateway.fake_upstream import Faults

AUTH = b"Authorization: Bearer sk-us-startup-000001\r\nX-Forwarded-For: 73.0.0.1\r\n"


async def raw(gw: Harness, data: bytes, *, deadline: float = 5.0) -> bytes:
    """Send bytes, read until the server closes (or the deadline passes)."""
    port = int(gw.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    try:
        async with asyncio.timeout(deadline):
            return await reader.read(-1)
    finally:
        writer.close()


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def body_of(response: bytes) -> bytes:
    return response.split(b"\r\n\r\n", 1)[1]


def post(body: bytes, extra: bytes = b"", close: bool = True) -> bytes:
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + AUTH + extra
            + (b"Connection: close\r\n" if close else b"")
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)


async def test_invalid_json_is_openai_400(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    response = await raw(gw, post(b"{not json"))
    assert status_of(response) == 400
    assert json.loads(body_of(response))["error"] == {
        "message": JSON_MESSAGE, "type": "invalid_request_error", "param": None, "code": None}


async def test_schema_errors_name_the_parameter(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    cases = {
        b'{"model": "gpt-4o"}': ("messages", "missing_required_parameter"),
        b'{"model": "gpt-4o", "messages": "hi"}': ("messages", "invalid_type"),
        b'{"model": "gpt-4o", "messages": []}': ("messages", "empty_array"),
        b'{"model": "gpt-4o", "messages": [{"role": "robot", "content": "x"}]}':
            ("messages[0].role", "invalid_value"),
        b'{"model": 4, "messages": [{"role": "user", "content": "x"}]}': ("model", "invalid_type"),
        b'{"model": "gpt-4o", "messages": [{"role": "user"}], "max_tokens": 0}':
            ("max_tokens", "integer_below_min_value"),
        b'{"model": "gpt-4o", "messages": [{"role": "user"}], "stream_options": {}}':
            ("stream_options", "invalid_value"),
        b'{"model": "gpt-4o", "messages": [{"role": "user"}], "temperature": 7}':
            ("temperature", "invalid_value"),
    }
    for body, (param, code) in cases.items():
        response = await raw(gw, post(body))
        error = json.loads(body_of(response))["error"]
        assert (status_of(response), error["param"], error["code"], error["type"]) == (
            400, param, code, "invalid_request_error"), body


async def test_body_limit_is_413_without_reading_the_body(start_gateway: StartGateway) -> None:
    gw = await start_gateway(limits=Limits(max_body_bytes=1000))
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + AUTH
            + b"Content-Length: 5000\r\n\r\n")
    response = await raw(gw, head)
    assert status_of(response) == 413
    assert json.loads(body_of(response))["error"]["code"] == "request_too_large"


async def test_malformed_http_is_400_and_closed(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    for data in (b"GARBAGE\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"GET /x HTTP/1.1\r\nbad header\r\n\r\n",
                 b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 3\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n",
                 b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
                 b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                 b"GET /x HTTP/1.1\r\n folded: x\r\n\r\n"):
        assert status_of(await raw(gw, data)) == 400, data


async def test_oversized_head_is_431(start_gateway: StartGateway) -> None:
    gw = await start_gateway(limits=Limits(max_header_bytes=1024))
    response = await raw(gw, b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n")
    assert status_of(response) == 431


async def test_slowloris_head_times_out_with_408(start_gateway: StartGateway) -> None:
    gw = await start_gateway(limits=Limits(header_timeout_s=0.3))
    response = await raw(gw, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n", deadline=3)
    assert status_of(response) == 408
    assert json.loads(body_of(response))["error"]["code"] == "request_timeout"


async def test_slow_body_times_out_with_408(start_gateway: StartGateway) -> None:
    gw = await start_gateway(limits=Limits(body_timeout_s=0.3))
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + AUTH
            + b"Content-Length: 100\r\n\r\n{\"model\"")
    assert status_of(await raw(gw, head, deadline=3)) == 408


async def test_idle_keepalive_connection_is_closed(start_gateway: StartGateway) -> None:
    gw = await start_gateway(limits=Limits(keepalive_timeout_s=0.2))
    response = await raw(gw, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", deadline=3)
    assert status_of(response) == 200  # answered, then closed by the idle timeout


async def test_chunked_request_body_and_pipelining(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    body = json.dumps(chat_body(max_tokens=2)).encode()
    chunked = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + AUTH
               + b"Transfer-Encoding: chunked\r\n\r\n"
               + b"%x\r\n%b\r\n" % (10, body[:10]) + b"%x\r\n%b\r\n" % (len(body) - 10, body[10:])
               + b"0\r\n\r\n")
    response = await raw(gw, chunked + post(body))
    assert response.count(b"HTTP/1.1 200 OK\r\n") == 2
    ids = [line.split(b": ")[1] for line in response.split(b"\r\n") if line.startswith(b"x-request-id")]
    assert len(set(ids)) == 2


async def test_admission_limit_answers_503_at_once(start_gateway: StartGateway) -> None:
    gw = await start_gateway(limits=Limits(max_inflight=2))
    gw.fake.faults["openai"] = Faults(stall_s=0.5)
    results = await asyncio.gather(*(gw.chat() for _ in range(5)))
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [200, 200, 503, 503, 503]
    refused = [h for status, h, _ in results if status == 503]
    assert all(h["retry-after"] == "1" for h in refused)
    rows = {r["request_id"]: r for r in gw.rows()}
    assert all(rows[h["x-request-id"]]["error"] == "overloaded" for h in refused)


async def test_client_disconnect_mid_stream_is_recorded(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    gw.fake.faults["openai"] = Faults(chunk_delay_s=0.01)
    port = int(gw.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post(json.dumps(chat_body(max_tokens=300, stream=True)).encode()))
    await reader.readuntil(b"data:")
    writer.close()
    deadline = asyncio.get_running_loop().time() + 5
    while not gw.rows() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)  # poll the ledger until the row lands
    [row] = gw.rows()
    assert (row["error"], row["stream"], row["status"]) == ("client_disconnected", 1, 200)
    # Metered by tokens: the rest of the stream is read for its usage chunk (not by counting
    # the chunks the client saw, which undercounted and left tokens_in at 0).
    assert (row["tokens_in"], row["tokens_out"]) == (10, 300)
