"""How every chart looks: one colour per provider, fixed palettes, readable date axes.

Colours are decided by the scenario's provider order, never by which providers happen to be in a
chart, so a provider has the same colour in every chart of a report. Figures are built with
``matplotlib.figure.Figure`` (no pyplot, no global figure state) and saved through the Agg
renderer; :func:`rc` holds the settings that make PNG and SVG bytes reproducible.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # why: reports run headless (CI, servers); never open a window

import matplotlib.dates as mdates
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from scenarios.schema import Scenario

DPI = 100
#: Figure sizes in inches; at DPI 100 a PNG is exactly 100 px per inch.
WIDE = (11.0, 5.6)
TALL = (11.0, 8.0)

INCUMBENT_COLOUR = "#4e79a7"
#: Qualitative palette (Tableau 10 without the incumbent's blue) for alternatives, in scenario order.
ALTERNATIVE_COLOURS = ("#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
                       "#ff9da7", "#9c755f", "#bab0ac")
UNKNOWN_COLOUR = "#7f7f7f"

STATE_COLOURS = {"direct": INCUMBENT_COLOUR, "circumventing": "#a0cbe8", "migrating": "#d9d9d9",
                 "churned": "#3b3b3b"}
OUTCOME_COLOURS = {"allowed": "#8cd17d", "warned": "#f1ce63", "blocked": "#e15759",
                   "failed": "#79706e"}
SOURCE_COLOURS = {"sim": "#4e79a7", "loadtest": "#e15759"}
PERCENTILE_STYLES: dict[str, Any] = {"p50": "-", "p95": "--", "p99": ":"}
SLO_COLOUR = "#b2182b"
STAGE_COLOUR = "#555555"


@dataclass(frozen=True)
class Palette:
    """Provider name → colour and label, fixed for a whole report."""

    colours: dict[str, str]
    labels: dict[str, str]
    incumbent: str

    def colour(self, provider: str) -> str:
        return self.colours.get(provider, UNKNOWN_COLOUR)

    def label(self, provider: str) -> str:
        return self.labels.get(provider, provider)

    def order(self, providers: Sequence[str]) -> list[str]:
        """Providers sorted incumbent first, then in scenario order, then unknown ones by name."""
        rank = {p: i for i, p in enumerate(self.colours)}
        return sorted(providers, key=lambda p: (rank.get(p, len(rank)), p))


def palette(scenarios: Sequence[Scenario]) -> Palette:
    """One colour per provider over all the scenarios of a report (first scenario wins)."""
    colours: dict[str, str] = {}
    labels: dict[str, str] = {}
    incumbent = scenarios[0].incumbent.name if scenarios else ""
    for s in scenarios:
        for p in s.providers:
            labels.setdefault(p.name, p.label or p.name)
    if incumbent:
        colours[incumbent] = INCUMBENT_COLOUR
    alternatives = [p for p in labels if p != incumbent]
    for i, name in enumerate(alternatives):
        colours[name] = ALTERNATIVE_COLOURS[i % len(ALTERNATIVE_COLOURS)]
    return Palette(colours=colours, labels=labels, incumbent=incumbent)


@contextmanager
def rc() -> Iterator[None]:
    """Settings for every chart: deterministic SVG ids, no embedded dates, a readable base size."""
    settings: dict[str, Any] = {
        "svg.hashsalt": "regionblock-report",
        "svg.fonttype": "path",  # why: glyphs as paths render the same without the font installed
        "font.size": 10,
        "axes.titlesize": 12,
        "axes.titleweight": "bold",
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "legend.fontsize": 9,
        "legend.frameon": False,
        "path.simplify": True,
    }
    with matplotlib.rc_context(settings):  # type: ignore[arg-type]
        yield


def figure(size: tuple[float, float] = WIDE) -> Figure:
    """A figure with constrained layout (so titles, labels and outside legends never collide)."""
    return Figure(figsize=size, dpi=DPI, layout="constrained")


def pixel_size(size: tuple[float, float]) -> tuple[int, int]:
    return round(size[0] * DPI), round(size[1] * DPI)


def save(fig: Figure, stem: Path) -> tuple[Path, Path]:
    """Write ``stem.png`` and ``stem.svg`` without timestamps or software versions inside."""
    png, svg = stem.with_suffix(".png"), stem.with_suffix(".svg")
    fig.savefig(png, dpi=DPI, format="png", metadata={"Software": None})
    # why: the layout is solved by the PNG save; freezing it halves the work and keeps the two
    # files identical in geometry
    fig.set_layout_engine("none")
    fig.savefig(svg, format="svg", metadata={"Date": None, "Creator": None})
    return png, svg


def date_axis(ax: Axes) -> None:
    """Concise dates on the x axis (``Jul``, ``15``... with the year once) in UTC."""
    locator = mdates.AutoDateLocator(minticks=4, maxticks=10, tz=dt.UTC)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=dt.UTC))
    ax.set_xlabel("date (UTC)")


def legend_outside(ax: Axes, *, title: str | None = None) -> None:
    """A legend to the right of the plot, so it never covers the data."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), title=title,
                  borderaxespad=0.0)


@dataclass(frozen=True)
class Marker:
    """A dated event drawn as a vertical line: a policy stage start, detection start."""

    at: dt.datetime
    label: str


def stage_markers(scenario: Scenario) -> list[Marker]:
    """Stage starts of every provider's policy, and when detection of relays begins."""
    out: list[Marker] = []
    many = len(scenario.policy) > 1
    for provider, pol in scenario.policy.items():
        prefix = f"{provider}: " if many else ""
        out += [Marker(st.start, f"{prefix}{st.name}") for st in pol.stages]
        if pol.detection is not None and pol.detection.start is not None:
            out.append(Marker(pol.detection.start, f"{prefix}detection"))
    return sorted(out, key=lambda m: (m.at, m.label))


def label_positions(xs: Sequence[float], min_gap: float) -> list[float]:
    """Positions for labels at ``xs`` (sorted, axes fraction) at least ``min_gap`` apart.

    Labels are pushed right where they would overlap; if that runs past the right edge the
    last ones are pulled back left, so every label stays inside the axes.
    """
    out: list[float] = []
    for x in xs:
        out.append(max(x, out[-1] + min_gap) if out else x)
    limit = 1.0 - min_gap / 2
    if out and out[-1] > limit:
        out[-1] = limit
        for i in range(len(out) - 2, -1, -1):
            out[i] = min(out[i], out[i + 1] - min_gap)
    return out


def draw_markers(ax: Axes, markers: Sequence[Marker], fig: Figure) -> None:
    """Vertical lines at each marker, labels rotated along the lines near the top, never overlapping."""
    lo, hi = ax.get_xlim()
    inside = [(mdates.date2num(m.at), m) for m in markers if lo <= mdates.date2num(m.at) <= hi]
    if not inside:
        return
    for x, _ in inside:
        ax.axvline(x, color=STAGE_COLOUR, linestyle=(0, (4, 3)), linewidth=0.9, zorder=1.5)
    fracs = [(x - lo) / (hi - lo) for x, _ in inside]
    # why: one text line (font 8 pt) in axes fraction, plus a little air
    width_in = ax.get_position().width * fig.get_figwidth()
    gap = (8 * 1.35 / 72) / max(width_in, 0.1)
    for frac, (_, m) in zip(label_positions(fracs, gap), inside, strict=True):
        ax.text(frac + gap * 0.15, 0.98, m.label, transform=ax.transAxes, rotation=90,
                ha="left", va="top", fontsize=8, color=STAGE_COLOUR,
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 1})
