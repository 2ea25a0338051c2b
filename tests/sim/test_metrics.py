"""The fast CSV block writes exactly the bytes ``write_timeseries`` writes for the reference rows."""

from __future__ import annotations

import dataclasses
import zlib
from pathlib import Path

import numpy as np

from scenarios.rundir import COLUMNS, write_timeseries
from sim.metrics import FLOW, _fmt, bin_times, block, rows
from sim.replication import ReplicationResult, Setup
from sim.run import write_blocks


def _reference(tmp_path: Path, setup: Setup, results: list[ReplicationResult]) -> bytes:
    times = bin_times(setup.s, setup.edges)
    path = tmp_path / "reference.csv"
    write_timeseries(path, (row for r in results for row in rows(setup.s, times, r)))
    return path.read_bytes()


def test_block_equals_the_reference_rows(small_setup: Setup, small_result: ReplicationResult,
                                         tmp_path: Path) -> None:
    times = bin_times(small_setup.s, small_setup.edges)
    text = zlib.decompress(block(small_setup.s, times, small_result))
    expected = _reference(tmp_path, small_setup, [small_result])
    header = (",".join(COLUMNS) + "\n").encode()
    assert header + text == expected
    assert text.count(b"\n") > 1000


def test_write_blocks_with_awkward_values(small_setup: Setup, small_result: ReplicationResult,
                                          tmp_path: Path) -> None:
    """Fractions that round to integers, huge integers, negatives and served-nothing latency."""
    flows = small_result.flows.copy()
    flows[0, 0, 0, 0, 0] = 2.0000001       # rounds to 2.0 → written "2"
    flows[1, 1, 0, 0, 0] = 3e15            # integral beyond 1e15 → an int
    flows[2, 2, 0, 0, 0] = -1.25e-7        # rounds to -0.0
    flows[3, 3, 0, 0, 0] = 123456.7890123  # ten significant digits
    latency = small_result.latency.copy()
    latency[4] = np.nan
    latency[5, ..., 0] = 1e16 + 0.5
    odd = dataclasses.replace(small_result, index=7, flows=flows, latency=latency,
                              utilisation=small_result.utilisation * 0.999999999)
    out = tmp_path / "blocks.csv"
    times = bin_times(small_setup.s, small_setup.edges)
    write_blocks(out, small_setup.s, times, [small_result, odd])
    assert out.read_bytes() == _reference(tmp_path, small_setup, [small_result, odd])


def test_fmt_matches_fmt_value_rules() -> None:
    values = np.array([[0.0, 1.0, -3.0, 0.1 + 0.2, 1e15, 2.5e20, np.nan]])
    assert _fmt(values, FLOW).tolist() == [["0", "1", "-3", "0.3", "1000000000000000",
                                            "250000000000000000000", "nan"]]
    assert _fmt(values[:, :4], 1).tolist() == [["0", "1", "-3", "0.3"]]

