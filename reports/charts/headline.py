"""Headline figures of each run, from its summary.json (mean with the 5–95 % band)."""

from __future__ import annotations

from reports import fmt
from reports.charts.common import Context, Section, TextTable, run_tag
from reports.data import RunData
from scenarios.rundir import thin_percentile

#: The order headline keys are listed in: these prefixes first, the rest alphabetically.
ORDER = ("incumbent_revenue_usd", "incumbent_baseline_revenue_usd", "incumbent_revenue_lost_usd",
         "incumbent_revenue_lost_pct", "alt_revenue_gained_usd.", "relay_markup_usd", "orgs_final.",
         "orgs_migrated.", "block_rate.", "retry_amplification", "latency_ms.")


def rank(key: str) -> tuple[int, str]:
    for i, prefix in enumerate(ORDER):
        if key == prefix or (prefix.endswith(".") and key.startswith(prefix)):
            return i, key
    return len(ORDER), key


def value(run: RunData, band: dict[str, object], unit: str) -> str:
    """The band as text; a load test's latency percentile with the requests it rests on, and
    marked where they are fewer than the scenario's ``slos.min_requests`` (``thin_percentile``)."""
    text = fmt.band(band, unit)
    n = band.get("requests")
    if not isinstance(n, int):
        return text
    thin = thin_percentile(band, run.scenario.slos.min_requests)
    return f"{text} — {thin}" if thin else f"{text} ({n:,} requests)"


def table(run: RunData) -> TextTable | None:
    rows = []
    for key in sorted(run.headline, key=rank):
        band = run.headline[key]
        if isinstance(band, dict) and "mean" in band:
            unit = str(band.get("unit", ""))
            rows.append((key, str(band.get("label", "")), value(run, band, unit), unit))
    if not rows:
        return None
    return TextTable(f"Headline figures — {run_tag(run)} ({run.name})",
                     ("figure", "what", "mean (5–95 % across replications)", "unit"), rows,
                     align="llrl")


def section(ctx: Context) -> Section:
    sec = Section("Headline figures")
    for run in ctx.runs:
        t = table(run)
        if t is not None:
            sec.tables.append(t)
    return sec.skip_if_empty("no headline figures in these runs' summary.json")
