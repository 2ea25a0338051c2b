"""A free-token credit survives a real restart: the gateway process is killed (SIGKILL) and a new
one on the same ledger file goes on drawing the balance the first left, request by request."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from e2e_support import UPSTREAMS_PORTS, free_port, free_run, spawn_regionblock, wait_ok

pytestmark = pytest.mark.e2e

SCENARIO = "openai-2024-cn-hk"
OFFER = ("--set", "providers[3].incentive.free_tokens=50")  # Tencent: 50 free tokens
PROVIDERS = 6


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@contextmanager
def upstreams() -> Iterator[int]:
    base = free_run(UPSTREAMS_PORTS)
    proc = spawn_regionblock("upstreams", SCENARIO, *OFFER, "--base-port", str(base),
                             "--time-scale", "1000")
    try:
        for i in range(PROVIDERS):
            wait_ok(f"http://127.0.0.1:{base + i}/healthz", proc)
        yield base
    finally:
        stop(proc)


@contextmanager
def gateway(base: int, ledger: Path) -> Iterator[int]:
    port = free_port()
    proc = spawn_regionblock("gateway", SCENARIO, *OFFER, "--insecure-org-keys", "--port", str(port),
                             "--upstream-base-port", str(base), "--trusted-proxy", "127.0.0.1/32",
                             "--ledger", str(ledger), "--at", "2024-07-10")
    try:
        wait_ok(f"http://127.0.0.1:{port}/readyz", proc)
        yield port
    finally:
        stop(proc)  # SIGKILL: no graceful close; the rows already answered are committed


def chat(port: int, tokens_in: int, tokens_out: int) -> dict[str, Any]:
    """One request to Tencent's model; the ledger row of it (the mock bills chars // 4 in)."""
    body = {"model": "hunyuan-pro", "max_tokens": tokens_out,
            "messages": [{"role": "user", "content": "x" * (4 * tokens_in)}]}
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions", data=json.dumps(body).encode(),
        headers={"Authorization": "Bearer sk-cn-startup-000001", "X-Forwarded-For": "1.2.4.8",
                 "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
        return {"request_id": resp.headers["x-request-id"]}


def rows(ledger: Path, sql: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(ledger)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


@pytest.mark.timeout(90)
def test_the_credit_balance_survives_a_killed_gateway(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.sqlite"
    with upstreams() as base:
        with gateway(base, ledger) as port:
            ids = [chat(port, 10, 7)["request_id"], chat(port, 10, 7)["request_id"]]
        assert rows(ledger, "SELECT granted, remaining FROM credits") == [(50, 16)]
        with gateway(base, ledger) as port:
            ids += [chat(port, 20, 12)["request_id"], chat(port, 10, 7)["request_id"]]
    got = {r[0]: r[1:] for r in rows(ledger, "SELECT request_id, free_tokens_in, free_tokens_out, "
                                             "credit_opened, credit_left, revenue_usd FROM requests")}
    assert [got[i] for i in ids] == [
        (10, 7, 50, 33, 0.0), (10, 7, 0, 16, 0.0),
        (10, 6, 0, 0, (10 * 4.14 + 6 * 13.80) / 1e6), (0, 0, 0, 0, (10 * 4.14 + 7 * 13.80) / 1e6)]
    assert rows(ledger, "SELECT org, provider, granted, remaining FROM credits") == [
        ("cn-startup-000001", "tencent", 50, 0)]
