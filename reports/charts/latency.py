"""Latency p50/p95/p99 over time, one panel per path, one colour per provider, with the SLO."""

from __future__ import annotations

from functools import partial

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from reports import style
from reports.charts.common import (
    Context,
    Section,
    dates,
    finish_time_axis,
    log_ms_axis,
    render,
    run_title,
)
from reports.data import RunData, Table, bands, cube
from scenarios.rundir import PATHS

QUANTILES = ("p50", "p95", "p99")
CAPTION = ("Compare each path with the dotted p99 lines against the red SLO line: relayed traffic "
           "pays an extra hop, and a saturated alternative shows up as rising percentiles.")


def section(ctx: Context) -> Section:
    sec = Section("Latency by path and provider")
    for run in ctx.timed():
        if run.table is None or not paths(run.table):
            continue
        n = len(paths(run.table))
        size = style.WIDE if n == 1 else style.TALL
        title = f"Request latency p50/p95/p99 (ms, log scale) by path — {run_title(run)}"
        sec.charts.append(render(ctx, f"{run.key}-latency", title, CAPTION, size,
                                 partial(draw, ctx=ctx, run=run)))
    return sec.skip_if_empty("no latency data in these runs")


def paths(table: Table) -> list[str]:
    """Paths with latency rows, in the contract's order."""
    found: set[str] = set()
    for q in QUANTILES:
        if table.has(f"latency_ms_{q}"):
            found |= set(table.values_of("path", f"latency_ms_{q}"))
    return [p for p in (*PATHS, *sorted(found - set(PATHS))) if p in found]


def draw(fig: Figure, ctx: Context, run: RunData) -> None:
    assert run.table is not None
    shown = paths(run.table)
    axes = fig.subplots(len(shown), 1, sharex=True, squeeze=False)[:, 0]
    slo = run.scenario.slos.p99_latency_ms
    for ax, path in zip(axes, shown, strict=True):
        providers = draw_path(ax, ctx, run.table, path)
        ax.axhline(slo, color=style.SLO_COLOUR, linewidth=1.2)
        log_ms_axis(ax)
        ax.set_ylabel(f"{path} path\nlatency (ms)")
        finish_time_axis(ax, fig, run, run.table.times)
        legend(ax, ctx, providers, slo)
    for ax in axes[:-1]:
        ax.set_xlabel("")


def draw_path(ax: Axes, ctx: Context, table: Table, path: str) -> list[str]:
    """Lines for each provider and quantile on one path; returns the providers drawn."""
    drawn: set[str] = set()
    for q in QUANTILES:
        c = cube(table, f"latency_ms_{q}", ("provider",), {"path": path})
        if c is None:
            continue
        for (provider,) in c.keys:
            mean = bands(c.series((provider,))).mean
            if np.all(np.isnan(mean)):
                continue
            ax.plot(dates(c.times), mean, color=ctx.palette.colour(provider),
                    linestyle=style.PERCENTILE_STYLES[q], linewidth=1.4)
            drawn.add(provider)
    return ctx.palette.order(sorted(drawn))


def legend(ax: Axes, ctx: Context, providers: list[str], slo: float) -> None:
    """Provider colours, quantile line styles and the SLO, outside the plot."""
    handles = [Line2D([], [], color=ctx.palette.colour(p), linewidth=2) for p in providers]
    labels = [ctx.palette.label(p) for p in providers]
    handles += [Line2D([], [], color="#333333", linestyle=style.PERCENTILE_STYLES[q]) for q in QUANTILES]
    labels += list(QUANTILES)
    handles.append(Line2D([], [], color=style.SLO_COLOUR))
    labels.append(f"SLO p99 ≤ {slo:,.0f} ms")
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
