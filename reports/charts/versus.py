"""Simulations side by side: each full-market simulation after the first against the first.

Rehearsing a rollout usually means comparing plans — the default scenario against a strict one, a
staged rollout against a sudden block, a scenario with one ``--set`` against another. Given two or
more full-market simulations, the report lists each headline figure of each run beside the first
run's, with the difference of their means, its 90 % interval, and whether that excludes zero:

- **paired by replication** where both runs have the figure for the same replications
  (headline.csv): replication i of one run against replication i of the other, a t interval on
  the n differences. Two runs of one seed draw each replication's population, decisions and
  traffic from the same streams wherever their scenarios agree (common random numbers), so the
  difference of two plans is not buried under the spread both share; with other seeds the
  pairing is still valid, only no narrower;
- **Welch** otherwise (each run's replications as its own sample, ``sd`` of summary.json's bands);
- none (—) for a run of one replication, or one written before either existed.

Runs at different ``--scale`` are compared on relative figures only (shares, ratios, latencies):
their dollar amounts and organisation counts scale with the run.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

from reports import fmt
from reports.charts.common import Context, Section, TextTable, run_tag
from reports.charts.headline import rank
from reports.data import RunData

#: The interval's level (two-sided).
LEVEL = 0.90
#: Units that scale with the simulated population (left out across different ``--scale``).
EXTENSIVE = frozenset({"usd", "orgs"})


def t_quantile(p: float, df: int) -> float:
    """The p-quantile of Student's t with ``df`` (a whole number ≥ 1) degrees of freedom.

    Closed forms for one and two degrees of freedom; from three on, the Cornish–Fisher expansion
    around the normal quantile (Abramowitz & Stegun 26.7.5) refined by Newton's method on the
    exact distribution function (26.7.3–4, a finite sum for whole ``df``); past ``_CF_EXACT``
    degrees of freedom the expansion alone is exact to well below 1e-9."""
    if df < 1 or df != int(df):
        raise ValueError(f"degrees of freedom must be a whole number ≥ 1 (got {df})")
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must lie strictly between 0 and 1 (got {p})")
    if df == 1:
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    z = NormalDist().inv_cdf(p)
    z2 = z * z
    g1 = (z2 + 1) * z / 4
    g2 = ((5 * z2 + 16) * z2 + 3) * z / 96
    g3 = (((3 * z2 + 19) * z2 + 17) * z2 - 15) * z / 384
    g4 = ((((79 * z2 + 776) * z2 + 1482) * z2 - 1920) * z2 - 945) * z / 92160
    t = z + g1 / df + g2 / df ** 2 + g3 / df ** 3 + g4 / df ** 4
    if df > _CF_EXACT:
        return t
    scale = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    for _ in range(8):
        step = (_t_cdf(t, df) - p) / (scale * (1 + t * t / df) ** (-(df + 1) / 2))
        t -= step
        if abs(step) < 1e-13 * max(1.0, abs(t)):
            break
    return t


#: Degrees of freedom from which the Cornish–Fisher expansion needs no refining.
_CF_EXACT = 1000


def _t_cdf(t: float, df: int) -> float:
    """P(T ≤ t) for Student's t with whole ``df`` ≥ 1 (Abramowitz & Stegun 26.7.3–4)."""
    theta = math.atan(t / math.sqrt(df))
    c2, sin = math.cos(theta) ** 2, math.sin(theta)
    term = total = 1.0
    if df % 2 == 0:
        for k in range(1, df // 2):
            term *= c2 * (2 * k - 1) / (2 * k)
            total += term
        return 0.5 + 0.5 * sin * total
    if df == 1:
        return 0.5 + theta / math.pi
    for k in range(1, (df - 1) // 2):
        term *= c2 * (2 * k) / (2 * k + 1)
        total += term
    return 0.5 + (theta + sin * math.cos(theta) * total) / math.pi


def welch(a: dict[str, Any], b: dict[str, Any]) -> tuple[float, float, float] | None:
    """``b − a`` of two bands' means and its ``LEVEL`` interval (lo, hi); None without a spread
    to judge by (a run of one replication, or a summary.json written before bands had ``sd``)."""
    try:
        ma, mb = float(a["mean"]), float(b["mean"])
        sa, sb, na, nb = float(a["sd"]), float(b["sd"]), int(a["n"]), int(b["n"])
    except (KeyError, TypeError, ValueError):
        return None
    if na < 2 or nb < 2:
        return None
    d = mb - ma
    va, vb = sa * sa / na, sb * sb / nb
    se = math.sqrt(va + vb)
    if se == 0.0:
        return d, d, d
    # Welch–Satterthwaite, rounded down (a wider interval: on the safe side)
    df = (va + vb) ** 2 / (va * va / (na - 1) + vb * vb / (nb - 1))
    half = t_quantile(0.5 + LEVEL / 2, max(int(df), 1)) * se
    return d, d - half, d + half


def paired(a: dict[int, float], b: dict[int, float]) -> tuple[float, float, float] | None:
    """The mean of ``b[i] − a[i]`` over the replications both have, and its ``LEVEL`` t interval;
    None unless both have the same two or more replications."""
    if len(a) < 2 or a.keys() != b.keys():
        return None
    d = [b[i] - a[i] for i in sorted(a)]
    n = len(d)
    mean = math.fsum(d) / n
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in d) / (n - 1))
    half = t_quantile(0.5 + LEVEL / 2, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def _level() -> str:
    return f"{LEVEL * 100:g} %"


def comparable(run: RunData) -> bool:
    """A full-market simulation (not a load test's paired one, not a sweep)."""
    return run.kind == "simulate" and run.run.sample_of is None


def _scale(run: RunData) -> float:
    scale = run.run.meta.get("scale")
    return float(scale) if isinstance(scale, (int, float)) else 1.0


def _difference(diff: tuple[float, float, float] | None, unit: str) -> tuple[str, str]:
    """The difference with its interval, in points for a percentage; whether it excludes 0."""
    if diff is None:
        return "—", "—"
    d, lo, hi = diff

    def show(v: float) -> str:
        # a difference of percentages is in points
        return fmt.signed(v, unit).replace(" %", " pt") if unit == "pct" else fmt.signed(v, unit)

    excludes = "yes" if lo > 0 or hi < 0 else "no"
    return f"{show(d)} [{show(lo)}, {show(hi)}]", excludes


def table(ref: RunData, other: RunData) -> tuple[TextTable, list[str]]:
    """``other`` against ``ref``: one row per headline figure both have (per-provider latency
    breakdowns left out), and the notes the table needs."""
    notes = []
    same_scale = _scale(ref) == _scale(other)
    if not same_scale:
        notes.append(f"{other.key} and {ref.key} were simulated at different --scale "
                     f"({_scale(other):g} and {_scale(ref):g}): only their relative figures are "
                     "compared")
    rows = []
    no_interval = False
    for key in sorted(set(ref.headline) & set(other.headline), key=rank):
        a, b = ref.headline[key], other.headline[key]
        if not (isinstance(a, dict) and isinstance(b, dict) and "mean" in a and "mean" in b):
            continue
        if key.startswith(("latency_ms.", "ttft_ms.")) and key.count(".") > 3:
            continue   # per provider: the path's own figures stand for them here
        unit = str(a.get("unit", ""))
        if not same_scale and unit in EXTENSIVE:
            continue
        diff, how = paired(ref.per_replication.get(key, {}), other.per_replication.get(key, {})), "paired"
        if diff is None:
            diff, how = welch(a, b), "Welch"
        if diff is None:
            how, no_interval = "—", True
        shown, excludes = _difference(diff, unit)
        rows.append((key, str(a.get("label", "")), fmt.value(float(a["mean"]), unit),
                     fmt.value(float(b["mean"]), unit), shown, excludes, how))
    if no_interval:
        notes.append("a difference without an interval (—) is of a run with one replication, or "
                     "of one written before its headline.csv and its bands' standard deviations")
    title = (f"{run_tag(other)} ({other.scenario.name}) against {run_tag(ref)} "
             f"({ref.scenario.name}, the first simulation given): means over replications")
    header = ("figure", "what", ref.key, other.key,
              f"{other.key} − {ref.key} [{_level()} interval]", "excludes 0", "by")
    seeds = (ref.run.summary.get("seed"), other.run.summary.get("seed"))
    if any(row[-1] == "paired" for row in rows):
        notes.append(f"{other.key} and {ref.key} paired by replication: "
                     + ("one seed, so each pair shares its draws wherever the scenarios agree "
                        "(common random numbers)" if seeds[0] == seeds[1] else
                        f"seeds {seeds[1]} and {seeds[0]}, so the pairs share no draws (the "
                        "interval is as wide as unpaired runs'; give both runs one --seed)"))
    return TextTable(title, header, rows, align="llrrrll"), notes


def section(ctx: Context) -> Section:
    sec = Section("Simulations side by side")
    sims = [r for r in ctx.runs if comparable(r)]
    if len(sims) < 2:
        return sec   # nothing to compare: the section is left out
    ref = sims[0]
    for other in sims[1:]:
        t, notes = table(ref, other)
        if t.rows:
            sec.tables.append(t)
        sec.notes.extend(notes)
    sec.notes.append(
        f"each difference is of the two runs' means over their replications, with its {_level()} "
        "interval: paired by replication where both runs have the figure for the same "
        "replications (headline.csv), else Welch's (each run's replications as its own sample); "
        f"where two runs do not differ, about one row in {round(1 / (1 - LEVEL))} still "
        "excludes 0 by chance")
    return sec.skip_if_empty("the simulations have no headline figure in common")
