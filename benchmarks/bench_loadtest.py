"""The largest aggregate rate a true-time load test sustains on this machine, with 5,000 users.

Each step is a whole ``regionblock loadtest`` of the default scenario (its own gateway, mock
providers at the scenario's latency laws, the relay and the WAN-path proxies, all on this
machine's cores next to Locust), in true time (time scale 1, real-time streams, several tokens
per chunk), at one asked-for ``--rate`` (mean requests per wall second over a week, every
organisation active). For each rate it reports what was achieved and whether it was sustained:

* achieved: first attempts sent per wall second of the replay window (the diurnal curve and
  behaviour make it differ from the asked-for mean);
* send lateness p99: how far sends fell behind the open-model schedule;
* reconciled: Locust's requests, Locust's own Aggregated count and the ledger's rows agree exactly;
* latency ratio: US direct-path p50 latency to the incumbent over the same sum drawn from the
  scenario's laws (``sim.latency``'s RTT + TTFT + tokens / rate): the same-run reference. Queueing
  anywhere in the load generator, proxies or gateway shows up as a ratio above 1.

A rate is *sustained* when the run reconciles exactly with no failed request, send lateness p99
stays under ``--max-lateness-ms`` and the latency ratio under ``--max-ratio``. Run under the
shared lock::

    flock /tmp/regionblock-bench.lock .venv/bin/python benchmarks/bench_loadtest.py \\
        [--users 5000] [--seconds 60] [--rates 50 100 150]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtests.events import read_events  # noqa: E402
from loadtests.run import loadtest  # noqa: E402
from scenarios.distributions import sample  # noqa: E402
from scenarios.loader import load  # noqa: E402
from scenarios.schema import Scenario  # noqa: E402

SCENARIO = "openai-2024-cn-hk"


def law_p50_ms(s: Scenario, region: str, rng: np.random.Generator, n: int = 200_000) -> float:
    """p50 of RTT(direct) + TTFT + tokens / rate for the incumbent, requests weighted as the
    region's segments send them (the simulator's latency sum, no queue: the incumbent's capacity
    is far above any load test's)."""
    p = s.incumbent
    weights = np.array([g.share.get(region, 0.0) * g.requests_per_hour.mean() for g in s.segments])
    seg = rng.choice(len(s.segments), size=n, p=weights / weights.sum())
    tokens = np.zeros(n)
    for i, g in enumerate(s.segments):
        mine = seg == i
        tokens[mine] = np.maximum(np.rint(sample(g.tokens_out, rng, int(mine.sum()))), 1)
    total = (sample(s.region(region).rtt_ms.direct, rng, n) + sample(p.latency.ttft_ms, rng, n)
             + tokens / sample(p.latency.tokens_per_s, rng, n) * 1000)
    return float(np.percentile(total, 50))


def step(rate: float, users: int, seconds: float, out: Path) -> dict[str, Any]:
    started = time.monotonic()
    run_dir, code = loadtest(load(SCENARIO), duration_s=seconds, users=users, rate=rate, out=out)
    summary = json.loads((run_dir / "summary.json").read_text())
    requests = read_events(run_dir / "events").requests
    rec = summary["checks"]["reconciliation"]
    first = [r for r in requests if r.attempt == 0]
    us = [r.latency_ms for r in requests if r.region == "US" and r.path == "direct"
          and r.provider == "openai" and r.decision in ("allow", "warn")]
    return {"rate": rate, "achieved": len(first) / seconds, "requests": len(requests),
            "failed": sum(1 for r in requests if r.decision == "failed"),
            "lateness_p99_ms": summary["checks"]["rate_accuracy"]["send_lateness_ms"]["p99"],
            "reconciled": bool(rec.get("passed")) and rec["locust_stats_requests"] ==
            rec["ledger_rows"] == len(requests),
            "us_direct_p50_ms": float(np.percentile(us, 50)) if us else float("nan"),
            "exit": code, "wall_s": time.monotonic() - started}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rates", type=float, nargs="+", default=[50.0, 100.0, 150.0])
    ap.add_argument("--max-lateness-ms", type=float, default=250.0)
    ap.add_argument("--max-ratio", type=float, default=1.10)
    args = ap.parse_args()
    s = load(SCENARIO).scenario
    law = law_p50_ms(s, "US", np.random.default_rng(1))
    print(f"reference: US direct p50 to {s.incumbent.name} from the scenario's laws {law:,.0f} ms")
    best = None
    with tempfile.TemporaryDirectory() as tmp:
        for rate in args.rates:
            r = step(rate, args.users, args.seconds, Path(tmp))
            ratio = r["us_direct_p50_ms"] / law
            ok = (r["reconciled"] and r["failed"] == 0 and ratio <= args.max_ratio
                  and r["lateness_p99_ms"] <= args.max_lateness_ms)
            best = rate if ok else best
            print(f"rate {rate:6.0f}  achieved {r['achieved']:6.1f} req/s  requests {r['requests']:6d}"
                  f"  failed {r['failed']:4d}  lateness p99 {r['lateness_p99_ms']:6.0f} ms  "
                  f"US p50 {r['us_direct_p50_ms']:6,.0f} ms ({ratio:.3f}x law)  "
                  f"reconciled {'yes' if r['reconciled'] else 'NO'}  "
                  f"{'sustained' if ok else 'NOT sustained'}  ({r['wall_s']:.0f} s)", flush=True)
    print(f"largest sustained asked-for rate with {args.users} users: "
          f"{best if best is not None else 'none'}")


if __name__ == "__main__":
    main()
