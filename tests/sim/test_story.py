"""The default scenario tells the 2024 story."""

from __future__ import annotations

import datetime as dt

import numpy as np

from scenarios.loader import Loaded
from scenarios.rundir import PATHS
from sim.replication import FLOW_METRICS, ReplicationResult, Setup


def _bin(setup: Setup, day: str) -> int:
    h = (dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC) - setup.s.window.start).total_seconds() / 3600
    return int(np.searchsorted(setup.edges, h))


def _flow(result: ReplicationResult, metric: str) -> np.ndarray:
    return result.flows[FLOW_METRICS.index(metric)]


def _idx(setup: Setup) -> tuple[dict[str, int], dict[str, int]]:
    return ({r.code: i for i, r in enumerate(setup.s.regions)},
            {p.name: i for i, p in enumerate(setup.s.providers)})


def test_nothing_blocked_before_july_9(small_setup: Setup, small_result: ReplicationResult) -> None:
    block = _bin(small_setup, "2024-07-09")
    blocked = _flow(small_result, "blocked")
    assert blocked[:block].sum() == 0
    assert blocked[block:].sum() > 0
    # the warning stage runs from the 2024-06-25 email until the block
    warned = _flow(small_result, "warned")
    assert warned[: _bin(small_setup, "2024-06-25")].sum() == 0
    assert warned[_bin(small_setup, "2024-06-25"):block].sum() > 0


def test_cn_hk_direct_traffic_to_the_incumbent_is_blocked(small_setup: Setup,
                                                         small_result: ReplicationResult) -> None:
    regions, providers = _idx(small_setup)
    block = _bin(small_setup, "2024-07-09")
    inc, direct = providers["openai"], PATHS.index("direct")
    for code in ("CN", "HK"):
        r = regions[code]
        blocked = _flow(small_result, "blocked")[block:, r, inc, direct]
        assert np.all(blocked[:7] > 0)   # later the blocked organisations have moved on
        # what still gets through directly is the allow-listed enterprise (Azure) path
        allowed = _flow(small_result, "allowed")[block:, r, inc, direct]
        assert np.all(allowed > 0)
    us = regions["US"]
    assert _flow(small_result, "blocked")[:, us].sum() == 0


def test_supported_regions_are_untouched(small_setup: Setup, small_result: ReplicationResult) -> None:
    """Common random numbers: the US pays exactly what it pays without the block."""
    regions, providers = _idx(small_setup)
    us, inc = regions["US"], providers["openai"]
    revenue = _flow(small_result, "revenue_usd")[:, us, inc].sum(axis=-1)
    baseline = _flow(small_result, "baseline_revenue_usd")[:, us, inc].sum(axis=-1)
    np.testing.assert_array_equal(revenue, baseline)


def test_migrants_land_mostly_on_providers_with_offers(default: Loaded,
                                                       small_result: ReplicationResult) -> None:
    s = default.scenario
    migrated = {p.name: small_result.headline[f"orgs_migrated.{p.name}"] for p in s.alternatives}
    with_offer = sum(n for name, n in migrated.items() if s.provider(name).incentive is not None)
    assert sum(migrated.values()) > 0
    assert with_offer / sum(migrated.values()) > 0.75


def test_cn_revenue_collapses_while_relays_keep_a_share_until_detection(
        small_setup: Setup, small_result: ReplicationResult) -> None:
    regions, providers = _idx(small_setup)
    cn, inc = regions["CN"], providers["openai"]
    revenue = _flow(small_result, "revenue_usd")[:, cn, inc]          # (bin, path)
    baseline = _flow(small_result, "baseline_revenue_usd")[:, cn, inc].sum(axis=-1)
    last_week = slice(-7, None)
    assert revenue[last_week].sum() < 0.4 * baseline[last_week].sum()
    relay = revenue[:, PATHS.index("relay")]
    block, detect = _bin(small_setup, "2024-07-09"), _bin(small_setup, "2024-07-25")
    assert relay[:block].sum() == 0
    assert relay[block:].sum() > 0
    # detection (from 2024-07-25) erodes the relayed share
    assert relay[-7:].mean() < relay[block:detect].max()
