"""Properties under common random numbers (Hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scenarios.loader import load
from sim.replication import Setup, run_replication

SCALE = 0.02
AFFECTABLE = ("CN", "HK", "MO", "RU", "SG", "JP")


def _incumbent_revenue(regions: list[str], seed: int) -> float:
    listed = "[" + ", ".join(regions) + "]"
    loaded = load("openai-2024-cn-hk", (f"policy.openai.stages[0].regions={listed}",
                                        f"policy.openai.stages[1].regions={listed}"))
    result = run_replication(Setup.of(loaded.scenario, 0, SCALE), 0,
                             np.random.SeedSequence(seed).spawn(1)[0])
    return result.headline["incumbent_revenue_usd"]


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(AFFECTABLE), min_size=1, max_size=3, unique=True),
       st.sampled_from(AFFECTABLE), st.integers(0, 3))
def test_blocking_more_regions_never_raises_incumbent_revenue(regions: list[str], extra: str,
                                                             seed: int) -> None:
    more = sorted({*regions, extra})
    fewer = _incumbent_revenue(sorted(regions), seed)
    assert _incumbent_revenue(more, seed) <= fewer


def test_no_policy_means_no_impact() -> None:
    loaded = load("openai-2024-cn-hk", ("policy={}",))
    setup = Setup.of(loaded.scenario, 0, SCALE)
    result = run_replication(setup, 0, np.random.SeedSequence(1).spawn(1)[0])
    h = result.headline
    assert h["incumbent_revenue_lost_usd"] == 0.0
    assert h["incumbent_revenue_usd"] == h["incumbent_baseline_revenue_usd"]
    assert h["orgs_final.direct"] == setup.pop.size
    assert all(v == 0.0 for k, v in h.items() if k.startswith("alt_revenue_gained_usd."))
