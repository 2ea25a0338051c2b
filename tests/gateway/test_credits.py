"""Free-token incentives metered for real: credits opened, drawn and priced as the simulator does.

The cross-engine cases feed one organisation's token sequence at one provider to the gateway (real
requests to an in-process gateway and a fake upstream) and to the simulator's money path
(``sim.traffic._credit_paid`` and ``sim.outcome.money`` on cells built for the same sequence), and
expect identical free tokens and revenue, to the last bit.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from scenarios import ledger
from scenarios.loader import Loaded, load
from scenarios.rundir import PATHS
from sim.outcome import fate_arrays, money
from sim.pieces import ALLOW, Fate
from sim.traffic import Cells, _credit_paid
from tests.gateway.conftest import CN_IP, StartGateway, chat_body
from tests.gateway.fake_upstream import Faults

KEY = "sk-cn-startup-000001"
ORG = "cn-startup-000001"
CREDIT = 50
#: Tencent (prices 4.14 in / 13.80 out: the input/output split of free tokens matters) gives 50.
SMALL_OFFER = load("openai-2024-cn-hk", [f"providers[3].incentive.free_tokens={CREDIT}"])
#: (tokens in, tokens out, stream) of one organisation's requests: 17 + 17 + 32 + 17 tokens.
SEQUENCE = [(10, 7, False), (10, 7, False), (20, 12, True), (10, 7, False)]


async def _send(gw: Any, sequence: list[tuple[int, int, bool]], *, key: str = KEY,
                model: str = "hunyuan-pro") -> list[dict[str, Any]]:
    rows = []
    for tin, tout, stream in sequence:
        extra = {"stream": True, "stream_options": {"include_usage": True}} if stream else {}
        status, headers, _ = await gw.chat(chat_body(model=model, content="x" * (4 * tin),
                                                     max_tokens=tout, **extra), ip=CN_IP, key=key)
        assert status == 200
        rows.append(gw.row(headers["x-request-id"]))
    return rows


def _simulated(loaded: Loaded, provider: str, model: str, sequence: list[tuple[int, int, bool]],
               credit: int) -> tuple[list[tuple[int, int]], list[float]]:
    """The simulator's free tokens and revenue for one migrated organisation's requests, one
    request per cell, in order."""
    s = loaded.scenario
    names = [m.name for m in s.incumbent.models]
    incumbent_model = next(i for i, n in enumerate(names)
                           if s.provider(provider).substitute_for(n).name == model)
    n = len(sequence)
    tin = np.array([t[0] for t in sequence], dtype=np.int64)
    tout = np.array([t[1] for t in sequence], dtype=np.int64)
    zeros = np.zeros(n, dtype=np.int64)
    free_in, free_out = _credit_paid(np.ones(n, dtype=bool), zeros, tin, tout,
                                     np.array([credit], dtype=np.int64))
    cells = Cells(bin=np.arange(n), region=zeros, segment=zeros,
                  model=np.full(n, incumbent_model), fate=zeros, n=np.ones(n, dtype=np.int64),
                  tokens_in=tin, tokens_out=tout, free_in=free_in, free_out=free_out)
    fa = fate_arrays(s, (Fate(provider, "direct", ALLOW, migrated=True),), PATHS)
    _, _, _, revenue, _ = money(s, cells, fa, np.ones(n, dtype=np.int64), PATHS)
    return list(zip(free_in.tolist(), free_out.tolist(), strict=True)), revenue.tolist()


def _money(rows: list[dict[str, Any]]) -> tuple[list[tuple[int, int]], list[float]]:
    return ([(r["free_tokens_in"], r["free_tokens_out"]) for r in rows],
            [r["revenue_usd"] for r in rows])


async def test_a_migrants_credit_pays_its_first_tokens_until_it_runs_out_as_in_the_simulator(
        start_gateway: StartGateway) -> None:
    gw = await start_gateway(scenario=SMALL_OFFER)  # clock: 2024-07-10, the offer is on
    rows = await _send(gw, SEQUENCE)
    at = dt.datetime(2024, 7, 10, tzinfo=dt.UTC)
    credit = ledger.grants_credit(SMALL_OFFER.scenario.provider("tencent"), at)
    assert credit == CREDIT
    # by hand: 17 free, 17 free, then 16 of 32 (16·20/32 = 10 in, 6 out), then nothing
    free = [(10, 7), (10, 7), (10, 6), (0, 0)]
    revenue = [0.0, 0.0, (10 * 4.14 + 6 * 13.80) / 1e6, (10 * 4.14 + 7 * 13.80) / 1e6]
    assert _money(rows) == (free, revenue)
    assert _simulated(SMALL_OFFER, "tencent", "hunyuan-pro", SEQUENCE, credit) == (free, revenue)
    assert [(r["credit_opened"], r["credit_left"]) for r in rows] == [
        (50, 33), (0, 16), (0, 0), (0, 0)]
    assert [r["stream"] for r in rows] == [0, 0, 1, 0]
    assert _credits(gw.ledger) == [(ORG, "tencent", 50, 0)]


async def test_without_an_incentive_every_token_is_paid_in_both_engines(
        start_gateway: StartGateway) -> None:
    gw = await start_gateway(scenario=load("no-incentives"))
    rows = await _send(gw, SEQUENCE)
    revenue = [(10 * 4.14 + 7 * 13.80) / 1e6, (10 * 4.14 + 7 * 13.80) / 1e6,
               (20 * 4.14 + 12 * 13.80) / 1e6, (10 * 4.14 + 7 * 13.80) / 1e6]
    assert _money(rows) == ([(0, 0)] * 4, revenue)
    assert _simulated(load("no-incentives"), "tencent", "hunyuan-pro", SEQUENCE, 0) == (
        [(0, 0)] * 4, revenue)
    assert [(r["credit_opened"], r["credit_left"]) for r in rows] == [(0, None)] * 4
    assert _credits(gw.ledger) == []


async def test_after_the_offers_deadline_no_credit_opens(start_gateway: StartGateway) -> None:
    gw = await start_gateway(scenario=SMALL_OFFER, clock="at:2024-08-01")  # Tencent's deadline
    rows = await _send(gw, SEQUENCE[:1])
    assert (rows[0]["credit_opened"], rows[0]["credit_left"], rows[0]["free_tokens_in"]) == (
        0, None, 0)
    zhipu = await _send(gw, SEQUENCE[:1], model="glm-4")  # no deadline: still on
    assert (zhipu[0]["credit_opened"], zhipu[0]["credit_left"]) == (150_000_000, 150_000_000 - 17)


async def test_each_organisation_has_its_own_credit_at_each_provider(
        start_gateway: StartGateway) -> None:
    gw = await start_gateway(scenario=SMALL_OFFER)
    await _send(gw, SEQUENCE[:2])
    other = await _send(gw, SEQUENCE[:1], key="sk-cn-hobbyist-000003")
    zhipu = await _send(gw, SEQUENCE[:1], model="glm-4")
    assert (other[0]["credit_opened"], other[0]["credit_left"]) == (50, 33)
    assert zhipu[0]["credit_opened"] == 150_000_000
    assert _credits(gw.ledger) == [("cn-hobbyist-000003", "tencent", 50, 33),
                                   (ORG, "tencent", 50, 16), (ORG, "zhipu", 150_000_000,
                                                              150_000_000 - 17)]


async def test_failover_traffic_neither_opens_nor_draws_a_credit(
        start_gateway: StartGateway) -> None:
    gw = await start_gateway()  # the enterprise's block fails over to alibaba (20M free tokens)
    status, headers, _ = await gw.chat(chat_body(model="gpt-4o", max_tokens=4), ip=CN_IP,
                                       key="sk-cn-enterprise-000007")
    row = gw.row(headers["x-request-id"])
    assert (status, row["provider"], row["path"]) == (200, "alibaba", "failover")
    assert (row["credit_opened"], row["credit_left"], row["free_tokens_in"]) == (0, None, 0)


async def test_an_unserved_first_request_opens_the_credit_it_cannot_use(
        start_gateway: StartGateway) -> None:
    """The first request opens the credit even if it is not served (it has no tokens to pay)."""
    gw = await start_gateway(scenario=SMALL_OFFER)
    gw.fake.faults["tencent"] = Faults(fail_next=2)  # the first try and its one retry
    status, headers, _ = await gw.chat(chat_body(model="hunyuan-pro", max_tokens=7), ip=CN_IP,
                                       key=KEY)
    row = gw.row(headers["x-request-id"])
    assert status == 500 and (row["decision"], row["tokens_in"]) == ("failed", 0)
    assert (row["credit_opened"], row["credit_left"], row["revenue_usd"]) == (50, 50, 0.0)


async def test_the_credit_balance_survives_a_restart(start_gateway: StartGateway,
                                                     tmp_path: Path) -> None:
    path = tmp_path / "kept.sqlite"
    first = await start_gateway(scenario=SMALL_OFFER, ledger=path)
    before = await _send(first, SEQUENCE[:2])
    await first.server.stop()
    second = await start_gateway(scenario=SMALL_OFFER, ledger=path)
    assert second.gateway.credits.balance(ORG, "tencent") == 16
    after = await _send(second, SEQUENCE[2:])
    assert _money(before + after) == _simulated(SMALL_OFFER, "tencent", "hunyuan-pro", SEQUENCE,
                                                CREDIT)
    assert [r["credit_opened"] for r in after] == [0, 0]
    assert _credits(path) == [(ORG, "tencent", 50, 0)]


def _credits(path: Path) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT org, provider, granted, remaining FROM credits "
                          "ORDER BY org, provider").fetchall()
    finally:
        db.close()


async def test_a_sampled_organisation_gets_its_share_of_the_credit(
        start_gateway: StartGateway) -> None:
    """``--credit-scale``: a load-test user sending a fraction of its organisation's tokens."""
    gw = await start_gateway(scenario=SMALL_OFFER, credit_scales={ORG: 0.5})
    rows = await _send(gw, SEQUENCE)
    assert [(r["credit_opened"], r["credit_left"]) for r in rows] == [
        (25, 8), (0, 0), (0, 0), (0, 0)]
    assert _money(rows)[0] == [(10, 7), (4, 4), (0, 0), (0, 0)]  # 8 of 17: 8·10/17 = 4 in
    assert _simulated(SMALL_OFFER, "tencent", "hunyuan-pro", SEQUENCE, 25) == _money(rows)
    db = sqlite3.connect(gw.ledger)
    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    db.close()
    assert meta["credit_scales"] == '{"cn-startup-000001": 0.5}'
