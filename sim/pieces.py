"""From organisation timelines to *pieces*: intervals over which every request meets the same fate.

An organisation's requests go where its state says (direct or relayed to the incumbent while
direct, migrating or circumventing; direct to the new provider once migrated; nowhere once
churned). A piece is a maximal interval in which neither the organisation's state nor any
provider's policy can change: the timeline's own change instants (decisions, migration ends,
the detection of a relay) and every provider's policy change points cut it. The policy engine is
asked once per piece, at its midpoint; :mod:`tests.sim.test_pieces` proves this equals asking
it for every request. A denied request is failed over when a routing rule says so.

Pieces share a small table of *classes* (provider, path, action, status...) so that traffic can
be aggregated by class with integer keys.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import operator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from scenarios.failover import rules_name_orgs, serving_target
from scenarios.policy import Decision, Policy, PolicyRequest, stages_name_orgs, unit_hash
from scenarios.schema import Scenario
from sim.model import Change
from sim.population import Population

ALLOW, WARN, DENY, NONE = "allow", "warn", "deny", "none"


class Fate(NamedTuple):
    """What happens to a piece's requests. ``p_deny`` < 1 for a partial throttle. (A named
    tuple: :func:`build_pieces` makes one per distinct question.)"""

    provider: str            # '' when the organisation sends nothing (churned)
    path: str
    action: str              # allow | warn | deny | none
    status: int = 0          # HTTP status of a denial
    p_deny: float = 0.0
    pass_action: str = ALLOW  # what the not-throttled share gets
    migrated: bool = False   # traffic of a migrated organisation (free-token credit applies)


NO_TRAFFIC = Fate("", "", NONE)


@dataclass(frozen=True, slots=True)
class Pieces:
    """Pieces of the organisations that changed state (``org`` indexes the population), and
    *cohorts*: every organisation of a (region, segment) that never changed state shares one
    list of pieces (``cohort_pieces[c]`` as rows of (t0, t1, fate))."""

    org: np.ndarray
    t0: np.ndarray
    t1: np.ndarray
    fate: np.ndarray          # index into ``fates``
    fates: tuple[Fate, ...]
    cohort_of: np.ndarray     # per organisation: its cohort, or -1 if it has its own pieces
    cohort_pieces: tuple[np.ndarray, ...]
    #: per organisation: the hour of its first state change (the window's end if none), or 0 for
    #: everyone when a stage or a failover rule names organisations. Before it the organisation's
    #: pieces are those of any direct organisation of its region and segment — same questions,
    #: same fates (see :func:`sim.traffic.units`).
    since: np.ndarray


@dataclass
class _Resolver:
    """Turns (state, time) into a Fate (numbered in the order first seen)."""

    s: Scenario
    policy: Policy
    pop: Population
    per_org: bool
    fates: dict[Fate, int]
    codes: list[str] = dataclasses.field(default_factory=list)
    segments: list[str] = dataclasses.field(default_factory=list)
    incumbent: str = ""
    region_of: list[int] = dataclasses.field(default_factory=list)
    segment_of: list[int] = dataclasses.field(default_factory=list)
    ids: tuple[str, ...] = ()
    _start: dt.datetime = dt.datetime.min
    _relay_country: str = ""
    _relay_hosting: bool = False
    _since_at: dict[float, dt.datetime] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.codes = [r.code for r in self.s.regions]
        self.segments = [g.name for g in self.s.segments]
        self.incumbent = self.s.incumbent.name
        # Python ints (what tolist gives), not NumPy scalars: they key the questions entry by entry
        self.region_of = self.pop.region.tolist()
        self.segment_of = self.pop.segment.tolist()
        self.ids = self.pop.ids
        self._start = self.s.window.start
        self._relay_country = self.s.behaviour.relay.country
        self._relay_hosting = self.s.behaviour.relay.hosting

    def fate(self, i: int, change: Change, mid: float) -> int:
        """The fate of the question organisation ``i`` asks in state ``change`` at ``mid``.

        :func:`build_pieces` asks each distinct question once (the question ids of
        :func:`_flatten` and the cut), so there is nothing to remember here but the instants
        of the relays' starts (``_since_at``: every piece of a relay entry asks with its start)."""
        _, state, provider, path, since = change
        if state == "churned":
            return self._index(NO_TRAFFIC)
        migrated = state == "migrated"
        relay = path == "relay"
        region = self.codes[self.region_of[i]]
        start = self._start
        if since is None:
            relay_since = None
        else:
            relay_since = self._since_at.get(since)
            if relay_since is None:
                # (timedelta(hours=...) with its arguments by position: the same value, no keywords)
                relay_since = self._since_at[since] = start + dt.timedelta(0, 0, 0, 0, 0, since)
        # (the request's fields by position, in PolicyRequest's order: the same tuple, no keywords)
        req = PolicyRequest(provider if migrated else self.incumbent,
                            self._relay_country if relay else region, self.ids[i],
                            self.segments[self.segment_of[i]], region,
                            self._relay_hosting if relay else False, None, relay_since)
        return self._index(self._decide(start + dt.timedelta(0, 0, 0, 0, 0, mid), req, relay, migrated))

    def _index(self, fate: Fate) -> int:
        return self.fates.setdefault(fate, len(self.fates))

    def _decide(self, when: dt.datetime, req: PolicyRequest, relay: bool, migrated: bool) -> Fate:
        path = "relay" if relay else "direct"
        d = self.policy.decide(when, req)
        if not d.denied:
            # (by position, the defaults spelled out: the same tuple, no keywords)
            return Fate(req.provider, path, WARN if d.action == "warn" else ALLOW, 0, 0.0, ALLOW, migrated)
        routed = self._failover(when, req)
        if routed is not None:
            return routed
        assert d.response is not None
        p_deny, pass_action = self._throttle_share(when, req, d)
        return Fate(req.provider, path, DENY, d.response.status, p_deny, pass_action, migrated)

    def _failover(self, when: dt.datetime, req: PolicyRequest) -> Fate | None:
        """The first target of ``scenarios.failover`` whose own policy admits the request."""
        hit = serving_target(self.s, self.policy, when, req)
        if hit is None:
            return None
        target, d = hit
        return Fate(target.name, "failover", WARN if d.action == "warn" else ALLOW)

    def _throttle_share(self, when: dt.datetime, req: PolicyRequest, d: Decision) -> tuple[float, str]:
        """A throttle stage with throttle_fraction f < 1 denies a request when its key hashes below f."""
        if d.action != "throttle":
            return 1.0, ALLOW
        pol = self.s.policy[req.provider]
        stage = next(st for st in pol.stages if st.name == d.stage)
        f = stage.throttle_fraction
        if f >= 1.0:
            return 1.0, ALLOW
        salt = f"{stage.salt or pol.salt or req.provider}/throttle"
        key = next(k for k in (f"k{n}" for n in range(10_000)) if unit_hash(salt, k) >= f)
        passed = self.policy.decide(when, req._replace(key=key))
        if passed.denied:
            return 1.0, ALLOW
        return f, WARN if passed.action == "warn" else ALLOW


def global_cuts(s: Scenario, policy: Policy) -> list[float]:
    """Every provider's policy change points, as hours inside the window."""
    horizon = s.window.hours
    out: set[float] = set()
    for p in s.providers:
        for cp in policy.change_points(p.name):
            h = (cp - s.window.start).total_seconds() / 3600.0
            if 0.0 < h < horizon:
                out.add(h)
    return sorted(out)


def build_pieces(s: Scenario, policy: Policy, pop: Population, timelines: list[list[Change]]) -> Pieces:
    """Cut every timeline at its own changes and at the policy change points; decide each piece.

    Organisations that never changed state share their pieces with every other such organisation
    of their region and segment (unless a stage or a failover rule names organisations).

    The timelines are flattened once into entries (one per state an organisation was in); cutting
    them at the policy change points and merging neighbours of equal fate are array operations,
    and the policy engine is asked once per distinct question (:class:`_Resolver`), in the order
    in which the pieces first ask it — so the fates are numbered exactly as by asking piece by
    piece, organisation by organisation.
    """
    cuts = global_cuts(s, policy)
    # a stage or a failover rule that names organisations: every organisation asks on its own
    per_org = stages_name_orgs(s) or rules_name_orgs(s)
    resolver = _Resolver(s, policy, pop, per_org, {})
    flat = _flatten(resolver, s.window.hours, timelines)
    piece_entry, a, b = _cut(flat.t0, flat.t1, np.asarray(cuts, dtype=float))
    mid = (a + b) / 2.0
    question = flat.question[piece_entry] * (len(cuts) + 1) + np.searchsorted(cuts, mid, side="right")
    _, first, inverse = np.unique(question, return_index=True, return_inverse=True)
    fate = _answers(resolver, flat, piece_entry, mid, first)[inverse.ravel()]
    org = flat.org[piece_entry]
    # same fate on both sides of a cut: one piece
    new = np.ones(org.size, dtype=bool)
    new[1:] = (org[1:] != org[:-1]) | (fate[1:] != fate[:-1])
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], org.size) - 1
    org, t0, t1, fate = org[starts], a[starts], b[ends], fate[starts]
    cohort = flat.cohort_of_org[org]
    own = cohort < 0
    cohort_pieces = _cohort_pieces(cohort, t0, t1, fate, flat.cohorts)
    fates = tuple(sorted(resolver.fates, key=resolver.fates.__getitem__))
    cohort_of = flat.cohort_of_org.copy()
    cohort_of[flat.cohort_member] = flat.member_cohort
    since = np.full(len(timelines), s.window.hours)
    if not per_org:
        changed = np.flatnonzero(cohort_of < 0).tolist()
        initial = (0.0, "direct", s.incumbent.name, "direct", None)
        # (a change at hour 0 replaces the initial entry: then nothing is shared from the start)
        since[changed] = [timelines[i][1][0] if timelines[i][0] == initial else 0.0
                          for i in changed]
    else:
        since[:] = 0.0
    return Pieces(org=org[own], t0=t0[own], t1=t1[own], fate=fate[own], fates=fates,
                  cohort_of=cohort_of, cohort_pieces=cohort_pieces, since=since)


def _cohort_pieces(cohort: np.ndarray, t0: np.ndarray, t1: np.ndarray, fate: np.ndarray,
                   cohorts: int) -> tuple[np.ndarray, ...]:
    """Each cohort's pieces as rows of (t0, t1, fate), in piece order. The cohorts' pieces are
    a few rows among every organisation's: they are found with one pass over ``cohort``, and
    only they are compared with each cohort."""
    rows = np.flatnonzero(cohort >= 0)
    of = cohort[rows]
    return tuple(np.column_stack([t0[r], t1[r], fate[r].astype(float)])
                 for r in (rows[of == c] for c in range(cohorts)))


def _answers(resolver: _Resolver, flat: _Flat, piece_entry: np.ndarray, mid: np.ndarray,
             first: np.ndarray) -> np.ndarray:
    """The fate of each distinct question, asked first at piece ``first[q]`` (of entry
    ``piece_entry`` there, at midpoint ``mid``): asked in the order first asked, so the fates are
    numbered in that order. The questions' organisations, entries and midpoints are taken as
    Python lists at once, not as NumPy scalars question by question."""
    order = np.argsort(first, kind="stable")
    entry = piece_entry[first[order]]
    changes = flat.changes
    answer = np.empty(first.size, dtype=np.int64)
    answer[order] = np.fromiter(
        map(resolver.fate, flat.org[entry].tolist(), [changes[e] for e in entry.tolist()],
            mid[first[order]].tolist()), dtype=np.int64, count=order.size)
    return answer


@dataclass(frozen=True, slots=True)
class _Flat:
    """Timeline entries of the organisations that get pieces (each cohort's first member
    stands for its cohort), in (organisation, time) order."""

    org: np.ndarray
    t0: np.ndarray
    t1: np.ndarray
    question: np.ndarray        # which question the entry asks the resolver (besides the cut)
    changes: list[Change]
    cohort_of_org: np.ndarray   # the cohort an organisation stands for, -1 for the rest
    cohorts: int
    cohort_member: np.ndarray   # organisations that take their cohort's pieces, and that cohort
    member_cohort: np.ndarray


def _flatten(resolver: _Resolver, horizon: float, timelines: list[list[Change]]) -> _Flat:
    """One pass over the timelines: each entry with its interval and an integer question id
    (what :meth:`_Resolver.fate` keys on, except the cut, which the arrays add)."""
    individual = resolver.per_org
    size = len(timelines)
    # organisations that changed state get their own pieces; of the rest, the first of each
    # (region, segment) stands for its cohort (found with arrays, not one by one)
    changed = np.fromiter(map(len, timelines), dtype=np.int64, count=size) > 1
    if individual:
        changed[:] = True
    rest = np.flatnonzero(~changed)
    key = resolver.pop.region[rest] * len(resolver.segments) + resolver.pop.segment[rest]
    _, first, member_cohort = np.unique(key, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")          # cohorts numbered by their first member
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    member_cohort = rank[member_cohort.ravel()]
    stands_for = rest[first[order]]
    with_pieces = changed.copy()
    with_pieces[stands_for] = True
    idx = np.flatnonzero(with_pieces)
    lines = [timelines[i] for i in idx.tolist()]
    changes: list[Change] = list(itertools.chain.from_iterable(lines))
    lengths = np.fromiter(map(len, lines), dtype=np.int64, count=len(lines))
    org = np.repeat(idx, lengths)
    n = len(changes)
    # the entries' fields as columns (one transposition in C rather than a loop per field)
    starts, states, providers, paths, sinces = zip(*changes, strict=True) if changes else ((),) * 5
    t0 = np.fromiter(starts, dtype=float, count=n)
    # each entry lasts until the next entry of its organisation, the last one to the horizon
    t1 = np.empty_like(t0)
    t1[:-1] = t0[1:]
    t1[np.cumsum(lengths) - 1] = horizon
    return _Flat(org=org, t0=t0, t1=t1, question=_questions(resolver, org, changes, states, providers,
                                                            paths, sinces),
                 changes=changes, cohort_of_org=_cohort_of_org(len(timelines), stands_for),
                 cohorts=len(stands_for), cohort_member=rest, member_cohort=member_cohort)


def _cohort_of_org(size: int, stands_for: np.ndarray) -> np.ndarray:
    out = np.full(size, -1, dtype=np.int64)
    out[stands_for] = np.arange(len(stands_for))
    return out


def _questions(resolver: _Resolver, org: np.ndarray, changes: list[Change], states: tuple[str, ...],
               providers: tuple[str, ...], paths: tuple[str, ...],
               sinces: tuple[float | None, ...]) -> np.ndarray:
    """An integer per entry, equal for entries that ask :meth:`_Resolver.fate` the same question
    (besides the cut): churned, or (the provider if migrated, relay?, region and segment, the
    organisation when it matters, relay since, and for a relay the entry's start — a relay entry
    ends where its detection starts, so the entries before and after it differ).

    Most entries (direct, migrating, migrated: no relay, no since) ask one of a few questions
    that only their (provider if migrated, region, segment) tell apart — coded with arrays; the
    rest (relayed, or with a since, or every entry where stages name organisations) are keyed
    one by one."""
    ids = resolver.pop.ids
    region_of, segment_of = resolver.region_of, resolver.segment_of
    n = len(changes)
    relay = np.fromiter(map("relay".__eq__, paths), dtype=bool, count=n)
    own = relay | np.fromiter(map(operator.is_not, sinces, itertools.repeat(None)), dtype=bool, count=n)
    individual = resolver.per_org
    if individual:
        own[:] = True
    code = {name: k + 1 for k, name in enumerate(sorted(set(providers)))}   # 0: not migrated
    # the states coded in one pass (migrated and churned told apart by their codes, not by a
    # string comparison per entry for each)
    state_code = {name: k for k, name in enumerate(sorted(set(states)))}
    state = np.fromiter(map(state_code.__getitem__, states), dtype=np.int64, count=n)
    migrated = state == state_code.get("migrated", -1)
    provider = np.where(migrated, np.fromiter(map(code.__getitem__, providers), dtype=np.int64, count=n), 0)
    regions, segments = len(resolver.codes), len(resolver.segments)
    shared = (provider * regions + resolver.pop.region[org]) * segments + resolver.pop.segment[org]
    churned = (len(code) + 1) * regions * segments
    question = np.where(state == state_code.get("churned", -1), churned, shared)
    keyed: dict[tuple[object, ...], int] = {}
    ask = keyed.setdefault
    mine = np.flatnonzero(own & (question != churned))
    question[mine] = churned + 1 + np.fromiter(
        [ask((c[2] if c[1] == "migrated" else "", c[3] == "relay", region_of[i], segment_of[i],
              ids[i] if (individual or c[3] == "relay") else "", c[4],
              c[0] if c[3] == "relay" else None), len(keyed))
         for i, c in zip(org[mine].tolist(), [changes[k] for k in mine.tolist()], strict=True)],
        dtype=np.int64, count=mine.size)
    return question


def _cut(t0: np.ndarray, t1: np.ndarray, cuts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every interval cut at the cuts strictly inside it: (interval, start, end) per piece, in order."""
    lo = np.searchsorted(cuts, t0, side="right")   # first cut after the start
    hi = np.searchsorted(cuts, t1, side="left")    # cuts before the end
    inside = np.maximum(hi - lo, 0)
    entry = np.repeat(np.arange(t0.size), inside + 1)
    first = np.concatenate(([0], np.cumsum(inside + 1)[:-1]))
    k = np.arange(entry.size) - first[entry]       # piece k of its interval
    padded = np.concatenate([cuts, [np.inf]])
    a = np.where(k == 0, t0[entry], padded[np.minimum(lo[entry] + k - 1, cuts.size)])
    last = k == inside[entry]
    b = np.where(last, t1[entry], padded[np.minimum(lo[entry] + k, cuts.size)])
    return entry, a, b
