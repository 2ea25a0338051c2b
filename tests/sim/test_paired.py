"""The paired simulation (``simulate --sample-of``): exactly a load test's organisations, in its
units, with its seed and credits, in the full market's context; replications vary only chance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from loadtests.plan import LoadConfig, build_plan
from regionblock.cli import main
from scenarios.errors import RunDirError
from scenarios.loader import load
from scenarios.market import MarketContext
from scenarios.rundir import meta, write_json
from scenarios.sample import MARKET_FILE, SAMPLE_FILE, Sample
from sim.replication import Setup, run_replication
from sim.run import Paired, seeds_for

SCENARIO = "openai-2024-cn-hk"
#: a short window holding the announcement and two weeks after the block, for speed
OVERRIDES = ("window.start=2024-06-22", "window.end=2024-07-24")


@pytest.fixture(scope="module")
def loaded():  # type: ignore[no-untyped-def]
    return load(SCENARIO, OVERRIDES)


@pytest.fixture(scope="module")
def sample(loaded) -> Sample:  # type: ignore[no-untyped-def]
    plan = build_plan(LoadConfig(scenario=SCENARIO, overrides=OVERRIDES, duration_s=30.0, epoch=0.0,
                                 users=120, rate=40.0, seed=7, relay_url="http://relay"), loaded)
    return plan.sample(loaded.sha256, {u.org.id: 0.25 for u in plan.users})


def test_the_sample_is_the_plans_users_in_its_units(loaded, sample: Sample) -> None:  # type: ignore[no-untyped-def]
    plan = build_plan(LoadConfig(scenario=SCENARIO, overrides=OVERRIDES, duration_s=30.0, epoch=0.0,
                                 users=120, rate=40.0, seed=7), loaded)
    assert [o.id for o in sample.orgs] == [u.org.id for u in plan.users]
    for o, u in zip(sample.orgs, plan.users, strict=True):
        assert o.requests_per_hour == pytest.approx(40.0 * u.share * plan.step_wall_s)
        assert (o.weight, o.credit_scale) == (u.weight, 0.25)
    # in those units the simulator's organisation sends what the user plans: rate x the curve's
    # integral over the window in expectation (Poisson: within 4 standard deviations)
    from sim.profile import Profile

    cum = Profile.of(loaded.scenario).cum[:, -1]
    regions = [r.code for r in loaded.scenario.regions]
    expected = sum(o.requests_per_hour * cum[regions.index(o.region)] for o in sample.orgs)
    planned = sum(len(plan.schedule(u)) for u in plan.users)
    assert abs(planned - expected) < 4 * np.sqrt(expected), (planned, expected)
    assert sum(o.weight for o in sample.orgs) == pytest.approx(plan.scale()["organisations"])
    assert sample.relay_available and sample.seed == 7


def test_sample_json_round_trips_and_bad_files_are_one_line(tmp_path: Path, sample: Sample) -> None:
    path = tmp_path / SAMPLE_FILE
    sample.write(path)
    assert Sample.read(path) == sample
    data = json.loads(path.read_text())
    for broken, needle in ((dict(data, orgs=[]), "orgs: empty"),
                           (dict(data, orgs=[["x", "CN", "startup", -1, 1, 1, "gpt-4o"]]), "orgs[0]: weight"),
                           (dict(data, orgs=[data["orgs"][0]] * 2), "appears twice"),
                           (dict(data, seed="7"), "seed: missing or of the wrong type"),
                           (dict(data, format_version=9), "not a sample this version reads")):
        path.write_text(json.dumps(broken))
        with pytest.raises(RunDirError, match=needle.replace("[", r"\[").replace("]", r"\]")) as err:
            Sample.read(path)
        assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_paired_replications_keep_the_organisations_and_their_choices(loaded, sample: Sample) -> None:  # type: ignore[no-untyped-def]
    market = MarketContext.closed_form(loaded.scenario)
    setup = Setup.of_sample(loaded.scenario, sample, market)
    assert setup.pop.ids == tuple(o.id for o in sample.orgs)
    assert np.array_equal(setup.pop.rate, [o.requests_per_hour for o in sample.orgs])
    seqs = seeds_for(0, 3)
    results = [run_replication(setup, i, seq) for i, seq in enumerate(seqs)]
    # organisations are counted by weight: every bin holds the organisations they stand for
    total = sum(o.weight for o in sample.orgs)
    for r in results:
        assert np.allclose(r.orgs.sum(axis=(1, 2, 3)), total)
    # the population is not resampled (the load test's rates are the replications' own) ...
    assert setup.for_replication(seqs[1]) is setup
    # ... and request-level chance does vary between replications
    assert len({float(r.flows.sum()) for r in results}) == 3
    # the same seed gives the same replication, byte for byte
    again = run_replication(setup, 1, seqs[1])
    assert np.array_equal(again.flows, results[1].flows) and np.array_equal(again.orgs, results[1].orgs)


def test_organisations_choose_with_the_load_tests_generators(loaded, sample: Sample) -> None:  # type: ignore[no-untyped-def]
    """Changing only the load test's seed in the sample changes the organisations' choices."""
    market = MarketContext.closed_form(loaded.scenario)
    seq = seeds_for(0, 1)[0]
    a = run_replication(Setup.of_sample(loaded.scenario, sample, market), 0, seq)
    other = Sample(seed=8, orgs=sample.orgs, scenario_sha256=sample.scenario_sha256,
                   wall_s_per_scenario_hour=sample.wall_s_per_scenario_hour)
    b = run_replication(Setup.of_sample(loaded.scenario, other, market), 0, seq)
    assert not np.array_equal(a.orgs, b.orgs)


def _loadtest_dir(tmp: Path, loaded, sample: Sample) -> Path:  # type: ignore[no-untyped-def]
    from scenarios.loader import resolved_yaml

    d = tmp / "20240101T000000Z-openai-2024-cn-hk-loadtest"
    d.mkdir()
    (d / "scenario.yaml").write_text(resolved_yaml(loaded.scenario))
    (d / "timeseries.csv").write_text("time,replication,source,metric,region,provider,path,state,value\n")
    write_json(d / "summary.json", {"kind": "loadtest"})
    import datetime as dt
    now = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    write_json(d / "meta.json", meta(kind="loadtest", scenario=loaded.scenario.name, sha256=loaded.sha256,
                                     source="x", seeds=[7], started=now, finished=now))
    sample.write(d / SAMPLE_FILE)
    MarketContext.closed_form(loaded.scenario).write(d / MARKET_FILE)
    return d


def test_simulate_sample_of_writes_a_paired_run(tmp_path: Path, loaded, sample: Sample,  # type: ignore[no-untyped-def]
                                                capsys: pytest.CaptureFixture[str]) -> None:
    lt = _loadtest_dir(tmp_path, loaded, sample)
    sets = [x for o in OVERRIDES for x in ("--set", o)]
    assert main(["simulate", SCENARIO, *sets, "--sample-of", str(lt), "--replications", "2",
                 "--out", str(tmp_path / "runs")]) == 0
    out = Path(capsys.readouterr().out.splitlines()[0])
    assert out.name.endswith("-paired")
    m = json.loads((out / "meta.json").read_text())
    assert m["kind"] == "simulate" and m["sample_of"]["run"] == lt.name
    assert m["sample_of"]["organisations"] == 120 and m["sample_of"]["sample"] == sample.digest()
    s = json.loads((out / "summary.json").read_text())
    assert s["bands"].startswith("5-95 % over replications of the load test's own organisations")
    assert s["checks"]["organisations_conserved"] is True


@pytest.mark.parametrize("case", ["another scenario", "not a load test", "no sample", "with --scale"])
def test_sample_of_bad_input_is_one_line_and_exit_2(tmp_path: Path, loaded, sample: Sample,  # type: ignore[no-untyped-def]
                                                    capsys: pytest.CaptureFixture[str], case: str) -> None:
    lt = _loadtest_dir(tmp_path, loaded, sample)
    sets = [x for o in OVERRIDES for x in ("--set", o)]
    args = ["simulate", SCENARIO, *sets, "--sample-of", str(lt), "--out", str(tmp_path / "runs")]
    if case == "another scenario":
        args = ["simulate", SCENARIO, "--sample-of", str(lt), "--out", str(tmp_path / "runs")]
        needle = "ran another scenario"
    elif case == "not a load test":
        m = json.loads((lt / "meta.json").read_text())
        write_json(lt / "meta.json", {**m, "kind": "simulate"})
        needle = "a simulate run, not a load test"
    elif case == "no sample":
        (lt / SAMPLE_FILE).unlink()
        needle = "no sample.json"
    else:
        args.insert(2, "--scale=0.5")
        needle = "--scale: not with --sample-of"
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_paired_of_run_reads_the_market_context(tmp_path: Path, loaded, sample: Sample) -> None:  # type: ignore[no-untyped-def]
    lt = _loadtest_dir(tmp_path, loaded, sample)
    paired = Paired.of_run(lt, loaded)
    assert paired.sample == sample and paired.market == MarketContext.closed_form(loaded.scenario)
    (lt / MARKET_FILE).write_text("{not json")
    with pytest.raises(RunDirError, match="unreadable market context"):
        Paired.of_run(lt, loaded)


def test_report_runs_the_paired_simulation_of_a_load_test_given_alone(
        tmp_path: Path, loaded, sample: Sample, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    lt = _loadtest_dir(tmp_path, loaded, sample)
    assert main(["report", str(lt), "--paired-replications", "2", "--out", str(tmp_path / "rep")]) == 0
    captured = capsys.readouterr()
    paired = [p for p in tmp_path.iterdir() if p.name.endswith("-paired")]
    assert len(paired) == 1 and f"paired simulation of {lt.name}: " in captured.err
    assert json.loads((paired[0] / "meta.json").read_text())["sample_of"]["run"] == lt.name
    charts = json.loads((tmp_path / "rep" / "charts.json").read_text())
    assert any(c["name"] == "paired-vs-loadtest" for c in charts), [c["name"] for c in charts]
    # given both, it runs nothing more
    assert main(["report", str(lt), str(paired[0]), "--out", str(tmp_path / "rep")]) == 0
    assert len([p for p in tmp_path.iterdir() if p.name.endswith("-paired")]) == 1


def test_a_load_test_user_asks_for_its_organisations_main_model_as_the_simulator_does(loaded) -> None:  # type: ignore[no-untyped-def]
    """One model per organisation in both engines (``scenarios.population.main_models``): the
    user's every request, the sample's record of it, and the simulated organisation agree."""
    from sim.population import build

    plan = build_plan(LoadConfig(scenario=SCENARIO, overrides=OVERRIDES, duration_s=30.0, epoch=0.0,
                                 users=120, rate=40.0, seed=7), loaded)
    pop = build(loaded.scenario, 7)
    names = [m.name for m in loaded.scenario.incumbent.models]
    index = {oid: i for i, oid in enumerate(pop.ids)}
    for u in plan.users:
        assert set(plan.schedule(u).models) <= {u.model}
        assert u.model == names[int(pop.model[index[u.org.id]])]
    sample = plan.sample(loaded.sha256, {})
    assert [o.model for o in sample.orgs] == [u.model for u in plan.users]
    assert len({u.model for u in plan.users}) > 1      # the mix holds over organisations
