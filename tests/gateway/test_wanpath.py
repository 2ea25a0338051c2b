"""The WAN-path proxy: real sockets, a delay of one sampled round trip per request, bytes intact."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from gateway.wanpath import PathSpec, make_wanpath, path_specs, serve_wanpaths
from scenarios.distributions import Constant, Lognormal
from scenarios.loader import load


async def _echo_server() -> tuple[asyncio.Server, int]:
    """A target that answers every line it reads with the line upper-cased."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write(line.upper())
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, limit=1 << 20)
    return server, int(server.sockets[0].getsockname()[1])


def _spec(port: int, rtt_ms: float) -> PathSpec:
    return PathSpec(region="US", path="direct", rtt_ms=Constant(dist="constant", value=rtt_ms),
                    target_host="127.0.0.1", target_port=port)


async def _exchange(port: int, lines: list[bytes]) -> tuple[list[bytes], list[float]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    got, elapsed = [], []
    for line in lines:
        t0 = time.monotonic()
        writer.write(line)
        got.append(await reader.readline())
        elapsed.append(time.monotonic() - t0)
    writer.close()
    await writer.wait_closed()
    return got, elapsed


def test_each_request_costs_one_round_trip_and_bytes_arrive_intact() -> None:
    async def main() -> tuple[list[bytes], list[float], int, int]:
        target, port = await _echo_server()
        async with serve_wanpaths([_spec(port, 200.0)]) as (proxy,):
            got, elapsed = await _exchange(proxy.port, [b"one\n", b"two\n", b"x" * 100_000 + b"\n"])
            stats_ = proxy.wan.stats
        target.close()
        return got, elapsed, stats_.requests, stats_.connections

    got, elapsed, requests, connections = asyncio.run(main())
    assert got == [b"ONE\n", b"TWO\n", b"X" * 100_000 + b"\n"]
    # one draw per request on a kept-alive connection; each answer after one 200 ms round trip
    assert (requests, connections) == (3, 1)
    for e in elapsed:
        assert 0.200 <= e < 0.300


def test_time_scale_divides_the_round_trip() -> None:
    async def main() -> list[float]:
        target, port = await _echo_server()
        async with serve_wanpaths([_spec(port, 2000.0)], time_scale=10.0) as (proxy,):
            _, elapsed = await _exchange(proxy.port, [b"a\n"])
        target.close()
        return elapsed

    (e,) = asyncio.run(main())
    assert 0.200 <= e < 0.300


def test_an_unreachable_target_closes_the_client_connection() -> None:
    async def main() -> bytes:
        probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        dead = int(probe.sockets[0].getsockname()[1])
        probe.close()
        await probe.wait_closed()
        async with serve_wanpaths([_spec(dead, 0.0)]) as (proxy,):
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(b"hello\n")
            data = await asyncio.wait_for(reader.read(), timeout=5)
            writer.close()
            assert proxy.wan.stats.failed_connects == 1
        return data

    assert asyncio.run(main()) == b""


def test_draws_follow_the_regions_law() -> None:
    law = Lognormal(dist="lognormal", median=200.0, sigma=0.5)
    spec = PathSpec(region="CN", path="direct", rtt_ms=law, target_host="127.0.0.1", target_port=1)
    wan = make_wanpath(spec, seed=3)
    rtt_ms = np.array([wan.draw_half_s() * 2000.0 for _ in range(4000)])
    # lognormal(median 200, sigma 0.5): log(rtt) ~ N(log 200, 0.5); 4000 draws put the sample
    # mean and standard deviation of log(rtt) within 4 standard errors of theory
    logs = np.log(rtt_ms)
    assert abs(logs.mean() - np.log(200.0)) < 4 * 0.5 / np.sqrt(4000)
    assert abs(logs.std() - 0.5) < 4 * 0.5 / np.sqrt(2 * 4000)
    assert wan.stats.requests == 4000


def test_specs_cover_every_region_and_both_paths() -> None:
    s = load("openai-2024-cn-hk").scenario
    specs = path_specs(s, gateway=("127.0.0.1", 1), relay=("127.0.0.1", 2))
    assert [x.key for x in specs[:4]] == ["CN/direct", "CN/relay", "HK/direct", "HK/relay"]
    assert len(specs) == 2 * len(s.regions)
    cn = s.region("CN")
    assert specs[0].rtt_ms == cn.rtt_ms.direct and specs[0].target_port == 1
    assert specs[1].rtt_ms == cn.rtt_ms.relay and specs[1].target_port == 2


@pytest.mark.parametrize("scale", [0.0, -1.0])
def test_time_scale_must_be_positive(scale: float) -> None:
    with pytest.raises(ValueError, match="time_scale"):
        make_wanpath(_spec(1, 0.0), time_scale=scale)
