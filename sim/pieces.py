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
from bisect import bisect_right
from dataclasses import dataclass

import numpy as np

from scenarios import behaviour
from scenarios.policy import Decision, Policy, PolicyRequest, unit_hash
from scenarios.schema import Scenario
from sim.model import Change
from sim.population import Population

ALLOW, WARN, DENY, NONE = "allow", "warn", "deny", "none"


@dataclass(frozen=True, slots=True)
class Fate:
    """What happens to a piece's requests. ``p_deny`` < 1 for a partial throttle."""

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


@dataclass
class _Resolver:
    """Turns (state, time) into a Fate, asking the policy engine once per distinct question."""

    s: Scenario
    policy: Policy
    pop: Population
    cuts: list[float]
    per_org: bool
    fates: dict[Fate, int]
    memo: dict[tuple[object, ...], int]
    codes: list[str] = dataclasses.field(default_factory=list)
    segments: list[str] = dataclasses.field(default_factory=list)
    incumbent: str = ""
    region_of: list[int] = dataclasses.field(default_factory=list)
    segment_of: list[int] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        self.codes = [r.code for r in self.s.regions]
        self.segments = [g.name for g in self.s.segments]
        self.incumbent = self.s.incumbent.name
        # Python ints, not NumPy scalars: they key the memo once per piece
        self.region_of = [int(r) for r in self.pop.region.tolist()]
        self.segment_of = [int(g) for g in self.pop.segment.tolist()]

    def fate(self, i: int, change: Change, mid: float) -> int:
        _, state, provider, path, since = change
        if state == "churned":
            return self._index(NO_TRAFFIC)
        migrated = state == "migrated"
        relay = path == "relay"
        key = (bisect_right(self.cuts, mid), provider if migrated else "", relay,
               self.region_of[i], self.segment_of[i],
               self.pop.ids[i] if (self.per_org or relay) else "", since)
        hit = self.memo.get(key)
        if hit is None:
            region = self.codes[self.region_of[i]]
            segment = self.segments[self.segment_of[i]]
            org = self.pop.ids[i]
            target = provider if migrated else self.incumbent
            when = self.s.window.start + dt.timedelta(hours=mid)
            relay_since = self.s.window.start + dt.timedelta(hours=since) if since is not None else None
            req = PolicyRequest(
                provider=target, country=self.s.behaviour.relay.country if relay else region,
                org=org, segment=segment, home_country=region,
                hosting=self.s.behaviour.relay.hosting if relay else False, relay_since=relay_since)
            hit = self.memo[key] = self._index(self._decide(when, req, relay, migrated))
        return hit

    def _index(self, fate: Fate) -> int:
        return self.fates.setdefault(fate, len(self.fates))

    def _decide(self, when: dt.datetime, req: PolicyRequest, relay: bool, migrated: bool) -> Fate:
        path = "relay" if relay else "direct"
        d = self.policy.decide(when, req)
        if not d.denied:
            return Fate(req.provider, path, WARN if d.action == "warn" else ALLOW, migrated=migrated)
        routed = self._failover(when, req)
        if routed is not None:
            return routed
        assert d.response is not None
        p_deny, pass_action = self._throttle_share(when, req, d)
        return Fate(req.provider, path, DENY, d.response.status, p_deny, pass_action, migrated)

    def _failover(self, when: dt.datetime, req: PolicyRequest) -> Fate | None:
        for rule in self.s.routing.failover:
            if rule.from_ != req.provider or "block" not in rule.when:
                continue
            if (rule.segments and req.segment not in rule.segments) or (
                    rule.orgs and req.org not in rule.orgs):
                continue
            for to in rule.to:
                if not behaviour.serves(self.s.provider(to), req.home_country):
                    continue
                alt = PolicyRequest(provider=to, country=req.home_country, org=req.org,
                                    segment=req.segment, home_country=req.home_country)
                d = self.policy.decide(when, alt)
                if not d.denied:
                    return Fate(to, "failover", WARN if d.action == "warn" else ALLOW)
        return None

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
        passed = self.policy.decide(when, dataclasses.replace(req, key=key))
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
    of their region and segment (unless a stage treats organisations individually).
    """
    cuts = global_cuts(s, policy)
    per_org = any(st.percent < 100.0 or st.allow_list.orgs
                  for pol in s.policy.values() for st in pol.stages)
    resolver = _Resolver(s, policy, pop, cuts, per_org, {}, {})
    cohorts: dict[tuple[int, int], int] = {}
    cohort_rows: list[np.ndarray] = []
    cohort_of = np.full(pop.size, -1, dtype=np.int64)
    rows_all: list[tuple[int, float, float, int]] = []
    for i, line in enumerate(timelines):
        if len(line) == 1 and not per_org:
            key = (resolver.region_of[i], resolver.segment_of[i])
            if key not in cohorts:
                cohorts[key] = len(cohort_rows)
                rows = _org_pieces(resolver, s.window.hours, cuts, i, line)
                cohort_rows.append(np.array(rows, dtype=float).reshape(-1, 3))
            cohort_of[i] = cohorts[key]
        else:
            rows = _org_pieces(resolver, s.window.hours, cuts, i, line)
            rows_all.extend([(i, a, b, f) for a, b, f in rows])
    table = np.array(rows_all, dtype=float).reshape(-1, 4)
    fates = tuple(sorted(resolver.fates, key=resolver.fates.__getitem__))
    return Pieces(org=table[:, 0].astype(np.int64), t0=table[:, 1], t1=table[:, 2],
                  fate=table[:, 3].astype(np.int64), fates=fates, cohort_of=cohort_of,
                  cohort_pieces=tuple(cohort_rows))


def _org_pieces(resolver: _Resolver, horizon: float, cuts: list[float], i: int,
                line: list[Change]) -> list[tuple[float, float, int]]:
    bounds = sorted({*cuts, *(c[0] for c in line[1:] if 0.0 < c[0] < horizon)})
    edges = [0.0, *bounds, horizon]
    out: list[tuple[float, float, int]] = []
    k = 0
    for a, b in itertools.pairwise(edges):
        while k + 1 < len(line) and line[k + 1][0] <= a:
            k += 1
        fate = resolver.fate(i, line[k], (a + b) / 2.0)
        if out and out[-1][2] == fate:
            out[-1] = (out[-1][0], b, fate)  # same fate on both sides of a cut: one piece
        else:
            out.append((a, b, fate))
    return out
