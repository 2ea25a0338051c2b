"""A sweep: the headline figure against each parameter, and a tornado chart of sensitivities.

For a grid over several parameters, the figure at one value of a parameter is the mean over all
points with that value (a marginal mean). The tornado bar of a parameter runs from the figure at
its lowest value to the figure at its highest, drawn relative to the mean over all points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from reports import fmt, style
from reports.charts.common import Context, Section, TextTable, render, run_tag, run_title, usd_axis
from reports.data import RunData

PREFERRED = ("incumbent_revenue_lost_usd", "incumbent_revenue_lost_pct", "incumbent_revenue_usd")
LOW_COLOUR, HIGH_COLOUR = "#4e79a7", "#f28e2b"
CAPTION_EFFECT = ("Steep panels are the assumptions the answer depends on; error bars are the "
                  "5–95 % band across replications.")
CAPTION_TORNADO = ("Longest bars first: these parameters move the headline most between the lowest "
                   "and highest values swept.")


@dataclass(frozen=True)
class Point:
    overrides: dict[str, Any]
    mean: float
    p5: float
    p95: float


@dataclass(frozen=True)
class Sweep:
    key: str          # headline key charted
    unit: str
    label: str
    parameters: dict[str, list[Any]]
    points: list[Point]


def read_sweep(run: RunData) -> Sweep | None:
    raw = run.run.summary.get("points")
    if not isinstance(raw, list) or not raw:
        return None
    heads = [p.get("headline", {}) for p in raw if isinstance(p, dict)]
    key = next((k for k in PREFERRED if all(k in h for h in heads)),
               next(iter(heads[0]), None) if heads else None)
    if key is None:
        return None
    points = [Point(dict(p.get("overrides", {})), *(float(p["headline"][key].get(s, math.nan))
                                                    for s in ("mean", "p5", "p95")))
              for p in raw if isinstance(p, dict) and key in p.get("headline", {})]
    first = raw[0]["headline"][key]
    return Sweep(key=key, unit=str(first.get("unit", "")), label=str(first.get("label", key)),
                 parameters=parameters(run, points), points=points)


def parameters(run: RunData, points: list[Point]) -> dict[str, list[Any]]:
    """Swept paths and their values: from meta.json, else from the points' overrides."""
    meta = run.run.meta.get("parameters")
    if isinstance(meta, dict) and meta:
        return {str(k): list(v) for k, v in meta.items()}
    out: dict[str, list[Any]] = {}
    for p in points:
        for k, v in p.overrides.items():
            if v not in out.setdefault(k, []):
                out[k].append(v)
    return out


def section(ctx: Context) -> Section:
    sec = Section("Sweep: sensitivity of the headline figure")
    for run in ctx.runs:
        sw = read_sweep(run) if run.kind == "sweep" else None
        if sw is None:
            continue
        unit = _unit_label(sw.unit)
        sec.charts.append(render(ctx, f"{run.key}-effects",
                                 f"{sw.label} ({unit}) against each swept parameter — {run_title(run)}",
                                 CAPTION_EFFECT, _effects_size(sw),
                                 partial(draw_effects, sw=sw)))
        sec.charts.append(render(ctx, f"{run.key}-tornado",
                                 f"Sensitivity of {sw.label} ({unit}): lowest vs highest value "
                                 f"swept — {run_title(run)}",
                                 CAPTION_TORNADO, style.WIDE, partial(draw_tornado, sw=sw)))
        sec.tables += [points_table(run, sw), tornado_table(run, sw)]
    return sec.skip_if_empty("no sweep among these runs")


def _unit_label(unit: str) -> str:
    return {"usd": "USD", "pct": "%", "orgs": "organisations", "ms": "ms"}.get(unit, unit or "value")


def _effects_size(sw: Sweep) -> tuple[float, float]:
    rows = math.ceil(len(sw.parameters) / 3)
    return (11.0, 4.2 * rows + 0.8)


# ---------------------------------------------------------------- maths


def marginal(sw: Sweep, path: str) -> list[tuple[Any, float, float, float]]:
    """(value, mean, p5, p95) of the figure averaged over points with each value of ``path``."""
    out = []
    for v in sw.parameters[path]:
        at = [p for p in sw.points if p.overrides.get(path) == v]
        if at:
            out.append((v, *(float(np.mean([getattr(p, s) for p in at])) for s in ("mean", "p5", "p95"))))
    return out


@dataclass(frozen=True)
class Swing:
    path: str
    low_value: Any
    low: float
    high_value: Any
    high: float

    @property
    def size(self) -> float:
        return abs(self.high - self.low)


def swings(sw: Sweep) -> list[Swing]:
    """Each parameter's figure at its first (lowest) and last (highest) value, largest swing first."""
    out = []
    for path in sw.parameters:
        m = marginal(sw, path)
        if len(m) >= 2:
            ordered = sorted(m, key=lambda row: _sort_key(row[0]))
            out.append(Swing(path, ordered[0][0], ordered[0][1], ordered[-1][0], ordered[-1][1]))
    return sorted(out, key=lambda s: (-s.size, s.path))


def _sort_key(v: Any) -> tuple[int, float, str]:
    return (0, float(v), "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0.0, str(v))


def reference(sw: Sweep) -> float:
    return float(np.mean([p.mean for p in sw.points]))


# ---------------------------------------------------------------- charts


def draw_effects(fig: Figure, sw: Sweep) -> None:
    n = len(sw.parameters)
    cols = min(n, 3)
    axes = fig.subplots(math.ceil(n / cols), cols, squeeze=False, sharey=True).ravel()
    for ax, path in zip(axes, sw.parameters, strict=False):
        m = sorted(marginal(sw, path), key=lambda row: _sort_key(row[0]))
        numeric = all(_sort_key(v)[0] == 0 for v, *_ in m)
        xs = [float(v) for v, *_ in m] if numeric else list(range(len(m)))
        means = np.array([row[1] for row in m])
        err = np.array([[row[1] - row[2] for row in m], [row[3] - row[1] for row in m]])
        ax.errorbar(xs, means, yerr=np.clip(err, 0, None), marker="o", color=LOW_COLOUR, capsize=4)
        if not numeric:
            ax.set_xticks(xs, [str(v) for v, *_ in m])
        ax.set_xlabel(path)
        _format_y(ax, sw.unit)
    axes[0].set_ylabel(f"{sw.label}\n({_unit_label(sw.unit)}, mean of points)")
    for ax in axes[n:]:
        ax.set_visible(False)


def _format_y(ax: Any, unit: str) -> None:
    if unit == "usd":
        usd_axis(ax)


def draw_tornado(fig: Figure, sw: Sweep) -> None:
    ax = fig.add_subplot()
    ref = reference(sw)
    rows = list(reversed(swings(sw)))  # largest at the top
    for i, s in enumerate(rows):
        for value, figure, colour, side in ((s.low_value, s.low, LOW_COLOUR, "low"),
                                            (s.high_value, s.high, HIGH_COLOUR, "high")):
            ax.barh(i, figure - ref, left=ref, color=colour, height=0.6,
                    label=f"{side}est value swept" if i == 0 else None)
            ax.annotate(f"{value}", (figure, i), xytext=(4 if figure >= ref else -4, 0),
                        textcoords="offset points", va="center",
                        ha="left" if figure >= ref else "right", fontsize=9)
    ax.axvline(ref, color="black", linewidth=1.0)
    ax.set_yticks(range(len(rows)), [s.path for s in rows])
    ax.set_xlabel(f"{sw.label} ({_unit_label(sw.unit)}); the black line is the mean of all points")
    _format_x(ax, sw.unit)
    lo, hi = ax.get_xlim()
    pad = 0.12 * (hi - lo)  # why: room for the value labels at the bar ends
    ax.set_xlim(lo - pad, hi + pad)
    ax.grid(axis="y", visible=False)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def _format_x(ax: Any, unit: str) -> None:
    if unit == "usd":
        usd_axis(ax, "x")


# ---------------------------------------------------------------- tables


def points_table(run: RunData, sw: Sweep) -> TextTable:
    header = ("point", *sw.parameters, f"{sw.key} (mean, 5–95 %)")
    rows = [(str(i), *(str(p.overrides.get(k, "")) for k in sw.parameters),
             fmt.band({"mean": p.mean, "p5": p.p5, "p95": p.p95}, sw.unit))
            for i, p in enumerate(sw.points)]
    return TextTable(f"Sweep points — {run_tag(run)}", header, rows)


def tornado_table(run: RunData, sw: Sweep) -> TextTable:
    rows = [(s.path, str(s.low_value), fmt.value(s.low, sw.unit), str(s.high_value),
             fmt.value(s.high, sw.unit), fmt.value(s.size, sw.unit)) for s in swings(sw)]
    return TextTable(f"Sensitivity of {sw.key} (tornado) — {run_tag(run)}",
                     ("parameter", "lowest value", "figure there", "highest value", "figure there",
                      "swing"), rows)
