"""A report that does not mislead: sample sizes, scaled runs, exact ticks, TTFT, separate clocks.

Runs are the synthetic ones of builders.py: a simulation recorded at ``--scale 0.2`` and a load
test with thin days (THIN_DAYS: 24 requests from the blocked regions, 64 in all; VERY_THIN_DAYS:
16 in all, 11 served) whose time was scaled ×40.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from reports import style
from reports.build import build_report
from reports.charts import capacity, compare, latency, revenue
from reports.charts.common import (
    MIN_REQUESTS,
    Context,
    count_axis,
    pale,
    percent_axis,
    run_title,
    usd_axis,
)
from reports.data import RunData, load_runs
from scenarios.rundir import write_timeseries
from tests.reports import builders
from tests.reports.conftest import NOW

SIM_MARK = "scale 0.2"
LT_SAMPLE = "40 users for 55,150 organisations, requests × 1/3,400"
LT_TIMING = "time scaled ×40"


@pytest.fixture(scope="module")
def scaled_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("scaled")
    return (builders.write_sim_run(root, scale=0.2),
            builders.write_loadtest_run(root, timing="scaled", time_scale=40, thin=True))


@pytest.fixture(scope="module")
def scaled_report(tmp_path_factory: pytest.TempPathFactory, scaled_runs: tuple[Path, Path]) -> Path:
    return build_report(list(scaled_runs), tmp_path_factory.mktemp("r") / "out", now=NOW).parent


def context(paths: list[Path], out: Path) -> Context:
    runs = load_runs(paths)
    return Context(runs=runs, palette=style.palette([r.scenario for r in runs]), out=out)


def drawn(draw: Callable[[Figure], None]) -> Figure:
    """A figure drawn as render() draws it, laid out so tick labels exist."""
    with style.rc():
        fig = style.figure(style.TALL)
        FigureCanvasAgg(fig)
        draw(fig)
        fig.canvas.draw()
    return fig


def y_labels(ax: Axes) -> list[str]:
    lo, hi = ax.get_ylim()
    return [t.get_text() for t in ax.get_yticklabels() if lo <= t.get_position()[1] <= hi]


# ---------------------------------------------------------------- 1: sample sizes


def test_thin_load_test_bins_are_counted_greyed_and_noted(scaled_report: Path,
                                                          scaled_runs: tuple[Path, Path],
                                                          tmp_path: Path) -> None:
    ctx = context(list(scaled_runs), tmp_path)
    sim, lt = ctx.runs
    # block rate: 3 thin + 2 very thin days; revenue shares: 2 very thin days × 3 providers
    # of 122 days, and 3 providers × 122 days
    assert compare.thin_points(lt) == {"block-rate points": (5, 122),
                                       "revenue-share points": (6, 366)}
    fig = drawn(lambda f: compare.draw(f, ctx=ctx, sim=sim, lt=lt))
    axes = fig.axes
    grey = [len(c.get_offsets()) for c in axes[0].collections
            if np.allclose(c.get_facecolor()[0][:3], _rgb(pale("black")))]
    assert grey == [5]
    assert "requests,\n5 of 122 block-rate points, 6 of 366 revenue-share points, kept" in axes[0].get_title(
        loc="left")
    bars = [p.get_height() for p in axes[3].patches]
    assert sorted(set(bars))[:2] == [6, 16]    # very thin days: blocked regions, everything
    assert MIN_REQUESTS in [line.get_ydata()[0] for line in axes[3].get_lines()]
    md = (scaled_report / "summary.md").read_text(encoding="utf-8")
    # latency: OpenAI direct 3 quantiles × 122 days (2 of them very thin), relay and Zhipu
    # 3 × 84 days each (no request rows there: nothing to judge by); TTFT the same with 2 quantiles
    for note in ("loadtest: 2 of 122 bins rest on fewer than 30 load-test requests each and are "
                 "shaded grey",
                 "loadtest: 6 of 870 latency points rest on fewer than 30 load-test requests each",
                 "loadtest: 4 of 580 time-to-first-token points rest on fewer than 30",
                 "loadtest: 2 of 122 retry-amplification points rest on fewer than 30"):
        assert f"> Note: {note}" in md
    assert compare.sample_notes(sim, lt)[:2] == [
        "loadtest: 5 of 122 block-rate points rest on fewer than 30 load-test requests each and "
        "are drawn as pale dots, left out of the lines",
        "loadtest: 6 of 366 revenue-share points rest on fewer than 30 load-test requests each "
        "and are drawn as pale dots, left out of the lines"]


def test_a_simulation_is_never_greyed(scaled_runs: tuple[Path, Path], tmp_path: Path) -> None:
    ctx = context([scaled_runs[0]], tmp_path)
    fig = drawn(lambda f: latency.draw(f, ctx=ctx, run=ctx.runs[0]))
    assert not [c for ax in fig.axes for c in ax.collections]


def _rgb(hex_colour: str) -> tuple[float, ...]:
    return tuple(int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5))


# ---------------------------------------------------------------- 2: scaled runs marked


def test_scaled_runs_are_named_in_every_chart_and_table(scaled_report: Path,
                                                        scaled_runs: tuple[Path, Path],
                                                        tmp_path: Path) -> None:
    charts = json.loads((scaled_report / "charts.json").read_text())
    for c in charts:
        if c["name"].startswith("sim-") and "-vs-" not in c["name"]:
            assert SIM_MARK in c["title"], c["name"]
        if c["name"].startswith("loadtest-"):
            assert LT_SAMPLE in c["title"] and LT_TIMING in c["title"], c["name"]
    assert {c["title"] for c in charts if c["name"] == "loadtest-revenue"} == {
        f"Revenue by provider, USD per day — load test: {LT_SAMPLE}, {LT_TIMING} (loadtest)"}
    md = (scaled_report / "summary.md").read_text(encoding="utf-8")
    titles = [line for line in md.splitlines() if line.startswith("**") and line != "**Runs included**"]
    assert len(titles) == 14
    for t in titles:
        assert SIM_MARK in t or LT_SAMPLE in t, t
        if "loadtest" in t:
            assert LT_TIMING in t, t
    assert f"| sim | simulate | openai-2024-cn-hk | 3 | 7 | {SIM_MARK} |" in md
    assert f"| loadtest | loadtest | openai-2024-cn-hk | 1 | 7 | {LT_SAMPLE}, {LT_TIMING} |" in md
    sim, lt = context(list(scaled_runs), tmp_path).runs
    assert compare.pair_title(sim, lt) == (
        f"simulation, 3 replications, {SIM_MARK} (sim) vs load test: {LT_SAMPLE}, {LT_TIMING} "
        "(loadtest) of openai-2024-cn-hk: block rate, revenue shares, latency")
    # the lines above its first panel say what is greyed, not the runs again
    (kb, nb), (kr, nr) = compare.thin_points(lt).values()
    assert compare.sample_line(lt) == (
        f"pale dots: load-test bins on fewer than 30 requests,\n{kb:,} of {nb:,} block-rate "
        f"points, {kr:,} of {nr:,} revenue-share points, kept out of the lines")


def test_a_full_scale_simulation_and_an_external_load_test(tmp_path: Path) -> None:
    sim = builders.write_sim_run(tmp_path / "runs")
    lt = builders.write_loadtest_run(tmp_path / "runs", timing="external")
    a, b = load_runs([sim, lt])
    assert run_title(a) == "simulation, 3 replications (sim)"
    assert run_title(b) == (f"load test: {LT_SAMPLE}, external timing (another system's network) "
                            "(loadtest)")


# ---------------------------------------------------------------- 3: ticks


@pytest.mark.parametrize(("axis", "lo", "hi", "expected"), [
    (usd_axis, 0.0004, 0.003, ["$0.0005", "$0.001", "$0.0015", "$0.002", "$0.0025", "$0.003"]),
    (count_axis, 0.0, 0.004, ["0", "0.0005", "0.001", "0.0015", "0.002", "0.0025", "0.003",
                              "0.0035", "0.004"]),
    (percent_axis, 0.0, 0.004, ["0%", "0.05%", "0.1%", "0.15%", "0.2%", "0.25%", "0.3%", "0.35%",
                                "0.4%"]),
    (usd_axis, 0.0, 3500.0, ["$0", "$500", "$1k", "$1.5k", "$2k", "$2.5k", "$3k", "$3.5k"]),
    (count_axis, 0.0, 12000.0, ["0", "2,000", "4,000", "6,000", "8,000", "10,000", "12,000"]),
])
def test_tick_labels_are_distinct_and_never_round_to_zero(
        axis: Callable[[Axes], None], lo: float, hi: float, expected: list[str]) -> None:
    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        ax.plot([0, 1], [lo, hi])
        ax.set_ylim(lo, hi)
        axis(ax)

    ax = drawn(draw).axes[0]
    labels = y_labels(ax)
    assert labels == expected
    assert len(set(labels)) == len(labels)
    ticks = [t for t in ax.get_yticks() if lo <= t <= hi]
    assert all(lab not in ("$0", "0", "0%") for t, lab in zip(ticks, labels, strict=True) if t != 0)


def test_revenue_and_429_charts_of_tiny_values_have_distinct_ticks(tmp_path: Path) -> None:
    """A revenue of $0.0002–$0.00324 a day and 429s of 0.004 a day (one in 250 days)."""
    path = builders.write_files(tmp_path / "runs" / "tiny-simulate", "simulate",
                                builders.summary("simulate", 1))
    factor = {"revenue_usd": 1e-6, "rejected_429": 0.004 / 50, "utilisation": 1.0}
    tiny = [(*r[:8], r[8] * factor[r[3]]) for r in builders.rows(1) if r[3] in factor]
    write_timeseries(path / "timeseries.csv", tiny)
    ctx = context([path], tmp_path)
    run: RunData = ctx.runs[0]
    rev = y_labels(drawn(lambda f: revenue.draw(f, ctx=ctx, run=run)).axes[0])
    assert len(rev) >= 4 and len(set(rev)) == len(rev) and rev.count("$0") == 1
    assert "$0.001" in rev
    rej = y_labels(drawn(lambda f: capacity.draw(f, ctx=ctx, run=run)).axes[1])
    assert rej == ["0", "0.0005", "0.001", "0.0015", "0.002", "0.0025", "0.003", "0.0035",
                   "0.004"]


# ---------------------------------------------------------------- 4: TTFT


def test_time_to_first_token_is_charted_for_both_kinds(scaled_report: Path,
                                                       scaled_runs: tuple[Path, Path],
                                                       tmp_path: Path) -> None:
    charts = {c["name"]: c for c in json.loads((scaled_report / "charts.json").read_text())}
    assert charts["sim-ttft"]["section"] == "Latency by path and provider"
    assert charts["sim-ttft"]["title"].startswith(
        "Time to first token p50/p95 (ms, log scale) of streamed requests by path — simulation")
    assert "loadtest-ttft" in charts
    ctx = context([scaled_runs[0]], tmp_path)
    fig = drawn(lambda f: latency.draw(f, ctx=ctx, run=ctx.runs[0], metric="ttft_ms",
                                       quantiles=latency.TTFT_QUANTILES))
    direct, relay = fig.axes[0], fig.axes[1]
    assert direct.get_ylabel() == "direct path\nTTFT (ms)"
    # OpenAI direct p50/p95 = 200/450 + 10r, mean over r = 0, 1, 2; Zhipu 300/600
    values = sorted({round(float(np.nanmax(line.get_ydata())), 6) for line in direct.get_lines()
                     if len(line.get_ydata()) > 2})
    assert values == [210.0, 300.0, 460.0, 600.0]
    assert sorted({round(float(np.nanmax(line.get_ydata())), 6) for line in relay.get_lines()
                   if len(line.get_ydata()) > 2}) == [350.0, 800.0]
    md = (scaled_report / "summary.md").read_text(encoding="utf-8")
    assert ("| openai | CN | relay | 12 | 350 ms | 800 ms | 1,200 ms | yes |" in md)
    assert ("| openai | US | direct | 480 | 200 ms | 450 ms | 700 ms |  |" in md)


# ---------------------------------------------------------------- 5: separate clocks


def test_scaled_load_test_latency_stays_off_the_models_axis(scaled_report: Path,
                                                            scaled_runs: tuple[Path, Path],
                                                            tmp_path: Path) -> None:
    ctx = context(list(scaled_runs), tmp_path)
    sim, lt = ctx.runs
    ax = drawn(lambda f: compare.draw(f, ctx=ctx, sim=sim, lt=lt)).axes[2]
    data = [line for line in ax.get_lines() if len(line.get_ydata()) > 2]
    assert len(data) == 3 and {line.get_linestyle() for line in data} == {"-"}
    assert ax.get_title(loc="left") == (
        "load test (loadtest) latencies not drawn here: time scaled ×40, so they are not in the "
        "model's time (its own latency chart shows them)")
    md = (scaled_report / "summary.md").read_text(encoding="utf-8")
    table = md.split("; latency rows left out (time scaled ×40)**", 1)[1].split("\n\n", 2)[1]
    assert "block rate after the block start" in table and "latency" not in table


def test_true_time_load_test_latency_shares_the_axis(tmp_path: Path) -> None:
    paths = [builders.write_sim_run(tmp_path / "runs"),
             builders.write_loadtest_run(tmp_path / "runs", timing="true")]
    ctx = context(paths, tmp_path)
    sim, lt = ctx.runs
    ax = drawn(lambda f: compare.draw(f, ctx=ctx, sim=sim, lt=lt)).axes[2]
    data = [line for line in ax.get_lines() if len(line.get_ydata()) > 2]
    assert sorted(line.get_linestyle() for line in data) == ["-"] * 3 + ["--"] * 3
    assert ax.get_title(loc="left") == ""
    assert not compare.sample_notes(sim, lt)


def test_a_load_test_timing_read_from_meta_when_the_summary_has_none(tmp_path: Path) -> None:
    lt = builders.write_loadtest_run(tmp_path / "runs")
    summary = json.loads((lt / "summary.json").read_text())
    del summary["loadtest"], summary["scale"]
    (lt / "summary.json").write_text(json.dumps(summary))
    meta = json.loads((lt / "meta.json").read_text())
    meta["loadtest"] = {"timing": "scaled", "time_scale": 8.0}
    (lt / "meta.json").write_text(json.dumps(meta))
    assert run_title(load_runs([lt])[0]) == (
        "load test: a sample of the world (scale not recorded), time scaled ×8 (loadtest)")


def test_a_paired_simulation_says_it_is_the_load_tests_sample(tmp_path: Path) -> None:
    sim = builders.write_sim_run(tmp_path / "runs")
    meta = json.loads((sim / "meta.json").read_text())
    meta["sample_of"] = {"organisations": 1000, "run": "x-loadtest", "stands_for": 55150.0}
    (sim / "meta.json").write_text(json.dumps(meta))
    run = load_runs([sim])[0]
    assert run_title(run) == ("simulation, 3 replications, the load test's 1,000 organisations "
                              "for 55,150 (paired)")
