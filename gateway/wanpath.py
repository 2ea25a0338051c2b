"""WAN-path proxies: a loopback TCP proxy per (region, path) that adds the scenario's round trip.

In the manner of Toxiproxy's ``latency`` toxic, each proxy listens on its own port, opens a
connection to its target for every client connection and copies bytes both ways, holding every
chunk for half a round trip in the direction it travels. The round trip is drawn from the
region's ``rtt_ms`` law for the path (``direct``: to the gateway; ``relay``: to the relay, whose
own extra hop the relay adds) **once per request**: HTTP/1.1 clients do not pipeline, so client
bytes arriving after the target has answered (or first on a connection) begin a new request,
which draws a new round trip; its answer comes back with the same one. A request then costs one
sampled round trip on top of the gateway's time, as in the simulator
(``sim.latency``: RTT of the path + queue + time to first token + generation). Connection set-up
on loopback is not delayed (clients keep connections alive, so the simulator does not charge it).

Bytes keep their order in each direction: a chunk is never delivered before one that arrived
earlier (when a shorter round trip follows a longer one, the later chunk waits for the earlier).
Backpressure passes through: a side that cannot keep up pauses reading on the other.
Draws come from a generator seeded by (seed, region, path), divided by the time scale in a
scaled run like every other latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import zlib
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from gateway.listeners import bound_port, listen_all
from scenarios.distributions import Distribution, sample_one
from scenarios.schema import Scenario

PATHS = ("direct", "relay")
_RTT_STREAM = 21


@dataclass(frozen=True, kw_only=True)
class PathSpec:
    """One emulated path: whose traffic, its round-trip law, and where it leads."""

    region: str
    path: str
    rtt_ms: Distribution
    target_host: str
    target_port: int

    @property
    def key(self) -> str:
        return f"{self.region}/{self.path}"

    @property
    def listen_name(self) -> str:
        """How a port of this path is named when it cannot be had."""
        return f"WAN path {self.key}"


def path_specs(scenario: Scenario, *, gateway: tuple[str, int],
               relay: tuple[str, int]) -> list[PathSpec]:
    """Every region's direct path (to the gateway) and relay path (to the relay), in scenario order."""
    out = []
    for region in scenario.regions:
        for path, (host, port) in (("direct", gateway), ("relay", relay)):
            law = region.rtt_ms.direct if path == "direct" else region.rtt_ms.relay
            out.append(PathSpec(region=region.code, path=path, rtt_ms=law, target_host=host,
                                target_port=port))
    return out


@dataclass
class PathStats:
    """Counters of one proxy since start."""

    connections: int = 0
    requests: int = 0
    failed_connects: int = 0
    rtt_ms_sum: float = 0.0


@dataclass
class WanPath:
    """The state of one proxy: its spec, its seeded round-trip draws, its counters."""

    spec: PathSpec
    time_scale: float
    rng: np.random.Generator
    stats: PathStats = field(default_factory=PathStats)

    def draw_half_s(self) -> float:
        """Half of one sampled round trip, in wall seconds."""
        rtt_ms = max(0.0, sample_one(self.spec.rtt_ms, self.rng))
        self.stats.requests += 1
        self.stats.rtt_ms_sum += rtt_ms
        return rtt_ms / 2000.0 / self.time_scale


def make_wanpath(spec: PathSpec, *, seed: int = 0, time_scale: float = 1.0) -> WanPath:
    if not time_scale > 0:
        raise ValueError(f"time_scale ({time_scale}) must be > 0")
    rng = np.random.default_rng([seed, _RTT_STREAM, zlib.crc32(spec.key.encode())])
    return WanPath(spec=spec, time_scale=time_scale, rng=rng)


# ---------------------------------------------------------------- one connection


class _Direction:
    """Chunks travelling one way, each released at its instant, strictly in arrival order.

    ``None`` in the queue is the end of the stream: the receiving side is closed once everything
    before it has been written (``Transport.close`` flushes its buffer first).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: deque[tuple[float, bytes | None]] = deque()
        self.out: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.closed = False

    def push(self, at: float, data: bytes | None) -> None:
        if self.closed:
            return
        if self.queue:
            at = max(at, self.queue[-1][0])
        self.queue.append((at, data))
        self._arm()

    def attach(self, transport: asyncio.Transport) -> None:
        self.out = transport
        self._arm()

    def _arm(self) -> None:
        if self.timer is None and self.queue and self.out is not None:
            self.timer = self.loop.call_at(self.queue[0][0], self._release)

    def _release(self) -> None:
        self.timer = None
        now = self.loop.time()
        out = self.out
        assert out is not None
        while self.queue and self.queue[0][0] <= now:
            _, data = self.queue.popleft()
            if data is None:
                self.drop()
                out.close()
                return
            if not out.is_closing():
                out.write(data)
        self._arm()

    def drop(self) -> None:
        """Nothing more goes this way (the receiver is gone)."""
        self.closed = True
        self.queue.clear()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class _Link:
    """A client connection and its connection to the target."""

    def __init__(self, wan: WanPath, loop: asyncio.AbstractEventLoop) -> None:
        self.wan = wan
        self.loop = loop
        self.up = _Direction(loop)      # client -> target
        self.down = _Direction(loop)    # target -> client
        self.half_s = 0.0
        self.new_request = True
        self.client: asyncio.Transport | None = None
        self.target: asyncio.Transport | None = None

    def from_client(self, data: bytes) -> None:
        if self.new_request:
            self.half_s = self.wan.draw_half_s()
            self.new_request = False
        self.up.push(self.loop.time() + self.half_s, data)

    def from_target(self, data: bytes) -> None:
        self.new_request = True  # the next client bytes are the next request
        self.down.push(self.loop.time() + self.half_s, data)


@dataclass
class _Live:
    """What is open right now, so shutting down can end it (connections and connect attempts)."""

    links: set[_Link] = field(default_factory=set)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def abort_all(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        for link in list(self.links):
            for transport in (link.client, link.target):
                if transport is not None:
                    transport.abort()


class _ClientSide(asyncio.Protocol):
    def __init__(self, wan: WanPath, live: _Live) -> None:
        self.wan = wan
        self.live = live
        self.link: _Link | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        loop = asyncio.get_running_loop()
        self.link = link = _Link(self.wan, loop)
        link.client = transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        link.down.attach(transport)
        self.live.links.add(link)
        self.wan.stats.connections += 1
        task = loop.create_task(self._connect(link))
        self.live.tasks.add(task)
        task.add_done_callback(self.live.tasks.discard)

    async def _connect(self, link: _Link) -> None:
        spec = self.wan.spec
        try:
            transport, _ = await link.loop.create_connection(
                lambda: _TargetSide(link), spec.target_host, spec.target_port)
        except OSError:
            self.wan.stats.failed_connects += 1
            link.up.drop()
            if link.client is not None:
                link.client.abort()
            return
        link.target = transport = cast(asyncio.Transport, transport)
        link.up.attach(transport)

    def data_received(self, data: bytes) -> None:
        assert self.link is not None
        self.link.from_client(data)

    def eof_received(self) -> bool:
        assert self.link is not None
        self.link.up.push(self.link.loop.time() + self.link.half_s, None)
        return True  # keep the client open for the answers still on their way

    def connection_lost(self, exc: Exception | None) -> None:
        link = self.link
        if link is None:
            return
        self.live.links.discard(link)
        link.down.drop()
        link.up.push(link.loop.time() + link.half_s, None)
        if link.target is None:
            link.up.drop()

    def pause_writing(self) -> None:
        if self.link is not None and self.link.target is not None:
            self.link.target.pause_reading()

    def resume_writing(self) -> None:
        if self.link is not None and self.link.target is not None:
            self.link.target.resume_reading()


class _TargetSide(asyncio.Protocol):
    def __init__(self, link: _Link) -> None:
        self.link = link

    def data_received(self, data: bytes) -> None:
        self.link.from_target(data)

    def eof_received(self) -> bool:
        self.link.down.push(self.link.loop.time() + self.link.half_s, None)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.link.up.drop()
        self.link.down.push(self.link.loop.time() + self.link.half_s, None)

    def pause_writing(self) -> None:
        if self.link.client is not None:
            self.link.client.pause_reading()

    def resume_writing(self) -> None:
        if self.link.client is not None:
            self.link.client.resume_reading()


# ---------------------------------------------------------------- serving them


@dataclass(frozen=True, slots=True)
class RunningPath:
    """One listening proxy."""

    wan: WanPath
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@asynccontextmanager
async def serve_wanpaths(specs: list[PathSpec], *, host: str = "127.0.0.1",
                         ports: list[int] | None = None, seed: int = 0,
                         time_scale: float = 1.0,
                         socks: Sequence[socket.socket] | None = None,
                         ) -> AsyncIterator[list[RunningPath]]:
    """Listen for every spec (on ``ports[i]``, or any free port when ``ports`` is None; or on
    ``socks[i]``, bound already), every port bound before any path serves."""
    loop = asyncio.get_running_loop()
    servers: list[asyncio.Server] = []
    running: list[RunningPath] = []
    live = _Live()
    if socks is None:
        socks = listen_all(host, [(ports[i] if ports is not None else 0, spec.listen_name)
                                  for i, spec in enumerate(specs)])
    try:
        for spec, sock in zip(specs, socks, strict=True):
            wan = make_wanpath(spec, seed=seed, time_scale=time_scale)
            server = await loop.create_server(lambda w=wan: _ClientSide(w, live), sock=sock)  # type: ignore[misc]
            servers.append(server)
            running.append(RunningPath(wan, host, bound_port(sock)))
        yield running
    finally:
        for sock in socks[len(servers):]:   # never handed to a server
            sock.close()
        for server in servers:
            server.close()
        live.abort_all()
        with contextlib.suppress(Exception):
            await asyncio.gather(*(s.wait_closed() for s in servers), return_exceptions=True)
