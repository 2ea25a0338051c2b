"""The traffic split: organisations counted apart from their first state change on, exactly
conserving their cohort's draw, with the multinomial law of a Poisson total split by rate."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from scenarios.ledger import credit_draws
from scenarios.loader import load
from scenarios.policy import Policy
from sim import traffic
from sim.model import simulate_agents
from sim.pieces import ALLOW, NONE, Pieces, build_pieces
from sim.replication import Setup
from sim.traffic import Cells, Draws, Units, cohort_split, draw, split, unit_draws, units


def _units(setup: Setup, seed: int) -> tuple[Draws, Pieces, Units]:
    s = setup.s
    seq = np.random.SeedSequence(seed).spawn(1)[0]
    policy = Policy(s)
    tl = simulate_agents(s, policy, setup.pop, seed)
    pieces = build_pieces(s, policy, setup.pop, tl.changes)
    draws = draw(s, setup.pop, setup.profile, setup.edges, seq)
    return draws, pieces, units(setup.pop, draws.cohort, pieces, tl.credit, setup.edges)


def test_units_conserve_each_cohort_draw_and_start_at_the_first_change(small_setup: Setup) -> None:
    pop, edges = small_setup.pop, small_setup.edges
    draws, pieces, u = _units(small_setup, 3)
    own = np.flatnonzero(pieces.cohort_of < 0)
    assert own.size > 100
    # every organisation counted apart is one unit, of its own cohort, with its own credit
    apart = np.concatenate(u.apart)
    assert np.array_equal(np.sort(apart), own)
    assert np.array_equal(draws.cohort[apart], np.repeat(np.arange(len(u.apart)),
                                                         [a.size for a in u.apart]))
    assert u.cohorts.size == np.unique(u.cohorts).size == np.unique(draws.cohort).size
    nb = edges.size - 1
    for i, c in enumerate(u.cohorts.tolist()):
        mine = np.arange(u.first[i], u.first[i + 1])
        assert np.all(u.cohort[mine] == c)
        assert np.array_equal(u.column[mine], np.arange(mine.size))
        counts = cohort_split(pop, draws, u, c)
        k, g = u.apart[c].size, u.groups[c].size
        assert counts.shape == (nb, k + g + 1) if k else (nb, 1)
        # every unit's counts and tokens add up to its cohort's draw, bin by bin, exactly
        n, tin, tout = unit_draws(draws, u, c, counts)
        assert n.shape == (nb, counts.shape[1]) and (n >= 0).all() and (tin >= 0).all()
        for table, drawn in ((n, draws.n[c]), (tin, draws.tokens_in[c]),
                             (tout, draws.tokens_out[c])):
            assert np.array_equal(table.sum(axis=1), drawn)
        # nothing counted apart before an organisation's first change, nor in its group's bins;
        # a group has requests only where it has members; the rest has none where it has no rate
        # (its members all counted apart)
        before = np.arange(nb)[:, None] < u.start[c][None, :]
        assert not n[:, :k][before | (_group_of(u, c, nb) >= 0)].any()
        for i_g in range(g):
            assert not n[:, k + i_g][~(_group_of(u, c, nb) == i_g).any(axis=1)].any()
        if mine.size == k + g:          # no rest unit: it never gets a request
            assert not n[:, -1].any()
    starts = np.concatenate(u.start)
    assert (starts > 0).any()
    # nor dealt to pieces before it; organisations counted apart keep their credit, rests have none
    counted = u.column < np.array([a.size for a in u.apart])[u.cohort]
    org = np.empty(u.cohort.size, dtype=np.int64)
    org[counted] = np.concatenate([u.apart[c] for c in u.cohorts.tolist()])
    first_bin = np.full(u.cohort.size, 0)
    first_bin[counted] = np.concatenate([u.start[c] for c in u.cohorts.tolist()])
    mine = counted[u.piece_unit]
    assert np.all(u.t0[mine] >= edges[first_bin[u.piece_unit[mine]]])
    assert not u.credit[~counted].any()
    # the rest units' pieces cover every bin in which they have requests
    for i, c in enumerate(u.cohorts.tolist()):
        r = int(u.first[i + 1]) - 1
        if u.column[r] < u.apart[c].size + u.groups[c].size:
            continue
        n, _, _ = unit_draws(draws, u, c, cohort_split(pop, draws, u, c))
        t1 = u.t1[u.piece_unit == r]
        busy = np.flatnonzero(n[:, -1] > 0)
        assert busy.size == 0 or t1.max() >= edges[busy.max() + 1] - 1e-9
    # every unit's pieces run in time order, without overlaps
    same = u.piece_unit[1:] == u.piece_unit[:-1]
    assert np.all(np.diff(u.piece_unit) >= 0) and np.all(u.t0[1:][same] >= u.t1[:-1][same] - 1e-9)


def _group_of(u: Units, c: int, nb: int) -> np.ndarray:
    """(bin, member) -> the group the member's requests go to in that bin, -1 for none."""
    out = np.full((nb, u.apart[c].size), -1)
    for column, lo, hi, group in u.merge[c].tolist():
        assert (out[lo : hi + 1, column] == -1).all()   # one piece per whole bin
        out[lo : hi + 1, column] = group
    return out


def test_split_follows_the_multinomial_law() -> None:
    """Given the cohort total N in a bin, an organisation counted apart has Binomial(N, r/R)
    requests, and a group Binomial(N, (sum of its members' r)/R): over many split streams, the
    means and variances of their counts agree with theory."""
    setup = Setup.of(load("openai-2024-cn-hk").scenario, 0, 0.02)
    draws, _, u = _units(setup, 7)
    rate, nb = setup.pop.rate, draws.n.shape[1]
    b = nb - 1                                        # the last bin: everyone is counted apart
    # the busiest cohort's busiest organisation counted apart on its own there, and its busiest group
    c = max((c for c in u.cohorts.tolist() if u.apart[c].size and u.groups[c].size),
            key=lambda c: draws.n[c, b])
    group = _group_of(u, c, nb)[b]
    alone = np.flatnonzero(group < 0)
    column = int(alone[np.argmax(rate[u.apart[c][alone]])])
    g_rate = np.bincount(group[group >= 0], weights=rate[u.apart[c][group >= 0]],
                         minlength=u.groups[c].size)
    g = int(np.argmax(g_rate))
    split = np.array([
        cohort_split(setup.pop, replace(draws, split_seeds=tuple(
            np.random.SeedSequence([k, i]) for i in range(len(draws.split_seeds)))), u, c)[b]
        for k in range(400)])
    n_total = int(draws.n[c, b])
    assert n_total > 50 and np.array_equal(split.sum(axis=1), np.full(400, n_total))
    for counts, r in ((split[:, column], rate[u.apart[c][column]]),
                      (split[:, u.apart[c].size + g], g_rate[g])):
        p = r / draws.rate[c]
        assert 0.01 < p < 0.99
        mean, var = n_total * p, n_total * p * (1 - p)
        assert abs(counts.mean() - mean) < 4.0 * np.sqrt(var / counts.size)
        # the sample variance of 400 draws is within ~25 % of the binomial variance
        assert abs(counts.var(ddof=1) / var - 1.0) < 0.3


def test_groups_gather_exactly_the_whole_bins_that_need_no_credit(small_setup: Setup) -> None:
    """An organisation's whole bin goes to its cohort's group of that fate exactly when the
    fate is no migrated organisation's or the organisation has no credit; its cut bins and its
    bins with credit to draw stay its own."""
    edges = small_setup.edges
    nb = edges.size - 1
    s = small_setup.s
    seq = np.random.SeedSequence(5).spawn(1)[0]
    policy = Policy(s)
    tl = simulate_agents(s, policy, small_setup.pop, 5)
    pieces = build_pieces(s, policy, small_setup.pop, tl.changes)
    draws = draw(s, small_setup.pop, small_setup.profile, edges, seq)
    u = units(small_setup.pop, draws.cohort, pieces, tl.credit, edges)
    migrated = np.array([f.migrated for f in pieces.fates])
    seen = {"merged": 0, "own": 0}
    for i, c in enumerate(u.cohorts.tolist()):
        group = _group_of(u, c, nb)
        for column, org in enumerate(u.apart[c].tolist()):
            unit = int(u.first[i]) + column
            mine = u.piece_unit == unit
            for t0, t1, fate, merged in zip(u.t0[mine], u.t1[mine], u.fate[mine], u.merged[mine],
                                            strict=True):
                whole = np.flatnonzero((edges[:-1] >= t0) & (edges[1:] <= t1))
                assert merged == ((not migrated[fate] or tl.credit[org] <= 0) and whole.size > 0)
                if merged:
                    assert (u.groups[c][group[whole, column]] == fate).all()
                else:
                    assert (group[whole, column] == -1).all()
                seen["merged" if merged else "own"] += whole.size
            # the bins it is cut in (or shares with other pieces) are its own
            cuts = np.searchsorted(edges, u.t0[mine][1:], side="right") - 1
            assert (group[cuts[edges[cuts] < u.t0[mine][1:]], column] == -1).all()
    assert seen["merged"] > 1000 and seen["own"] > 1000


def test_token_shares_are_the_exact_integer_cuts_of_the_cumulative_counts() -> None:
    """A column's tokens are floor(T·C_k/N) - floor(T·C_(k-1)/N) for the cumulative counts C:
    whole, non-negative, adding up to T, and in proportion to the counts within one token."""
    counts = np.array([[3, 0, 5, 2], [0, 0, 0, 0], [1, 1, 1, 0], [0, 7, 0, 0]])
    tokens = np.array([1001, 0, 10, 69])
    draws = Draws(cohort=np.zeros(1, dtype=np.int64), n=counts.sum(axis=1)[None, :],
                  tokens_in=tokens[None, :], tokens_out=2 * tokens[None, :],
                  rate=np.ones(1), split_seeds=())
    u = replace(_one_cohort(counts.shape[1] - 1), has_rest=np.ones(1, dtype=bool))
    n, tin, tout = unit_draws(draws, u, 0, counts)
    assert np.array_equal(n, counts)
    assert tin.tolist() == [[300, 0, 500, 201], [0, 0, 0, 0], [3, 3, 4, 0], [0, 69, 0, 0]]
    assert np.array_equal(tin.sum(axis=1), tokens) and np.array_equal(tout.sum(axis=1), 2 * tokens)
    assert np.all(np.abs(tin - tokens[:, None] * counts / np.maximum(counts.sum(axis=1), 1)[:, None]) < 1)


def _one_cohort(k: int) -> Units:
    """Units of one cohort with ``k`` organisations counted apart and a rest (no pieces)."""
    empty = np.zeros(0)
    return Units(cohort=np.zeros(k + 1, dtype=np.int64), column=np.arange(k + 1),
                 region=np.zeros(k + 1, dtype=np.int64), segment=np.zeros(k + 1, dtype=np.int64),
                 model=np.zeros(k + 1, dtype=np.int64), credit=np.zeros(k + 1, dtype=np.int64),
                 cohorts=np.zeros(1, dtype=np.int64), first=np.array([0, k + 1]),
                 apart=(np.arange(k),), start=(np.zeros(k, dtype=np.int64),),
                 groups=(np.zeros(0, dtype=np.int64),), merge=(np.zeros((0, 4), dtype=np.int64),),
                 has_rest=np.zeros(1, dtype=bool), piece_unit=empty.astype(np.int64), t0=empty,
                 t1=empty, fate=empty.astype(np.int64), merged=empty.astype(bool))




def test_split_conserves_every_cohort_draw_in_the_cells(small_setup: Setup) -> None:
    """Dealt to units, groups and rests, every drawn request and token lands in exactly one cell
    of its (bin, region, segment, model): with every fate sending (a churned organisation's
    requests kept), the cells add up to the draws exactly; and the credit pays no more than was
    granted."""
    for setup in (small_setup, Setup.of(load("staged-percent-rollout").scenario, 0, 0.05)):
        s, pop, edges = setup.s, setup.pop, setup.edges
        seq = np.random.SeedSequence(11).spawn(1)[0]
        policy = Policy(s)
        tl = simulate_agents(s, policy, pop, 11)
        pieces = build_pieces(s, policy, pop, tl.changes)
        assert any(f.action == NONE for f in pieces.fates)
        sending = replace(pieces, fates=tuple(f._replace(action=ALLOW) if f.action == NONE else f
                                             for f in pieces.fates))
        draws = draw(s, pop, setup.profile, edges, seq)
        u = units(pop, draws.cohort, sending, tl.credit, edges)
        assert sum(g.size for g in u.groups) > 0
        cells = split(s, pop, setup.profile, edges, draws, sending, tl.credit)
        dims = (edges.size - 1, len(s.regions), len(s.segments), len(s.incumbent.models))
        at = np.ravel_multi_index((cells.bin, cells.region, cells.segment, cells.model), dims)
        n_models = len(s.incumbent.models)
        key = (pop.region * len(s.segments) + pop.segment) * n_models + pop.model
        first = np.unique(draws.cohort, return_index=True)[1]
        cohort_key = key[first]                      # cohorts in key order (sim.traffic.draw)
        for got, drawn in ((cells.n, draws.n), (cells.tokens_in, draws.tokens_in),
                           (cells.tokens_out, draws.tokens_out)):
            want = np.zeros((dims[0], math.prod(dims[1:])), dtype=np.int64)
            want[:, cohort_key] = drawn.T
            assert np.array_equal(np.bincount(at, weights=got, minlength=math.prod(dims)),
                                  want.ravel())
        assert (cells.free_in >= 0).all() and (cells.free_out >= 0).all()
        assert 0 < int(cells.free_in.sum() + cells.free_out.sum()) <= int(tl.credit.sum())
        assert (cells.free_in <= cells.tokens_in).all() and (cells.free_out <= cells.tokens_out).all()


def test_every_way_of_summing_the_cells_gives_the_same_cells(
        small_setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dense float sums (exact below 2**53), dense integer sums and sorted sparse sums agree
    exactly, field by field."""
    s, pop, edges = small_setup.s, small_setup.pop, small_setup.edges
    policy = Policy(s)
    tl = simulate_agents(s, policy, pop, 13)
    pieces = build_pieces(s, policy, pop, tl.changes)
    draws = draw(s, pop, small_setup.profile, edges, np.random.SeedSequence(13).spawn(1)[0])
    args = (s, pop, small_setup.profile, edges, draws, pieces, tl.credit)
    floats = split(*args)
    monkeypatch.setattr(traffic, "FLOAT_EXACT", 0)
    ints = split(*args)
    monkeypatch.setattr(traffic, "DENSE_CELLS", 0)
    sparse = split(*args)
    assert floats.n.size > 1000 and floats.free_in.sum() > 0
    for field in Cells.__slots__:
        want = getattr(floats, field)
        for other in (ints, sparse):
            got = getattr(other, field)
            assert got.dtype == want.dtype and np.array_equal(got, want), field


def _expand_then_filter(t0: np.ndarray, t1: np.ndarray, edges: np.ndarray,
                        merged: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs :func:`sim.traffic._expand` replaced: every bin each piece overlaps, then those
    of merged pieces' whole bins filtered out (the cut ones as indices into what is left)."""
    first, last, head, tail = traffic._span(t0, t1, edges)
    counts = last - first + 1
    ends = np.cumsum(counts)
    piece = np.repeat(np.arange(t0.size), counts)
    bins = np.arange(piece.size) - (ends - counts - first)[piece]
    cut = np.zeros(piece.size, dtype=bool)
    cut[(ends - counts)[head]] = True
    cut[(ends - 1)[tail]] = True
    live = cut | ~merged[piece]
    return piece[live], bins[live], np.flatnonzero(cut[live])


def _random_pieces(rng: np.random.Generator, edges: np.ndarray,
                   n_units: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Units' pieces in (unit, time) order, ends often on bin edges, merged where allowed (a
    whole bin)."""
    t0s, t1s = [], []
    for _ in range(n_units):
        points = np.concatenate([rng.uniform(0, edges[-1], rng.integers(0, 6)),
                                 rng.choice(edges, rng.integers(0, 4))])
        points = np.unique(np.concatenate([[rng.choice([0.0, rng.uniform(0, edges[-1])])],
                                           points, [edges[-1]]]))
        points = points[points >= points[0]]
        t0s.append(points[:-1])
        t1s.append(points[1:])
    t0, t1 = np.concatenate(t0s), np.concatenate(t1s)
    first, last, head, tail = traffic._span(t0, t1, edges)
    merged = (first + head <= last - tail) & (rng.random(t0.size) < 0.6)
    return t0, t1, merged


def test_expand_makes_exactly_the_pairs_of_expanding_then_filtering() -> None:
    """Pairs made for the bins dealt only equal every overlapped bin filtered, bit for bit: seeded
    random pieces, pieces on bin edges, merged with and without cut ends, one piece, none."""
    rng = np.random.default_rng(23)
    edges = np.minimum(np.arange(13) * 2.0, 23.0)        # a short last bin
    cases = [_random_pieces(rng, edges, k) for k in (1, 2, 5, 40, 200)]
    cases += [(np.zeros(0), np.zeros(0), np.zeros(0, dtype=bool)),
              (np.array([0.0]), np.array([23.0]), np.array([True])),     # whole window, merged
              (np.array([0.5]), np.array([22.5]), np.array([True])),     # cut at both ends
              (np.array([0.5]), np.array([4.0]), np.array([True])),      # cut at its first only
              (np.array([2.0]), np.array([5.5]), np.array([True])),      # cut at its last only
              (np.array([3.0]), np.array([3.5]), np.array([False])),     # inside one bin
              (np.array([0.0, 4.0, 4.0]), np.array([4.0, 4.0, 23.0]),   # an empty piece
               np.array([True, False, True]))]
    for t0, t1, merged in cases:
        want = _expand_then_filter(t0, t1, edges, merged)
        got = traffic._expand(t0, t1, edges, merged)
        for w, g in zip(want, got, strict=True):
            assert g.dtype == w.dtype and np.array_equal(g, w)


def _old_deal_call(self: traffic._Deal, rows: slice, src: traffic._Source) -> tuple[np.ndarray, ...]:
    """:meth:`sim.traffic._Deal.__call__` as it was: every overlapped pair, filtered; the cohort's
    whole counts and tokens read from the draws at (cohort, bin)."""
    u, edges, draws = self.u, self.edges, self.draws
    t0, t1, unit, fate = u.t0[rows], u.t1[rows], u.piece_unit[rows], u.fate[rows]
    piece, bins, cut = _expand_then_filter(t0, t1, edges, u.merged[rows])
    slot = src.slot[unit][piece] + bins * src.stride
    at = (u.cohort[unit] * draws.n.shape[1])[piece] + bins
    n = src.counts[slot]
    upto = src.cum[slot]
    before = upto - n
    whole = np.maximum(draws.n.ravel()[at], 1)
    tin, tout = (tokens * upto // whole - tokens * before // whole
                 for tokens in (draws.tokens_in.ravel()[at], draws.tokens_out.ravel()[at]))
    if cut.size:
        lo = np.maximum(t0[piece[cut]], edges[bins[cut]])
        hi = np.minimum(t1[piece[cut]], edges[bins[cut] + 1])
        region = u.region[unit[piece[cut]]]
        weight = self.profile.integral(region, hi) - self.profile.integral(region, lo)
        traffic._deal(unit[piece[cut]], bins[cut], weight, cut, n, tin, tout)
    keep = np.flatnonzero(self.sends[fate][piece] & (n > 0))
    kept = piece[keep]
    n, tin, tout = n[keep], tin[keep], tout[keep]
    credited = self.migrated[fate] & (u.credit[unit] > 0)
    free_in, free_out = traffic._credit_paid(credited[kept], unit[kept], tin, tout, u.credit)
    _, r, g, m, f = self.dims
    cell = ((u.region[unit] * g + u.segment[unit]) * m + u.model[unit]) * f + fate
    key = bins[keep] * (r * g * m * f) + cell[kept]
    return key, n, tin, tout, free_in, free_out


def test_the_deal_gives_the_cells_of_the_deal_it_replaced(
        small_setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every chunk dealt as before (every overlapped pair, then filtered; whole counts and tokens
    read from the draws): the same cells, field by field, for two policies' pieces."""
    for setup, seed in ((small_setup, 5), (Setup.of(load("staged-percent-rollout").scenario, 0, 0.05), 6)):
        s, pop, edges = setup.s, setup.pop, setup.edges
        policy = Policy(s)
        tl = simulate_agents(s, policy, pop, seed)
        pieces = build_pieces(s, policy, pop, tl.changes)
        draws = draw(s, pop, setup.profile, edges, np.random.SeedSequence(seed).spawn(1)[0])
        args = (s, pop, setup.profile, edges, draws, pieces, tl.credit)
        got = split(*args)
        with monkeypatch.context() as m:
            m.setattr(traffic._Deal, "__call__", _old_deal_call)
            want = split(*args)
        assert want.n.size > 1000 and want.free_in.sum() > 0
        for field in Cells.__slots__:
            assert np.array_equal(getattr(got, field), getattr(want, field)), field


def _credit_paid_by_gathering(credited: np.ndarray, org: np.ndarray, tin: np.ndarray,
                              tout: np.ndarray, credit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`sim.traffic._credit_paid` as it was: the credited amounts gathered, drawn, and
    scattered back."""
    free_in = np.zeros_like(tin)
    free_out = np.zeros_like(tout)
    idx = np.flatnonzero(credited)
    if idx.size == 0:
        return free_in, free_out
    free_in[idx], free_out[idx] = credit_draws(org[idx], tin[idx], tout[idx], credit)
    return free_in, free_out


def test_credit_paid_over_all_amounts_is_the_credit_paid_over_the_credited_ones() -> None:
    """Drawing with the others not metered gives, bit for bit, what gathering the credited amounts
    gave: seeded random units' amounts, credited in runs and here and there, credits exhausted and
    not; one amount; none."""
    rng = np.random.default_rng(41)
    cases = [np.zeros(0, dtype=bool), np.array([True]), np.array([False])]
    cases += [rng.random(size) < p for size in (3, 50, 4000) for p in (0.0, 0.3, 0.97, 1.0)]
    for credited in cases:
        size = credited.size
        org = np.sort(rng.integers(0, max(size // 10, 1), size))
        credited = credited | (org % 3 == 0) & (rng.random(size) < 0.5)
        tin, tout = rng.integers(0, 5000, size), rng.integers(0, 2000, size)
        credit = rng.integers(0, 60_000, int(org.max(initial=0)) + 1)
        got = traffic._credit_paid(credited, org, tin, tout, credit)
        want = _credit_paid_by_gathering(credited, org, tin, tout, credit)
        for g, w in zip(got, want, strict=True):
            assert g.dtype == w.dtype and np.array_equal(g, w)
