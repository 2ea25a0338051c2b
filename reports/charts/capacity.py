"""Alternative providers' utilisation and 429s over time: where the migration wave hits capacity."""

from __future__ import annotations

from functools import partial

import numpy as np
from matplotlib.figure import Figure

from reports import fmt, style
from reports.charts.common import (
    Context,
    Section,
    TextTable,
    bin_unit,
    count_axis,
    dates,
    finish_time_axis,
    percent_axis,
    render,
    run_tag,
    run_title,
)
from reports.data import RunData, bands, cube

CAPTION = ("Look for providers whose utilisation approaches 100 % (hot spots are circled) and for "
           "429 bursts below: migrants who arrive faster than capacity see rejections.")
HOT = 0.8


def section(ctx: Context) -> Section:
    sec = Section("Alternative providers: capacity hot spots")
    for run in ctx.timed():
        if run.table is None or not (run.table.has("utilisation") or run.table.has("rejected_429")):
            continue
        title = f"Alternative providers' utilisation (%) and 429 rejections — {run_title(run)}"
        sec.charts.append(render(ctx, f"{run.key}-capacity", title, CAPTION, style.TALL,
                                 partial(draw, ctx=ctx, run=run)))
        sec.tables.append(hotspot_table(ctx, run))
    return sec.skip_if_empty("no capacity data (utilisation, 429s) in these runs")


def alternatives(ctx: Context, run: RunData, metric: str) -> list[str]:
    assert run.table is not None
    if not run.table.has(metric):
        return []
    inc = run.scenario.incumbent.name
    return ctx.palette.order([p for p in run.table.values_of("provider", metric) if p and p != inc])


def draw(fig: Figure, ctx: Context, run: RunData) -> None:
    assert run.table is not None
    top, bottom = fig.subplots(2, 1, sharex=True)
    x = dates(run.table.times)
    util = cube(run.table, "utilisation", ("provider",))
    for p in alternatives(ctx, run, "utilisation"):
        assert util is not None
        b = bands(util.series((p,)))
        top.plot(x, 100 * b.mean, color=ctx.palette.colour(p), linewidth=1.5, label=ctx.palette.label(p))
        if run.table.reps.size > 1:
            top.fill_between(x, 100 * b.p5, 100 * b.p95, color=ctx.palette.colour(p), alpha=0.2, linewidth=0)
    draw_hotspots(top, ctx, run)
    top.axhline(100, color=style.SLO_COLOUR, linewidth=1.0, label="full capacity")
    top.set_ylim(0, 115)
    percent_axis(top, of=100)
    top.set_ylabel("utilisation (% of concurrency)")
    finish_time_axis(top, fig, run, run.table.times)
    top.set_xlabel("")
    style.legend_outside(top)
    rej = cube(run.table, "rejected_429", ("provider",))
    for p in alternatives(ctx, run, "rejected_429"):
        assert rej is not None
        bottom.plot(x, bands(rej.series((p,))).mean, color=ctx.palette.colour(p), linewidth=1.5,
                    label=ctx.palette.label(p))
    bottom.set_ylabel(f"429 rejections per {bin_unit(run.table.times)}")
    bottom.set_ylim(bottom=0)
    count_axis(bottom)
    bottom.set_xlim(x[0], x[-1])
    style.date_axis(bottom)
    style.legend_outside(bottom)


def hotspots(run: RunData) -> list[dict[str, object]]:
    raw = run.run.summary.get("capacity_hotspots")
    return [h for h in raw if isinstance(h, dict)] if isinstance(raw, list) else []


def draw_hotspots(ax: object, ctx: Context, run: RunData) -> None:
    from matplotlib.axes import Axes

    assert isinstance(ax, Axes)
    spots = [h for h in hotspots(run) if isinstance(h.get("utilisation"), (int, float))]
    if not spots:
        return
    xs = [np.datetime64(str(h["time"]).replace("Z", ""), "s") for h in spots]
    ys = [100 * float(h["utilisation"]) for h in spots]  # type: ignore[arg-type]
    ax.scatter(xs, ys, s=40, facecolors="none", edgecolors=[ctx.palette.colour(str(h["provider"]))
                                                              for h in spots],
               linewidths=1.2, label="hot spot (summary)", zorder=3)


def hotspot_table(ctx: Context, run: RunData) -> TextTable:
    """Hot spots from summary.json, or else the bins where mean utilisation exceeds 80 %."""
    rows = [(ctx.palette.label(str(h.get("provider", ""))), str(h.get("time", "")),
             fmt.fraction_pct(float(h.get("utilisation", np.nan))),  # type: ignore[arg-type]
             fmt.value(float(h.get("rejected_429", np.nan)), "orgs"))  # type: ignore[arg-type]
            for h in hotspots(run)]
    return TextTable(f"Capacity hot spots — {run_tag(run)} ({len(rows)} bins)",
                     ("provider", "bin start (UTC)", "utilisation", "429 rejections"),
                     rows or [("none", "", "", "")])
