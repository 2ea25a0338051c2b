"""The ledger contract: the money and the credit rules, on numbers and on arrays alike."""

from __future__ import annotations

import dataclasses
import datetime as dt
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scenarios import ledger
from scenarios.loader import load

S = load("openai-2024-cn-hk").scenario
UTC = dt.UTC


def test_revenue_is_the_list_price_of_the_tokens_net_of_free_ones() -> None:
    assert ledger.revenue_usd(5.0, 15.0, 10, 7) == (10 * 5.0 + 7 * 15.0) / 1e6
    assert ledger.revenue_usd(4.14, 13.80, 20, 12, 10, 6) == (10 * 4.14 + 6 * 13.80) / 1e6
    assert ledger.revenue_usd(0.02, 0.0, 1000) == 1000 * 0.02 / 1e6  # input-only (embeddings)
    assert ledger.revenue_usd(4.14, 13.80, 17, 5, 17, 5) == 0.0


def test_arrays_and_numbers_give_the_same_bits() -> None:
    tin, tout, fin, fout = np.array([10, 20, 7]), np.array([7, 12, 0]), np.array([0, 10, 7]), \
        np.array([0, 6, 0])
    pin, pout = np.array([5.0, 4.14, 0.55]), np.array([15.0, 13.8, 1.66])
    vector = ledger.revenue_usd(pin, pout, tin, tout, fin, fout)
    scalar = [ledger.revenue_usd(float(a), float(b), int(c), int(d), int(e), int(f))
              for a, b, c, d, e, f in zip(pin, pout, tin, tout, fin, fout, strict=True)]
    assert vector.tolist() == scalar
    free_in, free_out = ledger.credit_draw(tin, tout, np.array([100, 16, 3]))
    assert (free_in.tolist(), free_out.tolist()) == ([10, 10, 3], [7, 6, 0])
    assert [ledger.credit_draw(int(a), int(b), c) for a, b, c in
            zip(tin, tout, (100, 16, 3), strict=True)] == [(10, 7), (10, 6), (3, 0)]


def test_a_draw_pays_the_first_tokens_input_share_rounded_down() -> None:
    assert ledger.credit_draw(10, 7, 50) == (10, 7)      # all of it
    assert ledger.credit_draw(20, 12, 16) == (10, 6)     # 16·20/32 = 10 input, the rest output
    assert ledger.credit_draw(3, 4, 5) == (2, 3)         # 5·3/7 = 2.14 → 2
    assert ledger.credit_draw(10, 7, 0) == (0, 0)
    assert ledger.credit_draw(0, 0, 10) == (0, 0)
    assert ledger.credit_draw(10, 0, 4) == (4, 0)        # input-only calls


def test_a_sequence_draws_each_holders_credit_in_order() -> None:
    owner = np.array([0, 0, 0, 0, 1, 1])
    tin = np.array([10, 10, 20, 10, 5, 5])
    tout = np.array([7, 7, 12, 7, 5, 5])
    free_in, free_out = ledger.credit_draws(owner, tin, tout, np.array([50, 12]))
    assert free_in.tolist() == [10, 10, 10, 0, 5, 1]
    assert free_out.tolist() == [7, 7, 6, 0, 5, 1]


@settings(derandomize=True, max_examples=200)
@given(st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 5000)), min_size=1, max_size=30),
       st.integers(0, 60000))
def test_the_sequence_is_the_gateways_one_request_at_a_time(amounts: list[tuple[int, int]],
                                                             credit: int) -> None:
    """The simulator's vectorised draw over a sequence equals the gateway's running balance."""
    tin, tout = (np.array(x, dtype=np.int64) for x in zip(*amounts, strict=True))
    vin, vout = ledger.credit_draws(np.zeros(len(amounts), dtype=np.int64), tin, tout,
                                    np.array([credit]))
    balance, one_by_one = credit, []
    for a, b in amounts:
        got = ledger.credit_draw(a, b, balance)
        balance -= sum(got)
        one_by_one.append(got)
    assert list(zip(vin.tolist(), vout.tolist(), strict=True)) == one_by_one
    assert balance == credit - min(credit, int(tin.sum() + tout.sum())) >= 0


def _credit_draws_before_metered(owner: np.ndarray, tokens_in: np.ndarray, tokens_out: np.ndarray,
                                 credit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`scenarios.ledger.credit_draws` as it was before it took ``metered``."""
    used = tokens_in + tokens_out
    cum = np.cumsum(used)
    new = np.ones(owner.size, dtype=bool)
    new[1:] = owner[1:] != owner[:-1]
    before = cum - used - np.maximum.accumulate(np.where(new, cum - used, 0))
    return ledger.credit_draw(tokens_in, tokens_out, credit[owner] - before)


def test_amounts_not_metered_draw_nothing_and_leave_the_others_as_without_them() -> None:
    """With ``metered``, the metered amounts draw bit for bit what the previous draw gave on them
    alone, and the others draw nothing: seeded random runs of holders, zero amounts, credits of
    0, below 0 and beyond the amounts; one amount; none."""
    rng = np.random.default_rng(31)
    cases = [(np.zeros(0, dtype=np.int64),) * 3 + (np.zeros(0, dtype=bool),),
             (np.array([0]), np.array([7]), np.array([3]), np.array([True])),
             (np.array([0]), np.array([7]), np.array([3]), np.array([False]))]
    for size in (2, 10, 100, 5000):
        owner = np.sort(rng.integers(0, max(size // 8, 1), size))
        tin = rng.integers(0, 3000, size) * (rng.random(size) < 0.9)
        tout = rng.integers(0, 3000, size) * (rng.random(size) < 0.9)
        cases.append((owner, tin, tout, rng.random(size) < rng.choice([0.0, 0.5, 0.97, 1.0])))
    for owner, tin, tout, metered in cases:
        credit = rng.integers(-100, 40_000, int(owner.max(initial=0)) + 1) * \
            (rng.random(int(owner.max(initial=0)) + 1) < 0.8)
        got = ledger.credit_draws(owner, tin, tout, credit, metered=metered)
        want_in, want_out = np.zeros_like(tin), np.zeros_like(tout)
        idx = np.flatnonzero(metered)
        want_in[idx], want_out[idx] = _credit_draws_before_metered(owner[idx], tin[idx], tout[idx],
                                                                   credit)
        assert np.array_equal(got[0], want_in) and np.array_equal(got[1], want_out)
        all_metered = ledger.credit_draws(owner, tin, tout, credit)
        for g, w in zip(all_metered, _credit_draws_before_metered(owner, tin, tout, credit),
                        strict=True):
            assert g.dtype == w.dtype and np.array_equal(g, w)


def test_a_credit_opens_only_while_the_offer_is_on() -> None:
    tencent, zhipu, openai = S.provider("tencent"), S.provider("zhipu"), S.provider("openai")
    deadline = dt.datetime(2024, 8, 1, tzinfo=UTC)
    assert ledger.grants_credit(tencent, deadline - dt.timedelta(seconds=1)) == 100_000_000
    assert ledger.grants_credit(tencent, deadline) == 0
    assert ledger.grants_credit(zhipu, dt.datetime(2024, 12, 1, tzinfo=UTC)) == 150_000_000
    assert ledger.grants_credit(S.provider("deepseek"), deadline) == 0  # no offer
    assert ledger.grants_credit(openai, deadline) == 0                  # the incumbent
    assert ledger.draws_credit(tencent, "direct") and not ledger.draws_credit(tencent, "failover")
    assert not ledger.draws_credit(openai, "direct")


def test_the_schema_is_the_row_type(tmp_path: Path) -> None:
    """Columns come from LedgerRow's fields, each with a type, a unit field and a meaning."""
    assert tuple(f.name for f in dataclasses.fields(ledger.LedgerRow)) == ledger.COLUMN_NAMES
    assert all(c.meaning for c in ledger.COLUMNS + ledger.CREDIT_COLUMNS)
    db = sqlite3.connect(tmp_path / "l.sqlite")
    for statement in ledger.CREATE_STATEMENTS:
        db.execute(statement)
    row = dataclasses.replace(_row(), credit_opened=50, credit_left=33, free_tokens_in=10,
                              free_tokens_out=7)
    db.execute(ledger.INSERT_REQUEST, dataclasses.astuple(row))
    db.execute(ledger.INSERT_REQUEST, dataclasses.astuple(dataclasses.replace(
        row, request_id="r2", credit_opened=0, credit_left=16)))
    assert next(ledger.LedgerRow(*r) for r in db.execute(ledger.SELECT_REQUESTS)) == row
    # the trigger keeps the credit in the rows' own transactions
    assert db.execute(ledger.SELECT_CREDITS).fetchall() == [
        ("cn-startup-000001", "tencent", 50, 16, "2024-07-10T00:00:00Z", "r1")]


def _row() -> ledger.LedgerRow:
    return ledger.LedgerRow(
        request_id="r1", wall_time=1.0, scenario_time="2024-07-10T00:00:00Z",
        org="cn-startup-000001", home_region="CN", country="CN", asn=None, asn_class="isp",
        provider="tencent", model="hunyuan-pro", decision="allow", stage="", status=200,
        tokens_in=10, tokens_out=7, free_tokens_in=0, free_tokens_out=0, revenue_usd=0.0,
        credit_opened=0, credit_left=None, upstream_ms=1.0, total_ms=2.0, ttft_ms=None,
        path="direct", stream=0, error="")


@pytest.mark.parametrize("bad", [-1, 0])
def test_a_balance_at_or_below_zero_pays_nothing(bad: int) -> None:
    assert ledger.credit_draw(10, 7, bad) == (0, 0)


def _wal_ledger(path: Path) -> sqlite3.Connection:
    """A WAL-mode ledger with one row, as the gateway writes it; the writer is left open."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA wal_autocheckpoint=0")   # rows stay in the -wal until the writer closes
    for statement in ledger.CREATE_STATEMENTS:
        db.execute(statement)
    db.execute(ledger.INSERT_REQUEST, dataclasses.astuple(_row()))
    return db


def test_a_finished_ledger_is_read_without_leaving_files_beside_it(tmp_path: Path) -> None:
    run = tmp_path / "run with space"
    run.mkdir()
    _wal_ledger(run / "ledger.sqlite").close()       # a clean stop: checkpointed, -wal removed
    assert [p.name for p in run.iterdir()] == ["ledger.sqlite"]
    con = ledger.open_finished(run / "ledger.sqlite")
    try:
        assert [ledger.LedgerRow(*r) for r in con.execute(ledger.SELECT_REQUESTS)] == [_row()]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            con.execute("DELETE FROM requests")
    finally:
        con.close()
    assert [p.name for p in run.iterdir()] == ["ledger.sqlite"]   # mode=ro left -shm and -wal


def test_a_killed_gateways_rows_in_its_wal_are_read(tmp_path: Path) -> None:
    writer = _wal_ledger(tmp_path / "ledger.sqlite")  # not closed: its row is only in the -wal
    try:
        assert (tmp_path / "ledger.sqlite-wal").stat().st_size > 0
        con = ledger.open_finished(tmp_path / "ledger.sqlite")
        try:
            assert con.execute("SELECT request_id FROM requests").fetchall() == [("r1",)]
        finally:
            con.close()
    finally:
        writer.close()
