"""Synthetic run directories whose numbers are known in closed form.

The world (default scenario, daily bins, 2024-06-01 … 2024-09-30, block from 2024-07-09 = day
``BLOCK_DAY``; ``r`` is the replication number and ``k`` days since the block):

* OpenAI revenue/day: US direct 2000+10r; CN direct 1000 before the block, 50 after (allow-list);
  CN relay 200+10r after; HK direct 300 before, 20 after. No-block counterfactual: US 2000+10r,
  CN 1000, HK 300 every day.
* Zhipu revenue: CN direct 100+5r/day after the block; DeepSeek: CN direct 40/day after.
* Requests (OpenAI): US 990 allowed + 10 failed with 12 retries/day; CN 500/day and HK 100/day
  allowed before the announcement, warned until the block, then CN 60 allowed + 440 blocked and
  HK 5 allowed + 95 blocked.
* Latency (ms): OpenAI direct p50/p95/p99 = 400/900/1500 (+10r); OpenAI relay 700/1500/2500 and
  Zhipu direct 600/1200/2000 after the block. Time to first token p50/p95/p99 (streamed) is
  OpenAI direct 200/450/700 (+10r), OpenAI relay 350/800/1200, Zhipu direct 300/600/900.
* A load test may have thin days: on ``thin_days`` every request count is × 0.04 (rounded; the
  blocked regions then send 20 + 4 < 30 requests, everything 64), on ``very_thin_days`` × 0.01
  (16 requests in all, 11 of them served after the block).
* 1000 organisations: after the block migrated to zhipu min(300, 10k), to deepseek min(100, 4k),
  circumventing min(200, 8k), churned min(50, 2k), migrating 20; the rest direct.
* Utilisation after the block: zhipu 0.3 + 0.6k/83, deepseek 0.2; zhipu 429s 50/day while its
  utilisation exceeds 0.8.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from scenarios.loader import load, resolved_yaml
from scenarios.rundir import band, meta, write_json, write_timeseries

START = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
DAYS = 122
ANNOUNCE_DAY = 24   # 2024-06-25
BLOCK_DAY = 38      # 2024-07-09
SCENARIO = "openai-2024-cn-hk"
FIXED = dt.datetime(2024, 10, 2, 12, 0, tzinfo=dt.UTC)

Row = tuple[str, int, str, str, str, str, str, str, float]


def day(d: int) -> str:
    return (START + dt.timedelta(days=d)).strftime("%Y-%m-%dT%H:%M:%SZ")


def k_after(d: int) -> int:
    return d - BLOCK_DAY


def revenue_rows(t: str, d: int, r: int, src: str, scale: float) -> Iterator[Row]:
    blocked = d >= BLOCK_DAY
    yield (t, r, src, "revenue_usd", "US", "openai", "direct", "", scale * (2000 + 10 * r))
    yield (t, r, src, "revenue_usd", "CN", "openai", "direct", "", scale * (50 if blocked else 1000))
    yield (t, r, src, "revenue_usd", "HK", "openai", "direct", "", scale * (20 if blocked else 300))
    for region, base in (("US", 2000 + 10 * r), ("CN", 1000), ("HK", 300)):
        yield (t, r, src, "baseline_revenue_usd", region, "openai", "", "", base)
    if blocked:
        yield (t, r, src, "revenue_usd", "CN", "openai", "relay", "", scale * (200 + 10 * r))
        yield (t, r, src, "revenue_usd", "CN", "zhipu", "direct", "", scale * (100 + 5 * r))
        yield (t, r, src, "revenue_usd", "CN", "deepseek", "direct", "", scale * 40)


def outcomes(d: int, f: float = 1.0) -> dict[str, dict[str, int]]:
    """Region → outcome → count for OpenAI on day ``d``, counts × ``f`` (rounded)."""
    out = {"US": {"allowed": round(990 * f), "failed": round(10 * f), "retries": round(12 * f)}}
    for region, n, kept in (("CN", 500, 60), ("HK", 100, 5)):
        n, kept = round(n * f), round(kept * f)
        if d < ANNOUNCE_DAY:
            out[region] = {"allowed": n}
        elif d < BLOCK_DAY:
            out[region] = {"warned": n}
        else:
            out[region] = {"allowed": kept, "blocked": n - kept}
    return out


def request_rows(t: str, d: int, r: int, src: str, f: float = 1.0) -> Iterator[Row]:
    for region, counts in outcomes(d, f).items():
        total = sum(v for k, v in counts.items() if k != "retries")
        yield (t, r, src, "requests", region, "openai", "direct", "", total)
        for metric, v in counts.items():
            yield (t, r, src, metric, region, "openai", "direct", "", v)


def latency_rows(t: str, d: int, r: int, src: str) -> Iterator[Row]:
    """Latency and time-to-first-token percentiles: metric → (provider, path, p50/p95/p99)."""
    series = {"latency_ms": [("openai", "direct", (400 + 10 * r, 900 + 10 * r, 1500 + 10 * r))],
              "ttft_ms": [("openai", "direct", (200 + 10 * r, 450 + 10 * r, 700 + 10 * r))]}
    if d >= BLOCK_DAY:
        series["latency_ms"] += [("openai", "relay", (700, 1500, 2500)),
                                 ("zhipu", "direct", (600, 1200, 2000))]
        series["ttft_ms"] += [("openai", "relay", (350, 800, 1200)), ("zhipu", "direct", (300, 600, 900))]
    for metric, groups in series.items():
        for provider, path, values in groups:
            for q, v in zip(("p50", "p95", "p99"), values, strict=True):
                yield (t, r, src, f"{metric}_{q}", "", provider, path, "", v)


def org_states(d: int) -> dict[tuple[str, str], int]:
    """(state, provider) → organisations on day ``d``."""
    k = max(k_after(d) + 1, 0) if d >= BLOCK_DAY else 0
    states = {("migrated", "zhipu"): min(300, 10 * k), ("migrated", "deepseek"): min(100, 4 * k),
              ("circumventing", ""): min(200, 8 * k), ("churned", ""): min(50, 2 * k),
              ("migrating", ""): 20 if k else 0}
    states[("direct", "")] = 1000 - sum(states.values())
    return states


def org_rows(t: str, d: int, r: int, src: str) -> Iterator[Row]:
    for (state, provider), n in org_states(d).items():
        yield (t, r, src, "orgs", "", provider, "", state, n)


def zhipu_utilisation(d: int) -> float:
    return 0.3 + 0.6 * k_after(d) / 83


def capacity_rows(t: str, d: int, r: int, src: str) -> Iterator[Row]:
    if d < BLOCK_DAY:
        return
    u = zhipu_utilisation(d)
    yield (t, r, src, "utilisation", "", "zhipu", "", "", u)
    yield (t, r, src, "utilisation", "", "deepseek", "", "", 0.2)
    yield (t, r, src, "rejected_429", "", "zhipu", "", "", 50 if u > 0.8 else 0)


def rows(replications: int, src: str = "sim", scale: float = 1.0,
         thin: dict[int, float] | None = None) -> Iterator[Row]:
    """Every row; ``thin`` maps a day to the factor its request counts are multiplied by."""
    for d in range(DAYS):
        t = day(d)
        for r in range(replications):
            yield from revenue_rows(t, d, r, src, scale)
            yield from request_rows(t, d, r, src, (thin or {}).get(d, 1.0))
            yield from latency_rows(t, d, r, src)
            yield from org_rows(t, d, r, src)
            yield from capacity_rows(t, d, r, src)


# ---------------------------------------------------------------- closed forms


def incumbent_revenue(r: int, scale: float = 1.0) -> float:
    after = DAYS - BLOCK_DAY
    us = DAYS * (2000 + 10 * r)
    cn = BLOCK_DAY * 1000 + after * (50 + 200 + 10 * r)
    hk = BLOCK_DAY * 300 + after * 20
    return scale * (us + cn + hk)


def baseline_revenue(r: int) -> float:
    return DAYS * (2000 + 10 * r + 1000 + 300)


def alt_revenue(provider: str, r: int, scale: float = 1.0) -> float:
    per_day = {"zhipu": 100 + 5 * r, "deepseek": 40}[provider]
    return scale * (DAYS - BLOCK_DAY) * per_day


def waterfall(replications: int) -> list[dict[str, Any]]:
    after = DAYS - BLOCK_DAY
    rs = np.arange(replications)
    actual = np.mean([incumbent_revenue(int(r)) for r in rs])
    relay = after * float(np.mean(200 + 10 * rs))
    allow = after * (50 + 20)
    blocked = -after * (1000 + 300)
    lost = blocked + relay + allow
    return [{"label": "baseline", "value_usd": float(np.mean([baseline_revenue(int(r)) for r in rs]))},
            {"label": "blocked", "value_usd": float(blocked)},
            {"label": "kept via relay", "value_usd": relay},
            {"label": "kept via allow-list", "value_usd": float(allow)},
            {"label": "lost to alternatives", "value_usd": 0.8 * lost},
            {"label": "lost to churn", "value_usd": 0.2 * lost},
            {"label": "actual", "value_usd": float(actual)}]


def headline(replications: int, scale: float = 1.0) -> dict[str, Any]:
    rs = range(replications)
    inc = [incumbent_revenue(r, scale) for r in rs]
    base = [baseline_revenue(r) for r in rs]
    lost = [b - i for b, i in zip(base, inc, strict=True)]
    final = org_states(DAYS - 1)
    out: dict[str, Any] = {
        "incumbent_revenue_usd": band(inc, unit="usd", label="incumbent revenue"),
        "incumbent_baseline_revenue_usd": band(base, unit="usd", label="no-block counterfactual"),
        "incumbent_revenue_lost_usd": band(lost, unit="usd", label="incumbent revenue lost"),
        "incumbent_revenue_lost_pct": band([100 * x / b for x, b in zip(lost, base, strict=True)],
                                           unit="pct", label="incumbent revenue lost"),
        "retry_amplification": band([1000 / 988] * replications, unit="ratio"),
        "block_rate.CN": band([440 / 500] * replications, unit="ratio"),
        "block_rate.HK": band([95 / 100] * replications, unit="ratio"),
    }
    for p in ("zhipu", "deepseek"):
        out[f"alt_revenue_gained_usd.{p}"] = band([alt_revenue(p, r, scale) for r in rs], unit="usd")
        out[f"orgs_migrated.{p}"] = band([final[("migrated", p)]] * replications, unit="orgs")
    for (state, provider), n in final.items():
        if not provider:
            out[f"orgs_final.{state}"] = band([n] * replications, unit="orgs")
    out["orgs_final.migrated"] = band([400] * replications, unit="orgs")
    return out


def hotspots() -> list[dict[str, Any]]:
    return [{"provider": "zhipu", "time": day(d), "utilisation": round(zhipu_utilisation(d), 6),
             "rejected_429": 50} for d in range(DAYS) if d >= BLOCK_DAY and zhipu_utilisation(d) > 0.8]


# ---------------------------------------------------------------- writers


def scenario_yaml() -> str:
    return resolved_yaml(load(SCENARIO).scenario)


def write_files(path: Path, kind: str, summary: dict[str, Any], **extra: Any) -> Path:
    path.mkdir(parents=True)
    write_json(path / "meta.json", meta(kind=kind, scenario=SCENARIO, sha256="0" * 64,
                                        source=f"{SCENARIO}.yaml", seeds=[7], started=FIXED,
                                        finished=FIXED, **extra))
    (path / "scenario.yaml").write_text(scenario_yaml(), encoding="utf-8")
    write_json(path / "summary.json", summary)
    return path


def summary(kind: str, replications: int, scale: float = 1.0) -> dict[str, Any]:
    return {"format": "regionblock-run", "format_version": 1, "kind": kind, "scenario": SCENARIO,
            "replications": replications, "seed": 7, "headline": headline(replications, scale),
            "waterfall": waterfall(replications), "capacity_hotspots": hotspots()}


def write_sim_run(root: Path, name: str = "20241002T120000Z-openai-2024-cn-hk-simulate",
                  replications: int = 3, scale: float = 1.0) -> Path:
    """A simulation; ``scale`` is what ``--scale`` would record in meta.json (the numbers are
    the same whatever it says)."""
    path = write_files(root / name, "simulate", summary("simulate", replications), scale=scale)
    write_timeseries(path / "timeseries.csv", rows(replications))
    return path


LOADTEST_SCALE = 0.9
#: What loadtests.plan.Plan.scale records (the figures of a real 40-user run of this scenario).
LOADTEST_SAMPLE = {"users": 40, "organisations": 55150, "orgs_per_user": 1378.75,
                   "requests_scale": 1 / 3400, "speedup": 2160.0}
#: locust_ttft.csv of the load test: name → (streamed requests, p50, p95, p99).
LOCUST_TTFT = {"openai|CN|relay": (12, 350.0, 800.0, 1200.0), "openai|US|direct": (480, 200.0, 450.0, 700.0)}
#: A load test's latency percentiles with the requests they rest on (the demo's of 2026-12-04).
LOADTEST_LATENCY = {
    "latency_ms.direct.p99.after": band([27887.25], unit="ms", label="direct latency p99 after",
                                        requests=1784),
    "latency_ms.relay.p99.after": band([49163.15], unit="ms", label="relay latency p99 after",
                                       requests=15)}
THIN_DAYS = (50, 51, 52)
VERY_THIN_DAYS = (60, 61)


def write_loadtest_run(root: Path, name: str = "20241002T130000Z-openai-2024-cn-hk-loadtest", *,
                       timing: str = "true", time_scale: float = 1.0, thin: bool = False) -> Path:
    """A load test of the same world whose revenue is 90 % of the simulation's (replication 0);
    ``thin``: with the THIN_DAYS (× 0.04) and VERY_THIN_DAYS (× 0.01) request counts."""
    s = summary("loadtest", 1, LOADTEST_SCALE)
    s["scale"] = dict(LOADTEST_SAMPLE)
    s["loadtest"] = {"timing": timing, "time_scale": time_scale}
    s["headline"].update(LOADTEST_LATENCY)
    path = write_files(root / name, "loadtest", s)
    factors = {**dict.fromkeys(THIN_DAYS, 0.04), **dict.fromkeys(VERY_THIN_DAYS, 0.01)} if thin else None
    write_timeseries(path / "timeseries.csv", rows(1, src="loadtest", scale=LOADTEST_SCALE,
                                                   thin=factors))
    lines = ["Type,Name,Count,Median (ms),95%,99%,Min (ms),Max (ms),Average (ms)"]
    lines += [f"TTFT,{k},{n},{a:.1f},{b:.1f},{c:.1f},{a:.1f},{c:.1f},{a:.1f}"
              for k, (n, a, b, c) in LOCUST_TTFT.items()]
    (path / "locust_ttft.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


SWEEP = {"behaviour.choice.price": [-0.8, -0.4, -0.2], "behaviour.relay.markup": [0.1, 0.3]}


def sweep_lost(price: float, markup: float) -> float:
    """Headline of a sweep point: lost revenue, linear in both parameters."""
    return 100_000 + 20_000 * price + 50_000 * markup


def write_sweep_run(root: Path, name: str = "20241002T140000Z-openai-2024-cn-hk-sweep") -> Path:
    points = []
    for i, (price, markup) in enumerate((p, m) for p in SWEEP["behaviour.choice.price"]
                                        for m in SWEEP["behaviour.relay.markup"]):
        lost = sweep_lost(price, markup)
        points.append({"index": i, "run_dir": f"point-{i:03d}",
                       "overrides": {"behaviour.choice.price": price, "behaviour.relay.markup": markup},
                       "headline": {"incumbent_revenue_lost_usd":
                                    band([lost - 1000, lost, lost + 1000], unit="usd"),
                                    "incumbent_revenue_lost_pct":
                                    band([lost / 5000] * 3, unit="pct")}})
    s = {"format": "regionblock-run", "format_version": 1, "kind": "sweep", "scenario": SCENARIO,
         "replications": 3, "seed": 7, "points": points}
    return write_files(root / name, "sweep", s, parameters=SWEEP)


def write_minimal_run(root: Path, name: str = "20241002T150000Z-openai-2024-cn-hk-simulate") -> Path:
    """A simulation that recorded revenue only (one replication): a report of one chart."""
    path = write_files(root / name, "simulate", {"format": "regionblock-run", "format_version": 1,
                                                 "kind": "simulate", "scenario": SCENARIO,
                                                 "replications": 1, "seed": 7, "headline": {}})
    write_timeseries(path / "timeseries.csv",
                     (r for r in rows(1) if r[3] == "revenue_usd"))
    return path
