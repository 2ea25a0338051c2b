"""Hostile input over raw sockets: poison bodies, quadratic framing, parser leniency.

Each test here failed before its fix (issue 12): the wire bytes and the ledger are asserted
exactly. The loop-lag probe runs in the gateway's own event loop (the test shares it), so a
request that stalls the loop shows up as a long gap between the probe's ticks.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import time
from collections.abc import AsyncIterator

import pytest

from gateway.config import Limits
from tests.gateway.conftest import Harness, StartGateway, chat_body
from tests.gateway.fake_upstream import Faults
from tests.gateway.test_hardening import AUTH, body_of, post, raw, status_of

PROBE_TICK_S = 0.005
MAX_LAG_S = 0.1


class LagProbe:
    """The longest stall of the event loop, seen by a task that wants to run every 5 ms.

    A stall is measured in CPU time of the loop's thread between two ticks (``worst``), not in
    wall time (``worst_wall``): on a shared machine the process may be preempted for longer than
    any of its callbacks run, and that is not the gateway's doing.
    """

    def __init__(self) -> None:
        self.worst = 0.0
        self.worst_wall = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last, last_cpu = loop.time(), time.thread_time()
        while True:
            await asyncio.sleep(PROBE_TICK_S)
            now, cpu = loop.time(), time.thread_time()
            self.worst_wall = max(self.worst_wall, now - last - PROBE_TICK_S)
            self.worst = max(self.worst, cpu - last_cpu)
            last, last_cpu = now, cpu

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[LagProbe]:
        # As the server does after start-up (gateway.server._freeze_startup_heap): the GeoIP
        # tables are excluded from garbage collection, or a full collection traversing them
        # stalls the loop for tens of milliseconds, whatever the requests do.
        gc.collect()
        gc.freeze()
        self._task = asyncio.get_running_loop().create_task(self._run())
        try:
            yield self
        finally:
            gc.unfreeze()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def header(response: bytes, name: bytes) -> bytes | None:
    head = response.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def error_code(response: bytes) -> str | None:
    code: str | None = json.loads(body_of(response))["error"]["code"]
    return code


# ------------------------------------------------------------------ item 1: poison requests


@pytest.mark.parametrize("sync", ["off", "normal", "full"])
async def test_lone_surrogate_is_400_and_the_gateway_keeps_serving(start_gateway: StartGateway,
                                                                   sync: str) -> None:
    gw = await start_gateway(ledger_sync=sync)
    poison = b'{"model": "\\ud800", "messages": [{"role": "user", "content": "x"}]}'
    response = await raw(gw, post(poison))
    assert (status_of(response), error_code(response)) == (400, "invalid_unicode")
    request_id = header(response, b"x-request-id")
    assert request_id is not None
    assert gw.row(request_id.decode())["status"] == 400
    also = b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "\\udfff x"}]}'
    assert error_code(await raw(gw, post(also))) == "invalid_unicode"
    status, _, _ = await gw.chat()
    assert status == 200  # the ledger still commits: the next request is served
    async with gw.session.get(gw.url + "/readyz") as r:
        assert r.status == 200


async def test_a_surrogate_pair_is_valid_text(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    status, _, _ = await gw.chat(chat_body(content="\U0001f600 emoji"))  # json.dumps: \ud83d\ude00
    assert status == 200


async def test_encoded_surrogate_bytes_are_not_utf8(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    body = b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "\xed\xa0\x80"}]}'
    response = await raw(gw, post(body))
    assert status_of(response) == 400


# ------------------------------------------------------------------ item 2: linear chunked bodies


async def _send_in_pieces(gw: Harness, data: bytes, piece: int) -> bytes:
    port = int(gw.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for at in range(0, len(data), piece):
            writer.write(data[at:at + piece])
            await writer.drain()
        async with asyncio.timeout(20):
            return await reader.read(-1)
    finally:
        writer.close()


async def test_one_byte_chunks_are_parsed_in_linear_time(start_gateway: StartGateway) -> None:
    """600 KB of 1-byte chunks in 4 KB reads: re-parsing from the start on every read took
    seconds of loop time; decoding incrementally keeps every read well under the lag bound."""
    gw = await start_gateway(limits=Limits(max_body_bytes=1024 * 1024))
    body = json.dumps(chat_body(content="y" * 100_000)).encode()
    chunked = b"".join(b"1\r\n%b\r\n" % body[i:i + 1] for i in range(len(body))) + b"0\r\n\r\n"
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + AUTH
            + b"Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n")
    async with LagProbe().running() as probe:
        response = await _send_in_pieces(gw, head + chunked, 4096)
    assert status_of(response) == 200
    assert gw.fake.calls[-1][1]["messages"][0]["content"] == "y" * 100_000
    assert probe.worst < MAX_LAG_S


async def test_trailer_section_is_bounded(start_gateway: StartGateway) -> None:
    gw = await start_gateway(limits=Limits(max_header_bytes=4096))
    body = json.dumps(chat_body()).encode()
    data = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + AUTH
            + b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n%b\r\n0\r\n" % (len(body), body)
            + b"X-Trailer: " + b"t" * 10_000 + b"\r\n\r\n")
    response = await raw(gw, data)
    assert (status_of(response), error_code(response)) == (431, "request_header_fields_too_large")


async def test_small_trailers_are_skipped(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    body = json.dumps(chat_body()).encode()
    data = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Connection: close\r\n"
            + b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n%b\r\n0\r\n" % (len(body), body)
            + b"X-One: 1\r\nX-Two: 2\r\n\r\n")
    assert status_of(await raw(gw, data)) == 200


# ------------------------------------------------------------------ item 5: strict RFC 9112

GET = b"GET /healthz HTTP/1.1\r\n"
STRICT_CASES = {
    "unicode digit in Content-Length": (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1\xb2\r\n\r\n",
        "bad_http"),
    "arabic-indic digit in Content-Length": (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: \xd9\xa3\r\n\r\n",
        "bad_http"),
    "Transfer-Encoding padded with VT": (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\x0b\r\n\r\n",
        "bad_http"),
    "Transfer-Encoding padded with NEL": (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\x85\r\n\r\n",
        "bad_framing"),
    "Transfer-Encoding padded with NBSP": (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \xa0chunked\r\n\r\n",
        "bad_framing"),
    "Transfer-Encoding list": (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        "bad_framing"),
    "two Transfer-Encoding fields": (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n", "bad_http"),
    "Content-Length with a form feed": (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length:\x0c5\r\n\r\n",
        "bad_http"),
    "missing Host on HTTP/1.1": (b"GET /healthz HTTP/1.1\r\nX-A: 1\r\n\r\n", "bad_host"),
    "no header at all on HTTP/1.1": (b"GET /healthz HTTP/1.1\r\n\r\n", "bad_host"),
    "two Host fields": (GET + b"Host: a\r\nHost: b\r\n\r\n", "bad_host"),
    "bare LF line ending": (GET + b"Host: a\nX-B: 1\r\n\r\n", "bad_http"),
    "bare CR inside a value": (GET + b"Host: a\rX-B: 1\r\n\r\n", "bad_http"),
    "NUL in a value": (GET + b"Host: a\x00\r\n\r\n", "bad_http"),
    "space before the colon": (GET + b"Host : a\r\n\r\n", "bad_http"),
}


@pytest.mark.parametrize("case", sorted(STRICT_CASES))
async def test_parser_is_strict(start_gateway: StartGateway, case: str) -> None:
    gw = await start_gateway()
    data, code = STRICT_CASES[case]
    response = await raw(gw, data)
    assert (status_of(response), error_code(response)) == (400, code)
    assert header(response, b"connection") == b"close"


async def test_http10_needs_no_host(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    assert status_of(await raw(gw, b"GET /healthz HTTP/1.0\r\n\r\n")) == 200


async def test_ows_is_space_and_tab_only(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    body = json.dumps(chat_body()).encode()
    data = (b"POST /v1/chat/completions HTTP/1.1\r\nHost:\t x \t\r\n" + AUTH
            + b"Connection: close\r\nContent-Length: \t%d \r\n\r\n" % len(body) + body)
    assert status_of(await raw(gw, data)) == 200


async def test_readyz_says_not_ready_once_the_ledger_writer_died(start_gateway: StartGateway
                                                                 ) -> None:
    gw = await start_gateway(ledger_sync="full")
    assert (await gw.chat())[0] == 200

    def crash(db: object, batch: object) -> None:
        raise RuntimeError("writer bug")

    gw.gateway.ledger._commit = crash  # type: ignore[method-assign]
    status, _, body = await gw.chat()
    assert (status, json.loads(body)["error"]["code"]) == (503, "ledger_unavailable")
    async with gw.session.get(gw.url + "/readyz") as r:
        assert (r.status, (await r.json())["ready"]) == (503, False)
    status, _, _ = await gw.chat()
    assert status == 503  # at once, not a hang


async def test_a_client_that_half_closes_after_its_request_gets_the_answer(
        start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    gw.fake.faults["openai"] = Faults(stall_s=0.2)  # the EOF arrives while the request runs
    port = int(gw.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post(json.dumps(chat_body()).encode(), close=False))
    writer.write_eof()
    async with asyncio.timeout(5):
        response = await reader.read(-1)
    writer.close()
    assert status_of(response) == 200
    assert header(response, b"connection") == b"close"


async def test_a_slow_writer_within_the_timeouts_is_served(start_gateway: StartGateway) -> None:
    """A request trickled 7 bytes at a time (1 ms apart: pacing the input, not waiting for the
    gateway) is parsed across ~100 reads and served."""
    gw = await start_gateway()
    data = post(json.dumps(chat_body()).encode())
    port = int(gw.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.transport.set_write_buffer_limits(0)
    for at in range(0, len(data), 7):
        writer.write(data[at:at + 7])
        await writer.drain()
        await asyncio.sleep(0.001)
    async with asyncio.timeout(5):
        response = await reader.read(-1)
    writer.close()
    assert status_of(response) == 200
