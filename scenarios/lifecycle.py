"""The organisation's life: one pure state machine that both engines drive.

::

    direct ──Warned (the announcement)──▶ draws its Exp(1) anticipation threshold
      │  └──AnticipationDue (the region's hazard passed it, no denial seen yet)──▶ migrating
      ├──Denied on the direct path (its first denied request, or the first after a wait)──▶ decide
      │     wait        direct; decides again at its first denied request after wait_days
      │     circumvent  circumventing (relay) from now
      │     churn       churned: sends nothing more
      │     provider k  migrating to k for migration_days
    circumventing ──Denied on the relay (detected)──▶ decide again; circumventing is out for good
    migrating ──MigrationDone──▶ migrated (requests go to k)
    migrated ──Denied at k──▶ k is out for good; direct, decide again

:func:`step` is ``(life, event, org, rng, context) -> (life', actions)`` and nothing else: it
reads no clock and keeps no state of its own. The simulator feeds it simulated events, a Locust
user real responses (``sim.model``, ``loadtests.agent``); what an organisation *notices* is the
same event in both — a denied response to one of its own requests: the simulator draws the
instant of that request from the organisation's own request stream, the load test sees it on the
wire. Draws from the organisation's generator (:func:`org_rng`, seeded from the scenario seed and
the organisation's id) happen only here, in this order: Warned — one exponential; a decision — one
uniform (the logit choice), then one ``wait_days`` draw (wait) or one ``migration_days`` draw
(migrate). So the same organisation given the same events makes the same choices in both engines.

The market a choice depends on (imitation shares; the anticipation hazard) comes from the
:class:`Context`'s ``market`` (``scenarios.market``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, NamedTuple, Protocol

import numpy as np
from numpy.random.bit_generator import ISeedSequence

from scenarios import behaviour
from scenarios.distributions import sample_one
from scenarios.policy import Policy, PolicyRequest
from scenarios.schema import Scenario

DIRECT, CIRCUMVENTING, MIGRATING, MIGRATED, CHURNED = (
    "direct", "circumventing", "migrating", "migrated", "churned")
#: Before its first denial a warned organisation may only migrate.
ANTICIPATING_EXCLUDES = frozenset({behaviour.WAIT, behaviour.CIRCUMVENT, behaviour.CHURN})


# ---------------------------------------------------------------- the organisation and its state


class Org(NamedTuple):
    id: str
    region: str
    segment: str
    relay_available: bool = True


class Life(NamedTuple):
    """Where an organisation is in its life (a tuple: a transition copies it)."""

    state: str = DIRECT
    provider: str = ""                 # the provider migrating or migrated to
    excluded: frozenset[str] = frozenset()  # alternatives out for good (a burnt relay, a closed k)
    warned: bool = False
    threshold: float | None = None     # its anticipation threshold, once warned
    denied_seen: bool = False          # has it had a denied response yet?
    decide_after: dt.datetime | None = None  # a waiting organisation decides again from then on
    relay_since: dt.datetime | None = None
    migrate_done: dt.datetime | None = None


# ---------------------------------------------------------------- events


class Warned(NamedTuple):
    """The announcement reaches the organisation (its direct traffic will be denied)."""

    at: dt.datetime


class Denied(NamedTuple):
    """A denied response (block or throttle) to one of the organisation's requests."""

    at: dt.datetime
    path: str       # "direct" or "relay"
    provider: str   # the provider that denied it


class AnticipationDue(NamedTuple):
    """The region's integrated anticipation hazard passed the organisation's threshold."""

    at: dt.datetime


class MigrationDone(NamedTuple):
    at: dt.datetime


Event = Warned | Denied | AnticipationDue | MigrationDone


# ---------------------------------------------------------------- actions


class Enter(NamedTuple):
    """The organisation is in ``state`` (with ``provider``) from ``at``."""

    at: dt.datetime
    state: str
    provider: str = ""


class AwaitAnticipation(NamedTuple):
    """Tell me (AnticipationDue) when my region's integrated hazard reaches ``threshold``."""

    threshold: float


class Chose(NamedTuple):
    """A decision to migrate to ``provider``: the market's imitation share counts it."""

    at: dt.datetime
    provider: str


class AwaitMigration(NamedTuple):
    """Tell me (MigrationDone) at ``at``."""

    at: dt.datetime


class AwaitDenial(NamedTuple):
    """Tell me (Denied) at my first denied request on ``path`` at or after ``after``."""

    after: dt.datetime
    path: str
    provider: str


Action = Enter | AwaitAnticipation | Chose | AwaitMigration | AwaitDenial


# ---------------------------------------------------------------- the context

_NOTHING: frozenset[str] = frozenset()


class Market(Protocol):
    def shares(self, region: str, at: dt.datetime) -> Mapping[str, float]: ...


@dataclass
class Context:
    """What a transition may read besides the organisation: scenario, policy, market.

    It also caches the parts of the utilities that do not depend on the market (they change only
    at the incentive offers' deadlines): :meth:`probabilities` equals
    ``behaviour.probabilities(behaviour.utilities(...))`` (tests/scenarios/test_lifecycle.py).
    """

    s: Scenario
    policy: Policy
    market: Market
    _parts: dict[tuple[str, str, int], tuple[tuple[str, float, float], ...]] = field(default_factory=dict)
    #: (segment, region, epoch, excluded) -> [shares of the last answer, its probabilities, the
    #: open alternatives, their utilities with nobody migrated, their gains per unit of share]
    _open: dict[tuple[object, ...], list[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.incumbent = self.s.incumbent.name
        self.deadlines = sorted({p.incentive.deadline for p in self.s.alternatives
                                 if p.incentive is not None and p.incentive.deadline is not None})
        self.alternatives_have_policy = any(p.name in self.s.policy for p in self.s.alternatives)
        self.migration_days = {g.name: g.migration_days for g in self.s.segments}

    def closed(self, org: Org, at: dt.datetime) -> frozenset[str]:
        """Alternatives whose own policy denies the organisation's home region at ``at``."""
        if not self.alternatives_have_policy:
            return _NOTHING
        return frozenset(p.name for p in self.s.alternatives if self.policy.decide(at, PolicyRequest(
            provider=p.name, country=org.region, org=org.id, segment=org.segment,
            home_country=org.region)).denied)

    def probabilities(self, org: Org, at: dt.datetime, exclude: frozenset[str]) -> dict[str, float]:
        names, probs, _ = self._probabilities(org, at, exclude)
        return dict(zip(names, probs, strict=True))

    def choose(self, org: Org, at: dt.datetime, exclude: frozenset[str],
               rng: np.random.Generator) -> str | None:
        """``behaviour.choose(self.probabilities(org, at, exclude), rng)`` without the mapping;
        None, and no draw, where no alternative is open."""
        names, _, cumulative = self._probabilities(org, at, exclude)
        return behaviour.pick(names, cumulative, rng) if names else None

    def _probabilities(self, org: Org, at: dt.datetime,
                       exclude: frozenset[str]) -> tuple[list[str], list[float], list[float]]:
        """The open alternatives, their choice probabilities and the running sums of these
        (``behaviour.pick``'s), as three lists in order."""
        shares = self.market.shares(org.region, at)
        key = (org.segment, org.region, bisect_right(self.deadlines, at), exclude)
        # the open alternatives' terms for this key, and the last answer with the shares mapping
        # it was computed from: the market hands out the same mapping until the region's next
        # decision (no cache by the shares' values: in a simulation they differ at every decision)
        entry = self._open.get(key)
        if entry is None:
            terms = [t for t in self._terms(org, at, key[2]) if t[0] not in exclude]
            entry = self._open[key] = [None, [], [t[0] for t in terms], [t[1] for t in terms],
                                       [t[2] for t in terms], []]
        names = entry[2]
        if entry[0] is shares:
            return names, entry[1], entry[5]
        base, slopes = entry[3], entry[4]
        get = shares.get
        # behaviour.probabilities(utils), the same operations in the same order
        utils = [u + slope * get(k, 0.0) for k, u, slope in zip(names, base, slopes, strict=True)]
        if utils:
            top = max(utils)
            exp = math.exp
            weights = [exp(v - top) for v in utils]
            total = sum(weights)
            probs = [w / total for w in weights]
        else:
            probs = []
        cumulative = list(accumulate(probs))
        entry[0], entry[1], entry[5] = shares, probs, cumulative
        return names, probs, cumulative

    def _terms(self, org: Org, at: dt.datetime, epoch: int) -> tuple[tuple[str, float, float], ...]:
        """(alternative, utility with nobody migrated, gain per unit of imitation share)."""
        key = (org.segment, org.region, epoch)
        hit = self._parts.get(key)
        if hit is None:
            zero = behaviour.utilities(self.s, segment=org.segment, region=org.region, now=at,
                                       migrated_share={})
            one = behaviour.utilities(self.s, segment=org.segment, region=org.region, now=at,
                                      migrated_share={p.name: 1.0 for p in self.s.alternatives})
            hit = self._parts[key] = tuple((k, u, one[k] - u) for k, u in zero.items())
        return hit


# ---------------------------------------------------------------- the transition function


def start(org: Org) -> Life:
    """An organisation's life before anything happened."""
    return _START if org.relay_available else _START_NO_RELAY


#: a named tuple from all its fields in order, without the frame of its generated constructor
#: (for the states, events and actions built tens of thousands of times per simulation)
_new = tuple.__new__


_START = Life()
_START_NO_RELAY = Life(excluded=frozenset({behaviour.CIRCUMVENT}))


def step(life: Life, event: Event, org: Org, rng: np.random.Generator,
         ctx: Context) -> tuple[Life, tuple[Action, ...]]:
    """The organisation's next state and what it asks of its engine (see the module docstring)."""
    return _STEPS.get(type(event), _denied)(life, event, org, rng, ctx)  # type: ignore[operator]


def _warned(life: Life, event: Warned, org: Org, rng: np.random.Generator,
            ctx: Context) -> tuple[Life, tuple[Action, ...]]:
    # (every transition reads the fields it needs by unpacking the state once)
    state, provider, excluded, warned, _, denied_seen, decide_after, relay_since, migrate_done = life
    if warned or denied_seen or state != DIRECT:
        return life, ()
    threshold = float(rng.exponential())
    return (_new(Life, (DIRECT, provider, excluded, True, threshold, False, decide_after, relay_since,
                        migrate_done)),
            (_new(AwaitAnticipation, (threshold,)),))


def _anticipation_due(life: Life, event: AnticipationDue, org: Org, rng: np.random.Generator,
                      ctx: Context) -> tuple[Life, tuple[Action, ...]]:
    if not may_anticipate(life):
        return life, ()
    choice = ctx.choose(org, event.at, ANTICIPATING_EXCLUDES | life.excluded
                        | ctx.closed(org, event.at), rng)
    if choice is None:
        return life, ()
    return _migrate(life, choice, event.at, org, rng, ctx)


def _migration_done(life: Life, event: MigrationDone, org: Org, rng: np.random.Generator,
                    ctx: Context) -> tuple[Life, tuple[Action, ...]]:
    state, provider, excluded, warned, threshold, denied_seen, decide_after, relay_since, _ = life
    if state != MIGRATING:
        return life, ()
    at = event.at
    return (_new(Life, (MIGRATED, provider, excluded, warned, threshold, denied_seen, decide_after,
                        relay_since, None)),
            (_new(Enter, (at, MIGRATED, provider)), _new(AwaitDenial, (at, "direct", provider))))


def may_anticipate(life: Life) -> bool:
    """Can AnticipationDue still move the organisation? Only while it is direct and has seen no
    denial; otherwise :func:`step` returns it unchanged, and an engine may skip the event."""
    return life.state == DIRECT and not life.denied_seen


def _denied(life: Life, ev: Denied, org: Org, rng: np.random.Generator,
            ctx: Context) -> tuple[Life, tuple[Action, ...]]:
    state, provider, excluded, warned, threshold, denied_seen, decide_after, relay_since, \
        migrate_done = life
    at, path, by = ev
    seen = life if denied_seen else _new(Life, (
        state, provider, excluded, warned, threshold, True, decide_after, relay_since, migrate_done))
    if state == CIRCUMVENTING and path == "relay":
        # detected: the relay is burnt for good (detection flags the organisation, not a route)
        burnt = _new(Life, (state, provider, excluded | {behaviour.CIRCUMVENT}, warned, threshold,
                            True, decide_after, relay_since, migrate_done))
        return _decide(burnt, at, org, rng, ctx)
    if state == MIGRATED and by == provider:
        gone = _new(Life, (DIRECT, "", excluded | {provider}, warned, threshold, True, decide_after,
                           relay_since, migrate_done))
        return _decide(gone, at, org, rng, ctx, entered=(_new(Enter, (at, DIRECT, "")),))
    if state == DIRECT and path == "direct" and by == ctx.incumbent and (
            decide_after is None or at >= decide_after):
        return _decide(seen, at, org, rng, ctx)
    return seen, ()


def _decide(life: Life, at: dt.datetime, org: Org, rng: np.random.Generator, ctx: Context,
            entered: tuple[Action, ...] = ()) -> tuple[Life, tuple[Action, ...]]:
    state, provider, excluded, warned, threshold, denied_seen, _, relay_since, migrate_done = life
    closed = ctx.closed(org, at)
    picked = ctx.choose(org, at, excluded | closed if closed else excluded, rng)
    choice = behaviour.WAIT if picked is None else picked
    if choice == behaviour.WAIT:
        # nothing open: waiting for good (no draw)
        days = math.inf if picked is None else max(0.0, sample_one(ctx.s.behaviour.wait_days, rng))
        if math.isinf(days):
            return (_new(Life, (DIRECT, provider, excluded, warned, threshold, denied_seen, None,
                                relay_since, migrate_done)), entered)
        after = at + dt.timedelta(days)   # (days by position: the same value)
        back = (_new(Enter, (at, DIRECT, "")),) if state != DIRECT else entered
        return (_new(Life, (DIRECT, provider, excluded, warned, threshold, denied_seen, after, None,
                            migrate_done)),
                (*back, _new(AwaitDenial, (after, "direct", ctx.incumbent))))
    if choice == behaviour.CIRCUMVENT:
        return (_new(Life, (CIRCUMVENTING, provider, excluded, warned, threshold, denied_seen, None,
                            at, migrate_done)),
                (*entered, _new(Enter, (at, CIRCUMVENTING, "")),
                 _new(AwaitDenial, (at, "relay", ctx.incumbent))))
    if choice == behaviour.CHURN:
        churned = _new(Life, (CHURNED, provider, excluded, warned, threshold, denied_seen, None, None,
                              migrate_done))
        return churned, (*entered, _new(Enter, (at, CHURNED, "")))
    life2, actions = _migrate(life, choice, at, org, rng, ctx)
    return life2, (*entered, *actions) if entered else actions


def _migrate(life: Life, provider: str, at: dt.datetime, org: Org, rng: np.random.Generator,
             ctx: Context) -> tuple[Life, tuple[Action, ...]]:
    _, _, excluded, warned, threshold, denied_seen, _, _, _ = life
    drawn = sample_one(ctx.migration_days[org.segment], rng)
    days = drawn if drawn > 0.0 else 0.0   # max(0.0, drawn), without the call
    done = at + dt.timedelta(days)
    return (_new(Life, (MIGRATING, provider, excluded, warned, threshold, denied_seen, None, None,
                        done)),
            (_new(Chose, (at, provider)), _new(Enter, (at, MIGRATING, provider)),
             _new(AwaitMigration, (done,))))


#: :func:`step`'s transition for each kind of event (Denied: :func:`_denied`)
_STEPS = {Warned: _warned, AnticipationDue: _anticipation_due, MigrationDone: _migration_done,
          Denied: _denied}


# ---------------------------------------------------------------- shared definitions


def org_rng(seed: int, org_id: str) -> np.random.Generator:
    """The organisation's own generator: PCG64 seeded from (scenario seed, organisation id).

    The four state words are a BLAKE2b hash of both, handed straight to the bit generator (a
    SeedSequence per organisation would cost more than the organisation's whole life)."""
    digest = hashlib.blake2b(f"{seed & 0xFFFFFFFFFFFFFFFF}/{org_id}".encode(), digest_size=32).digest()
    # numpy takes any ISeedSequence here (its stubs only name SeedSequence)
    return np.random.Generator(np.random.PCG64(_Words(digest)))  # type: ignore[arg-type]


_U64 = np.dtype(np.uint64)


class _Words(ISeedSequence):
    """Seed words (the bytes of four native-order uint64) given to PCG64 as they are."""

    __slots__ = ("digest",)

    def __init__(self, digest: bytes) -> None:
        self.digest = digest

    def generate_state(self, n_words: int, dtype: Any = np.uint32) -> np.ndarray:
        if n_words == 4 and dtype is np.uint64:   # what PCG64 asks: its words, read in place
            return np.frombuffer(self.digest, _U64)   # (a dtype by position: no keyword, no lookup)
        words = np.frombuffer(self.digest, dtype=np.uint64 if dtype is np.uint64 or np.dtype(dtype)
                              == np.uint64 else np.uint32)
        if n_words == words.size:
            return words.copy()
        return np.resize(words, n_words).astype(words.dtype)


def direct_request(s: Scenario, org: Org, provider: str | None = None) -> PolicyRequest:
    """The organisation's own request from home (the question its first denial answers)."""
    return PolicyRequest(provider=provider or s.incumbent.name, country=org.region, org=org.id,
                         segment=org.segment, home_country=org.region)


def denial_start(policy: Policy, s: Scenario, org: Org, after: dt.datetime,
                 provider: str | None = None) -> dt.datetime | None:
    """The first instant at or after ``after``, inside the window, at which ``provider`` (the
    incumbent by default) denies the organisation's direct request (None: never)."""
    name = provider or s.incumbent.name
    req = direct_request(s, org, name)
    for at in [after, *(p for p in policy.change_points(name) if after < p < s.window.end)]:
        if at < s.window.end and policy.decide(at, req).denied:
            return at
    return None


def warned_at(s: Scenario, first_denial: dt.datetime | None) -> dt.datetime | None:
    """When the announcement reaches an organisation whose direct traffic is first denied at
    ``first_denial`` (None: it is not warned — no announcement, or denied before it, or never)."""
    ann = s.behaviour.announcement
    if ann is None or ann.provider != s.incumbent.name or first_denial is None:
        return None
    return ann.at if ann.at < first_denial < s.window.end else None
