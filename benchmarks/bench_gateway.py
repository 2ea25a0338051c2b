"""Benchmark: the full gateway against a bare aiohttp reverse proxy and nginx, same upstream, same load.

    .venv/bin/python benchmarks/bench_gateway.py [--duration 4] [--connections 32]

Every proxy forwards ``POST /v1/chat/completions`` to one trivial, fast upstream (a minimal asyncio
HTTP server returning a fixed completion, in its own process). The gateway runs with everything
on: client address + GeoIP, policy decision, routing, metering (a ledger row per request, durable
before the response). Load comes from ``wrk`` (installed with apt-get if missing). For each
target we measure, in the same run:

* maximum throughput: wrk, closed loop, ``--connections`` connections;
* CPU per request in the proxy process(es): utime+stime from /proc during that run / requests;
* added latency at about half the gateway's maximum throughput: wrk with a per-connection delay
  (its ``delay()`` hook), p50/p99 minus those of the upstream alone at the same rate.

Ratios against the bare aiohttp proxy are printed. nginx is skipped with a message if it cannot be
installed. Everything listens on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BODY = json.dumps({"model": "gpt-4o", "max_tokens": 8,
                   "messages": [{"role": "user", "content": "What is the capital of France?"}]})
COMPLETION = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1720483200, "model": "gpt-4o",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 8, "completion_tokens": 8, "total_tokens": 16}}).encode()
US_IP = "73.0.0.1"
TICK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- the trivial upstream


class _FixedUpstream(asyncio.Protocol):
    """Answers every complete request (Content-Length framed) with the fixed completion."""

    RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                % len(COMPLETION)) + COMPLETION

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            m = re.search(rb"(?i)content-length:\s*(\d+)", self.buf[:end])
            total = end + 4 + (int(m.group(1)) if m else 0)
            if len(self.buf) < total:
                return
            self.buf = self.buf[total:]
            self.transport.write(self.RESPONSE)


async def _serve_upstream(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_FixedUpstream, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


# ---------------------------------------------------------------- the bare aiohttp proxy


def _serve_aiohttp_proxy(port: int, upstream: int) -> None:
    import aiohttp
    from aiohttp import web

    async def make_app() -> web.Application:
        app = web.Application()
        session: list[aiohttp.ClientSession] = []

        async def startup(_: web.Application) -> None:
            session.append(aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)))

        async def proxy(request: web.Request) -> web.Response:
            body = await request.read()
            async with session[0].post(f"http://127.0.0.1:{upstream}{request.path}", data=body,
                                       headers={"Content-Type": "application/json"}) as r:
                return web.Response(status=r.status, body=await r.read(),
                                    content_type="application/json")

        app.on_startup.append(startup)
        app.router.add_post("/{tail:.*}", proxy)
        return app

    web.run_app(make_app(), host="127.0.0.1", port=port, print=None, access_log=None)


# ---------------------------------------------------------------- processes and tools


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_tool(binary: str, package: str) -> str | None:
    found = shutil.which(binary) or (f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}").exists() else None)
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None:
        return None
    print(f"installing {package} with apt-get ...", file=sys.stderr)
    subprocess.run([apt, "install", "-y", "-q", package], capture_output=True, check=False)
    if not (shutil.which(binary) or Path(f"/usr/sbin/{binary}").exists()):
        subprocess.run([apt, "update", "-q"], capture_output=True, check=False)
        subprocess.run([apt, "install", "-y", "-q", package], capture_output=True, check=False)
    return shutil.which(binary) or (f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}").exists() else None)


def wait_port(port: int, proc: subprocess.Popen[bytes], deadline_s: float = 30) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited early: {proc.stderr.read().decode() if proc.stderr else ''}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)  # readiness polling interval
    raise RuntimeError(f"port {port} not listening within {deadline_s} s")


@contextlib.contextmanager
def process(args: list[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(port, proc)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (of all the process's threads)
    return total / TICK


def child_pids(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(c) for c in text]
    return out


# ---------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-us-startup-000001"
wrk.headers["X-Forwarded-For"] = "{ip}"
{delay}
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d\\n", summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout, summary.duration,
    latency:percentile(50), latency:percentile(99)))
end
"""


def wrk(binary: str, port: int, *, connections: int, duration: float, delay_ms: int | None,
        script_dir: Path) -> WrkResult:
    delay = f"delay = function() return {delay_ms} end" if delay_ms else ""
    script = script_dir / f"post-{delay_ms}.lua"
    script.write_text(WRK_SCRIPT.format(body=json.dumps(BODY), ip=US_IP, delay=delay))
    seconds = max(1, round(duration))
    out = subprocess.run([binary, "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script),
                          f"http://127.0.0.1:{port}/v1/chat/completions"],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+)", out)
    if m is None:
        raise RuntimeError(f"unexpected wrk output: {out}")
    requests, errors, micros, p50, p99 = (int(g) for g in m.groups())
    return WrkResult(requests, requests / (micros / 1e6), p50 / 1000, p99 / 1000, errors)


# ---------------------------------------------------------------- the benchmark


@dataclass
class Measured:
    name: str
    max: WrkResult
    cpu_us: float
    half: WrkResult | None = None


def measure(name: str, port: int, pids: list[int], wrk_bin: str, args: argparse.Namespace,
            tmp: Path) -> Measured:
    wrk(wrk_bin, port, connections=args.connections, duration=1, delay_ms=None, script_dir=tmp)
    before = cpu_seconds(pids)
    result = wrk(wrk_bin, port, connections=args.connections, duration=args.duration, delay_ms=None,
                 script_dir=tmp)
    cpu = cpu_seconds(pids) - before
    print(f"  {name:<14} {result.rps:9.0f} req/s  {cpu / result.requests * 1e6:6.1f} µs CPU/req  "
          f"p50 {result.p50_ms:.2f} ms  p99 {result.p99_ms:.2f} ms  errors {result.errors}",
          file=sys.stderr)
    return Measured(name, result, cpu / result.requests * 1e6)


def half_rate(m: Measured, port: int, target_rps: float, wrk_bin: str, args: argparse.Namespace,
              tmp: Path) -> None:
    delay_ms = 4
    connections = max(1, round(target_rps * delay_ms / 1000))
    # wrk's delay() is think time per connection, so the rate also depends on the latency:
    # calibrate once, then scale the connection count to hit the target rate.
    trial = wrk(wrk_bin, port, connections=connections, duration=2, delay_ms=delay_ms, script_dir=tmp)
    connections = max(1, round(connections * target_rps / max(trial.rps, 1.0)))
    m.half = wrk(wrk_bin, port, connections=connections, duration=args.duration, delay_ms=delay_ms,
                 script_dir=tmp)


def nginx_conf(prefix: Path, port: int, upstream: int) -> Path:
    conf = prefix / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/body; proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fcgi; uwsgi_temp_path {prefix}/uwsgi; scgi_temp_path {prefix}/scgi;
  upstream backend {{ server 127.0.0.1:{upstream}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{ proxy_pass http://backend; proxy_http_version 1.1;
                 proxy_set_header Connection ""; }}
  }}
}}
""")
    return conf


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections at max load")
    parser.add_argument("role", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("ports", nargs="*", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "upstream":
        asyncio.run(_serve_upstream(args.ports[0]))
        return 0
    if args.role == "aiohttp-proxy":
        import uvloop
        uvloop.install()
        _serve_aiohttp_proxy(args.ports[0], args.ports[1])
        return 0
    return run_benchmark(args)


def run_benchmark(args: argparse.Namespace) -> int:
    wrk_bin = ensure_tool("wrk", "wrk")
    if wrk_bin is None:
        print("wrk is not installed and apt-get could not install it: cannot benchmark", file=sys.stderr)
        return 1
    nginx_bin = ensure_tool("nginx", "nginx")
    py = sys.executable
    me = str(Path(__file__).resolve())
    results: list[Measured] = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        up = free_port()
        with process([py, me, "upstream", str(up)], up) as upstream:
            direct = measure("upstream alone", up, [upstream.pid], wrk_bin, args, tmp)
            gw_port, px_port = free_port(), free_port()
            gw_args = [py, "-m", "regionblock", "gateway", "openai-2024-cn-hk", "--port", str(gw_port),
                       "--at", "2024-07-10", "--trusted-proxy", "127.0.0.1/32",
                       "--ledger", str(tmp / "ledger.sqlite"), "--max-inflight", "4096"]
            gw_args += [f"--upstream={name}=http://127.0.0.1:{up}" for name in
                        ("openai", "zhipu", "baidu", "tencent", "alibaba", "deepseek")]
            with process(gw_args, gw_port) as gateway:
                results.append(measure("gateway", gw_port, [gateway.pid], wrk_bin, args, tmp))
                target = results[0].max.rps / 2
                half_rate(results[0], gw_port, target, wrk_bin, args, tmp)
                rows = _ledger_rows(tmp / "ledger.sqlite")
            with process([py, me, "aiohttp-proxy", str(px_port), str(up)], px_port) as proxy:
                results.append(measure("aiohttp proxy", px_port, [proxy.pid], wrk_bin, args, tmp))
                half_rate(results[-1], px_port, target, wrk_bin, args, tmp)
            if nginx_bin:
                ng_port = free_port()
                conf = nginx_conf(tmp, ng_port, up)
                with process([nginx_bin, "-c", str(conf), "-p", str(tmp), "-g", "daemon off;"],
                             ng_port) as ng:
                    pids = [ng.pid, *child_pids(ng.pid)]
                    results.append(measure("nginx", ng_port, pids, wrk_bin, args, tmp))
                    half_rate(results[-1], ng_port, target, wrk_bin, args, tmp)
            else:
                print("nginx: skipped (not installed and apt-get could not install it)", file=sys.stderr)
            half_rate(direct, up, target, wrk_bin, args, tmp)
    report(direct, results, rows)
    return 0


def _ledger_rows(path: Path) -> int:
    import sqlite3

    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT count(*) FROM requests").fetchone()[0])
    finally:
        db.close()


def report(direct: Measured, results: list[Measured], ledger_rows: int) -> None:
    by = {m.name: m for m in results}
    base = by["aiohttp proxy"]
    assert direct.half is not None
    print(f"\nbench_gateway: wrk -t1 max-load runs; half-rate runs at ~{results[0].max.rps / 2:.0f} req/s "
          f"(upstream alone there: p50 {direct.half.p50_ms:.2f} ms, p99 {direct.half.p99_ms:.2f} ms)")
    print(f"{'target':<14} {'req/s':>9} {'x aiohttp':>9} {'CPU µs/req':>10} {'half-rate req/s':>15} "
          f"{'added p50 ms':>12} {'added p99 ms':>12}")
    for m in results:
        assert m.half is not None
        print(f"{m.name:<14} {m.max.rps:9.0f} {m.max.rps / base.max.rps:9.2f} {m.cpu_us:10.1f} "
              f"{m.half.rps:15.0f} {m.half.p50_ms - direct.half.p50_ms:12.3f} "
              f"{m.half.p99_ms - direct.half.p99_ms:12.3f}")
    gw = by["gateway"]
    assert gw.half is not None
    print(f"gateway: {gw.max.rps / base.max.rps:.2f}x the aiohttp proxy's throughput "
          f"(target >= 1.0), {gw.cpu_us:.1f} µs CPU/request (target <= 60; aiohttp proxy "
          f"{base.cpu_us:.1f}, nginx {by['nginx'].cpu_us if 'nginx' in by else float('nan'):.1f}), "
          f"added p99 {gw.half.p99_ms - direct.half.p99_ms:.2f} ms at half load (target <= 2); "
          f"ledger rows written: {ledger_rows}")


if __name__ == "__main__":
    sys.exit(main())
