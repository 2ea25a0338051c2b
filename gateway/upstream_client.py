"""A minimal HTTP/1.1 client for the upstream providers: keep-alive pool, timeouts, streaming.

Why not aiohttp's client: its per-request cost (about half the gateway's CPU budget) buys
features the gateway does not use (cookies, redirects, proxies, TLS). This client speaks plain
HTTP/1.1 to one host:port per pool, reuses idle connections (LIFO), and reads bodies framed by
Content-Length, chunked transfer coding, or connection close. A pooled connection that the
upstream closed while idle is detected when the request gets no byte back, and the request is
sent once more on a fresh connection (nothing was processed, so this is safe).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable
from typing import cast

from gateway.config import UpstreamPolicy, UpstreamUrl
from gateway.errors import UpstreamConnectError, UpstreamTimeout
from gateway.http11 import ResponseHead, parse_response_head

_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,8})(?:;[^\r\n]*)?")
_PAUSE_ABOVE = 4 * 1024 * 1024
MAX_BODY = 64 * 1024 * 1024


class _Conn(asyncio.Protocol):
    """One upstream connection: a byte buffer and a waiter woken by new data or EOF."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeouts: _Timeouts) -> None:
        self.loop = loop
        self.timeouts = timeouts
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.eof = False
        self.used = False
        self.deadline = 0.0  # of the current wait (loop time)
        self._waiter: asyncio.Future[None] | None = None
        self._what = ""
        self._timeout = 0.0
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its interface.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) > _PAUSE_ABOVE and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None:
            self._waiter = None
            if not w.done():
                w.set_result(None)

    def wait(self, timeout: float, what: str) -> asyncio.Future[None]:
        """A future done on more data (or EOF), or failed with UpstreamTimeout after ``timeout``
        seconds (the pool's one timer checks the deadline: no timer per wait)."""
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        fut = self._waiter = self.loop.create_future()
        self._what, self._timeout = what, timeout
        self.deadline = self.loop.time() + timeout
        self.timeouts.watch(self)
        return fut

    def expire(self, now: float) -> bool:
        """Fail the wait if its deadline passed; False once nothing is waited for any more."""
        w = self._waiter
        if w is None or w.done():
            return False
        if now >= self.deadline:
            self._waiter = None
            w.set_exception(UpstreamTimeout(f"no {self._what} within {self._timeout:g} s"))
            return False
        return True

    def take(self, n: int) -> bytes:
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def close(self) -> None:
        self.eof = True
        if self.transport is not None:
            self.transport.close()


class _Timeouts:
    """The deadlines of a pool's waiting connections, checked every ``interval`` seconds by one
    timer that runs only while some connection waits (a timer per wait costs more than the
    whole head parse). A wait fails at most ``interval`` after its deadline."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self.loop = loop
        self.interval = interval
        self._waiting: set[_Conn] = set()
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, conn: _Conn) -> None:
        self._waiting.add(conn)
        if self._timer is None:
            self._timer = self.loop.call_later(self.interval, self._check)

    def _check(self) -> None:
        now = self.loop.time()
        self._waiting = {conn for conn in self._waiting if conn.expire(now)}
        self._timer = self.loop.call_later(self.interval, self._check) if self._waiting else None

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class UpstreamResponse:
    """An upstream's response after its head: read the body whole or chunk by chunk."""

    def __init__(self, pool: UpstreamPool, conn: _Conn, head: ResponseHead) -> None:
        self.status = head.status
        self.headers = head.headers
        self._pool = pool
        self._conn = conn
        self._head = head
        self._done = False

    def body_now(self) -> bytes | None:
        """The whole body if it is already here (the usual case: a sized body that came with the
        head), without waiting; else None (then ``read``)."""
        length = self._head.content_length
        conn = self._conn
        if 0 <= length <= len(conn.buf) and not self._done:
            body = conn.take(length)
            self._finish()
            return body
        return None

    async def read(self) -> bytes:
        body = self.body_now()
        if body is not None:
            return body
        parts = [chunk async for chunk in self.chunks()]
        return b"".join(parts)

    async def chunks(self) -> AsyncIterator[bytes]:
        """Body data as it arrives; the connection returns to the pool once the body is done."""
        length = self._head.content_length
        try:
            if length >= 0:
                async for part in self._sized(length):
                    yield part
            elif length == -1:
                async for part in self._chunked():
                    yield part
            else:
                async for part in self._until_close():
                    yield part
        except BaseException:
            self.close()
            raise
        self._finish()

    async def _sized(self, length: int) -> AsyncIterator[bytes]:
        conn, left = self._conn, length
        while left:
            if not conn.buf:
                if conn.eof:
                    raise UpstreamConnectError("upstream closed the connection mid-body")
                await conn.wait(self._pool.policy.read_timeout_s, "response body data")
                continue
            part = conn.take(min(left, len(conn.buf)))
            left -= len(part)
            yield part

    async def _chunked(self) -> AsyncIterator[bytes]:
        conn, total = self._conn, 0
        while True:
            buf = conn.buf
            eol = buf.find(b"\r\n")
            if eol >= 0:
                m = _CHUNK_LINE.fullmatch(bytes(buf[:eol]))
                if m is None:
                    raise UpstreamConnectError("malformed chunked body from upstream")
                size = int(m.group(1), 16)
                if size == 0:
                    if await self._trailer(eol + 2):
                        return
                elif len(buf) >= eol + 2 + size + 2:
                    total += size
                    if total > MAX_BODY:
                        raise UpstreamConnectError("upstream body too large")
                    data = bytes(buf[eol + 2:eol + 2 + size])
                    del buf[:eol + 4 + size]
                    yield data
                    continue
            if conn.eof:
                raise UpstreamConnectError("upstream closed the connection mid-body")
            await conn.wait(self._pool.policy.read_timeout_s, "response body data")

    async def _trailer(self, pos: int) -> bool:
        """Consume trailer fields and the final empty line; False if more data is needed."""
        buf = self._conn.buf
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return False
            if eol == pos:
                del buf[:eol + 2]
                return True
            pos = eol + 2

    async def _until_close(self) -> AsyncIterator[bytes]:
        conn = self._conn
        while True:
            if conn.buf:
                yield conn.take(len(conn.buf))
            elif conn.eof:
                return
            else:
                await conn.wait(self._pool.policy.read_timeout_s, "response body data")

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        if self._head.keep_alive and not self._conn.eof and not self._conn.buf:
            self._pool.release(self._conn)
        else:
            self._conn.close()

    def close(self) -> None:
        """Abandon the body: the connection cannot be reused."""
        if not self._done:
            self._done = True
            self._conn.close()


class UpstreamPool:
    """Keep-alive connections to one upstream."""

    def __init__(self, name: str, target: UpstreamUrl, policy: UpstreamPolicy,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.name = name
        self.target = target
        self.policy = policy
        self.loop = loop
        self._idle: list[_Conn] = []
        self._host_header = f"{target.host}:{target.port}"
        self._heads: dict[str, bytes] = {}  # path → the POST head up to the Content-Length value
        shortest = min(policy.response_timeout_s, policy.read_timeout_s)
        self.timeouts = _Timeouts(loop, max(0.005, min(0.05, shortest / 10)))

    def request(self, path: str, body: bytes, *,
                response_timeout_s: float | None = None) -> Awaitable[UpstreamResponse]:
        """POST ``body`` (JSON) to ``path``; the response once its head has arrived (within
        ``response_timeout_s``, default the policy's)."""
        head = self._heads.get(path)
        if head is None:
            head = (f"POST {self.target.prefix}{path} HTTP/1.1\r\nHost: {self._host_header}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: ").encode("latin-1")
            if len(self._heads) < 64:
                self._heads[path] = head
        data = b"%b%d\r\n\r\n%b" % (head, len(body), body)
        return self._send(data, response_timeout_s or self.policy.response_timeout_s)

    def get(self, path: str) -> Awaitable[UpstreamResponse]:
        data = (f"GET {self.target.prefix}{path} HTTP/1.1\r\nHost: {self._host_header}\r\n\r\n"
                ).encode("latin-1")
        return self._send(data, self.policy.response_timeout_s)

    async def _send(self, data: bytes, timeout: float) -> UpstreamResponse:
        """Send on an idle connection (or a new one) and read the head. A reused connection that
        turns out dead before any byte came back is dropped and the request sent again."""
        while True:
            fresh = not self._idle
            if fresh:
                conn = await self._connect()
            else:
                conn = self._idle.pop()
                if conn.eof:
                    conn.close()
                    continue
            assert conn.transport is not None
            conn.used = True
            conn.transport.write(data)
            try:
                buf = conn.buf
                while True:
                    end = buf.find(b"\r\n\r\n")
                    if end >= 0:
                        raw = bytes(buf[:end])
                        del buf[:end + 4]
                        try:
                            head = parse_response_head(raw)
                        except ValueError as exc:
                            raise UpstreamConnectError(
                                f"malformed response from upstream: {exc}") from exc
                        if 100 <= head.status < 200:
                            continue  # an interim response: the real one follows
                        return UpstreamResponse(self, conn, head)
                    if conn.eof:
                        raise UpstreamConnectError("upstream closed the connection before responding")
                    if len(buf) > 64 * 1024:
                        raise UpstreamConnectError("upstream response head too large")
                    await conn.wait(timeout, "response head")
            except UpstreamConnectError:
                conn.close()
                if not fresh and not conn.buf:
                    continue  # the pooled connection was dead: nothing was processed
                raise
            except BaseException:
                conn.close()
                raise

    async def _connect(self) -> _Conn:
        t = self.target
        try:
            async with asyncio.timeout(self.policy.connect_timeout_s):
                _, conn = await self.loop.create_connection(lambda: _Conn(self.loop, self.timeouts),
                                                            t.host, t.port)
        except TimeoutError as exc:
            raise UpstreamTimeout(f"connecting to {t.url} took over "
                                  f"{self.policy.connect_timeout_s:g} s") from exc
        except OSError as exc:
            raise UpstreamConnectError(f"cannot connect to {t.url}: {exc.strerror or exc}") from exc
        return conn

    def release(self, conn: _Conn) -> None:
        if len(self._idle) < self.policy.pool_size:
            self._idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()
        self.timeouts.close()
