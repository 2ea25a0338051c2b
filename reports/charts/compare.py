"""Simulation vs load test of the same scenario on one time axis, with a table of differences."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import LogLocator, NullFormatter

from reports import fmt, style
from reports.charts.common import (
    MIN_REQUESTS,
    THIN_COLOUR,
    Context,
    Section,
    TextTable,
    after,
    bin_unit,
    count_axis,
    counts_of,
    dates,
    finish_time_axis,
    log_ms_axis,
    percent_axis,
    plot_sampled,
    render,
    request_counts,
    run_tag,
    run_title,
    thin_note,
    timing,
    timing_mark,
)
from reports.data import (
    RunData,
    Table,
    bands,
    block_start,
    blocked_regions,
    cube,
    is_paired_sim,
    ratio,
)
from scenarios.figures import LATENCIES, is_paired
from scenarios.figures import compare as compare_runs

SOURCE_STYLES: dict[str, Any] = {"sim": "-", "loadtest": "--"}
QUANTILE_COLOURS = {"p50": "#1b9e77", "p95": "#d95f02", "p99": "#7570b3"}
CAPTION = ("Solid lines are the simulation, dashed the load test: where they part, the model and "
           "the real system disagree — the table below puts numbers on it.")


@dataclass(frozen=True)
class Pairing:
    """A load test with what it is compared with: the simulation of the whole market (the
    forecast) and its paired simulation (its own organisations: like for like), either absent."""

    lt: RunData
    forecast: RunData | None
    paired: RunData | None

    @property
    def reference(self) -> RunData | None:
        """What the verdicts judge the load test against: the paired simulation when there is one."""
        return self.paired or self.forecast


def pairs(ctx: Context) -> list[Pairing]:
    """Each load test with the first full-market simulation of its scenario and its own paired
    simulation (``simulate --sample-of`` it), when among the runs."""
    sims = [r for r in ctx.timed() if r.kind == "simulate"]
    out = []
    for lt in (r for r in ctx.timed() if r.kind == "loadtest"):
        forecast = next((s for s in sims if s.scenario.name == lt.scenario.name
                         and not is_paired_sim(s.run)), None)
        paired = next((s for s in sims if is_paired(s.run, lt.run)), None)
        if forecast is not None or paired is not None:
            out.append(Pairing(lt, forecast, paired))
    return out


def section(ctx: Context) -> Section:
    sec = Section("Simulation vs load test")
    for pr in pairs(ctx):
        lt = pr.lt
        for sim, what in ((pr.forecast, "the forecast: the whole market"),
                          (pr.paired, "like for like: the load test's own organisations")):
            if sim is None:
                continue
            sec.charts.append(render(ctx, f"{sim.key}-vs-{lt.key}", pair_title(sim, lt, what),
                                     CAPTION, (11.0, 9.0), partial(draw, ctx=ctx, sim=sim, lt=lt)))
            sec.tables.append(difference_table(ctx, sim, lt))
        ref = pr.reference
        assert ref is not None
        sec.notes += sample_notes(ref, lt)
        if pr.paired is None:
            sec.notes.append(f"{lt.key}: no paired simulation among these runs, so the verdicts "
                             f"judge the load test against the whole market ({ref.key}): its "
                             "sample's composition is part of every difference (`regionblock "
                             f"simulate {lt.scenario.name} --sample-of {lt.name}` gives the "
                             "like-for-like reference; `regionblock report` runs it itself when "
                             "given the load test alone)")
        verdicts = verdict_table(ref, lt)
        if verdicts is None:
            sec.notes.append(f"{lt.key}: no ledger.sqlite, so no verdict table (a load test with "
                             "--host needs --ledger)")
        else:
            sec.tables.append(verdicts[0])
            sec.data[f"{ref.key}-vs-{lt.key}"] = verdicts[1]
    return sec.skip_if_empty("no simulation and load test of the same scenario among these runs")


# ---------------------------------------------------------------- series


def block_rate(run: RunData) -> np.ndarray | None:
    """Blocked share of the incumbent's requests from the blocked regions: (replications, times)."""
    assert run.table is not None
    where = {"provider": run.scenario.incumbent.name, "region": blocked_regions(run.scenario)}
    blocked, requests = cube(run.table, "blocked", (), where), cube(run.table, "requests", (), where)
    if blocked is None or requests is None:
        return None
    return ratio(blocked.total(), requests.total())


def revenue_shares(table: Table) -> dict[str, np.ndarray]:
    """Provider → share of all revenue per (replication, time bin)."""
    c = cube(table, "revenue_usd", ("provider",))
    if c is None:
        return {}
    total = c.total()
    return {k[0]: ratio(c.series(k), total) for k in c.keys}


def latency(table: Table, q: str) -> np.ndarray | None:
    """Percentile ``q`` averaged over providers and paths: (replications, times)."""
    c = cube(table, f"latency_ms_{q}")
    return None if c is None else c.data[:, :, 0]


# ---------------------------------------------------------------- chart


def draw(fig: Figure, ctx: Context, sim: RunData, lt: RunData) -> None:
    axes = fig.subplots(4, 1, sharex=True, height_ratios=(3, 3, 3, 1.4))
    for run in (sim, lt):
        assert run.table is not None
        n = samples(run)
        plot(axes[0], run, block_rate(run), "black", n=n["blocked regions"], band=True)
        for p, share in revenue_shares(run.table).items():
            plot(axes[1], run, share, ctx.palette.colour(p), n=n["all"])
        if run is sim or same_clock(lt):
            for q, colour in QUANTILE_COLOURS.items():
                plot(axes[2], run, latency(run.table, q), colour, n=n["served"])
    draw_samples(axes[3], lt)
    label_axes(axes, fig, ctx, sim)
    axes[0].set_title(sample_line(lt), fontsize=9, loc="left")
    if not same_clock(lt):
        axes[2].set_title(latency_left_out(lt), fontsize=8, fontweight="normal", loc="left",
                          color="#444444")


def pair_title(sim: RunData, lt: RunData, what: str = "") -> str:
    """The compare chart's title, naming both runs with their samples (for ``section``;
    ``what``: the simulation's role, e.g. "the forecast: the whole market")."""
    role = f" — {what}" if what else ""
    return (f"{run_title(sim)} vs {run_title(lt)} of {sim.scenario.name}{role}: block rate, "
            "revenue shares, latency")


def sample_notes(sim: RunData, lt: RunData) -> list[str]:
    """Notes for the section under the compare chart: greyed load-test bins, latencies left out."""
    out = [thin_note(lt, k, total, what) for what, (k, total) in thin_points(lt).items() if k]
    if not same_clock(lt):
        out.append(latency_left_out(lt))
    return out


def thin_points(lt: RunData) -> dict[str, tuple[int, int]]:
    """Load-test points of the block-rate and revenue-share series resting on fewer than
    MIN_REQUESTS requests (the pale dots of the chart), and all their points: (thin, all)."""
    assert lt.table is not None
    n = samples(lt)
    out = {}
    for what, key, series in (("block-rate points", "blocked regions", [block_rate(lt)]),
                              ("revenue-share points", "all", list(revenue_shares(lt.table).values()))):
        counts = n[key]
        finite = [np.isfinite(s[0]) for s in series if s is not None]
        thin = 0 if counts is None else sum(int(np.count_nonzero(f & (counts < MIN_REQUESTS)))
                                            for f in finite)
        out[what] = (thin, sum(int(np.count_nonzero(f)) for f in finite))
    return out


def samples(run: RunData) -> dict[str, np.ndarray | None]:
    """A load test's requests per bin behind each series (None for a simulation): the incumbent's
    from the blocked regions (block rate), all (revenue shares), served (latency)."""
    assert run.table is not None
    where = {"provider": run.scenario.incumbent.name, "region": blocked_regions(run.scenario)}
    return {"blocked regions": counts_of(request_counts(run, where=where)),
            "all": counts_of(request_counts(run)),
            "served": counts_of(request_counts(run, metrics=("allowed", "warned")))}


def same_clock(lt: RunData) -> bool:
    """Whether the load test's latencies are in true time, so they share the model's axis."""
    return timing(lt) == "true"


def latency_left_out(lt: RunData) -> str:
    return (f"load test ({lt.key}) latencies not drawn here: {timing_mark(lt)}, so they are not "
            "in the model's time (its own latency chart shows them)")


def sample_line(lt: RunData) -> str:
    """The lines above the chart: the load-test points greyed as too thin (both runs and their
    samples are named in the figure's title, :func:`pair_title`, once)."""
    thin = ", ".join(f"{k:,} of {total:,} {what}" for what, (k, total) in thin_points(lt).items())
    return (f"pale dots: load-test bins on fewer than {MIN_REQUESTS} requests,\n{thin}, kept out "
            "of the lines")


def draw_samples(ax: Axes, lt: RunData) -> None:
    """The load test's requests per bin: all of them, and the incumbent's from the blocked
    regions (what the block rate rests on), with the MIN_REQUESTS line."""
    assert lt.table is not None
    n = samples(lt)
    x = dates(lt.table.times)
    width = np.median(np.diff(x)) if x.size > 1 else np.timedelta64(86400, "s")
    for key, colour, label in (("all", "#9aa5b1", "all requests"),
                               ("blocked regions", "#333333", "incumbent, blocked regions")):
        values = n[key]
        if values is not None:
            ax.bar(x, values, width=width, align="edge", color=colour, linewidth=0, label=label)
    ax.axhline(MIN_REQUESTS, color=style.SLO_COLOUR, linewidth=0.9, label=f"{MIN_REQUESTS} requests")
    ax.set_ylabel(f"load-test\nrequests per {bin_unit(lt.table.times)}\n(log)")
    ax.set_yscale("log")  # why: the MIN_REQUESTS line stays visible beside thousands a bin
    ax.yaxis.set_major_locator(LogLocator(base=10, numticks=8))
    ax.set_ylim(bottom=1)
    count_axis(ax)
    ax.yaxis.set_minor_formatter(NullFormatter())
    style.legend_outside(ax)


def plot(ax: Axes, run: RunData, per_rep: np.ndarray | None, colour: str, *,
         n: np.ndarray | None = None, band: bool = False) -> None:
    """The mean line, load-test bins on too few requests as pale dots."""
    if per_rep is None or run.table is None:
        return
    b = bands(per_rep)
    x = dates(run.table.times)
    plot_sampled(ax, x, b.mean, n, colour, linestyle=SOURCE_STYLES[run.source], linewidth=1.4)
    if band and run.table.reps.size > 1:
        ax.fill_between(x, b.p5, b.p95, color=colour, alpha=0.12, linewidth=0)


def label_axes(axes: np.ndarray, fig: Figure, ctx: Context, sim: RunData) -> None:
    assert sim.table is not None
    regions = ", ".join(blocked_regions(sim.scenario)) or "no region"
    axes[0].set_ylabel(f"block rate\n({regions})")
    axes[0].set_ylim(0, 1.15)
    percent_axis(axes[0])
    axes[1].set_ylabel("revenue share\n(% of all providers)")
    axes[1].set_ylim(0, 1.05)
    percent_axis(axes[1])
    axes[2].set_ylabel("latency (ms, log)\nall paths")
    if any(np.any(np.isfinite(line.get_ydata())) for line in axes[2].get_lines()):
        log_ms_axis(axes[2])
    for ax in axes[:-1]:
        finish_time_axis(ax, fig, sim, sim.table.times)
        ax.set_xlabel("")
    axes[-1].set_xlim(dates(sim.table.times)[0], dates(sim.table.times)[-1])
    style.date_axis(axes[-1])  # why: no stage labels over the bars; the panels above carry them
    sources = [Line2D([], [], color="#333333", linestyle=s) for s in SOURCE_STYLES.values()]
    sources.append(Line2D([], [], color=THIN_COLOUR, marker="o", linestyle=""))
    axes[0].legend(sources, ["simulation (mean, 5–95 %)", "load test",
                             f"load test, < {MIN_REQUESTS} requests"], loc="upper left",
                   bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    shown = ctx.palette.order([p for p in ctx.palette.colours if _has_share(axes[1], ctx, p)])
    axes[1].legend([Line2D([], [], color=ctx.palette.colour(p), linewidth=2) for p in shown],
                   [ctx.palette.label(p) for p in shown], loc="upper left",
                   bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    axes[2].legend([Line2D([], [], color=c, linewidth=2) for c in QUANTILE_COLOURS.values()],
                   list(QUANTILE_COLOURS), loc="upper left", bbox_to_anchor=(1.01, 1.0),
                   borderaxespad=0.0)


def _has_share(ax: Axes, ctx: Context, provider: str) -> bool:
    return any(line.get_color() == ctx.palette.colour(provider) for line in ax.get_lines())


# ---------------------------------------------------------------- tables


def window_figures(run: RunData) -> dict[str, tuple[float, str]]:
    """Figures after the block start, from the timeseries: name → (value, unit)."""
    assert run.table is not None
    mask = after(run.table.times, block_start(run.scenario))
    out: dict[str, tuple[float, str]] = {}
    where = {"provider": run.scenario.incumbent.name, "region": blocked_regions(run.scenario)}
    blocked, requests = cube(run.table, "blocked", (), where), cube(run.table, "requests", (), where)
    if blocked is not None and requests is not None:
        rate = blocked.total()[:, mask].sum(axis=1) / np.maximum(requests.total()[:, mask].sum(axis=1), 1e-12)
        out["block rate after the block start"] = (100 * float(rate.mean()), "pct")
    c = cube(run.table, "revenue_usd", ("provider",))
    if c is not None:
        total = c.total()[:, mask].sum(axis=1)
        for (p,) in c.keys:
            share = c.series((p,))[:, mask].sum(axis=1) / np.maximum(total, 1e-12)
            out[f"revenue share {p} after the block start"] = (100 * float(share.mean()), "pct")
    for q in QUANTILE_COLOURS:
        lat = latency(run.table, q)
        if lat is not None and np.any(np.isfinite(lat[:, mask])):
            out[f"latency {q} after the block start (mean of bins)"] = (float(np.nanmean(lat[:, mask])), "ms")
    return out


def difference_table(ctx: Context, sim: RunData, lt: RunData) -> TextTable:
    """Figures after the block start side by side, with the load-test requests each rests on;
    latency rows only when the load test ran in true time."""
    a, b = window_figures(sim), window_figures(lt)
    keys = [k for k in a if k in b and (same_clock(lt) or not k.startswith("latency"))]
    n = window_requests(lt)
    rows = [(*_diff_row(k, a[k][0], b[k][0], a[k][1]), n.get(k.split(" ")[0], "")) for k in keys]
    title = f"Simulation ({run_tag(sim)}) vs load test ({run_tag(lt)}): from the timeseries"
    if not same_clock(lt):
        title += f"; latency rows left out ({timing_mark(lt)})"
    return TextTable(title, ("figure", "simulation", "load test", "difference", "relative",
                             "load-test requests"), rows)


def window_requests(lt: RunData) -> dict[str, str]:
    """The load-test requests after the block start behind each kind of figure (block, revenue,
    latency), as table cells."""
    assert lt.table is not None
    mask = after(lt.table.times, block_start(lt.scenario))
    n = samples(lt)
    out = {}
    for figure, key in (("block", "blocked regions"), ("revenue", "all"), ("latency", "served")):
        values = n[key]
        if values is not None:
            out[figure] = f"{float(values[mask].sum()):,.0f}"
    return out


def _bound(x: float) -> str:
    """One end of a difference's interval; "—" where there is none (too few requests)."""
    return f"{x:+.2f}" if math.isfinite(x) else "—"


def verdict_table(sim: RunData, lt: RunData) -> tuple[TextTable, list[dict[str, object]]] | None:
    """The equivalence verdict per compared figure (``scenarios.figures``, as ``regionblock
    compare`` prints it), or None when the load test has no ledger to judge from."""
    if not (lt.run.path / "ledger.sqlite").is_file():
        return None
    table = compare_runs(sim.scenario, sim.run, lt.run)
    rows = []
    for v in table:
        unit = "ms" if v.figure.startswith(LATENCIES) else "pct"
        diff = v.diff * (1 if unit == "ms" else 100)
        lo, hi = (x * (1 if unit == "ms" else 100) for x in v.ci90)
        suffix = " ms" if unit == "ms" else " pp"
        k = 1 if unit == "ms" else 100   # shares are printed in percent
        rows.append((v.figure, fmt.value(k * v.sim_mean, unit), fmt.value(k * v.loadtest, unit),
                     f"{diff:+.2f}{suffix} [{_bound(lo)}, {_bound(hi)}]", f"{v.n:,}",
                     v.verdict + (f" — {v.why}" if v.why else "")))
    against = ("its paired simulation, like for like" if is_paired(sim.run, lt.run)
               else "the whole market's simulation, the forecast")
    title = (f"Simulation ({run_tag(sim)}) vs load test ({run_tag(lt)}), against {against}: "
             "verdict per figure (agree: the difference's 90 % interval within ±10 %, ±1 point for "
             "shares under 10 %)")
    return (TextTable(title, ("figure", "simulation", "load test", "difference [90 % CI]", "n",
                              "verdict"), rows, align="lrrrrl"),
            [v.as_dict() for v in table])


def _diff_row(name: str, a: float, b: float, unit: str) -> tuple[str, ...]:
    diff_unit = "pp" if unit == "pct" else unit
    diff = b - a
    text = fmt.signed(diff, unit).replace(" %", " pp") if diff_unit == "pp" else fmt.signed(diff, unit)
    return (name, fmt.value(a, unit), fmt.value(b, unit), text, fmt.relative(diff, a))
