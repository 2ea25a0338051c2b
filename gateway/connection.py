"""The server side of one client connection: parse requests, hand them to the handler, write back.

Requests are parsed by httptools (llhttp, the parser of Node.js and uvicorn: maintained, fuzzed,
strict per RFC 9112 by default and linear in its input) behind our own ``asyncio.Protocol``. On top
of llhttp's checks the gateway refuses what it does not serve: a version other than 1.0/1.1, a
target that is not origin-form, an HTTP/1.1 request without exactly one Host, any transfer coding
but ``chunked``, and heads, trailers or bodies above the limits.

A connection is in one phase at a time, each with a deadline that a once-per-interval sweep
enforces (cheaper than a timer per request, and exact enough for slowloris protection):

* ``IDLE``  keep-alive: waiting for the next request (``keepalive_timeout_s``)
* ``HEAD``  the first byte of a request arrived; the head must be complete by ``header_timeout_s``
* ``BODY``  the head is complete; the body must be complete by ``body_timeout_s`` after it
* ``BUSY``  refused: the error answer is written, the connection closes

While a request is handled (``running``) no deadline applies: the upstream timeouts bound it.

Independently, a response the client does not read (the transport's buffer above its high-water
mark) must drain within ``send_timeout_s``, or the connection is aborted: a slow reader cannot
hold its admission slot and its buffered response forever.

Requests on one connection are handled in order (pipelining is allowed, answered sequentially).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, cast

import httptools

from gateway.config import Limits
from gateway.errors import BadRequest, ClientError, PayloadTooLarge, error_body
from gateway.http11 import HeaderTooLarge, Request, encode_head, wants_keep_alive

log = logging.getLogger("regionblock.gateway")

IDLE, HEAD, BODY, BUSY = range(4)
_VERSIONS = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0"}  # the versions served, as Request.version
_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH")}
_JSON = ("content-type", "application/json")
_CLOSE = ("connection", "close")
_MAX_PIPELINED = 16  # complete requests queued on one connection before reading pauses
_LINGER_S = 2.0  # after our FIN, how long the client's remaining bytes are read and discarded
_MAX_NAMES = 4096  # raw header names remembered with their lower-case key (bounded: clients choose them)


class ClientGone(Exception):
    """The client closed the connection (or was cut off) while its response was being written."""


class ResponseWriter:
    """Writes one response: whole (``send``) or streamed (``start``/``write``/``end``).

    The head is encoded (and its values checked) before the response counts as started, so a bad
    header value is an error the handler can still answer, not a response that never comes.
    Streams are chunked for HTTP/1.1 and delimited by closing the connection for HTTP/1.0.
    """

    __slots__ = ("_conn", "finished", "head_only", "http10", "started", "status")

    def __init__(self, conn: HttpConnection, *, http10: bool = False,
                 head_only: bool = False) -> None:
        self._conn = conn
        self.http10 = http10
        self.head_only = head_only
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
        tail = (b"content-length: %d\r\n" if conn.keep_alive else
                b"content-length: %d\r\nconnection: close\r\n") % len(body)
        head = encode_head(status, headers, tail)
        self.started = self.finished = True
        self.status = status
        conn.write(head if self.head_only else head + body)

    def start(self, status: int, headers: list[tuple[str, str]]) -> None:
        """Begin a streamed response (server-sent events)."""
        conn = self._conn
        if self.http10:
            conn.keep_alive = False  # HTTP/1.0 has no chunked coding: the end is the close
            extra = [_CLOSE]
        else:
            extra = [("transfer-encoding", "chunked")]
            if not conn.keep_alive:
                extra.append(_CLOSE)
        head = encode_head(status, [*headers, *extra])
        self.started = True
        self.status = status
        conn.write(head)

    async def write(self, data: bytes) -> None:
        """One piece; waits while the client reads slower than we write. ClientGone if it left."""
        if not data:
            return
        conn = self._conn
        if conn.closed:
            raise ClientGone
        conn.write(data if self.http10 else b"%x\r\n%b\r\n" % (len(data), data))
        if conn.write_paused:
            await conn.drained()

    def end(self, last: bytes = b"") -> None:
        """The last piece (optional) and, for HTTP/1.1, the terminating zero-length chunk."""
        self.finished = True
        if self.http10:
            if last:
                self._conn.write(last)
            return
        data = b"%x\r\n%b\r\n0\r\n\r\n" % (len(last), last) if last else b"0\r\n\r\n"
        self._conn.write(data)

    def abort(self, last: bytes = b"") -> None:
        """End a started stream as broken: ``last`` (an error event) and then the connection
        closes without the terminating chunk, so a client cannot take a truncated answer for a
        complete one (httpx, and so the openai SDK, raise on the incomplete chunked body)."""
        if last and not self._conn.closed:
            self._conn.write(last if self.http10 else b"%x\r\n%b\r\n" % (len(last), last))
        self._conn.keep_alive = False
        self._conn.close()


#: Answers a request at once (None) or by the awaitable it returns.
Handler = Callable[[Request, ResponseWriter], Awaitable[None] | None]


class RefusalHook(Protocol):
    """Called for a request refused at the HTTP level (400/408/413/431): meters it and returns
    the headers (``x-request-id``) its answer carries."""

    def __call__(self, peer: str, exc: ClientError, wall_time: float) -> list[tuple[str, str]]: ...


def _no_refusal_hook(peer: str, exc: ClientError, wall_time: float) -> list[tuple[str, str]]:
    return []


class ConnectionSet:
    """The server's open connections, their deadlines, and graceful closing."""

    def __init__(self, handler: Handler, limits: Limits, loop: asyncio.AbstractEventLoop,
                 refused: RefusalHook = _no_refusal_hook) -> None:
        self.handler = handler
        self.refused = refused
        self.limits = limits
        self.loop = loop
        self.connections: set[HttpConnection] = set()
        # Header names as sent → lower-case str: clients repeat the same few on every request.
        self.header_names: dict[bytes, str] = {}
        self.closing = False
        self._sweeper: asyncio.TimerHandle | None = None
        timeouts = (limits.header_timeout_s, limits.body_timeout_s, limits.keepalive_timeout_s,
                    limits.send_timeout_s)
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
        return sum(1 for c in self.connections if c.running)

    def begin_close(self) -> None:
        """Stop keep-alive: idle connections close now, busy ones after their response."""
        self.closing = True
        for conn in list(self.connections):
            conn.keep_alive = False
            if conn.phase == IDLE and not conn.running and not conn.queued:
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
    """One client connection; also the target of httptools' parser callbacks."""

    def __init__(self, owner: ConnectionSet) -> None:
        self.owner = owner
        self.limits = owner.limits
        self.loop = owner.loop
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.phase = IDLE
        self.deadline = 0.0
        self.keep_alive = True
        self.closed = False
        self.write_paused = False
        self._write_deadline = 0.0
        self._drain: asyncio.Future[None] | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._names = owner.header_names
        self._queue: collections.deque[Request] = collections.deque()
        self._error: ClientError | None = None  # a parse error, answered after queued requests
        self._read_paused = False
        self._running = False
        # The connection's one task runs its requests one after the other; between requests it
        # waits on ``_waiter`` (a task per request costs more: its creation, registration, and
        # a coroutine for each).
        self._task: asyncio.Task[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._lingering = False
        self._eof = False  # the client half-closed its side
        # The message being parsed.
        self._url = b""
        self._headers: dict[str, str] = {}
        self._fields: list[tuple[bytes, bytes]] = []  # (name, value) as parsed: head, trailers
        self._head_size = 0  # bytes of the head (or of the trailer section) parsed so far
        self._head_fields = 0  # how many of them are the head's (the rest: trailers)
        self._hosts = 0
        self._quiet = 0  # bytes received in reads that completed no piece of the message
        self._body: list[bytes] = []
        self._body_len = 0
        self._progress = False  # a piece of the message was parsed during the current read
        self._wall = 0.0
        self._started = 0.0
        self._version = ""  # "HTTP/1.1" or "HTTP/1.0", from the head
        limits = self.limits
        self._max_head = limits.max_header_bytes
        self._max_fields = limits.max_headers
        self._max_body = limits.max_body_bytes

    @property
    def running(self) -> bool:
        """A request of this connection is being handled."""
        return self._running

    @property
    def queued(self) -> int:
        return len(self._queue)

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
        self._wake_task()  # it ends: no request can come any more

    def data_received(self, data: bytes) -> None:
        if self._error is not None or self.closed:
            return  # refused or lingering: what the client still sends is discarded
        self._progress = False
        fields_before = len(self._fields)
        try:
            self._parser.feed_data(data)
            if self.phase != IDLE:  # the read ended inside a message
                self._bound_partial(len(data), fields_before)
            elif self._quiet:
                self._quiet = 0
        except httptools.HttpParserUpgrade:
            if self._queue:  # no upgrade is served: answer what came, then close
                self._queue[-1].keep_alive = False
        except ClientError as exc:
            self._fail(exc)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__cause__ or exc.__context__
            self._fail(cause if isinstance(cause, ClientError) else _malformed(exc))
        except httptools.HttpParserError as exc:
            self._fail(_malformed(exc))
        if len(self._queue) >= _MAX_PIPELINED:
            self._pause_reading()
        self._next()

    def _bound_partial(self, received: int, fields_before: int) -> None:
        """After a read that ended inside a message: the header fields so far within the limits,
        and httptools' own buffer bounded too. httptools buffers an incomplete URL, header line,
        chunk extension or trailer field without limit; bytes that complete nothing count against
        the head limit (so the bound is the limit plus one read)."""
        self._check_fields()
        if self._progress or len(self._fields) != fields_before:
            self._quiet = 0
            return
        self._quiet += received
        if self._quiet > self._max_head:
            what = "request head" if self.phase == HEAD else "chunk extension or trailer section"
            raise HeaderTooLarge(f"{what} exceeds {self.limits.max_header_bytes} bytes")

    def _check_fields(self) -> None:
        """The header fields (of the head, or of the trailer section) within the limits: checked
        once the head is complete and after every read that ends inside a message, not field by
        field (a read adds at most its own size: the bound is the limit plus one read)."""
        if len(self._fields) > self._max_fields:
            raise HeaderTooLarge(f"more than {self.limits.max_headers} header fields")
        if self._head_size > self._max_head:
            what = "request head" if self.phase == HEAD else "chunked trailer section"
            raise HeaderTooLarge(f"{what} exceeds {self.limits.max_header_bytes} bytes")

    def pause_writing(self) -> None:
        self.write_paused = True
        self._write_deadline = self.loop.time() + self.limits.send_timeout_s

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_drain()

    # ---------------------------------------------------------------- httptools callbacks

    def on_message_begin(self) -> None:
        self.phase = HEAD
        self.deadline = self.loop.time() + self.limits.header_timeout_s
        self._url = b""
        self._fields = []
        self._body_len = self._head_size = 0
        self._body = []
        self._wall = time.time()
        self._started = time.perf_counter()
        self._progress = True

    def on_url(self, url: bytes) -> None:
        self._progress = True
        self._url += url
        self._head_size += len(url)
        if self._head_size > self._max_head:
            raise HeaderTooLarge(f"request head exceeds {self.limits.max_header_bytes} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        # Only kept and measured here (one call per field: the cheaper the better); checked by
        # _check_fields, made ``Request.headers`` in on_headers_complete; trailers are skipped.
        self._fields.append((name, value))
        self._head_size += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        parser = self._parser
        self._check_fields()
        fields = self._fields
        self._head_fields = len(fields)
        self._headers = headers = self._header_dict(fields)
        version = parser.get_http_version()
        self._version = _VERSIONS.get(version, "")
        if not self._version:
            raise BadRequest("unsupported HTTP version", code="http_version_not_supported")
        if not self._url.startswith(b"/"):
            raise BadRequest("malformed request target (origin-form only)",
                             code="bad_request_target")
        if version == "1.1" and self._hosts != 1:
            # RFC 9112 section 3.2: 400 to an HTTP/1.1 request without a Host or with several.
            raise BadRequest("an HTTP/1.1 request needs exactly one Host header field",
                             code="bad_host")
        te = headers.get("transfer-encoding")
        if te is not None and te.lower() != "chunked":
            raise BadRequest(f"unsupported transfer coding {te!r}", code="bad_framing")
        length = headers.get("content-length")
        if length is not None and int(length) > self.limits.max_body_bytes:
            raise PayloadTooLarge(f"request body of {length} bytes exceeds the limit of "
                                  f"{self.limits.max_body_bytes} bytes")
        self.phase = BODY
        self._progress = True
        self._head_size = 0  # from now on: of the trailer section
        self.deadline = self.loop.time() + self.limits.body_timeout_s
        if headers.get("expect", "").lower() == "100-continue" and not self._running \
                and not self._queue:
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _header_dict(self, fields: list[tuple[bytes, bytes]]) -> dict[str, str]:
        """Lower-case names → values (Latin-1 text); a repeated field's values joined by ", "."""
        names = self._names
        headers: dict[str, str] = {}
        hosts = 0
        for name, value in fields:
            key = names.get(name) or self._name_of(name)
            text = value.decode("latin-1")
            if key in headers:
                headers[key] = f"{headers[key]}, {text}"
            else:
                headers[key] = text
            if key == "host":
                hosts += 1
        self._hosts = hosts
        return headers

    def _name_of(self, name: bytes) -> str:
        key = name.decode("latin-1").lower()
        if len(self._names) < _MAX_NAMES:
            self._names[name] = key
        return key

    def on_body(self, body: bytes) -> None:
        self._body_len += len(body)
        self._progress = True
        if self._body_len > self._max_body:
            raise PayloadTooLarge(f"request body exceeds the limit of "
                                  f"{self.limits.max_body_bytes} bytes")
        self._body.append(body)

    def on_message_complete(self) -> None:
        if len(self._fields) > self._head_fields:
            self._check_fields()  # the trailer section
        path, _, query = self._url.decode("latin-1").partition("?")
        version = self._version
        keep = wants_keep_alive(version, self._headers) and not self.owner.closing
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        raw_method = self._parser.get_method()
        method = _METHODS.get(raw_method) or raw_method.decode("ascii")
        self._queue.append(Request(method, path, query, version, self._headers, self.peer, body,
                                   keep, self._wall, self._started))
        self.phase = IDLE
        self._progress = True
        self._body = []

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
            self._wake_drain()

    def _linger(self) -> None:
        """Close after an answer while the client may still be sending: send our FIN but keep
        reading (and discarding) for a moment, as nginx's lingering_close does. Closing with
        unread input makes the kernel send a reset, which can destroy the answer in flight."""
        transport = self.transport
        if transport is None or self.closed:
            return
        self.closed = True
        self._wake_drain()
        if not transport.can_write_eof():
            transport.close()
            return
        if self._eof:  # nothing more can come: no need to linger
            transport.close()
            return
        transport.write_eof()
        self._lingering = True
        self.deadline = self.loop.time() + _LINGER_S
        if self._read_paused:
            self._read_paused = False
            transport.resume_reading()

    def eof_received(self) -> bool | None:
        """The client half-closed: answer what it asked (keep our side open), then close."""
        self._eof = True
        if self._lingering and self.transport is not None:
            self.transport.close()  # the client is done too
            return None
        if self._running or self._queue:
            self.keep_alive = False
            for request in self._queue:
                request.keep_alive = False
            return True
        return None

    def _abort(self) -> None:
        """Drop the connection and whatever it still had to send (a reader that stopped)."""
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.abort()
            self._wake_drain()

    # ---------------------------------------------------------------- running requests

    def _next(self) -> None:
        """Start the next queued request, or answer a pending parse error, when nothing runs."""
        if self._running or self.closed:
            return
        if self._queue:
            self._running = True  # the task takes the request: now, or when it resumes
            if self._waiter is not None:
                self._wake_task()
            elif self._task is None:
                self._task = self.loop.create_task(self._serve())
            # else: the task itself is finishing a request (in _after_response) and goes on
        elif self._error is not None:
            self._refuse(self._error)

    def _wake_task(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def _serve(self) -> None:
        """The connection's task: each queued request in turn while ``_next`` marks one running
        (run even if the client has gone meanwhile, as a task of its own would be: it is still
        metered); otherwise it waits for the next, and ends with the connection."""
        while self._running:
            request = self._queue.popleft()
            writer = ResponseWriter(self, http10=request.version == "HTTP/1.0",
                                    head_only=request.method == "HEAD")
            self.keep_alive = request.keep_alive and not self.owner.closing
            try:
                pending = self.owner.handler(request, writer)
                if pending is not None:
                    await pending
            except ClientGone:
                pass
            except Exception:  # the last line of defence: never a traceback to the client
                log.exception("unhandled error on %s %s", request.method, request.path)
                if not writer.started:
                    writer.send(500, [_JSON], error_body("internal error", type_="server_error",
                                                         code="internal_error"))
            if not writer.finished:
                self.keep_alive = False  # a half-written response cannot be followed by another
            self._running = False
            self._after_response()  # may mark the next queued request running (_next)
            if not self._running and not self.closed:
                self._waiter = self.loop.create_future()
                await self._waiter
        self._task = None

    def _after_response(self) -> None:
        if not self.keep_alive or self.closed:
            self._linger()
            return
        if self._read_paused and self.transport is not None:
            self._read_paused = False
            self.transport.resume_reading()
        if self._queue or self._error is not None:
            self._next()
            return
        # A message half-received while we were busy gets its full allowance from now.
        limits = self.limits
        phase = self.phase
        timeout = limits.keepalive_timeout_s if phase == IDLE else \
            limits.header_timeout_s if phase == HEAD else limits.body_timeout_s
        self.deadline = self.loop.time() + timeout

    def _pause_reading(self) -> None:
        if not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()

    def _fail(self, exc: ClientError) -> None:
        """A parse error: nothing more is read; answered once the queued requests are."""
        self._error = exc
        self._pause_reading()

    def _refuse(self, exc: ClientError) -> None:
        """Answer a request we could not parse, then close (the stream position is lost)."""
        self.keep_alive = False
        self.phase = BUSY
        extra = self.owner.refused(self.peer, exc, time.time())
        body = exc.body()
        self.write(encode_head(exc.status, [_JSON, *extra, ("content-length", str(len(body))),
                                            _CLOSE]) + body)
        self._linger()

    def check_deadline(self, now: float) -> None:
        if self._lingering:
            if now >= self.deadline and self.transport is not None:
                self.transport.close()
            return
        if self.closed:
            return
        if self.write_paused and now >= self._write_deadline:
            self._abort()  # the client has not read for send_timeout_s
            return
        if self.phase == BUSY or self._running or self._queue or now < self.deadline:
            return
        if self.phase == IDLE:
            self.close()
            return
        what = "request head" if self.phase == HEAD else "request body"
        self._refuse(BadRequest(f"timed out reading the {what}", code="request_timeout",
                                status=408))


def _malformed(exc: Exception) -> ClientError:
    return BadRequest(f"malformed HTTP request: {exc}", code="bad_http")
