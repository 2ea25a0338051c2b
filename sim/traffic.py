"""Traffic: Poisson request counts per cohort and bin, token sums, and their split over pieces.

Every organisation's requests form a non-homogeneous Poisson process with rate
``requests_per_hour × intensity(t)`` (:mod:`sim.profile`). Counts are drawn per *cohort* (all
organisations of one region, segment and model) and bin, with their token sums, from the traffic
streams (:func:`draw`); the policy run and its no-block baseline share these draws exactly
(common random numbers), so the impact is a difference of two runs over identical demand.

:func:`units` gives each organisation that changed state its own count, split from its
cohort's count binomially by rate (given the total, Poisson counts are multinomial in the
rates: exact in law). :func:`split` deals every count over the pieces it overlaps and aggregates
the result into *cells* keyed by (bin, region, segment, model, fate). Token sums of n requests:
a gamma with the sum's mean n·m and variance n·v when n ≤ ``SMALL_COUNT`` (exact for exponential
token counts), the normal limit above; a unit's tokens are its exact integer share of its
cohort's tokens by request count.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from scenarios.distributions import Distribution, Lognormal, sample
from scenarios.ledger import credit_draws
from scenarios.schema import Scenario
from sim.pieces import NONE, Pieces
from sim.population import Population
from sim.profile import Profile

SMALL_COUNT = 30
#: Units dealt at a time by :func:`split` (a few hundred thousand (piece, bin) pairs at most).
CHUNK_UNITS = 512
#: Up to this many possible cells, :func:`split` sums into one slot per cell (no key sorting).
DENSE_CELLS = 1 << 21


@dataclass(frozen=True, slots=True)
class Draws:
    """Requests and token sums per (cohort, bin); shared by a run and its baseline.

    A cohort is every organisation of one (region, segment, model). Organisations that need
    their own count get it by splitting their cohort's count (:func:`units`): given the total,
    Poisson counts are multinomial in the members' rates, so this is exact in law — and an
    organisation's requests are a subset of the same cohort draw in every policy compared.
    """

    cohort: np.ndarray        # per organisation
    n: np.ndarray             # (cohort, bin)
    tokens_in: np.ndarray
    tokens_out: np.ndarray
    rate: np.ndarray          # per cohort: summed requests per hour
    split_seeds: tuple[np.random.SeedSequence, ...]


@dataclass(frozen=True, slots=True)
class Cells:
    """Requests routed per (bin, region, segment, model, fate), with their tokens and free tokens."""

    bin: np.ndarray
    region: np.ndarray
    segment: np.ndarray
    model: np.ndarray
    fate: np.ndarray
    n: np.ndarray
    tokens_in: np.ndarray
    tokens_out: np.ndarray
    free_in: np.ndarray
    free_out: np.ndarray


def bin_edges(s: Scenario) -> np.ndarray:
    """Bin boundaries in hours since the window start (the last bin may be short)."""
    width = s.window.bin_seconds / 3600.0
    nb = math.ceil(s.window.hours / width - 1e-9)
    return np.minimum(np.arange(nb + 1) * width, s.window.hours)


def moments(d: Distribution) -> tuple[float, float]:
    """Mean and variance of one draw (rounded to whole tokens as in :func:`_exact_sums`)."""
    if isinstance(d, Lognormal):
        s2 = d.sigma**2
        return d.mean(), (math.exp(s2) - 1.0) * d.median**2 * math.exp(s2)
    draws = np.maximum(np.rint(sample(d, np.random.default_rng(0x70CE), 200_000)), 0.0)
    return float(draws.mean()), float(draws.var())


def draw(s: Scenario, pop: Population, profile: Profile, edges: np.ndarray,
         seq: np.random.SeedSequence) -> Draws:
    """Requests and tokens per (cohort, bin) from the traffic streams derived from ``seq``."""
    rng = np.random.default_rng(np.random.SeedSequence(seq.entropy, spawn_key=(*seq.spawn_key, 0)))
    n_models = int(pop.model.max()) + 1 if pop.size else 1
    key = (pop.region * len(s.segments) + pop.segment) * n_models + pop.model
    keys, cohort = np.unique(key, return_inverse=True)
    cohort = cohort.ravel()
    region = keys // (len(s.segments) * n_models)
    segment = keys // n_models % len(s.segments)
    rate = np.bincount(cohort, weights=pop.rate, minlength=keys.size)
    regions = np.arange(len(s.regions))
    c = profile.integral(np.repeat(regions, edges.size), np.tile(edges, regions.size))
    per_bin = np.diff(c.reshape(regions.size, edges.size), axis=1)   # (regions, bins)
    n = rng.poisson(rate[:, None] * per_bin[region])
    tin = np.zeros_like(n)
    tout = np.zeros_like(n)
    for gi, seg in enumerate(s.segments):
        rows = np.flatnonzero(segment == gi)
        tin[rows] = _token_sums(n[rows], seg.tokens_in, rng)
        tout[rows] = _token_sums(n[rows], seg.tokens_out, rng)
    seeds = tuple(np.random.SeedSequence(seq.entropy, spawn_key=(*seq.spawn_key, 1, int(k)))
                  for k in keys)
    return Draws(cohort=cohort, n=n, tokens_in=tin, tokens_out=tout, rate=rate, split_seeds=seeds)


def _token_sums(n: np.ndarray, d: Distribution, rng: np.random.Generator) -> np.ndarray:
    """Sum of n per-request token draws: a moment-matched gamma for small n (exact for an
    exponential, close for a lognormal), the normal limit for large n."""
    m, v = moments(d)
    out = np.zeros(n.shape, dtype=np.int64)
    if v <= 0.0:
        return np.rint(n * m).astype(np.int64)
    small = (n > 0) & (n <= SMALL_COUNT)
    k = n[small].astype(float)
    out[small] = np.rint(rng.gamma(k * m * m / v, v / m)).astype(np.int64)
    large = n > SMALL_COUNT
    k = n[large].astype(float)
    normal = k * m + np.sqrt(k * v) * rng.standard_normal(k.size)
    out[large] = np.maximum(np.rint(normal), 0.0).astype(np.int64)
    return out


@dataclass(frozen=True, slots=True)
class Units:
    """What traffic is dealt to: organisations with their own pieces, and cohorts (organisations
    of one region, segment and model that never changed state, whose draws are summed — a sum of
    Poisson counts is the Poisson count of the summed rate, so nothing changes in law)."""

    region: np.ndarray
    segment: np.ndarray
    model: np.ndarray
    credit: np.ndarray
    n: np.ndarray
    tokens_in: np.ndarray
    tokens_out: np.ndarray
    piece_unit: np.ndarray
    t0: np.ndarray
    t1: np.ndarray
    fate: np.ndarray


def units(pop: Population, draws: Draws, pieces: Pieces, credit: np.ndarray,
          edges: np.ndarray) -> Units:
    """Organisations with their own pieces get their own counts from the bin of their first state
    change on (a multinomial split of their cohort's count by rate, from the cohort's own stream);
    the rest of each cohort — including, before that bin, the organisations that change later —
    is one unit per cohort.

    Before its first change an organisation is direct like every organisation of its region and
    segment that never changes (:attr:`Pieces.since`): the same questions get the same fates, so
    its requests there are dealt exactly as the cohort's. Splitting a Poisson total by rate over
    whichever members are counted apart in a bin is exact in law (given the total, Poisson counts
    are multinomial in the rates, and a merged group's count is the sum of its members').
    """
    own = np.flatnonzero(pieces.cohort_of < 0)
    members = np.flatnonzero(pieces.cohort_of >= 0)
    nb = draws.n.shape[1]
    # the first bin in which each organisation of its own is counted apart
    start = np.clip(np.searchsorted(edges, pieces.since[own], side="right") - 1, 0, nb)
    has_rest = np.zeros(draws.n.shape[0], dtype=bool)
    has_rest[draws.cohort[members]] = True
    # one (unit, bin) table per quantity, own organisations first, written in place
    n, tin, tout = (np.zeros((own.size, nb), dtype=np.int64) for _ in range(3))
    rest_n = draws.n.copy()
    tin_rest = draws.tokens_in.copy()
    tout_rest = draws.tokens_out.copy()
    by_cohort = draws.cohort[own]
    later = np.zeros(draws.n.shape[0], dtype=bool)   # a member of its own starts after bin 0
    bins = np.arange(nb)[:, None]
    for c in np.unique(by_cohort).tolist():
        rows = np.flatnonzero(by_cohort == c)
        rates = pop.rate[own[rows]]
        apart = bins >= start[rows]                  # (bin, member): counted apart
        later[c] = not apart[0].all()
        mine = np.where(apart, rates, 0.0)
        rest = ((max(draws.rate[c] - rates.sum(), 0.0) if has_rest[c] else 0.0)
                + np.where(apart, 0.0, rates).sum(axis=1))
        pvals = np.column_stack([mine, rest])
        pvals /= pvals.sum(axis=1, keepdims=True)
        by_bin = np.random.default_rng(draws.split_seeds[c]).multinomial(draws.n[c], pvals)
        counts = by_bin.T                            # (member + rest, bin), a view
        # the last category takes what the binomial chain leaves; where the rest has no rate,
        # rounding in the chain's conditional probabilities may leave it a request (chance
        # ~1e-11 per request): it belongs to the members counted apart, so the largest takes it
        stray = np.flatnonzero((rest == 0.0) & (counts[-1] > 0))
        if stray.size:
            counts[np.argmax(mine[stray], axis=1), stray] += counts[-1, stray]
            counts[-1, stray] = 0
        n[rows] = counts[:-1]
        rest_n[c] = counts[-1]
        for share_of, rest_tokens, tokens in ((tin, tin_rest, draws.tokens_in[c]),
                                              (tout, tout_rest, draws.tokens_out[c])):
            shares = _token_shares(tokens, by_bin, draws.n[c])
            share_of[rows] = shares[:, :-1].T
            rest_tokens[c] = shares[:, -1]
    unit_of_org = np.full(pop.size, -1, dtype=np.int64)
    unit_of_org[own] = np.arange(own.size)
    # an organisation's own pieces from its first counted bin on
    lo = edges[start[unit_of_org[pieces.org]]]
    keep = pieces.t1 > lo
    own_rows = np.column_stack([unit_of_org[pieces.org][keep], np.maximum(pieces.t0, lo)[keep],
                                pieces.t1[keep], pieces.fate[keep]])
    rows_all = [own_rows]
    # the rest of a cohort is dealt over the pieces of a member that never changed, or else (every
    # member changes) over those of the member that changes last, up to its first counted bin
    rest_units = np.flatnonzero(has_rest | later)
    lead = np.empty(rest_units.size, dtype=np.int64)
    for k, c in enumerate(rest_units.tolist()):
        u = own.size + k
        if has_rest[c]:
            lead[k] = members[np.argmax(draws.cohort[members] == c)]
            table = pieces.cohort_pieces[int(pieces.cohort_of[lead[k]])]
        else:
            rows = np.flatnonzero(by_cohort == c)
            last = rows[np.argmax(start[rows])]
            lead[k] = own[last]
            end = edges[start[last]]
            mine = (pieces.org == lead[k]) & (pieces.t0 < end)
            table = np.column_stack([pieces.t0[mine], np.minimum(pieces.t1[mine], end),
                                     pieces.fate[mine]])
        rows_all.append(np.column_stack([np.full(len(table), u), table]))
    allrows = np.concatenate(rows_all)
    both = np.concatenate([own, lead])
    return Units(region=pop.region[both], segment=pop.segment[both], model=pop.model[both],
                 credit=np.concatenate([credit[own], np.zeros(lead.size, dtype=credit.dtype)]),
                 n=np.concatenate([n, rest_n[rest_units]]),
                 tokens_in=np.concatenate([tin, tin_rest[rest_units]]),
                 tokens_out=np.concatenate([tout, tout_rest[rest_units]]),
                 piece_unit=allrows[:, 0].astype(np.int64), t0=allrows[:, 1], t1=allrows[:, 2],
                 fate=allrows[:, 3].astype(np.int64))


def _token_shares(tokens: np.ndarray, counts: np.ndarray, total: np.ndarray) -> np.ndarray:
    """Exact integer shares of a cohort's tokens per bin, by cumulative request counts.

    ``counts`` is (bins, members) and sums to ``total`` per bin; the shares (bins, members) sum
    to ``tokens``. Bins first: the cumulative sums run along contiguous rows.
    """
    whole = np.maximum(total, 1)[:, None]
    cum = np.cumsum(counts, axis=1)
    upto = tokens[:, None] * cum // whole
    upto[:, -1] = tokens
    return np.diff(upto, axis=1, prepend=0)


def split(s: Scenario, pop: Population, profile: Profile, edges: np.ndarray, draws: Draws,
          pieces: Pieces, credit: np.ndarray) -> Cells:
    """Deal each (unit, bin) draw over the unit's pieces; aggregate into cells.

    Units are dealt in chunks of whole units (:func:`_deal_chunk`), so the (piece, bin) arrays stay
    small enough to be reused from cache instead of faulting in hundreds of megabytes per pass;
    a unit's pieces, cut bins and free-token credit never span two chunks, and cell sums are
    integer sums, so the cells are exactly those of one pass over every unit at once.
    """
    u = units(pop, draws, pieces, credit, edges)
    dims = (edges.size - 1, len(s.regions), len(s.segments), len(s.incumbent.models),
            max(len(pieces.fates), 1))
    sends = np.array([f.action != NONE for f in pieces.fates], dtype=bool)
    migrated = np.array([f.migrated for f in pieces.fates], dtype=bool)
    bounds = np.searchsorted(u.piece_unit, np.arange(0, u.n.shape[0] + CHUNK_UNITS, CHUNK_UNITS))
    chunks = (_deal_chunk(u, slice(int(a), int(b)), profile, edges, dims, sends, migrated)
              for a, b in itertools.pairwise(bounds) if b > a)
    size = math.prod(dims)
    if size <= DENSE_CELLS:
        # every possible cell has a slot: integer sums in place, no sorting of keys
        acc = np.zeros((5, size), dtype=np.int64)
        for key, *values in chunks:
            for row, v in enumerate(values):
                np.add.at(acc[row], key, v)
        used = np.flatnonzero(acc[0] > 0)   # every dealt pair has a request: these are its cells
        return _cells(dims, used, list(acc[:, used]))
    return _aggregate(dims, [_compact(*chunk) for chunk in chunks])


def _deal_chunk(u: Units, rows: slice, profile: Profile, edges: np.ndarray, dims: tuple[int, ...],
                sends: np.ndarray, migrated: np.ndarray) -> tuple[np.ndarray, ...]:
    """(cell key, requests, tokens in/out, free in/out) of each (piece, bin) of the pieces ``rows``
    (whole units) that sends requests."""
    t0, t1 = u.t0[rows], u.t1[rows]
    pair_piece, pair_bin = _expand(t0, t1, edges)
    unit = u.piece_unit[rows][pair_piece]
    region = u.region[unit]
    lo = np.maximum(t0[pair_piece], edges[pair_bin])
    hi = np.minimum(t1[pair_piece], edges[pair_bin + 1])
    partial = (lo > edges[pair_bin]) | (hi < edges[pair_bin + 1])
    weight = np.ones(lo.size)  # a piece covering its whole bin takes all of the bin's draw
    weight[partial] = (profile.integral(region[partial], hi[partial])
                       - profile.integral(region[partial], lo[partial]))
    n, tin, tout = _deal(unit, pair_bin, weight, partial, u)
    fate = u.fate[rows][pair_piece]
    free_in, free_out = _free_tokens(migrated, fate, unit, tin, tout, u.credit)
    keep = sends[fate] & (n > 0)
    kept = unit[keep]
    key = np.ravel_multi_index((pair_bin[keep], region[keep], u.segment[kept], u.model[kept],
                                fate[keep]), dims)
    return (key, *(v[keep] for v in (n, tin, tout, free_in, free_out)))


def _compact(key: np.ndarray, *values: np.ndarray) -> tuple[np.ndarray, ...]:
    """One row per distinct cell key (sorted), values summed."""
    uniq, inverse = np.unique(key, return_inverse=True)
    inverse = inverse.ravel()
    return (uniq, *(np.bincount(inverse, weights=v, minlength=uniq.size).astype(np.int64)
                    for v in values))


def _expand(t0: np.ndarray, t1: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(piece, bin) for every bin each piece overlaps, in (unit, time) order."""
    first = np.searchsorted(edges, t0, side="right") - 1
    last = np.searchsorted(edges, t1, side="left") - 1
    first = np.clip(first, 0, edges.size - 2)
    last = np.clip(np.maximum(last, first), 0, edges.size - 2)
    counts = last - first + 1
    piece = np.repeat(np.arange(t0.size), counts)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    offset = np.arange(piece.size) - np.repeat(starts, counts)
    return piece, first[piece] + offset


def _deal(unit: np.ndarray, bins: np.ndarray, weight: np.ndarray, partial: np.ndarray,
          u: Units) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each (unit, bin) count and tokens, apportioned over the pieces that share the bin.

    A bin cut by a state change is apportioned by the pieces' share of the bin's intensity with
    exact integer (systematic) rounding: deterministic, so two policies that cut the same bin the
    same way apportion it the same way (common random numbers down to the request).
    """
    n = u.n[unit, bins]
    tin = u.tokens_in[unit, bins]
    tout = u.tokens_out[unit, bins]
    cut = np.flatnonzero(partial)
    if cut.size == 0:
        return n, tin, tout
    key = unit[cut] * (int(bins.max()) + 1) + bins[cut]
    starts = np.flatnonzero(np.diff(key, prepend=-1))
    group = np.repeat(np.arange(starts.size), np.diff(np.append(starts, key.size)))
    w = weight[cut]
    cum_w = np.cumsum(w)
    before_w = (cum_w - w) - (cum_w - w)[starts][group]
    total_w = np.add.reduceat(w, starts)[group]
    share_lo = np.divide(before_w, total_w, out=np.zeros_like(w), where=total_w > 0)
    share_hi = np.divide(before_w + w, total_w, out=np.ones_like(w), where=total_w > 0)
    last = np.append(starts[1:] - 1, key.size - 1)
    share_hi[last] = 1.0  # the last piece of a bin takes what rounding left
    total_n = n[cut]
    n_cut = (np.floor(total_n * share_hi + 1e-9) - np.floor(total_n * share_lo + 1e-9)).astype(np.int64)
    cum_n = np.cumsum(n_cut)
    before_n = (cum_n - n_cut) - (cum_n - n_cut)[starts][group]
    whole = np.maximum(total_n, 1)
    n[cut] = n_cut
    for arr in (tin, tout):
        tot = arr[cut]
        arr[cut] = tot * (before_n + n_cut) // whole - tot * before_n // whole
    return n, tin, tout


def _free_tokens(migrated: np.ndarray, fate: np.ndarray, org: np.ndarray, tin: np.ndarray,
                 tout: np.ndarray, credit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Free tokens used: a migrated organisation's credit pays for its first tokens at the provider
    (the ledger contract's draw, :func:`scenarios.ledger.credit_draws`, in (unit, time) order)."""
    free_in = np.zeros_like(tin)
    free_out = np.zeros_like(tout)
    idx = np.flatnonzero(credit[org] > 0)
    idx = idx[migrated[fate[idx]]]
    if idx.size == 0:
        return free_in, free_out
    free_in[idx], free_out[idx] = credit_draws(org[idx], tin[idx], tout[idx], credit)
    return free_in, free_out


def _aggregate(dims: tuple[int, ...], parts: list[tuple[np.ndarray, ...]]) -> Cells:
    """Sum the chunks' cells by key (sorted, so the cells come in (bin, region, ...) order)."""
    if not parts:
        parts = [tuple(np.zeros(0, dtype=np.int64) for _ in range(6))]
    key, *values = (np.concatenate(col) for col in zip(*parts, strict=True))
    uniq, inverse = np.unique(key, return_inverse=True)
    inverse = inverse.ravel()
    sums = [np.bincount(inverse, weights=v, minlength=uniq.size).astype(np.int64) for v in values]
    return _cells(dims, uniq, sums)


def _cells(dims: tuple[int, ...], keys: np.ndarray, sums: list[np.ndarray]) -> Cells:
    b, r, g, m, f = np.unravel_index(keys, dims)
    return Cells(bin=b, region=r, segment=g, model=m, fate=f, n=sums[0], tokens_in=sums[1],
                 tokens_out=sums[2], free_in=sums[3], free_out=sums[4])
