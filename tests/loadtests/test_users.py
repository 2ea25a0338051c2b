"""A Locust user's in-flight pool is as large as its own schedule needs (the open model); the
processes of a load test may open as many files as the system lets them."""

from __future__ import annotations

import resource

import numpy as np

from loadtests.plan import IN_FLIGHT_S, MAX_IN_FLIGHT, in_flight_bound
from regionblock.cli import raise_open_file_limit


def test_the_bound_is_the_most_sends_within_the_in_flight_window() -> None:
    assert IN_FLIGHT_S == 60.0
    # 100 sends in 10 s (5 users at 50 requests a second): all may be in flight together
    assert in_flight_bound(np.linspace(0.0, 10.0, 100), 32) == 100
    # one send a second: 60 of them lie within any 60 s (the window is half-open)
    assert in_flight_bound(np.arange(0.0, 600.0, 1.0), 32) == 60
    # sparse sends keep the floor
    assert in_flight_bound(np.arange(0.0, 6000.0, 100.0), 32) == 32
    assert in_flight_bound(np.array([]), 32) == 32
    # a burst past the SDK's connection limit is capped at it
    assert in_flight_bound(np.zeros(5000), 32) == MAX_IN_FLIGHT == 1000


def test_the_densest_window_counts_not_the_average() -> None:
    # 10 sends a minute for an hour, then a burst of 200 within 29 s
    calm = np.arange(0.0, 3600.0, 6.0)
    burst = 3600.0 + np.linspace(0.0, 29.0, 200)
    assert in_flight_bound(np.concatenate([calm, burst]), 32) == 200 + 5  # 5 calm sends in reach


def test_the_soft_open_file_limit_is_raised_to_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = min(soft, 256)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        raise_open_file_limit()
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (
            hard if hard != resource.RLIM_INFINITY else max(lowered, 1 << 20), hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_every_organisation_sends_from_an_isp_address_of_its_region() -> None:
    """A home address on a hosting network would start the incumbent's relay detection at the
    organisation's first direct request (the gateway's RelayMemory), long before it relays —
    where the model starts it at its first relayed request."""
    from loadtests.plan import LoadConfig, build_plan
    from scenarios.geo import default_geo

    plan = build_plan(LoadConfig(scenario="openai-2024-cn-hk", duration_s=60.0, epoch=0.0, users=400))
    geo = default_geo()
    ips = plan.source_ips(geo)
    seen = [(u.org.region, geo.lookup(ips[u.index])) for u in plan.users]
    assert len(seen) == 400 and {r for r, _ in seen} >= {"CN", "HK", "US", "SG"}
    assert all(info.country == region and not info.hosting for region, info in seen)
