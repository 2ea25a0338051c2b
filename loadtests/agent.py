"""One organisation's behaviour in a load test: the simulator's choices, driven by the wire.

A Locust user owns one :class:`OrgAgent`. The agent never reads a clock: the user passes the
scenario instant in (``route(now)``, ``observe(now, ...)``), so it is tested without sleeping.

States (``scenarios.rundir.ORG_STATES``) and what moves an organisation between them::

    direct ──warned (first warn response)──▶ draws its anticipation instant from the Bass
      │                                      curve of the announcement (closed form); if that
      │                                      comes before the block: migrating (to a provider
      │                                      chosen by logit among the alternatives)
      ├──blocked──▶ choose(probabilities(utilities(...))) with the user's own rng:
      │               wait        stay direct, decide again at the next block after wait_days
      │               circumvent  circumventing: requests go to the relay
      │               churn       churned: no more requests
      │               provider k  migrating for migration_days, then migrated to k
    circumventing ──blocked on the relay (detected)──▶ choose again, circumvent excluded for good
    migrating ──migration_days later──▶ migrated (sends k's substitute model to the gateway)

The choice functions are ``scenarios.behaviour``'s, shared with the simulator; only what
triggers them (a response on the wire instead of a simulated event) is the load test's own.
Every transition is logged with its scenario instant (for the ``orgs`` timeseries); timed
transitions (a migration completing) are logged at the instant they were due, not when noticed.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from scenarios import behaviour
from scenarios.distributions import sample_one
from scenarios.policy import first_denial
from scenarios.schema import Scenario

DIRECT, CIRCUMVENTING, MIGRATING, MIGRATED, CHURNED = (
    "direct", "circumventing", "migrating", "migrated", "churned")


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


def bass_inverse(p: float, q: float, u: float) -> float:
    """Days t at which the Bass CDF reaches ``u`` (inverse of ``behaviour.bass_cdf``)."""
    if p <= 0 or u >= 1:
        return math.inf
    return -math.log((1 - u) / (1 + u * q / p)) / (p + q)


def first_block(s: Scenario, provider: str) -> dt.datetime | None:
    """When ``provider``'s first block or throttle stage starts (None: it never denies)."""
    return first_denial(s, provider)


class OrgAgent:
    """The behaviour state machine of one organisation."""

    def __init__(self, s: Scenario, *, region: str, segment: str, rng: np.random.Generator,
                 relay_available: bool, start: dt.datetime) -> None:
        self.s, self.region, self.segment, self.rng = s, region, segment, rng
        self.incumbent = s.incumbent.name
        self.state, self.target = DIRECT, ""
        self.log: list[Transition] = [Transition(start, DIRECT, "")]
        self.excluded: set[str] = set() if relay_available else {behaviour.CIRCUMVENT}
        self.warned_at: dt.datetime | None = None
        self.anticipate_at: dt.datetime | None = None
        self.decide_after: dt.datetime | None = None
        self.migrate_done: dt.datetime | None = None

    # ------------------------------------------------------------ what the user asks

    def route(self, now: dt.datetime, migrated_share: Mapping[str, float]) -> Route | None:
        """Where a request at ``now`` goes; None once the organisation has churned."""
        self.advance(now, migrated_share)
        if self.state == CHURNED:
            return None
        if self.state == MIGRATED:
            return Route(self.target, "direct")
        return Route(self.incumbent, "relay" if self.state == CIRCUMVENTING else "direct")

    def model_for(self, route: Route, incumbent_model: str) -> str:
        if route.provider == self.incumbent:
            return incumbent_model
        return self.s.provider(route.provider).substitute_for(incumbent_model).name

    def observe(self, now: dt.datetime, decision: str, path: str,
                migrated_share: Mapping[str, float]) -> None:
        """React to a response's decision (``allow|warn|throttle|block|failed``)."""
        self.advance(now, migrated_share)
        if decision == "warn" and self.warned_at is None and self.state == DIRECT:
            self._warned(now)
        elif decision == "block":
            self._blocked(now, path, migrated_share)

    # ------------------------------------------------------------ timed transitions

    def advance(self, now: dt.datetime, migrated_share: Mapping[str, float]) -> None:
        if self.anticipate_at is not None and now >= self.anticipate_at:
            at, self.anticipate_at = self.anticipate_at, None
            if self.state == DIRECT:
                self._anticipate(at, migrated_share)
        if self.state == MIGRATING and self.migrate_done is not None and now >= self.migrate_done:
            self._enter(self.migrate_done, MIGRATED, self.target)

    # ------------------------------------------------------------ reactions

    def _warned(self, now: dt.datetime) -> None:
        self.warned_at = now
        ann = self.s.behaviour.announcement
        if ann is None or ann.provider != self.incumbent:
            return
        days = bass_inverse(ann.anticipation.p, ann.anticipation.q, float(self.rng.random()))
        if math.isinf(days):
            return
        at = max(now, ann.at + dt.timedelta(days=days))
        block = first_block(self.s, self.incumbent)
        if block is None or at < block:
            self.anticipate_at = at

    def _anticipate(self, at: dt.datetime, migrated_share: Mapping[str, float]) -> None:
        """Migrate before the block, to an alternative chosen by the same logit."""
        utils = behaviour.utilities(self.s, segment=self.segment, region=self.region, now=at,
                                    migrated_share=migrated_share,
                                    exclude=frozenset({behaviour.WAIT, behaviour.CIRCUMVENT,
                                                       behaviour.CHURN}))
        if utils:
            self._migrate(at, behaviour.choose(behaviour.probabilities(utils), self.rng))

    def _blocked(self, now: dt.datetime, path: str, migrated_share: Mapping[str, float]) -> None:
        if self.state == CIRCUMVENTING and path == "relay":
            self.excluded.add(behaviour.CIRCUMVENT)  # detected: the relay is burnt for good
            self._decide(now, migrated_share)
        elif self.state == MIGRATED:
            self.excluded.add(self.target)
            self._enter(now, DIRECT, "")
            self._decide(now, migrated_share)
        elif self.state == DIRECT and (self.decide_after is None or now >= self.decide_after):
            self._decide(now, migrated_share)

    def _decide(self, now: dt.datetime, migrated_share: Mapping[str, float]) -> None:
        utils = behaviour.utilities(self.s, segment=self.segment, region=self.region, now=now,
                                    migrated_share=migrated_share, exclude=frozenset(self.excluded))
        choice = behaviour.choose(behaviour.probabilities(utils), self.rng)
        if choice == behaviour.WAIT:
            days = max(0.0, sample_one(self.s.behaviour.wait_days, self.rng))
            self.decide_after = now + dt.timedelta(days=days)
            if self.state != DIRECT:
                self._enter(now, DIRECT, "")
        elif choice == behaviour.CIRCUMVENT:
            self._enter(now, CIRCUMVENTING, "")
        elif choice == behaviour.CHURN:
            self._enter(now, CHURNED, "")
        else:
            self._migrate(now, choice)

    def _migrate(self, now: dt.datetime, provider: str) -> None:
        days = max(0.0, sample_one(self.s.segment(self.segment).migration_days, self.rng))
        self.target = provider
        self.migrate_done = now + dt.timedelta(days=days)
        self._enter(now, MIGRATING, provider)

    def _enter(self, at: dt.datetime, state: str, provider: str) -> None:
        self.state = state
        self.log.append(Transition(at, state, provider))
