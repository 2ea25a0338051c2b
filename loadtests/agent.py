"""One organisation in a load test: the load test's adapter to ``scenarios.lifecycle``.

A Locust user owns one :class:`OrgAgent`. The state machine is the simulator's (one transition
function, ``lifecycle.step``); this module only turns what the user sees into its events:

- **Warned**: at the announcement, if the organisation's direct traffic is first denied after
  it (``lifecycle.warned_at``; an e-mail, not a response) — delivered at its instant;
- **AnticipationDue**: when the market context says the region's anticipation hazard passes
  the organisation's threshold (``MarketContext.anticipation_at``) — delivered at its instant;
- **Denied**: a response the gateway denied (``block`` or ``throttle``) on the wire, at the
  instant the request was sent, on its path (``direct`` or ``relay``) and provider;
- **MigrationDone**: at the instant the machine asked for.

Timed events are delivered, in time order, whenever the user next asks (``route(now)``,
``observe(now, ...)``), and those left after its last request when it finishes (``finish(end)``)
— the agent never reads a clock, so it is tested without sleeping — and each transition is
logged at the scenario instant it happened, not when it was noticed.
The market (imitation shares, anticipation) comes from the :class:`lifecycle.Context`, which a
load test builds from the full-market simulation's record (``market.json``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from scenarios import lifecycle as lc
from scenarios.market import MarketContext
from scenarios.policy import first_denial
from scenarios.schema import Scenario

DIRECT, CIRCUMVENTING, MIGRATING, MIGRATED, CHURNED = (
    lc.DIRECT, lc.CIRCUMVENTING, lc.MIGRATING, lc.MIGRATED, lc.CHURNED)
#: the responses an organisation notices as a denial of its traffic
DENIALS = frozenset({"block", "throttle"})


@dataclass(frozen=True, slots=True)
class Transition:
    at: dt.datetime
    state: str
    provider: str  # the provider migrated (or migrating) to; "" otherwise


@dataclass(frozen=True, slots=True)
class Route:
    """Where the next request goes: the provider whose model to ask for, and by which path."""

    provider: str
    path: str  # "direct" or "relay"


def first_block(s: Scenario, provider: str) -> dt.datetime | None:
    """When ``provider``'s first block or throttle stage starts (None: it never denies)."""
    return first_denial(s, provider)


class OrgAgent:
    """One organisation's life, fed by the wire."""

    def __init__(self, org: lc.Org, *, rng: np.random.Generator, ctx: lc.Context,
                 start: dt.datetime) -> None:
        self.org, self.rng, self.ctx = org, rng, ctx
        self.s = ctx.s
        self.life = lc.start(org)
        self.log: list[Transition] = [Transition(start, DIRECT, "")]
        self.timers: list[tuple[dt.datetime, int, lc.Event]] = []
        self._seq = 0
        warned = lc.warned_at(self.s, lc.denial_start(ctx.policy, self.s, org, start))
        if warned is not None:
            self._timer(lc.Warned(warned))

    @property
    def state(self) -> str:
        return self.life.state

    @property
    def target(self) -> str:
        return self.life.provider

    # ------------------------------------------------------------ what the user asks

    def route(self, now: dt.datetime) -> Route | None:
        """Where a request at ``now`` goes; None once the organisation has churned."""
        self.advance(now)
        if self.state == CHURNED:
            return None
        if self.state == MIGRATED:
            return Route(self.target, "direct")
        return Route(self.ctx.incumbent, "relay" if self.state == CIRCUMVENTING else "direct")

    def model_for(self, route: Route, incumbent_model: str) -> str:
        if route.provider == self.ctx.incumbent:
            return incumbent_model
        return self.s.provider(route.provider).substitute_for(incumbent_model).name

    def observe(self, sent: dt.datetime, decision: str, route: Route) -> None:
        """React to the decision a response shows (``allow|warn|throttle|block|failed``) to a
        request sent at ``sent`` by ``route``."""
        self.advance(sent)
        if decision in DENIALS:
            self._deliver(lc.Denied(sent, route.path, route.provider))

    def advance(self, now: dt.datetime) -> None:
        """Deliver the timed events due by ``now``, in time order."""
        while self.timers and self.timers[0][0] <= now:
            _, _, event = self.timers.pop(0)
            self._deliver(event)

    def finish(self, end: dt.datetime) -> None:
        """The organisation's last requests are sent: its timed events before ``end`` (the
        window's end) still happen — a warning read, an anticipated move, a migration finished
        need no request — as they do in the simulator, whose timeline runs to the horizon."""
        while self.timers and self.timers[0][0] < end:
            _, _, event = self.timers.pop(0)
            self._deliver(event)

    # ------------------------------------------------------------ the machine

    def _deliver(self, event: lc.Event) -> None:
        self.life, actions = lc.step(self.life, event, self.org, self.rng, self.ctx)
        for action in actions:
            if isinstance(action, lc.Enter):
                self.log.append(Transition(action.at, action.state,
                                           action.provider if action.state in (MIGRATING, MIGRATED) else ""))
            elif isinstance(action, lc.AwaitMigration):
                self._timer(lc.MigrationDone(action.at))
            elif isinstance(action, lc.AwaitAnticipation):
                market = self.ctx.market
                assert isinstance(market, MarketContext)
                due = market.anticipation_at(self.org.region, action.threshold)
                if due is not None:
                    self._timer(lc.AnticipationDue(due))
            # Chose: the market context already holds the full market's decisions;
            # AwaitDenial: the wire will tell

    def _timer(self, event: lc.Event) -> None:
        self.timers.append((event.at, self._seq, event))
        self._seq += 1
        self.timers.sort(key=lambda x: (x[0], x[1]))
