"""The agent model: the simulator's adapter to the organisation's life (``scenarios.lifecycle``).

The state machine is shared with the load test; this module only turns simulated time into its
events and its actions into timelines:

- **Warned**: at the announcement, to every organisation whose direct traffic is first denied
  after it (``lifecycle.warned_at``);
- **AnticipationDue**: when its region's integrated Bass hazard ``p + q·F`` (per day, F the share
  of the region's warned organisations that have left) passes the organisation's threshold — the
  :func:`anticipation` process integrates it hour by hour and records it in the market;
- **Denied**: at the organisation's *first request* at or after the instant its traffic on a path
  is denied — its first denial, the end of a wait, the detection of its relay
  (``Policy.detection_at``) — drawn from its own request stream: a Poisson process of its rate
  times its region's traffic intensity (``sim.profile``), its Exp(1) gaps hashed from (seed,
  organisation, count) so that they never touch the generator the choices draw from;
- **MigrationDone**: at the instant the machine asked for — or at once when the organisation
  migrates to a provider that denies nothing, where nothing it could meet before then changes
  what the machine does with it (:attr:`World.eager_migration`).

Each organisation's choices draw from ``lifecycle.org_rng(seed, id)``, the same generator a load
test gives the same organisation. The market (imitation shares, anticipation hazard) is a
``scenarios.market.MarketRecorder``, live; its record is handed out with the timelines
(:class:`Timelines.market`), for a load test to take as its market context. Only organisations
whose direct traffic is denied at some point in the window take part; the rest stay ``direct``.
The output is a timeline per organisation: ``(hour, state, provider, path, relay_since_hour)``.
"""

from __future__ import annotations

import datetime as dt
import functools
import heapq
import math
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy

from scenarios import lifecycle as lc
from scenarios.failover import failover_providers, rules_name_orgs, served_instead
from scenarios.ledger import grants_credit
from scenarios.market import MarketContext, MarketRecorder
from scenarios.policy import Policy, PolicyRequest, stable_unit, stages_name_orgs
from scenarios.schema import Provider, Scenario
from sim.population import Population
from sim.profile import Profile

Change = tuple[float, str, str, str, float | None]

#: a named tuple from all its fields in order (``lifecycle._new``: no constructor frame)
_new = tuple.__new__

#: Step of the anticipation process (hours): the Bass hazard is integrated once per step.
ANTICIPATION_STEP_H = 1.0


@dataclass
class World:
    """Everything the organisation processes share: scenario, policy, population, market."""

    env: simpy.Environment
    s: Scenario
    policy: Policy
    pop: Population
    profile: Profile
    seed: int
    timelines: list[list[Change]]
    credit: np.ndarray
    decided_at: np.ndarray
    market: MarketRecorder
    ctx: lc.Context
    #: a fixed market context (a load test's sample): anticipation comes from its record
    fixed_market: MarketContext | None = None
    #: the salt of the request-arrival hashes when it is not ``seed`` (a paired replication's)
    arrival_seed: int | None = None
    #: may organisations circumvent at all (``lifecycle.Org.relay_available``)?
    relay_available: bool = True
    calendar: Calendar = field(default_factory=lambda: Calendar())
    lives: dict[int, lc.Life] = field(default_factory=dict)
    orgs: dict[int, lc.Org] = field(default_factory=dict)
    points: list[float] = field(default_factory=list)
    #: where what the organisation notices may change: the incumbent's and its failover
    #: targets' change points (= ``points`` without failover rules)
    noticed_points: list[float] = field(default_factory=list)
    failover: bool = False
    per_org_failover: bool = False
    per_org: bool = False
    #: warned organisations of each region that may still leave in anticipation
    open_warned: dict[str, int] = field(default_factory=dict)
    thresholds: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    _agents: dict[int, tuple[lc.Org, np.random.Generator]] = field(default_factory=dict)
    _arrivals: dict[int, int] = field(default_factory=dict)
    _denied_cache: dict[tuple[Any, ...], bool] = field(default_factory=dict)
    #: the instant of the event being delivered (hours; SimPy's clock arithmetic, see :func:`run`)
    now: float = 0.0
    _last_when: dt.datetime | None = None
    _last_hours: float = 0.0
    _noticed_cache: dict[tuple[Any, ...], bool] = field(default_factory=dict)
    #: MigrationDone carried out when asked for (:meth:`_await_migration`): organisation →
    #: (hour, calendar sequence number) the event would have had
    done_early: dict[int, tuple[float, int]] = field(default_factory=dict)
    #: resolve MigrationDone without a calendar event where nothing can follow it — sound only
    #: where this engine schedules every event itself (:func:`simulate_agents`; not a harness
    #: feeding events of its own). False: the event at its instant, the reference the shortcut
    #: is tested against.
    eager_migration: bool = False
    #: (hour, sequence number) of the anticipation step being delivered
    tick: tuple[float, int] = (0.0, 0)

    @functools.cached_property
    def incumbent(self) -> str:
        return self.s.incumbent.name

    @functools.cached_property
    def provider_of(self) -> dict[str, Provider]:
        return {p.name: p for p in self.s.providers}

    @functools.cached_property
    def region_of(self) -> list[int]:
        return [int(r) for r in self.pop.region.tolist()]

    @functools.cached_property
    def rate_of(self) -> list[float]:
        return [float(x) for x in self.pop.rate.tolist()]

    @functools.cached_property
    def cum_of(self) -> list[list[float]]:
        """Each region's integrated traffic intensity at whole hours (``Profile.cum``)."""
        return [row.tolist() for row in self.profile.cum]

    @functools.cached_property
    def segment_of(self) -> list[int]:
        return [int(g) for g in self.pop.segment.tolist()]

    @functools.cached_property
    def region_codes(self) -> list[str]:
        return [r.code for r in self.s.regions]

    @functools.cached_property
    def segment_names(self) -> list[str]:
        return [g.name for g in self.s.segments]

    @functools.cached_property
    def start(self) -> dt.datetime:
        return self.s.window.start

    @functools.cached_property
    def horizon(self) -> float:
        return self.s.window.hours

    def at(self, hours: float) -> dt.datetime:
        # timedelta(hours=hours) with its arguments by position: the same value, no keywords
        return self.start + dt.timedelta(0, 0, 0, 0, 0, hours)

    def hours(self, when: dt.datetime) -> float:
        # the actions of one transition share its instant: the last conversion is kept
        if when is self._last_when:
            return self._last_hours
        h = self._last_hours = (when - self.start).total_seconds() / 3600.0
        self._last_when = when
        return h

    # ------------------------------------------------------------ per organisation

    def org(self, i: int) -> lc.Org:
        o = self.orgs.get(i)
        if o is None:
            o = self.orgs[i] = _new(lc.Org, (self.pop.ids[i], self.region_codes[self.region_of[i]],
                                             self.segment_names[self.segment_of[i]],
                                             self.relay_available))
        return o

    def first_request(self, i: int, after: float) -> float | None:
        """The organisation's first request at or after hour ``after`` (None: none in the window)."""
        rate = self.rate_of[i]
        if rate <= 0.0 or after >= self.horizon:
            return None
        cum = self.cum_of[self.region_of[i]]
        # the integrated intensity is piecewise linear between whole hours
        h = int(after)
        if h > len(cum) - 2:
            h = len(cum) - 2
        lo = cum[h]
        target = lo + (after - h) * (cum[h + 1] - lo) + self.arrival_gap(i) / rate
        k = bisect_left(cum, target) - 1
        if k >= len(cum) - 1:
            return None
        if k < 0:
            k = 0
        width = cum[k + 1] - cum[k]
        t = k + ((target - cum[k]) / width if width > 0 else 0.0)
        return t if t < self.horizon else None

    def first_requests(self, org: np.ndarray, after: np.ndarray) -> np.ndarray:
        """:meth:`first_request` of each organisation in ``org`` (distinct) from ``after`` (NaN:
        none asked), as an array with NaN for None: the same arithmetic, element by element."""
        out = np.full(org.size, np.nan)
        rate = self.pop.rate[org]
        ask = np.flatnonzero((rate > 0.0) & (after < self.horizon))   # NaN compares False
        if ask.size == 0:
            return out
        gap = np.array(self.arrival_gaps(org[ask].tolist()), dtype=float)
        cum = self.profile.cum
        region = self.pop.region[org[ask]]
        a = after[ask]
        h = np.minimum(np.floor(a).astype(np.int64), cum.shape[1] - 2)
        lo = cum[region, h]
        target = lo + (a - h) * (cum[region, h + 1] - lo) + gap / rate[ask]
        k = np.empty(ask.size, dtype=np.int64)
        for r in np.unique(region).tolist():
            mine = region == r
            k[mine] = np.searchsorted(cum[r], target[mine], side="left") - 1
        inside = k < cum.shape[1] - 1
        k = np.maximum(k, 0)
        kk = np.minimum(k + 1, cum.shape[1] - 1)
        width = cum[region, kk] - cum[region, k]
        frac = np.divide(target - cum[region, k], width, out=np.zeros_like(target), where=width > 0)
        t = k + frac
        out[ask] = np.where(inside & (t < self.horizon), t, np.nan)
        return out

    def arrival_gap(self, i: int) -> float:
        """The organisation's next Exp(1) draw of its request stream: a hash of (seed, id, count),
        so it never touches the generator its choices draw from, and costs no generator. (Each
        key is hashed once: uncached.)"""
        k = self._arrivals.get(i, 0)
        self._arrivals[i] = k + 1
        return -math.log1p(-stable_unit(self.arrival_salt, f"{self.pop.ids[i]}#{k}"))

    def arrival_gaps(self, orgs: list[int]) -> list[float]:
        """:meth:`arrival_gap` of each organisation of ``orgs`` (distinct), in turn."""
        counts, ids, salt = self._arrivals, self.pop.ids, self.arrival_salt
        ks = [counts.get(i, 0) for i in orgs]
        counts.update(zip(orgs, [k + 1 for k in ks], strict=True))
        return [-math.log1p(-stable_unit(salt, f"{ids[i]}#{k}")) for i, k in zip(orgs, ks, strict=True)]

    @functools.cached_property
    def arrival_salt(self) -> str:
        return f"{self.seed if self.arrival_seed is None else self.arrival_seed}/arrivals"

    def request(self, i: int, provider: str) -> PolicyRequest:
        return lc.direct_request(self.s, self.org(i), provider)

    def denied(self, i: int, hours: float) -> bool:
        """Is the organisation's direct traffic to the incumbent denied at ``hours``?"""
        j = bisect_right(self.points, hours)
        key = (j, self.region_of[i], self.segment_of[i], self.pop.ids[i] if self.per_org else "")
        hit = self._denied_cache.get(key)
        if hit is None:
            hit = self._denied_cache[key] = self.policy.decide(
                self.at(hours), self.request(i, self.incumbent)).denied
        return hit

    def prepare(self) -> None:
        """Where the policy's answers can change, and how finely they must be cached: the
        incumbent's change points, its failover targets' too (for what is noticed), and whether
        stages or rules name organisations (then every organisation is asked on its own)."""
        s = self.s
        self.points = change_hours(self, self.incumbent)
        targets = failover_providers(s, self.incumbent)
        self.failover = bool(targets)
        self.per_org_failover = rules_name_orgs(s)
        self.noticed_points = sorted(set(self.points).union(*(change_hours(self, p) for p in targets)))
        self.per_org = stages_name_orgs(s)

    def noticed(self, i: int, hours: float) -> bool:
        """Does the organisation *see* its direct request to the incumbent at ``hours`` denied?
        Not when a failover rule sends it to a target that serves it (``scenarios.failover``):
        the response it gets is a served one, as a load test's user reads off the wire."""
        if not self.denied(i, hours):
            return False
        if not self.failover:
            return True
        j = bisect_right(self.noticed_points, hours)
        key = (j, self.region_of[i], self.segment_of[i],
               self.pop.ids[i] if self.per_org or self.per_org_failover else "")
        hit = self._noticed_cache.get(key)
        if hit is None:
            hit = self._noticed_cache[key] = not served_instead(
                self.s, self.policy, self.at(hours), self.request(i, self.incumbent))
        return hit

    # ------------------------------------------------------------ the machine

    def deliver(self, i: int, event: lc.Event) -> None:
        """Feed one event to the organisation's life and carry out what it asks."""
        agent = self._agents.get(i)
        if agent is None:
            # its generator is made when it first acts, and kept with it
            agent = self._agents[i] = (self.org(i), lc.org_rng(self.seed, self.pop.ids[i]))
        org, rng = agent
        before = self.lives.get(i)
        if before is None:
            before = lc.start(org)
        life, actions = lc.step(before, event, org, rng, self.ctx)
        if life is before and not actions:   # the machine left it as it was (a late denial,
            return                           # a step it is past): nothing to keep or carry out
        self.lives[i] = life
        if before.warned and life is not before and before.state == lc.DIRECT and not before.denied_seen and (
                life.state != lc.DIRECT or life.denied_seen):
            self.open_warned[org.region] -= 1
        self._carry_out(i, actions)

    def _carry_out(self, i: int, actions: tuple[lc.Action, ...]) -> None:
        """Do what the machine asked, action by action."""
        acts = self._acts
        for action in actions:
            acts[type(action)](i, action)

    @functools.cached_property
    def _acts(self) -> dict[type, Callable[[int, Any], None]]:
        """What the engine does for each kind of action."""
        return {lc.Enter: self._enter, lc.Chose: self._chose, lc.AwaitAnticipation: self._await_anticipation,
                lc.AwaitMigration: self._await_migration, lc.AwaitDenial: self._await_denial}

    def _chose(self, i: int, a: lc.Chose) -> None:
        at, provider = a
        h = self.hours(at)
        self.market.chose(self.orgs[i].region, provider, h)
        self.decided_at[i] = h

    def _await_anticipation(self, i: int, a: lc.AwaitAnticipation) -> None:
        region = self.orgs[i].region
        self.open_warned[region] = self.open_warned.get(region, 0) + 1
        if self.fixed_market is None:
            mine = self.thresholds.get(region)
            if mine is None:
                mine = self.thresholds[region] = []
            mine.append((a[0], i))   # (its threshold)
            return
        # the full market's anticipation, as a load test's user reads it
        due = self.fixed_market.anticipation_at(region, a.threshold)
        if due is not None and self.hours(due) < self.horizon:
            self.calendar.add(max(self.hours(due), self.now), i, lc.AnticipationDue(due))

    def _await_migration(self, i: int, a: lc.AwaitMigration) -> None:
        h = self.hours(a.at)
        if h >= self.horizon:  # an event at the horizon itself would not run
            return
        life = self.lives[i]
        if not self.eager_migration or life.provider in self.s.policy:
            self.calendar.add(h, i, _new(lc.MigrationDone, (a.at,)))
            return
        # Migrating to a provider that denies nothing, the organisation's life is settled: the
        # machine turns MigrationDone into migrated and asks for nothing this engine would
        # schedule (no denial by that provider, ever), and any event it schedules before then
        # (a denied request to the incumbent) changes nothing but ``denied_seen`` in either
        # order. So it is delivered now — a calendar event, a delivery and a step fewer per
        # migration; only anticipation_step's count of who is still migrating at a step needs
        # the instant, kept in ``done_early``.
        org, rng = self._agents[i]
        done, actions = lc.step(life, _new(lc.MigrationDone, (a.at,)), org, rng, self.ctx)
        self.lives[i] = done
        self.done_early[i] = (h, self.calendar._seq)
        self._carry_out(i, actions)

    def migrating(self, i: int) -> bool:
        """Is the organisation migrating at the anticipation step being delivered (the one
        popped as ``tick``), as it would be had its MigrationDone waited for its instant?"""
        if self.lives[i].state == lc.MIGRATING:
            return True
        done = self.done_early.get(i)
        # still migrating unless its MigrationDone would have come before this step: at an
        # earlier hour, or at the same hour and scheduled first (as the calendar orders them)
        return done is not None and done > self.tick

    def _enter(self, i: int, e: lc.Enter) -> None:
        """The organisation is in the state entered from its instant: its timeline's next entry
        ``(hour, state, provider, path, relay_since_hour)`` — replacing the last one where that
        began at the same hour, and none where it says the same."""
        at, state, provider = e
        h = self.hours(at)
        entry: Change
        if state == lc.MIGRATING:
            entry = (h, state, provider, "direct", None)
        elif state == lc.MIGRATED:
            entry = (h, state, provider, "direct", None)
            # its first request to the provider opens the credit on offer then (the gateway's
            # rule: scenarios.ledger), and it sends that request from now on
            scale = 1.0 if self.pop.credit_scale is None else float(self.pop.credit_scale[i])
            self.credit[i] = grants_credit(self.provider_of[provider], at, scale)
        elif state == lc.CIRCUMVENTING:
            entry = (h, state, self.incumbent, "relay", h)
        elif state == lc.CHURNED:
            entry = (h, state, "", "", None)
        else:
            entry = (h, state, self.incumbent, "direct", None)
        line = self.timelines[i]
        if not line:
            line.append(entry)
            return
        last = line[-1]
        if last[0] == h:
            line[-1] = entry
        elif last[1] != entry[1] or last[2] != entry[2] or last[3] != entry[3] or last[4] != entry[4]:
            line.append(entry)

    def _await_denial(self, i: int, a: lc.AwaitDenial) -> None:
        when, path, provider = a
        if path != "relay" and provider != self.incumbent and provider not in self.s.policy:
            return   # an alternative without a policy denies nothing (next_denied_at)
        after = self.hours(when)
        if path == "relay":
            # Detection's clock starts where the incumbent first sees the organisation relaying:
            # its first relayed request (the gateway's RelayMemory, its first sighting from a
            # hosting network), not its decision — for an organisation of a few requests a month
            # the two are days or weeks apart. No relayed request in the window: never seen.
            line = self.timelines[i]
            assert line[-1][:2] == (after, lc.CIRCUMVENTING), "the relay's entry comes last"
            seen = self.first_request(i, after)
            # since as the timeline carries it (hours), what sim.pieces asks the policy with; never
            # seen in the window: since its end, so none of its relayed traffic is caught either
            line[-1] = (after, lc.CIRCUMVENTING, self.incumbent, "relay",
                        self.horizon if seen is None else seen)
            if seen is None:
                return
            caught = self.policy.detection_at(self.incumbent, self.pop.ids[i], self.at(seen))
            if caught is None:
                return
            caught_h = max(self.hours(caught), seen)
            if caught_h >= self.horizon:
                return
            # from the catch its relayed requests are denied, before it notices: the timeline
            # carries the instant (a cut for sim.pieces), the state does not change there
            if caught_h > after:
                line.append((caught_h, lc.CIRCUMVENTING, self.incumbent, "relay", seen))
            t = self.first_request(i, caught_h)
        elif provider == self.incumbent:
            t = self.next_denied_request(i, after)
        else:
            t = self.next_denied_at(i, provider, after)
        if t is not None:
            self.calendar.add(t, i, _new(lc.Denied, (self.at(t), path, provider)))

    def next_denied_request(self, i: int, after: float) -> float | None:
        """The organisation's first request at or after ``after`` that the incumbent denies and
        no failover target serves instead (a denial it notices)."""
        while True:
            start = first_noticed(self, i, after)
            if start is None:
                return None
            t = self.first_request(i, start)
            if t is None or self.noticed(i, t):
                return t
            after = t

    def next_denied_at(self, i: int, provider: str, after: float) -> float | None:
        """The first request after ``after`` that ``provider`` (an alternative) denies."""
        if provider not in self.s.policy:
            return None
        req = self.request(i, provider)
        points = sorted({after} | {self.hours(p) for p in self.policy.change_points(provider)
                                   if after < self.hours(p) < self.horizon})
        for p in points:
            if self.policy.decide(self.at(p), req).denied:
                return self.first_request(i, p)
        return None


Entry = tuple[float, int, int, "lc.Event | None"]


class Calendar:
    """The organisations' awaited events in time order, delivered by one process (:func:`run`).

    A process per awaited event would cost SimPy three events each; the awaited events are
    tens of thousands per replication, and they never need to wait on anything but time.
    Ties are broken by the order of scheduling, so a run is deterministic.

    A calendar queue: one heap of (hour, order of scheduling, ...) per whole hour of the window.
    Every event of an hour comes before every event of the next, so popping the first non-empty
    hour's heap gives exactly what one heap of all of them would — from heaps of tens of events
    rather than one of tens of thousands (a pop's comparisons grow with the heap's depth).
    """

    def __init__(self) -> None:
        self._hours: list[list[Entry]] = []
        #: the hour being delivered: every earlier hour's heap is empty
        self._at = 0
        self._seq = 0

    def add(self, hours: float, i: int, event: lc.Event | None) -> None:
        # (an event before the hour being delivered would be the next one: into its heap)
        b = int(hours)
        if b < self._at:
            b = self._at
        buckets = self._hours
        if b >= len(buckets):
            buckets.extend([] for _ in range(b + 1 - len(buckets)))
        heapq.heappush(buckets[b], (hours, self._seq, i, event))
        self._seq += 1

    def extend(self, events: list[tuple[float, int, lc.Event | None]]) -> None:
        """:meth:`add` of each ``(hours, i, event)`` of ``events`` in turn, onto an empty calendar,
        in time order (``events`` sorted by hour): each event is then the largest of its hour's
        heap so far, where ``heappush`` leaves it — appended, without the push."""
        assert not any(self._hours)
        buckets = self._hours
        seq = self._seq
        for hours, i, event in events:
            b = int(hours)
            if b < self._at:
                b = self._at
            if b >= len(buckets):
                buckets.extend([] for _ in range(b + 1 - len(buckets)))
            buckets[b].append((hours, seq, i, event))
            seq += 1
        self._seq = seq

    def current(self) -> list[Entry] | None:
        """The heap of the first hour that holds an event (None: the calendar is empty)."""
        buckets = self._hours
        b = self._at
        while b < len(buckets) and not buckets[b]:
            b += 1
        self._at = b
        return buckets[b] if b < len(buckets) else None

    def __bool__(self) -> bool:
        return self.current() is not None

    def next_at(self) -> float:
        heap = self.current()
        assert heap is not None
        return heap[0][0]

    def pop(self) -> tuple[float, int, lc.Event | None]:
        heap = self.current()
        assert heap is not None
        hours, _, i, event = heapq.heappop(heap)
        return hours, i, event


def change_hours(world: World, provider: str) -> list[float]:
    """The provider's policy change points as hours, clipped to the window, with 0 first."""
    points = {0.0} | {min(max(world.hours(p), 0.0), world.horizon)
                      for p in world.policy.change_points(provider)}
    return sorted(points)


def first_noticed(world: World, i: int, after: float) -> float | None:
    """The first instant ≥ ``after`` at which the organisation would notice a denial."""
    return _first(world, i, after, world.noticed_points, world.noticed)


def first_denial(world: World, i: int, after: float, points: list[float]) -> float | None:
    """The first instant ≥ ``after`` at which the organisation's direct traffic is denied."""
    return _first(world, i, after, points, world.denied)


def _first(world: World, i: int, after: float, points: list[float],
           holds: Callable[[int, float], bool]) -> float | None:
    """The first of ``after`` and the change ``points`` after it (inside the window) at which
    ``holds(i, instant)``: the answer only changes at those points."""
    if holds(i, after):
        return after
    for p in points:
        if after < p < world.horizon and holds(i, p):
            return p
    return None


# ---------------------------------------------------------------- processes


#: the calendar's organisation index of the announcement and of an anticipation step
ANNOUNCE, TICK = -2, -1


def run(env: simpy.Environment, world: World, warned: list[int],
        step: float) -> Generator[Any, Any, None]:
    """Deliver the calendar's events at their instants; the announcement and each step of the
    anticipation that follows it are events too.

    SimPy's clock moves to each announcement and anticipation step (a timeout each); the
    organisations' events between them are delivered in time order on a clock that advances as
    SimPy's does (``now + (t - now)``), stopping where ``env.run(until=horizon)`` would — a SimPy
    timeout per organisation event cost a third of the agents' time and changed nothing.
    """
    current = world.calendar.current
    deliver = world.deliver
    heappop = heapq.heappop
    horizon = world.horizon
    now = env.now
    markets: dict[str, _Market] = {}
    heap = current()
    while heap is not None:
        if not heap:
            heap = current()
            continue
        t = heap[0][0]
        if t > now:
            now = now + (t - now)
            if now >= horizon:   # env.run(until=horizon) stops before anything at the horizon
                return
            world.now = now
        _, seq, i, event = heappop(heap)
        if event is not None:
            deliver(i, event)
            continue
        world.tick = (t, seq)
        if now > env.now:
            yield env.timeout(now - env.now)
        if i == ANNOUNCE:
            markets = warn(world, warned)
        going = anticipation_step(world, markets, step) if i == TICK else bool(markets)
        if going and now + step <= horizon:
            world.calendar.add(now + step, TICK, None)
        heap = current()


def warn(world: World, warned: list[int]) -> dict[str, _Market]:
    """The announcement: every warned organisation draws its threshold; one market per region."""
    ann = world.s.behaviour.announcement
    assert ann is not None
    event = lc.Warned(ann.at)   # one event for all: it is the same message
    for i in warned:
        world.deliver(i, event)
    return {r: _Market(sorted(ts), len(ts)) for r, ts in world.thresholds.items()}


def anticipation_step(world: World, markets: dict[str, _Market], step: float) -> bool:
    """One step of Bass diffusion among the warned, per region; False once nobody can leave.

    Hazard ``p + q·F`` per day, F the share of the region's warned organisations that have left,
    integrated in Heun steps and recorded in the market. An organisation whose Exp(1) threshold
    (drawn by the machine when warned) the integral passes gets AnticipationDue, in threshold
    order, at the end of the step.
    """
    if not any(world.open_warned.get(r, 0) > 0 for r in markets):
        return False
    ann = world.s.behaviour.announcement
    assert ann is not None
    bass = ann.anticipation
    now = world.now
    for region, m in markets.items():
        share = m.left / m.size
        h0 = bass.p + bass.q * share
        ahead = share + (1.0 - share) * (1.0 - math.exp(-h0 * step / 24.0))
        h1 = bass.p + bass.q * ahead
        m.hazard += (h0 + h1) / 2.0 * step / 24.0
        world.market.hazard(region, now, m.hazard)
        due: lc.AnticipationDue | None = None
        lives = world.lives
        while m.next < len(m.order) and m.order[m.next][0] <= m.hazard:
            i = m.order[m.next][1]
            m.next += 1
            # an organisation already denied or gone: the machine would leave it as it is
            if lc.may_anticipate(lives[i]):
                if due is None:
                    due = lc.AnticipationDue(world.at(now))   # one message for all of the step
                world.deliver(i, due)
            if world.migrating(i):
                m.left += 1
    return True


@dataclass
class _Market:
    """The warned organisations of one region, by threshold."""

    order: list[tuple[float, int]]
    size: int
    next: int = 0
    hazard: float = 0.0
    left: int = 0


# ---------------------------------------------------------------- running it


@dataclass(frozen=True, slots=True)
class Timelines:
    changes: list[list[Change]]
    credit: np.ndarray
    decided_at: np.ndarray
    market: MarketContext


def simulate_agents(s: Scenario, policy: Policy, pop: Population, entropy: int,
                    profile: Profile | None = None, *, market: MarketContext | None = None,
                    arrival_seed: int | None = None, relay_available: bool = True,
                    eager_migration: bool = True) -> Timelines:
    """Run every affected organisation through the window; return all timelines.

    ``entropy`` is the seed of the organisations' generators (``lifecycle.org_rng``), and of their
    request arrivals unless ``arrival_seed`` is given. ``market``: a fixed market context (the
    full market's, for a load test's sample) instead of the one these organisations make;
    ``relay_available``: False where they had no relay to circumvent through;
    ``eager_migration``: see :attr:`World.eager_migration` (False only to test it against)."""
    env = simpy.Environment()
    inc = s.incumbent.name
    recorder = MarketRecorder(s.window.start)
    world = World(env=env, s=s, policy=policy, pop=pop, profile=profile or Profile.of(s), seed=entropy,
                  timelines=[[(0.0, "direct", inc, "direct", None)] for _ in range(pop.size)],
                  credit=np.zeros(pop.size, dtype=np.int64), decided_at=np.full(pop.size, math.nan),
                  market=recorder, ctx=lc.Context(s, policy, recorder if market is None else market),
                  fixed_market=market, arrival_seed=arrival_seed,
                  relay_available=relay_available, eager_migration=eager_migration)
    world.prepare()
    first = _first_denials(world, world.points)
    # the affected of each region, the regions in the order of their first affected organisation
    codes, region_of = world.region_codes, world.region_of
    for region, n in Counter([codes[region_of[i]] for i in first]).items():
        recorder.affect(region, n)
    # warned or not by the hour of the first denial (a few distinct ones)
    warns = {h: lc.warned_at(s, world.at(h)) is not None for h in set(first.values())}
    warned = [i for i, block_h in first.items() if warns[block_h]]
    world.calendar.extend([(t, i, _new(lc.Denied, (world.at(t), "direct", inc)))
                           for t, i in sorted(_first_denied_requests(world, first))])
    ann = s.behaviour.announcement
    if warned and ann is not None:
        world.calendar.add(world.hours(ann.at), ANNOUNCE, None)
    env.process(run(env, world, warned, ANTICIPATION_STEP_H))
    env.run(until=world.horizon)
    out = Timelines(changes=world.timelines, credit=world.credit, decided_at=world.decided_at,
                    market=recorder.context() if market is None else market)
    # the processes still waiting at the horizon hold the world in a reference cycle; emptied,
    # it leaves that cycle small (see the performance notes in the README)
    world.__dict__.clear()
    return out


def _first_denied_requests(world: World, first: dict[int, float]) -> list[tuple[float, int]]:
    """(hour, organisation) of each affected organisation's first request that it sees denied:
    ``world.next_denied_request(i, first[i])`` for every i, the common case in arrays.

    When no stage or failover rule names organisations, where the denial starts and whether a
    request at hour t is seen denied depend only on (region, segment) and the policy's change
    points around t: each distinct question is asked once, of its first organisation, through
    the same cached methods; the requests' instants are :meth:`World.first_request`'s arithmetic
    on arrays (the same IEEE operations in the same order). An organisation whose first request
    is not seen denied goes on one by one from there, as ``next_denied_request`` would.
    """
    if world.per_org or world.per_org_failover or not first:
        return [(t, i) for i, h in first.items()
                if (t := world.next_denied_request(i, h)) is not None]
    org = np.fromiter(first.keys(), dtype=np.int64, count=len(first))
    after = np.fromiter(first.values(), dtype=float, count=len(first))
    pop = world.pop
    region, segment = pop.region[org], pop.segment[org]
    # where each (first denial, region, segment) starts to be seen denied
    group = (np.unique(after, return_inverse=True)[1].ravel() * len(world.s.regions)
             + region) * len(world.s.segments) + segment
    _, rep, inverse = np.unique(group, return_index=True, return_inverse=True)
    hits = [first_noticed(world, int(org[k]), float(after[k])) for k in rep.tolist()]
    start = np.array([math.nan if h is None else h for h in hits])[inverse.ravel()]
    when = world.first_requests(org, start)
    out: list[tuple[float, int]] = []
    seen = np.isfinite(when)
    if seen.any():
        # seen denied at t? one question per (change interval of each kind, region, segment)
        key = np.stack([np.searchsorted(world.points, when, side="right"),
                        np.searchsorted(world.noticed_points, when, side="right"), region, segment])
        live = np.flatnonzero(seen)
        _, rep, inverse = np.unique(column_codes(key[:, live]), return_index=True,
                                    return_inverse=True)
        answer = np.array([world.noticed(int(org[live[k]]), float(when[live[k]]))
                           for k in rep.tolist()], dtype=np.bool_)
        noticed = np.zeros(org.size, dtype=bool)
        noticed[live] = answer[inverse.ravel()]
        out = list(zip(when[noticed].tolist(), org[noticed].tolist(), strict=True))
        for k in np.flatnonzero(seen & ~noticed).tolist():
            nxt = world.next_denied_request(int(org[k]), float(when[k]))
            if nxt is not None:
                out.append((nxt, int(org[k])))
    return out


def column_codes(keys: np.ndarray) -> np.ndarray:
    """Each column of the integer rows ``keys`` as one integer, in the columns' lexicographic
    order: ``np.unique`` of them is ``np.unique(keys, axis=1)`` (the same groups in the same order,
    the same first indices and inverse), many times faster."""
    low = keys.min(axis=1)
    dims = tuple((keys.max(axis=1) - low + 1).tolist())
    return np.ravel_multi_index(tuple(keys - low[:, None]), dims)


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
    if per_org:
        hits = [first_denial(world, i, 0.0, points) for i in range(world.pop.size)]
        return {i: hit for i, hit in enumerate(hits) if hit is not None and hit < world.horizon}
    # asked of the first organisation of each (region, segment); its answer holds for all of them
    key = world.pop.region * len(world.s.segments) + world.pop.segment
    keys, first = np.unique(key, return_index=True)
    hit_of = np.full(keys.size, np.inf)
    for k, i in enumerate(first.tolist()):
        hit = first_denial(world, i, 0.0, points)
        if hit is not None:
            hit_of[k] = hit
    hits = hit_of[np.searchsorted(keys, key)]
    affected = np.flatnonzero(hits < world.horizon)
    return dict(zip(affected.tolist(), hits[affected].tolist(), strict=True))


def market_context(s: Scenario, seed: int) -> MarketContext:
    """The market context of the full-market simulation of ``s`` for ``seed``: every organisation
    of the scenario, their generators seeded by ``seed`` (as a load test of that seed seeds its
    users'), through the window. A load test takes it with its plan (``loadtests.run``)."""
    from sim.population import build

    return simulate_agents(s, Policy(s), build(s, seed), seed).market
