"""``loadtest --repeat N``: N seeds back to back into one run set; paired simulations of the set;
``compare`` pools the load tests' verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from regionblock.cli import main
from scenarios.rundir import read_run, set_members

pytestmark = pytest.mark.e2e

SCENARIO = "openai-2024-cn-hk"
SETS = ("--set", "window.start=2024-06-22", "--set", "window.end=2024-07-24")


@pytest.mark.timeout(300)
def test_repeated_load_tests_form_a_set_that_compare_pools(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    main(["loadtest", SCENARIO, *SETS, "--duration", "8s", "--users", "60", "--rate", "30",
          "--time-scale", "40", "--repeat", "2", "--seed", "3", "--out", str(runs)])
    lt_set = Path(capsys.readouterr().out.strip().splitlines()[-1])
    members = set_members(lt_set)
    assert members is not None and len(members) == 2
    assert [read_run(m).summary["seed"] for m in members] == [3, 4]
    assert json.loads((lt_set / "set.json").read_text())["seeds"] == [3, 4]
    assert [p for p in runs.iterdir()] == [lt_set]            # nothing else, nothing half-written

    assert main(["simulate", SCENARIO, *SETS, "--sample-of", str(lt_set), "--replications", "4",
                 "--out", str(runs)]) == 0
    paired_set = Path(capsys.readouterr().out.splitlines()[0])
    paired = set_members(paired_set)
    assert paired is not None
    assert [read_run(p).meta["sample_of"]["run"] for p in paired] == [m.name for m in members]

    main(["compare", str(paired_set), str(lt_set), "--json"])
    pooled = json.loads(capsys.readouterr().out)
    assert pooled["reference"] == "paired" and pooled["loadtest"] == [m.name for m in members]
    alone = []
    for p, m in zip(paired, members, strict=True):
        main(["compare", str(p), str(m), "--json"])
        alone.append({v["figure"]: v for v in json.loads(capsys.readouterr().out)["verdicts"]})
    for v in pooled["verdicts"]:
        parts = [a[v["figure"]] for a in alone if v["figure"] in a]
        assert v["n"] == sum(x["n"] for x in parts)
        if len(parts) == 2 and v["n"]:
            w = [x["n"] / v["n"] for x in parts]
            pooled_d = sum(wi * x["difference"] for wi, x in zip(w, parts, strict=True))
            assert v["difference"] == pytest.approx(pooled_d)
