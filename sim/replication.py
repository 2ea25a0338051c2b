"""One replication: the policy run and its no-block baseline over common random numbers.

Random streams are separate per purpose and derived from the replication's seed sequence, so the
two runs share what they should: the *traffic* draws (requests and tokens per organisation and
bin) are drawn once and used by both; *agents* (each organisation's own generator), *outcome*
and *latency* streams are derived the same way for both runs.
"""

from __future__ import annotations

import gc
import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from scenarios.policy import Policy
from scenarios.rundir import ORG_STATES, PATHS
from scenarios.schema import Scenario
from sim import capacity as capacity_mod
from sim.headline import headline, waterfall
from sim.latency import (
    LatencySamples,
    percentiles,
    pooled_latencies,
    pooled_latency,
    sample_latency,
)
from sim.model import Timelines, simulate_agents
from sim.outcome import FateArrays, fate_arrays, outcome
from sim.pieces import build_pieces
from sim.setup import (
    AGENTS,
    FLOW_METRICS,
    LATENCY,
    LATENCY_METRICS,
    OUTCOME,
    POPULATION,
    TRAFFIC,
    UNCERTAIN,
    Run,
    Setup,
    baseline_of,
    blocked_regions,
    first_block_start,
    population_seed,
    stream,
)
from sim.traffic import Cells, Draws, draw, split

__all__ = ["AGENTS", "FLOW_METRICS", "LATENCY", "LATENCY_METRICS", "OUTCOME", "POPULATION",
           "TRAFFIC", "UNCERTAIN", "ReplicationResult", "Run", "Setup", "baseline_of",
           "blocked_regions", "engine_pass", "first_block_start", "pooled_latencies",
           "pooled_latency", "population_seed", "run_replication", "stream"]

@dataclass(frozen=True, slots=True)
class ReplicationResult:
    index: int
    flows: np.ndarray         # (metric, bin, region, provider, path)
    orgs: np.ndarray          # (bin, region, state, provider + 1: '' first)
    latency: np.ndarray       # (bin, provider, path, 6): p50/p95/p99 latency then ttft; NaN if none
    utilisation: np.ndarray   # (provider, bin)
    rejected: np.ndarray      # (provider, bin)
    headline: dict[str, float]
    waterfall: dict[str, float]
    #: timeseries.csv rows of this replication, zlib-compressed (:func:`sim.metrics.block`); filled
    #: by the process that ran it (``sim.run._one``; uncompressed on its way to a streamed file,
    #: and then emptied); empty when run in memory only.
    timeseries: bytes = b""


def engine_pass(setup: Setup, s: Scenario, seq: np.random.SeedSequence, draws: Draws) -> Run:
    policy = Policy(s)
    drawn = int(stream(seq, AGENTS).integers(0, 2**63))
    if setup.sample is None:
        timelines = simulate_agents(s, policy, setup.pop, drawn, setup.profile)
    else:
        # a load test's sample: its organisations' own generators (the load test's seed) in the
        # full market's context; the replication draws only the request-level chance
        timelines = simulate_agents(s, policy, setup.pop, setup.sample.seed, setup.profile,
                                    market=setup.market if s is setup.s else None,
                                    arrival_seed=drawn,
                                    relay_available=setup.sample.relay_available)
    pieces = build_pieces(s, policy, setup.pop, timelines.changes)
    cells = split(s, setup.pop, setup.profile, setup.edges, draws, pieces, timelines.credit)
    fa = fate_arrays(s, pieces.fates, PATHS)
    out, cap = outcome(s, cells, fa, _capacity_fn(setup, s, cells, fa), PATHS, stream(seq, OUTCOME))
    return Run(timelines=timelines, cells=cells, fates=pieces.fates, out=out, cap=cap, fa=fa)


def _capacity_fn(setup: Setup, s: Scenario, cells: Cells,
                 fa: FateArrays) -> Callable[[np.ndarray], capacity_mod.Capacity]:
    nb = setup.edges.size - 1
    k = fa.provider[cells.fate]

    def assess(passed: np.ndarray) -> capacity_mod.Capacity:
        arrivals = np.zeros((len(s.providers), len(s.segments), len(s.regions), nb))
        np.add.at(arrivals, (k, cells.segment, cells.region, cells.bin), passed)
        tokens = np.zeros((len(s.providers), nb))
        counts = np.zeros((len(s.providers), nb))
        np.add.at(tokens, (k, cells.bin), cells.tokens_out)
        np.add.at(counts, (k, cells.bin), cells.n)
        mean_out = np.divide(tokens, counts, out=np.zeros_like(tokens), where=counts > 0)
        return capacity_mod.assess(s, arrivals, mean_out, setup.hour_weight,
                                   (setup.edges[1] - setup.edges[0]) if nb else 1.0,
                                   setup.inverse_throughput)
    return assess


@contextmanager
def gc_paused() -> Iterator[None]:
    """No automatic cyclic garbage collection inside the block (restored after).

    A replication holds a few hundred thousand live container objects at its peak (timelines,
    generators, events) and allocates millions more; the collector's automatic passes, full ones
    included, traverse them all again and again — about a tenth of a replication's CPU — to find
    a few hundred cyclic leftovers (SimPy processes and their events), which the next pass after
    the block frees. Reference counting frees everything else as before; results are unaffected.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def run_replication(setup: Setup, index: int, seq: np.random.SeedSequence) -> ReplicationResult:
    with gc_paused():
        return _run_replication(setup, index, seq)


def _run_replication(shared: Setup, index: int, seq: np.random.SeedSequence) -> ReplicationResult:
    setup = shared.for_replication(seq)
    s = setup.s
    draws = draw(s, setup.pop, setup.profile, setup.edges,
                 np.random.SeedSequence(seq.entropy, spawn_key=(*seq.spawn_key, TRAFFIC)))
    run = engine_pass(setup, s, seq, draws)
    base = engine_pass(setup, setup.base, seq, draws)
    lat = sample_latency(s, provider=run.fa.provider[run.cells.fate],
                         path=run.fa.path[run.cells.fate], bins=run.cells.bin,
                         region=run.cells.region, segment=run.cells.segment, served=run.out.served,
                         relay_path=PATHS.index("relay"), cap=run.cap, rng=stream(seq, LATENCY))
    flows = _flows(setup, run, base)
    return ReplicationResult(
        index=index, flows=flows, orgs=_org_states(setup, run.timelines),
        latency=_latency_cube(setup, lat), utilisation=run.cap.utilisation,
        rejected=_rejected(setup, run), headline=headline(setup, run, base, flows, lat),
        waterfall=waterfall(setup, run, base, flows))


def _flows(setup: Setup, run: Run, base: Run) -> np.ndarray:
    """(metric, bin, region, provider, path) sums of the cells' outcomes (and the baseline's).

    Each cell's place in a metric's cube is computed once, and each metric summed by
    np.bincount: the same sequential sums in the cells' order as ``np.add.at`` with the index
    tuple (negative indices wrapping the same way), many times faster.
    """
    s = setup.s
    nb = setup.edges.size - 1
    shape = (nb, len(s.regions), len(s.providers), len(PATHS))
    cube = np.zeros((len(FLOW_METRICS), *shape))
    size = int(np.prod(shape))

    def add(m: int, at: np.ndarray, values: np.ndarray) -> None:
        cube[m] = np.bincount(at, weights=values, minlength=size).reshape(shape)

    for which, r in (("run", run), ("base", base)):
        k = r.fa.provider[r.cells.fate]
        j = r.fa.path[r.cells.fate]
        at = np.ravel_multi_index((r.cells.bin, r.cells.region, k, j), shape, mode="wrap")
        if which == "run":
            for m, name in enumerate(FLOW_METRICS[:11]):
                add(m, at, r.out.markup_usd if name == "relay_markup_usd" else getattr(r.out, name))
        else:
            add(FLOW_METRICS.index("baseline_requests"), at, r.out.requests)
            add(FLOW_METRICS.index("baseline_revenue_usd"), at, r.out.revenue_usd)
    return cube


def _org_states(setup: Setup, tl: Timelines) -> np.ndarray:
    """Organisations by state (and provider for migrating/migrated) at the end of each bin.

    Each timeline entry counts from the bin in which it starts to the bin in which the next one
    starts: a difference array over bins, summed up once.
    """
    s = setup.s
    names = ["", *(p.name for p in s.providers)]
    ends = setup.edges[1:]
    shape = (len(s.regions), len(ORG_STATES), len(names))
    diff = np.zeros((ends.size + 1, int(np.prod(shape))))
    # (state, provider) -> its slot within a region (the provider only for migrating/migrated)
    code = {(st, name): k * len(names) + (m if st in ("migrating", "migrated") else 0)
            for k, st in enumerate(ORG_STATES) for m, name in enumerate(names)}
    changes = tl.changes
    # organisations that never changed are direct from the first bin on, with no end: counted
    # per region at once (whole numbers in floats, so the sums do not depend on the order)
    steady = np.fromiter((len(line) == 1 and line[0][1] == "direct" for line in changes),
                         dtype=bool, count=len(changes))
    weight = setup.pop.weight
    diff[0, code["direct", ""]::len(ORG_STATES) * len(names)] += np.bincount(
        setup.pop.region[steady], weights=None if weight is None else weight[steady],
        minlength=len(s.regions))
    moved = np.flatnonzero(~steady)
    lines = [changes[i] for i in moved.tolist()]
    entries = list(itertools.chain.from_iterable(lines))
    lengths = np.fromiter(map(len, lines), dtype=np.int64, count=len(lines))
    slot = (np.repeat(setup.pop.region[moved] * (len(ORG_STATES) * len(names)), lengths)
            + np.fromiter([code[c[1], c[2]] for c in entries], dtype=np.int64, count=len(entries)))
    start = np.fromiter([c[0] for c in entries], dtype=float, count=len(entries))
    # each entry lasts until the next entry of its organisation, the last one for good
    stop = np.empty_like(start)
    stop[:-1] = start[1:]
    stop[np.cumsum(lengths) - 1] = np.inf
    # an entry shows from the first bin ending at or after its start, until the next one shows
    first = np.searchsorted(ends, start, side="left")
    last = np.searchsorted(ends, stop, side="left")
    w = 1.0 if weight is None else np.repeat(weight[moved], lengths)
    np.add.at(diff, (first, slot), w)
    np.add.at(diff, (last, slot), -w)
    return np.cumsum(diff, axis=0)[:-1].reshape(ends.size, *shape)


def _latency_cube(setup: Setup, lat: LatencySamples) -> np.ndarray:
    """(bin, provider, path, LATENCY_METRICS): p50/p95/p99 of the total, of the time to first
    token, and of its parts (network, queue) and the generation time; NaN where nothing served."""
    s = setup.s
    cube = np.full((setup.edges.size - 1, len(s.providers), len(PATHS), len(LATENCY_METRICS)), np.nan)
    if lat.weight.size:
        for i, values in enumerate((lat.latency_ms, lat.ttft_ms, lat.network_ms, lat.queue_ms,
                                    lat.generation_ms)):
            cube[lat.bin, lat.provider, lat.path, 3 * i : 3 * i + 3] = percentiles(values)
    return cube


def _rejected(setup: Setup, run: Run) -> np.ndarray:
    """(provider, bin) sums of the cells' 429s: np.bincount, the same sums as ``np.add.at``."""
    shape = (len(setup.s.providers), setup.edges.size - 1)
    k = run.fa.provider[run.cells.fate]
    at = np.ravel_multi_index((k, run.cells.bin), shape, mode="wrap")
    return np.bincount(at, weights=run.out.rejected_429, minlength=shape[0] * shape[1]).reshape(shape)


