"""The behaviour model: what an organisation does when warned or blocked.

Pure functions of state and an explicit ``numpy.random.Generator``, shared by the simulator's
agents and the load test's Locust users. When blocked an organisation chooses, by multinomial
logit, among ``wait`` (keep retrying, decide again later), ``circumvent`` (a relay), ``churn``
(stop using LLM APIs) and migrating to each alternative provider that serves its region
(the utilities are documented on :class:`scenarios.schema.ChoiceCoefficients`). Before the block,
after the announcement, warned organisations migrate in anticipation with the Bass hazard
``p + q·F`` per day, F the fraction of warned organisations that have already left.
"""

from __future__ import annotations

import datetime as dt
import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from itertools import accumulate

import numpy as np

from scenarios.countries import expand_regions
from scenarios.distributions import Distribution, Lognormal
from scenarios.ledger import revenue_usd
from scenarios.schema import Bass, Provider, Scenario, Segment

WAIT, CIRCUMVENT, CHURN = "wait", "circumvent", "churn"


def typical(d: Distribution) -> float:
    """A distribution's typical value: the median of a lognormal, else the mean."""
    return d.median if isinstance(d, Lognormal) else d.mean()


def cost_per_request(s: Scenario, segment: Segment, provider: Provider) -> float:
    """Expected USD per request of the segment's model mix at ``provider`` (substitutes applied),
    priced by the ledger contract's :func:`scenarios.ledger.revenue_usd` (no free tokens)."""
    tin, tout = segment.tokens_in.mean(), segment.tokens_out.mean()
    total = 0.0
    for name, share in segment.model_mix.items():
        m = provider.substitute_for(name)
        total += share * revenue_usd(m.price_in, m.price_out, tin, tout)
    return float(total)


def quality(segment: Segment, provider: Provider) -> float:
    return sum(share * provider.substitute_for(name).quality for name, share in segment.model_mix.items())


def latency_s(segment: Segment, provider: Provider) -> float:
    """Typical seconds per request: time to first token plus the output at the typical rate."""
    return typical(provider.latency.ttft_ms) / 1000 + segment.tokens_out.mean() / typical(
        provider.latency.tokens_per_s)


def serves(provider: Provider, region: str) -> bool:
    return region in expand_regions(provider.serves)


def incentive_mtokens(provider: Provider, now: dt.datetime) -> float:
    inc = provider.incentive
    if inc is None or (inc.deadline is not None and now >= inc.deadline):
        return 0.0
    return inc.free_tokens / 1e6


def utilities(s: Scenario, *, segment: str, region: str, now: dt.datetime,
              migrated_share: Mapping[str, float], exclude: frozenset[str] = frozenset(),
              relay_extra_ms: float | None = None) -> dict[str, float]:
    """Utility of each alternative open to a blocked organisation.

    Order: wait, circumvent, churn, then the alternative providers in scenario order.
    """
    c = s.behaviour.choice
    seg = s.segment(segment)
    prop = seg.propensity
    inc = s.incumbent
    base_cost = cost_per_request(s, seg, inc) or 1e-9
    extra_ms = typical(s.behaviour.relay.extra_latency_ms) if relay_extra_ms is None else relay_extra_ms
    out = {
        WAIT: c.asc_wait + prop.wait,
        CIRCUMVENT: c.asc_circumvent + prop.circumvent + c.price * s.behaviour.relay.markup
        + c.latency * extra_ms / 1000,
        CHURN: c.asc_churn + prop.churn,
    }
    switching = c.switching_cost * typical(seg.migration_days)
    for p in s.alternatives:
        if not serves(p, region):
            continue
        out[p.name] = (
            c.asc_migrate + prop.migrate + switching
            + c.price * (cost_per_request(s, seg, p) / base_cost - 1.0)
            + c.quality * (quality(seg, p) - quality(seg, inc))
            + c.latency * (latency_s(seg, p) - latency_s(seg, inc))
            + c.incentive * math.log1p(incentive_mtokens(p, now))
            + c.imitation * migrated_share.get(p.name, 0.0)
        )
    return {k: v for k, v in out.items() if k not in exclude}


def probabilities(utils: Mapping[str, float]) -> dict[str, float]:
    """Logit probabilities (a numerically stable softmax), in the order of ``utils``."""
    top = max(utils.values())
    weights = {k: math.exp(v - top) for k, v in utils.items()}
    total = sum(weights.values())
    return {k: w / total for k, w in weights.items()}


def choose(probs: Mapping[str, float], rng: np.random.Generator) -> str:
    """Draw one alternative: the first whose running sum of probabilities passes a uniform (the
    last if none does); one uniform from ``rng`` per call."""
    return pick(list(probs), list(accumulate(probs.values())), rng)


def pick(names: Sequence[str], cumulative: Sequence[float], rng: np.random.Generator) -> str:
    """:func:`choose` of the alternatives ``names`` whose probabilities (in order) have the running
    sums ``cumulative`` (``itertools.accumulate``'s: the sums ``choose`` compares the uniform
    with) — for a caller that keeps them, and need not build the mapping or add them up again.
    The first whose sum exceeds the uniform is a bisection of the sums (they never decrease)."""
    u = rng.random()
    j = bisect_right(cumulative, u)
    if j < len(names):
        return names[j]
    return names[-1] if names else ""


def anticipation_hazard(bass: Bass, left_fraction: float) -> float:
    """Per-day hazard of migrating before the block: Bass ``p + q·F``."""
    return bass.p + bass.q * left_fraction


def bass_cdf(p: float, q: float, t_days: float) -> float:
    """Bass closed form F(t) = (1 − e^{−(p+q)t}) / (1 + (q/p)·e^{−(p+q)t})."""
    if p <= 0:
        return 0.0
    e = math.exp(-(p + q) * t_days)
    return (1 - e) / (1 + (q / p) * e)


def chance_within(hazard_per_day: float, days: float) -> float:
    """Probability that an event of constant hazard happens within ``days``."""
    return 1.0 - math.exp(-hazard_per_day * days)
