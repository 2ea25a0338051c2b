"""The metering ledger: one row per request, durable before the client gets its response.

SQLite in WAL mode, one file (shard) per gateway process, written in groups (group commit): every
record submitted during one turn of the event loop is inserted in one transaction, and then each
record's future is resolved. A handler awaits that future before it completes its response (for a
stream: before ``data: [DONE]``), so after ``kill -9`` every response a client fully received has
its row. Three sync levels (``--ledger-sync``), all durable across a crash of the gateway process,
because a commit has handed its WAL frames to the OS before any future resolves:

- ``normal`` (the default): no fsync per commit; SQLite's automatic WAL checkpoints fsync, so after
  an OS crash or power loss the file is consistent (the latest rows may be missing). Those fsyncs
  run on the event loop and take milliseconds on slow disks: rare multi-millisecond stalls.
- ``off``: never fsyncs: no checkpoint stalls, but an OS crash or power loss may corrupt the file.
- ``full``: every commit is fsynced (durable across power loss). Fsyncs take milliseconds, so a
  dedicated writer thread commits and resolves the futures with ``call_soon_threadsafe``.

``normal`` and ``off`` commit on the event loop itself, at the end of the turn: a commit there
takes tens of microseconds, cheaper and faster than handing rows to a thread and waking the loop.

Schema: the shared ledger contract, :mod:`scenarios.ledger` (tables ``requests``, ``meta`` and
``credits``, the credit-keeping trigger, every column's meaning and unit). Free-token credit
balances live in ``credits``, updated in the same transaction as the request row that moved them,
so a restarted gateway reads them back with :meth:`Ledger.credit_balances`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.errors import LedgerError
from scenarios import ledger as contract

COLUMN_NAMES = contract.COLUMN_NAMES


# None binds as NULL either way; without an adapter, sqlite3 (Python 3.11) first looks for one
# by raising and formatting two AttributeErrors per None value: ~3,000 instructions for each of a
# row's NULL columns (credit_left, ttft_ms...), about a third of the row's insert. With an adapter
# it is one dict look-up and one call: of a C function (an empty dict's ``get``, which returns
# None for None), cheaper than a Python function's frame.
_NO_ADAPTATION: dict[None, None] = {}
sqlite3.register_adapter(type(None), _NO_ADAPTATION.get)
_INSERT = contract.INSERT_REQUEST
_MAX_BATCH = 4096
log = logging.getLogger("regionblock.gateway")
#: off: durable across a crash of the gateway process, no fsync ever; normal: also consistent (but
#: possibly missing the latest rows) after an OS crash or power loss, fsync at checkpoints; full:
#: every commit fsynced, durable across power loss.
SYNC_LEVELS = ("off", "normal", "full")

Row = tuple[Any, ...]
_Item = tuple[Row, "asyncio.Future[None] | None", float]


class Ledger:
    """Group-committing SQLite writer. ``submit`` from the event loop; ``await`` the result."""

    def __init__(self, path: Path, *, meta: Mapping[str, str], sync: str = "normal") -> None:
        if sync not in SYNC_LEVELS:
            raise ValueError(f"sync ({sync!r}) must be one of {', '.join(SYNC_LEVELS)}")
        self.path = path
        self._sync = sync.upper()
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inline = sync != "full"
        self._db: sqlite3.Connection | None = None
        self._cursor: sqlite3.Cursor | None = None  # the inline committer's one cursor
        self._pending: list[_Item] = []
        self.queued = 0
        self.written = 0
        self.last_lag_s = 0.0  # enqueue → commit of the latest group
        self.failed: BaseException | None = None
        self._balances: dict[tuple[str, str], int] = {}
        self._init_file(meta)

    # ------------------------------------------------------------------ setup

    def _init_file(self, meta: Mapping[str, str]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = self._open()
            try:
                with db:
                    db.execute(contract.CREATE_STATEMENTS[0])  # requests: checked before the rest
                    found = tuple(r[1] for r in db.execute("PRAGMA table_info(requests)"))
                    if found == COLUMN_NAMES:
                        for statement in contract.CREATE_STATEMENTS[1:]:
                            db.execute(statement)
                        db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                       sorted(meta.items()))
                        self._balances = {(str(o), str(p)): int(left) for o, p, left in db.execute(
                            "SELECT org, provider, remaining FROM credits")}
            finally:
                db.close()
        except (sqlite3.Error, OSError) as exc:
            raise LedgerError(f"{self.path}: cannot open the ledger: {exc}") from exc
        if found != COLUMN_NAMES:
            raise LedgerError(f"{self.path}: an existing ledger has other columns: {', '.join(found)}")

    def credit_balances(self) -> dict[tuple[str, str], int]:
        """(org, provider) → free tokens left, as this ledger held them when it was opened."""
        return dict(self._balances)

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self._sync}")
        return db

    def set_meta(self, items: Mapping[str, str]) -> None:
        """Update meta rows (e.g. after a scenario reload), from the event loop thread."""
        db = self._open()
        try:
            with db:
                db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", sorted(items.items()))
        finally:
            db.close()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        if self._inline:
            self._db = self._open()
            self._cursor = self._db.cursor()
            return
        self._thread = threading.Thread(target=self._writer, name="ledger-writer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ the event loop side

    def submit(self, row: Row) -> asyncio.Future[None]:
        """Queue a row; the future completes once its group is committed."""
        assert self._loop is not None, "Ledger.start() first"
        fut: asyncio.Future[None] = self._loop.create_future()
        if self.failed is not None:
            fut.set_exception(LedgerError(f"ledger writer failed: {self.failed}"))
            return fut
        self.queued += 1
        if self._inline:
            pending = self._pending
            if not pending:
                self._loop.call_soon(self._flush)  # runs after this turn's callbacks: one group
                pending.append((row, fut, time.monotonic()))
            else:  # the lag is the group's first row's
                pending.append((row, fut, 0.0))
        else:
            self._queue.put((row, fut, time.monotonic()))
            if self.failed is not None:  # the writer died meanwhile: nobody will take the row
                self._fail_queue(self.failed)
        return fut

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if batch and self._cursor is not None:
            self._commit(self._cursor, batch)

    @property
    def backlog(self) -> int:
        return self.queued - self.written

    async def close(self) -> None:
        """Flush every queued row and stop the writer."""
        if self._db is not None:
            self._flush()
            self._db.close()
            self._db = self._cursor = None
        if self._thread is None:
            return
        self._queue.put(None)
        thread = self._thread
        self._thread = None
        await asyncio.get_running_loop().run_in_executor(None, thread.join)

    # ------------------------------------------------------------------ the writer thread

    def _writer(self) -> None:
        try:
            db = self._open()
        except sqlite3.Error as exc:
            self.failed = exc
            self._fail_queue(exc)
            return
        batch: list[_Item] = []
        cursor = db.cursor()
        try:
            stop = False
            while not stop:
                batch, stop = self._next_batch()
                if batch:
                    self._commit(cursor, batch)
                batch = []
        except BaseException as exc:  # the thread must not die silently: /readyz reports it
            self.failed = exc
            self._resolve_all([fut for _, fut, _ in batch if fut is not None], exc)
            self._fail_queue(exc)
            log.exception("ledger writer thread stopped; the gateway is no longer ready")
        finally:
            db.close()

    def _fail_queue(self, error: BaseException) -> None:
        """Fail every queued row's future (the writer is gone; nobody else will)."""
        futures: list[asyncio.Future[None]] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None and item[1] is not None:
                futures.append(item[1])
        self._resolve_all(futures, error)

    @property
    def alive(self) -> bool:
        """False once the ledger failed, or its writer thread ended before ``close``."""
        if self.failed is not None:
            return False
        return self._inline or (self._thread is not None and self._thread.is_alive())

    def _next_batch(self) -> tuple[list[_Item], bool]:
        first = self._queue.get()
        if first is None:
            return [], True
        batch = [first]
        while len(batch) < _MAX_BATCH:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _commit(self, cursor: sqlite3.Cursor, batch: list[_Item]) -> None:
        """Commit one group; on failure, commit its rows one by one so that one bad row (a value
        SQLite cannot bind) fails only its own request. A failure of the database itself (disk
        full, I/O error) fails the ledger: later requests get 503 until it is fixed."""
        try:
            _insert(cursor, [item[0] for item in batch])
        except Exception:
            errors = [self._commit_one(cursor, row) for row, _, _ in batch]
            self.written += sum(1 for e in errors if e is None)
            outcome = [(fut, err) for (_, fut, _), err in zip(batch, errors, strict=True)
                       if fut is not None]
        else:  # the usual case: the whole group is durable
            self.written += len(batch)
            outcome = [(fut, None) for _, fut, _ in batch if fut is not None]
        self.last_lag_s = time.monotonic() - batch[0][2]
        if self._inline:
            _resolve(outcome)
        elif outcome and self._loop is not None and not self._loop.is_closed():
            # RuntimeError: the loop closed meanwhile, and nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(_resolve, outcome)

    def _commit_one(self, cursor: sqlite3.Cursor, row: Row) -> BaseException | None:
        try:
            _insert(cursor, [row])
        except sqlite3.Error as exc:
            if not isinstance(exc, sqlite3.InterfaceError | sqlite3.DataError | sqlite3.IntegrityError):
                self.failed = exc
            return exc
        except Exception as exc:  # e.g. UnicodeEncodeError: a str SQLite cannot store as UTF-8
            return exc
        return None

    def _resolve_all(self, futures: list[asyncio.Future[None]], error: BaseException) -> None:
        if not futures or self._loop is None or self._loop.is_closed():
            return
        outcome: list[tuple[asyncio.Future[None], BaseException | None]] = [
            (f, error) for f in futures]
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(_resolve, outcome)


def _insert(cursor: sqlite3.Cursor, rows: list[Row]) -> None:
    """Insert ``rows`` in one transaction; rolled back (and re-raised) on any error. (On one
    cursor kept for the connection: ``Connection.execute`` makes a cursor per statement, three
    per commit.)"""
    cursor.execute("BEGIN")
    try:
        cursor.executemany(_INSERT, rows)
        cursor.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            cursor.execute("ROLLBACK")
        raise


def _resolve(outcome: list[tuple[asyncio.Future[None], BaseException | None]]) -> None:
    for fut, error in outcome:
        if fut.done():
            continue
        if error is None:
            fut.set_result(None)
        else:
            fut.set_exception(LedgerError(f"ledger write failed: {error}"))
