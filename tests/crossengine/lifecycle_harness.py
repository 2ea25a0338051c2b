"""Both engines' adapters to the organisation's life, driven by one list of external events.

:class:`SimSide` is the simulator's adapter (``sim.model.World``) with a population of one
organisation; :class:`LoadSide` is the load test's (``loadtests.agent.OrgAgent``). Each handles
its own timers (a migration's end, the anticipation instant) as it does in its engine; the
denials come from the list — the simulator's own request-stream denials are left out, since here
the list says when the organisation's denied requests happen. Both see one market context.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import simpy

from loadtests.agent import OrgAgent, Route
from scenarios import lifecycle as lc
from scenarios.ledger import grants_credit
from scenarios.market import MarketContext, MarketRecorder
from scenarios.policy import Policy
from scenarios.schema import Scenario
from sim.model import World, change_hours
from sim.population import Population
from sim.profile import Profile


@dataclass(frozen=True)
class Outcome:
    transitions: list[tuple[dt.datetime, str, str]]   # (instant, state, provider if migrating/ed)
    routes: list[Route | None]                         # where a request at each probe goes
    credit: int                                        # free tokens opened at the new provider


def _collapse(items: list[tuple[dt.datetime, str, str]]) -> list[tuple[dt.datetime, str, str]]:
    """A timeline as states from instants: of several states entered at one instant the last
    holds (the simulator's timeline keeps only it), and a repeated state is no change."""
    last: list[tuple[dt.datetime, str, str]] = []
    for item in items:
        if last and last[-1][0] == item[0]:
            last[-1] = item
        else:
            last.append(item)
    out: list[tuple[dt.datetime, str, str]] = []
    for item in last:
        if not out or out[-1][1:] != item[1:]:
            out.append(item)
    return out


class SimSide:
    def __init__(self, s: Scenario, org: lc.Org, seed: int, market: MarketContext) -> None:
        self.s, self.org, self.market = s, org, market
        policy = Policy(s)
        pop = Population(ids=(org.id,), region=np.array([[r.code for r in s.regions].index(org.region)]),
                         segment=np.array([[g.name for g in s.segments].index(org.segment)]),
                         model=np.zeros(1, dtype=np.int64), rate=np.ones(1))
        inc = s.incumbent.name
        self.world = World(env=simpy.Environment(), s=s, policy=policy, pop=pop, profile=Profile.of(s),
                           seed=seed, timelines=[[(0.0, "direct", inc, "direct", None)]],
                           credit=np.zeros(1, dtype=np.int64), decided_at=np.full(1, np.nan),
                           market=MarketRecorder(s.window.start), ctx=lc.Context(s, policy, market))
        self.world.points = change_hours(self.world, inc)
        self.world.orgs[0] = org
        self.due: list[tuple[dt.datetime, lc.Event]] = []
        # the announcement, as simulate_agents schedules it
        warned = lc.warned_at(s, lc.denial_start(policy, s, org, s.window.start))
        if warned is not None:
            self.due.append((warned, lc.Warned(warned)))

    def _timers_until(self, at: dt.datetime) -> None:
        w = self.world
        while True:
            cal = w.calendar.next_at() if w.calendar else None
            ant = self.due[0][0] if self.due else None
            t_cal = w.at(cal) if cal is not None else None
            if (t_cal is None or t_cal > at) and (ant is None or ant > at):
                return
            if ant is not None and (t_cal is None or ant <= t_cal):
                self._deliver(self.due.pop(0)[1])
                self.due.sort(key=lambda d: d[0])
                continue
            _, _, event = w.calendar.pop()
            if isinstance(event, lc.MigrationDone):   # its own request-stream denials: from the list
                self._deliver(event)

    def _deliver(self, event: lc.Event) -> None:
        before = len(self.world.thresholds.get(self.org.region, []))
        self.world.deliver(0, event)
        thresholds = self.world.thresholds.get(self.org.region, [])
        if len(thresholds) > before:   # warned: the anticipation process would pass its threshold
            due = self.market.anticipation_at(self.org.region, thresholds[-1][0])
            if due is not None:
                self.due.append((due, lc.AnticipationDue(due)))

    def feed(self, event: lc.Event) -> None:
        self._timers_until(event.at)
        self._deliver(event)

    def route(self, at: dt.datetime) -> Route | None:
        self._timers_until(at)
        h = self.world.hours(at)
        _, state, provider, path, _ = [c for c in self.world.timelines[0] if c[0] <= h][-1]
        # as sim.pieces routes a state: a migrating organisation still sends to the incumbent
        if state == "churned":
            return None
        if state == "migrated":
            return Route(provider, "direct")
        return Route(self.s.incumbent.name, path)

    def outcome(self, routes: list[Route | None]) -> Outcome:
        w = self.world
        line = [(w.at(c[0]), c[1], c[2] if c[1] in ("migrating", "migrated") else "")
                for c in w.timelines[0]]
        return Outcome(_collapse(line), routes, int(w.credit[0]))


class LoadSide:
    def __init__(self, s: Scenario, org: lc.Org, seed: int, market: MarketContext) -> None:
        self.s = s
        self.agent = OrgAgent(org, rng=lc.org_rng(seed, org.id), ctx=lc.Context(s, Policy(s), market),
                              start=s.window.start)

    def feed(self, event: lc.Event) -> None:
        if isinstance(event, lc.Denied):
            self.agent.observe(event.at, "block", Route(event.provider, event.path))
        else:
            raise AssertionError(f"the wire brings denials only, not {event}")

    def route(self, at: dt.datetime) -> Route | None:
        return self.agent.route(at)

    def outcome(self, routes: list[Route | None]) -> Outcome:
        line = [(t.at, t.state, t.provider) for t in self.agent.log]
        credit = 0
        migrated = [t for t in self.agent.log if t.state == "migrated"]
        if migrated and self.agent.state == "migrated":
            # the gateway opens the credit at the organisation's first request to the provider,
            # which a migrated organisation sends from the instant it arrives
            credit = grants_credit(self.s.provider(migrated[-1].provider), migrated[-1].at)
        return Outcome(_collapse(line), routes, credit)


def run_both(s: Scenario, org: lc.Org, seed: int, events: list[lc.Denied], probes: list[dt.datetime],
             market: MarketContext | None = None) -> tuple[Outcome, Outcome]:
    """Feed the same denials to both adapters; what each did, and where each sent requests."""
    ctx = market or MarketContext.closed_form(s)
    sides = (SimSide(s, org, seed, ctx), LoadSide(s, org, seed, ctx))
    items: list[tuple[dt.datetime, int, lc.Denied | None]] = sorted(
        [(e.at, 0, e) for e in events] + [(t, 1, None) for t in probes], key=lambda x: (x[0], x[1]))
    out = []
    for side in sides:
        routes: list[Route | None] = []
        for at, _, event in items:
            if event is None:
                routes.append(side.route(at))
            else:
                side.feed(event)
        out.append(side.outcome(routes))
    return out[0], out[1]
