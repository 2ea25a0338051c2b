"""A seeded, bounded mutation fuzzer of valid requests, and overload by hostile connections.

Valid requests (plain, streamed, chunked, pipelined) are mutated byte- and field-wise by a
``random.Random`` with a fixed seed, each sent on its own connection. Over every response the
gateway writes, these must hold:

* it is well-formed HTTP/1.1 (parsed by llhttp on the client side too) and not a 5xx: the fake
  upstream never fails, so any 5xx would be the gateway's own;
* it carries an ``x-request-id``, and the ledger holds exactly one row with that id;
* no request stalls the event loop for more than 100 ms (a loop-lag probe runs throughout).
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
from collections import Counter

import httptools

from gateway.config import Limits
from tests.gateway.conftest import Harness, StartGateway, chat_body
from tests.gateway.test_hardening import AUTH
from tests.gateway.test_hostile import MAX_LAG_S, LagProbe

SEED = 20241201
CASES = 400
CONCURRENCY = 16
_SPECIAL = [b"\r", b"\n", b"\r\n", b"\x00", b"\x0b", b"\x85", b"\xa0", b" ", b"\t", b":", b",",
            b"\xb2", b"\xd9\xa3", b"\\ud800", b"\xed\xa0\x80", b"0", b"9" * 12, b"-1", b"chunked"]
_HEADERS = [b"Content-Length: 5\r\n", b"Transfer-Encoding: chunked\r\n", b"Host: y\r\n",
            b"Expect: 100-continue\r\n", b"Connection: keep-alive\r\n", b"Upgrade: h2c\r\n",
            b"Transfer-Encoding: gzip\r\n", b"Content-Length: 1\xb2\r\n"]


def seeds() -> list[bytes]:
    """The valid requests the mutations start from."""
    plain = json.dumps(chat_body(max_tokens=3)).encode()
    stream = json.dumps(chat_body(max_tokens=3, stream=True)).encode()
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + AUTH

    def sized(body: bytes, close: bool = True) -> bytes:
        return (head + (b"Connection: close\r\n" if close else b"")
                + b"Content-Length: %d\r\n\r\n" % len(body) + body)

    chunked = (head + b"Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in (plain[:7], plain[7:])) + b"0\r\n\r\n")
    return [sized(plain), sized(stream), chunked, sized(plain, close=False) + sized(plain)]


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One to three mutations: flip, insert, delete, duplicate a line, splice a header."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(6)
        at = rng.randrange(len(out) + 1)
        if kind == 0 and out:
            out[min(at, len(out) - 1)] = rng.randrange(256)
        elif kind == 1:
            out[at:at] = rng.choice(_SPECIAL)
        elif kind == 2:
            del out[at:at + rng.randint(1, 8)]
        elif kind == 3:
            lines = bytes(out).split(b"\r\n")
            i = rng.randrange(len(lines))
            lines.insert(i, lines[i])
            out = bytearray(b"\r\n".join(lines))
        elif kind == 4:
            end = out.find(b"\r\n") + 2
            out[end:end] = rng.choice(_HEADERS)
        else:
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
    return bytes(out)


class Responses:
    """(status, x-request-id) of each response in one connection's bytes, parsed by llhttp."""

    def __init__(self, data: bytes) -> None:
        self.found: list[tuple[int, str | None]] = []
        self._id: str | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.complete = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"x-request-id":
            self._id = value.decode()

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        if status != 100:  # an interim 100 Continue is not the response
            self.found.append((status, self._id))
        self._id = None


async def exchange(gw: Harness, data: bytes) -> bytes:
    port = int(gw.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    try:
        async with asyncio.timeout(10):
            return await reader.read(-1)
    finally:
        writer.close()


async def test_mutated_requests_keep_every_promise(start_gateway: StartGateway) -> None:
    gw = await start_gateway(limits=Limits(header_timeout_s=0.3, body_timeout_s=0.3,
                                           keepalive_timeout_s=0.3, max_body_bytes=64 * 1024))
    rng = random.Random(SEED)
    base = seeds()
    cases = [mutate(rng, rng.choice(base)) for _ in range(CASES)]
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(data: bytes) -> bytes:
        async with gate:
            return await exchange(gw, data)

    assert (await gw.chat())[0] == 200  # warm: GeoIP tables, policy caches, the fake upstream
    async with LagProbe().running() as probe:
        answers = await asyncio.gather(*(one(c) for c in cases))
    ids: list[str] = []
    statuses: Counter[int] = Counter()
    for data, answer in zip(cases, answers, strict=True):
        responses = Responses(answer)
        assert responses.complete, (data, answer[:300])
        for status, request_id in responses.found:
            statuses[status] += 1
            assert status < 500, (data, answer[:300])
            assert request_id is not None, (data, answer[:300])
            ids.append(request_id)
    db = sqlite3.connect(gw.ledger)
    per_id = Counter(r[0] for r in db.execute("SELECT request_id FROM requests"))
    db.close()
    assert all(per_id[i] == 1 for i in ids), [i for i in ids if per_id[i] != 1][:5]
    assert len(set(ids)) == len(ids)
    assert probe.worst < MAX_LAG_S
    # The fuzzer reached both sides: served requests and refusals.
    assert statuses[200] > 20 and statuses[400] > 50, statuses


async def test_a_normal_client_is_served_among_1000_hostile_connections(
        start_gateway: StartGateway) -> None:
    """1,000 connections that send half a head and stop, plus readers that never read: the
    admission limit, the head timeout and the send timeout keep a normal client served."""
    gw = await start_gateway(limits=Limits(max_inflight=64, header_timeout_s=5.0,
                                           send_timeout_s=0.5))
    port = int(gw.url.rsplit(":", 1)[1])
    hostile = []
    for _ in range(1000):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Le")
        hostile.append(writer)
    try:
        async with LagProbe().running() as probe:
            results = [await gw.chat() for _ in range(20)]
        assert [status for status, _, _ in results] == [200] * 20
        assert probe.worst < MAX_LAG_S
    finally:
        for writer in hostile:
            writer.close()
