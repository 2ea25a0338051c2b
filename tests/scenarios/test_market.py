"""scenarios.market: one imitation-share formula, the recorder and its context agree."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from scenarios.market import MarketContext, MarketRecorder, imitation_share

START = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)


def at(h: float) -> dt.datetime:
    return START + dt.timedelta(hours=h)


def test_share_is_decisions_over_affected() -> None:
    assert imitation_share({"zhipu": 3, "baidu": 1}, 8) == {"zhipu": 0.375, "baidu": 0.125}
    assert imitation_share({"zhipu": 1}, 0) == {"zhipu": 1.0}   # never less than one affected


def test_the_record_answers_what_the_live_market_said(tmp_path: Path) -> None:
    live = MarketRecorder(START)
    for _ in range(10):
        live.affect("CN")
    said = {}
    for h, k in [(5.0, "zhipu"), (7.5, "baidu"), (7.5, "zhipu"), (30.0, "zhipu")]:
        live.chose("CN", k, h)
        said[h] = live.shares("CN")
    live.hazard("CN", 1.0, 0.1)
    live.hazard("CN", 2.0, 0.4)
    ctx = live.context()
    path = tmp_path / "market.json"
    ctx.write(path)
    for c in (ctx, MarketContext.read(path)):
        for h, shares in said.items():
            assert c.shares("CN", at(h)) == shares
        assert c.shares("CN", at(4.9)) == {}
        assert c.shares("HK", at(40)) == {}
        assert c.anticipation_at("CN", 0.05) == at(1.0)
        assert c.anticipation_at("CN", 0.4) == at(2.0)
        assert c.anticipation_at("CN", 0.41) is None


def test_live_shares_are_the_formula_of_the_counts_after_every_decision() -> None:
    """The recorder updates its shares mapping instead of recomputing it: after every decision
    (and every newly affected organisation) it equals imitation_share of the counts — values bit
    for bit, keys in the same order — and it is a new mapping after every change and the same one
    until then (callers key caches on its identity)."""
    import random

    rnd = random.Random(7)
    live = MarketRecorder(START)
    counts: dict[str, dict[str, int]] = {}
    affected = {"CN": 0, "HK": 0}
    last: dict[str, tuple[dict[str, float], bool]] = {}   # region -> (mapping asked, changed since)
    for step in range(2000):
        region = rnd.choice(["CN", "HK"])
        if rnd.random() < 0.1:
            live.affect(region)
            affected[region] += 1
        else:
            k = rnd.choice(["zhipu", "baidu", "qwen", "deepseek", "tencent"])
            live.chose(region, k, float(step))
            counts.setdefault(region, {})[k] = counts.get(region, {}).get(k, 0) + 1
        if region in last:
            last[region] = (last[region][0], True)
        if rnd.random() < 0.7:   # asked often, but not after every change
            ask = rnd.choice(["CN", "HK"])
            got = live.shares(ask)
            want = imitation_share(counts.get(ask, {}), affected[ask])
            assert list(got.items()) == list(want.items())
            if ask in last:
                before, changed = last[ask]
                assert (got is not before) == changed
            last[ask] = (got, False)


def test_affecting_n_at_once_is_affecting_one_by_one() -> None:
    """MarketRecorder.affect(region, n): the counts, the regions' order and the shares of n calls."""
    start = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
    bulk, one = MarketRecorder(start), MarketRecorder(start)
    for region, n in (("HK", 3), ("CN", 5), ("HK", 2)):
        bulk.affect(region, n)
        for _ in range(n):
            one.affect(region)
    bulk.chose("HK", "zhipu", 1.0)
    one.chose("HK", "zhipu", 1.0)
    assert list(bulk.context().regions) == list(one.context().regions) == ["HK", "CN"]
    assert bulk.context().to_json() == one.context().to_json()
    assert bulk.shares("HK") == one.shares("HK") == {"zhipu": 1 / 5}
