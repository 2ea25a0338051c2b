"""Helpers for the scenarios tests: the default scenario's text and ways to break it.

A plain module (not conftest) so test modules can import it: ``from scenario_helpers import ...``.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from scenarios.errors import ScenarioValidationError
from scenarios.loader import load_text, shipped

DEFAULT_NAME = "openai-2024-cn-hk"
FILE = "s.yaml"


def default_text() -> str:
    return shipped()[DEFAULT_NAME].read_text(encoding="utf-8")


def patch(text: str, old: str, new: str) -> str:
    """``text`` with the one occurrence of ``old`` replaced (fails loudly if it is not unique)."""
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in the default scenario"
    return text.replace(old, new)


def line_of(text: str, needle: str) -> int:
    """1-based line of the one line containing ``needle``."""
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(hits) == 1, f"{needle!r} is on lines {hits}"
    return hits[0]


def problems(text: str, overrides: Sequence[str] = ()) -> list[str]:
    """The one-line problems validating ``text`` raises (fails if it validates)."""
    with pytest.raises(ScenarioValidationError) as info:
        load_text(text, file=FILE, overrides=tuple(overrides))
    lines = str(info.value).splitlines()
    assert lines == [str(p) for p in info.value.problems]
    return lines
