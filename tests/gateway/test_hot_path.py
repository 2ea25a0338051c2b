"""The hot path's building blocks: the bounded memo, the ledger row, the stages as called."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest

from gateway.config import Limits
from gateway.connection import ConnectionSet, ResponseWriter
from gateway.context import Meter
from gateway.http11 import Request
from gateway.memo import Memo
from gateway.stages import bound
from scenarios.ledger import COLUMN_NAMES
from tests.gateway.conftest import StartGateway, chat_body
from tests.gateway.test_hardening import body_of, post, status_of


def test_a_memo_computes_each_key_once_and_empties_when_full() -> None:
    calls: list[str] = []

    def upper(key: str) -> str:
        calls.append(key)
        return key.upper()

    memo = Memo(upper, 2)
    assert [memo["a"], memo["a"], memo["b"], memo["a"]] == ["A", "A", "B", "A"]
    assert calls == ["a", "b"]
    assert memo["c"] == "C"  # full: emptied, then holds the new key only
    assert dict(memo) == {"c": "C"}
    assert memo["a"] == "A"
    assert calls == ["a", "b", "c", "a"]


def test_a_memo_stores_nothing_for_a_call_that_raises() -> None:
    def parse(key: str) -> int:
        return int(key)

    memo = Memo(parse, 8)
    with pytest.raises(ValueError, match="invalid literal"):
        memo["x"]
    assert dict(memo) == {}
    with pytest.raises(ValueError, match=r"size \(0\) must be at least 1"):
        Memo(parse, 0)


def test_a_meter_row_is_its_columns_in_the_contract_order() -> None:
    at = dt.datetime(2024, 7, 10, tzinfo=dt.UTC)
    meter = Meter("req_1", 1720569600.5, "2024-07-10T00:00:00Z", at)
    meter.org, meter.asn, meter.status, meter.ttft_ms = "us-startup-000001", 7018, 200, 12.5
    row = meter.row(3.25)
    assert row == tuple(getattr(meter, name) for name in COLUMN_NAMES)
    assert (row[0], row[COLUMN_NAMES.index("total_ms")], len(row)) == ("req_1", 3.25, 26)


def test_stages_are_called_as_bound_methods_or_as_the_functions_they_are() -> None:
    class Stage:
        def __call__(self, ctx: object) -> None:
            seen.append((self, ctx))

    class Derived(Stage):
        pass

    def function_stage(ctx: object) -> None:
        seen.append((None, ctx))

    seen: list[tuple[object, object]] = []
    first, second = Stage(), Derived()
    calls = [bound(first), bound(second), bound(function_stage)]  # type: ignore[arg-type]
    for call in calls:
        call(1)  # type: ignore[arg-type]
    assert seen == [(first, 1), (second, 1), (None, 1)]
    assert calls[2] is function_stage
    assert calls[0].__self__ is first  # type: ignore[attr-defined]


def _connection_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks()
            if getattr(t.get_coro(), "__qualname__", "") == "HttpConnection._serve"]


async def test_one_task_serves_a_connection_s_requests_in_order_and_ends_with_it(
        start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    port = int(gw.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    get = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    writer.write(get + post(json.dumps(chat_body()).encode(), close=False) + get)  # pipelined
    answers = [await _response(reader) for _ in range(3)]
    assert [status_of(a) for a in answers] == [200, 200, 200]
    assert [body_of(a) for a in answers][0::2] == [b'{"status":"ok"}', b'{"status":"ok"}']
    assert json.loads(body_of(answers[1]))["object"] == "chat.completion"
    tasks = _connection_tasks()
    assert len(tasks) == 1  # waiting for this connection's next request
    writer.write(get)  # keep-alive: the same task takes it
    assert status_of(await _response(reader)) == 200
    assert _connection_tasks() == tasks
    writer.close()
    await asyncio.wait_for(tasks[0], 5)  # the connection closed: its task ended
    assert len(gw.rows()) == 1


async def _response(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    return head + await reader.readexactly(length)


class _Transport:
    """What HttpConnection uses of a transport, recording what is written."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", 40000) if name == "peername" else None

    def close(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def test_a_request_whose_client_left_before_it_started_is_still_handled() -> None:
    """As with a task per request: a request received is run (and so metered) even when the
    connection is lost before its task got to it."""
    handled: list[str] = []

    def handler(request: Request, writer: ResponseWriter) -> None:
        handled.append(request.path)
        writer.send(200, [], b"{}")

    connections = ConnectionSet(handler, Limits(), asyncio.get_running_loop())
    conn = connections.factory()
    conn.connection_made(_Transport())  # type: ignore[arg-type]
    conn.data_received(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    conn.connection_lost(None)  # in the same turn of the loop: the task has not run yet
    tasks = _connection_tasks()
    assert len(tasks) == 1
    await asyncio.wait_for(tasks[0], 5)
    assert handled == ["/healthz"]
    assert not conn.running
