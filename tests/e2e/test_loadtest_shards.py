"""Scale-out: a load test against two gateway replicas behind a balancer, reconciled across shards.

The mock upstreams and two ``regionblock gateway`` processes (each with its own ledger shard, both
compressing the scenario onto the same epoch) run as processes; a TCP balancer in this test spreads
Locust's connections over them by organisation (a hash of the first request's API key, as a
deployment must, so that each organisation's free-token credit lives on one replica: README);
``regionblock loadtest --host --epoch --ledger A --ledger B`` merges the shards and must reconcile
every request, and every credit, exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import UPSTREAMS_PORTS, free_port, free_run, spawn_regionblock, wait_ok

from regionblock.cli import main
from scenarios.rundir import read_run

pytestmark = pytest.mark.e2e

SCENARIO = "openai-2024-cn-hk"
OVERRIDES = ("--set", "window.start=2024-06-22", "--set", "window.end=2024-07-17")
DURATION_S = 10.0
#: From now to the scenario epoch: time for both gateways, Locust and its users to start.
LEAD_S = 12.0


class ByOrg:
    """A TCP balancer on loopback: each accepted connection goes to the backend its first request's
    ``Authorization`` key hashes to (each Locust user, one organisation, keeps its connection)."""

    def __init__(self, backends: list[int]) -> None:
        self.port = free_port()
        self._backends = backends
        self.connections: dict[int, int] = dict.fromkeys(backends, 0)
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ByOrg:
        self._thread.start()
        assert self._started.wait(10), "balancer did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port))
        self._started.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            self._loop.close()

    def backend_for(self, head: bytes) -> int:
        key = next((line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                    if line.lower().startswith(b"authorization:")), b"")
        return self._backends[zlib.crc32(key) % len(self._backends)]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        backend = self.backend_for(head)
        self.connections[backend] += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", backend)
        up_writer.write(head)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
    with contextlib.suppress(ConnectionError, OSError):
        dst.close()


@contextlib.contextmanager
def replicas(tmp: Path, epoch: float) -> Iterator[tuple[list[int], list[Path]]]:
    base = free_run(UPSTREAMS_PORTS)  # providers, the relay, then the 16 WAN paths
    procs = [spawn_regionblock("upstreams", SCENARIO, *OVERRIDES, "--base-port", str(base),
                    "--time-scale", "40")]
    ports = [free_port(), free_port()]
    shards = [tmp / f"gateway-{i}.sqlite" for i in range(2)]
    try:
        for port, shard in zip(ports, shards, strict=True):
            procs.append(spawn_regionblock("gateway", SCENARIO, *OVERRIDES, "--port", str(port),
                                "--upstream-base-port", str(base), "--trusted-proxy", "127.0.0.1/32",
                                "--compress", f"{DURATION_S:g}s@{epoch!r}", "--ledger", str(shard),
                                "--insecure-org-keys"))
        wait_ok(f"http://127.0.0.1:{base}/healthz", procs[0])
        for port, proc in zip(ports, procs[1:], strict=True):
            wait_ok(f"http://127.0.0.1:{port}/readyz", proc)
        yield ports, shards
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    con = sqlite3.connect(path)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.mark.timeout(150)
def test_a_load_test_over_two_gateway_replicas_reconciles_across_their_shards(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    epoch = time.time() + LEAD_S
    with replicas(tmp_path, epoch) as (ports, shards), ByOrg(ports) as balancer:
        code = main(["loadtest", SCENARIO, *OVERRIDES, "--host", f"http://127.0.0.1:{balancer.port}",
                     "--epoch", repr(epoch), "--duration", f"{DURATION_S:g}s", "--users", "20",
                     "--rate", "40", "--ledger", str(shards[0]), "--ledger", str(shards[1]),
                     "--out", str(tmp_path / "runs")])
        served = [int(str(rows(s, "SELECT count(*) FROM requests")[0][0])) for s in shards]
        assert min(balancer.connections.values()) > 0
    out = capsys.readouterr()
    assert code == 0, out.err
    run_dir = Path(out.out.strip())
    merged = run_dir / "ledger.sqlite"
    assert min(served) > 0  # both replicas metered part of the run
    rec = read_run(run_dir).summary["checks"]["reconciliation"]
    assert rec["passed"] and rec["locust_requests"] == rec["ledger_rows"] == sum(served)
    assert rows(merged, "SELECT count(*) FROM requests")[0][0] == sum(served)
    shards_meta = json.loads(str(rows(merged, "SELECT value FROM meta WHERE key = 'shards'")[0][0]))
    assert [(s["path"], s["rows_in_run"]) for s in shards_meta] == list(zip(map(str, shards), served,
                                                                            strict=True))
    money = read_run(run_dir).summary["checks"]["revenue"]
    assert money["passed"] and money["credits"]["problems"] == 0, money
    opened = rows(merged, "SELECT count(*) FROM requests WHERE credit_opened > 0")[0][0]
    assert money["credits"]["opened"] == opened == len(rows(merged, "SELECT * FROM credits"))
