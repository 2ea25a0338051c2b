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
from collections.abc import AsyncIterator
from typing import cast

from gateway.config import UpstreamPolicy, UpstreamUrl
from gateway.errors import UpstreamConnectError, UpstreamTimeout
from gateway.http11 import ResponseHead, parse_response_head

_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,8})(?:;[^\r\n]*)?")
_PAUSE_ABOVE = 4 * 1024 * 1024
MAX_BODY = 64 * 1024 * 1024


class _Conn(asyncio.Protocol):
    """One upstream connection: a byte buffer and a waiter woken by new data or EOF."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.eof = False
        self.used = False
        self._waiter: asyncio.Future[None] | None = None
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
        if w is not None and not w.done():
            w.set_result(None)

    async def wait(self, timeout: float, what: str) -> None:
        """Wait for more data (or EOF) for at most ``timeout`` seconds."""
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        fut = self._waiter = self.loop.create_future()
        timer = self.loop.call_later(timeout, _expire, fut, what, timeout)
        try:
            await fut
        finally:
            timer.cancel()
            self._waiter = None

    def take(self, n: int) -> bytes:
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def close(self) -> None:
        self.eof = True
        if self.transport is not None:
            self.transport.close()


def _expire(fut: asyncio.Future[None], what: str, timeout: float) -> None:
    if not fut.done():
        fut.set_exception(UpstreamTimeout(f"no {what} within {timeout:g} s"))


class UpstreamResponse:
    """An upstream's response after its head: read the body whole or chunk by chunk."""

    def __init__(self, pool: UpstreamPool, conn: _Conn, head: ResponseHead) -> None:
        self.status = head.status
        self.headers = head.headers
        self._pool = pool
        self._conn = conn
        self._head = head
        self._done = False

    async def read(self) -> bytes:
        length = self._head.content_length
        conn = self._conn
        if 0 <= length <= len(conn.buf) and not self._done:
            # The usual case: the whole sized body came with the head; no generator machinery.
            body = conn.take(length)
            self._finish()
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

    async def request(self, path: str, body: bytes, extra_headers: str = "", *,
                      response_timeout_s: float | None = None) -> UpstreamResponse:
        """POST ``body`` (JSON) to ``path``; the response once its head has arrived (within
        ``response_timeout_s``, default the policy's)."""
        data = (f"POST {self.target.prefix}{path} HTTP/1.1\r\nHost: {self._host_header}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                f"{extra_headers}\r\n").encode("latin-1") + body
        return await self._send(data, response_timeout_s or self.policy.response_timeout_s)

    async def get(self, path: str) -> UpstreamResponse:
        data = (f"GET {self.target.prefix}{path} HTTP/1.1\r\nHost: {self._host_header}\r\n\r\n"
                ).encode("latin-1")
        return await self._send(data, self.policy.response_timeout_s)

    async def _send(self, data: bytes, timeout: float) -> UpstreamResponse:
        while self._idle:
            conn = self._idle.pop()
            if conn.eof:
                conn.close()
                continue
            head = await self._exchange(conn, data, timeout, fresh=False)
            if head is not None:
                return UpstreamResponse(self, conn, head)
        conn = await self._connect()
        head = await self._exchange(conn, data, timeout, fresh=True)
        assert head is not None
        return UpstreamResponse(self, conn, head)

    async def _exchange(self, conn: _Conn, data: bytes, timeout: float, *,
                        fresh: bool) -> ResponseHead | None:
        """Send and read the head. None: a reused connection was dead before any byte came back."""
        assert conn.transport is not None
        conn.used = True
        conn.transport.write(data)
        try:
            return await self._read_head(conn, timeout)
        except UpstreamConnectError:
            conn.close()
            if not fresh and not conn.buf:
                return None
            raise
        except BaseException:
            conn.close()
            raise

    async def _read_head(self, conn: _Conn, timeout: float) -> ResponseHead:
        while True:
            end = conn.buf.find(b"\r\n\r\n")
            if end >= 0:
                raw = conn.take(end + 4)[:-4]
                try:
                    head = parse_response_head(raw)
                except ValueError as exc:
                    raise UpstreamConnectError(f"malformed response from upstream: {exc}") from exc
                if 100 <= head.status < 200:
                    continue  # an interim response: the real one follows
                return head
            if conn.eof:
                raise UpstreamConnectError("upstream closed the connection before responding")
            if len(conn.buf) > 64 * 1024:
                raise UpstreamConnectError("upstream response head too large")
            await conn.wait(timeout, "response head")

    async def _connect(self) -> _Conn:
        t = self.target
        try:
            async with asyncio.timeout(self.policy.connect_timeout_s):
                _, conn = await self.loop.create_connection(lambda: _Conn(self.loop), t.host, t.port)
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
