"""Request outcomes over time (allowed, warned, blocked, failed; retries) and retry amplification."""

from __future__ import annotations

from functools import partial

import numpy as np
from matplotlib.figure import Figure

from reports import fmt, style
from reports.charts.common import (
    MIN_REQUESTS,
    THIN_COLOUR,
    Context,
    Section,
    TextTable,
    bin_unit,
    count_axis,
    counts_of,
    dates,
    finish_time_axis,
    plot_sampled,
    render,
    request_counts,
    run_tag,
    run_title,
    thin_note,
)
from reports.data import RunData, Table, bands, cube, ratio

OUTCOMES = ("allowed", "warned", "blocked", "failed")
CAPTION = ("Warned traffic turns red at the block; retries (black line) and the amplification "
           "below show whether clients hammer the gateway with requests that cannot succeed.")


def section(ctx: Context) -> Section:
    sec = Section("Request outcomes and retries")
    for run in ctx.timed():
        if run.table is None or not any(run.table.has(m) for m in OUTCOMES):
            continue
        title = (f"Requests by outcome per {bin_unit(run.table.times)}, and retry amplification — "
                 f"{run_title(run)}")
        sec.charts.append(render(ctx, f"{run.key}-outcomes", title, CAPTION, style.TALL,
                                 partial(draw, run=run)))
        sec.tables.append(totals_table(run))
        n = counts_of(request_counts(run))
        thin = 0 if n is None else int(np.count_nonzero((n > 0) & (n < MIN_REQUESTS)))
        if n is not None and thin:
            sec.notes.append(thin_note(run, thin, int(np.count_nonzero(n > 0)),
                                       "retry-amplification points"))
    return sec.skip_if_empty("no request-outcome data in these runs")


def per_rep(table: Table, metric: str) -> np.ndarray | None:
    """Summed over every dimension: (replications, times)."""
    c = cube(table, metric)
    return None if c is None else c.total()


def amplification(table: Table) -> np.ndarray | None:
    """Attempts per original request, requests / (requests − retries), per replication and bin."""
    requests, retries = per_rep(table, "requests"), per_rep(table, "retries")
    if requests is None:
        return None
    return ratio(requests, requests - (retries if retries is not None else 0.0))


def draw(fig: Figure, run: RunData) -> None:
    assert run.table is not None
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1.4))
    x = dates(run.table.times)
    shown = [(m, per_rep(run.table, m)) for m in OUTCOMES]
    present = [(m, v) for m, v in shown if v is not None]
    top.stackplot(x, np.vstack([bands(v).mean for _, v in present]),
                  colors=[style.OUTCOME_COLOURS[m] for m, _ in present],
                  labels=[m for m, _ in present], alpha=0.9, linewidth=0)
    retries = per_rep(run.table, "retries")
    if retries is not None:
        top.plot(x, bands(retries).mean, color="black", linewidth=1.3, label="retries")
    top.set_ylabel(f"requests per {bin_unit(run.table.times)}")
    top.set_ylim(0, top.get_ylim()[1] * 1.15)
    count_axis(top)
    finish_time_axis(top, fig, run, run.table.times)
    top.set_xlabel("")
    style.legend_outside(top, title="outcome")
    draw_amplification(bottom, fig, run)


def draw_amplification(ax: object, fig: Figure, run: RunData) -> None:
    from matplotlib.axes import Axes

    assert isinstance(ax, Axes) and run.table is not None
    amp = amplification(run.table)
    if amp is None:
        ax.text(0.5, 0.5, "no request counts: amplification unknown", transform=ax.transAxes,
                ha="center", va="center")
        return
    b = bands(amp)
    x = dates(run.table.times)
    n = counts_of(request_counts(run))
    plot_sampled(ax, x, b.mean, n, "black", linewidth=1.3, label="mean")
    if n is not None and np.any((n > 0) & (n < MIN_REQUESTS)):
        ax.scatter([], [], s=9, color=THIN_COLOUR, label=f"< {MIN_REQUESTS} requests")
    if run.table.reps.size > 1:
        ax.fill_between(x, b.p5, b.p95, color="black", alpha=0.15, linewidth=0, label="5–95 %")
    ax.axhline(1.0, color="#999999", linewidth=0.8)
    ax.set_ylabel("retry amplification\n(attempts per request)")
    finite = np.isfinite(b.p5) & np.isfinite(b.p95)
    lo, hi = (float(b.p5[finite].min()), float(b.p95[finite].max())) if finite.any() else (1.0, 1.0)
    ax.set_ylim(min(0.98, lo - 0.01), max(1.05, hi + 0.02))
    ax.set_xlim(x[0], x[-1])
    style.date_axis(ax)
    style.legend_outside(ax)


def totals_table(run: RunData) -> TextTable:
    """Each outcome's total over the window (mean, 5–95 %) and its share of requests."""
    assert run.table is not None
    requests = per_rep(run.table, "requests")
    total_requests = float(np.mean(requests.sum(axis=1))) if requests is not None else float("nan")
    rows = []
    for m in ("requests", *OUTCOMES, "retries"):
        v = per_rep(run.table, m)
        if v is None:
            continue
        b = bands(v.sum(axis=1)[:, None])
        share = fmt.pct(100 * b.mean[0] / total_requests) if total_requests else "n/a"
        rows.append((m, fmt.band({"mean": b.mean[0], "p5": b.p5[0], "p95": b.p95[0]}, "orgs"), share))
    return TextTable(f"Requests over the window by outcome — {run_tag(run)}",
                     ("outcome", "requests (mean, 5–95 %)", "of requests"), rows)
