"""Latency p50/p95/p99 and time to first token p50/p95 over time: one panel per path, one colour
per provider, with the SLO. A load test's bins resting on too few served requests are pale dots."""

from __future__ import annotations

import csv
from functools import partial

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from reports import fmt, style
from reports.charts.common import (
    MIN_REQUESTS,
    THIN_COLOUR,
    Context,
    Section,
    TextTable,
    counts_of,
    dates,
    finish_time_axis,
    log_ms_axis,
    plot_sampled,
    render,
    request_counts,
    run_tag,
    run_title,
    thin_note,
)
from reports.data import RunData, Table, bands, cube
from scenarios.rundir import PATHS

QUANTILES = ("p50", "p95", "p99")
TTFT_QUANTILES = ("p50", "p95")
CAPTION = ("Compare each path with the dotted p99 lines against the red SLO line: relayed traffic "
           "pays an extra hop, and a saturated alternative shows up as rising percentiles.")
TTFT_CAPTION = ("Time to first token of streamed requests as the client sees it (network, queueing "
                "and the provider's first token; the relay path adds its hop): how long a user "
                "waits before output starts.")
#: Where a load test's own TTFT statistics are (loadtests.run.write_ttft_csv).
LOCUST_TTFT = "locust_ttft.csv"


def section(ctx: Context) -> Section:
    sec = Section("Latency by path and provider")
    for run in ctx.timed():
        assert run.table is not None
        for metric, quantiles, caption in (("latency_ms", QUANTILES, CAPTION),
                                           ("ttft_ms", TTFT_QUANTILES, TTFT_CAPTION)):
            shown = paths(run.table, metric, quantiles)
            if not shown:
                continue
            size = style.WIDE if len(shown) == 1 else style.TALL
            greyed: list[tuple[int, int]] = []
            sec.charts.append(render(ctx, f"{run.key}-{NAMES[metric]}", title(run, metric),
                                     caption, size, partial(draw, ctx=ctx, run=run, metric=metric,
                                                            quantiles=quantiles, greyed=greyed)))
            thin, points = (sum(g[i] for g in greyed) for i in (0, 1))
            if thin:
                sec.notes.append(thin_note(run, thin, points, f"{LABELS[metric]} points",
                                           HOW[metric]))
        ttft = ttft_table(run)
        if ttft is not None:
            sec.tables.append(ttft)
    return sec.skip_if_empty("no latency data in these runs")


NAMES = {"latency_ms": "latency", "ttft_ms": "ttft"}
LABELS = {"latency_ms": "latency", "ttft_ms": "time-to-first-token"}
HOW = {"latency_ms": "drawn as pale dots, left out of the lines",
       "ttft_ms": "drawn as pale dots, left out of the lines (counted by served requests: the "
                  "streamed ones behind a TTFT are fewer still)"}


def ttft_table(run: RunData) -> TextTable | None:
    """A load test's TTFT over the whole run by provider, region and path, from its
    locust_ttft.csv, with the streamed requests each rests on; None when it has none."""
    path = run.run.path / LOCUST_TTFT
    if run.kind != "loadtest" or not path.is_file():
        return None
    with path.open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("Type") == "TTFT"]
    out = []
    for r in rows:
        name = r.get("Name", "")
        parts = name.split("|") if name != "Aggregated" else ["all", "", ""]
        provider, region, route = [*parts, "", "", ""][:3]
        n = int(float(r.get("Count") or 0))
        out.append((provider, region, route, f"{n:,}",
                    *(_ms(r.get(k)) for k in ("Median (ms)", "95%", "99%")),
                    "yes" if n < MIN_REQUESTS else ""))
    if not out:
        return None
    return TextTable(f"Time to first token of streamed requests over the run — {run_tag(run)}",
                     ("provider", "region", "path", "streamed requests", "p50", "p95", "p99",
                      f"under {MIN_REQUESTS} requests"), out, align="lllrrrrl")


def _ms(text: str | None) -> str:
    try:
        return fmt.value(float(text or "nan"), "ms")
    except ValueError:
        return "n/a"


def title(run: RunData, metric: str) -> str:
    if metric == "ttft_ms":
        return (f"Time to first token p50/p95 (ms, log scale) of streamed requests by path — "
                f"{run_title(run)}")
    return f"Request latency p50/p95/p99 (ms, log scale) by path — {run_title(run)}"


def paths(table: Table, metric: str = "latency_ms", quantiles: tuple[str, ...] = QUANTILES
          ) -> list[str]:
    """Paths with rows of ``metric``, in the contract's order."""
    found: set[str] = set()
    for q in quantiles:
        if table.has(f"{metric}_{q}"):
            found |= set(table.values_of("path", f"{metric}_{q}"))
    return [p for p in (*PATHS, *sorted(found - set(PATHS))) if p in found]


def draw(fig: Figure, ctx: Context, run: RunData, metric: str = "latency_ms",
         quantiles: tuple[str, ...] = QUANTILES, greyed: list[tuple[int, int]] | None = None
         ) -> None:
    """One panel per path; appends to ``greyed`` each panel's (load-test points drawn pale,
    points)."""
    assert run.table is not None
    shown = paths(run.table, metric, quantiles)
    axes = fig.subplots(len(shown), 1, sharex=True, squeeze=False)[:, 0]
    slo = run.scenario.slos.p99_latency_ms if metric == "latency_ms" else None
    for ax, path in zip(axes, shown, strict=True):
        providers, thin = draw_path(ax, ctx, run, path, metric, quantiles)
        if greyed is not None:
            greyed.append(thin)
        if slo is not None:
            ax.axhline(slo, color=style.SLO_COLOUR, linewidth=1.2)
        log_ms_axis(ax)
        ax.set_ylabel(f"{path} path\n{'latency' if slo is not None else 'TTFT'} (ms)")
        finish_time_axis(ax, fig, run, run.table.times)
        legend(ax, ctx, providers, quantiles, slo, thin[0] > 0)
    for ax in axes[:-1]:
        ax.set_xlabel("")


def draw_path(ax: Axes, ctx: Context, run: RunData, path: str, metric: str = "latency_ms",
              quantiles: tuple[str, ...] = QUANTILES) -> tuple[list[str], tuple[int, int]]:
    """Lines for each provider and quantile on one path: the providers drawn, the points greyed
    (a load test's bins on fewer than MIN_REQUESTS served requests of that provider and path)
    and the points drawn."""
    assert run.table is not None
    drawn: set[str] = set()
    greyed = points = 0
    served = request_counts(run, ("provider",), {"path": path}, ("allowed", "warned"))
    for q in quantiles:
        c = cube(run.table, f"{metric}_{q}", ("provider",), {"path": path})
        if c is None:
            continue
        for (provider,) in c.keys:
            mean = bands(c.series((provider,))).mean
            if np.all(np.isnan(mean)):
                continue
            thin, shown = plot_sampled(ax, dates(c.times), mean, counts_of(served, (provider,)),
                                       ctx.palette.colour(provider),
                                       linestyle=style.PERCENTILE_STYLES[q], linewidth=1.4)
            greyed, points = greyed + thin, points + shown
            drawn.add(provider)
    return ctx.palette.order(sorted(drawn)), (greyed, points)


def legend(ax: Axes, ctx: Context, providers: list[str], quantiles: tuple[str, ...] = QUANTILES,
           slo: float | None = None, thin: bool = False) -> None:
    """Provider colours, quantile line styles, the SLO and pale dots if any, outside the plot."""
    handles = [Line2D([], [], color=ctx.palette.colour(p), linewidth=2) for p in providers]
    labels = [ctx.palette.label(p) for p in providers]
    handles += [Line2D([], [], color="#333333", linestyle=style.PERCENTILE_STYLES[q]) for q in quantiles]
    labels += list(quantiles)
    if slo is not None:
        handles.append(Line2D([], [], color=style.SLO_COLOUR))
        labels.append(f"SLO p99 ≤ {slo:,.0f} ms")
    if thin:
        handles.append(Line2D([], [], color=THIN_COLOUR, marker="o", linestyle=""))
        labels.append(f"< {MIN_REQUESTS} served requests")
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
