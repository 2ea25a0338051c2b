"""How fast the load generator can drive the gateway on this machine, against a raw client.

Starts the mock upstreams (latencies divided by 1000, so the providers are not the bottleneck)
and the gateway (clock pinned before any policy stage: every request is allowed and forwarded),
then measures, one after the other, for ``--seconds`` each:

* baseline: a raw aiohttp client loop (closed loop, ``--concurrency`` requests in flight);
* Locust, one process: ``loadtests`` users asked for far more than they can send (``--rate``);
* Locust, a master and N worker processes, for each N in ``--workers``.

Each Locust figure is requests completed per wall second of the replay window, with the ratio to
the baseline (same gateway, same run) and the p99 lateness of sends behind their schedule (how
far the open model fell behind: the asked-for rate is deliberately out of reach). Everything
shares this machine's cores with the gateway and the upstreams. Run::

    .venv/bin/python benchmarks/bench_loadtest.py [--seconds 8] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtests.events import read_events  # noqa: E402
from loadtests.procs import Processes, free_port, free_port_block, http_ok, wait_until  # noqa: E402
from loadtests.run import loadtest  # noqa: E402
from loadtests.wire import chat_body  # noqa: E402
from scenarios.loader import load  # noqa: E402

SCENARIO = "openai-2024-cn-hk"
PINNED = "2024-06-02"  # before the announcement: every request is allowed


def start_services(procs: Processes) -> str:
    providers = len(load(SCENARIO).scenario.providers)
    base, gport = free_port_block(providers + 1), free_port()
    py = [sys.executable, "-m", "regionblock"]
    up = procs.start("upstreams", [*py, "upstreams", SCENARIO, "--base-port", str(base),
                                   "--time-scale", "1000",
                                   "--relay-target", f"http://127.0.0.1:{gport}"])
    gw = procs.start("gateway", [*py, "gateway", SCENARIO, "--port", str(gport),
                                 "--upstream-base-port", str(base), "--trusted-proxy",
                                 "127.0.0.1/32", "--at", PINNED,
                                 "--ledger", str(procs.log_dir / "ledger.sqlite"),
                                 "--insecure-org-keys"])
    deadline = time.monotonic() + 60
    for i in range(providers):
        wait_until(http_ok(f"http://127.0.0.1:{base + i}/healthz"), deadline=deadline, child=up,
                   what="upstream ready")
    url = f"http://127.0.0.1:{gport}"
    wait_until(http_ok(url + "/readyz"), deadline=deadline, child=gw, what="gateway ready")
    return url


async def raw_client(url: str, seconds: float, concurrency: int) -> float:
    """Requests per second of a closed-loop aiohttp client (the baseline)."""
    body = chat_body("gpt-3.5-turbo", 200, 16, stream=False)
    headers = {"Authorization": "Bearer sk-us-startup-000001", "X-Forwarded-For": "8.8.8.8",
               "Content-Type": "application/json"}
    done = 0
    end = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:
        async def loop() -> None:
            nonlocal done
            while time.monotonic() < end:
                async with s.post(url + "/v1/chat/completions", data=body, headers=headers) as r:
                    await r.read()
                    done += r.status == 200
        started = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
    return done / (time.monotonic() - started)


def locust_rate(url: str, seconds: float, workers: int, rate: float, out: Path) -> tuple[float, float]:
    """(requests per second achieved, p99 send lateness ms) of the load generator."""
    run_dir, _ = loadtest(load(SCENARIO), duration_s=seconds, users=40, host=url, workers=workers,
                          rate=rate, max_tokens_out=16, max_tokens_in=200, out=out, drain_s=3.0)
    summary = json.loads((run_dir / "summary.json").read_text())
    epoch = summary["loadtest"]["epoch"]
    done = [r.done for r in read_events(run_dir / "events").requests if r.decision == "allow"]
    late = summary["checks"]["rate_accuracy"]["send_lateness_ms"]["p99"]
    # Asked for more than it can send, it falls behind: the rate is what it got through per
    # wall second from the epoch to its last answer.
    return len(done) / (max(done) - epoch), late


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rate", type=float, default=1500.0, help="asked-for rate (far above capacity)")
    ap.add_argument("--workers", type=int, nargs="*", default=[2])
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Processes(log_dir=Path(tmp) / "logs") as procs:
        url = start_services(procs)
        base = asyncio.run(raw_client(url, args.seconds, args.concurrency))
        print(f"baseline  aiohttp closed loop, {args.concurrency} in flight: {base:8.1f} req/s")
        one, late = locust_rate(url, args.seconds, 0, args.rate, Path(tmp) / "runs")
        print(f"locust    1 process:                      {one:8.1f} req/s  "
              f"({one / base:.2f}x baseline, send lateness p99 {late:.0f} ms)")
        for n in args.workers:
            many, late = locust_rate(url, args.seconds, n, args.rate, Path(tmp) / "runs")
            print(f"locust    master + {n} workers:            {many:8.1f} req/s  "
                  f"({many / base:.2f}x baseline, {many / one:.2f}x one process, "
                  f"send lateness p99 {late:.0f} ms)")


if __name__ == "__main__":
    main()
