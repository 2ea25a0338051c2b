"""Simulations side by side (``reports.charts.versus``) and the per-replication headline.csv it
pairs them by: t quantiles against the published tables, both intervals by hand, and a report
of real simulations whose every difference is recomputed here from their headline.csv files."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from regionblock.cli import main
from reports import fmt
from reports.build import build_report
from reports.charts.versus import _t_cdf, paired, t_quantile, welch
from scenarios.errors import RunDirError
from scenarios.rundir import HEADLINE_FILE, read_headline, read_run, write_headline

#: Student's t quantiles to six decimals (any statistics table): (p, degrees of freedom) → t.
T_TABLE = {(0.95, 1): 6.313752, (0.95, 2): 2.919986, (0.95, 3): 2.353363, (0.95, 4): 2.131847,
           (0.95, 5): 2.015048, (0.95, 9): 1.833113, (0.95, 19): 1.729133, (0.95, 30): 1.697261,
           (0.975, 3): 3.182446, (0.975, 19): 2.093024, (0.995, 3): 5.840909,
           (0.05, 7): -1.894579, (0.95, 1000): 1.646379, (0.95, 5000): 1.645158}


@pytest.mark.parametrize(("p", "df"), list(T_TABLE))
def test_t_quantiles_are_the_tables(p: float, df: int) -> None:
    assert t_quantile(p, df) == pytest.approx(T_TABLE[p, df], abs=1e-6)


@pytest.mark.parametrize("df", [3, 4, 7, 12, 50, 999])
@pytest.mark.parametrize("p", [0.6, 0.95, 0.999])
def test_the_quantile_inverts_the_exact_distribution_function(p: float, df: int) -> None:
    assert _t_cdf(t_quantile(p, df), df) == pytest.approx(p, abs=1e-12)


def test_the_distribution_function_of_small_degrees_of_freedom_in_closed_form() -> None:
    # 1: Cauchy; 2: 1/2 + t / (2 sqrt(2 + t²)); 3: 1/2 + (θ + sin θ cos θ)/π, θ = atan(t/√3)
    assert _t_cdf(1.0, 1) == pytest.approx(0.75, abs=1e-15)
    assert _t_cdf(1.5, 2) == pytest.approx(0.5 + 1.5 / (2 * math.sqrt(2 + 2.25)), abs=1e-15)
    theta = math.atan(2.0 / math.sqrt(3))
    assert _t_cdf(2.0, 3) == pytest.approx(0.5 + (theta + math.sin(theta) * math.cos(theta)) / math.pi,
                                           abs=1e-15)


def test_bad_degrees_of_freedom_are_refused() -> None:
    for df in (0, 2.5):
        with pytest.raises(ValueError, match="whole number"):
            t_quantile(0.95, df)  # type: ignore[arg-type]


def test_the_paired_interval_by_hand() -> None:
    # differences 1, 2, 1: mean 4/3, sd sqrt(1/3), half-width t(0.95, 2) · sd / sqrt(3)
    d, lo, hi = paired({0: 1.0, 1: 2.0, 2: 4.0}, {0: 2.0, 1: 4.0, 2: 5.0})  # type: ignore[misc]
    half = 2.919986 * math.sqrt(1 / 3) / math.sqrt(3)
    assert (d, lo, hi) == pytest.approx((4 / 3, 4 / 3 - half, 4 / 3 + half), abs=1e-6)
    # not the same replications, or fewer than two: no paired interval
    assert paired({0: 1.0, 1: 2.0}, {0: 1.0, 2: 2.0}) is None
    assert paired({0: 1.0}, {0: 3.0}) is None
    # the same values in every pair: the difference is exact
    assert paired({0: 1.0, 1: 5.0}, {0: 1.0, 1: 5.0}) == (0.0, 0.0, 0.0)


def test_the_welch_interval_by_hand() -> None:
    a = {"mean": 10.0, "sd": 2.0, "n": 5}
    b = {"mean": 13.0, "sd": 4.0, "n": 10}
    va, vb = 4 / 5, 16 / 10
    df = (va + vb) ** 2 / (va ** 2 / 4 + vb ** 2 / 9)   # 12.96...: rounded down to 12
    assert int(df) == 12
    half = 1.782288 * math.sqrt(va + vb)                 # t(0.95, 12)
    assert welch(a, b) == pytest.approx((3.0, 3.0 - half, 3.0 + half), abs=1e-6)
    assert welch({"mean": 1.0, "n": 5}, b) is None        # no sd: a summary.json of before
    assert welch({"mean": 1.0, "sd": 0.0, "n": 1}, b) is None


def test_headline_csv_round_trip_and_its_errors(tmp_path: Path) -> None:
    path = tmp_path / HEADLINE_FILE
    write_headline(path, [(0, {"b": 2.5, "a": 1.0}), (1, {"a": 3.0})])
    assert path.read_text() == "replication,figure,value\n0,a,1\n0,b,2.5\n1,a,3\n"
    assert read_headline(path) == {"a": {0: 1.0, 1: 3.0}, "b": {0: 2.5}}
    assert read_headline(tmp_path / "absent.csv") == {}
    for text, problem in [("replication,figure\n", "header must be replication,figure,value"),
                          ("replication,figure,value\n0,a\n", "line 2: 2 fields, every row must have 3"),
                          ("replication,figure,value\nx,a,1\n", "line 2: replication 'x' is not an integer"),
                          ("replication,figure,value\n0,a,one\n", "line 2: value 'one' is not a number"),
                          ("replication,figure,value\n0,a,1\n0,a,2\n", "line 3: a of replication 0 twice")]:
        path.write_text(text)
        with pytest.raises(RunDirError) as info:
            read_headline(path)
        assert str(info.value) == f"{path}: {problem}"


def _simulate(capsys: pytest.CaptureFixture[str], out: Path, scenario: str, *extra: str) -> Path:
    capsys.readouterr()
    assert main(["simulate", scenario, "--replications", "3", "--scale", "0.02", "--out", str(out),
                 *extra]) == 0
    return Path(capsys.readouterr().out.splitlines()[0])


def _table(md: str, title_start: str) -> dict[str, list[str]]:
    """The rows of the table whose title starts with ``title_start``, by their first cell."""
    block = md.split(f"**{title_start}", 1)[1].split("\n\n", 2)[1]
    rows = [[c.strip() for c in line.strip("|").split(" | ")] for line in block.splitlines()[2:]]
    return {r[0]: r for r in rows}


@pytest.fixture(scope="module")
def two_plans(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The default scenario and strict enforcement, both at seed 0, and the default at seed 1."""
    root = tmp_path_factory.mktemp("plans")
    paths = []
    for scenario, seed in (("openai-2024-cn-hk", "0"), ("strict-enforcement", "0"),
                           ("openai-2024-cn-hk", "1")):
        before = set(root.iterdir())
        assert main(["simulate", scenario, "--replications", "3", "--scale", "0.02", "--seed", seed,
                     "--out", str(root)]) == 0
        [made] = set(root.iterdir()) - before
        paths.append(made)
    return paths[0], paths[1], paths[2]


def test_each_difference_is_the_paired_one_of_the_runs_headline_csv(
        two_plans: tuple[Path, Path, Path], tmp_path: Path) -> None:
    default, strict, _ = two_plans
    md = (build_report([default, strict], tmp_path / "r").parent / "summary.md").read_text()
    rows = _table(md, "sim-2 (scale 0.02) (strict-enforcement) against sim (scale 0.02) "
                      "(openai-2024-cn-hk, the first simulation given)")
    a, b = read_headline(default / HEADLINE_FILE), read_headline(strict / HEADLINE_FILE)
    bands = read_run(default).summary["headline"]
    checked = 0
    for key, row in rows.items():
        assert row[-1] == "paired", row
        unit = bands[key]["unit"]
        d = [b[key][i] - a[key][i] for i in range(3)]
        mean = sum(d) / 3
        sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 2)
        half = 2.919986 * sd / math.sqrt(3)           # t(0.95, 2): three pairs

        def show(v: float, unit: str = unit) -> str:
            return fmt.signed(v, unit).replace(" %", " pt") if unit == "pct" else fmt.signed(v, unit)
        expected = f"{show(mean)} [{show(mean - half)}, {show(mean + half)}]"
        # (a bound within rounding of a printed digit may print one unit apart)
        if show(mean - half * (1 + 1e-6)) == show(mean - half * (1 - 1e-6)) and \
                show(mean + half * (1 + 1e-6)) == show(mean + half * (1 - 1e-6)):
            assert row[4] == expected, (key, row)
            checked += 1
        assert row[5] == ("yes" if mean - half > 0 or mean + half < 0 else "no"), (key, row)
        assert row[2] == fmt.value(bands[key]["mean"], unit)
    assert checked > 40
    # strict enforcement catches every relay: nobody is left circumventing, for certain
    assert rows["orgs_final.circumventing"][3] == "0"
    assert rows["orgs_final.circumventing"][5] == "yes"
    assert "sim-2 and sim paired by replication: one seed, so each pair shares its draws wherever " \
           "the scenarios agree (common random numbers)." in md
    # per-provider latency breakdowns are left to the headline tables
    assert not any(k.count(".") > 3 for k in rows if k.startswith(("latency_ms.", "ttft_ms.")))


def test_runs_of_two_seeds_are_paired_and_say_they_share_no_draws(
        two_plans: tuple[Path, Path, Path], tmp_path: Path) -> None:
    default, _, other_seed = two_plans
    md = (build_report([default, other_seed], tmp_path / "r").parent / "summary.md").read_text()
    assert ("sim-2 and sim paired by replication: seeds 1 and 0, so the pairs share no draws "
            "(the interval is as wide as unpaired runs'; give both runs one --seed).") in md


def test_without_headline_csv_the_difference_is_welchs_and_without_sd_there_is_none(
        two_plans: tuple[Path, Path, Path], tmp_path: Path) -> None:
    import json
    import shutil

    default, strict, _ = two_plans
    old = tmp_path / strict.name
    shutil.copytree(strict, old)
    (old / HEADLINE_FILE).unlink()       # a run of before headline.csv: Welch from the bands
    md = (build_report([default, old], tmp_path / "r").parent / "summary.md").read_text()
    rows = _table(md, "sim-2 (scale 0.02) (strict-enforcement) against")
    a, b = (read_run(p).summary["headline"]["incumbent_revenue_lost_pct"] for p in (default, old))
    assert welch(a, b) is not None
    assert rows["incumbent_revenue_lost_pct"][-1] == "Welch"
    summary = json.loads((old / "summary.json").read_text())
    for band in summary["headline"].values():
        band.pop("sd", None)             # and from before the bands' sd: no interval at all
    (old / "summary.json").write_text(json.dumps(summary))
    md = (build_report([default, old], tmp_path / "r").parent / "summary.md").read_text()
    rows = _table(md, "sim-2 (scale 0.02) (strict-enforcement) against")
    assert rows["incumbent_revenue_lost_pct"][4:] == ["—", "—", "—"]
    assert "a difference without an interval (—) is of a run with one replication" in md


def test_runs_at_two_scales_compare_relative_figures_only(
        two_plans: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    default, _, _ = two_plans
    half = _simulate(capsys, tmp_path / "runs", "strict-enforcement", "--scale", "0.01")
    md = (build_report([default, half], tmp_path / "r").parent / "summary.md").read_text()
    rows = _table(md, "sim-2 (scale 0.01) (strict-enforcement) against")
    units = {read_run(default).summary["headline"][k]["unit"] for k in rows}
    assert units and not units & {"usd", "orgs"}
    assert "incumbent_revenue_lost_pct" in rows and "incumbent_revenue_lost_usd" not in rows
    assert ("sim-2 and sim were simulated at different --scale (0.01 and 0.02): only their "
            "relative figures are compared") in md


def test_one_simulation_has_no_such_section(two_plans: tuple[Path, Path, Path], tmp_path: Path) -> None:
    default, _, _ = two_plans
    md = (build_report([default], tmp_path / "r").parent / "summary.md").read_text()
    assert "Simulations side by side" not in md
