"""The simulated organisations as arrays: who they are, where, how busy, which model they use.

The organisations come from :func:`scenarios.population.build_population` (the same ones the load
test uses for the same seed). Each organisation also gets the incumbent model it mainly uses,
drawn from its segment's ``model_mix`` (so the mix holds over the population, and a large
organisation on an expensive model weighs as it should).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scenarios.distributions import sample
from scenarios.population import build_population, main_models, segment_counts
from scenarios.sample import Sample
from scenarios.schema import Scenario


@dataclass(frozen=True, slots=True)
class Population:
    ids: tuple[str, ...]
    region: np.ndarray        # index into scenario.regions
    segment: np.ndarray       # index into scenario.segments
    model: np.ndarray         # index into incumbent.models
    rate: np.ndarray          # mean requests per hour
    #: organisations each one stands for (a load test's sample: ``scenarios.sample``); None: 1 each
    weight: np.ndarray | None = None
    #: the fraction of a free-token credit each is granted (a load test's sample); None: whole
    credit_scale: np.ndarray | None = None

    @property
    def size(self) -> int:
        return len(self.ids)

    @property
    def organisations(self) -> float:
        """How many organisations of the scenario these stand for."""
        return float(self.weight.sum()) if self.weight is not None else float(self.size)


def resample(s: Scenario, pop: Population, seed: int, scale: float = 1.0) -> Population:
    """``build(s, seed, scale)`` without building the organisations again: their ids, regions and
    segments do not depend on the seed, only their request rates and models do — drawn here
    from exactly the streams :func:`scenarios.population.build_population` uses (tested equal)."""
    rate = np.empty(pop.size)
    at = 0
    for ri, region in enumerate(s.regions):
        total = round(region.organisations * scale)
        counts = segment_counts(total, [seg.share.get(region.code, 0.0) for seg in s.segments])
        for si, (seg, n) in enumerate(zip(s.segments, counts, strict=True)):
            rate[at : at + n] = sample(seg.requests_per_hour, np.random.default_rng([seed, ri, si]), n)
            at += n
    return Population(ids=pop.ids, region=pop.region, segment=pop.segment,
                      model=_models(s, seed, pop.segment), rate=rate)


def _models(s: Scenario, seed: int, segment: np.ndarray) -> np.ndarray:
    return main_models(s, seed, segment)


def build(s: Scenario, seed: int, scale: float = 1.0) -> Population:
    """The population for ``seed`` (each replication resamples it: :func:`resample`)."""
    orgs = build_population(s, seed, scale=scale)
    regions = {r.code: i for i, r in enumerate(s.regions)}
    segments = {g.name: i for i, g in enumerate(s.segments)}
    region = np.array([regions[o.region] for o in orgs], dtype=np.int64)
    segment = np.array([segments[o.segment] for o in orgs], dtype=np.int64)
    model = _models(s, seed, segment)
    rate = np.array([o.requests_per_hour for o in orgs], dtype=float)
    return Population(ids=tuple(o.id for o in orgs), region=region, segment=segment, model=model,
                      rate=rate)


def of_sample(s: Scenario, sample: Sample) -> Population:
    """Exactly a load test's organisations (``scenarios.sample``): its ids, regions, segments,
    weights, request rates (in the load test's units) and the model each one asked for."""
    regions = {r.code: i for i, r in enumerate(s.regions)}
    segments = {g.name: i for i, g in enumerate(s.segments)}
    models = {m.name: i for i, m in enumerate(s.incumbent.models)}
    segment = np.array([segments[o.segment] for o in sample.orgs], dtype=np.int64)
    return Population(ids=tuple(o.id for o in sample.orgs),
                      region=np.array([regions[o.region] for o in sample.orgs], dtype=np.int64),
                      segment=segment, model=np.array([models[o.model] for o in sample.orgs],
                                                      dtype=np.int64),
                      rate=np.array([o.requests_per_hour for o in sample.orgs], dtype=float),
                      weight=np.array([o.weight for o in sample.orgs], dtype=float),
                      credit_scale=np.array([o.credit_scale for o in sample.orgs], dtype=float))
