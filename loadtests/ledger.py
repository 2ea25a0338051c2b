"""Reading a gateway's metering ledger (SQLite) directly: the load test may not import gateway/.

The schema is the shared ledger contract, :mod:`scenarios.ledger` (tables ``requests``, ``meta``
and ``credits``; rows read as :class:`scenarios.ledger.LedgerRow`). Files are opened read-only.
Several gateway replicas each write their own shard; :func:`merge_shards` joins the rows of one run
into one file made from the contract, whose trigger rebuilds the run's credits from those rows.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtests.errors import RunOutputError
from scenarios.ledger import (
    COLUMN_NAMES,
    CREATE_STATEMENTS,
    SELECT_REQUESTS,
    LedgerFormatError,
    LedgerRow,
    check_finished,
    open_finished,
)

COLUMNS = COLUMN_NAMES


def read_ledger(path: Path) -> tuple[list[LedgerRow], dict[str, str]]:
    """Every row (in arrival order) and the meta table; RunOutputError if unreadable.

    The ledger is finished (its gateway has exited, or it is a merge of shards): read as
    ``scenarios.ledger.open_finished`` reads, it gets no ``-shm`` or ``-wal`` beside it in the
    run directory."""
    if not path.is_file():
        raise RunOutputError(f"{path}: no ledger (the gateway wrote none)")
    try:
        con = open_finished(path)
        try:
            rows = con.execute(SELECT_REQUESTS).fetchall()
            meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise RunOutputError(f"{path}: unreadable ledger: {exc}") from exc
    return [LedgerRow(*r) for r in rows], {str(k): str(v) for k, v in meta.items()}


def check_shard(path: Path) -> None:
    """RunOutputError unless ``path`` is a readable gateway ledger (checked before a run starts).

    Read as ``scenarios.ledger.open_finished`` reads: a shard whose gateway has stopped gets no
    ``-wal`` or ``-shm`` beside it from being checked (one still being written is read through its
    ``-wal``, as before)."""
    if not path.is_file():
        raise RunOutputError(f"{path}: no such file")
    try:
        check_finished(path)
    except LedgerFormatError as exc:
        raise RunOutputError(f"{path}: {exc}") from None


def merge_shards(shards: Sequence[Path], into: Path, *, since: float,
                 until: float) -> list[dict[str, Any]]:
    """Copy the rows of several gateways' ledgers that arrived in [since, until] into one ledger.

    ``into`` is made from the ledger contract, with the first shard's meta plus ``shards`` (JSON:
    path, rows in the window, rows in all); its ``credits`` are rebuilt from the merged rows by the
    contract's trigger (credits opened before the window are not in it; each row still carries
    its own free tokens and the credit left after it). Gateway
    request ids carry the process id and a random part, so they do not collide between shards; if
    two shards do share one, that is reported, not silently overwritten. Returns the shard list.
    """
    con = sqlite3.connect(into)
    listed: list[dict[str, Any]] = []
    try:
        for i, shard in enumerate(shards):
            con.execute("ATTACH DATABASE ? AS shard", (f"file:{shard}?mode=ro",))
            try:
                if i == 0:
                    for statement in CREATE_STATEMENTS:
                        con.execute(statement)
                    con.execute("INSERT INTO meta SELECT key, value FROM shard.meta")
                total = con.execute("SELECT count(*) FROM shard.requests").fetchone()[0]
                copied = con.execute(
                    f"INSERT INTO requests ({', '.join(COLUMNS)}) SELECT {', '.join(COLUMNS)} "
                    "FROM shard.requests WHERE wall_time BETWEEN ? AND ? "
                    "ORDER BY rowid", (since, until)).rowcount  # billing order: credits open first
                con.commit()
            except sqlite3.IntegrityError as exc:
                raise RunOutputError(f"{shard}: a request id also appears in an earlier --ledger "
                                     f"shard ({exc}); give each gateway its own ledger") from exc
            finally:
                con.rollback()
                con.execute("DETACH DATABASE shard")
            listed.append({"path": str(shard), "rows_in_run": int(copied), "rows_total": int(total)})
        con.execute("INSERT OR REPLACE INTO meta VALUES ('shards', ?)", (json.dumps(listed),))
        con.commit()
    except sqlite3.Error as exc:
        raise RunOutputError(f"merging ledgers into {into}: {exc}") from exc
    finally:
        con.close()
    return listed
