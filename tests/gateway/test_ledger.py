"""The ledger: exact schema, group commit in both modes, durable before the future resolves."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from gateway.errors import LedgerError
from gateway.ledger import COLUMN_NAMES, Ledger
from scenarios import ledger as contract
from tests.ledger_rows import row_tuple


def row(i: int) -> tuple[object, ...]:
    return row_tuple(request_id=f"r{i}")


@pytest.mark.parametrize("sync", ["off", "normal", "full"])
async def test_rows_are_committed_before_their_futures_resolve(tmp_path: Path, sync: str) -> None:
    path = tmp_path / "l.sqlite"
    ledger = Ledger(path, meta={"scenario": "s", "clock": "c"}, sync=sync)
    ledger.start(asyncio.get_running_loop())
    await asyncio.gather(*(ledger.submit(row(i)) for i in range(50)))
    db = sqlite3.connect(path)  # another connection sees every row: committed
    assert db.execute("SELECT count(*) FROM requests").fetchone()[0] == 50
    assert db.execute("SELECT * FROM requests WHERE request_id='r7'").fetchone() == row(7)
    assert dict(db.execute("SELECT key, value FROM meta")) == {"scenario": "s", "clock": "c"}
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    await ledger.close()
    assert ledger.written == 50 and ledger.backlog == 0


def test_schema_is_the_shared_contract(tmp_path: Path) -> None:
    """The gateway writes exactly the contract's tables and columns."""
    assert COLUMN_NAMES == contract.COLUMN_NAMES
    path = tmp_path / "l.sqlite"
    Ledger(path, meta={})
    db = sqlite3.connect(path)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    cols = tuple(r[1] for r in db.execute("PRAGMA table_info(requests)"))
    credit_cols = tuple(r[1] for r in db.execute("PRAGMA table_info(credits)"))
    db.close()
    assert tables == set(contract.TABLES)
    assert cols == contract.COLUMN_NAMES and credit_cols == contract.CREDIT_COLUMN_NAMES


def test_a_ledger_with_other_columns_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE requests (request_id TEXT PRIMARY KEY, other TEXT)")
    db.close()
    with pytest.raises(LedgerError, match="other columns"):
        Ledger(path, meta={})


@pytest.mark.parametrize("sync", ["off", "normal", "full"])
async def test_a_row_sqlite_cannot_store_fails_alone(tmp_path: Path, sync: str) -> None:
    """A lone surrogate cannot be encoded as UTF-8: it once raised inside the transaction, left it
    open (every later commit failed) or killed the writer thread (every later request hung)."""
    ledger = Ledger(tmp_path / "l.sqlite", meta={}, sync=sync)
    ledger.start(asyncio.get_running_loop())
    poison = (*row(1)[:9], "\ud800", *row(1)[10:])
    results = await asyncio.gather(ledger.submit(row(0)), ledger.submit(poison),
                                   ledger.submit(row(2)), return_exceptions=True)
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], LedgerError)
    await ledger.submit(row(3))
    assert ledger.alive and ledger.written == 3
    await ledger.close()
    db = sqlite3.connect(tmp_path / "l.sqlite")
    assert [r[0] for r in db.execute("SELECT request_id FROM requests ORDER BY request_id")] == [
        "r0", "r2", "r3"]
    db.close()


async def test_a_dead_writer_thread_fails_fast_and_is_not_alive(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite", meta={}, sync="full")
    ledger.start(asyncio.get_running_loop())
    await ledger.submit(row(0))

    def crash(db: sqlite3.Connection, batch: list[object]) -> None:
        raise RuntimeError("writer bug")

    ledger._commit = crash  # type: ignore[method-assign]
    with pytest.raises(LedgerError, match="writer bug"):
        await ledger.submit(row(1))  # the batch in hand is failed, not left hanging
    assert not ledger.alive
    with pytest.raises(LedgerError):
        await ledger.submit(row(2))  # later rows fail at once
    await ledger.close()
