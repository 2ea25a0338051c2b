"""The fast CSV block writes exactly the bytes ``write_timeseries`` writes for the reference rows."""

from __future__ import annotations

import dataclasses
import zlib
from pathlib import Path

import numpy as np
import pytest

from scenarios.rundir import COLUMNS, fmt_value, write_timeseries
from sim.metrics import COUNT, FLOW, _fmt, _value, bin_times, block, rows
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
    # uncompressed (a streamed file's block): the same bytes as they are
    assert block(small_setup.s, times, small_result, compressed=False) == text


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



def _fmt_reference(values: np.ndarray, rule: int) -> np.ndarray:
    """The previous ``_fmt`` (int64 → numpy str for integers, ``fmt_value`` per other value)."""
    v = np.asarray(values, dtype=float)
    whole = np.isfinite(v) & (v == np.trunc(v)) & (np.abs(v) < 1e15)
    out = np.empty(v.shape, dtype=object)
    out[whole] = v[whole].astype(np.int64).astype(str)
    odd = np.flatnonzero(~whole.ravel())
    rest = v.ravel()[odd].tolist()
    if rule == COUNT:
        text = [fmt_value(int(x)) for x in rest]
    elif rule == FLOW:
        text = [fmt_value(_value(x)) for x in rest]
    else:
        text = [fmt_value(round(x, rule)) for x in rest]
    out.reshape(-1)[odd] = np.array(text, dtype=object)
    return out


def _awkward(seed: int) -> np.ndarray:
    """Seeded values of every kind ``_fmt`` tells apart, shuffled into a (bins × columns) array."""
    rng = np.random.default_rng(seed)
    edge = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 0.0004, -0.0004, 0.0005, -0.0000004, 1e-300, -5e-324,
            9999999999.0, 1e10, -1e10, 1e10 + 0.4, 9999999999.9996, 99999.99999999, 1e15 - 1,
            1e15, -1e15, 1e15 + 0.5, 3e17, 2.5e20, 1e300, -1e300, np.nan, 123456.7890123,
            2.0000001, 0.1 + 0.2, 1e-7, 5e-7, -1.25e-7, 4.9999995, 0.0015, 2.675]
    parts = [np.array(edge), rng.integers(-10**6, 10**6, 400).astype(float), np.zeros(300),
             rng.lognormal(5, 3, 300), -rng.lognormal(0, 4, 300), rng.uniform(-1, 1, 300) * 1e-6,
             np.round(rng.lognormal(3, 2, 300), 3) + rng.choice([0.0, 1e-4, 5e-4, 1e-7], 300),
             rng.integers(-10**12, 10**12, 200).astype(float), rng.lognormal(30, 5, 200)]
    v = np.concatenate(parts)
    return rng.permutation(v).reshape(-1, 3) if v.size % 3 == 0 else rng.permutation(v)[None, :]


def test_fmt_is_the_reference_bit_for_bit() -> None:
    for seed in range(5):
        values = _awkward(seed)
        for rule in (FLOW, 3, 6, 1, 0):
            assert _fmt(values, rule).tolist() == _fmt_reference(values, rule).tolist(), (seed, rule)
        counts = np.trunc(np.where(np.isnan(values), 0.0, values))
        assert _fmt(counts, COUNT).tolist() == _fmt_reference(counts, COUNT).tolist()
        assert _fmt(values[:0], FLOW).shape == (0, values.shape[1])


def test_fmt_fails_on_infinity_as_the_reference() -> None:
    for rule in (FLOW, 3, COUNT):
        for v in (np.inf, -np.inf):
            values = np.array([[1.5, v, 0.0]])
            with pytest.raises(OverflowError):
                _fmt_reference(values, rule)
            with pytest.raises(OverflowError):
                _fmt(values, rule)
