"""The gateway and the mock upstreams as real processes, driven by the official openai SDK.

``python -m regionblock upstreams`` and ``python -m regionblock gateway`` run on free ports; each
is waited on (/healthz, /readyz) with a deadline. The client sets X-Forwarded-For, which the
gateway trusts from 127.0.0.1/32.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from e2e_support import UPSTREAMS_PORTS, free_port, free_run, spawn_regionblock, wait_ok
from openai import OpenAI

from scenarios.policy import OPENAI_403_BODY

pytestmark = pytest.mark.e2e

SCENARIO = "openai-2024-cn-hk"
UPSTREAM_SERVERS = 7  # six providers and the relay


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@contextmanager
def upstreams_proc(time_scale: float = 1000.0) -> Iterator[int]:
    """``regionblock upstreams`` on a free run of ports; yields the base port."""
    base = free_run(UPSTREAMS_PORTS)
    proc = spawn_regionblock("upstreams", SCENARIO, "--base-port", str(base), "--time-scale",
                             str(time_scale))
    try:
        for i in range(UPSTREAM_SERVERS - 1):
            wait_ok(f"http://127.0.0.1:{base + i}/healthz", proc)
        yield base
    finally:
        stop(proc)


@contextmanager
def gateway_proc(base: int, ledger: Path, *extra: str, org_keys: bool = True,
                 ) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """``regionblock gateway`` trusting 127.0.0.1 for X-Forwarded-For; yields (port, process)."""
    port = free_port()
    keys = ["--insecure-org-keys"] if org_keys else []
    proc = spawn_regionblock("gateway", SCENARIO, "--port", str(port), "--upstream-base-port",
                             str(base), "--trusted-proxy", "127.0.0.1/32", "--ledger", str(ledger),
                             *keys, *extra)
    try:
        wait_ok(f"http://127.0.0.1:{port}/readyz", proc)
        yield port, proc
    finally:
        stop(proc)


US_IP, CN_IP = "73.0.0.1", "1.2.4.8"
MESSAGES: Any = [{"role": "user", "content": "What is the capital of France?"}]  # 30 chars: 8 tokens


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    ledger = tmp_path_factory.mktemp("e2e") / "ledger.sqlite"
    with upstreams_proc() as base, gateway_proc(base, ledger, "--at", "2024-07-10") as (port, _):
        yield port, ledger


def client(port: int, ip: str, org: str) -> OpenAI:
    return OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=f"sk-{org}", max_retries=0,
                  timeout=10, default_headers={"X-Forwarded-For": ip})


def ledger_row(ledger: Path, request_id: str) -> dict[str, Any]:
    db = sqlite3.connect(ledger)
    db.row_factory = sqlite3.Row
    try:
        row = db.execute("SELECT * FROM requests WHERE request_id = ?", (request_id,)).fetchone()
    finally:
        db.close()
    assert row is not None, f"{request_id} missing from the ledger"
    return dict(row)


def test_cn_client_after_the_block_is_denied_exactly(stack: tuple[int, Path]) -> None:
    port, ledger = stack
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client(port, CN_IP, "cn-startup-000001").chat.completions.create(
            model="gpt-4o", messages=MESSAGES, max_tokens=5)
    exc = caught.value
    assert exc.status_code == 403 and exc.code == "unsupported_country_region_territory"
    assert exc.response.content == OPENAI_403_BODY
    row = ledger_row(ledger, exc.response.headers["x-request-id"])
    assert (row["decision"], row["country"], row["status"]) == ("block", "CN", 403)


def test_us_client_completion_is_metered_exactly(stack: tuple[int, Path]) -> None:
    port, ledger = stack
    raw = client(port, US_IP, "us-startup-000001").chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MESSAGES, max_tokens=12)
    completion = raw.parse()
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (8, 12)
    row = ledger_row(ledger, raw.headers["x-request-id"])
    assert (row["tokens_in"], row["tokens_out"], row["decision"], row["country"]) == (
        8, 12, "allow", "US")
    assert row["revenue_usd"] == (8 * 5.0 + 12 * 15.0) / 1e6  # the contract: one division


@pytest.mark.parametrize("include_usage", [False, True])
def test_us_client_stream_is_metered_exactly(stack: tuple[int, Path], include_usage: bool) -> None:
    port, ledger = stack
    options: Any = {"include_usage": True} if include_usage else openai.NOT_GIVEN
    raw = client(port, US_IP, "us-hobbyist-000002").chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MESSAGES, max_tokens=30, stream=True, stream_options=options)
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text) > 0
    usage_chunks = [c for c in chunks if c.usage is not None]
    if include_usage:
        assert [(u.usage.prompt_tokens, u.usage.completion_tokens) for u in usage_chunks
                if u.usage] == [(8, 30)]
    else:
        assert usage_chunks == []
    row = ledger_row(ledger, raw.headers["x-request-id"])
    assert (row["tokens_in"], row["tokens_out"], row["stream"], row["error"]) == (8, 30, 1, "")
    assert row["ttft_ms"] is not None and row["ttft_ms"] <= row["total_ms"]


def test_models_lists_the_scenario_models(stack: tuple[int, Path]) -> None:
    port, _ = stack
    ids = {m.id for m in client(port, US_IP, "us-startup-000001").models.list()}
    assert {"gpt-4o", "glm-4", "deepseek-chat"} <= ids


def test_sigterm_drains_in_flight_requests(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.sqlite"
    # Real-time upstream latency (~0.4 s to first token) so requests are in flight at SIGTERM.
    with upstreams_proc(time_scale=1.0) as base, gateway_proc(base, ledger) as (port, proc):
        us = client(port, US_IP, "us-startup-000003")
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(us.chat.completions.with_raw_response.create, model="gpt-4o",
                                   messages=MESSAGES, max_tokens=5) for _ in range(4)]
            _wait_inflight(port, 4)
            proc.send_signal(signal.SIGTERM)
            ids = [f.result().headers["x-request-id"] for f in futures]
        assert proc.wait(timeout=30) == 0
        err = proc.stderr.read() if proc.stderr else ""
        assert "shutting down" in err and "4 ledger rows" in err
    for request_id in ids:
        assert ledger_row(ledger, request_id)["status"] == 200


def _wait_inflight(port: int, n: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("regionblock_gateway_inflight ") and float(line.split()[1]) >= n:
                    return
        time.sleep(0.01)  # polling interval
    raise AssertionError(f"{n} requests never in flight")


@pytest.mark.parametrize("sync", ["off", "normal"])
def test_kill_9_under_load_loses_no_answered_request(tmp_path: Path, sync: str) -> None:
    """Every response a client fully received has its ledger row, even after SIGKILL mid-load
    (at the ledger's default sync level and at ``off``, which never fsyncs)."""
    ledger = tmp_path / "ledger.sqlite"
    with upstreams_proc() as base, gateway_proc(base, ledger, "--ledger-sync", sync) as (port, proc):
        received = asyncio.run(_load_then_kill(port, proc, clients=16, kill_after=300))
        assert proc.wait(timeout=10) == -signal.SIGKILL
    db = sqlite3.connect(ledger)
    try:
        recorded = {r[0] for r in db.execute("SELECT request_id FROM requests")}
    finally:
        db.close()
    assert len(received) >= 300
    assert received <= recorded, f"{len(received - recorded)} answered requests have no ledger row"


async def _load_then_kill(port: int, proc: subprocess.Popen[str], *, clients: int,
                          kill_after: int) -> set[str]:
    """Closed-loop clients (half streaming); SIGKILL the gateway once ``kill_after`` answers came."""
    received: set[str] = set()
    enough = asyncio.Event()
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    headers = {"Authorization": "Bearer sk-us-startup-000009", "X-Forwarded-For": US_IP}

    async def client_loop(session: aiohttp.ClientSession, i: int) -> None:
        body: dict[str, Any] = {"model": "gpt-4o", "messages": MESSAGES, "max_tokens": 8,
                                "stream": i % 2 == 1}
        while True:
            try:
                async with session.post(url, json=body, headers=headers) as r:
                    data = await r.read()  # the whole body, to its last chunk
                    if r.status == 200 and (not body["stream"] or data.endswith(b"data: [DONE]\n\n")):
                        received.add(r.headers["x-request-id"])
            except (TimeoutError, aiohttp.ClientError):
                return  # the gateway is gone
            if len(received) >= kill_after:
                enough.set()

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        tasks = [asyncio.create_task(client_loop(session, i)) for i in range(clients)]
        await asyncio.wait_for(enough.wait(), timeout=60)
        os.kill(proc.pid, signal.SIGKILL)
        await asyncio.gather(*tasks)
    return received


def test_key_store_serves_its_keys_and_refuses_claimed_org_ids(tmp_path: Path) -> None:
    secret = "sk-live-e2e-4d1f0c9b7a"
    keys = tmp_path / "keys.yaml"
    hashed = subprocess.run([sys.executable, "-m", "regionblock", "gateway", SCENARIO, "--hash-key",
                             secret], capture_output=True, text=True, check=True).stdout
    keys.write_text("keys:\n" + hashed.replace("- sha256", "  - sha256")
                    + "    org: us-enterprise-000003\n    home_region: US\n")
    ledger = tmp_path / "ledger.sqlite"
    with upstreams_proc() as base, gateway_proc(base, ledger, "--at", "2024-07-10", "--keys",
                                                str(keys), org_keys=False) as (port, _):
        sdk = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=secret, max_retries=0,
                     timeout=10, default_headers={"X-Forwarded-For": US_IP})
        raw = sdk.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES,
                                                            max_tokens=3)
        assert ledger_row(ledger, raw.headers["x-request-id"])["org"] == "us-enterprise-000003"
        claimed = client(port, CN_IP, "cn-enterprise-azure-000001")
        with pytest.raises(openai.AuthenticationError) as info:
            claimed.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=3)
        assert info.value.code == "invalid_api_key"
