"""Every command's numeric, port, host and path options: a bad value is one line naming the
option and what is wrong, exit 2, checked before any work starts, nothing written (the ``type=``
functions of regionblock.common and each command's checks of what needs the scenario).

In-process cases run with every piece of real work replaced by a tripwire (simulating, sweeping,
load-testing, serving): a value let through fails the test at once instead of starting a run or a
server. The cases the audit found as tracebacks also run as real processes. SIGTERM to a real load
test leaves nothing half-written, as Ctrl-C does.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import REPO, assert_one_line_error, run_cli

from loadtests.plan import MAX_USERS_PER_PROCESS
from regionblock.common import PROCESSES_PER_CPU, cpu_count

Capsys = pytest.CaptureFixture[str]
SCENARIO = "openai-2024-cn-hk"  # 55,150 organisations, 6 providers, window 2024-06-01..10-01
EMPTY_PATH = "must not be empty (a path; the current directory is .)"
CPUS = cpu_count()
MAX_PROCESSES = PROCESSES_PER_CPU * CPUS
PROCESSES_WHY = f"{PROCESSES_PER_CPU} per CPU ({CPUS} here): more only divide the CPUs thinner"
SEED_WHY = "2**64-1, the most an organisation's generator reads"
BIG = "99999999999999999999"  # 10**20 - 1: more than an int64, far more than any bound


class WorkStarted(AssertionError):
    """A bad value got past the checks: real work was about to start."""


@pytest.fixture(autouse=True)
def no_work(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Replace everything that would simulate, load-test or serve with a tripwire, and run in a
    directory of our own (an empty --out there would be the test's own tmp_path)."""
    import gateway.server
    import loadtests.run
    import regionblock.commands.loadtest as loadtest_command
    import regionblock.commands.upstreams as upstreams_command
    import sim.run
    import sim.sweep

    def tripwire(*_args: Any, **_kwargs: Any) -> Any:
        raise WorkStarted("work started with a value that should have been refused")

    for module, name in ((sim.run, "simulate"), (sim.sweep, "sweep"), (loadtests.run, "loadtest"),
                         (loadtest_command, "loadtest"), (loadtest_command, "market_context"),
                         (gateway.server, "run"), (upstreams_command, "_run_in_loop")):
        monkeypatch.setattr(module, name, tripwire)
    monkeypatch.chdir(tmp_path)


def _bad(*argv: str, line: str, name: str = "") -> Any:
    return pytest.param(list(argv), line, id=name or " ".join(a or "''" for a in argv))


CASES = [
    # -------------------------------------------------------------------- simulate (and sweep)
    _bad("simulate", SCENARIO, "--replications", BIG,
         line=f"--replications: must be at most 10,000 (got {BIG}): the 5 %/95 % bands are settled "
              "long before"),
    _bad("simulate", SCENARIO, "--replications", "1e20",
         line="--replications: must be a whole number (got '1e20')"),
    _bad("simulate", SCENARIO, "--replications", "9" * 5000, name="simulate --replications 9x5000",
         line=f"--replications: must be at most 10,000 (got {'9' * 40}…): the 5 %/95 % bands are "
              "settled long before"),
    _bad("simulate", SCENARIO, "--seed", "-1", line="--seed: must be at least 0 (got -1)"),
    _bad("simulate", SCENARIO, "--seed", str(2**64),
         line=f"--seed: must be at most 18,446,744,073,709,551,615 (got {2**64}): {SEED_WHY}"),
    _bad("simulate", SCENARIO, "--jobs", "1000",
         line=f"--jobs: must be at most {MAX_PROCESSES} (got 1000): {PROCESSES_WHY}"),
    _bad("simulate", SCENARIO, "--scale", "nan", line="--scale: must be a finite number (got nan)"),
    _bad("simulate", SCENARIO, "--out", "", line=f"--out: {EMPTY_PATH}"),
    _bad("simulate", SCENARIO, "--sample-of", "", line=f"--sample-of: {EMPTY_PATH}"),
    _bad("simulate", "",
         line="regionblock simulate: argument SCENARIO: must not be empty (a scenario file or a "
              "shipped scenario name)"),
    _bad("sweep", SCENARIO, "--set", "behaviour.relay.markup=0.1,0.2", "--dask", "",
         line="--dask: must not be empty (a Dask scheduler's address, e.g. tcp://10.0.0.5:8786)"),
    _bad("sweep", SCENARIO, "--set", "behaviour.relay.markup=0.1,0.2", "--replications", BIG,
         line=f"--replications: must be at most 10,000 (got {BIG}): the 5 %/95 % bands are settled "
              "long before"),
    # -------------------------------------------------------------------- upstreams
    _bad("upstreams", SCENARIO, "--seed", "-1", line="--seed: must be at least 0 (got -1)"),
    _bad("upstreams", SCENARIO, "--host", "garbage..host",
         line="--host: 'garbage..host' is neither an IP address nor a host name"),
    _bad("upstreams", SCENARIO, "--host", "",
         line="--host: must not be empty (an address to listen on, e.g. 127.0.0.1; every interface "
              "is 0.0.0.0 or ::)"),
    _bad("upstreams", SCENARIO, "--base-port", "0", line="--base-port: must be a TCP port, 1-65535 (got 0)"),
    _bad("upstreams", SCENARIO, "--time-scale", "inf",
         line="--time-scale: must be a finite number (got inf)"),
    _bad("upstreams", SCENARIO, "--chunk-ms", "nan", line="--chunk-ms: must be a finite number (got nan)"),
    _bad("upstreams", SCENARIO, "--relay-target", "http://127.0.0.1:99999",
         line="--relay-target: 'http://127.0.0.1:99999' has a bad port (1-65535)"),
    # -------------------------------------------------------------------- gateway
    _bad("gateway", SCENARIO, "--insecure-org-keys", "--host", "garbage..host",
         line="--host: 'garbage..host' is neither an IP address nor a host name"),
    _bad("gateway", SCENARIO, "--insecure-org-keys", "--host", "",
         line="--host: must not be empty (an address to listen on, e.g. 127.0.0.1; every interface "
              "is 0.0.0.0 or ::)"),
    _bad("gateway", SCENARIO, "--insecure-org-keys", "--upstream-base-port", "65535",
         line="--upstream-base-port: 65535 leaves no room for the scenario's 6 providers (P..P+5 "
              "must lie in 1-65535)"),
    _bad("gateway", SCENARIO, "--insecure-org-keys", "--unknown-country", "XX",
         line="--unknown-country: 'XX' is not an ISO 3166-1 alpha-2 country code"),
    _bad("gateway", SCENARIO, "--insecure-org-keys", "--compress", f"{BIG}d",
         line=f"--compress: '{BIG}d' is too long (at most 999,999,999 days, the longest a timedelta "
              "holds)"),
    _bad("report", "no-such-run", "--paired-replications", BIG,
         line=f"--paired-replications: must be at most 10,000 (got {BIG}): the 5 %/95 % bands are "
              "settled long before"),
    _bad("report", "no-such-run", "--paired-replications", "0",
         line="--paired-replications: must be at least 1 (got 0)"),
    _bad("gateway", SCENARIO, "--insecure-org-keys", "--max-inflight", "99999999999",
         line="--max-inflight: must be at most 1,000,000 (got 99999999999): each request in "
              "progress holds a client socket and an upstream one"),
    _bad("gateway", SCENARIO, "--insecure-org-keys", "--max-body", "2000000000",
         line="--max-body: must be at most 1,073,741,824 (got 2000000000): a body is held in "
              "memory whole (1 GiB)"),
    _bad("gateway", SCENARIO, "--insecure-org-keys", "--max-completion-tokens", "99999999",
         line="--max-completion-tokens: must be at most 10,000,000 (got 99999999): no model writes "
              "that many tokens"),
    _bad("gateway", SCENARIO, "--insecure-org-keys", "--retries", "11",
         line="--retries: must be at most 10 (got 11): each retry may wait out --upstream-timeout"),
    _bad("gateway", SCENARIO, "--insecure-org-keys", "--compress", "1000d",
         line="--compress: '1000d' is longer than the scenario window it compresses (122 days): at "
              "most the window itself, which replays it in real time"),
    _bad("gateway", SCENARIO, "--insecure-org-keys", "--compress", f"5m@{BIG}",
         line=f"--compress: EPOCH '{BIG}' is out of range (a unix time of the years 1 to 9999)"),
    _bad("gateway", SCENARIO, "--insecure-org-keys", "--port", "70000",
         line="--port: must be a TCP port, 0-65535 (got 70000)"),
    _bad("gateway", SCENARIO, "--insecure-org-keys", "--header-timeout", "inf",
         line="--header-timeout: must be a finite number (got inf)"),
    _bad("gateway", SCENARIO, "--insecure-org-keys", "--drain-timeout", "nan",
         line="--drain-timeout: must be a finite number (got nan)"),
    _bad("gateway", SCENARIO, "--insecure-org-keys", "--ledger", "", line=f"--ledger: {EMPTY_PATH}"),
    _bad("gateway", SCENARIO, "--insecure-org-keys", "--geoip-db", "", line=f"--geoip-db: {EMPTY_PATH}"),
    _bad("gateway", SCENARIO, "--hash-key", "", line="--hash-key: must not be empty (the API key to hash)"),
    _bad("gateway", SCENARIO, "--insecure-org-keys", "--upstream", "openai=http://127.0.0.1:0",
         line="--upstream openai: 'http://127.0.0.1:0' has a bad port"),
    # -------------------------------------------------------------------- loadtest
    _bad("loadtest", SCENARIO, "--duration", f"{BIG}d",
         line=f"--duration: '{BIG}d' is too long (at most 999,999,999 days, the longest a timedelta "
              "holds)"),
    _bad("loadtest", SCENARIO, "--duration", "200d",
         line="--duration: '200d' is longer than the scenario window it compresses (122 days): at "
              "most the window itself, which replays it in real time"),
    _bad("loadtest", SCENARIO, "--duration", "30d",
         line="--rate/--duration: 50 req/s over 2,592,000 s plans about 129,600,000 requests; a load "
              "test plans at most 10,000,000 (each one drawn up front)"),
    _bad("loadtest", SCENARIO, "--rate", "1e12",
         line="--rate/--duration: 1e+12 req/s over 60 s plans about 60,000,000,000,000 requests; a "
              "load test plans at most 10,000,000 (each one drawn up front)"),
    _bad("loadtest", SCENARIO, "--rate", "nan", line="--rate: must be a finite number (got nan)"),
    _bad("loadtest", SCENARIO, "--max-tokens", "-1", line="--max-tokens: must be at least 0 (got -1)"),
    _bad("loadtest", SCENARIO, "--users", "99999999",
         line="--users: 99,999,999 is more than the scenario's 55,150 organisations (each user plays "
              "one)"),
    _bad("loadtest", "mmc-validation", "--users", "2",
         line="--users: 2 is more than the scenario's 1 organisation (each user plays one)"),
    _bad("loadtest", SCENARIO, "--users", "0", line="--users: must be at least 1 (got 0)"),
    _bad("loadtest", SCENARIO, "--epoch", "nan",
         line="--epoch: 'nan' is not a unix time or ISO-8601 instant"),
    _bad("loadtest", SCENARIO, "--epoch", BIG,
         line=f"--epoch: '{BIG}' is out of range (a unix time of the years 1 to 9999)"),
    _bad("loadtest", SCENARIO, "--repeat", "1000",
         line="--repeat: must be at most 100 (got 1000): compare calls a series longer than that past "
              "any practical run"),
    _bad("loadtest", SCENARIO, "--seed", str(2**64 - 1), "--repeat", "2",
         line=f"--repeat: 2 runs from --seed {2**64 - 1} need seeds up to {2**64}, past the largest, "
              "2**64-1"),
    _bad("loadtest", SCENARIO, "--workers", "1000",
         line=f"--workers: must be at most {MAX_PROCESSES} (got 1000): {PROCESSES_WHY}"),
    _bad("loadtest", SCENARIO, "--host", "http://127.0.0.1:99999",
         line="--host: 'http://127.0.0.1:99999' has a bad port (1-65535)"),
    _bad("loadtest", SCENARIO, "--out", "", line=f"--out: {EMPTY_PATH}"),
    _bad("loadtest", SCENARIO, "--host", "http://127.0.0.1:18080", "--ledger", "",
         line=f"--ledger: {EMPTY_PATH}"),
    # -------------------------------------------------------------------- demo
    _bad("demo", "--out", "", line=f"--out: {EMPTY_PATH}"),
    _bad("demo", "--scenario", "",
         line="--scenario: must not be empty (a scenario file or a shipped scenario name)"),
    _bad("demo", "--replications", BIG,
         line=f"--replications: must be at most 10,000 (got {BIG}): the 5 %/95 % bands are settled "
              "long before"),
    _bad("demo", "--users", "99999999",
         line="--users: 99,999,999 is more than the scenario's 55,150 organisations (each user plays "
              "one)"),
    _bad("demo", "--duration", "200d",
         line="--duration: '200d' is longer than the scenario window it compresses (122 days): at "
              "most the window itself, which replays it in real time"),
    # -------------------------------------------------------------------- policy, scenario
    _bad("policy", "explain", SCENARIO, "--at", "2024-07-10", "--country", "CN", "--org", "",
         line="--org: must not be empty (an organisation id)"),
    _bad("policy", "explain", SCENARIO, "--at", "2024-07-10", "--ip", "8.8.8.8", "--geoip-db", "",
         line=f"--geoip-db: {EMPTY_PATH}"),
    _bad("scenario", "validate", "",
         line="regionblock scenario validate: argument PATH: must not be empty (a scenario file or a "
              "shipped scenario name)"),
    # -------------------------------------------------------------------- argparse's own checks
    _bad("simulate", SCENARIO, "--replications", "ten",
         line="--replications: must be a whole number (got 'ten')"),
    _bad("gateway", SCENARIO, "--ledger-sync", "sometimes",
         line="--ledger-sync: invalid choice: 'sometimes' (choose from 'off', 'normal', 'full')"),
]


@pytest.mark.parametrize(("argv", "line"), CASES)
def test_a_bad_value_is_one_line_before_any_work(capsys: Capsys, tmp_path: Path, argv: list[str],
                                                 line: str) -> None:
    result = run_cli(capsys, *argv)
    assert "Traceback" not in result.err
    assert_one_line_error(result, line)
    assert list(tmp_path.iterdir()) == [], "something was written"


def test_a_load_test_has_a_ceiling_of_users_per_locust_process(capsys: Capsys) -> None:
    users = MAX_USERS_PER_PROCESS + 1
    result = run_cli(capsys, "loadtest", SCENARIO, "--users", str(users))
    if CPUS > 1:
        expected = (f"--users: {users:,} is more than one Locust process starts within the readiness "
                    f"deadline ({MAX_USERS_PER_PROCESS:,}; --workers N runs N of them, up to {CPUS}, "
                    "one per CPU)")
    else:
        expected = (f"--users: {users:,} is more than one Locust process starts within the readiness "
                    f"deadline ({MAX_USERS_PER_PROCESS:,})")
    assert_one_line_error(result, expected)


@pytest.mark.skipif(CPUS < 2, reason="needs two CPUs for two Locust workers")
def test_workers_raise_the_ceiling_of_users_but_not_beyond_the_cpus(capsys: Capsys) -> None:
    users = MAX_USERS_PER_PROCESS * CPUS + 1
    result = run_cli(capsys, "loadtest", SCENARIO, "--users", str(users), "--workers",
                     str(MAX_PROCESSES))
    assert_one_line_error(result, f"--users: {users:,} is more than {CPUS} Locust processes start "
                                  f"within the readiness deadline ({MAX_USERS_PER_PROCESS:,} each)")
    with pytest.raises(WorkStarted):  # within the ceiling: the load test would start
        run_cli(capsys, "loadtest", SCENARIO, "--users", str(users - 1), "--workers", str(CPUS),
                "--duration", "10s")


def test_a_small_scenario_gets_every_organisation_by_default(capsys: Capsys,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """40 users by default, or all of a scenario with fewer (mmc-validation has one): before, the
    plan had one user and Locust spawned 39 idle ones."""
    import regionblock.commands.loadtest as loadtest_command

    asked: dict[str, Any] = {}

    def record(_loaded: Any, **kwargs: Any) -> Any:
        asked.update(kwargs)
        raise WorkStarted("recorded")

    monkeypatch.setattr(loadtest_command, "loadtest", record)
    monkeypatch.setattr(loadtest_command, "market_context", lambda *_a: None)
    with pytest.raises(WorkStarted):
        run_cli(capsys, "loadtest", "mmc-validation", "--duration", "5s")
    assert asked["users"] == 1


# ------------------------------------------------------------------------ real processes


def _regionblock(cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "regionblock", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize(("argv", "line"), [
    (["simulate", SCENARIO, "--replications", BIG],
     f"--replications: must be at most 10,000 (got {BIG}): the 5 %/95 % bands are settled long "
     "before"),
    (["loadtest", SCENARIO, "--duration", f"{BIG}d"],
     f"--duration: '{BIG}d' is too long (at most 999,999,999 days, the longest a timedelta holds)"),
    (["upstreams", SCENARIO, "--seed", "-1"], "--seed: must be at least 0 (got -1)"),
    (["gateway", SCENARIO, "--insecure-org-keys", "--host", "garbage..host"],
     "--host: 'garbage..host' is neither an IP address nor a host name"),
    (["loadtest", SCENARIO, "--max-tokens", "-1"], "--max-tokens: must be at least 0 (got -1)"),
    (["loadtest", SCENARIO, "--users", "99999999"],
     "--users: 99,999,999 is more than the scenario's 55,150 organisations (each user plays one)"),
    (["simulate", "mmc-validation", "--out", ""], f"--out: {EMPTY_PATH}"),
], ids=["simulate-replications", "loadtest-duration", "upstreams-seed", "gateway-host",
        "loadtest-max-tokens", "loadtest-users", "simulate-empty-out"])
def test_the_audits_cases_in_a_real_process(tmp_path: Path, argv: list[str], line: str) -> None:
    done = _regionblock(tmp_path, *argv)
    assert "Traceback" not in done.stderr
    assert (done.returncode, done.stdout, done.stderr) == (2, "", line + "\n")
    assert list(tmp_path.iterdir()) == []


class _Lines:
    """A child's stderr, line by line, read on a thread (a line is the event waited for)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        assert proc.stderr is not None
        stream = proc.stderr

        def pump() -> None:
            for line in stream:
                self._queue.put(line)
            self._queue.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def wait_for(self, prefix: str, timeout_s: float) -> None:
        while True:
            line = self._queue.get(timeout=timeout_s)
            if line is None:
                raise AssertionError(f"ended before {prefix!r}:\n{''.join(self.seen)}")
            self.seen.append(line)
            if line.startswith(prefix):
                return

    def rest(self) -> str:
        while (line := self._queue.get(timeout=60)) is not None:
            self.seen.append(line)
        return "".join(self.seen)


def _start_loadtest(out: Path, *argv: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "regionblock", "loadtest", *argv,
                             "--duration", "5s", "--time-scale", "40", "--out", str(out)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _staged(out: Path) -> list[Path]:
    return sorted(out.glob(".*.partial-*")) if out.is_dir() else []


def _processes_mentioning(path: Path) -> list[str]:
    """Command lines of the processes still running that name ``path`` (a run's children do)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(path) in cmdline:
            found.append(cmdline)
    return found


def _wait_for_file(proc: subprocess.Popen[str], find: Any, timeout_s: float) -> Path:
    """The first path ``find()`` returns, waiting on the process meanwhile (it must not end)."""
    for _ in range(int(timeout_s / 0.01)):
        found = find()
        if found is not None:
            return Path(found)
        try:
            proc.wait(timeout=0.01)
        except subprocess.TimeoutExpired:
            continue
        raise AssertionError(f"the load test ended first (status {proc.returncode})")
    raise AssertionError("the file never appeared")


@pytest.mark.timeout(300)
def test_sigterm_while_the_plan_is_drawn_leaves_nothing(tmp_path: Path) -> None:
    """SIGTERM once the run directory is staged, while the plan of 8,000 users is drawn and before
    any service starts: there SIGTERM was still the default action, which left the staged
    ``.partial`` directory behind. Now it unwinds as Ctrl-C does."""
    out = tmp_path / "runs"
    proc = _start_loadtest(out, SCENARIO, "--users", str(MAX_USERS_PER_PROCESS))
    lines = _Lines(proc)
    try:
        _wait_for_file(proc, lambda: next((d / "scenario.yaml" for d in _staged(out)
                                           if (d / "scenario.yaml").is_file()), None), 240)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        err = lines.rest()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "load test plan:" not in err, "the signal came after the services started"
    assert list(tmp_path.iterdir()) == [], "the run, or the --out directory it made, was left"
    assert (proc.returncode, err.splitlines()[-1:]) == (143, ["terminated"]), err
    assert "Traceback" not in err


@pytest.mark.timeout(300)
def test_sigterm_while_the_services_run_leaves_nothing(tmp_path: Path) -> None:
    """SIGTERM once the plan is printed, as Locust is being started: every child is stopped (one
    started while the signal arrived, too: it was left running, and wrote its CSV files into a
    staged directory that had just been removed) and the staged run directory removed."""
    out = tmp_path / "runs"
    proc = _start_loadtest(out, "mmc-validation")
    lines = _Lines(proc)
    try:
        lines.wait_for("load test plan:", 240)
        staged = _staged(out)
        assert len(staged) == 1 and (staged[0] / "logs").is_dir()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        err = lines.rest()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert list(tmp_path.iterdir()) == [], "the run, or the --out directory it made, was left"
    assert _processes_mentioning(out) == [], "a child of the load test is still running"
    assert (proc.returncode, err.splitlines()[-1:]) == (143, ["terminated"]), err
    assert "Traceback" not in err


def test_replications_default_to_10_and_to_40_for_a_paired_simulation(tmp_path: Path) -> None:
    """A paired simulation runs the fewest replications whose ranks can show a disagreement, plus
    one (``scenarios.verdict.PAIRED_REPLICATIONS``); any other simulation or sweep 10; an explicit
    --replications wins."""
    from regionblock.cli import build_parser
    from regionblock.commands.simulate import check_run_options
    from scenarios.verdict import PAIRED_REPLICATIONS

    def resolved(*argv: str) -> int:
        args = build_parser().parse_args([*argv, "--out", str(tmp_path)])
        check_run_options(args)
        return int(args.replications)

    assert resolved("simulate", "openai-2024-cn-hk") == 10
    assert resolved("simulate", "openai-2024-cn-hk", "--sample-of", "x") == PAIRED_REPLICATIONS == 40
    assert resolved("simulate", "openai-2024-cn-hk", "--sample-of", "x", "--replications", "7") == 7
    assert resolved("sweep", "openai-2024-cn-hk", "--set", "behaviour.relay.markup=0.1,0.2") == 10
