"""The incumbent's revenue impact as a waterfall, from summary.json's ``waterfall``.

Contract: baseline → blocked (negative) → kept via relay → kept via allow-list lead to the actual
revenue; ``lost to alternatives`` and ``lost to churn`` split the net loss and are drawn hatched
inside the gap between baseline and actual, since they are a breakdown, not further steps.
Anything the steps do not explain (waiting, failures, noise) is shown as ``other``.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

from matplotlib.figure import Figure

from reports import fmt, style
from reports.charts.common import (
    Context,
    Section,
    TextTable,
    render,
    run_tag,
    run_title,
    short_usd,
    usd_axis,
)
from reports.data import RunData

STEPS = ("blocked", "kept via relay", "kept via allow-list")
SPLIT = ("lost to alternatives", "lost to churn")
LABELS = ("baseline", *STEPS, *SPLIT, "actual")
CAPTION = ("The drop at 'blocked' is what the block put at risk; the green steps are what the "
           "incumbent kept anyway, and the hatched bars split the net loss by where it went.")
GAIN, LOSS, SPLIT_COLOUR, OTHER_COLOUR = "#59a14f", "#e15759", "#f28e2b", "#bab0ac"


def values(run: RunData) -> dict[str, float] | None:
    """Label → USD (mean over replications), or None when the run has no usable waterfall."""
    raw = run.run.summary.get("waterfall")
    if not isinstance(raw, list):
        return None
    out: dict[str, float] = {}
    for item in raw:
        if isinstance(item, dict) and isinstance(item.get("value_usd"), (int, float)):
            out[str(item.get("label"))] = float(item["value_usd"])
    return out if "baseline" in out and "actual" in out else None


def section(ctx: Context) -> Section:
    sec = Section("Incumbent revenue impact (waterfall)")
    for run in ctx.runs:
        v = values(run)
        if v is None:
            continue
        inc = ctx.palette.label(run.scenario.incumbent.name)
        title = f"{inc} revenue over the window, baseline to actual (USD) — {run_title(run)}"
        sec.charts.append(render(ctx, f"{run.key}-waterfall", title, CAPTION, style.WIDE,
                                 partial(draw, v=v, incumbent=inc)))
        sec.tables.append(table(run, v))
    return sec.skip_if_empty("no revenue waterfall in these runs' summary.json")


def other(v: dict[str, float]) -> float:
    """What baseline + steps leave unexplained up to the actual revenue."""
    return v["actual"] - v["baseline"] - sum(v.get(k, 0.0) for k in STEPS)


def table(run: RunData, v: dict[str, float]) -> TextTable:
    rows = [(label, fmt.usd(v[label]), _share(v[label], v["baseline"])) for label in LABELS
            if label in v]
    rest = other(v)
    if abs(rest) >= 0.5:
        rows.insert(len([r for r in rows if r[0] in ("baseline", *STEPS)]),
                    ("other (not explained by the steps)", fmt.usd(rest), _share(rest, v["baseline"])))
    return TextTable(f"Incumbent revenue waterfall — {run_tag(run)}", ("step", "USD", "of baseline"),
                     rows)


def _share(x: float, base: float) -> str:
    return fmt.pct(100.0 * x / base) if base else "n/a"


def bars(v: dict[str, float]) -> list[dict[str, Any]]:
    """Bar geometry: label, bottom, height, colour, hatched."""
    out: list[dict[str, Any]] = [_bar("baseline", 0.0, v["baseline"], style.INCUMBENT_COLOUR)]
    level = v["baseline"]
    steps = [(k, v[k]) for k in STEPS if k in v]
    if abs(other(v)) >= 0.5:
        steps.append(("other", other(v)))
    for label, x in steps:
        colour = OTHER_COLOUR if label == "other" else (GAIN if x >= 0 else LOSS)
        out.append(_bar(label, level, x, colour))
        level += x
    gap_level = v["actual"]
    for label in SPLIT:
        if label in v:
            x = abs(v[label])
            out.append(_bar(label, gap_level, x, SPLIT_COLOUR, hatched=True, signed=-x))
            gap_level += x
    out.append(_bar("actual", 0.0, v["actual"], style.INCUMBENT_COLOUR))
    return out


def _bar(label: str, bottom: float, height: float, colour: str, *, hatched: bool = False,
         signed: float | None = None) -> dict[str, Any]:
    return {"label": label, "bottom": bottom, "height": height, "colour": colour,
            "hatched": hatched, "value": height if signed is None else signed}


def draw(fig: Figure, v: dict[str, float], incumbent: str) -> None:
    ax = fig.add_subplot()
    geometry = bars(v)
    for i, b in enumerate(geometry):
        ax.bar(i, b["height"], bottom=b["bottom"], color="white" if b["hatched"] else b["colour"],
               edgecolor=b["colour"], hatch="///" if b["hatched"] else None, width=0.7,
               linewidth=1.2)
        top = b["bottom"] + max(b["height"], 0.0)
        ax.annotate(_annot(b["value"], b["label"] in ("baseline", "actual")), (i, top),
                    xytext=(0, 3), textcoords="offset points", ha="center", va="bottom", fontsize=9)
    for i in range(len(geometry) - 1):  # connectors show where each step starts
        level = geometry[i]["bottom"] + geometry[i]["height"]
        if not geometry[i + 1]["hatched"] and geometry[i + 1]["label"] != "actual":
            ax.plot([i + 0.35, i + 0.65], [level, level], color="#555555", linewidth=0.8)
    ax.set_xticks(range(len(geometry)), [_wrap(b["label"]) for b in geometry])
    ax.set_ylabel(f"{incumbent} revenue over the window (USD)")
    ax.set_ylim(0, max(b["bottom"] + max(b["height"], 0) for b in geometry) * 1.12)
    usd_axis(ax)
    ax.grid(axis="x", visible=False)


def _annot(x: float, total: bool) -> str:
    if not math.isfinite(x):
        return "n/a"
    text = short_usd(abs(x))
    return text if total else ("+" if x >= 0 else "−") + text


def _wrap(label: str) -> str:
    """Two lines for long labels so eight of them fit side by side."""
    words = label.split()
    if len(words) < 2:
        return label
    return " ".join(words[:-1]) + "\n" + words[-1] if len(words) > 2 else "\n".join(words)
