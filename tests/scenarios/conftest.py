"""Fixtures for the scenarios tests (helpers live in scenario_helpers.py)."""

from __future__ import annotations

import pytest
from scenario_helpers import DEFAULT_NAME

from scenarios.loader import Loaded, load
from scenarios.schema import Scenario


@pytest.fixture(scope="session")
def default() -> Loaded:
    return load(DEFAULT_NAME)


@pytest.fixture(scope="session")
def scenario(default: Loaded) -> Scenario:
    return default.scenario
