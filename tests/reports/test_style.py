"""Palette stability and stage labels that never overlap."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reports import fmt, style
from scenarios.loader import load


def test_incumbent_colour_is_fixed_and_alternatives_follow_scenario_order() -> None:
    s = load("openai-2024-cn-hk").scenario
    p = style.palette([s])
    assert p.colour("openai") == style.INCUMBENT_COLOUR
    assert [p.colour(a.name) for a in s.alternatives] == list(style.ALTERNATIVE_COLOURS[:5])
    assert p.order(["deepseek", "zhipu", "openai"]) == ["openai", "zhipu", "deepseek"]
    assert p.label("zhipu") == "Zhipu GLM"


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=12), st.floats(0.01, 0.05))
def test_stage_labels_keep_their_distance_and_stay_inside(xs: list[float], gap: float) -> None:
    placed = style.label_positions(sorted(xs), gap)
    assert all(b - a >= gap - 1e-9 for a, b in itertools.pairwise(placed))
    if len(xs) * gap < 0.9:
        assert placed[-1] <= 1.0 - gap / 2 + 1e-9 and placed[0] >= -1e-9


def test_stage_markers_of_the_default_scenario() -> None:
    s = load("openai-2024-cn-hk").scenario
    assert [(m.at.date(), m.label) for m in style.stage_markers(s)] == [
        (dt.date(2024, 6, 25), "announce"), (dt.date(2024, 7, 9), "block"),
        (dt.date(2024, 7, 25), "detection")]


@pytest.mark.parametrize(("v", "unit", "text"), [
    (1234567.4, "usd", "$1,234,567"), (-109200, "usd", "−$109,200"), (21.249, "pct", "21.2 %"),
    (-3.0, "pct", "−3.0 %"), (1000.4, "orgs", "1,000"), (1500, "ms", "1,500 ms"),
    (1.01214, "ratio", "1.012")])
def test_numbers_are_formatted_by_unit(v: float, unit: str, text: str) -> None:
    assert fmt.value(v, unit) == text


def test_band_text() -> None:
    assert fmt.band({"mean": 10.0, "p5": 9.0, "p95": 12.0}, "usd") == "$10 (5–95 %: $9 – $12)"
    assert fmt.band({"mean": 10.0, "p5": 10.0, "p95": 10.0}, "usd") == "$10"
