"""Agreement, end to end: a real system that differs from the model is told apart.

The mock upstreams and a ``regionblock gateway`` run as processes; the gateway enforces a policy
that is *not* the scenario's — its block stage reaches only half the organisations
(``--set policy.openai.stages[1].percent=50``). ``regionblock loadtest --host`` replays the
scenario as given against it, ``regionblock simulate --sample-of`` simulates the load test's own
organisations under the scenario as given, and ``regionblock compare`` must say *disagree* on the
block share of CN (exit 1): the load test sees about half the model's share.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from e2e_support import UPSTREAMS_PORTS, free_port, free_run, spawn_regionblock, wait_ok

from regionblock.cli import main
from scenarios.rundir import read_run
from scenarios.verdict import PAIRED_REPLICATIONS

pytestmark = pytest.mark.e2e

SCENARIO = "openai-2024-cn-hk"
# a short window holding the announcement (June 25) and half a month after the block (July 9)
OVERRIDES = ("--set", "window.start=2024-06-22", "--set", "window.end=2024-07-24")
HALF = ("--set", "policy.openai.stages[1].percent=50")
DURATION_S = 20.0
#: From now to the scenario epoch: time for the gateway, Locust and its users to start.
LEAD_S = 12.0


def _last_line(text: str) -> Path:
    return Path(text.strip().splitlines()[-1])


@pytest.mark.timeout(240)
def test_a_gateway_blocking_half_the_organisations_disagrees_on_the_block_share(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    epoch = time.time() + LEAD_S
    base = free_run(UPSTREAMS_PORTS)   # providers, the relay, then the WAN paths
    port = free_port()
    shard = tmp_path / "gateway.sqlite"
    upstreams = spawn_regionblock("upstreams", SCENARIO, *OVERRIDES, "--base-port", str(base),
                                  "--time-scale", "40")
    gateway = spawn_regionblock("gateway", SCENARIO, *OVERRIDES, *HALF, "--port", str(port),
                                "--upstream-base-port", str(base), "--trusted-proxy", "127.0.0.1/32",
                                "--compress", f"{DURATION_S:g}s@{epoch!r}", "--ledger", str(shard),
                                "--insecure-org-keys")
    try:
        wait_ok(f"http://127.0.0.1:{base}/healthz", upstreams)
        wait_ok(f"http://127.0.0.1:{port}/readyz", gateway)
        main(["loadtest", SCENARIO, *OVERRIDES, "--host", f"http://127.0.0.1:{port}",
              "--epoch", repr(epoch), "--duration", f"{DURATION_S:g}s", "--users", "300",
              "--rate", "100", "--ledger", str(shard), "--out", str(tmp_path / "runs")])
    finally:
        for proc in (gateway, upstreams):
            proc.kill()
            proc.wait()
    lt = _last_line(capsys.readouterr().out)
    assert json.loads((lt / "sample.json").read_text())["relay_available"] is False   # --host: none

    # the paired simulation's default replications: enough that the load test's rank among them
    # can show a disagreement (scenarios.verdict.rank_p)
    assert main(["simulate", SCENARIO, *OVERRIDES, "--sample-of", str(lt),
                 "--out", str(tmp_path / "runs")]) == 0
    paired = Path(capsys.readouterr().out.splitlines()[0])      # the run directory, then its table
    assert read_run(paired).meta["sample_of"]["run"] == lt.name
    assert read_run(paired).summary["replications"] == PAIRED_REPLICATIONS == 40

    code = main(["compare", str(paired), str(lt), "--json"])
    table = json.loads(capsys.readouterr().out)
    assert table["reference"] == "paired"
    cn = next(v for v in table["verdicts"] if v["figure"] == "block_share.CN")
    assert cn["n"] >= 100, cn
    # the model blocks every CN organisation that is not allow-listed or failed over; the gateway
    # only half of them: the load test's share is about half the simulation's
    assert 0.3 < cn["loadtest"] / cn["simulation"] < 0.7, cn
    assert cn["verdict"] == "disagree", cn
    # outside every one of the 40 paired replications by more than the margin: rank p = 2/41
    assert cn["rank_p"] == pytest.approx(2 / 41), cn
    assert code == 1
