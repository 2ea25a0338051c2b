"""Shared fixtures for the simulator tests: small, seeded runs of the shipped scenarios."""

from __future__ import annotations

import numpy as np
import pytest

from scenarios.loader import Loaded, load
from sim.replication import ReplicationResult, Setup, run_replication

#: Fraction of the default scenario's organisations the fast tests simulate (about 2,750).
SMALL = 0.05


@pytest.fixture(scope="session")
def default() -> Loaded:
    return load("openai-2024-cn-hk")


@pytest.fixture(scope="session")
def small_setup(default: Loaded) -> Setup:
    return Setup.of(default.scenario, 0, SMALL)


@pytest.fixture(scope="session")
def small_result(small_setup: Setup) -> ReplicationResult:
    return run_replication(small_setup, 0, np.random.SeedSequence(0).spawn(1)[0])
