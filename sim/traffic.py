"""Traffic: Poisson request counts per cohort and bin, token sums, and their split over pieces.

Every organisation's requests form a non-homogeneous Poisson process with rate
``requests_per_hour × intensity(t)`` (:mod:`sim.profile`). Counts are drawn per *cohort* (all
organisations of one region, segment and model) and bin, with their token sums, from the traffic
streams (:func:`draw`); the policy run and its no-block baseline share these draws exactly
(common random numbers), so the impact is a difference of two runs over identical demand.

:func:`units` gives each organisation that changed state its own count in the bins where it
needs one (:func:`cohort_split`: a multinomial split of its cohort's count by rate — given the
total, Poisson counts are multinomial in the rates: exact in law); in a whole bin of one fate
with no free-token credit to draw, it is counted with the others of its cohort in that fate (a
*group*: a merged group's count is multinomial in the summed rates, exact in law too).
:func:`split` deals every count over the pieces it overlaps and aggregates the result into
*cells* keyed by (bin, region, segment, model, fate). Token sums of n requests:
a gamma with the sum's mean n·m and variance n·v when n ≤ ``SMALL_COUNT`` (exact for exponential
token counts), the normal limit above; a unit's tokens are its exact integer share of its
cohort's tokens by request count.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
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
#: Integers below this are exact in floats: :func:`split` sums cells in floats when every sum is.
FLOAT_EXACT = 1 << 53


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
    """What traffic is dealt to, cohort after cohort: each organisation counted apart (with its own
    pieces from its first counted bin on), its cohort's *groups*, then its *rest* — the
    organisations that never changed state, and before their first counted bin those that did,
    whose draws are summed (a sum of Poisson counts is the Poisson count of the summed rate, so
    nothing changes in law).

    A group gathers, bin by bin, the organisations counted apart whose bin is one piece of the
    group's fate and that need no bookkeeping of their own there (no free-token credit to draw: a
    fate of no migrated organisation, or no credit): their requests meet the same fate in the
    same cell, so one count of their summed rate is theirs (a merged group's count of a
    multinomial is multinomial in the summed probabilities: exact in law). Such a bin of an
    organisation's is left out of its own pieces' deal (``merged`` pieces deal only their cut bins).

    Unit ``k`` is column ``column[k]`` of its cohort's split (:func:`cohort_split`: the cohort's
    organisations counted apart in population order, its groups, then the rest). Cohorts with
    organisations counted apart come first, each with its units together; cohorts that are only
    a rest follow. No (unit, bin) table is built: :func:`split` reads a unit's count and token
    shares from its cohort's split for the (unit, bin) pairs it deals, and for nothing else.
    """

    cohort: np.ndarray        # per unit
    column: np.ndarray        # per unit: its column in its cohort's split
    region: np.ndarray
    segment: np.ndarray
    model: np.ndarray
    credit: np.ndarray
    cohorts: np.ndarray       # the cohorts with units, in unit order
    first: np.ndarray         # cohort cohorts[i]'s units are first[i]:first[i + 1]
    apart: tuple[np.ndarray, ...]   # per cohort: its organisations counted apart, in order,
    start: tuple[np.ndarray, ...]   # and the first bin in which each is counted apart
    groups: tuple[np.ndarray, ...]  # per cohort: the fate of each of its groups
    #: per cohort: rows of (organisation's column, first bin, last bin, group): the bins in which
    #: an organisation counted apart is one of the group's
    merge: tuple[np.ndarray, ...]
    has_rest: np.ndarray      # per cohort: some member never changes (the rest has its rate)
    piece_unit: np.ndarray    # the units' pieces, in (unit, time) order
    t0: np.ndarray
    t1: np.ndarray
    fate: np.ndarray
    merged: np.ndarray        # per piece: its whole bins are dealt to its cohort's group


def units(pop: Population, cohort: np.ndarray, pieces: Pieces, credit: np.ndarray,
          edges: np.ndarray) -> Units:
    """Organisations with their own pieces are counted apart from the bin of their first state
    change on (``cohort``: each organisation's traffic cohort, :attr:`Draws.cohort`), except in
    the bins they spend in a group; the rest of each cohort — including, before that bin, the
    organisations that change later — is one unit.

    Before its first change an organisation is direct like every organisation of its region and
    segment that never changes (:attr:`Pieces.since`): the same questions get the same fates, so
    its requests there are dealt exactly as the cohort's.
    """
    n_cohorts = int(cohort.max()) + 1 if cohort.size else 0
    own = np.flatnonzero(pieces.cohort_of < 0)
    members = np.flatnonzero(pieces.cohort_of >= 0)
    # the first bin in which each organisation of its own is counted apart
    start = np.clip(np.searchsorted(edges, pieces.since[own], side="right") - 1, 0, edges.size - 1)
    order = np.argsort(cohort[own], kind="stable")     # cohort by cohort, population order within
    bounds = np.searchsorted(cohort[own][order], np.arange(n_cohorts + 1))
    apart = tuple(own[order[a:b]] for a, b in itertools.pairwise(bounds.tolist()))
    starts = tuple(start[order[a:b]] for a, b in itertools.pairwise(bounds.tolist()))
    n_apart = np.diff(bounds)
    rank = np.zeros(pop.size, dtype=np.int64)           # an organisation's column in its cohort
    rank[own[order]] = np.arange(own.size) - np.repeat(bounds[:-1], n_apart)
    has_rest = np.zeros(n_cohorts, dtype=bool)
    has_rest[cohort[members]] = True
    later = np.zeros(n_cohorts, dtype=bool)            # a member of its own starts after bin 0
    later[cohort[own][start > 0]] = True
    # an organisation's own pieces from its first counted bin on, and those whose whole bins
    # go to a group (no free-token credit to draw there)
    lo = edges[start[np.searchsorted(own, pieces.org)]]
    keep = pieces.t1 > lo
    org, t0, t1, fate = pieces.org[keep], np.maximum(pieces.t0, lo)[keep], pieces.t1[keep], pieces.fate[keep]
    first_bin, last_bin, head, tail = _span(t0, t1, edges)
    full_first, full_last = first_bin + head, last_bin - tail
    migrated = np.array([f.migrated for f in pieces.fates], dtype=bool)
    merged = (~migrated[fate] | (credit[org] <= 0)) & (full_first <= full_last)
    n_fates = max(len(pieces.fates), 1)
    group_key = cohort[org[merged]] * n_fates + fate[merged]
    keys = np.flatnonzero(np.bincount(group_key, minlength=n_cohorts * n_fates))
    group_at = np.searchsorted(keys // n_fates, np.arange(n_cohorts + 1))
    groups = tuple(keys[a:b] % n_fates for a, b in itertools.pairwise(group_at.tolist()))
    n_groups = np.diff(group_at)
    # per cohort: (column, first bin, last bin, group) of each merged piece
    rows_m = np.column_stack([cohort[org[merged]], rank[org[merged]], full_first[merged],
                              full_last[merged],
                              np.searchsorted(keys, group_key) - group_at[cohort[org[merged]]]])
    rows_m = rows_m[np.argsort(rows_m[:, 0], kind="stable")]
    merge_at = np.searchsorted(rows_m[:, 0], np.arange(n_cohorts + 1))
    merge = tuple(rows_m[a:b, 1:] for a, b in itertools.pairwise(merge_at.tolist()))
    cohorts = np.concatenate([np.flatnonzero(n_apart > 0), np.flatnonzero(n_apart == 0)])
    sizes = (n_apart + n_groups + (has_rest | later))[cohorts]
    first = np.concatenate([[0], np.cumsum(sizes)])
    unit_cohort = np.repeat(cohorts, sizes)
    column = np.arange(first[-1]) - np.repeat(first[:-1], sizes)
    # the organisation each unit takes its region, segment and model from (else: a member's)
    lead = np.empty(first[-1], dtype=np.int64)
    unit_of_org = np.full(pop.size, -1, dtype=np.int64)
    first_member = np.zeros(n_cohorts, dtype=np.int64)
    found, at = np.unique(cohort[members], return_index=True)
    first_member[found] = members[at]
    tables = []
    for i, c in enumerate(cohorts.tolist()):
        a, k, g = int(first[i]), apart[c].size, int(n_groups[c])
        lead[a : a + k] = apart[c]
        unit_of_org[apart[c]] = np.arange(a, a + k)
        if g:
            lead[a + k : a + k + g] = apart[c][0]
            tables.append(np.column_stack([np.arange(a + k, a + k + g), np.zeros(g),
                                           np.full(g, edges[-1]), groups[c], np.zeros(g)]))
        if has_rest[c] or later[c]:
            lead[a + k + g], table = _rest_pieces(pieces, int(first_member[c]) if has_rest[c] else None,
                                                  apart[c], starts[c], edges)
            tables.append(np.column_stack([np.full(len(table), a + k + g), table,
                                           np.zeros(len(table))]))
    rows = np.concatenate([np.column_stack([unit_of_org[org], t0, t1, fate, merged]), *tables])
    rows = rows[np.argsort(rows[:, 0], kind="stable")]   # (unit, time) order
    counted_apart = column < n_apart[unit_cohort]
    return Units(cohort=unit_cohort, column=column, region=pop.region[lead],
                 segment=pop.segment[lead], model=pop.model[lead],
                 credit=np.where(counted_apart, credit[lead], 0).astype(credit.dtype),
                 cohorts=cohorts, first=first, apart=apart, start=starts, groups=groups,
                 merge=merge, has_rest=has_rest, piece_unit=rows[:, 0].astype(np.int64),
                 t0=rows[:, 1], t1=rows[:, 2], fate=rows[:, 3].astype(np.int64),
                 merged=rows[:, 4] > 0)


def _rest_pieces(pieces: Pieces, member: int | None, apart: np.ndarray, start: np.ndarray,
                 edges: np.ndarray) -> tuple[int, np.ndarray]:
    """(lead, pieces as rows of (t0, t1, fate)) of a cohort's rest: those of a ``member`` that
    never changed, or else (every member changes) those of the member that changes last, up to
    its first counted bin."""
    if member is not None:
        return member, pieces.cohort_pieces[int(pieces.cohort_of[member])]
    last = int(np.argmax(start))
    end = edges[start[last]]
    mine = (pieces.org == apart[last]) & (pieces.t0 < end)
    return int(apart[last]), np.column_stack([pieces.t0[mine], np.minimum(pieces.t1[mine], end),
                                              pieces.fate[mine]])


def cohort_split(pop: Population, draws: Draws, u: Units, c: int) -> np.ndarray:
    """(bin, column) requests of cohort ``c``'s units: its organisations counted apart (each from
    its first counted bin on, outside its group's bins), its groups, then its rest; a multinomial
    split of the cohort's count by rate, from the cohort's own stream (given the total, Poisson
    counts are multinomial in the rates: exact in law; a merged group's count is the sum of its
    members')."""
    orgs, start, merge = u.apart[c], u.start[c], u.merge[c]
    if orgs.size == 0:
        return draws.n[c][:, None]
    nb, k, g = draws.n.shape[1], orgs.size, u.groups[c].size
    rates = pop.rate[orgs]
    pvals = np.zeros((nb, k + g + 1))
    mine = pvals[:, :k]
    np.multiply(np.arange(nb)[:, None] >= start, rates, out=mine)
    if merge.size:
        # each merged piece's bins go to its group (exact sums of rates, no cancellation)
        length = merge[:, 2] - merge[:, 1] + 1
        j = np.repeat(merge[:, 0], length)
        b = np.arange(j.size) - np.repeat(np.cumsum(length) - length - merge[:, 1], length)
        pvals[:, k : k + g] = np.bincount(b * g + np.repeat(merge[:, 3], length),
                                          weights=rates[j], minlength=nb * g).reshape(nb, g)
        mine[b, j] = 0.0
    # the rest has the rate of those not counted apart yet: suffix sums by first counted bin
    # (exactly 0.0 from the last first bin on)
    rest = pvals[:, -1]
    later = np.bincount(start, weights=rates, minlength=nb + 1)[::-1].cumsum()[::-1]
    rest[:] = later[1 : nb + 1]
    if u.has_rest[c]:
        rest += max(draws.rate[c] - rates.sum(), 0.0)
    probs = pvals / pvals.sum(axis=1, keepdims=True)
    counts = np.random.default_rng(draws.split_seeds[c]).multinomial(draws.n[c], probs)
    # the last category takes what the binomial chain leaves; where the rest has no rate,
    # rounding in the chain's conditional probabilities may leave it a request (chance
    # ~1e-11 per request): it belongs to the others, so the largest takes it
    stray = np.flatnonzero((rest == 0.0) & (counts[:, -1] > 0))
    if stray.size:
        counts[stray, np.argmax(pvals[stray, :-1], axis=1)] += counts[stray, -1]
        counts[stray, -1] = 0
    return counts


@dataclass(frozen=True, slots=True)
class _Source:
    """Where the units of one chunk read their counts: unit k's count in bin b is
    ``counts[slot[k] + b * stride]``, and ``cum`` there is the count of its cohort's columns up
    to and including k's (what its exact integer share of the cohort's tokens is cut at). The
    cohort's whole count (at least 1: the divisor) and tokens in the bin are ``whole``,
    ``tokens_in``, ``tokens_out`` at the bin itself when ``by_bin`` (one cohort's), else at the
    count's own index (every cohort's, raveled, for rests read from the draws)."""

    counts: np.ndarray
    cum: np.ndarray
    slot: np.ndarray          # per unit (of every chunk)
    stride: int
    whole: np.ndarray
    tokens_in: np.ndarray
    tokens_out: np.ndarray
    by_bin: bool


def _sources(pop: Population, draws: Draws, u: Units) -> Iterator[tuple[int, int, _Source]]:
    """(first unit, end unit, source) of each chunk: a cohort split at a time, in units' order."""
    for i, c in enumerate(u.cohorts.tolist()):
        lo, hi = int(u.first[i]), int(u.first[i + 1])
        if u.apart[c].size == 0:
            # only rests from here on: one column each, read from the draws themselves
            n = draws.n.ravel()
            src = _Source(n, n, u.cohort * draws.n.shape[1], 1, np.maximum(n, 1),
                          draws.tokens_in.ravel(), draws.tokens_out.ravel(), by_bin=False)
            hi = int(u.first[-1])
        else:
            src = _cohort_source(draws, c, cohort_split(pop, draws, u, c), u.column)
        for a in range(lo, hi, CHUNK_UNITS):
            yield a, min(a + CHUNK_UNITS, hi), src
        if u.apart[c].size == 0:
            return


def _cohort_source(draws: Draws, c: int, counts: np.ndarray, slot: np.ndarray) -> _Source:
    """The source of cohort ``c``'s units, given its split ``counts`` (:func:`cohort_split`)."""
    return _Source(counts.ravel(), np.cumsum(counts, axis=1).ravel(), slot, counts.shape[1],
                   np.maximum(draws.n[c], 1), draws.tokens_in[c], draws.tokens_out[c], by_bin=True)


def split(s: Scenario, pop: Population, profile: Profile, edges: np.ndarray, draws: Draws,
          pieces: Pieces, credit: np.ndarray) -> Cells:
    """Deal each (unit, bin) draw over the unit's pieces; aggregate into cells.

    Units are dealt in chunks of whole units of one cohort split (:class:`_Deal`), so the
    (piece, bin) arrays and the split stay small enough to be reused from cache instead of
    faulting in hundreds of megabytes per pass; a unit's pieces, cut bins and free-token credit
    never span two chunks, and cell sums are sums of integers, so the cells are exactly those of
    one pass over every unit at once.
    """
    u = units(pop, draws.cohort, pieces, credit, edges)
    dims = (edges.size - 1, len(s.regions), len(s.segments), len(s.incumbent.models),
            max(len(pieces.fates), 1))
    deal = _Deal(u, profile, edges, dims, draws,
                 sends=np.array([f.action != NONE for f in pieces.fates], dtype=bool),
                 migrated=np.array([f.migrated for f in pieces.fates], dtype=bool))
    piece_at = np.searchsorted(u.piece_unit, np.arange(u.cohort.size + 1))
    chunks = (deal(slice(int(piece_at[a]), int(piece_at[b])), src)
              for a, b, src in _sources(pop, draws, u) if piece_at[b] > piece_at[a])
    size = math.prod(dims)
    if size > DENSE_CELLS:
        return _aggregate(dims, [_compact(*chunk) for chunk in chunks])
    # every possible cell has a slot: sums in place, no sorting of keys; in floats when every sum
    # stays below 2**53 (exact then), as NumPy's add.at is many times faster on floats than on ints
    exact = max(int(draws.n.sum()), int(draws.tokens_in.sum()),
                int(draws.tokens_out.sum())) < FLOAT_EXACT
    acc = np.zeros((5, size), dtype=float if exact else np.int64)
    for key, *values in chunks:
        for row, v in enumerate(values):
            np.add.at(acc[row], key, v.astype(acc.dtype, copy=False))
    used = np.flatnonzero(acc[0] > 0)   # every dealt pair has a request: these are its cells
    return _cells(dims, used, list(acc[:, used].astype(np.int64)))


@dataclass(frozen=True, slots=True)
class _Deal:
    """Deals chunks of units' pieces (:meth:`__call__`); what every chunk shares."""

    u: Units
    profile: Profile
    edges: np.ndarray
    dims: tuple[int, ...]
    draws: Draws
    sends: np.ndarray         # per fate: its requests go somewhere
    migrated: np.ndarray      # per fate: a migrated organisation's (free-token credit applies)

    def __post_init__(self) -> None:
        # credit is drawn by requests sent only (a pair left out of the cells draws nothing)
        assert not (self.migrated & ~self.sends).any()

    def __call__(self, rows: slice, src: _Source) -> tuple[np.ndarray, ...]:
        """(cell key, requests, tokens in/out, free in/out) of each (piece, bin) of the pieces
        ``rows`` (whole units, all reading ``src``) that sends requests."""
        u, edges = self.u, self.edges
        t0, t1, unit, fate = u.t0[rows], u.t1[rows], u.piece_unit[rows], u.fate[rows]
        piece, bins, cut = _expand(t0, t1, edges, u.merged[rows])
        slot = src.slot[unit][piece] + bins * src.stride
        n, tin, tout = _drawn(src, slot, bins if src.by_bin else slot)
        if cut.size:
            at = piece[cut]
            lo = np.maximum(t0[at], edges[bins[cut]])
            hi = np.minimum(t1[at], edges[bins[cut] + 1])
            region = u.region[unit[at]]
            weight = self.profile.integral(region, hi) - self.profile.integral(region, lo)
            _deal(unit[at], bins[cut], weight, cut, n, tin, tout)
        keep = np.flatnonzero(self.sends[fate][piece] & (n > 0))
        kept = piece[keep]
        n, tin, tout = n[keep], tin[keep], tout[keep]
        # in (unit, time) order; the pairs left out have no tokens, so they would draw nothing
        credited = self.migrated[fate] & (u.credit[unit] > 0)
        free_in, free_out = _credit_paid(credited[kept], unit[kept], tin, tout, u.credit)
        _, r, g, m, f = self.dims
        cell = ((u.region[unit] * g + u.segment[unit]) * m + u.model[unit]) * f + fate
        key = bins[keep] * (r * g * m * f) + cell[kept]
        return key, n, tin, tout, free_in, free_out

def _drawn(src: _Source, slot: np.ndarray,
           at: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each (unit, bin)'s count (at ``slot`` of ``src``) and its exact integer share of its
    cohort's tokens in the bin (at ``at`` of the source's whole counts and tokens): the cohort's
    tokens cut at the cumulative counts of its columns before and up to the unit's, so the shares
    add up to the tokens."""
    n = src.counts[slot]
    upto = src.cum[slot]
    before = upto - n
    whole = src.whole[at]
    tin, tout = (tokens * upto // whole - tokens * before // whole
                 for tokens in (src.tokens_in[at], src.tokens_out[at]))
    return n, tin, tout


def unit_draws(draws: Draws, u: Units, c: int,
               counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bin, column) tables of requests and tokens in/out of cohort ``c``'s units, given its split
    ``counts`` (:func:`cohort_split`): what :func:`split` reads pair by pair, in full."""
    nb, k = counts.shape
    src = _cohort_source(draws, c, counts, np.arange(k))
    bins = np.repeat(np.arange(nb), k)
    column = np.tile(np.arange(k), nb)
    n, tin, tout = _drawn(src, src.slot[column] + bins * k, bins)
    return n.reshape(nb, k), tin.reshape(nb, k), tout.reshape(nb, k)


def _compact(key: np.ndarray, *values: np.ndarray) -> tuple[np.ndarray, ...]:
    """One row per distinct cell key (sorted), values summed."""
    uniq, inverse = np.unique(key, return_inverse=True)
    inverse = inverse.ravel()
    return (uniq, *(np.bincount(inverse, weights=v, minlength=uniq.size).astype(np.int64)
                    for v in values))


def _span(t0: np.ndarray, t1: np.ndarray,
          edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per piece: its first and last bin, and whether it covers each of them only in part (only a
    piece's first and last bin can be so)."""
    first = np.searchsorted(edges, t0, side="right") - 1
    last = np.searchsorted(edges, t1, side="left") - 1
    first = np.clip(first, 0, edges.size - 2)
    last = np.clip(np.maximum(last, first), 0, edges.size - 2)
    head = (t0 > edges[first]) | (t1 < edges[first + 1])
    tail = (t0 > edges[last]) | (t1 < edges[last + 1])
    return first, last, head, tail


def _expand(t0: np.ndarray, t1: np.ndarray, edges: np.ndarray,
            merged: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(piece, bin) for every bin each piece deals, in (unit, time) order, and the pairs whose bin
    the piece covers only in part. A piece deals every bin it overlaps, except a ``merged`` piece:
    its whole bins are its group's, so it deals only the bins it is cut in (its first and its
    last; a merged piece has a whole bin, so these are two different bins).

    The pairs are made for the bins dealt only — not for every bin overlapped and then filtered —
    in the same order as the filter's."""
    first, last, head, tail = _span(t0, t1, edges)
    counts = np.where(merged, head.astype(np.int64) + tail, last - first + 1)
    ends = np.cumsum(counts)
    starts = ends - counts
    # a merged piece's pairs start at its last bin when its first is whole
    begin = np.where(merged & ~head, last, first)
    piece = np.repeat(np.arange(t0.size), counts)
    bins = np.arange(piece.size) - np.repeat(starts - begin, counts)
    both = np.flatnonzero(merged & head & tail)
    bins[ends[both] - 1] = last[both]
    cut = np.zeros(piece.size, dtype=bool)
    dealt = counts > 0
    cut[starts[(head | merged) & dealt]] = True
    cut[(ends - 1)[(tail | merged) & dealt]] = True
    return piece, bins, np.flatnonzero(cut)


def _deal(unit: np.ndarray, bins: np.ndarray, weight: np.ndarray, cut: np.ndarray,
          n: np.ndarray, tin: np.ndarray, tout: np.ndarray) -> None:
    """Apportion the count and tokens of each (unit, bin) cut by a state change over the pieces
    that share the bin: ``n``, ``tin``, ``tout`` hold each pair's whole bin's, and the pairs
    ``cut`` (with their ``unit``, ``bins`` and intensity ``weight``) get their share in place.

    A cut bin is apportioned by the pieces' share of the bin's intensity with exact integer
    (systematic) rounding: deterministic, so two policies that cut the same bin the same way
    apportion it the same way (common random numbers down to the request).
    """
    key = unit * (int(bins.max()) + 1) + bins
    starts = np.flatnonzero(np.diff(key, prepend=-1))
    group = np.repeat(np.arange(starts.size), np.diff(np.append(starts, key.size)))
    w = weight
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


def _credit_paid(credited: np.ndarray, org: np.ndarray, tin: np.ndarray, tout: np.ndarray,
                 credit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Free tokens used where ``credited`` (amounts of a migrated organisation with credit): its
    credit pays for its first tokens at the provider (the ledger contract's draw,
    :func:`scenarios.ledger.credit_draws`, in (unit, time) order). Nearly every amount dealt is
    credited, so the draw runs over all of them with the others not metered (drawing nothing)
    rather than on the credited ones gathered and the results scattered back."""
    if not credited.any():
        return np.zeros_like(tin), np.zeros_like(tout)
    return credit_draws(org, tin, tout, credit, metered=credited)


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
