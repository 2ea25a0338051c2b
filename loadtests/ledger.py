"""Reading a gateway's metering ledger (SQLite) directly: the load test may not import gateway/.

The schema is the shared contract (see the team's preamble): table ``requests`` with one row per
request the gateway answered, and a ``meta`` key/value table. The file is opened read-only.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from loadtests.errors import RunOutputError

COLUMNS = ("request_id", "wall_time", "scenario_time", "org", "home_region", "country", "asn",
           "asn_class", "provider", "model", "decision", "stage", "status", "tokens_in",
           "tokens_out", "revenue_usd", "upstream_ms", "total_ms", "ttft_ms", "path", "stream",
           "error")


@dataclass(frozen=True, slots=True)
class LedgerRow:
    request_id: str
    wall_time: float
    scenario_time: str
    org: str
    home_region: str
    country: str
    asn: int | None
    asn_class: str
    provider: str
    model: str
    decision: str
    stage: str
    status: int
    tokens_in: int
    tokens_out: int
    revenue_usd: float
    upstream_ms: float | None
    total_ms: float
    ttft_ms: float | None
    path: str
    stream: int
    error: str


def read_ledger(path: Path) -> tuple[list[LedgerRow], dict[str, str]]:
    """Every row (in arrival order) and the meta table; RunOutputError if unreadable."""
    if not path.is_file():
        raise RunOutputError(f"{path}: no ledger (the gateway wrote none)")
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = con.execute(f"SELECT {', '.join(COLUMNS)} FROM requests "
                               "ORDER BY wall_time, request_id").fetchall()
            meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise RunOutputError(f"{path}: unreadable ledger: {exc}") from exc
    return [LedgerRow(*r) for r in rows], {str(k): str(v) for k, v in meta.items()}
