"""``scenarios.figures.sim_figures``: each figure per replication, from rows in any order."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scenarios.figures import sim_figures
from scenarios.loader import load

S = load("openai-2024-cn-hk").scenario
BEFORE, AFTER, LATER, LAST = ("2024-07-01T00:00:00Z", "2024-07-10T00:00:00Z", "2024-09-29T00:00:00Z",
                              "2024-09-30T00:00:00Z")


def columns(rows: list[tuple[str, int, str, str, str, str, str, float]]) -> dict[str, np.ndarray]:
    names = ("time", "replication", "metric", "region", "provider", "path", "state", "value")
    cols = {n: np.array([r[k] for r in rows]) for k, n in enumerate(names)}
    cols["value"] = cols["value"].astype(float)
    cols["replication"] = cols["replication"].astype(np.int64)
    return cols


def test_each_replication_counts_its_own_rows_from_the_block_and_its_own_last_bin() -> None:
    rows = [
        # replication 0: CN sends 100 to openai after the block (40 blocked), 10 failed over
        (AFTER, 0, "requests", "CN", "openai", "direct", "", 100.0),
        (AFTER, 0, "blocked", "CN", "openai", "direct", "", 40.0),
        (AFTER, 0, "requests", "CN", "zhipu", "failover", "", 10.0),
        (BEFORE, 0, "blocked", "CN", "openai", "direct", "", 999.0),     # before the block: out
        (AFTER, 0, "revenue_usd", "US", "openai", "direct", "", 30.0),
        (AFTER, 0, "revenue_usd", "CN", "zhipu", "direct", "", 10.0),
        (LAST, 0, "orgs", "CN", "", "", "churned", 3.0),
        (LAST, 0, "orgs", "CN", "", "", "direct", 9.0),
        (LAST, 0, "orgs", "US", "", "", "direct", 500.0),                # not a blocked region
        (LATER, 0, "orgs", "CN", "", "", "churned", 100.0),              # not its last bin
        # replication 1 (its rows first and interleaved): nothing blocked, orgs end a bin earlier
        (AFTER, 1, "requests", "HK", "openai", "direct", "", 50.0),
        (LATER, 1, "orgs", "HK", "", "", "migrated", 6.0),
        (LATER, 1, "orgs", "HK", "", "", "direct", 2.0),
        (AFTER, 1, "revenue_usd", "US", "openai", "direct", "", 8.0),
    ]
    order = [10, 3, 0, 11, 6, 1, 13, 2, 12, 4, 5, 7, 8, 9]
    f = sim_figures(S, columns([rows[k] for k in order]), {"headline": {}})
    assert f["block_share.CN"][0] == pytest.approx(40 / 110) and math.isnan(f["block_share.CN"][1])
    assert math.isnan(f["block_share.HK"][0]) and f["block_share.HK"][1] == 0.0
    assert f["revenue_share.openai"] == [0.75, 1.0]
    assert f["revenue_share.zhipu"] == [0.25, 0.0]
    assert f["orgs_share.churned"] == [0.25, 0.0]
    assert f["orgs_share.direct"] == [0.75, 0.25]
    assert f["orgs_share.migrated"] == [0.0, 0.75]
