"""What every chart family shares: the build context, chart and table records, rendering."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from reports import fmt, style
from reports.data import RunData


@dataclass(frozen=True)
class Context:
    """Everything a chart family needs: the runs, the report-wide palette, where files go."""

    runs: list[RunData]
    palette: style.Palette
    out: Path

    def timed(self) -> list[RunData]:
        """Runs with a timeseries (simulations and load tests), in the order given."""
        return [r for r in self.runs if r.table is not None]


@dataclass(frozen=True)
class Chart:
    name: str                      # file stem inside the report directory
    title: str
    caption: str                   # one sentence: what to look for
    size_px: tuple[int, int]


@dataclass(frozen=True)
class TextTable:
    title: str
    header: tuple[str, ...]
    rows: Sequence[tuple[str, ...]]
    align: str = ""                # per column: "l" or "r"; default first left, rest right


@dataclass
class Section:
    """A part of the report: charts, tables, and notes about what could not be shown."""

    title: str
    charts: list[Chart] = field(default_factory=list)
    tables: list[TextTable] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: figures for the report's summary.json (e.g. the verdict tables), by name
    data: dict[str, Any] = field(default_factory=dict)

    def skip_if_empty(self, note: str) -> Section:
        if not self.charts and not self.tables:
            self.notes.append(note)
        return self


def render(ctx: Context, name: str, title: str, caption: str, size: tuple[float, float],
           draw: Callable[[Figure], None]) -> Chart:
    """Build a figure with ``draw``, title it, save PNG and SVG under ``ctx.out``."""
    with style.rc():
        fig = style.figure(size)
        draw(fig)
        fig.suptitle(title, fontsize=12, fontweight="bold")
        style.save(fig, ctx.out / name)
    return Chart(name=name, title=title, caption=caption, size_px=style.pixel_size(size))


def run_title(run: RunData) -> str:
    """How a run is named in titles: its kind, replications and directory."""
    n = run.table.reps.size if run.table is not None else 0
    what = {"simulate": f"simulation, {n} replication{'s' if n != 1 else ''}",
            "loadtest": "load test", "sweep": "sweep"}[run.kind]
    return f"{what} ({run.key})"


def bin_unit(times: np.ndarray) -> str:
    """``day``, ``hour`` or ``N min`` from the spacing of the bins."""
    if times.size < 2:
        return "bin"
    step = int(np.median(np.diff(times).astype("timedelta64[s]").astype(np.int64)))
    if step == 86400:
        return "day"
    if step == 3600:
        return "hour"
    return f"{step // 60} min" if step % 60 == 0 else f"{step} s"


def short_usd(v: float, _pos: object = None) -> str:
    """Axis ticks: $950, $12k, $1.2M."""
    a = abs(v)
    sign = "−" if v < 0 else ""
    if a >= 1e6:
        return f"{sign}${a / 1e6:.3g}M"
    if a >= 1e3:
        return f"{sign}${a / 1e3:.3g}k"
    return f"{sign}${a:.0f}"


def usd_axis(ax: Axes) -> None:
    ax.yaxis.set_major_formatter(FuncFormatter(short_usd))


def count_axis(ax: Axes) -> None:
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:,.0f}"))


def log_ms_axis(ax: Axes) -> None:
    """A log axis in milliseconds with plain tick labels (1,000 not 10³) at 1-2-5 steps."""
    from matplotlib.ticker import LogLocator, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:,.0f}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def dates(times: np.ndarray) -> np.ndarray:
    return times.astype("datetime64[s]")


def finish_time_axis(ax: Axes, fig: Figure, run: RunData, times: np.ndarray) -> None:
    """Date ticks, x limits to the data, and the policy's stage markers."""
    ax.set_xlim(dates(times)[0], dates(times)[-1])
    style.date_axis(ax)
    style.draw_markers(ax, style.stage_markers(run.scenario), fig)


def after(times: np.ndarray, when: dt.datetime | None) -> np.ndarray:
    """Boolean mask of bins starting at or after ``when`` (all bins if None)."""
    if when is None:
        return np.ones(times.size, dtype=bool)
    return times >= np.datetime64(when.astimezone(dt.UTC).replace(tzinfo=None), "s")


def provider_key(ctx: Context, providers: Sequence[str]) -> list[str]:
    return ctx.palette.order([p for p in providers if p])


__all__ = ["Chart", "Context", "Section", "TextTable", "fmt", "render"]
