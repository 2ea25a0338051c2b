"""The organisations of a scenario: who they are, where, in which segment, how busy.

The simulator and the load test draw the same organisations from the same seed. An organisation's
id encodes its home region and segment (``cn-startup-000042``), so the gateway can tell an
organisation's home country from its API key alone, as a provider knows it from billing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from scenarios.distributions import sample
from scenarios.schema import Scenario

_ORG_ID = re.compile(r"^([a-z]{2})-([a-z0-9][a-z0-9_.-]*)-(\d{6})$")


@dataclass(frozen=True, slots=True)
class Org:
    id: str
    region: str
    segment: str
    requests_per_hour: float


def org_id(region: str, segment: str, index: int) -> str:
    return f"{region.lower()}-{segment}-{index:06d}"


def parse_org_id(text: str) -> tuple[str, str] | None:
    """(home region, segment) of a scenario organisation id, or None for any other key."""
    m = _ORG_ID.match(text)
    return (m.group(1).upper(), m.group(2)) if m else None


def segment_counts(total: int, shares: list[float]) -> list[int]:
    """Split ``total`` by ``shares`` exactly (largest remainder), deterministically."""
    raw = [total * s for s in shares]
    counts = [int(x) for x in raw]
    order = sorted(range(len(raw)), key=lambda i: (counts[i] - raw[i], i))
    leftover = total - sum(counts)
    # Shares may sum to 1 ± 1e-6 (the schema's tolerance), so with millions of organisations the
    # floors can miss the total by more than one per segment, or overshoot it: hand out (or take
    # back, smallest remainders first) in rounds until the counts add up to ``total``.
    step = 1 if leftover > 0 else -1
    ranked = order if leftover > 0 else order[::-1]
    while leftover:
        for i in ranked:
            if leftover and counts[i] + step >= 0:
                counts[i] += step
                leftover -= step
    return counts


def build_population(s: Scenario, seed: int, *, scale: float = 1.0) -> list[Org]:
    """Every organisation of the scenario (``scale`` < 1 keeps a proportional subset)."""
    orgs: list[Org] = []
    for ri, region in enumerate(s.regions):
        total = round(region.organisations * scale)
        counts = segment_counts(total, [seg.share.get(region.code, 0.0) for seg in s.segments])
        for si, (seg, n) in enumerate(zip(s.segments, counts, strict=True)):
            rng = np.random.default_rng([seed, ri, si])
            rates = sample(seg.requests_per_hour, rng, n)
            orgs += [Org(org_id(region.code, seg.name, i), region.code, seg.name, float(rates[i]))
                     for i in range(n)]
    return orgs


def main_models(s: Scenario, seed: int, segment: np.ndarray) -> np.ndarray:
    """Each organisation's main incumbent model (an index into ``s.incumbent.models``), for
    organisations in population order with segment indices ``segment``: drawn from its segment's
    ``model_mix``, so the mix holds over the population and a large organisation on an expensive
    model weighs as it should. Every request of the organisation asks for it (or, migrated, its
    substitute) — in the simulator and in the load test alike."""
    models = {m.name: i for i, m in enumerate(s.incumbent.models)}
    model = np.zeros(segment.size, dtype=np.int64)
    for gi, seg in enumerate(s.segments):
        members = np.flatnonzero(segment == gi)
        names = list(seg.model_mix)
        probs = np.array([seg.model_mix[n] for n in names], dtype=float)
        rng = np.random.default_rng([seed, 0x6D6F64, gi])
        picks = rng.choice(len(names), size=members.size, p=probs / probs.sum())
        model[members] = np.array([models[n] for n in names], dtype=np.int64)[picks]
    return model


def main_model_names(s: Scenario, seed: int, orgs: list[Org]) -> dict[str, str]:
    """Organisation id → its main model's name, for ``orgs = build_population(s, seed)``."""
    segments = {g.name: i for i, g in enumerate(s.segments)}
    picked = main_models(s, seed, np.array([segments[o.segment] for o in orgs], dtype=np.int64))
    names = [m.name for m in s.incumbent.models]
    return {o.id: names[k] for o, k in zip(orgs, picked.tolist(), strict=True)}
