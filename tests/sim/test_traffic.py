"""The traffic split: organisations counted apart from their first state change on, exactly
conserving their cohort's draw, with the multinomial law of a Poisson total split by rate."""

from __future__ import annotations

import numpy as np

from scenarios.policy import Policy
from sim.model import simulate_agents
from sim.pieces import Pieces, build_pieces
from sim.replication import Setup
from sim.traffic import Draws, Units, draw, units


def _units(setup: Setup, seed: int) -> tuple[Draws, Pieces, Units]:
    s = setup.s
    seq = np.random.SeedSequence(seed).spawn(1)[0]
    policy = Policy(s)
    tl = simulate_agents(s, policy, setup.pop, seed)
    pieces = build_pieces(s, policy, setup.pop, tl.changes)
    draws = draw(s, setup.pop, setup.profile, setup.edges, seq)
    return draws, pieces, units(setup.pop, draws, pieces, tl.credit, setup.edges)


def test_units_conserve_each_cohort_draw_and_start_at_the_first_change(small_setup: Setup) -> None:
    draws, pieces, u = _units(small_setup, 3)
    own = np.flatnonzero(pieces.cohort_of < 0)
    assert own.size > 100
    # every unit's counts and tokens add up to its cohort's draw, bin by bin, exactly
    cohort = draws.cohort[np.concatenate([own, np.zeros(u.n.shape[0] - own.size, dtype=np.int64)])]
    rest = np.arange(own.size, u.n.shape[0])
    # a rest unit stands for the cohort of its region, segment and model
    key = (u.region * 100 + u.segment) * 100 + u.model
    cohort_key = {int(k): int(draws.cohort[i]) for i, k in enumerate(
        (small_setup.pop.region * 100 + small_setup.pop.segment) * 100 + small_setup.pop.model)}
    cohort[rest] = [cohort_key[int(k)] for k in key[rest]]
    assert np.unique(cohort[rest]).size == rest.size
    for table, drawn in ((u.n, draws.n), (u.tokens_in, draws.tokens_in),
                         (u.tokens_out, draws.tokens_out)):
        summed = np.zeros_like(drawn)
        np.add.at(summed, cohort, table)
        dealt = np.unique(cohort)
        assert np.array_equal(summed[dealt], drawn[dealt])
    # nothing counted apart before an organisation's first change, nor dealt to pieces before it
    edges = small_setup.edges
    start = np.searchsorted(edges, pieces.since[own], side="right") - 1
    before = np.arange(edges.size - 1)[None, :] < start[:, None]
    assert before.any() and not u.n[: own.size][before].any()
    mine = u.piece_unit < own.size
    assert np.all(u.t0[mine] >= edges[start[u.piece_unit[mine]]])
    # the rest units' pieces cover every bin in which they have requests
    for r in rest.tolist():
        t1 = u.t1[u.piece_unit == r]
        busy = np.flatnonzero(u.n[r] > 0)
        assert busy.size == 0 or t1.max() >= edges[busy.max() + 1] - 1e-9


def test_split_follows_the_multinomial_law() -> None:
    """Given the cohort total N in a bin, an organisation counted apart has Binomial(N, r/R)
    requests: over many split streams, the mean and variance of its count agree with theory."""
    from dataclasses import replace

    from scenarios.loader import load

    setup = Setup.of(load("openai-2024-cn-hk").scenario, 0, 0.02)
    draws, pieces, _ = _units(setup, 7)
    own = np.flatnonzero(pieces.cohort_of < 0)
    j = own[np.argmax(setup.pop.rate[own])]          # the busiest organisation counted apart
    c = int(draws.cohort[j])
    b = draws.n.shape[1] - 1                          # the last bin: everyone is counted apart
    row = int(np.flatnonzero(own == j)[0])
    credit = np.zeros(setup.pop.size, dtype=np.int64)
    counts = np.array([
        units(setup.pop, replace(draws, split_seeds=tuple(
            np.random.SeedSequence([k, i]) for i in range(len(draws.split_seeds)))),
            pieces, credit, setup.edges).n[row, b]
        for k in range(400)])
    n_total, p = int(draws.n[c, b]), setup.pop.rate[j] / draws.rate[c]
    assert n_total > 50 and 0.01 < p < 0.99
    mean, var = n_total * p, n_total * p * (1 - p)
    assert abs(counts.mean() - mean) < 4.0 * np.sqrt(var / counts.size)
    # the sample variance of 400 draws is within ~25 % of the binomial variance
    assert abs(counts.var(ddof=1) / var - 1.0) < 0.3
