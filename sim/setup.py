"""What every replication of a scenario shares, and what one replication draws for itself.

:class:`Setup` is built once per process; :meth:`Setup.for_replication` gives the replication's
own view of it: the scenario with its uncertain parameters drawn, and the population resampled
(request rates and models of every organisation). The policy run and its no-block baseline of
one replication share that view exactly (common random numbers); different replications do not,
so the bands over replications cover population, behaviour, traffic and the declared
uncertain parameters.

The replication engine (:mod:`sim.replication`) and the headline figures (:mod:`sim.headline`)
both import from here — neither imports the other's internals.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

import numpy as np

from scenarios.loader import (
    apply_override,
    format_loc,
    parse_path,
    resolved_dict,
    uncertain_problems,
    uncertain_target,
)
from scenarios.market import MarketContext
from scenarios.policy import denied_regions, first_denial
from scenarios.sample import Sample
from scenarios.schema import Scenario
from sim import capacity as capacity_mod
from sim.errors import EmptyPopulationError, UncertainParameterError
from sim.model import Timelines
from sim.outcome import FateArrays, Outcome
from sim.population import Population, build, of_sample, resample
from sim.profile import Profile
from sim.traffic import Cells, bin_edges

FLOW_METRICS = ("requests", "allowed", "warned", "blocked", "failed", "retries", "tokens_in",
                "tokens_out", "revenue_usd", "relay_markup_usd", "free_tokens",
                "baseline_requests", "baseline_revenue_usd")
LATENCY_METRICS = ("latency_ms_p50", "latency_ms_p95", "latency_ms_p99",
                   "ttft_ms_p50", "ttft_ms_p95", "ttft_ms_p99",
                   "network_ms_p50", "network_ms_p95", "network_ms_p99",
                   "queue_ms_p50", "queue_ms_p95", "queue_ms_p99",
                   "generation_ms_p50", "generation_ms_p95", "generation_ms_p99")
AGENTS, TRAFFIC, OUTCOME, LATENCY, POPULATION, UNCERTAIN = range(6)


def stream(seq: np.random.SeedSequence, purpose: int) -> np.random.Generator:
    """A generator for one purpose, derived from (and stable for) the replication's sequence."""
    return np.random.default_rng(np.random.SeedSequence(seq.entropy, spawn_key=(*seq.spawn_key, purpose)))


def baseline_of(s: Scenario) -> Scenario:
    """The counterfactual: no blocking policy and no announcement."""
    return s.model_copy(update={"policy": {},
                                "behaviour": s.behaviour.model_copy(update={"announcement": None})})


def first_block_start(s: Scenario) -> dt.datetime | None:
    """When the incumbent first blocks or throttles (the shared definition in scenarios.policy)."""
    return first_denial(s)


def blocked_regions(s: Scenario) -> list[int]:
    """Indices of the scenario's regions the incumbent's blocking stages target."""
    codes = set(denied_regions(s))
    return [i for i, r in enumerate(s.regions) if r.code in codes]


def scaled_capacity(s: Scenario, scale: float) -> Scenario:
    """The scenario with every provider's servers and waiting room scaled with the population
    (``--scale``): the load per server, and so the hot spots, stay those of the full scale."""
    if scale == 1.0:
        return s
    providers = tuple(p.model_copy(update={"capacity": p.capacity.model_copy(update={
        "concurrency": max(1, round(p.capacity.concurrency * scale)),
        "queue_limit": round(p.capacity.queue_limit * scale)})}) for p in s.providers)
    return s.model_copy(update={"providers": providers})


def perturbed(s: Scenario, rng: np.random.Generator) -> Scenario:
    """The scenario with each of its ``uncertain`` parameters drawn once from its distribution."""
    if not s.uncertain:
        return s
    from scenarios.distributions import sample_one

    data = resolved_dict(s)
    for u in s.uncertain:
        loc = parse_path(u.path)
        value: float = float(sample_one(u.dist, rng))
        current = uncertain_target(data, loc)
        apply_override(data, loc, round(value) if isinstance(current, int) else value, u.path)
    data["uncertain"] = []   # drawn: the replication's scenario is certain
    try:
        return Scenario.model_validate(data)
    except ValueError as exc:
        raise UncertainParameterError(f"{s.name}: uncertain parameters give an invalid scenario: "
                                      f"{str(exc).splitlines()[0]}") from None


def check_uncertain(s: Scenario) -> None:
    """The scenario's uncertain parameters are sound (``scenarios.loader.uncertain_problems``,
    which ``scenario validate`` runs too); a scenario built in code is checked here (exit 2)."""
    problems = uncertain_problems(s)
    if problems:
        loc, message = problems[0]
        raise UncertainParameterError(f"{s.name}: {format_loc(loc)}: {message}")


@dataclass(frozen=True, slots=True)
class Run:
    """One engine pass (policy or baseline): timelines, cells, their outcome and capacity."""

    timelines: Timelines
    cells: Cells
    fates: tuple[object, ...]
    out: Outcome
    cap: capacity_mod.Capacity
    fa: FateArrays


@dataclass(frozen=True, slots=True)
class Setup:
    """What every replication of one scenario shares (built once per process)."""

    s: Scenario
    base: Scenario
    pop: Population
    profile: Profile
    edges: np.ndarray
    hour_weight: np.ndarray
    inverse_throughput: np.ndarray

    scale: float = 1.0
    #: the scenario before ``--scale`` scaled its capacity (uncertain parameters apply to it)
    origin: Scenario | None = None
    #: a paired simulation (``--sample-of``): the load test's sample (its seed seeds the
    #: organisations' generators in every replication; it says whether they had a relay), and
    #: the full market's context their choices read
    sample: Sample | None = None
    market: MarketContext | None = None

    @classmethod
    def of(cls, s: Scenario, seed: int, scale: float) -> Setup:
        """Built once per process; ``pop`` is the population of the root ``seed`` (its ids are
        every replication's; its rates and models those of no replication in particular)."""
        check_uncertain(s)
        pop = build(s, seed, scale)
        if pop.size == 0:
            raise EmptyPopulationError(f"{s.name}: no organisations to simulate at scale {scale:g}")
        return cls._derived(s, pop, scale)

    @classmethod
    def _derived(cls, origin: Scenario, pop: Population, scale: float) -> Setup:
        s = scaled_capacity(origin, scale)
        profile = Profile.of(s)
        edges = bin_edges(s)
        return cls(s=s, base=baseline_of(s), pop=pop, profile=profile,
                   edges=edges, hour_weight=capacity_mod.hour_weights(profile, edges),
                   inverse_throughput=capacity_mod.inverse_throughputs(s), scale=scale,
                   origin=origin)

    @classmethod
    def of_sample(cls, s: Scenario, sample: Sample, market: MarketContext) -> Setup:
        """The paired simulation of a load test: exactly its organisations (``scenarios.sample``),
        in its units, with the scenario's capacity as given (the load test's mock providers serve
        the scenario's servers), and the full market's context."""
        check_uncertain(s)
        return dataclasses.replace(cls._derived(s, of_sample(s, sample), 1.0),
                                   sample=sample, market=market)

    def for_replication(self, seq: np.random.SeedSequence) -> Setup:
        """This replication's scenario (uncertain parameters drawn) and population (resampled).

        A paired simulation keeps both: the load test ran these organisations with the scenario's
        values, so its replications differ only by request-level chance."""
        if self.sample is not None:
            return self
        origin = self.origin or self.s
        if not origin.uncertain:
            return dataclasses.replace(self, pop=resample(origin, self.pop, population_seed(seq),
                                                          self.scale))
        s = perturbed(origin, stream(seq, UNCERTAIN))
        return Setup._derived(s, resample(s, self.pop, population_seed(seq), self.scale), self.scale)


def population_seed(seq: np.random.SeedSequence) -> int:
    """The seed of a replication's population: ``scenarios.population.build_population`` with it
    gives the same organisations (so a load test can replay replication i's population)."""
    return int(np.random.SeedSequence(seq.entropy, spawn_key=(*seq.spawn_key, POPULATION))
               .generate_state(1)[0])


