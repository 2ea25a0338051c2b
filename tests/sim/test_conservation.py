"""Conservation: of requests in every bin, of money (revenue = Σ tokens × price exactly), of
traffic between a run and its baseline, and of organisations across states."""

from __future__ import annotations

import numpy as np

from scenarios.rundir import PATHS
from sim.outcome import prices
from sim.replication import FLOW_METRICS, ReplicationResult, Setup, engine_pass
from sim.traffic import draw


def _pass(setup: Setup, baseline: bool = False):
    seq = np.random.SeedSequence(5).spawn(1)[0]
    draws = draw(setup.s, setup.pop, setup.profile, setup.edges, seq)
    return draws, engine_pass(setup, setup.base if baseline else setup.s, seq, draws)


def test_requests_balance_in_every_bin(small_result: ReplicationResult) -> None:
    f = {m: small_result.flows[i] for i, m in enumerate(FLOW_METRICS)}
    assert np.array_equal(f["requests"], f["allowed"] + f["warned"] + f["blocked"] + f["failed"])
    assert f["requests"].sum() > 0 and f["blocked"].sum() > 0 and f["warned"].sum() > 0


def test_revenue_is_tokens_times_price_exactly(small_setup: Setup) -> None:
    _, run = _pass(small_setup)
    s = small_setup.s
    cells, out = run.cells, run.out
    k = run.fa.provider[cells.fate]
    names = [m.name for m in s.incumbent.models]
    expected = np.zeros(cells.n.size)
    for c in range(cells.n.size):
        model = s.providers[k[c]].substitute_for(names[cells.model[c]])
        share_in = out.tokens_in[c] - _free_in(cells, out, c)
        share_out = out.tokens_out[c] - (out.free_tokens[c] - _free_in(cells, out, c))
        expected[c] = (share_in * model.price_in + share_out * model.price_out) / 1e6
    assert np.array_equal(out.revenue_usd, expected)
    assert out.free_tokens.sum() > 0  # migrants used their free-token credits
    pin, _ = prices(s)
    assert pin.shape == (len(s.providers), len(s.incumbent.models))


def _free_in(cells, out, c: int) -> int:
    return int(cells.free_in[c] * out.served[c] // max(cells.n[c], 1))


def test_relay_markup_is_not_provider_revenue(small_result: ReplicationResult, small_setup: Setup) -> None:
    f = {m: small_result.flows[i] for i, m in enumerate(FLOW_METRICS)}
    relay = PATHS.index("relay")
    markup = small_setup.s.behaviour.relay.markup
    np.testing.assert_allclose(f["relay_markup_usd"][..., relay], markup * f["revenue_usd"][..., relay])
    other = [j for j in range(len(PATHS)) if j != relay]
    assert not f["relay_markup_usd"][..., other].any()


def test_baseline_serves_every_drawn_request(small_setup: Setup) -> None:
    draws, base = _pass(small_setup, baseline=True)
    assert int(base.cells.n.sum()) == int(draws.n.sum())
    assert int(base.cells.tokens_in.sum()) == int(draws.tokens_in.sum())
    assert int(base.out.blocked.sum()) == 0
    inc = [p.name for p in small_setup.s.providers].index(small_setup.s.incumbent.name)
    assert set(base.fa.provider[base.cells.fate].tolist()) == {inc}


def test_policy_run_loses_only_churned_requests(small_setup: Setup) -> None:
    """Every drawn request is in a cell unless its organisation had churned."""
    draws, run = _pass(small_setup)
    assert int(run.cells.n.sum()) <= int(draws.n.sum())
    churned = sum(1 for line in run.timelines.changes if line[-1][1] == "churned")
    assert churned > 0 and int(run.cells.n.sum()) < int(draws.n.sum())


def test_organisations_are_conserved(small_result: ReplicationResult, small_setup: Setup) -> None:
    per_region = small_result.orgs.sum(axis=(2, 3))
    want = np.bincount(small_setup.pop.region, minlength=len(small_setup.s.regions))
    assert np.all(per_region == want[None, :])
