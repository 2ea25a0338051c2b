"""Revenue by provider over time: stacked means, 5–95 % bands, the no-block counterfactual."""

from __future__ import annotations

from functools import partial

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from reports import fmt, style
from reports.charts.common import (
    MIN_REQUESTS,
    THIN_COLOUR,
    Context,
    Section,
    TextTable,
    bin_unit,
    counts_of,
    dates,
    finish_time_axis,
    render,
    request_counts,
    run_tag,
    run_title,
    shade_thin,
    thin_note,
    usd_axis,
)
from reports.data import RunData, bands, cube

CAPTION = ("Watch the incumbent's layer shrink at the block stage while the alternatives' layers "
           "grow; the gap between the stack and the dashed counterfactual is revenue nobody kept.")


def section(ctx: Context) -> Section:
    sec = Section("Revenue by provider over time")
    for run in ctx.timed():
        if run.table is None or not run.table.has("revenue_usd"):
            continue
        sec.charts.append(render(ctx, f"{run.key}-revenue", title(run), CAPTION, style.WIDE,
                                 partial(draw, ctx=ctx, run=run)))
        sec.tables.append(totals_table(ctx, run))
        thin, bins = thin_bins(run)
        if thin:
            sec.notes.append(thin_note(run, thin, bins, "bins", "shaded grey"))
    return sec.skip_if_empty("no revenue data in these runs")


def title(run: RunData) -> str:
    assert run.table is not None
    unit = bin_unit(run.table.times)
    return f"Revenue by provider, USD per {unit} — {run_title(run)}"


def requests_per_bin(run: RunData) -> np.ndarray | None:
    """A load test's requests per bin (None for a simulation)."""
    assert run.table is not None
    return counts_of(request_counts(run))


def thin_bins(run: RunData) -> tuple[int, int]:
    """(bins on fewer than MIN_REQUESTS load-test requests, bins with requests)."""
    n = requests_per_bin(run)
    if n is None:
        return 0, 0
    return int(np.count_nonzero((n > 0) & (n < MIN_REQUESTS))), int(np.count_nonzero(n > 0))


def draw(fig: Figure, ctx: Context, run: RunData) -> None:
    assert run.table is not None
    c = cube(run.table, "revenue_usd", ("provider",))
    assert c is not None
    ax = fig.add_subplot()
    x = dates(c.times)
    providers = ctx.palette.order([k[0] for k in c.keys])
    per_rep = {p: c.series((p,)) for p in providers}
    means = [bands(per_rep[p]).mean for p in providers]
    ax.stackplot(x, np.nan_to_num(np.vstack(means)), colors=[ctx.palette.colour(p) for p in providers],
                 labels=[ctx.palette.label(p) for p in providers], alpha=0.85, linewidth=0)
    if run.table.reps.size > 1:
        draw_bands(ax, x, per_rep, providers, ctx)
    counterfactual = cube(run.table, "baseline_revenue_usd")
    if counterfactual is not None:
        ax.plot(x, bands(counterfactual.total()).mean, color="black", linestyle="--", linewidth=1.4,
                label=f"no-block counterfactual ({ctx.palette.label(ctx.palette.incumbent)})")
    ax.set_ylabel(f"revenue (USD per {bin_unit(c.times)})")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.15)  # why: headroom so stage labels sit above the data
    if shade_thin(ax, c.times, requests_per_bin(run)):
        ax.axvspan(x[0], x[0], color=THIN_COLOUR, alpha=0.35, linewidth=0,
                   label=f"bins on < {MIN_REQUESTS} requests")
    usd_axis(ax)
    finish_time_axis(ax, fig, run, c.times)
    style.legend_outside(ax)


def draw_bands(ax: Axes, x: np.ndarray, per_rep: dict[str, np.ndarray], providers: list[str],
               ctx: Context) -> None:
    """5–95 % bands of the incumbent's layer and of the stack's total across replications."""
    inc = ctx.palette.incumbent
    if inc in per_rep:
        b = bands(per_rep[inc])
        ax.fill_between(x, b.p5, b.p95, color="black", alpha=0.18, linewidth=0,
                        label=f"{ctx.palette.label(inc)} 5–95 %")
    total = bands(np.nansum(np.stack([per_rep[p] for p in providers]), axis=0))
    ax.fill_between(x, total.p5, total.p95, facecolor="none", edgecolor="black", hatch="////",
                    linewidth=0, alpha=0.45, label="total 5–95 %")


def totals_table(ctx: Context, run: RunData) -> TextTable:
    """Revenue over the whole window by provider: mean and 5–95 % across replications."""
    assert run.table is not None
    c = cube(run.table, "revenue_usd", ("provider",))
    assert c is not None
    rows = []
    for p in ctx.palette.order([k[0] for k in c.keys]):
        per_rep = np.nansum(c.series((p,)), axis=1)
        rows.append((ctx.palette.label(p), fmt.band(_band(per_rep), "usd")))
    total = np.nansum(c.total(), axis=1)
    rows.append(("all providers", fmt.band(_band(total), "usd")))
    return TextTable(f"Revenue over the window by provider — {run_tag(run)}",
                     ("provider", "revenue (mean, 5–95 %)"), rows)


def _band(per_rep: np.ndarray) -> dict[str, float]:
    b = bands(per_rep[:, None])
    return {"mean": float(b.mean[0]), "p5": float(b.p5[0]), "p95": float(b.p95[0])}
