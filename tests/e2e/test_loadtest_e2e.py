"""One brief, real load test: upstreams, relay, WAN paths, gateway and Locust as processes on loopback.

25 scenario days (around the 2024-07-09 block) are compressed onto 20 s at 70 req/s; the relay
is made attractive (``asc_circumvent``) so the circumvention path carries traffic. To stay brief
the run is *scaled*: every latency (mocks, relay, WAN paths) is divided by 10, so a CN request's
direct round trip is 20 ms median and the relay's extra delay 12 ms; the run says so.
"""

from __future__ import annotations

import csv
import datetime as dt
import sqlite3
import statistics
from pathlib import Path
from typing import Any

import pytest

from loadtests.events import read_events
from loadtests.run import loadtest
from scenarios.countries import expand_regions
from scenarios.loader import load
from scenarios.rundir import EXTRA_METRICS, SHARED_METRICS, read_run

OVERRIDES = ("window.start=2024-06-22", "window.end=2024-07-17",
             "behaviour.choice.asc_circumvent=6")
BLOCK = "2024-07-09T00:00:00Z"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    loaded = load("openai-2024-cn-hk", OVERRIDES)
    return loadtest(loaded, duration_s=20.0, users=40, rate=70.0, time_scale=10.0,
                    out=tmp_path_factory.mktemp("runs"), drain_s=60.0)


def ledger(run_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(run_dir / "ledger.sqlite")
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_the_run_passes_its_checks_and_reconciles_exactly(run: tuple[Path, int]) -> None:
    run_dir, code = run
    r = read_run(run_dir)
    checks = r.summary["checks"]
    assert code == 0, r.summary["failed_checks"]
    rec = checks["reconciliation"]
    assert rec["passed"] and rec["locust_requests"] == rec["ledger_rows"] > 1000
    # Locust's own Aggregated count is the ledger's rows: no TTFT pseudo-requests in it
    assert rec["locust_stats_requests"] == rec["locust_requests"] == rec["ledger_rows"]
    with (run_dir / "locust_stats.csv").open(newline="") as fh:
        stats = list(csv.DictReader(fh))
    assert {r["Type"] for r in stats} <= {"POST", ""}
    assert [int(r["Request Count"]) for r in stats if r["Name"] == "Aggregated"] == [
        rec["ledger_rows"]]
    with (run_dir / "locust_ttft.csv").open(newline="") as fh:
        ttft = {r["Name"]: int(r["Count"]) for r in csv.DictReader(fh)}
    streamed = sum(1 for r in read_events(run_dir / "events").requests if r.ttft_ms is not None)
    assert ttft["Aggregated"] == streamed > 100
    assert r.summary["loadtest"]["timing"] == "scaled" and r.meta["loadtest"]["timing"] == "scaled"
    assert checks["revenue"]["passed"] and checks["revenue"]["rows"] == rec["ledger_rows"]
    assert checks["tokens"]["passed"]
    for name in ("meta.json", "scenario.yaml", "timeseries.csv", "summary.json", "ledger.sqlite",
                 "locust_stats.csv", "locust_stats_history.csv", "locust_failures.csv",
                 "locust.html", "locust_ttft.csv"):
        assert (run_dir / name).is_file(), name


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_blocked_regions_are_all_blocked_and_supported_ones_never(run: tuple[Path, int]) -> None:
    run_dir, _ = run
    s = load("openai-2024-cn-hk", OVERRIDES).scenario
    blocked = sorted(expand_regions(("unsupported_mid_2024",)) & {r.code for r in s.regions})
    places = ",".join(f"'{c}'" for c in blocked)
    after = ledger(run_dir, f"""SELECT decision, COUNT(*) FROM requests WHERE provider = 'openai'
        AND path = 'direct' AND country IN ({places}) AND scenario_time >= '{BLOCK}'
        AND org NOT LIKE '%-enterprise-azure-%' GROUP BY decision""")
    assert dict(after).keys() == {"block"} and dict(after)["block"] > 0
    supported = ledger(run_dir, """SELECT decision, COUNT(*) FROM requests
        WHERE home_region IN ('US','SG','JP','DE') GROUP BY decision""")
    assert set(dict(supported)) <= {"allow"} and sum(dict(supported).values()) > 500
    summary = read_run(run_dir).summary["headline"]
    for region in ("US", "SG", "JP", "DE"):
        assert summary[f"block_rate.{region}"]["mean"] == 0.0


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_the_relay_path_is_slower(run: tuple[Path, int]) -> None:
    run_dir, _ = run
    total_ms = dict(ledger(run_dir, "SELECT request_id, total_ms FROM requests"))
    overhead: dict[str, list[float]] = {"direct": [], "relay": []}
    for r in read_events(run_dir / "events").requests:
        if r.decision in ("allow", "warn") and r.id in total_ms:
            overhead[r.path].append((r.done - r.sent) * 1000 - total_ms[r.id])
    assert len(overhead["relay"]) >= 5
    # Time outside the gateway: loopback for direct; the relay's hop and its extra delay
    # (lognormal median 120 ms, divided by the time scale 10) for relay.
    assert statistics.median(overhead["relay"]) > statistics.median(overhead["direct"]) + 6.0
    head = read_run(run_dir).summary["headline"]
    assert head["latency_ms.relay.p50.after"]["mean"] > 0


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_the_wan_path_adds_the_regions_round_trip(run: tuple[Path, int]) -> None:
    run_dir, _ = run
    total_ms = dict(ledger(run_dir, "SELECT request_id, total_ms FROM requests"))
    outside = [(r.done - r.sent) * 1000 - total_ms[r.id]
               for r in read_events(run_dir / "events").requests
               if r.region == "CN" and r.path == "direct" and r.id in total_ms]
    assert len(outside) >= 200
    # CN direct: lognormal median 200 ms / 10; the rest is loopback, Locust and the proxy hops
    assert 18.0 <= statistics.median(outside) <= 35.0


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_the_achieved_rate_follows_the_target_per_scenario_day(run: tuple[Path, int]) -> None:
    acc = read_run(run[0]).summary["checks"]["rate_accuracy"]
    assert acc["judged_days"] >= 10
    assert acc["passed"] and acc["worst_error"] <= 0.05
    assert abs(acc["planned_vs_expected"]) < 4 * acc["planned_poisson_sd"]


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_timeseries_is_in_the_shared_format(run: tuple[Path, int]) -> None:
    run_dir, _ = run
    with (run_dir / "timeseries.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["source"] for r in rows} == {"loadtest"} and {r["replication"] for r in rows} == {"0"}
    assert {r["metric"] for r in rows} <= set(SHARED_METRICS) | set(EXTRA_METRICS)
    times = sorted({r["time"] for r in rows})
    assert times[0] == "2024-06-22T00:00:00Z"
    assert all(dt.datetime.fromisoformat(t[:-1]).time() == dt.time(0) for t in times)
    requests = sum(float(r["value"]) for r in rows if r["metric"] == "requests")
    assert requests == read_run(run_dir).summary["checks"]["reconciliation"]["ledger_rows"]
    day0 = sum(float(r["value"]) for r in rows if r["metric"] == "orgs" and r["time"] == times[0])
    assert day0 == pytest.approx(sum(r.organisations for r in load("openai-2024-cn-hk").scenario.regions))
