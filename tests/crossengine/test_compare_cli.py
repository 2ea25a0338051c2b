"""``regionblock compare``: the verdict table, exit 0 / 1, and one line with exit 2 for bad input.

The simulation is the synthetic run of tests/reports/builders.py (closed-form numbers: after the
block CN sends 500 requests a day to OpenAI, 440 blocked — a block share of 0.88 in every
replication); the load test's ledger is written here, so its block share is known exactly.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import pytest

from scenarios.errors import RunDirError
from scenarios.ledger import CREATE_STATEMENTS, INSERT_REQUEST, LedgerRow
from tests.cli.cli_helpers import run_cli
from tests.reports.builders import write_loadtest_run, write_sim_run

AFTER = "2024-07-20T12:00:00Z"
BASE = LedgerRow(request_id="", wall_time=0.0, scenario_time=AFTER, org="", home_region="CN",
                 country="CN", asn=None, asn_class="isp", provider="openai", model="gpt-4o",
                 decision="block", stage="block", status=403, tokens_in=10, tokens_out=0,
                 free_tokens_in=0, free_tokens_out=0, revenue_usd=0.0, credit_opened=0,
                 credit_left=None, upstream_ms=None, total_ms=3.0, ttft_ms=None, path="direct",
                 stream=0, error="")


def _ledger(path: Path, blocked_of_ten: int) -> None:
    """40 CN organisations, 10 requests each after the block, ``blocked_of_ten`` of them blocked;
    revenue split as the simulation's (OpenAI 2270, Zhipu 100, DeepSeek 40 a day)."""
    rows = []
    for o in range(40):
        for k in range(10):
            allowed = k >= blocked_of_ten
            rows.append(dataclasses.replace(
                BASE, request_id=f"r{o}-{k}", org=f"cn-startup-{o:06d}",
                decision="allow" if allowed else "block", status=200 if allowed else 403,
                revenue_usd=2270 / 40 / max(10 - blocked_of_ten, 1) if allowed else 0.0))
        rows.append(dataclasses.replace(BASE, request_id=f"z{o}", org=f"cn-startup-{o:06d}",
                                        provider="zhipu" if o < 20 else "deepseek", decision="allow",
                                        status=200, revenue_usd=(100 if o < 20 else 40) / 20))
    db = sqlite3.connect(path)
    for stmt in CREATE_STATEMENTS:
        db.execute(stmt)
    db.executemany(INSERT_REQUEST, [dataclasses.astuple(r) for r in rows])
    db.commit()
    db.close()


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, Path]:
    return write_sim_run(tmp_path), write_loadtest_run(tmp_path)


def test_agreeing_block_share_exits_0(capsys: pytest.CaptureFixture[str], runs: tuple[Path, Path]) -> None:
    sim, lt = runs
    _ledger(lt / "ledger.sqlite", blocked_of_ten=9)          # 0.90 against 0.88: within ±8.8 points
    res = run_cli(capsys, "compare", str(sim), str(lt), "--json")
    table = {v["figure"]: v for v in json.loads(res.out)["verdicts"]}
    cn = table["block_share.CN"]
    assert (cn["simulation"], cn["loadtest"], cn["n"]) == (pytest.approx(0.88), 0.9, 400)
    assert cn["loadtest_se"] == 0.0 and cn["verdict"] == "agree"
    assert "disagree" not in {v["verdict"] for v in table.values()}
    assert res.code == 0


def test_a_different_system_disagrees_and_exits_1(capsys: pytest.CaptureFixture[str],
                                                  runs: tuple[Path, Path]) -> None:
    sim, lt = runs
    _ledger(lt / "ledger.sqlite", blocked_of_ten=5)          # a gateway blocking half as often
    res = run_cli(capsys, "compare", str(sim), str(lt))
    line = next(x for x in res.out.splitlines() if x.startswith("block_share.CN"))
    assert "88.00 %" in line and "50.00 %" in line and line.endswith("disagree")
    assert res.code == 1


@pytest.mark.parametrize("case", ["not a run", "two simulations", "swapped", "other scenario", "no ledger",
                                  "another version", "paired with another"])
def test_bad_input_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], runs: tuple[Path, Path],
                                          tmp_path: Path, case: str) -> None:
    sim, lt = runs
    args = {"not a run": (tmp_path, lt), "two simulations": (sim, sim), "swapped": (lt, sim),
            "other scenario": (sim, lt), "no ledger": (sim, lt), "another version": (sim, lt),
            "paired with another": (sim, lt)}[case]
    if case in ("other scenario", "another version"):
        _ledger(lt / "ledger.sqlite", 9)
        meta = json.loads((lt / "meta.json").read_text())
        if case == "other scenario":
            meta["scenario"] = "strict-enforcement"
        else:   # the same scenario's name, resolved otherwise (a --set)
            meta["scenario"] = {"name": "openai-2024-cn-hk", "sha256": "1" * 64, "source": "x"}
        (lt / "meta.json").write_text(json.dumps(meta))
    if case == "paired with another":
        _ledger(lt / "ledger.sqlite", 9)
        _pair(sim, "20240101T000000Z-openai-2024-cn-hk-loadtest")
    res = run_cli(capsys, "compare", *map(str, args))
    assert res.code == 2 and res.out == ""
    assert len(res.err.strip().splitlines()) == 1, res.err
    expected = {"not a run": "not a run directory", "two simulations": "LOADTEST_RUN must be",
                "swapped": "SIM_RUN must be", "other scenario": "a run of scenario 'strict-enforcement'",
                "no ledger": "no ledger.sqlite", "another version": "another version of",
                "paired with another": "the paired simulation of load test 20240101T000000Z"}[case]
    assert expected in res.err


def test_the_report_carries_the_verdict_table(runs: tuple[Path, Path], tmp_path: Path) -> None:
    from reports.build import build_report

    sim, lt = runs
    _ledger(lt / "ledger.sqlite", blocked_of_ten=5)
    page = build_report([sim, lt], tmp_path / "report")
    verdicts = json.loads(page.with_name("summary.json").read_text())["verdicts"]["sim-vs-loadtest"]
    cn = next(v for v in verdicts if v["figure"] == "block_share.CN")
    assert (cn["loadtest"], cn["verdict"]) == (0.5, "disagree")
    md = page.with_name("summary.md").read_text()
    assert "verdict per figure" in md
    assert "| block_share.CN | 88.0 % | 50.0 % | -38.00 pp [-38.00, -38.00] | 400 | disagree |" in md
    assert "block_share.CN" in page.read_text(encoding="utf-8")


def _pair(sim: Path, lt_name: str) -> None:
    """Make ``sim`` the paired simulation of the load test named ``lt_name`` (its meta.json)."""
    meta = json.loads((sim / "meta.json").read_text())
    meta["sample_of"] = {"run": lt_name, "path": lt_name, "seed": 0, "organisations": 40,
                         "sample": "0" * 16, "stands_for": 40}
    (sim / "meta.json").write_text(json.dumps(meta))


def test_against_its_paired_simulation_a_share_is_judged_on_the_paired_band(
        capsys: pytest.CaptureFixture[str], runs: tuple[Path, Path]) -> None:
    """The synthetic simulation's CN block share is 0.88 in every replication: paired, the load
    test's 0.90 has no chance to vary by (the model predicts 0.88 for these very organisations)
    but lies within the ±8.8-point margin; its cluster error (0.0 here too) is not used."""
    sim, lt = runs
    _pair(sim, lt.name)
    _ledger(lt / "ledger.sqlite", blocked_of_ten=9)
    res = run_cli(capsys, "compare", str(sim), str(lt), "--json")
    out = json.loads(res.out)
    assert out["reference"] == "paired" and out["loadtest"] == lt.name
    cn = next(v for v in out["verdicts"] if v["figure"] == "block_share.CN")
    assert (cn["loadtest_se"], cn["ci90"], cn["verdict"]) == (0.0, [pytest.approx(0.02)] * 2, "agree")
    text = run_cli(capsys, "compare", str(sim), str(lt))
    assert text.out.splitlines()[0].startswith(f"reference: {sim.name}, the paired simulation of this")


def test_against_the_forecast_the_reference_line_says_how_to_pair(
        capsys: pytest.CaptureFixture[str], runs: tuple[Path, Path]) -> None:
    sim, lt = runs
    _ledger(lt / "ledger.sqlite", blocked_of_ten=9)
    first = run_cli(capsys, "compare", str(sim), str(lt)).out.splitlines()[0]
    assert "the forecast" in first and f"--sample-of {lt}" in first


def _edit_headline(run: Path, bands: dict[str, dict[str, object]]) -> None:
    summary = json.loads((run / "summary.json").read_text())
    summary["headline"].update(bands)
    (run / "summary.json").write_text(json.dumps(summary))


def test_the_relay_and_failover_paths_latencies_are_judged_too(capsys: pytest.CaptureFixture[str],
                                                              runs: tuple[Path, Path],
                                                              tmp_path: Path) -> None:
    """40 relayed requests (one organisation each) of 1,000 + 10·k ms, and 15 failed over: the
    relay's p50 is judged on its order statistics, the failover path's listed as too few."""
    from scenarios.figures import Z90
    from scenarios.rundir import band

    sim, lt = runs
    _ledger(lt / "ledger.sqlite", blocked_of_ten=9)
    relay = [dataclasses.replace(BASE, request_id=f"v{k}", org=f"cn-startup-{k:06d}", path="relay",
                                 decision="allow", status=200, total_ms=1000.0 + 10 * k)
             for k in range(40)]
    failover = [dataclasses.replace(BASE, request_id=f"f{k}", org=f"cn-startup-{k:06d}",
                                    provider="zhipu", path="failover", decision="allow", status=200,
                                    total_ms=5000.0 + k) for k in range(15)]
    db = sqlite3.connect(lt / "ledger.sqlite")
    db.executemany(INSERT_REQUEST, [dataclasses.astuple(r) for r in relay + failover])
    db.commit()
    db.close()
    _edit_headline(sim, {"latency_ms.relay.p50.after": band([1180.0, 1200.0, 1220.0], unit="ms"),
                         "latency_ms.failover.p50.after": band([5000.0, 5010.0, 5020.0], unit="ms")})
    _edit_headline(lt, {"latency_ms.relay.p50.after": band([1195.0], unit="ms", requests=40),
                        "latency_ms.failover.p50.after": band([5007.0], unit="ms", requests=15)})
    res = run_cli(capsys, "compare", str(sim), str(lt), "--json")
    table = {v["figure"]: v for v in json.loads(res.out)["verdicts"]}
    r = table["latency_ms.relay.p50"]
    # ranks 40·0.5 ∓ 1.645·sqrt(40·0.25), floored and ceiled: 14 and 26, i.e. 1,140 and 1,260 ms
    assert (r["loadtest"], r["n"]) == (1195.0, 40)
    assert r["loadtest_se"] == pytest.approx((1260.0 - 1140.0) / (2 * Z90))
    assert r["verdict"] == "agree"
    f = table["latency_ms.failover.p50"]
    assert (f["loadtest"], f["n"], f["loadtest_se"], f["ci90"]) == (5007.0, 15, None, [None, None])
    assert (f["verdict"], f["why"]) == ("inconclusive",
                                        "15 load-test requests: fewer than 30, too few to judge")
    text = run_cli(capsys, "compare", str(sim), str(lt)).out
    line = next(x for x in text.splitlines() if x.startswith("latency_ms.failover.p50"))
    assert "[—, —]" in line and "too few to judge" in line
    # the report's table says the same; its summary.json holds nulls, not NaN (JSON has none)
    from reports.build import build_report

    page = build_report([sim, lt], tmp_path / "report")
    md = page.with_name("summary.md").read_text()
    assert ("| latency_ms.failover.p50 | 5,010 ms | 5,007 ms | -3.00 ms [—, —] | 15 | inconclusive — "
            "15 load-test requests: fewer than 30, too few to judge |") in md
    verdicts = json.loads(page.with_name("summary.json").read_text())["verdicts"]["sim-vs-loadtest"]
    assert next(v for v in verdicts if v["figure"] == "latency_ms.failover.p50")["ci90"] == [None, None]


def test_organisation_shares_rest_on_the_users_of_the_blocked_regions(tmp_path: Path) -> None:
    """orgs_share.S is a share of the blocked regions' organisations: its n is the users standing
    for them (not every user of the run), its error that of Kish's effective number of them
    (weighted users: (Σw)²/Σw²)."""
    from scenarios.figures import _users_of
    from scenarios.rundir import read_run
    from scenarios.sample import Sample, SampledOrg

    lt = write_loadtest_run(tmp_path)
    assert _users_of(read_run(lt), ["CN", "HK", "MO"]) == (40, 40.0)   # no sample: the run's users
    orgs = ([SampledOrg(f"cn-startup-{k:06d}", "CN", "startup", 10.0, 1.0, 1.0, "gpt-4o") for k in range(30)]
            + [SampledOrg(f"hk-enterprise-{k:06d}", "HK", "enterprise", 40.0, 1.0, 1.0, "gpt-4o")
               for k in range(10)]
            + [SampledOrg(f"us-startup-{k:06d}", "US", "startup", 5.0, 1.0, 1.0, "gpt-4o")
               for k in range(20)])
    Sample(seed=0, orgs=tuple(orgs), scenario_sha256="0" * 64,
           wall_s_per_scenario_hour=0.02).write(lt / "sample.json")
    users, effective = _users_of(read_run(lt), ["CN", "HK", "MO"])
    assert users == 40
    assert effective == pytest.approx((30 * 10 + 10 * 40) ** 2 / (30 * 10**2 + 10 * 40**2))   # 25.79
    (lt / "sample.json").write_text("{}", encoding="utf-8")
    with pytest.raises(RunDirError, match=r"sample\.json: not a sample this version reads"):
        _users_of(read_run(lt), ["CN"])
