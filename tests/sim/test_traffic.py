"""The traffic split: organisations counted apart from their first state change on, exactly
conserving their cohort's draw, with the multinomial law of a Poisson total split by rate."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from scenarios.loader import load
from scenarios.policy import Policy
from sim.model import simulate_agents
from sim.pieces import Pieces, build_pieces
from sim.replication import Setup
from sim.traffic import Draws, Units, cohort_split, draw, unit_draws, units


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
        assert counts.shape == (nb, u.apart[c].size + 1)
        # every unit's counts and tokens add up to its cohort's draw, bin by bin, exactly
        n, tin, tout = unit_draws(draws, u, c, counts)
        assert n.shape == (nb, counts.shape[1]) and (n >= 0).all() and (tin >= 0).all()
        for table, drawn in ((n, draws.n[c]), (tin, draws.tokens_in[c]),
                             (tout, draws.tokens_out[c])):
            assert np.array_equal(table.sum(axis=1), drawn)
        # nothing counted apart before an organisation's first change; the rest has no requests
        # where it has no rate (its members all counted apart)
        before = np.arange(nb)[:, None] < u.start[c][None, :]
        assert not n[:, :-1][before].any()
        if mine.size == u.apart[c].size:          # no rest unit: it never gets a request
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
        if counted[r]:
            continue
        n, _, _ = unit_draws(draws, u, c, cohort_split(pop, draws, u, c))
        t1 = u.t1[u.piece_unit == r]
        busy = np.flatnonzero(n[:, -1] > 0)
        assert busy.size == 0 or t1.max() >= edges[busy.max() + 1] - 1e-9
    # every unit's pieces run in time order, without overlaps
    same = u.piece_unit[1:] == u.piece_unit[:-1]
    assert np.all(np.diff(u.piece_unit) >= 0) and np.all(u.t0[1:][same] >= u.t1[:-1][same] - 1e-9)


def test_split_follows_the_multinomial_law() -> None:
    """Given the cohort total N in a bin, an organisation counted apart has Binomial(N, r/R)
    requests: over many split streams, the mean and variance of its count agree with theory."""
    setup = Setup.of(load("openai-2024-cn-hk").scenario, 0, 0.02)
    draws, pieces, u = _units(setup, 7)
    own = np.flatnonzero(pieces.cohort_of < 0)
    j = own[np.argmax(setup.pop.rate[own])]          # the busiest organisation counted apart
    c = int(draws.cohort[j])
    b = draws.n.shape[1] - 1                          # the last bin: everyone is counted apart
    column = int(np.flatnonzero(u.apart[c] == j)[0])
    counts = np.array([
        cohort_split(setup.pop, replace(draws, split_seeds=tuple(
            np.random.SeedSequence([k, i]) for i in range(len(draws.split_seeds)))), u, c)[b, column]
        for k in range(400)])
    n_total, p = int(draws.n[c, b]), setup.pop.rate[j] / draws.rate[c]
    assert n_total > 50 and 0.01 < p < 0.99
    mean, var = n_total * p, n_total * p * (1 - p)
    assert abs(counts.mean() - mean) < 4.0 * np.sqrt(var / counts.size)
    # the sample variance of 400 draws is within ~25 % of the binomial variance
    assert abs(counts.var(ddof=1) / var - 1.0) < 0.3


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
                 has_rest=np.zeros(1, dtype=bool), piece_unit=empty.astype(np.int64), t0=empty,
                 t1=empty, fate=empty.astype(np.int64))


