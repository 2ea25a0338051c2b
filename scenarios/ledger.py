"""The ledger contract: what a metering ledger holds, and the money, defined once for both engines.

The gateway writes a ledger (SQLite, one file per gateway process); the load test and the reports
read it; the simulator computes the same money in bulk. All of them take their columns and their
arithmetic from here, so a figure means the same thing whichever engine produced it.

Tables::

    requests  one row per request the gateway answered (columns: :data:`COLUMNS`, from LedgerRow)
    meta      key TEXT PRIMARY KEY, value TEXT (scenario, scenario_sha256, gateway_pid, clock, ...)
    credits   one row per (org, provider) whose free-token credit is open: granted and remaining
              tokens, kept by a trigger in the same transaction as the request row that moved it

Money, in USD, at the served model's list price per 1M tokens, net of free tokens::

    revenue = ((tokens_in − free_in) · price_in + (tokens_out − free_out) · price_out) / 1e6

Free-token incentives (``Provider.incentive``):

- **Grant** (:func:`grants_credit`): an organisation's credit of ``free_tokens`` at an
  alternative provider opens with its first request to that provider sent while the offer is on
  (before ``deadline``). The gateway sees that request; the simulator takes the instant its
  migration completes, when its traffic starts going to the provider. A load test's user, which
  sends a sample of its organisation's traffic, gets the same fraction of the credit
  (``scale``; the load test writes each user's scale for its gateway, ``--credit-scale FILE``).
- **Draw** (:func:`credit_draw`): the credit pays for the first tokens the organisation uses
  there, in the order they are metered; within one metered amount (a request in the gateway, a
  piece of a time bin in the simulator) the free tokens are split between input and output in
  proportion, input rounded down. Only the organisation's own (``direct``) traffic to an
  alternative draws on it: failover traffic routed by the gateway does not.

Every function takes Python numbers or numpy arrays (element-wise) and returns the same kind, so
the gateway's per-request metering and the simulator's vectorised money run the same code.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from scenarios.schema import Provider

Num = TypeVar("Num", int, float, np.ndarray)

TOKENS_PER_PRICE_UNIT = 1e6  # list prices are USD per 1M tokens


def _col(sql: str, unit: str, meaning: str) -> Any:
    return field(metadata={"sql": sql, "unit": unit, "meaning": meaning})


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """One row of ``requests``: field order is column order, and each field documents its column."""

    request_id: str = _col("TEXT PRIMARY KEY", "", "the gateway's request id (x-request-id)")
    wall_time: float = _col("REAL", "s since the Unix epoch", "when the request arrived")
    scenario_time: str = _col("TEXT", "ISO-8601 UTC", "the scenario instant of its arrival")
    org: str = _col("TEXT", "", "organisation (from the API key); empty if unidentified")
    home_region: str = _col("TEXT", "", "the organisation's home region")
    country: str = _col("TEXT", "ISO 3166-1", "client country resolved from its address")
    asn: int | None = _col("INTEGER", "", "client ASN, if known")
    asn_class: str = _col("TEXT", "", "isp | hosting | unknown ...")
    provider: str = _col("TEXT", "", "provider that served (after any failover)")
    model: str = _col("TEXT", "", "model served (the request's model before routing)")
    decision: str = _col("TEXT", "", "allow | warn | throttle | block | failed")
    stage: str = _col("TEXT", "", "policy stage that decided")
    status: int = _col("INTEGER", "HTTP status", "status sent to the client")
    tokens_in: int = _col("INTEGER", "tokens", "input (prompt) tokens metered")
    tokens_out: int = _col("INTEGER", "tokens", "output (completion) tokens metered")
    free_tokens_in: int = _col("INTEGER", "tokens", "input tokens paid by the free-token credit")
    free_tokens_out: int = _col("INTEGER", "tokens", "output tokens paid by the free-token credit")
    revenue_usd: float = _col("REAL", "USD", "list price of the tokens net of free ones (revenue_usd())")
    credit_opened: int = _col("INTEGER", "tokens", "credit granted by this request (0: none)")
    credit_left: int | None = _col("INTEGER", "tokens",
                                   "the (org, provider) credit after this request; NULL: no credit")
    upstream_ms: float | None = _col("REAL", "ms", "upstream call, first byte to last")
    total_ms: float = _col("REAL", "ms", "arrival to the ledger row")
    ttft_ms: float | None = _col("REAL", "ms", "arrival to the first streamed event")
    path: str = _col("TEXT", "", "direct | relay | failover")
    stream: int = _col("INTEGER", "0/1", "a streamed response")
    error: str = _col("TEXT", "", "error code, or usage_missing; empty when none")


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    sql: str
    unit: str
    meaning: str


COLUMNS: tuple[Column, ...] = tuple(Column(f.name, f.metadata["sql"], f.metadata["unit"],
                                           f.metadata["meaning"]) for f in fields(LedgerRow))
COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
CREDIT_COLUMNS: tuple[Column, ...] = (
    Column("org", "TEXT NOT NULL", "", "organisation"),
    Column("provider", "TEXT NOT NULL", "", "alternative provider giving the credit"),
    Column("granted", "INTEGER NOT NULL", "tokens", "credit granted"),
    Column("remaining", "INTEGER NOT NULL", "tokens", "credit not yet used"),
    Column("opened_at", "TEXT NOT NULL", "ISO-8601 UTC", "scenario instant of the opening request"),
    Column("opened_by", "TEXT NOT NULL", "", "request id of the opening request"),
)
CREDIT_COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in CREDIT_COLUMNS)
TABLES = ("requests", "meta", "credits")

#: Kept in the request row's transaction; a second opening of one (org, provider) (only possible
#: when shards of unpinned replicas are merged) is ignored here and reported by the load test.
_CREDIT_TRIGGER = """CREATE TRIGGER IF NOT EXISTS credit_account AFTER INSERT ON requests
WHEN NEW.credit_opened > 0 OR NEW.free_tokens_in > 0 OR NEW.free_tokens_out > 0
BEGIN
  INSERT OR IGNORE INTO credits (org, provider, granted, remaining, opened_at, opened_by)
    SELECT NEW.org, NEW.provider, NEW.credit_opened, NEW.credit_opened, NEW.scenario_time,
           NEW.request_id WHERE NEW.credit_opened > 0;
  UPDATE credits SET remaining = remaining - NEW.free_tokens_in - NEW.free_tokens_out
    WHERE org = NEW.org AND provider = NEW.provider;
END"""

CREATE_STATEMENTS: tuple[str, ...] = (
    "CREATE TABLE IF NOT EXISTS requests (" + ", ".join(f"{c.name} {c.sql}" for c in COLUMNS) + ")",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)",
    "CREATE TABLE IF NOT EXISTS credits (" + ", ".join(f"{c.name} {c.sql}" for c in CREDIT_COLUMNS)
    + ", PRIMARY KEY (org, provider))",
    _CREDIT_TRIGGER,
)
INSERT_REQUEST = (f"INSERT OR REPLACE INTO requests ({', '.join(COLUMN_NAMES)}) "
                  f"VALUES ({', '.join('?' * len(COLUMN_NAMES))})")
SELECT_REQUESTS = f"SELECT {', '.join(COLUMN_NAMES)} FROM requests ORDER BY wall_time, request_id"
SELECT_CREDITS = f"SELECT {', '.join(CREDIT_COLUMN_NAMES)} FROM credits ORDER BY org, provider"


# ---------------------------------------------------------------- money


def revenue_usd(price_in: Any, price_out: Any, tokens_in: Any, tokens_out: Any = 0,
                free_in: Any = 0, free_out: Any = 0) -> Any:
    """USD for the tokens at list prices (USD per 1M tokens), net of the free ones.

    An embedding or any input-only call passes ``tokens_out=0``. The one expression, in one order,
    for every engine: the gateway's rows and the simulator's cells agree to the last bit.
    """
    return ((tokens_in - free_in) * price_in + (tokens_out - free_out) * price_out) \
        / TOKENS_PER_PRICE_UNIT


def credit_draw(tokens_in: Num, tokens_out: Num, balance: Num) -> tuple[Num, Num]:
    """(free input, free output tokens) that a credit of ``balance`` pays for one metered amount.

    The credit pays ``min(tokens_in + tokens_out, balance)`` tokens, split in proportion with the
    input share rounded down (integer arithmetic: exact for any token count).
    """
    used = tokens_in + tokens_out
    free = _minimum(used, _maximum(balance, 0))
    free_in = free * tokens_in // _maximum(used, 1)
    return free_in, free - free_in


def credit_draws(owner: np.ndarray, tokens_in: np.ndarray, tokens_out: np.ndarray,
                 credit: np.ndarray,
                 metered: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`credit_draw` over a sequence of metered amounts, grouped by ``owner`` in order.

    ``owner`` holds each amount's credit holder (contiguous runs, in metering order) and
    ``credit[owner]`` its credit; each amount draws on what the holder's earlier amounts left.
    Where ``metered`` is False an amount draws nothing and leaves the credit as it was: the
    others draw exactly as if it were not in the sequence (a caller need not gather them).
    """
    used = tokens_in + tokens_out
    if metered is not None:
        used = np.where(metered, used, 0)
    spent = np.cumsum(used) - used                  # by the amounts before, of any holder
    new = np.ones(owner.size, dtype=bool)
    new[1:] = owner[1:] != owner[:-1]
    balance = credit[owner] - (spent - np.maximum.accumulate(np.where(new, spent, 0)))
    if metered is not None:
        balance = np.where(metered, balance, 0)     # a balance of 0 pays nothing
    return credit_draw(tokens_in, tokens_out, balance)


def grants_credit(provider: Provider, at: dt.datetime, scale: float = 1.0) -> int:
    """Free tokens a first request to ``provider`` at scenario instant ``at`` opens (0: no offer).

    ``scale`` sizes the credit to a sample's traffic: a load-test user sends a fraction of the
    tokens of the organisation it plays (:func:`credit_scale`), and gets that fraction of the
    credit, so its credit lasts as many of its requests as the organisation's lasts of its own.
    """
    offer = provider.incentive
    if provider.incumbent or offer is None or (offer.deadline is not None and at >= offer.deadline):
        return 0
    return offer.free_tokens if scale == 1.0 else int(offer.free_tokens * scale)


def credit_scale(sample_tokens: float, organisation_tokens: float) -> float:
    """The credit scale of a sample that sends ``sample_tokens`` where the organisation it stands
    for would send ``organisation_tokens`` (both over the same window, as planned)."""
    return sample_tokens / organisation_tokens if organisation_tokens > 0 else 0.0


def read_credit_scales(path: Path) -> dict[str, float]:
    """``{org: scale}`` from a JSON object file; ValueError naming the file and the bad entry."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable JSON file: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must be a JSON object of organisation id to credit scale")
    out: dict[str, float] = {}
    for org, value in data.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1e6:
            raise ValueError(f"{path}: {org}: {value!r} is not a credit scale (a number >= 0)")
        out[str(org)] = float(value)
    return out


def write_credit_scales(path: Path, scales: dict[str, float]) -> None:
    path.write_text(json.dumps(dict(sorted(scales.items())), indent=1) + "\n", encoding="utf-8")


def open_finished(path: Path) -> sqlite3.Connection:
    """A read-only connection to a ledger no process writes any more (a run directory's).

    Opened ``immutable``: reading leaves nothing beside it — a WAL-mode file opened ``mode=ro``
    gets a ``-shm`` and a ``-wal`` that a read-only connection cannot remove. Where a ``-wal``
    with content is still there (its gateway was killed before its last checkpoint), its rows
    live in it, so the file is read through it, ``mode=ro``."""
    wal = path.with_name(path.name + "-wal")
    mode = "mode=ro" if wal.is_file() and wal.stat().st_size > 0 else "immutable=1"
    return sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True)


class LedgerFormatError(ValueError):
    """A file that is not a ledger this version reads (the message says why, without the path:
    the reader puts its own error type and the file in front)."""


#: The SQLite storage classes each declared column type takes (``typeof``): a number column its
#: numbers or NULL (a latency not measured, an ASN not known), a text column text.
_TYPEOF = {"INTEGER": ("integer", "real", "null"), "REAL": ("real", "integer", "null"),
           "TEXT": ("text",)}


def check_finished(path: Path) -> None:
    """LedgerFormatError unless ``path`` is a ledger of the contract: an SQLite file with its
    tables, ``requests`` with every column, each value of its column's kind (a number where a
    number is read). Opened as :func:`open_finished`: the check leaves nothing beside the file."""
    try:
        db = open_finished(path)
        try:
            found = {str(r[0]) for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()}
            cols = {str(r[1]) for r in db.execute("PRAGMA table_info(requests)").fetchall()}
            if not set(TABLES) <= found or not set(COLUMN_NAMES) <= cols:
                raise LedgerFormatError(
                    f"not a gateway ledger (expected tables {', '.join(TABLES)}, requests with "
                    f"columns {', '.join(COLUMN_NAMES)})")
            checks = [(c, _TYPEOF[c.sql.split()[0]]) for c in COLUMNS]
            where = " OR ".join(f"typeof({c.name}) NOT IN ({', '.join(repr(t) for t in kinds)})"
                                for c, kinds in checks)
            bad = db.execute(f"SELECT rowid, {', '.join(c.name for c, _ in checks)} FROM requests "
                             f"WHERE {where} LIMIT 1").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise LedgerFormatError(f"not a gateway ledger ({exc})") from None
    if bad is not None:
        rowid, values = bad[0], bad[1:]
        for (column, kinds), value in zip(checks, values, strict=True):
            if _storage_class(value) not in kinds:
                what = "a number" if "null" in kinds else "text"
                text = "NULL" if value is None else repr(value)
                text = text if len(text) <= 40 else text[:37] + "..."
                raise LedgerFormatError(f"requests row {rowid}: {column.name} {text} is not {what}")


def _storage_class(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "real"
    return "text" if isinstance(value, str) else "blob"


def draws_credit(provider: Provider, path: str) -> bool:
    """Whether traffic on ``path`` to ``provider`` may open and draw a free-token credit."""
    return path == "direct" and not provider.incumbent


def _minimum(a: Any, b: Any) -> Any:
    return np.minimum(a, b) if isinstance(a, np.ndarray) or isinstance(b, np.ndarray) else min(a, b)


def _maximum(a: Any, b: Any) -> Any:
    return np.maximum(a, b) if isinstance(a, np.ndarray) or isinstance(b, np.ndarray) else max(a, b)
