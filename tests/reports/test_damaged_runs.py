"""A damaged or foreign run directory given to ``report`` or ``compare``: one line naming the file
(and the field or line), exit 2, no traceback, found before any work, nothing left behind.

The runs are the synthetic ones of builders.py; the load test's ledger is written here from the
ledger contract (one blocked and one allowed request of each of 40 CN organisations).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scenarios.ledger import CREATE_STATEMENTS, INSERT_REQUEST
from scenarios.loader import load_text
from scenarios.sample import MARKET_FILE, SAMPLE_FILE, Sample, SampledOrg
from tests.cli.cli_helpers import Result, run_cli
from tests.ledger_rows import row_tuple
from tests.reports import builders

AFTER = "2024-07-20T12:00:00Z"
COMMANDS = ("report", "compare")


def write_ledger(path: Path, *, wal: bool = False) -> Path:
    """A ledger of the contract; ``wal``: in WAL mode, as the gateway writes it."""
    db = sqlite3.connect(path)
    if wal:
        db.execute("PRAGMA journal_mode=WAL")
    for stmt in CREATE_STATEMENTS:
        db.execute(stmt)
    rows = [row_tuple(request_id=f"r{o}-{k}", scenario_time=AFTER, org=f"cn-startup-{o:06d}",
                      home_region="CN", country="CN", decision=decision, status=status,
                      revenue_usd=revenue)
            for o in range(40)
            for k, (decision, status, revenue) in enumerate((("block", 403, 0.0),
                                                             ("allow", 200, 0.5)))]
    db.executemany(INSERT_REQUEST, rows)
    db.commit()
    db.close()
    return path


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, Path]:
    """A simulation and a load test (with its ledger) of one scenario, in their own folders."""
    sim = builders.write_sim_run(tmp_path / "sims")
    lt = builders.write_loadtest_run(tmp_path / "loadtests")
    write_ledger(lt / "ledger.sqlite")
    return sim, lt


def cli(capsys: pytest.CaptureFixture[str], command: str, sim: Path, lt: Path) -> Result:
    if command == "report":   # both runs: the damaged one is read whichever it is
        return run_cli(capsys, "report", str(sim), str(lt), "--no-paired",
                       "--out", str(sim.parent.parent / "report"))
    return run_cli(capsys, "compare", str(sim), str(lt))


def assert_one_line(res: Result, expected: str) -> None:
    """Exit 2, nothing on stdout, exactly ``expected`` as the one line on stderr."""
    assert "Traceback" not in res.err
    assert (res.code, res.out, res.err) == (2, "", expected + "\n")


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (None for a directory)."""
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes()
            for p in sorted(root.rglob("*"))}


def edit_json(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# ---------------------------------------------------------------- 1: summary.json


def _strings(x: Any) -> Any:
    """Every number in ``x`` replaced by a string that is not one."""
    if isinstance(x, dict):
        return {k: _strings(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_strings(v) for v in x]
    return "n/a" if isinstance(x, int | float) and not isinstance(x, bool) else x


@pytest.mark.parametrize("command", COMMANDS)
def test_a_summary_whose_numbers_are_strings(capsys: pytest.CaptureFixture[str], command: str,
                                             runs: tuple[Path, Path]) -> None:
    sim, lt = runs
    edit_json(sim / "summary.json", lambda s: s.update(headline=_strings(s["headline"])))
    first = next(iter(json.loads((sim / "summary.json").read_text())["headline"]))
    assert_one_line(cli(capsys, command, sim, lt),
                    f"{sim / 'summary.json'}: headline.{first}.mean: 'n/a' is not a number")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_load_test_summary_with_a_wrong_type(capsys: pytest.CaptureFixture[str], command: str,
                                               runs: tuple[Path, Path]) -> None:
    sim, lt = runs
    edit_json(lt / "summary.json", lambda s: s["scale"].update(users="forty"))
    assert_one_line(cli(capsys, command, sim, lt),
                    f"{lt / 'summary.json'}: scale.users: 'forty' is not an integer")


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("waterfall", {"baseline": 1}, "waterfall: {'baseline': 1} is not a list"),
    ("capacity_hotspots", [{"provider": "zhipu", "time": "yesterday"}],
     "capacity_hotspots[0].time: 'yesterday' is not an ISO-8601 instant"),
    ("headline", [], "headline: [] is not an object"),
    ("headline", {"latency_ms.relay.p99.after": {"mean": 1.0, "p5": 1.0, "p95": 1.0, "requests": "15"}},
     "headline.latency_ms.relay.p99.after.requests: '15' is not an integer"),
])
def test_summary_fields_the_charts_read(capsys: pytest.CaptureFixture[str], runs: tuple[Path, Path],
                                        field: str, value: object, expected: str) -> None:
    sim, lt = runs
    edit_json(sim / "summary.json", lambda s: s.update({field: value}))
    assert_one_line(cli(capsys, "report", sim, lt), f"{sim / 'summary.json'}: {expected}")


def test_meta_fields_the_report_reads(capsys: pytest.CaptureFixture[str],
                                      runs: tuple[Path, Path]) -> None:
    sim, lt = runs
    edit_json(sim / "meta.json", lambda m: m.update(seeds=7))
    assert_one_line(cli(capsys, "report", sim, lt), f"{sim / 'meta.json'}: seeds: 7 is not a list")


# ---------------------------------------------------------------- 2 and 3: timeseries.csv


@pytest.mark.parametrize("command", COMMANDS)
def test_a_timeseries_of_binary_garbage(capsys: pytest.CaptureFixture[str], command: str,
                                        runs: tuple[Path, Path]) -> None:
    sim, lt = runs
    (sim / "timeseries.csv").write_bytes(bytes(range(256)) * 16)
    assert_one_line(cli(capsys, command, sim, lt),
                    f"{sim / 'timeseries.csv'}: unreadable: not UTF-8 text (byte 0x80 at offset 128)")


def _set_field(path: Path, line: int, column: int, value: str) -> None:
    lines = path.read_text().splitlines(keepends=True)
    fields = lines[line - 1].rstrip("\n").split(",")
    fields[column] = value
    lines[line - 1] = ",".join(fields) + "\n"
    path.write_text("".join(lines))


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(("column", "value", "expected"), [
    (8, "abc", "line 7: value 'abc' is not a number"),
    (1, "first", "line 7: replication 'first' is not an integer"),
    (0, "yesterday", "line 7: time 'yesterday' is not an ISO-8601 instant"),
], ids=["value", "replication", "time"])
def test_a_field_that_is_not_of_its_kind(capsys: pytest.CaptureFixture[str], command: str,
                                         runs: tuple[Path, Path], column: int, value: str,
                                         expected: str) -> None:
    sim, lt = runs
    _set_field(lt / "timeseries.csv", 7, column, value)
    assert_one_line(cli(capsys, command, sim, lt), f"{lt / 'timeseries.csv'}: {expected}")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_row_with_a_field_too_many(capsys: pytest.CaptureFixture[str], command: str,
                                     runs: tuple[Path, Path]) -> None:
    sim, lt = runs
    lines = (sim / "timeseries.csv").read_text().splitlines(keepends=True)
    lines[2] = lines[2].rstrip("\n") + ",1\n"
    (sim / "timeseries.csv").write_text("".join(lines))
    assert_one_line(cli(capsys, command, sim, lt),
                    f"{sim / 'timeseries.csv'}: line 3: 10 fields, every row must have 9")


# ---------------------------------------------------------------- 3 and 4: ledger.sqlite


@pytest.mark.parametrize("command", COMMANDS)
def test_a_ledger_of_garbage_bytes(capsys: pytest.CaptureFixture[str], command: str,
                                   runs: tuple[Path, Path]) -> None:
    sim, lt = runs
    (lt / "ledger.sqlite").write_bytes(bytes(range(256)) * 64)
    assert_one_line(cli(capsys, command, sim, lt),
                    f"{lt / 'ledger.sqlite'}: not a gateway ledger (file is not a database)")
    assert sorted(p.name for p in lt.iterdir() if p.name.startswith("ledger")) == ["ledger.sqlite"]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_ledger_value_that_is_not_a_number(capsys: pytest.CaptureFixture[str], command: str,
                                             runs: tuple[Path, Path]) -> None:
    sim, lt = runs
    db = sqlite3.connect(lt / "ledger.sqlite")
    db.execute("UPDATE requests SET revenue_usd = 'lots' WHERE request_id = 'r3-1'")
    rowid = db.execute("SELECT rowid FROM requests WHERE request_id = 'r3-1'").fetchone()[0]
    db.commit()
    db.close()
    assert_one_line(cli(capsys, command, sim, lt),
                    f"{lt / 'ledger.sqlite'}: requests row {rowid}: revenue_usd 'lots' is not a "
                    "number")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_foreign_sqlite_file_as_ledger(capsys: pytest.CaptureFixture[str], command: str,
                                         runs: tuple[Path, Path]) -> None:
    sim, lt = runs
    (lt / "ledger.sqlite").unlink()
    db = sqlite3.connect(lt / "ledger.sqlite")
    db.execute("CREATE TABLE requests (request_id TEXT)")
    db.close()
    res = cli(capsys, command, sim, lt)
    assert res.code == 2 and "Traceback" not in res.err and len(res.err.splitlines()) == 1
    assert res.err.startswith(f"{lt / 'ledger.sqlite'}: not a gateway ledger (expected tables "
                              "requests, meta, credits, requests with columns request_id, ")


# ---------------------------------------------------------------- 6: nothing beside a ledger


def test_compare_leaves_nothing_beside_a_finished_wal_ledger(capsys: pytest.CaptureFixture[str],
                                                            runs: tuple[Path, Path]) -> None:
    sim, lt = runs
    (lt / "ledger.sqlite").unlink()
    write_ledger(lt / "ledger.sqlite", wal=True)      # closed: its -wal and -shm are gone
    before = tree(lt)
    assert run_cli(capsys, "compare", str(sim), str(lt)).code in (0, 1)
    assert tree(lt) == before


def test_checking_a_ledger_shard_leaves_nothing_beside_it(tmp_path: Path) -> None:
    from loadtests.ledger import check_shard

    shard = write_ledger(tmp_path / "gateway.sqlite", wal=True)
    check_shard(shard)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gateway.sqlite"]


def test_a_shard_with_a_value_of_the_wrong_kind_is_refused(tmp_path: Path) -> None:
    from loadtests.errors import RunOutputError
    from loadtests.ledger import check_shard

    shard = write_ledger(tmp_path / "gateway.sqlite")
    db = sqlite3.connect(shard)
    db.execute("UPDATE requests SET org = NULL WHERE rowid = 2")
    db.commit()
    db.close()
    with pytest.raises(RunOutputError) as info:
        check_shard(shard)
    assert str(info.value) == f"{shard}: requests row 2: org NULL is not text"


# ---------------------------------------------------------------- 5: market.json, 7: report LOADTEST


def with_sample(lt: Path) -> Path:
    """The load test's sample.json (one CN organisation) and no market.json (the closed form):
    a load test ``report`` runs a paired simulation of."""
    sha = load_text((lt / "scenario.yaml").read_text(), file="scenario.yaml").sha256
    Sample(seed=0, orgs=(SampledOrg("cn-startup-000001", "CN", "startup", 1.0, 10.0, 1.0,
                                    "gpt-4o"),),
           scenario_sha256=sha, wall_s_per_scenario_hour=1.0).write(lt / SAMPLE_FILE)
    return lt


def report_alone(capsys: pytest.CaptureFixture[str], lt: Path, *extra: str) -> Result:
    return run_cli(capsys, "report", str(lt), "--paired-replications", "1", *extra)


MARKETS = pytest.mark.parametrize(("market", "expected"), [
    ('{"start": "2024-06-01T00:00:00+00:00", "closed": null, "regions": []}',
     "regions: [] is not an object of region records"),
    ("{}", "start: missing"),
    ('{"start": "2024-06-01T00:00:00+00:00", "regions": {"CN": {"affected": 3, "choices": [7], '
     '"hazard": []}}}', "regions.CN.choices[0]: 7 is not [hour, provider]"),
    ('{"start": "2024-06-01T00:00:00+00:00", "closed": [0.01, "q", 1], "regions": {}}',
     "closed: [0.01, 'q', 1] is not null or [p, q, announcement hour]"),
], ids=["regions a list", "empty", "a choice not a pair", "closed not numbers"])


@MARKETS
def test_a_market_context_of_the_wrong_shape_cannot_be_paired(runs: tuple[Path, Path], market: str,
                                                              expected: str) -> None:
    from scenarios.errors import RunDirError
    from sim.run import Paired

    _, lt = runs
    with_sample(lt)
    (lt / MARKET_FILE).write_text(market)
    with pytest.raises(RunDirError) as info:
        Paired.of_run(lt, load_text((lt / "scenario.yaml").read_text(), file="scenario.yaml"))
    assert str(info.value) == f"{lt / MARKET_FILE}: unreadable market context: {expected}"


@MARKETS
def test_a_market_context_of_the_wrong_shape(capsys: pytest.CaptureFixture[str],
                                             runs: tuple[Path, Path], market: str,
                                             expected: str) -> None:
    _, lt = runs
    with_sample(lt)
    (lt / MARKET_FILE).write_text(market)
    before = tree(lt.parent)
    assert_one_line(report_alone(capsys, lt),
                    f"{lt / MARKET_FILE}: unreadable market context: {expected}")
    assert tree(lt.parent) == before


@pytest.mark.parametrize(("damage", "expected"), [
    (lambda lt: _set_field(lt / "timeseries.csv", 7, 8, "abc"),
     "{lt}/timeseries.csv: line 7: value 'abc' is not a number"),
    (lambda lt: (lt / "ledger.sqlite").write_bytes(b"\0" * 4096),
     "{lt}/ledger.sqlite: not a gateway ledger (file is not a database)"),
    (lambda lt: edit_json(lt / "summary.json", lambda s: s["loadtest"].update(time_scale="x")),
     "{lt}/summary.json: loadtest.time_scale: 'x' is not a number or null"),
    (lambda lt: (lt / "locust_ttft.csv").write_text("Type,Name,Count\nTTFT,all,many\n"),
     "{lt}/locust_ttft.csv: line 2: Count 'many' is not a number"),
], ids=["timeseries", "ledger", "summary", "locust_ttft"])
def test_a_load_test_alone_is_checked_before_its_paired_simulation(
        capsys: pytest.CaptureFixture[str], runs: tuple[Path, Path],
        damage: Callable[[Path], None], expected: str) -> None:
    _, lt = runs
    with_sample(lt)
    damage(lt)
    before = tree(lt.parent)
    assert_one_line(report_alone(capsys, lt), expected.format(lt=lt))
    assert tree(lt.parent) == before          # no paired simulation, no report


def test_a_default_destination_that_is_not_a_report_is_found_before_the_paired_simulation(
        capsys: pytest.CaptureFixture[str], runs: tuple[Path, Path]) -> None:
    _, lt = runs
    with_sample(lt)
    (lt / "report").mkdir()
    (lt / "report" / "notes.txt").write_text("keep me")
    before = tree(lt.parent)
    assert_one_line(report_alone(capsys, lt), f"report: {lt / 'report'}: exists and is not a "
                                              "report directory; give --out DIR")
    assert tree(lt.parent) == before


def test_a_report_that_fails_leaves_no_paired_simulation(
        capsys: pytest.CaptureFixture[str], runs: tuple[Path, Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import reports.build

    _, lt = runs
    with_sample(lt)
    before = tree(lt.parent)

    def full_disk(*args: object, **kwargs: object) -> Path:
        assert len(list(lt.parent.glob("*-paired"))) == 1    # it ran, and is then removed
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(reports.build, "build_report", full_disk)
    result = report_alone(capsys, lt)
    # the paired simulation's line, then the failure (and the paired run is gone again)
    assert (result.code, result.out) == (2, "")
    assert result.err.splitlines()[-1] == "report: cannot write: No space left on device"
    assert tree(lt.parent) == before


# ---------------------------------------------------------------- --out: one wording


@pytest.mark.parametrize("given", [True, False], ids=["--out", "default"])
def test_a_destination_that_is_a_file(capsys: pytest.CaptureFixture[str], runs: tuple[Path, Path],
                                      given: bool) -> None:
    sim, _ = runs
    dest = sim.parent / "taken" if given else sim / "report"
    dest.write_text("x")
    res = run_cli(capsys, "report", str(sim), *(["--out", str(dest)] if given else []))
    where = f"--out: {dest}" if given else f"report: {dest}"
    assert_one_line(res, f"{where}: exists and is not a directory" + ("" if given else
                                                                      "; give --out DIR"))


def test_an_out_that_is_not_a_report(capsys: pytest.CaptureFixture[str],
                                     runs: tuple[Path, Path]) -> None:
    sim, _ = runs
    (sim.parent / "mine").mkdir()
    (sim.parent / "mine" / "notes.txt").write_text("keep me")
    res = run_cli(capsys, "report", str(sim), "--out", str(sim.parent / "mine"))
    assert_one_line(res, f"--out: {sim.parent / 'mine'}: exists and is not a report directory "
                         "(choose an empty or new directory)")


def test_reading_a_finished_ledger_leaves_nothing_beside_it(tmp_path: Path) -> None:
    """The load test reads its gateway's ledger once the gateway has exited (loadtests.run)."""
    from loadtests.ledger import read_ledger

    ledger = write_ledger(tmp_path / "ledger.sqlite", wal=True)
    rows, _ = read_ledger(ledger)
    assert len(rows) == 80
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger.sqlite"]


def test_a_report_the_disk_refuses_is_one_line_naming_it_and_leaves_nothing(
        runs: tuple[Path, Path]) -> None:
    """A real refused write (the kernel's file-size limit: write() fails with EFBIG, as with
    ENOSPC on a full disk) while the charts are written: one line naming the report directory
    it was writing, exit 2, no traceback, and no staged report left beside the destination."""
    import re
    import resource
    import subprocess
    import sys

    sim, _ = runs
    dest = sim.parent / "report-out"
    before = tree(sim.parent)

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (4_000, 4_000))

    proc = subprocess.run([sys.executable, "-m", "regionblock", "report", str(sim), "--out", str(dest)],
                          capture_output=True, text=True, preexec_fn=limited, timeout=300)
    assert (proc.returncode, proc.stdout) == (2, ""), proc.stderr
    assert re.fullmatch(f"report: {re.escape(str(dest))}: cannot write: File too large\n",
                        proc.stderr), proc.stderr
    assert tree(sim.parent) == before
