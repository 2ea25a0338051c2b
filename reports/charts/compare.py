"""Simulation vs load test of the same scenario on one time axis, with a table of differences."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import PercentFormatter

from reports import fmt
from reports.charts.common import (
    Context,
    Section,
    TextTable,
    after,
    dates,
    finish_time_axis,
    log_ms_axis,
    render,
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
from scenarios.figures import compare as compare_runs
from scenarios.figures import is_paired

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
            title = (f"Simulation ({sim.key}, {what}) vs load test ({lt.key}) of "
                     f"{sim.scenario.name}: block rate, revenue shares, latency")
            sec.charts.append(render(ctx, f"{sim.key}-vs-{lt.key}", title, CAPTION, (11.0, 9.0),
                                     partial(draw, ctx=ctx, sim=sim, lt=lt)))
            sec.tables.append(difference_table(ctx, sim, lt))
        ref = pr.reference
        assert ref is not None
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
    axes = fig.subplots(3, 1, sharex=True)
    runs = (sim, lt)
    for run in runs:
        assert run.table is not None
        plot(axes[0], run, block_rate(run), "black", band=True)
        for p, share in revenue_shares(run.table).items():
            plot(axes[1], run, share, ctx.palette.colour(p))
        for q, colour in QUANTILE_COLOURS.items():
            plot(axes[2], run, latency(run.table, q), colour)
    label_axes(axes, fig, ctx, sim)


def plot(ax: Axes, run: RunData, per_rep: np.ndarray | None, colour: str, *, band: bool = False) -> None:
    if per_rep is None or run.table is None:
        return
    b = bands(per_rep)
    x = dates(run.table.times)
    ax.plot(x, b.mean, color=colour, linestyle=SOURCE_STYLES[run.source], linewidth=1.4)
    if band and run.table.reps.size > 1:
        ax.fill_between(x, b.p5, b.p95, color=colour, alpha=0.12, linewidth=0)


def label_axes(axes: np.ndarray, fig: Figure, ctx: Context, sim: RunData) -> None:
    assert sim.table is not None
    regions = ", ".join(blocked_regions(sim.scenario)) or "no region"
    axes[0].set_ylabel(f"block rate\n({regions})")
    axes[0].yaxis.set_major_formatter(PercentFormatter(1.0))
    axes[0].set_ylim(0, 1.15)
    axes[1].set_ylabel("revenue share\n(% of all providers)")
    axes[1].yaxis.set_major_formatter(PercentFormatter(1.0))
    axes[1].set_ylim(0, 1.05)
    axes[2].set_ylabel("latency (ms, log)\nall paths")
    if any(line.get_ydata().size for line in axes[2].get_lines()):
        log_ms_axis(axes[2])
    for ax in axes:
        finish_time_axis(ax, fig, sim, sim.table.times)
    for ax in axes[:-1]:
        ax.set_xlabel("")
    sources = [Line2D([], [], color="#333333", linestyle=s) for s in SOURCE_STYLES.values()]
    axes[0].legend(sources, ["simulation (mean, 5–95 %)", "load test"], loc="upper left",
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
    a, b = window_figures(sim), window_figures(lt)
    rows = [_diff_row(k, a[k][0], b[k][0], a[k][1]) for k in a if k in b]
    return TextTable(f"Simulation ({sim.key}) vs load test ({lt.key}): from the timeseries",
                     ("figure", "simulation", "load test", "difference", "relative"), rows)


def verdict_table(sim: RunData, lt: RunData) -> tuple[TextTable, list[dict[str, object]]] | None:
    """The equivalence verdict per compared figure (``scenarios.figures``, as ``regionblock
    compare`` prints it), or None when the load test has no ledger to judge from."""
    if not (lt.run.path / "ledger.sqlite").is_file():
        return None
    table = compare_runs(sim.scenario, sim.run, lt.run)
    rows = []
    for v in table:
        unit = "ms" if v.figure.startswith(("latency_ms", "ttft_ms")) else "pct"
        diff = v.diff * (1 if unit == "ms" else 100)
        lo, hi = (x * (1 if unit == "ms" else 100) for x in v.ci90)
        suffix = " ms" if unit == "ms" else " pp"
        k = 1 if unit == "ms" else 100   # shares are printed in percent
        rows.append((v.figure, fmt.value(k * v.sim_mean, unit), fmt.value(k * v.loadtest, unit),
                     f"{diff:+.2f}{suffix} [{lo:+.2f}, {hi:+.2f}]", f"{v.n:,}",
                     v.verdict + (f" — {v.why}" if v.why else "")))
    against = ("its paired simulation, like for like" if is_paired(sim.run, lt.run)
               else "the whole market's simulation, the forecast")
    title = (f"Simulation ({sim.key}) vs load test ({lt.key}), against {against}: verdict per "
             "figure (agree: the difference's 90 % interval within ±10 %, ±1 point for shares "
             "under 10 %)")
    return (TextTable(title, ("figure", "simulation", "load test", "difference [90 % CI]", "n",
                              "verdict"), rows, align="lrrrrl"),
            [v.as_dict() for v in table])


def _diff_row(name: str, a: float, b: float, unit: str) -> tuple[str, ...]:
    diff_unit = "pp" if unit == "pct" else unit
    diff = b - a
    text = fmt.signed(diff, unit).replace(" %", " pp") if diff_unit == "pp" else fmt.signed(diff, unit)
    return (name, fmt.value(a, unit), fmt.value(b, unit), text, fmt.relative(diff, a))
