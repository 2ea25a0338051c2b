"""What every chart family shares: the build context, chart and table records, rendering."""

from __future__ import annotations

import datetime as dt
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import to_hex, to_rgb
from matplotlib.figure import Figure
from matplotlib.ticker import Formatter, FuncFormatter, Locator

from reports import fmt, style
from reports.data import RunData, cube


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
        fig.suptitle(wrap_title(title, size[0]), fontsize=12, fontweight="bold")
        style.save(fig, ctx.out / name)
    return Chart(name=name, title=title, caption=caption, size_px=style.pixel_size(size))


def wrap_title(title: str, width_in: float) -> str:
    """A title in lines that fit a figure ``width_in`` inches wide (12 pt bold: about nine
    characters an inch), broken first before the run's name (`` — ``), then between words."""
    limit = int(width_in * 9)
    if len(title) <= limit:
        return title
    head, sep, tail = title.partition(" — ")
    parts = [head, tail] if sep else [title]
    return "\n".join(line for part in parts for line in textwrap.wrap(part, limit))


def run_title(run: RunData) -> str:
    """How a run is named in titles: its kind, replications, sample and timing, and its key.

    A simulation run at ``--scale`` below 1 says so (``scale 0.2``); a load test always states
    its sample of the world (users for organisations, the requests scale) and its timing when it
    is not true time, so no scaled run reads as the whole market in real time.
    """
    n = run.table.reps.size if run.table is not None else 0
    what = {"simulate": f"simulation, {n} replication{'s' if n != 1 else ''}",
            "loadtest": "load test", "sweep": "sweep"}[run.kind]
    marks = sample_marks(run)
    if run.kind == "loadtest" and marks:
        return f"load test: {', '.join(marks)} ({run.key})"
    return ", ".join([what, *marks]) + f" ({run.key})"


def run_tag(run: RunData) -> str:
    """How a run is named in table titles: its key, with its sample and timing when scaled."""
    marks = sample_marks(run)
    return f"{run.key} ({', '.join(marks)})" if marks else run.key


def sample_marks(run: RunData) -> list[str]:
    """What makes a run less than the whole market in true time, as short phrases (none: empty)."""
    if run.kind == "loadtest":
        return [m for m in (_loadtest_sample(run), timing_mark(run)) if m]
    marks = []
    of = run.run.sample_of
    if of is not None:
        marks.append(_paired_sample(of))
    scale = run.run.meta.get("scale")
    if isinstance(scale, (int, float)) and 0 < scale < 1:
        marks.append(f"scale {scale:g}")
    return marks


def _paired_sample(of: dict[str, Any]) -> str:
    """A paired simulation (``simulate --sample-of``): the load test's organisations only."""
    orgs, stands = of.get("organisations"), of.get("stands_for")
    if isinstance(orgs, int) and isinstance(stands, (int, float)):
        return f"the load test's {orgs:,} organisations for {stands:,.0f}"
    return "the load test's organisations"


def _loadtest_sample(run: RunData) -> str:
    raw = run.run.summary.get("scale")
    scale = raw if isinstance(raw, dict) else {}
    users, orgs, rs = (scale.get(k) for k in ("users", "organisations", "requests_scale"))
    parts = []
    if isinstance(users, int) and isinstance(orgs, int):
        parts.append(f"{users:,} user{'s' if users != 1 else ''} for {orgs:,} organisations")
    if isinstance(rs, (int, float)) and rs > 0:
        parts.append(f"requests × 1/{1 / rs:,.0f}" if rs < 1 else f"requests × {rs:,.3g}")
    return ", ".join(parts) or "a sample of the world (scale not recorded)"


def timing(run: RunData) -> str:
    """A load test's timing label (``true``, ``scaled``, ``external``); ``true`` for other runs."""
    if run.kind != "loadtest":
        return "true"
    label = _loadtest_field(run, "timing")
    return str(label) if label else "unknown"


def _loadtest_field(run: RunData, key: str) -> Any:
    """``key`` of the load test's ``loadtest`` record: summary.json's, else meta.json's."""
    for record in (run.run.summary.get("loadtest"), run.run.meta.get("loadtest")):
        if isinstance(record, dict) and record.get(key) is not None:
            return record[key]
    return None


def timing_mark(run: RunData) -> str:
    """``time scaled ×40`` / ``external timing`` for a load test not in true time, else empty."""
    label = timing(run)
    if label == "true":
        return ""
    if label == "scaled":
        k = _loadtest_field(run, "time_scale")
        return f"time scaled ×{k:g}" if isinstance(k, (int, float)) else "time scaled"
    if label == "external":
        return "external timing (another system's network)"
    return "timing not recorded"


#: A load-test bin whose figure rests on fewer requests than this is drawn pale and kept out of
#: the line: at n = 30 a share's 95 % binomial half-width is still up to ±18 points.
MIN_REQUESTS = 30
THIN_COLOUR = "#b0b0b0"


def pale(colour: str, toward_white: float = 0.55) -> str:
    """``colour`` greyed out (mixed toward white), still telling one series from another."""
    r, g, b = (c + (1.0 - c) * toward_white for c in to_rgb(colour))
    return to_hex((r, g, b))


def plot_sampled(ax: Axes, x: np.ndarray, y: np.ndarray, n: np.ndarray | None, colour: str,
                 **line: Any) -> tuple[int, int]:
    """A line through the bins resting on at least MIN_REQUESTS requests, pale dots of the same
    colour for the bins resting on fewer (``n`` None: every bin counts); returns (points
    greyed, points)."""
    y = np.asarray(y, dtype=float)
    points = int(np.count_nonzero(np.isfinite(y)))
    if n is None:
        ax.plot(x, y, color=colour, **line)
        return 0, points
    enough = np.asarray(n) >= MIN_REQUESTS
    ax.plot(x, np.where(enough, y, np.nan), color=colour, **line)
    few = ~enough & np.isfinite(y)
    if np.any(few):
        ax.scatter(x[few], y[few], s=9, color=pale(colour), zorder=2.5, linewidths=0)
    return int(np.count_nonzero(few)), points


def request_counts(run: RunData, by: Sequence[str] = (), where: Mapping[str, Any] | None = None,
                   metrics: Sequence[str] = ("requests",)) -> dict[tuple[str, ...], np.ndarray] | None:
    """A load test's requests per bin (its one replication) by ``by`` key, summed over
    ``metrics``; None for other runs, whose bins rest on the whole modelled population."""
    if run.kind != "loadtest" or run.table is None:
        return None
    out: dict[tuple[str, ...], np.ndarray] = {}
    for m in metrics:
        c = cube(run.table, m, by, where)
        for k in (c.keys if c is not None else []):
            assert c is not None
            out[k] = out.get(k, 0.0) + np.nan_to_num(c.series(k)[0])
    return out


def counts_of(counts: dict[tuple[str, ...], np.ndarray] | None, key: tuple[str, ...] = ()
              ) -> np.ndarray | None:
    """One key's counts; None when ``counts`` is None or has no rows for ``key`` (nothing
    recorded to judge the sample by, so nothing is greyed)."""
    return None if counts is None else counts.get(key)


def shade_thin(ax: Axes, times: np.ndarray, n: np.ndarray | None) -> int:
    """Grey the background of bins resting on fewer than MIN_REQUESTS requests (but some);
    returns how many."""
    if n is None:
        return 0
    thin = (np.asarray(n) > 0) & (np.asarray(n) < MIN_REQUESTS)
    x = dates(times)
    step = np.median(np.diff(x)) if x.size > 1 else np.timedelta64(86400, "s")
    for i in np.flatnonzero(thin):
        ax.axvspan(x[i], x[i] + step, color=THIN_COLOUR, alpha=0.35, linewidth=0, zorder=0.5)
    return int(np.count_nonzero(thin))


def thin_note(run: RunData, greyed: int, total: int, what: str,
              how: str = "drawn as pale dots, left out of the lines") -> str:
    """The note under a section whose load-test points were greyed."""
    return (f"{run.key}: {greyed:,} of {total:,} {what} rest on fewer than {MIN_REQUESTS} "
            f"load-test requests each and are {how}")


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
    """One amount: $950, $12k, $1.2M; under $1 with two significant digits ($0.0042), never "$0"
    for an amount that is not zero."""
    a = abs(v)
    sign = "−" if v < 0 else ""
    if a >= 1e6:
        return f"{sign}${a / 1e6:.3g}M"
    if a >= 1e3:
        return f"{sign}${a / 1e3:.3g}k"
    if a >= 1 or a == 0:
        return f"{sign}${a:.0f}"
    return f"{sign}${a:.2g}"


class TickFormatter(Formatter):
    """Tick labels as exact as the ticks actually placed: each tick is written with the fewest
    decimals that put it within 0.1 % of the gap between ticks (trailing zeros dropped), so
    distinct ticks read differently and $0.0004 … $0.003 or 0 … 0.004 never all read "$0" / "0".

    ``kind``: ``usd`` ($950, $12k, $1.2M, $0.0005), ``count`` (thousands separators),
    ``fraction`` (a 0–1 value as %), ``percent`` (a value already in %).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.gap = 1.0

    def set_locs(self, locs: list[float]) -> None:
        super().set_locs(locs)
        v = np.unique(np.asarray([x for x in locs if np.isfinite(x)], dtype=float) * self._k)
        self.gap = float(np.min(np.diff(v))) if v.size > 1 else float(np.max(np.abs(v), initial=0) or 1)

    @property
    def _k(self) -> float:
        return 100.0 if self.kind == "fraction" else 1.0

    def __call__(self, x: float, pos: int | None = None) -> str:
        v = x * self._k
        tol = self.gap * 1e-3
        if abs(v) <= tol:
            return {"usd": "$0", "count": "0"}.get(self.kind, "0%")
        sign = "−" if v < 0 else ""
        a = abs(v)
        if self.kind == "usd":
            unit, suffix = (1e6, "M") if a >= 1e6 else (1e3, "k") if a >= 1e3 else (1.0, "")
            return f"{sign}${exact(a / unit, tol / unit)}{suffix}"
        return sign + exact(a, tol) + ("" if self.kind == "count" else "%")


def exact(v: float, tol: float, limit: int = 10) -> str:
    """``v`` with the fewest decimals (up to ``limit``) that keep it within ``tol``, with
    thousands separators and no trailing zeros."""
    d = next((d for d in range(limit + 1) if abs(round(v, d) - v) <= tol), limit)
    text = f"{v:,.{d}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def usd_axis(ax: Axes, which: str = "y") -> None:
    (ax.yaxis if which == "y" else ax.xaxis).set_major_formatter(TickFormatter("usd"))


def count_axis(ax: Axes) -> None:
    ax.yaxis.set_major_formatter(TickFormatter("count"))


def percent_axis(ax: Axes, of: float = 1.0) -> None:
    """A percentage y axis: ``of`` 1.0 for fractions (0–1), 100 for values already in percent."""
    ax.yaxis.set_major_formatter(TickFormatter("fraction" if of == 1.0 else "percent"))


def log_ms_axis(ax: Axes) -> None:
    """A log axis in milliseconds with plain tick labels (1,000 not 10³) at 1-2-5 steps, finer
    steps when the data span too little of a decade for three of those."""
    from matplotlib.ticker import NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(MsLocator())
    ax.yaxis.set_major_formatter(FuncFormatter(_ms_label))
    ax.yaxis.set_minor_formatter(NullFormatter())


class MsLocator(Locator):
    """Log ticks at 1-2-5 × 10^k, or at 1-1.5-2-3-4-5-6-7-8 × 10^k when fewer than three of
    the 1-2-5 ticks fall in view."""

    def __call__(self) -> Sequence[float]:
        assert self.axis is not None
        return self.tick_values(*self.axis.get_view_interval())

    def tick_values(self, vmin: float, vmax: float) -> Sequence[float]:
        lo, hi = sorted((max(vmin, 1e-9), max(vmax, 1e-9)))
        ticks: list[float] = []
        for subs in ((1.0, 2.0, 5.0), (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0)):
            decades = range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1)
            ticks = [m * 10.0 ** k for k in decades for m in subs if lo <= m * 10.0 ** k <= hi]
            if len(ticks) >= 3:
                break
        return ticks


def _ms_label(v: float, _pos: object = None) -> str:
    return f"{v:,.0f}" if v >= 1 or v <= 0 else f"{v:.2g}"


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
