"""summary.json: headline figures as mean with 5/95 % bands over replications, the revenue
waterfall, capacity hot spots and the conservation checks."""

from __future__ import annotations

from typing import Any

import numpy as np

from scenarios.rundir import FORMAT, FORMAT_VERSION, band
from scenarios.schema import Scenario
from sim.replication import FLOW_METRICS, ReplicationResult

WATERFALL = ("baseline", "blocked", "kept via relay", "kept via allow-list", "lost to alternatives",
             "lost to churn", "actual")
HOTSPOT_UTILISATION = 0.8
HOTSPOTS = 10

_LABELS = {
    "incumbent_revenue_usd": "Incumbent revenue",
    "incumbent_baseline_revenue_usd": "Incumbent revenue without the block (baseline)",
    "incumbent_revenue_lost_usd": "Incumbent revenue lost vs. the baseline",
    "incumbent_revenue_lost_pct": "Incumbent revenue lost vs. the baseline (%)",
    "relay_markup_usd": "Mark-up paid to relays",
    "retry_amplification": "Attempts per denied request (retries included)",
    "blocked_regions_baseline_revenue_usd": "Blocked regions' post-block baseline revenue",
    "blocked_regions_revenue_lost_pct": "Blocked regions' post-block revenue lost (%)",
    "blocked_regions_share_of_revenue_pct": "Blocked regions' share of post-block revenue (%)",
}


def unit_and_label(key: str) -> tuple[str, str]:
    head, _, rest = key.partition(".")
    if key in _LABELS:
        unit = "pct" if key.endswith("_pct") else "usd" if key.endswith("_usd") else "ratio"
        return unit, _LABELS[key]
    if head == "alt_revenue_gained_usd":
        return "usd", f"Revenue gained by {rest}"
    if head == "orgs_final":
        return "orgs", f"Organisations {rest} at the end"
    if head == "orgs_migrated":
        return "orgs", f"Organisations migrated to {rest}"
    if head in ("latency_ms", "ttft_ms"):
        parts = rest.split(".")
        path, q, when = parts[0], parts[-2], parts[-1]
        at = f" at {parts[1]}" if len(parts) == 4 else ""
        what = "Latency" if head == "latency_ms" else "Time to first token (streamed)"
        return "ms", f"{what} {q} on the {path} path{at}, {when} the block"
    if head == "block_rate":
        return "ratio", f"Share of {rest}'s incumbent requests blocked after the block"
    return "", key


def headline_bands(results: list[ReplicationResult]) -> dict[str, Any]:
    keys: list[str] = []
    for r in results:
        keys += [k for k in r.headline if k not in keys]
    out: dict[str, Any] = {}
    for key in keys:
        values = [r.headline[key] for r in results if key in r.headline]
        unit, label = unit_and_label(key)
        out[key] = band(values, unit=unit, label=label)
    return out


def waterfall(results: list[ReplicationResult]) -> list[dict[str, Any]]:
    return [{"label": label, "value_usd": round(float(np.mean([r.waterfall[label] for r in results])), 2)}
            for label in WATERFALL]


def hotspots(s: Scenario, results: list[ReplicationResult], times: list[str]) -> list[dict[str, Any]]:
    """Provider bins whose busiest hour ran at ≥ 80 % of capacity, or that rejected requests."""
    util = np.mean([r.utilisation for r in results], axis=0)
    rejected = np.mean([r.rejected for r in results], axis=0)
    hot = [(float(util[k, b]), k, b) for k in range(util.shape[0]) for b in range(util.shape[1])
           if util[k, b] >= HOTSPOT_UTILISATION or rejected[k, b] >= 1.0]
    hot.sort(key=lambda x: (-x[0], x[1], x[2]))
    return [{"provider": s.providers[k].name, "time": times[b], "utilisation": round(u, 4),
             "rejected_429": round(float(rejected[k, b]), 1)} for u, k, b in hot[:HOTSPOTS]]


def checks(s: Scenario, results: list[ReplicationResult], population: float) -> dict[str, Any]:
    """Invariants every run must satisfy, recomputed from what is written."""
    idx = {m: i for i, m in enumerate(FLOW_METRICS)}
    balanced = all(
        np.array_equal(r.flows[idx["requests"]], r.flows[idx["allowed"]] + r.flows[idx["warned"]]
                       + r.flows[idx["blocked"]] + r.flows[idx["failed"]]) for r in results)
    # whole organisations, or a load test's weighted sample (sums of float weights)
    conserved = all(bool(np.allclose(r.orgs.sum(axis=(1, 2, 3)), population, rtol=1e-9, atol=0))
                    for r in results)
    residual = float(np.mean([r.waterfall["actual"] - sum(r.waterfall[k] for k in WATERFALL[:4])
                              for r in results]))
    return {"requests_balance": balanced, "organisations_conserved": conserved,
            "organisations": population,
            "waterfall_residual_usd": round(residual, 2)}


#: How to read the dollar figures (summary.json ``magnitudes``).
MAGNITUDES = ("Dollar figures scale with the scenario's assumed organisation counts and request "
              "rates (labelled ASSUMPTION in the scenario); read the relative figures (% lost, "
              "the blocked regions' share) first.")


#: What a paired simulation's bands cover (``simulate --sample-of``).
PAIRED_BANDS = ("5-95 % over replications of the load test's own organisations (their ids, "
                "request rates, weights and generators fixed, in the full market's context, with "
                "the scenario's values for its uncertain parameters): request-level chance only, "
                "the prediction band of that sample, against which the load test is judged.")


def bands_cover(s: Scenario) -> str:
    """What the 5–95 % bands are over (summary.json ``bands``; the report prints it)."""
    drawn = ", ".join(u.path for u in s.uncertain)
    return ("5-95 % over replications; each replication resamples the population (request rates "
            "and models of every organisation), the organisations' decisions and the traffic"
            + (f", and draws the scenario's uncertain parameters ({drawn})" if drawn else "")
            + ". Every other assumed parameter is fixed at its value in the scenario: the bands "
            "do not cover it (see `regionblock sweep`). Each replication's no-block baseline "
            "shares its draws (common random numbers).")


def summary(s: Scenario, results: list[ReplicationResult], *, seed: int, times: list[str],
            population: float, paired: bool = False) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": "simulate",
        "scenario": s.name,
        "replications": len(results),
        "seed": seed,
        "headline": headline_bands(results),
        "bands": PAIRED_BANDS if paired else bands_cover(s),
        "magnitudes": MAGNITUDES,
        "waterfall": waterfall(results),
        "capacity_hotspots": hotspots(s, results, times),
        "checks": checks(s, results, population),
    }
