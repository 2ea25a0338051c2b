"""A report over a simulation, a load test and a sweep with known numbers."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image

from reports import fmt
from reports.build import build_report
from tests.reports import builders
from tests.reports.conftest import NOW

#: How the synthetic load test is named in table titles (its sample of the world).
LT_TAG = "loadtest (40 users for 55,150 organisations, requests × 1/3,400)"


def summary(report: Path) -> str:
    return (report.parent / "summary.md").read_text(encoding="utf-8")


def row(md: str, first_cell: str, table_title: str) -> list[str]:
    """The cells of the row starting with ``first_cell`` in the table titled ``table_title``."""
    block = md.split(f"**{table_title}**", 1)[1].split("\n\n", 2)[1]
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        if cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in {table_title!r}")


def test_revenue_totals_equal_the_data(report: Path) -> None:
    md = summary(report)
    openai = [builders.incumbent_revenue(r) for r in range(3)]
    expected = fmt.band({"mean": np.mean(openai), "p5": np.percentile(openai, 5),
                         "p95": np.percentile(openai, 95)}, "usd")
    assert expected == "$318,140 (5–95 %: $316,286 – $319,994)"
    assert row(md, "OpenAI", "Revenue over the window by provider — sim")[1] == expected
    assert row(md, "DeepSeek", "Revenue over the window by provider — sim")[1] == "$3,360"
    lt = builders.incumbent_revenue(0, builders.LOADTEST_SCALE)
    assert row(md, "OpenAI", f"Revenue over the window by provider — {LT_TAG}")[1] == fmt.usd(lt)


def test_headline_waterfall_and_outcomes_equal_the_data(report: Path) -> None:
    md = summary(report)
    head = row(md, "incumbent_revenue_lost_pct", "Headline figures — sim "
               "(20241002T120000Z-openai-2024-cn-hk-simulate)")
    assert head[2] == "21.2 % (5–95 %: 21.0 % – 21.5 %)"
    wf = "Incumbent revenue waterfall — sim"
    assert row(md, "blocked", wf)[1:] == ["−$109,200", "−27.0 %"]  # 84 days × (1000 + 300)
    assert row(md, "kept via relay", wf)[1] == "$17,640"            # 84 × mean(200, 210, 220)
    assert row(md, "actual", wf)[1] == "$318,140"
    assert row(md, "requests", "Requests over the window by outcome — sim")[1] == "195,200"
    assert row(md, "blocked", "Requests over the window by outcome — sim")[1:] == ["44,940", "23.0 %"]


def test_a_load_tests_latency_percentile_shows_the_requests_it_rests_on(report: Path) -> None:
    # the scenario's slos.min_requests is 200: the relay's p99 of 15 requests is not read
    md = summary(report)
    table = f"Headline figures — {LT_TAG} (20241002T130000Z-openai-2024-cn-hk-loadtest)"
    assert row(md, "latency_ms.direct.p99.after", table)[2] == "27,887 ms (1,784 requests)"
    assert row(md, "latency_ms.relay.p99.after", table)[2] == (
        "49,163 ms — 15 requests, fewer than 200: too few to read")


def test_orgs_hotspots_and_sweep_equal_the_data(report: Path) -> None:
    md = summary(report)
    orgs = "Organisations at the end of the window — sim"
    assert row(md, "migrated → Zhipu GLM", orgs)[1] == "300"
    assert row(md, "direct", orgs)[1] == "330"
    assert "**Capacity hot spots — sim (14 bins)**" in md
    assert row(md, "Zhipu GLM", "Capacity hot spots — sim (14 bins)")[1:] == [
        "2024-09-17T00:00:00Z", "80.6 %", "50"]
    tornado = "Sensitivity of incumbent_revenue_lost_usd (tornado) — sweep"
    # marginal means: 100k + 20k·price + 50k·mean(markup) at price −0.8 and −0.2
    assert row(md, "behaviour.choice.price", tornado)[1:] == ["-0.8", "$94,000", "-0.2", "$106,000",
                                                              "$12,000"]
    assert row(md, "behaviour.relay.markup", tornado)[-1] == "$10,000"


def test_sim_vs_loadtest_differences(report: Path) -> None:
    md = summary(report)
    # no absolute money of two scales subtracted; without a ledger the verdict table is left out
    assert "headline figures" not in md
    assert "no ledger.sqlite, so no verdict table" in md
    assert json.loads((report.parent / "summary.json").read_text()) == {"verdicts": {}}
    ts = f"Simulation (sim) vs load test ({LT_TAG}): from the timeseries"
    # (440 + 95) blocked of 600 CN+HK requests a day, in both
    assert row(md, "block rate after the block start", ts)[1:3] == ["89.2 %", "89.2 %"]
    # the load-test requests behind it: 84 days after the block × 600 CN + HK requests a day
    assert row(md, "block rate after the block start", ts)[5] == "50,400"
    # latency rests on the served ones: 84 × (990 US + 60 CN + 5 HK allowed)
    assert row(md, "latency p50 after the block start (mean of bins)", ts)[5] == "88,620"


def test_every_chart_is_a_real_image_of_its_declared_size(report: Path) -> None:
    charts = json.loads((report.parent / "charts.json").read_text())
    assert {c["name"] for c in charts} == {
        f"{k}-{c}" for k in ("sim", "loadtest")
        for c in ("revenue", "waterfall", "orgs", "latency", "ttft", "outcomes", "capacity")
    } | {"sim-vs-loadtest", "sweep-effects", "sweep-tornado"}
    for c in charts:
        with Image.open(report.parent / c["png"]) as img:
            assert img.size == (c["width"], c["height"]), c["name"]
            pixels = np.asarray(img.convert("RGB"))
        non_white = np.any(pixels < 240, axis=2).mean()
        assert 0.02 < non_white < 0.95, c["name"]
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20, c["name"]
        assert ET.parse(report.parent / c["svg"]).getroot().tag.endswith("svg")


def test_report_html_is_self_contained(report: Path) -> None:
    page = report.read_text(encoding="utf-8")
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", page)
    assert refs and all(r.startswith(("data:image/png;base64,", "#")) for r in refs)
    assert "<script" not in page and "url(" not in page and "@import" not in page
    assert not re.search(r"https?://", page)
    assert "Generated 2024-10-03 09:00:00 UTC from 3 run directories" in page
    assert page.count("<figure") == 17


def test_same_input_gives_the_same_bytes(tmp_path: Path, sim_run: Path, report: Path) -> None:
    """The simulation's charts alone equal, byte for byte, those in the mixed report."""
    alone = build_report([sim_run], tmp_path / "a", now=NOW).parent
    charts = sorted(p.name for p in alone.glob("sim-*"))
    assert len(charts) == 14
    for name in charts:
        assert (alone / name).read_bytes() == (report.parent / name).read_bytes(), name


def test_rebuilding_replaces_a_previous_report_with_the_same_summary(tmp_path: Path) -> None:
    run = builders.write_minimal_run(tmp_path / "runs")
    out = tmp_path / "r"
    first = (build_report([run], out, now=NOW).parent / "summary.md").read_bytes()
    (out / "stale.png").write_bytes(b"")
    assert (build_report([run], out, now=NOW).parent / "summary.md").read_bytes() == first
    assert not (out / "stale.png").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_absent_metrics_are_noted_not_plotted(tmp_path: Path) -> None:
    run = builders.write_minimal_run(tmp_path / "runs")
    md = summary(build_report([run], tmp_path / "out", now=NOW))
    charts = json.loads((tmp_path / "out" / "charts.json").read_text())
    assert [c["name"] for c in charts] == ["sim-revenue"]
    for note in ("no latency data in these runs", "no organisation-state data in these runs",
                 "no revenue waterfall in these runs' summary.json", "no sweep among these runs",
                 "no simulation and load test of the same scenario among these runs",
                 "no headline figures in these runs' summary.json"):
        assert f"> Note: {note}." in md
