"""Headline figures and the revenue waterfall of one replication (bands come in :mod:`sim.summary`)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import numpy as np

from scenarios.ledger import revenue_usd
from scenarios.rundir import ORG_STATES, PATHS
from sim.latency import pool, pooled_percentiles, pooled_percentiles_by
from sim.outcome import prices
from sim.setup import FLOW_METRICS, Run, Setup, blocked_regions, first_block_start

if TYPE_CHECKING:
    from sim.latency import LatencySamples


def _metric(flows: np.ndarray, name: str) -> np.ndarray:
    return flows[FLOW_METRICS.index(name)]


def after_bins(setup: Setup) -> np.ndarray:
    """Bins that start at or after the first block stage (empty if nothing is blocked)."""
    start = first_block_start(setup.s)
    if start is None:
        return np.zeros(0, dtype=np.int64)
    h = (start - setup.s.window.start).total_seconds() / 3600.0
    return np.flatnonzero(setup.edges[:-1] >= h - 1e-9)


def headline(setup: Setup, run: Run, base: Run, flows: np.ndarray,
             lat: LatencySamples) -> dict[str, float]:
    s = setup.s
    inc = [p.name for p in s.providers].index(s.incumbent.name)
    revenue = _metric(flows, "revenue_usd")
    baseline = _metric(flows, "baseline_revenue_usd")
    actual = float(revenue[:, :, inc].sum())
    base_total = float(baseline[:, :, inc].sum())
    out: dict[str, float] = {
        "incumbent_revenue_usd": actual,
        "incumbent_baseline_revenue_usd": base_total,
        "incumbent_revenue_lost_usd": base_total - actual,
        "incumbent_revenue_lost_pct": 100.0 * (base_total - actual) / base_total if base_total else 0.0,
        "relay_markup_usd": float(_metric(flows, "relay_markup_usd").sum()),
    }
    for k, p in enumerate(s.providers):
        if not p.incumbent:
            out[f"alt_revenue_gained_usd.{p.name}"] = float(revenue[:, :, k].sum() - baseline[:, :, k].sum())
    final = Counter((line[-1][1], line[-1][2]) for line in run.timelines.changes)
    for st in ORG_STATES:
        out[f"orgs_final.{st}"] = float(sum(v for (state, _), v in final.items() if state == st))
    for p in s.alternatives:
        out[f"orgs_migrated.{p.name}"] = float(final[("migrated", p.name)])
    first = float(run.out.first_denied.sum())
    out["retry_amplification"] = (first + float(run.out.retries.sum())) / first if first else 1.0
    after = after_bins(setup)
    # every bin is before the block or after it: code 0 before, 1 after (on the direct path
    # 1 + the provider after, for the per-provider figures)
    in_after = np.isin(lat.bin, after)
    halves = in_after.astype(np.int64)
    by_provider = np.where(in_after, 1 + lat.provider, 0)
    measures = (("latency_ms", None, None), ("ttft_ms", lat.ttft_ms, lat.streamed))  # streamed requests
    direct = PATHS.index("direct")
    direct_after: list[list[np.ndarray | None]] = []
    for j, path in enumerate(PATHS):
        for name, values, keep in measures:
            # each path's samples sorted once per measure; every figure of it pools groups of them
            pooled = pool(lat, j, values, keep)
            if j == direct:
                before, *per_provider = pooled_percentiles_by(pooled, by_provider, 1 + len(s.providers))
                halves_pct = [before, pooled_percentiles(pooled, in_after)]
                direct_after.append(per_provider)
            else:
                halves_pct = pooled_percentiles_by(pooled, halves, 2)
            for label, pct in zip(("before", "after"), halves_pct, strict=True):
                if pct is not None:
                    for q, v in zip(("p50", "p95", "p99"), pct, strict=True):
                        out[f"{name}.{path}.{q}.{label}"] = float(v)
    # per provider on the direct path after the block (the compared figures: scenarios.figures)
    for k, p in enumerate(s.providers):
        for (name, _, _), per_provider in zip(measures, direct_after, strict=True):
            pct = per_provider[k]
            if pct is not None:
                for q, v in zip(("p50", "p95"), pct[:2], strict=True):
                    out[f"{name}.direct.{p.name}.{q}.after"] = float(v)
    # relative figures: what the blocked regions would have paid after the block, and its share lost
    regions = np.asarray(blocked_regions(s), dtype=np.int64)
    if regions.size and after.size:
        base_after = float(baseline[np.ix_(after, regions)][..., inc, :].sum())
        actual_after = float(revenue[np.ix_(after, regions)][..., inc, :].sum())
        out["blocked_regions_baseline_revenue_usd"] = base_after
        out["blocked_regions_revenue_lost_pct"] = (
            100.0 * (base_after - actual_after) / base_after if base_after else 0.0)
        total_after = float(baseline[after][:, :, inc].sum())
        out["blocked_regions_share_of_revenue_pct"] = (
            100.0 * base_after / total_after if total_after else 0.0)
    requests = _metric(flows, "requests")[after][:, :, inc].sum(axis=(0, 2))
    blocked = _metric(flows, "blocked")[after][:, :, inc].sum(axis=(0, 2))
    for r, reg in enumerate(s.regions):
        out[f"block_rate.{reg.code}"] = float(blocked[r] / requests[r]) if requests[r] else 0.0
    return out


def waterfall(setup: Setup, run: Run, base: Run, flows: np.ndarray) -> dict[str, float]:
    """baseline → blocked → kept via relay → kept via allow-list → (lost to alternatives/churn) → actual."""
    s = setup.s
    inc = [p.name for p in s.providers].index(s.incumbent.name)
    regions = blocked_regions(s)
    after = after_bins(setup)
    revenue = _metric(flows, "revenue_usd")
    baseline = _metric(flows, "baseline_revenue_usd")
    sub = np.ix_(after, np.asarray(regions, dtype=np.int64))
    blocked = -float(baseline[sub][..., inc, :].sum()) if regions and after.size else 0.0
    kept_relay = float(revenue[sub][..., inc, PATHS.index("relay")].sum()) if regions and after.size else 0.0
    kept_allow = float(revenue[sub][..., inc, PATHS.index("direct")].sum()) if regions and after.size else 0.0
    remaining = min(blocked + kept_relay + kept_allow, 0.0)
    to_alts = -min(_incumbent_value_elsewhere(setup, run, regions, after, inc), -remaining)
    return {
        "baseline": float(baseline[:, :, inc].sum()),
        "blocked": blocked,
        "kept via relay": kept_relay,
        "kept via allow-list": kept_allow,
        "lost to alternatives": to_alts,
        "lost to churn": remaining - to_alts,
        "actual": float(revenue[:, :, inc].sum()),
    }


def _incumbent_value_elsewhere(setup: Setup, run: Run, regions: list[int], after: np.ndarray,
                               inc: int) -> float:
    """What the requests served by alternatives (blocked regions, after the block) would have paid
    the incumbent at its own list prices."""
    cells = run.cells
    k = run.fa.provider[cells.fate]
    mine = (k != inc) & (k >= 0) & np.isin(cells.region, regions) & np.isin(cells.bin, after)
    pin, pout = prices(setup.s)
    value = revenue_usd(pin[inc, cells.model[mine]], pout[inc, cells.model[mine]],
                        cells.tokens_in[mine], cells.tokens_out[mine])
    return float(value.sum())
