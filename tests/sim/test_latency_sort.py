"""sim.latency's sorts: numpy's stable argsort, whatever the ties."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from sim.latency import (
    QUANTILES,
    SEARCH_CHUNK,
    LatencySamples,
    Pool,
    _count_below,
    _pick_cells,
    _pick_hours,
    _positions,
    _unique_columns,
    code_order,
    percentiles,
    pool,
    pooled_percentiles,
    pooled_percentiles_by,
    stable_argsort,
    weighted_percentiles,
)


@pytest.mark.parametrize("case", ["distinct", "ties", "signed zeros", "nan"])
def test_stable_argsort_is_the_stable_argsort(case: str) -> None:
    rng = np.random.default_rng(7)
    values = rng.lognormal(7.0, 0.5, 5000)
    if case == "ties":
        values = np.round(values, -2)          # many equal values
    elif case == "signed zeros":
        values[::7] = 0.0
        values[::11] = -0.0
    elif case == "nan":
        values[::13] = np.nan
    want = np.argsort(values, kind="stable")
    order, ranked = stable_argsort(values)
    assert np.array_equal(order, want)
    assert np.array_equal(ranked, values[want], equal_nan=True)


def _pick_cells_whole_array(group: np.ndarray, served: np.ndarray, n_groups: int, size: int,
                            rng: np.random.Generator) -> np.ndarray:
    """The definition: one search of every draw in the whole cumulative array."""
    order = np.argsort(group, kind="stable")
    cum = np.cumsum(served[order])
    totals = np.bincount(group, weights=served, minlength=n_groups)
    base = np.concatenate(([0.0], np.cumsum(totals)[:-1]))
    u = (base[:, None] + rng.random((n_groups, size)) * totals[:, None]).ravel()
    return order[np.minimum(np.searchsorted(cum, u, side="right"), order.size - 1)]


class _Draws:
    """A generator whose uniforms are given: the edges 0 and the largest float below 1 included,
    where a group's draws meet its neighbours' in the cumulative sums."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def random(self, shape: tuple[int, int]) -> np.ndarray:
        u = np.random.default_rng(self.seed).random(shape)
        u[:, 0] = 0.0
        u[:, 1] = np.nextafter(1.0, 0.0)
        return u


@pytest.mark.parametrize("case", ["counts", "huge and tiny", "zeros"])
def test_cells_picked_group_by_group_are_those_of_one_search(case: str) -> None:
    """``_pick_cells`` searches each group's own cells; the picks are exactly those of one search
    of the whole array — also where rounding of the cumulative sums puts a draw past its group
    (huge and tiny volumes side by side, draws at the edges) and where cells served nothing."""
    rng = np.random.default_rng(11)
    n_groups = 300
    group = rng.integers(0, n_groups, 20_000)
    group[:n_groups] = np.arange(n_groups)     # every group has a cell
    served = rng.integers(1, 5_000, group.size).astype(float)
    if case == "huge and tiny":
        served = np.where(rng.random(group.size) < 0.5, 1e15, 1e-3) * rng.random(group.size)
    elif case == "zeros":
        served[rng.random(group.size) < 0.3] = 0.0
        served[:n_groups] = 1.0
    for draws in (np.random.default_rng, _Draws):
        want = _pick_cells_whole_array(group, served, n_groups, 500, draws(3))  # type: ignore[arg-type]
        got = _pick_cells(group, served, n_groups, 500, draws(3))  # type: ignore[arg-type]
        assert np.array_equal(got, want)
    if case == "huge and tiny":
        # the edge draws do land outside their own group's cells: the case the fallback serves
        assert (group[got].reshape(n_groups, 500) != np.arange(n_groups)[:, None]).any()


def test_positions_are_each_codes_positions_in_order() -> None:
    codes = np.random.default_rng(5).integers(0, 7, 10_000)
    codes[codes == 3] = 4                       # a code that never occurs
    got = _positions(codes, 8)
    assert len(got) == 8
    for c in range(8):
        assert np.array_equal(got[c], np.flatnonzero(codes == c))


def _samples(rng: np.random.Generator, ties: bool) -> LatencySamples:
    groups, size = 40, 200
    latency = rng.lognormal(7.0, 0.5, (groups, size))
    if ties:
        latency = np.round(latency, -2)        # equal values across groups: their order matters
    return LatencySamples(provider=rng.integers(0, 3, groups), path=rng.integers(0, 2, groups),
                          bin=rng.integers(0, 5, groups),
                          weight=rng.integers(1, 10_000, groups).astype(float),
                          latency_ms=latency, ttft_ms=latency / 3, network_ms=latency / 5,
                          queue_ms=np.zeros_like(latency), generation_ms=latency / 2,
                          streamed=rng.random((groups, size)) < 0.6)


@pytest.mark.parametrize("ties", [False, True])
def test_a_pool_gives_each_subset_of_groups_the_percentiles_of_its_own_sort(ties: bool) -> None:
    """One sort per path serves every subset of its groups: the same figures, bit for bit, as
    sorting the subset's own samples."""
    rng = np.random.default_rng(3)
    lat = _samples(rng, ties)
    size = lat.latency_ms.shape[1]
    for path in (0, 1):
        for values, keep in ((lat.latency_ms, None), (lat.ttft_ms, lat.streamed)):
            pooled = pool(lat, path, None if keep is None else values, keep)
            for _ in range(10):
                take = rng.random(lat.weight.size) < 0.4
                mine = (lat.path == path) & take
                mask = np.broadcast_to(mine[:, None], values.shape)
                if keep is not None:
                    mask = mask & keep
                got = pooled_percentiles(pooled, take)
                if not mask.any():
                    assert got is None
                    continue
                rows = np.nonzero(mask)[0]
                weights = lat.weight[rows] / size
                want = weighted_percentiles(values[mask], weights)
                assert got is not None and got.tobytes() == want.tobytes()


@pytest.mark.parametrize("n", [1, 7, 256, 300, 70_000])
def test_code_order_is_the_stable_argsort(n: int) -> None:
    """Narrowed to 8 or 16 bits (or not at all), the codes sort into numpy's stable order."""
    codes = np.random.default_rng(n).integers(0, n, 20_000)
    assert np.array_equal(code_order(codes, n), np.argsort(codes, kind="stable"))


@pytest.mark.parametrize("shape", [(3, 5000), (3, 0), (2, 1)])
def test_unique_columns_are_numpys(shape: tuple[int, int]) -> None:
    keys = np.random.default_rng(2).integers(-3, 40, shape)
    want, inverse = np.unique(keys, axis=1, return_inverse=True)
    got, got_inverse = _unique_columns(keys)
    assert got.dtype == want.dtype and np.array_equal(got, want)
    assert np.array_equal(got_inverse, inverse.ravel())


def _pick_hours_one_search(weight: np.ndarray, region: np.ndarray, b: np.ndarray,
                           rng: np.random.Generator) -> np.ndarray:
    """The definition: one search of the whole array of rows, clipped to the sample's row."""
    hours = weight.shape[2]
    rows = weight.reshape(-1, hours)
    total = rows.sum(axis=1, keepdims=True)
    cum = np.divide(np.cumsum(rows, axis=1), total, out=np.ones_like(rows), where=total > 0)
    flat = (cum + np.arange(rows.shape[0])[:, None]).ravel()
    row = region * weight.shape[1] + b
    at = np.searchsorted(flat, row + rng.random(region.size), side="left")
    return np.clip(at - row * hours, 0, hours - 1)


class _EdgeDraws:
    """Uniforms with the edges 0 and the largest float below 1 among them."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def random(self, size: int) -> np.ndarray:
        u = np.random.default_rng(self.seed).random(size)
        u[::97] = 0.0
        u[1::89] = np.nextafter(1.0, 0.0)
        return u


@pytest.mark.parametrize("case", ["intensities", "empty hours and rows", "not ascending"])
@pytest.mark.parametrize("hours", [24, 1, 2, 7, 16, 31, 32])
def test_hours_searched_row_by_row_are_those_of_one_search(case: str, hours: int) -> None:
    rng = np.random.default_rng(13)
    weight = rng.lognormal(0.0, 1.0, (5, 30, hours))
    if case == "empty hours and rows":
        weight[rng.random(weight.shape) < 0.4] = 0.0
        weight[1, 3] = 0.0
        weight[0, 0, :5] = 0.0
    elif case == "not ascending":             # the whole array is searched, as defined
        weight[2, 7, hours // 2] = -5.0
    n = 3 * SEARCH_CHUNK + 17
    region, b = rng.integers(0, 5, n), rng.integers(0, 30, n)
    for draws in (np.random.default_rng, _EdgeDraws):
        want = _pick_hours_one_search(weight, region, b, draws(4))  # type: ignore[arg-type]
        got = _pick_hours(weight, region, b, draws(4))  # type: ignore[arg-type]
        assert np.array_equal(got, want)


def _count_below_masked(flat: np.ndarray, start: np.ndarray, size: int,
                        key: np.ndarray) -> np.ndarray:
    """The replaced ``_count_below``: rows end to end, each probe kept inside its row by a mask."""
    count = np.zeros(key.size, dtype=np.int64)
    step = 1 << (size.bit_length() - 1)
    while step:
        probe = count + step
        inside = probe <= size
        np.copyto(count, probe, where=inside & (flat[np.where(inside, start - 1 + probe, 0)] < key))
        step >>= 1
    return count


@pytest.mark.parametrize("size", [1, 2, 3, 7, 16, 24, 31, 32, 33])
def test_count_below_padded_rows_is_the_masked_search(size: int) -> None:
    rng = np.random.default_rng(21)
    table = np.sort(rng.random((40, size)), axis=1) + np.arange(40)[:, None]
    table[3, size // 2 :] = 4.0                      # ties, and ties with the key below
    n = 2 * SEARCH_CHUNK + 5
    row = rng.integers(0, 40, n)
    key = row + rng.random(n)
    key[::50] = row[::50] + 1.0                      # on an entry
    key[1::50] = row[1::50]                          # below the whole row
    want = _count_below_masked(table.ravel(), row * size, size, key)
    assert np.array_equal(_count_below(table, row, key), want)


def _pooled_percentiles_compressed(pooled: Pool, take: np.ndarray) -> np.ndarray | None:
    """The code :func:`pooled_percentiles` replaced: each array compressed by the mask."""
    picked = take[pooled.group]
    if not np.any(picked):
        return None
    return weighted_percentiles(np.compress(picked, pooled.values),
                                np.compress(picked, pooled.weight), presorted=True)


@pytest.mark.parametrize("ties", [False, True])
def test_pooled_percentiles_split_by_code_are_those_of_each_codes_mask(ties: bool) -> None:
    """Split by a code per group in one pass, each code's figures are bit for bit those of
    masking the pool with that code's groups (the code replaced), a code without samples None."""
    rng = np.random.default_rng(17)
    lat = _samples(rng, ties)
    for path in (0, 1):
        for values, keep in ((lat.latency_ms, None), (lat.ttft_ms, lat.streamed)):
            pooled = pool(lat, path, None if keep is None else values, keep)
            for n in (1, 2, 5, 9):
                # with more than one code the last one is left without groups
                code = rng.integers(0, max(n - 1, 1), lat.weight.size)
                got = pooled_percentiles_by(pooled, code, n)
                assert len(got) == n
                for c in range(n):
                    want = _pooled_percentiles_compressed(pooled, code == c)
                    one = pooled_percentiles(pooled, code == c)
                    if want is None:
                        assert got[c] is None and one is None
                    else:
                        assert got[c] is not None and got[c].tobytes() == want.tobytes()
                        assert one is not None and one.tobytes() == want.tobytes()


@pytest.mark.parametrize("n", [1, 2, 3, 7, 100, 999, 1000, 1001])
@pytest.mark.parametrize("case", ["continuous", "ties", "zeros", "nan", "inf", "no rows"])
def test_percentiles_are_numpys(n: int, case: str) -> None:
    """Interpolated from sorted rows, bit for bit np.percentile's (the code replaced)."""
    rng = np.random.default_rng(n)
    values = rng.lognormal(5.0, 1.0, (0 if case == "no rows" else 40, n))
    if case == "ties":
        values = np.round(values, -2)
    elif case == "zeros":
        values[rng.random(values.shape) < 0.7] = 0.0
    elif case in ("nan", "inf"):
        bad = np.nan if case == "nan" else np.inf
        values[rng.random(values.shape) < 0.01] = bad
        values[3] = bad
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = np.percentile(values, QUANTILES, axis=-1).T
        got = percentiles(values)
    assert got.shape == want.shape and got.tobytes() == want.tobytes()


def test_percentiles_of_empty_rows_fail_as_numpys() -> None:
    with pytest.raises(IndexError):
        np.percentile(np.zeros((3, 0)), QUANTILES, axis=-1)
    with pytest.raises(IndexError):
        percentiles(np.zeros((3, 0)))
