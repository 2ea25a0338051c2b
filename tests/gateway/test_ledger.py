"""The ledger: exact schema, group commit in both modes, durable before the future resolves."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from gateway.errors import LedgerError
from gateway.ledger import COLUMN_NAMES, Ledger

SCHEMA = ("request_id", "wall_time", "scenario_time", "org", "home_region", "country", "asn",
          "asn_class", "provider", "model", "decision", "stage", "status", "tokens_in",
          "tokens_out", "revenue_usd", "upstream_ms", "total_ms", "ttft_ms", "path", "stream",
          "error")


def row(i: int) -> tuple[object, ...]:
    return (f"r{i}", 1.5, "2024-07-10T00:00:00Z", "us-startup-000001", "US", "US", None, "isp",
            "openai", "gpt-4o", "allow", "", 200, 8, 12, 0.00022, 1.0, 2.0, None, "direct", 0, "")


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


def test_schema_is_the_shared_contract() -> None:
    assert COLUMN_NAMES == SCHEMA


def test_a_ledger_with_other_columns_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE requests (request_id TEXT PRIMARY KEY, other TEXT)")
    db.close()
    with pytest.raises(LedgerError, match="other columns"):
        Ledger(path, meta={})
