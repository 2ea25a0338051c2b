"""Ledger shards of several gateway replicas: checked before a run, merged by the run's window."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from gateway.ledger import Ledger
from loadtests.errors import RunOutputError
from loadtests.ledger import check_shard, merge_shards, read_ledger
from regionblock.cli import main
from tests.ledger_rows import row_tuple


def row(request_id: str, wall_time: float, **fields: object) -> tuple[object, ...]:
    return row_tuple(request_id=request_id, wall_time=wall_time, **fields)


def shard(path: Path, rows: list[tuple[object, ...]], pid: str) -> Path:
    """A real gateway ledger file, written by the gateway's own writer."""
    async def write() -> None:
        ledger = Ledger(path, meta={"scenario": "openai-2024-cn-hk", "gateway_pid": pid})
        ledger.start(asyncio.get_running_loop())
        await asyncio.gather(*(ledger.submit(r) for r in rows))
        await ledger.close()
    asyncio.run(write())
    return path


def test_rows_inside_the_window_from_every_shard_are_merged(tmp_path: Path) -> None:
    a = shard(tmp_path / "a.sqlite", [row("a1", 99.0), row("a2", 100.0), row("a3", 150.0)], "1")
    b = shard(tmp_path / "b.sqlite", [row("b1", 120.0), row("b2", 200.0), row("b3", 200.5)], "2")
    into = tmp_path / "ledger.sqlite"
    listed = merge_shards([a, b], into, since=100.0, until=200.0)
    assert listed == [{"path": str(a), "rows_in_run": 2, "rows_total": 3},
                      {"path": str(b), "rows_in_run": 2, "rows_total": 3}]
    rows, meta = read_ledger(into)
    assert [r.request_id for r in rows] == ["a2", "b1", "a3", "b2"]
    assert rows[0] == read_ledger(a)[0][1]  # copied column for column
    assert meta["gateway_pid"] == "1" and json.loads(meta["shards"]) == listed


def test_a_request_id_in_two_shards_is_reported_not_overwritten(tmp_path: Path) -> None:
    a = shard(tmp_path / "a.sqlite", [row("same", 100.0)], "1")
    b = shard(tmp_path / "b.sqlite", [row("same", 101.0)], "2")
    with pytest.raises(RunOutputError, match=r"b\.sqlite: a request id also appears in an earlier"):
        merge_shards([a, b], tmp_path / "ledger.sqlite", since=0.0, until=1e10)


def test_a_file_that_is_not_a_ledger_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE requests (request_id TEXT)")
    con.close()
    with pytest.raises(RunOutputError, match=r"other\.sqlite: not a gateway ledger \(expected"):
        check_shard(other)
    (tmp_path / "text.sqlite").write_text("hello")
    with pytest.raises(RunOutputError, match=r"text\.sqlite: not a gateway ledger"):
        check_shard(tmp_path / "text.sqlite")


@pytest.mark.parametrize(("extra", "message"), [
    (["--ledger", "{a}"], "--ledger: only with --host (without it the load test starts "
                          "its own gateway and reads that gateway's ledger)"),
    (["--host", "http://127.0.0.1:9", "--ledger", "{missing}"],
     "--ledger: {missing}: no such file"),
    (["--host", "http://127.0.0.1:9", "--ledger", "{a}", "--ledger", "{a}"],
     "--ledger: the same shard is named twice"),
])
def test_bad_ledger_arguments_are_one_line_and_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str) -> None:
    a = shard(tmp_path / "a.sqlite", [row("a1", 1.0)], "1")
    names = {"a": str(a), "missing": str(tmp_path / "missing.sqlite")}
    out = tmp_path / "runs"
    code = main(["loadtest", "openai-2024-cn-hk", *(x.format(**names) for x in extra),
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert (code, err) == (2, message.format(**names) + "\n")
    assert not out.exists() or not any(out.iterdir())  # nothing started, nothing written


def credits(path: Path) -> list[tuple[object, ...]]:
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT org, provider, granted, remaining, opened_by FROM credits "
                           "ORDER BY org").fetchall()
    finally:
        con.close()


def tencent(request_id: str, wall_time: float, org: str, opened: int, free: tuple[int, int],
            left: int) -> tuple[object, ...]:
    return row(request_id, wall_time, org=org, provider="tencent", model="hunyuan-pro",
               tokens_in=10, tokens_out=7, free_tokens_in=free[0], free_tokens_out=free[1],
               revenue_usd=0.0, credit_opened=opened, credit_left=left)


def test_the_merge_carries_the_credit_columns_and_rebuilds_the_runs_credits(tmp_path: Path) -> None:
    """Each organisation on one replica (pinned): the merged credits are each shard's."""
    a = shard(tmp_path / "a.sqlite", [tencent("a1", 100.0, "cn-startup-000001", 50, (10, 7), 33),
                                      tencent("a2", 101.0, "cn-startup-000001", 0, (10, 7), 16)],
              "1")
    b = shard(tmp_path / "b.sqlite", [tencent("b1", 100.5, "cn-hobbyist-000002", 50, (10, 7), 33)],
              "2")
    assert credits(a) == [("cn-startup-000001", "tencent", 50, 16, "a1")]  # the gateway's own
    into = tmp_path / "ledger.sqlite"
    merge_shards([a, b], into, since=0.0, until=1e10)
    rows, _ = read_ledger(into)
    assert [(r.request_id, r.free_tokens_in, r.credit_opened, r.credit_left) for r in rows] == [
        ("a1", 10, 50, 33), ("b1", 10, 50, 33), ("a2", 10, 0, 16)]
    assert credits(into) == [("cn-hobbyist-000002", "tencent", 50, 33, "b1"),
                             ("cn-startup-000001", "tencent", 50, 16, "a1")]


def test_a_credit_opened_on_two_shards_keeps_the_first_opening(tmp_path: Path) -> None:
    """Unpinned replicas: the merge keeps one credit, so the draws of both show the double grant
    (the load test's revenue check reports it)."""
    a = shard(tmp_path / "a.sqlite", [tencent("a1", 100.0, "cn-startup-000001", 50, (10, 7), 33)],
              "1")
    b = shard(tmp_path / "b.sqlite", [tencent("b1", 101.0, "cn-startup-000001", 50, (10, 7), 33)],
              "2")
    into = tmp_path / "ledger.sqlite"
    merge_shards([a, b], into, since=0.0, until=1e10)
    assert credits(into) == [("cn-startup-000001", "tencent", 50, 16, "a1")]


def test_gateway_writer_loadtest_reader_and_contract_agree_on_every_column(tmp_path: Path) -> None:
    """The gateway's Meter, its writer and the load test's reader all take the contract's columns:
    a gateway-written row reads back as the same LedgerRow, column for column."""
    import dataclasses
    import datetime as dt

    from gateway.app import Meter
    from gateway.ledger import COLUMN_NAMES as WRITTEN
    from loadtests.ledger import COLUMNS as READ
    from scenarios import ledger as contract

    assert WRITTEN == READ == contract.COLUMN_NAMES
    meter = Meter("m1", 100.0, "2024-07-10T00:00:00Z", dt.datetime(2024, 7, 10, tzinfo=dt.UTC))
    written = meter.row(3.5)
    assert len(written) == len(contract.COLUMN_NAMES)
    assert dict(zip(contract.COLUMN_NAMES, written, strict=True))["total_ms"] == 3.5
    values = row("x1", 99.0, free_tokens_in=3, free_tokens_out=4, credit_opened=50,
                 credit_left=43)
    path = shard(tmp_path / "a.sqlite", [values, written], "1")
    rows, _ = read_ledger(path)
    assert [dataclasses.astuple(r) for r in rows] == [values, written]
    check_shard(path)
