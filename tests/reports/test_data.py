"""Reading and aggregating timeseries: exact sums, means and bands against the builders' closed forms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reports.data import bands, block_start, blocked_regions, cube, load_runs, read_table
from scenarios.errors import RunDirError
from scenarios.rundir import band, read_timeseries, write_timeseries
from tests.reports import builders


def test_fast_reader_matches_the_csv_module(sim_run: Path) -> None:
    path = sim_run / "timeseries.csv"
    table, ref = read_table(path), read_timeseries(path)
    assert table.value.tolist() == ref["value"].tolist()
    assert [table.labels["provider"][c] for c in table.codes["provider"]] == ref["provider"].tolist()
    assert table.reps[table.rep_idx].tolist() == ref["replication"].tolist()
    assert [str(t) + "Z" for t in table.times[table.time_idx][:3]] == ref["time"][:3].tolist()


def test_quoted_fields_fall_back_to_the_csv_module(tmp_path: Path) -> None:
    path = tmp_path / "timeseries.csv"
    write_timeseries(path, [("2024-06-01T00:00:00Z", 0, "sim", "requests", "CN", "odd,name", "", "", 3)])
    table = read_table(path)
    assert table.labels["provider"] == ("odd,name",) and table.value.tolist() == [3.0]


def test_bad_header_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "timeseries.csv"
    path.write_text("time,value\n")
    with pytest.raises(RunDirError, match=r"timeseries.csv: header must be time,replication"):
        read_table(path)


def test_revenue_sums_over_dimensions_per_replication(sim_run: Path) -> None:
    table = read_table(sim_run / "timeseries.csv")
    c = cube(table, "revenue_usd", ("provider",))
    assert c is not None and c.data.shape == (3, builders.DAYS, 3)
    totals = c.series(("openai",)).sum(axis=1)
    assert totals.tolist() == [builders.incumbent_revenue(r) for r in range(3)]
    # day 0, replication 2: US 2020 + CN 1000 + HK 300
    assert c.series(("openai",))[2, 0] == 3320.0


def test_percentiles_are_averaged_not_summed(sim_run: Path) -> None:
    table = read_table(sim_run / "timeseries.csv")
    c = cube(table, "latency_ms_p50")  # after the block: openai direct 400+10r, relay 700, zhipu 600
    assert c is not None
    assert c.data[1, builders.BLOCK_DAY, 0] == pytest.approx((410 + 700 + 600) / 3)
    assert c.data[1, 0, 0] == 410.0


def test_missing_rows_are_zero_for_counts_and_nan_for_levels(sim_run: Path) -> None:
    table = read_table(sim_run / "timeseries.csv")
    util = cube(table, "utilisation", ("provider",))
    rej = cube(table, "rejected_429", ("provider",))
    assert util is not None and rej is not None
    assert np.isnan(util.series(("zhipu",))[0, 0]) and rej.series(("zhipu",))[0, 0] == 0.0


def test_bands_agree_with_summary_bands() -> None:
    per_rep = np.array([[1.0], [5.0], [2.0], [10.0]])
    b, ref = bands(per_rep), band(per_rep[:, 0])
    assert (b.mean[0], b.p5[0], b.p95[0]) == pytest.approx((ref["mean"], ref["p5"], ref["p95"]))


def test_policy_dates_and_blocked_regions_come_from_the_scenario(sim_run: Path) -> None:
    (run,) = load_runs([sim_run])
    assert block_start(run.scenario).isoformat() == "2024-07-09T00:00:00+00:00"  # type: ignore[union-attr]
    assert blocked_regions(run.scenario) == ["CN", "HK", "MO", "RU"]
