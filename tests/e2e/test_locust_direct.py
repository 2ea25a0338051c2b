"""Locust driven directly (as from its web UI): the clock starts on test_start, -u is ignored.

The mock upstreams and a gateway run as processes; the gateway starts with its clock an hour past
the epoch (the whole window already over), so only Locust's ``PUT /admin/clock`` at test_start
can bring its scenario time back to the window's start. Locust runs headless with ``-u 3`` for a
plan of 12 users: the load shape must still run exactly 12.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from e2e_support import ROOT, UPSTREAMS_PORTS, free_port, free_run, spawn_regionblock, wait_ok

from loadtests.events import read_events

pytestmark = pytest.mark.e2e

SCENARIO = "openai-2024-cn-hk"
WINDOW = ("window.start=2024-06-22", "window.end=2024-07-17")
TOKEN = "t" * 32


@pytest.mark.timeout(150)
def test_the_clock_starts_on_test_start_and_the_plan_sets_the_users(tmp_path: Path) -> None:
    base = free_run(UPSTREAMS_PORTS)
    port = free_port()
    sets = [a for w in WINDOW for a in ("--set", w)]
    ledger = tmp_path / "ledger.sqlite"
    gateway_env = {**os.environ, "REGIONBLOCK_ADMIN_TOKEN": TOKEN}
    procs = [spawn_regionblock("upstreams", SCENARIO, *sets, "--base-port", str(base),
                               "--time-scale", "20", "--relay-target", f"http://127.0.0.1:{port}")]
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "regionblock", "gateway", SCENARIO, *sets, "--insecure-org-keys",
         "--port", str(port), "--upstream-base-port", str(base), "--trusted-proxy", "127.0.0.1/32",
         "--compress", f"10s@{time.time() - 3600!r}", "--ledger", str(ledger)],
        cwd=ROOT, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=gateway_env))
    try:
        wait_ok(f"http://127.0.0.1:{base}/healthz", procs[0])
        wait_ok(f"http://127.0.0.1:{port}/readyz", procs[1])
        env = {**os.environ, "PYTHONPATH": str(ROOT), "REGIONBLOCK_SCENARIO": SCENARIO,
               "REGIONBLOCK_SET": '["' + '","'.join(WINDOW) + '"]', "REGIONBLOCK_DURATION": "10s",
               "REGIONBLOCK_USERS": "12", "REGIONBLOCK_RATE": "20", "REGIONBLOCK_DRAIN_S": "60",
               "REGIONBLOCK_EVENTS_DIR": str(tmp_path / "events"),
               "REGIONBLOCK_ADMIN_TOKEN": TOKEN}
        started = time.time()
        locust = subprocess.run(
            [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "locustfile.py"),
             "--headless", "-u", "3", "-r", "3", "--host", f"http://127.0.0.1:{port}",
             "--csv", str(tmp_path / "locust"), "--only-summary", "--exit-code-on-error", "0"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert locust.returncode == 0, locust.stderr[-2000:]
        (tmp_path / "locust.log").write_text(locust.stderr)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
    events = read_events(tmp_path / "events")
    assert len(events.users) == 12  # the plan's users, not -u 3
    con = sqlite3.connect(ledger)
    try:
        times = [dt.datetime.fromisoformat(t.replace("Z", "+00:00")) for (t,) in
                 con.execute("SELECT scenario_time FROM requests ORDER BY wall_time")]
        rows = len(times)
    finally:
        con.close()
    # The gateway's clock followed Locust's test_start: the window replayed from its start.
    assert times[0] < dt.datetime(2024, 6, 24, tzinfo=dt.UTC)
    assert times[-1] > dt.datetime(2024, 7, 10, tzinfo=dt.UTC)
    first_intended = min(r.intended for r in events.requests)
    assert started < first_intended < started + 30
    with (tmp_path / "locust_stats.csv").open(newline="") as fh:
        aggregated = [int(r["Request Count"]) for r in csv.DictReader(fh) if r["Name"] == "Aggregated"]
    assert aggregated == [len(events.requests)] == [rows]
