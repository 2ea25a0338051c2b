"""Organisations by state over time: direct, circumventing, migrating, migrated per provider, churned."""

from __future__ import annotations

from functools import partial

import numpy as np
from matplotlib.figure import Figure

from reports import fmt, style
from reports.charts.common import (
    Context,
    Section,
    TextTable,
    count_axis,
    dates,
    finish_time_axis,
    render,
    run_tag,
    run_title,
)
from reports.data import RunData, bands, cube

ORDER = ("direct", "circumventing", "migrating", "migrated", "churned")
CAPTION = ("Follow the bands from the bottom: organisations leave 'direct' at the block and end "
           "up relaying, migrating to an alternative (one colour per provider) or churning.")


def section(ctx: Context) -> Section:
    sec = Section("Organisations by state over time")
    for run in ctx.timed():
        if run.table is None or not run.table.has("orgs"):
            continue
        title = f"Developer organisations by state (count) — {run_title(run)}"
        sec.charts.append(render(ctx, f"{run.key}-orgs", title, CAPTION, style.WIDE,
                                 partial(draw, ctx=ctx, run=run)))
        sec.tables.append(final_table(ctx, run))
    return sec.skip_if_empty("no organisation-state data in these runs")


def layers(ctx: Context, keys: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(state, provider) keys in stacking order: states in ORDER, migrated by provider order."""
    rank = {s: i for i, s in enumerate(ORDER)}
    providers = ctx.palette.order(sorted({p for _, p in keys}))
    prank = {p: i for i, p in enumerate(providers)}
    return sorted(keys, key=lambda k: (rank.get(k[0], len(rank)), prank.get(k[1], 0), k))


def layer_style(ctx: Context, key: tuple[str, str]) -> tuple[str, str]:
    state, provider = key
    if state == "migrated":
        target = ctx.palette.label(provider) if provider else "an alternative"
        return ctx.palette.colour(provider), f"migrated → {target}"
    return style.STATE_COLOURS.get(state, style.UNKNOWN_COLOUR), state


def by_layer(run: RunData) -> tuple[np.ndarray, dict[tuple[str, str], np.ndarray]]:
    """Bin times and per-replication counts by (state, provider), the provider kept only for
    ``migrated`` (a run may also split ``migrating`` by destination; one grey band is enough)."""
    assert run.table is not None
    c = cube(run.table, "orgs", ("state", "provider"))
    assert c is not None
    out: dict[tuple[str, str], np.ndarray] = {}
    for state, provider in c.keys:
        key = (state, provider if state == "migrated" else "")
        out[key] = out.get(key, 0.0) + np.nan_to_num(c.series((state, provider)))
    return c.times, out


def draw(fig: Figure, ctx: Context, run: RunData) -> None:
    times, per_key = by_layer(run)
    keys = layers(ctx, list(per_key))
    means = np.vstack([bands(per_key[k]).mean for k in keys])
    colours, labels = zip(*(layer_style(ctx, k) for k in keys), strict=True)
    ax = fig.add_subplot()
    ax.stackplot(dates(times), means, colors=colours, labels=labels, alpha=0.9, linewidth=0)
    ax.set_ylabel("organisations (count)")
    ax.set_ylim(0, float(means.sum(axis=0).max()) * 1.02 or 1.0)
    count_axis(ax)
    finish_time_axis(ax, fig, run, times)
    style.legend_outside(ax, title="state")


def final_table(ctx: Context, run: RunData) -> TextTable:
    """Organisations in each state in the last bin: mean and 5–95 % across replications."""
    _, per_key = by_layer(run)
    rows = []
    for key in layers(ctx, list(per_key)):
        last = per_key[key][:, -1:]
        b = bands(last)
        rows.append((layer_style(ctx, key)[1],
                     fmt.band({"mean": b.mean[0], "p5": b.p5[0], "p95": b.p95[0]}, "orgs")))
    return TextTable(f"Organisations at the end of the window — {run_tag(run)}",
                     ("state", "organisations (mean, 5–95 %)"), rows)
