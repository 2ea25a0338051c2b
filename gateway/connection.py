"""The server side of one client connection: read requests, hand them to the handler, write back.

An ``asyncio.Protocol`` rather than streams, for the gateway's CPU budget. A connection is in one
phase at a time, each with a deadline that a once-per-interval sweep enforces (cheaper than a
timer per request, and exact enough for slowloris protection):

* ``IDLE``  keep-alive: waiting for the next request (``keepalive_timeout_s``)
* ``HEAD``  the first byte of a request arrived; the head must be complete by ``header_timeout_s``
* ``BODY``  the head is complete; the body must be complete by ``body_timeout_s`` after it
* ``BUSY``  the handler runs (bounded by the upstream timeouts, not by this clock)

Requests on one connection are handled in order (pipelining is allowed, answered sequentially).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import cast

from gateway.config import Limits
from gateway.errors import ClientError, error_body
from gateway.http11 import (
    Head,
    HeaderTooLarge,
    Request,
    encode_head,
    parse_chunked,
    parse_request_head,
    wants_keep_alive,
)

log = logging.getLogger("regionblock.gateway")

IDLE, HEAD, BODY, BUSY = range(4)
_JSON = ("content-type", "application/json")
_CLOSE = ("connection", "close")


class ClientGone(Exception):
    """The client closed the connection while its response was being written."""


class ResponseWriter:
    """Writes one response: whole (``send``) or streamed in chunks (``start``/``write``/``end``)."""

    __slots__ = ("_conn", "finished", "started", "status")

    def __init__(self, conn: HttpConnection) -> None:
        self._conn = conn
        self.started = False
        self.finished = False
        self.status = 0

    @property
    def closed(self) -> bool:
        return self._conn.closed

    def send(self, status: int, headers: list[tuple[str, str]] | tuple[tuple[str, str], ...],
             body: bytes) -> None:
        """The whole response at once; Content-Length and Connection are added here."""
        conn = self._conn
        extra = [("content-length", str(len(body)))]
        if not conn.keep_alive:
            extra.append(_CLOSE)
        self.started = self.finished = True
        self.status = status
        conn.write(encode_head(status, [*headers, *extra]) + body)

    def start(self, status: int, headers: list[tuple[str, str]]) -> None:
        """Begin a chunked response (server-sent events)."""
        extra = [("transfer-encoding", "chunked")]
        if not self._conn.keep_alive:
            extra.append(_CLOSE)
        self.started = True
        self.status = status
        self._conn.write(encode_head(status, [*headers, *extra]))

    async def write(self, data: bytes) -> None:
        """One chunk; waits while the client reads slower than we write. ClientGone if it left."""
        if not data:
            return
        conn = self._conn
        if conn.closed:
            raise ClientGone
        conn.write(b"%x\r\n%b\r\n" % (len(data), data))
        if conn.write_paused:
            await conn.drained()

    def end(self, last: bytes = b"") -> None:
        """The last chunk (optional) and the terminating zero-length chunk."""
        self.finished = True
        data = b"%x\r\n%b\r\n0\r\n\r\n" % (len(last), last) if last else b"0\r\n\r\n"
        self._conn.write(data)


Handler = Callable[[Request, ResponseWriter], Awaitable[None]]


class ConnectionSet:
    """The server's open connections, their deadlines, and graceful closing."""

    def __init__(self, handler: Handler, limits: Limits, loop: asyncio.AbstractEventLoop) -> None:
        self.handler = handler
        self.limits = limits
        self.loop = loop
        self.connections: set[HttpConnection] = set()
        self.closing = False
        self._sweeper: asyncio.TimerHandle | None = None
        timeouts = (limits.header_timeout_s, limits.body_timeout_s, limits.keepalive_timeout_s)
        self._interval = max(0.01, min(1.0, min(timeouts) / 4))

    def factory(self) -> HttpConnection:
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(self._interval, self._sweep)
        return HttpConnection(self)

    def _sweep(self) -> None:
        now = self.loop.time()
        for conn in list(self.connections):
            conn.check_deadline(now)
        self._sweeper = self.loop.call_later(self._interval, self._sweep)

    def busy(self) -> int:
        return sum(1 for c in self.connections if c.phase == BUSY)

    def begin_close(self) -> None:
        """Stop keep-alive: idle connections close now, busy ones after their response."""
        self.closing = True
        for conn in list(self.connections):
            conn.keep_alive = False
            if conn.phase == IDLE:
                conn.close()

    async def wait_idle(self, timeout: float) -> bool:
        deadline = self.loop.time() + timeout
        while self.busy() and self.loop.time() < deadline:
            await asyncio.sleep(0.01)  # graceful drain: poll in-flight count until the deadline
        return self.busy() == 0

    def close_all(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for conn in list(self.connections):
            conn.close()


class HttpConnection(asyncio.Protocol):
    """One client connection."""

    def __init__(self, owner: ConnectionSet) -> None:
        self.owner = owner
        self.limits = owner.limits
        self.loop = owner.loop
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.buf = bytearray()
        self.phase = IDLE
        self.deadline = 0.0
        self.keep_alive = True
        self.closed = False
        self.write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._head: Head | None = None
        self._head_end = 0
        self._read_paused = False
        self._continue_sent = False

    # ---------------------------------------------------------------- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its interface.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) and peer else ""
        self.owner.connections.add(self)
        self.deadline = self.loop.time() + self.limits.header_timeout_s
        if self.owner.closing:
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.owner.connections.discard(self)
        self._wake_drain()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.phase == BUSY:
            if len(self.buf) > self.limits.max_header_bytes + self.limits.max_body_bytes:
                self._pause_reading()
            return
        if self.phase == IDLE:
            self.phase = HEAD
            self.deadline = self.loop.time() + self.limits.header_timeout_s
        self._process()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_drain()

    # ---------------------------------------------------------------- writing

    def write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    async def drained(self) -> None:
        if self.closed:
            raise ClientGone
        self._drain = self.loop.create_future()
        await self._drain
        if self.closed:
            raise ClientGone

    def _wake_drain(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()

    # ---------------------------------------------------------------- reading requests

    def _process(self) -> None:
        try:
            request = self._parse()
        except ClientError as exc:
            self._refuse(exc.status, exc.body())
            return
        if request is not None:
            self.phase = BUSY
            self.loop.create_task(self._run(request))

    def _parse(self) -> Request | None:
        limits = self.limits
        buf = self.buf
        if self._head is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > limits.max_header_bytes:
                    raise _too_large_head(limits.max_header_bytes)
                return None
            if end > limits.max_header_bytes:
                raise _too_large_head(limits.max_header_bytes)
            self._head = parse_request_head(bytes(buf[:end]), max_headers=limits.max_headers,
                                            max_body=limits.max_body_bytes)
            self._head_end = end + 4
            self.phase = BODY
            self.deadline = self.loop.time() + limits.body_timeout_s
        head = self._head
        body = self._body(head)
        if body is None:
            return None
        return self._request(head, body)

    def _body(self, head: Head) -> bytes | None:
        start = self._head_end
        if head.content_length >= 0:
            end = start + head.content_length
            if len(self.buf) < end:
                self._maybe_continue(head)
                return None
            body = bytes(self.buf[start:end])
        else:
            parsed = parse_chunked(self.buf, start, self.limits.max_body_bytes)
            if parsed is None:
                self._maybe_continue(head)
                return None
            body, end = parsed
        del self.buf[:end]
        return body

    def _maybe_continue(self, head: Head) -> None:
        if not self._continue_sent and head.headers.get("expect", "").lower() == "100-continue":
            self._continue_sent = True
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _request(self, head: Head, body: bytes) -> Request:
        self._head = None
        self._continue_sent = False
        path, _, query = head.target.partition("?")
        keep = wants_keep_alive(head.version, head.headers) and not self.owner.closing
        self.keep_alive = keep
        return Request(head.method, path, query, head.version, head.headers, self.peer, body,
                       keep, time.time(), self.loop.time())

    async def _run(self, request: Request) -> None:
        writer = ResponseWriter(self)
        try:
            await self.owner.handler(request, writer)
        except ClientGone:
            pass
        except Exception:  # the last line of defence: never a traceback to the client
            log.exception("unhandled error on %s %s", request.method, request.path)
            if not writer.started:
                writer.send(500, [_JSON], error_body("internal error", type_="server_error",
                                                     code="internal_error"))
        if not writer.finished:
            self.keep_alive = False  # a half-written response cannot be followed by another
        self._after_response()

    def _after_response(self) -> None:
        if not self.keep_alive or self.closed:
            self.close()
            return
        self.phase = IDLE
        self.deadline = self.loop.time() + self.limits.keepalive_timeout_s
        if self._read_paused and self.transport is not None:
            self._read_paused = False
            self.transport.resume_reading()
        if self.buf:
            self.phase = HEAD
            self.deadline = self.loop.time() + self.limits.header_timeout_s
            self._process()

    def _pause_reading(self) -> None:
        if not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()

    def _refuse(self, status: int, body: bytes) -> None:
        """Answer a request we could not parse, then close (the stream position is lost)."""
        self.keep_alive = False
        self.phase = BUSY
        self.write(encode_head(status, [_JSON, ("content-length", str(len(body))), _CLOSE]) + body)
        self.close()

    def check_deadline(self, now: float) -> None:
        if self.phase == BUSY or now < self.deadline or self.closed:
            return
        if self.phase == IDLE and not self.buf:
            self.close()
            return
        what = "request head" if self.phase == HEAD else "request body"
        self._refuse(408, error_body(f"timed out reading the {what}", type_="invalid_request_error",
                                     code="request_timeout"))


def _too_large_head(limit: int) -> ClientError:
    return HeaderTooLarge(f"request head exceeds {limit} bytes")
