"""Latency distributions from request-level samples.

For every (provider, path, bin) with served traffic, ``SAMPLE`` requests are drawn the way real
ones arrive: a region and segment in proportion to the served requests, an hour of the bin by the
region's diurnal pattern, then per request:

    latency = network RTT of the path (+ the relay's extra hop) + queueing wait
              + time to first token + output tokens / throughput (+ injected spikes and stalls)

The wait comes from the provider's M/M/c/K state in that hour (:mod:`sim.capacity`): zero when a
server is free, else a Gamma-distributed time to clear the requests ahead. p50/p95/p99 of the
sample are reported per bin; ``ttft_ms_*`` are the same requests' time to first token.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scenarios.distributions import sample
from scenarios.schema import Scenario
from sim.capacity import Capacity, Hours
from sim.queueing import wait_law

#: Requests sampled per (provider, path, bin): p99 rests on the 10 slowest of them.
SAMPLE = 1000
QUANTILES = (50.0, 95.0, 99.0)
#: Samples searched at a time by :func:`_count_below` (its arrays stay in cache).
SEARCH_CHUNK = 1 << 15


@dataclass(frozen=True, slots=True)
class LatencySamples:
    """Group g = (provider, path, bin) with ``weight`` served requests; ``SAMPLE`` samples each."""

    provider: np.ndarray
    path: np.ndarray
    bin: np.ndarray
    weight: np.ndarray
    latency_ms: np.ndarray    # (groups, SAMPLE)
    ttft_ms: np.ndarray       # (groups, SAMPLE): time to first token as the client sees it
    network_ms: np.ndarray    # (groups, SAMPLE): round trip of the path (+ the relay's hop)
    queue_ms: np.ndarray      # (groups, SAMPLE): waiting for a server at the provider
    generation_ms: np.ndarray  # (groups, SAMPLE): output tokens at the provider's throughput
    streamed: np.ndarray      # (groups, SAMPLE) bool: the request streamed its answer


def sample_latency(s: Scenario, *, provider: np.ndarray, path: np.ndarray, bins: np.ndarray,
                   region: np.ndarray, segment: np.ndarray, served: np.ndarray, relay_path: int,
                   cap: Capacity, rng: np.random.Generator, size: int = SAMPLE) -> LatencySamples:
    """Sample every (provider, path, bin) group of the served cells given as parallel arrays."""
    live = served > 0
    groups, inverse = _unique_columns(np.stack([provider[live], path[live], bins[live]]))
    weight = np.bincount(inverse, weights=served[live].astype(float))
    pick = _pick_cells(inverse, served[live].astype(float), groups.shape[1], size, rng)
    cell_region = region[live][pick]
    cell_segment = segment[live][pick]
    k, j, b = np.repeat(groups, size, axis=1)     # each group's keys for its samples
    hour = _pick_hours(cap.hour_weight, cell_region, b, rng)
    parts = _compose(s, k, j == relay_path, b, hour, cell_region, cell_segment, cap, rng)
    share = np.array([g.stream_share for g in s.segments])
    streamed = rng.random(cell_segment.size) < share[cell_segment]
    shape = (groups.shape[1], size)
    network, queue, first, gen = (x.reshape(shape) for x in parts)
    return LatencySamples(provider=groups[0], path=groups[1], bin=groups[2], weight=weight,
                          latency_ms=first + gen, ttft_ms=first, network_ms=network,
                          queue_ms=queue, generation_ms=gen, streamed=streamed.reshape(shape))


def _unique_columns(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(keys, axis=1, return_inverse=True)`` of integer rows: each column as one
    integer in the columns' lexicographic order, whose 1-d unique is many times faster."""
    if keys.shape[1] == 0:
        return keys, np.zeros(0, dtype=np.intp)
    low = keys.min(axis=1)
    dims = tuple((keys.max(axis=1) - low + 1).tolist())
    codes, inverse = np.unique(np.ravel_multi_index(tuple(keys - low[:, None]), dims),
                               return_inverse=True)
    columns = np.stack(np.unravel_index(codes, dims)).astype(keys.dtype) + low[:, None]
    return columns, inverse


def _pick_cells(group: np.ndarray, served: np.ndarray, n_groups: int, size: int,
                rng: np.random.Generator) -> np.ndarray:
    """For each group, ``size`` cell indices drawn with probability ∝ served (inverse CDF)."""
    order = code_order(group, n_groups)
    cum = np.cumsum(served[order])
    totals = np.bincount(group, weights=served, minlength=n_groups)
    base = np.concatenate(([0.0], np.cumsum(totals)[:-1]))
    u = base[:, None] + rng.random((n_groups, size)) * totals[:, None]
    # np.searchsorted(cum, u, side="right") group by group within the group's own cells (a few
    # hundred each: in cache, where a search of the whole array misses it for every sample);
    # wherever rounding puts a draw outside its group's range, the whole array is searched
    starts, ends = _bounds(group, n_groups)
    idx = np.empty((n_groups, size), dtype=np.int64)
    for g, (a, b) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        idx[g] = a + np.searchsorted(cum[a:b], u[g], side="right")
    lo_ok = (starts[:, None] == 0) | (cum[np.maximum(starts - 1, 0)][:, None] <= u)
    hi_ok = idx < ends[:, None]
    stray = ~(lo_ok & (hi_ok | (ends[:, None] == cum.size)))
    if stray.any():
        idx[stray] = np.searchsorted(cum, u[stray], side="right")
    return order[np.minimum(idx.ravel(), order.size - 1)]


def _pick_hours(weight: np.ndarray, region: np.ndarray, b: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
    """An hour of the bin per sample, ∝ the region's intensity: where the sample's draw falls in
    the row of cumulative shares of its (region, bin), all rows laid end to end in one array.

    That is one searchsorted over the whole array, clipped to the sample's row. While the array
    ascends (rows cannot overlap but by rounding), the clipped answer is the count of the row's
    own entries below the draw, capped at its last hour: searched in the row's few entries only.
    """
    hours = weight.shape[2]
    rows = weight.reshape(-1, hours)
    total = rows.sum(axis=1, keepdims=True)
    cum = np.divide(np.cumsum(rows, axis=1), total, out=np.ones_like(rows), where=total > 0)
    table = cum + np.arange(rows.shape[0])[:, None]    # row r lives in (r, r + 1]
    flat = table.ravel()
    row = region * weight.shape[1] + b
    key = row + rng.random(region.size)
    if not np.all(flat[1:] >= flat[:-1]):
        at = np.searchsorted(flat, key, side="left")
        return np.clip(at - row * hours, 0, hours - 1)
    return np.minimum(_count_below(table, row, key), hours - 1)


def _count_below(table: np.ndarray, row: np.ndarray, key: np.ndarray) -> np.ndarray:
    """For each key, how many entries of its row of ``table`` (each row ascending) are below it:
    a binary search of all keys at once, one step per bit of the row length, in chunks that stay
    in cache.

    The rows are padded with +inf to the 2·top − 1 entries the steps can reach (top: the largest
    power of two in the row length), once per row: no entry past the row is ever below a key, so
    the count is the same, and no step has to keep a sample's probe inside its row.
    """
    size = table.shape[1]
    top = 1 << (size.bit_length() - 1)
    width = 2 * top - 1
    padded = np.full((table.shape[0], width), np.inf)
    padded[:, :size] = table
    flat = padded.ravel()
    out = np.empty(key.size, dtype=np.int64)
    for lo in range(0, key.size, SEARCH_CHUNK):
        k = key[lo : lo + SEARCH_CHUNK]
        # the position of the last entry counted below the key, from the one before its row
        last = row[lo : lo + SEARCH_CHUNK] * width - 1
        first = last.copy()
        step = top
        while step:     # the step entries after the last counted are below the key: take them
            last += (flat.take(last + step) < k) * step
            step >>= 1
        out[lo : lo + SEARCH_CHUNK] = last - first
    return out


def _compose(s: Scenario, k: np.ndarray, relay: np.ndarray, b: np.ndarray, hour: np.ndarray,
             region: np.ndarray, segment: np.ndarray, cap: Capacity,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(network, queue, time to first token, generation) ms per sample (providers ``k``
    ascending); TTFT includes the network and the queue (what a streaming client waits for),
    latency = TTFT + generation."""
    n = k.size
    # every array below is written at every sample (each sample has one route, one segment and
    # one provider): allocated, not zeroed first
    rtt = np.empty(n)
    # the samples of each (region, path) and of each segment, in sample order: one stable sort
    # instead of a mask of every sample per group (the same positions, the same draws)
    by_route = _positions(region * 2 + relay, 2 * len(s.regions))
    for ri, reg in enumerate(s.regions):
        direct, via = by_route[2 * ri], by_route[2 * ri + 1]
        rtt[direct] = sample(reg.rtt_ms.direct, rng, direct.size)
        rtt[via] = sample(reg.rtt_ms.relay, rng, via.size) + sample(
            s.behaviour.relay.extra_latency_ms, rng, via.size)
    tokens = np.empty(n)
    for gi, mine in enumerate(_positions(segment, len(s.segments))):
        tokens[mine] = np.maximum(np.rint(sample(s.segments[gi].tokens_out, rng, mine.size)), 0.0)
    ttft = np.empty(n)
    gen = np.empty(n)
    wait = np.empty(n)
    extra = np.empty(n)
    # the samples come group by group, the groups in provider order: each provider's samples
    # are one run, a slice (a view) instead of positions gathered and scattered; k ascends, so
    # the runs' bounds are a search of it per provider, not a count of every sample
    codes = np.arange(len(s.providers))
    starts, ends = np.searchsorted(k, codes, side="left"), np.searchsorted(k, codes, side="right")
    for pi, p in enumerate(s.providers):
        run = slice(int(starts[pi]), int(ends[pi]))
        m = run.stop - run.start
        if m == 0:
            continue
        ttft[run] = sample(p.latency.ttft_ms, rng, m)
        gen[run] = tokens[run] / np.maximum(sample(p.latency.tokens_per_s, rng, m), 1e-9) * 1000.0
        wait[run] = hour_waits(cap.hours[pi], b[run] * cap.offered.shape[2] + hour[run], rng) * 1000.0
        f = p.faults
        spikes = rng.random(m) < f.spike_rate
        stalls = rng.random(m) < f.stall_rate
        extra[run] = np.where(spikes, sample(f.spike_ms, rng, m), 0.0) + stalls * f.stall_s * 1000.0
    first = rtt + wait + ttft + extra
    return rtt, wait, first, gen


def code_order(codes: np.ndarray, n: int) -> np.ndarray:
    """``np.argsort(codes, kind="stable")`` of codes 0..n-1, sorted as the narrowest unsigned
    type that holds them: numpy sorts 8- and 16-bit integers stably by radix, in linear time,
    where it merges 64-bit ones (the same order: a stable order depends only on the values)."""
    return np.argsort(codes.astype(np.min_scalar_type(max(n - 1, 0)), copy=False), kind="stable")


def _bounds(codes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each code 0..n-1 starts and ends in ``codes`` sorted (stably)."""
    counts = np.bincount(codes, minlength=n)
    ends = np.cumsum(counts)
    return ends - counts, ends


def _positions(codes: np.ndarray, n: int) -> list[np.ndarray]:
    """For each code 0..n-1, the ascending positions holding it (``np.flatnonzero(codes == c)``)."""
    order = code_order(codes, n)
    starts, ends = _bounds(codes, n)
    return [order[a:b] for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]


def hour_waits(h: Hours, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Seconds waited by admitted requests arriving in hours ``t`` of one provider.

    A steady hour draws from its M/M/c/K state. A fluid hour draws the arrival's moment among
    the *admitted* ones (while the room is full only c·μ of the λ arrivals per second get in),
    reads the fluid queue Q then, and waits for Q + 1 completions at rate c·μ — or, once the
    queue has drained, draws from the hour's steady state like a steady hour.

    The steady law is built once per hour (:class:`~sim.queueing.WaitLaw`) and read by each
    request at its hour, not recomputed per request.
    """
    law = wait_law(h.servers, h.queue_limit, h.steady, h.mu)
    out = law.draw(rng, t)
    if not h.fluid.any():   # no fluid hour: no request is in one
        return out
    live = np.flatnonzero(h.fluid[t])
    if live.size == 0:
        return out
    tt = t[live]
    cmu = law.completions[tt]
    rate, q0, limit, span = h.rate_open[tt], h.q0[tt], float(h.queue_limit), h.seconds
    net = rate - cmu
    with np.errstate(divide="ignore", invalid="ignore"):
        t_full = np.where(net > 0, np.clip((limit - q0) / net, 0.0, span), span)
    mass_open = rate * t_full
    mass = mass_open + cmu * (span - t_full)
    u = rng.random(live.size) * mass
    when = np.where(u < mass_open, u / np.maximum(rate, 1e-300),
                    t_full + (u - mass_open) / np.maximum(cmu, 1e-300))
    queue = np.clip(q0 + net * when, 0.0, limit)
    busy = queue >= 1.0
    fluid_wait = rng.gamma(np.maximum(queue, 1.0), law.scale[tt])
    out[live] = np.where(busy, fluid_wait, out[live])
    return out


def percentiles(values: np.ndarray) -> np.ndarray:
    """p50/p95/p99 along the last axis: ``np.percentile(values, QUANTILES, axis=-1).T``.

    Each row is sorted instead (contiguous rows: about half the instructions of np.percentile's
    selection along the moved axis) and numpy's linear interpolation done on the order
    statistics around each quantile's position, with numpy's own arithmetic (its virtual index,
    weight and two-sided lerp); a row with a NaN gives NaN, as there. Equal values are the same
    value whichever of them is read, so only a -0.0 among zeros could come out with the other
    sign (no sample is -0.0: every part is a sum of non-negative draws).
    """
    n = values.shape[-1]
    if n == 0:
        return np.percentile(values, QUANTILES, axis=-1).T
    ranked = np.sort(values, axis=-1)
    q = np.true_divide(QUANTILES, 100)
    virtual = (n - 1) * q
    # numpy's indexes: the floor and the next one, both the last entry from the last position on
    # (and the weight then measured from index -1)
    above = virtual >= n - 1
    previous = np.where(above, -1, np.floor(virtual)).astype(np.intp)
    following = np.where(above, -1, previous + 1).astype(np.intp)
    gamma = virtual - previous
    a, b = ranked[..., previous], ranked[..., following]
    diff = b - a
    out = a + diff * gamma
    np.subtract(b, diff * (1 - gamma), out=out, where=np.broadcast_to(gamma >= 0.5, out.shape))
    last = ranked[..., -1:]
    return np.where(np.isnan(last), last, out)


def stable_argsort(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.argsort(values, kind="stable")`` and the values in that order, faster where no two
    values are equal (continuous samples): without ties any ascending order is the stable one,
    and numpy's default sort is quicker than its stable one. With a tie (or a NaN) it sorts
    stably after all."""
    order = np.argsort(values)
    ranked = values[order]
    if ranked.size > 1 and (np.isnan(ranked[-1]) or bool(np.any(ranked[1:] == ranked[:-1]))):
        order = np.argsort(values, kind="stable")
        return order, values[order]
    return order, ranked


def weighted_percentiles(values: np.ndarray, weights: np.ndarray, presorted: bool = False) -> np.ndarray:
    """p50/p95/p99 of values where each carries a weight (samples of groups of unequal volume);
    ``presorted``: the values are already in (stable) ascending order."""
    if presorted:
        v, w = values, weights
    else:
        order, v = stable_argsort(values)
        w = weights[order]
    cum = np.cumsum(w)
    targets = np.array(QUANTILES) / 100.0 * cum[-1]
    return v[np.minimum(np.searchsorted(cum, targets, side="left"), v.size - 1)]


@dataclass(frozen=True, slots=True)
class Pool:
    """One path's samples of one measure in stable ascending order (:func:`pool`), each with its
    group: any subset of groups is pooled from it without sorting again, as the stable order of a
    subset is the subset of the stable order."""

    values: np.ndarray        # ascending (ties in sample order)
    group: np.ndarray         # the group (row of the samples' arrays) of each value
    weight: np.ndarray        # each value's weight: its group's served requests per sample


def pool(lat: LatencySamples, path: int, values_ms: np.ndarray | None = None,
         keep: np.ndarray | None = None) -> Pool:
    """The samples of ``path``'s groups sorted once; ``values_ms`` (default: total latency) and
    ``keep`` (a sample mask) pick what is pooled."""
    rows = np.flatnonzero(lat.path == path)
    size = lat.latency_ms.shape[1]
    values = (lat.latency_ms if values_ms is None else values_ms)[rows].ravel()
    if keep is None:
        order, ranked = stable_argsort(values)
    else:   # only the kept samples are sorted (in the order all of them would have)
        kept = np.flatnonzero(keep[rows].ravel())
        order, ranked = stable_argsort(values[kept])
        order = kept[order]
    group = rows[order // size]
    return Pool(values=ranked, group=group, weight=(lat.weight / size)[group])


def pooled_percentiles(pooled: Pool, take: np.ndarray) -> np.ndarray | None:
    """Volume-weighted p50/p95/p99 of the pooled samples of the groups where ``take`` (a mask
    over all groups); None if it takes none."""
    # the positions once, then two gathers: what boolean indexing selects (np.compress would
    # find the positions again for each array)
    picked = np.flatnonzero(take[pooled.group])
    if picked.size == 0:
        return None
    return weighted_percentiles(pooled.values.take(picked), pooled.weight.take(picked),
                                presorted=True)


def pooled_percentiles_by(pooled: Pool, code: np.ndarray, n: int) -> list[np.ndarray | None]:
    """:func:`pooled_percentiles` of the groups of each code 0..n-1 (``code``: one per group,
    every group has one): the samples split by their group's code in one stable radix pass,
    each code's samples a run still in ascending order (the subset of the stable order), instead
    of a mask of all the samples per code."""
    sample_code = code[pooled.group]
    order = code_order(sample_code, n)
    values, weight = pooled.values.take(order), pooled.weight.take(order)
    starts, ends = _bounds(sample_code, n)
    return [weighted_percentiles(values[a:b], weight[a:b], presorted=True) if b > a else None
            for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]


def pooled_latency(lat: LatencySamples, path: int, bins: np.ndarray) -> np.ndarray | None:
    """Volume-weighted p50/p95/p99 over the groups of one path in the given bins."""
    return pooled_latencies(lat, path, [bins])[0]


def pooled_latencies(lat: LatencySamples, path: int, bin_sets: list[np.ndarray],
                     values_ms: np.ndarray | None = None,
                     keep: np.ndarray | None = None) -> list[np.ndarray | None]:
    """:func:`pooled_latency` for several sets of bins, sorting the path's samples once (a
    :class:`Pool`); ``values_ms`` and ``keep`` as in :func:`pool`."""
    pooled = pool(lat, path, values_ms, keep)
    return [pooled_percentiles(pooled, np.isin(lat.bin, bins)) for bins in bin_sets]
