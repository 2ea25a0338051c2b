"""The agent model: every affected organisation is a SimPy process with a state machine.

::

    direct ──(announcement: Bass hazard)──────────────► migrating ─► migrated to k
      │                                                     ▲
      └──(its direct traffic is denied)──► decide ──────────┘
                                            ├─ wait ──(wait_days)──► decide again
                                            ├─ circumvent (relay) ──(detected)──► decide again
                                            └─ churn

Decisions use :mod:`scenarios.behaviour` (logit utilities, ``choose``, the Bass hazard);
when an organisation is denied, and when a relay is caught, come from :class:`scenarios.policy.Policy`
— the same engine the gateway enforces with. One SimPy time unit is one hour from the window start.

Only organisations whose direct traffic is denied at some point in the window become processes;
the rest stay ``direct`` throughout. Each organisation draws from its own random generator
(seeded by the replication and its index), so its choices do not depend on what the others do
in between — the common-random-numbers property the policy comparisons rely on.
The output is a timeline per organisation: ``(hour, state, provider, path, relay_since_hour)``.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from bisect import bisect_right
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy
from numpy.random.bit_generator import ISeedSequence

from scenarios import behaviour
from scenarios.distributions import sample_one
from scenarios.ledger import grants_credit
from scenarios.policy import Policy, PolicyRequest
from scenarios.schema import Provider, Scenario
from sim.population import Population

Change = tuple[float, str, str, str, float | None]

#: What a warned organisation may do before the block: only migrate.
LEAVING = frozenset({behaviour.WAIT, behaviour.CIRCUMVENT, behaviour.CHURN})
#: Step of the anticipation process (hours): the Bass hazard is applied once per step.
ANTICIPATION_STEP_H = 1.0


@dataclass
class World:
    """Everything the organisation processes share: scenario, policy, population, live counts."""

    env: simpy.Environment
    s: Scenario
    policy: Policy
    pop: Population
    entropy: int
    timelines: list[list[Change]]
    credit: np.ndarray
    decided_at: np.ndarray
    chosen: dict[int, dict[str, int]] = field(default_factory=dict)
    affected: dict[int, int] = field(default_factory=dict)
    blocked: set[int] = field(default_factory=set)
    _rngs: dict[int, np.random.Generator] = field(default_factory=dict)
    _words: np.ndarray | None = None
    points: list[float] = field(default_factory=list)
    per_org: bool = False
    _denied_cache: dict[tuple[Any, ...], bool] = field(default_factory=dict)
    _utility_cache: dict[tuple[Any, ...], tuple[dict[str, float], dict[str, float]]] = field(
        default_factory=dict)
    _parts_by_index: dict[tuple[int, int, int], tuple[dict[str, float], dict[str, float]]] = field(
        default_factory=dict)
    _terms_by_index: dict[tuple[int, int, int], tuple[tuple[str, float, float], ...]] = field(
        default_factory=dict)
    #: choice probabilities by everything they depend on (see :meth:`choose`)
    _probs: dict[tuple[Any, ...], dict[str, float]] = field(default_factory=dict)

    @functools.cached_property
    def alternatives(self) -> tuple[Provider, ...]:
        return self.s.alternatives

    @functools.cached_property
    def alternatives_have_policy(self) -> bool:
        return any(p.name in self.s.policy for p in self.alternatives)

    @functools.cached_property
    def deadlines(self) -> list[float]:
        """Hours at which an incentive offer ends (utilities change only there)."""
        return sorted({self.hours(p.incentive.deadline) for p in self.alternatives
                       if p.incentive is not None and p.incentive.deadline is not None})

    @functools.cached_property
    def provider_of(self) -> dict[str, Provider]:
        """Providers by name (``Scenario.provider`` scans the list on every call)."""
        return {p.name: p for p in self.s.providers}

    @functools.cached_property
    def incumbent(self) -> str:
        return self.s.incumbent.name

    # Plain lists of the population's columns: the processes index them one organisation at a
    # time, where a Python int beats a NumPy scalar (hashing, dict keys, list indexing).
    @functools.cached_property
    def region_of(self) -> list[int]:
        return [int(r) for r in self.pop.region.tolist()]

    @functools.cached_property
    def segment_of(self) -> list[int]:
        return [int(g) for g in self.pop.segment.tolist()]

    # ------------------------------------------------------------ time

    @functools.cached_property
    def start(self) -> dt.datetime:
        return self.s.window.start

    @functools.cached_property
    def horizon(self) -> float:
        return self.s.window.hours

    def at(self, hours: float) -> dt.datetime:
        return self.start + dt.timedelta(hours=hours)

    def hours(self, when: dt.datetime) -> float:
        return (when - self.start).total_seconds() / 3600.0

    # ------------------------------------------------------------ per organisation

    def rng(self, i: int) -> np.random.Generator:
        """The organisation's own generator (PCG64 seeded with its own words of the agent stream)."""
        r = self._rngs.get(i)
        if r is None:
            if self._words is None:
                self._words = np.random.default_rng(self.entropy).integers(
                    0, np.iinfo(np.uint64).max, size=(self.pop.size, 4), dtype=np.uint64, endpoint=True)
            # numpy takes any ISeedSequence here (its stubs only name SeedSequence)
            r = self._rngs[i] = np.random.Generator(np.random.PCG64(_Words(self._words[i])))  # type: ignore[arg-type]
        return r

    def record(self, i: int, state: str, provider: str, path: str, since: float | None = None,
               at: float | None = None) -> None:
        """The organisation is in ``state`` from now (or from ``at``, a known future instant)."""
        line = self.timelines[i]
        now = self.env.now if at is None else at
        entry = (now, state, provider, path, since)
        if line and line[-1][0] == now:
            line[-1] = entry
        elif not line or line[-1][1:] != entry[1:]:
            line.append(entry)

    def direct_request(self, i: int) -> PolicyRequest:
        code = self.s.regions[self.region_of[i]].code
        return PolicyRequest(provider=self.s.incumbent.name, country=code, org=self.pop.ids[i],
                             segment=self.s.segments[self.segment_of[i]].name,
                             home_country=code)

    def denied(self, i: int, hours: float) -> bool:
        """Is the organisation's direct traffic to the incumbent denied at ``hours``?

        The answer only changes at the incumbent's change points, and is the same for a whole
        (region, segment) unless a stage treats organisations individually.
        """
        j = bisect_right(self.points, hours)
        key = (j, self.region_of[i], self.segment_of[i],
               self.pop.ids[i] if self.per_org else "")
        hit = self._denied_cache.get(key)
        if hit is None:
            hit = self._denied_cache[key] = self.policy.decide(self.at(hours), self.direct_request(i)).denied
        return hit

    def share(self, i: int) -> dict[str, float]:
        """Share of the organisation's region (affected organisations) already gone to each provider."""
        r = self.region_of[i]
        n = max(self.affected.get(r, 0), 1)
        return {k: v / n for k, v in self.chosen.get(r, {}).items()}

    def closed_providers(self, i: int, hours: float) -> frozenset[str]:
        """Alternatives whose own policy denies this organisation's region now."""
        if not self.alternatives_have_policy:
            return frozenset()
        code = self.s.regions[self.region_of[i]].code
        seg = self.s.segments[self.segment_of[i]].name
        when = self.at(hours)
        return frozenset(p.name for p in self.s.alternatives if self.policy.decide(
            when, PolicyRequest(provider=p.name, country=code, org=self.pop.ids[i], segment=seg,
                                home_country=code)).denied)

    def utility_parts(self, segment: str, region: str,
                      now: dt.datetime) -> tuple[dict[str, float], dict[str, float]]:
        """Utilities with nobody migrated yet, and each alternative's gain per unit of migrated share.

        Both come from :func:`scenarios.behaviour.utilities` itself (at shares 0 and 1), cached by
        what they depend on: segment, region and which incentives are still on offer (they change
        only at the offers' deadlines). tests/sim/test_model.py checks the composition against a
        direct call.
        """
        key = (segment, region, bisect_right(self.deadlines, self.hours(now)))
        hit = self._utility_cache.get(key)
        if hit is None:
            zero = behaviour.utilities(self.s, segment=segment, region=region, now=now, migrated_share={})
            one = behaviour.utilities(self.s, segment=segment, region=region, now=now,
                                      migrated_share={p.name: 1.0 for p in self.alternatives})
            hit = self._utility_cache[key] = (zero, {k: one[k] - zero[k] for k in zero})
        return hit

    def parts_for(self, i: int, hours: float) -> tuple[dict[str, float], dict[str, float]]:
        """:meth:`utility_parts` for organisation ``i`` at ``hours``, looked up by indices first
        (no datetime or name built for the thousands of decisions that hit the cache)."""
        key = (self.segment_of[i], self.region_of[i], bisect_right(self.deadlines, hours))
        hit = self._parts_by_index.get(key)
        if hit is None:
            hit = self._parts_by_index[key] = self.utility_parts(
                self.s.segments[key[0]].name, self.s.regions[key[1]].code, self.at(hours))
        return hit

    def terms_for(self, i: int, hours: float) -> tuple[tuple[str, float, float], ...]:
        """:meth:`parts_for` as (alternative, utility at share 0, slope) triples, built once per
        key: a decision then reads one tuple instead of looking each slope up by name."""
        key = (self.segment_of[i], self.region_of[i], bisect_right(self.deadlines, hours))
        hit = self._terms_by_index.get(key)
        if hit is None:
            zero, slope = self.parts_for(i, hours)
            hit = self._terms_by_index[key] = tuple((k, u, slope[k]) for k, u in zero.items())
        return hit

    def choose(self, i: int, exclude: frozenset[str] = frozenset()) -> str | None:
        now = self.env.now
        r = self.region_of[i]
        counts = self.chosen.get(r) or {}
        n = max(self.affected.get(r, 0), 1)
        closed = exclude | self.closed_providers(i, now) if self.alternatives_have_policy else exclude
        # the choice probabilities are a function of exactly these: organisations that decide
        # one after another with nobody of their region migrating in between (those who wait,
        # circumvent or churn) share them, computed once by scenarios.behaviour
        key = (self.segment_of[i], r, bisect_right(self.deadlines, now), closed, n,
               tuple(counts.items()))
        probs = self._probs.get(key)
        if probs is None:
            terms = self.terms_for(i, now)
            # u + slope × (share already gone to k), the share as in :meth:`share`
            if closed:
                utils = {k: u + slope * (counts.get(k, 0) / n) for k, u, slope in terms
                         if k not in closed}
            else:
                utils = {k: u + slope * (counts.get(k, 0) / n) for k, u, slope in terms}
            # (empty: nothing to choose from)
            probs = self._probs[key] = behaviour.probabilities(utils) if utils else {}
        if not probs:
            return None
        return behaviour.choose(probs, self.rng(i))


class _Words(ISeedSequence):
    """Seed words handed straight to a bit generator: drawn once for all organisations from the
    agent stream, so creating an organisation's generator costs microseconds, not a SeedSequence."""

    __slots__ = ("words",)

    def __init__(self, words: np.ndarray) -> None:
        self.words = words

    def generate_state(self, n_words: int, dtype: Any = np.uint32) -> np.ndarray:
        words = self.words if np.dtype(dtype) == np.uint64 else self.words.view(np.uint32)
        if n_words == words.size:  # what PCG64 asks for: the words themselves (np.resize is slow)
            return words.astype(words.dtype)
        return np.resize(words, n_words).astype(words.dtype)


def change_hours(world: World, provider: str) -> list[float]:
    """The provider's policy change points as hours, clipped to the window, with 0 first."""
    points = {0.0} | {min(max(world.hours(p), 0.0), world.horizon)
                      for p in world.policy.change_points(provider)}
    return sorted(points)


def first_denial(world: World, i: int, after: float, points: list[float]) -> float | None:
    """The first instant ≥ ``after`` at which the organisation's direct traffic is denied."""
    if world.denied(i, after):
        return after
    for p in points:
        if after < p < world.horizon and world.denied(i, p):
            return p
    return None


# ---------------------------------------------------------------- processes
#
# An organisation is a process only while it has something to wait for (the end of a wait, the
# detection of its relay, the next policy change): what it does at a block, a migration's end and
# a decision to churn are acted on at once, without an event of their own. That changes nothing
# in law or in order — every decision still happens at its instant, in the same sequence.


def block_wave(env: simpy.Environment, world: World, at: float,
               members: list[int]) -> Generator[Any, Any, None]:
    """At ``at`` the members' direct traffic is denied: each still direct decides, in order."""
    yield env.timeout(at - env.now)
    for i in members:
        world.blocked.add(i)
        if world.timelines[i][-1][1] == "direct":
            delay = decide(world, i)
            if delay is not None:
                env.process(blocked(env, world, i, delay))


def blocked(env: simpy.Environment, world: World, i: int,
            delay: float) -> Generator[Any, Any, None]:
    """Wait ``delay`` hours, then decide again, as long as a decision asks for another wait."""
    while True:
        yield env.timeout(delay)
        nxt = decide(world, i)
        if nxt is None:
            return
        delay = nxt


def decide(world: World, i: int) -> float | None:
    """The organisation decides and acts now; hours until it decides again (None: never)."""
    now = world.env.now
    inc = world.incumbent
    if not world.denied(i, now):  # the stage ended or rolled back
        world.record(i, "direct", inc, "direct")
        nxt = first_denial(world, i, now, world.points)
        return None if nxt is None else nxt - now
    choice = world.choose(i)
    if choice is None or choice == behaviour.WAIT:
        world.record(i, "direct", inc, "direct")
        return sample_one(world.s.behaviour.wait_days, world.rng(i)) * 24.0
    if choice == behaviour.CIRCUMVENT:
        world.record(i, "circumventing", inc, "relay", now)
        caught = world.policy.detection_at(inc, world.pop.ids[i], world.at(now))
        if caught is None or world.hours(caught) >= world.horizon:
            return None
        return max(world.hours(caught) - now, 0.0)
    if choice == behaviour.CHURN:
        world.record(i, "churned", "", "")
        return None
    migrate(world, i, choice)
    return None


def migrate(world: World, i: int, provider: str) -> None:
    """Move to ``provider``: traffic stays on the incumbent (blocked or not) for the migration
    time, then goes to the provider — recorded now if that instant falls inside the window."""
    now = world.env.now
    r = world.region_of[i]
    counts = world.chosen.setdefault(r, {})
    counts[provider] = counts.get(provider, 0) + 1
    world.decided_at[i] = now
    p = world.provider_of[provider]
    world.record(i, "migrating", provider, "direct")
    seg = world.s.segments[world.segment_of[i]]
    done = now + max(sample_one(seg.migration_days, world.rng(i)), 0.0) * 24.0
    world.credit[i] = grants_credit(p, world.at(done))  # its first requests there start at done
    if done < world.horizon:  # an event at the horizon itself would not run
        world.record(i, "migrated", provider, "direct", at=done)


def anticipation(env: simpy.Environment, world: World, warned: dict[int, list[int]],
                 start_h: float) -> Generator[Any, Any, None]:
    """Bass diffusion among the warned, per region: hazard p + q·F per day, F = share already left.

    Each warned organisation draws an Exp(1) threshold from its own generator and leaves when the
    region's integrated hazard passes it — the same law as a per-step coin flip, but independent
    of the order in which organisations are visited. The organisations that leave in a step
    migrate at the end of the step, in order (as processes started in the step would). Once every
    warned organisation is blocked, nobody is left to anticipate and the process ends.
    """
    ann = world.s.behaviour.announcement
    assert ann is not None
    yield env.timeout(start_h)
    step = ANTICIPATION_STEP_H
    markets = [_Market.of(world, members) for members in warned.values()]
    unblocked = set().union(*warned.values())
    seen_blocked = -1
    while env.now + step <= world.horizon and any(m.next < len(m.order) for m in markets):
        yield env.timeout(step)
        if len(world.blocked) != seen_blocked:  # only block waves add to it: check after one
            seen_blocked = len(world.blocked)
            unblocked -= world.blocked
            if not unblocked:
                return
        leaving: list[tuple[int, str]] = []
        for m in markets:
            # Heun step: the hazard at the start and at a predicted end of the step, averaged
            share = m.left / len(m.order)
            h0 = behaviour.anticipation_hazard(ann.anticipation, share)
            ahead = share + (1.0 - share) * behaviour.chance_within(h0, step / 24.0)
            h1 = behaviour.anticipation_hazard(ann.anticipation, ahead)
            m.hazard += (h0 + h1) / 2.0 * step / 24.0
            while m.next < len(m.order) and m.thresholds[m.next] <= m.hazard:
                i = m.order[m.next]
                m.next += 1
                if i in world.blocked or world.timelines[i][-1][1] != "direct":
                    continue
                target = world.choose(i, LEAVING)
                if target is not None:
                    leaving.append((i, target))
                    m.left += 1
        for i, target in leaving:
            migrate(world, i, target)


@dataclass
class _Market:
    """The warned organisations of one region, in the order their thresholds are passed."""

    order: list[int]
    thresholds: np.ndarray
    next: int = 0          # index of the next organisation to pass its threshold
    hazard: float = 0.0    # integrated hazard so far
    left: int = 0          # organisations that have left

    @classmethod
    def of(cls, world: World, members: list[int]) -> _Market:
        drawn = np.array([world.rng(i).exponential() for i in members])
        by = np.argsort(drawn, kind="stable")
        return cls(order=[members[j] for j in by], thresholds=drawn[by])


# ---------------------------------------------------------------- running it


@dataclass(frozen=True, slots=True)
class Timelines:
    changes: list[list[Change]]
    credit: np.ndarray
    decided_at: np.ndarray


def simulate_agents(s: Scenario, policy: Policy, pop: Population, entropy: int) -> Timelines:
    """Run every affected organisation through the window; return all timelines."""
    env = simpy.Environment()
    inc = s.incumbent.name
    world = World(env=env, s=s, policy=policy, pop=pop, entropy=entropy,
                  timelines=[[(0.0, "direct", inc, "direct", None)] for _ in range(pop.size)],
                  credit=np.zeros(pop.size, dtype=np.int64),
                  decided_at=np.full(pop.size, math.nan))
    world.points = change_hours(world, inc)
    world.per_org = any(st.percent < 100.0 or st.allow_list.orgs
                        for pol in s.policy.values() for st in pol.stages)
    first = _first_denials(world, world.points)
    ann = s.behaviour.announcement
    ann_h = world.hours(ann.at) if ann is not None and ann.provider == inc else math.inf
    warned: dict[int, list[int]] = {}
    waves: dict[float, list[int]] = {}
    for i, block_h in first.items():
        r = world.region_of[i]
        world.affected[r] = world.affected.get(r, 0) + 1
        if block_h > ann_h:
            warned.setdefault(r, []).append(i)
        waves.setdefault(block_h, []).append(i)
    if warned:
        env.process(anticipation(env, world, warned, ann_h))
    for at in sorted(waves):
        env.process(block_wave(env, world, at, waves[at]))
    env.run(until=world.horizon)
    out = Timelines(changes=world.timelines, credit=world.credit, decided_at=world.decided_at)
    # The processes still waiting at the horizon hold the world in a reference cycle (env → event
    # → process → generator → world → env) that only the cyclic collector frees, after traversing
    # everything the world holds (timelines, generators, caches: hundreds of thousands of objects,
    # a tenth of a second per pass). Emptied, the world leaves that cycle small; what it held is
    # freed by reference counting once the replication lets go of it.
    world.__dict__.clear()
    return out


def _first_denials(world: World, points: list[float]) -> dict[int, float]:
    """Organisation → first hour its direct traffic is denied, for those denied inside the window.

    Bans by stage are the same for a whole (region, segment) unless a stage rolls out by percent
    or allow-lists named organisations; then every organisation is asked.
    """
    per_org = world.per_org
    out: dict[int, float] = {}
    pol = world.s.policy.get(world.incumbent)
    if pol is None or not pol.stages:  # nobody is ever denied (the no-block baseline)
        return out
    cache: dict[tuple[int, int], float | None] = {}
    for i in range(world.pop.size):
        key = (world.region_of[i], world.segment_of[i])
        if per_org or key not in cache:
            cache[key] = first_denial(world, i, 0.0, points)
        hit = cache[key]
        if hit is not None and hit < world.horizon:
            out[i] = hit
    return out
