"""Deciding once per piece is identical to deciding for every request.

For a sample of organisations (every one that changed state, and some that did not), requests
are drawn at their true arrival instants inside each piece, and the policy engine is asked for
each request as the gateway would ask it. Every answer must equal the piece's fate.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from scenarios.failover import failover_targets
from scenarios.loader import Loaded
from scenarios.policy import Policy, PolicyRequest
from sim import pieces
from sim.model import Change, simulate_agents
from sim.pieces import DENY, NO_TRAFFIC, WARN, Fate, build_pieces
from sim.replication import Setup

REQUESTS_PER_PIECE = 25


def _state_at(line: list[Change], t: float) -> Change:
    return [c for c in line if c[0] <= t][-1]


def _per_request(s, policy: Policy, org: str, region: str, segment: str, change: Change,
                 t: float) -> tuple[str, str, str]:
    """(provider, path, action) for one request at hour t, asked the way the gateway asks."""
    _, state, provider, path, since = change
    if state == "churned":
        return ("", "", "none")
    when = s.window.start + dt.timedelta(hours=t)
    relay = path == "relay"
    target = provider if state == "migrated" else s.incumbent.name
    req = PolicyRequest(provider=target, country=s.behaviour.relay.country if relay else region,
                        org=org, segment=segment, home_country=region,
                        hosting=s.behaviour.relay.hosting if relay else False,
                        relay_since=s.window.start + dt.timedelta(hours=since)
                        if relay and since is not None else None)
    d = policy.decide(when, req)
    if d.denied:
        for alt in failover_targets(s, provider=target, when="block", segment=segment, org=org,
                                    country=req.country):
            if not policy.decide(when, req._replace(provider=alt.name)).denied:
                return (alt.name, "failover", "allow")
        return (target, "relay" if relay else "direct", "deny")
    return (target, "relay" if relay else "direct", d.action)


def _expected(f: Fate) -> tuple[str, str, str]:
    if f == NO_TRAFFIC:
        return ("", "", "none")
    return (f.provider, f.path, "deny" if f.action == DENY else ("warn" if f.action == WARN else "allow"))


def _check_every_request(s, setup: Setup, entropy: int, sample_unchanged: int) -> set[str]:
    """Requests drawn inside each piece of every organisation that changed state (and a sample of
    the others), each decided as the gateway would: every answer equals its piece's fate.
    Returns the kinds of answer seen."""
    policy = Policy(s)
    pop = setup.pop
    tl = simulate_agents(s, policy, pop, entropy=entropy)
    pieces = build_pieces(s, policy, pop, tl.changes)
    rng = np.random.default_rng(11)
    changed = np.flatnonzero(pieces.cohort_of < 0)
    unchanged = np.flatnonzero(pieces.cohort_of >= 0)
    sample = np.concatenate([changed, rng.choice(unchanged, min(sample_unchanged, unchanged.size),
                                                 replace=False)])
    checked = 0
    actions: set[str] = set()
    for i in sample:
        if pieces.cohort_of[i] < 0:
            rows = np.flatnonzero(pieces.org == i)
            spans = [(pieces.t0[k], pieces.t1[k], int(pieces.fate[k])) for k in rows]
        else:
            spans = [(a, b, int(f)) for a, b, f in pieces.cohort_pieces[int(pieces.cohort_of[i])]]
        region = s.regions[int(pop.region[i])].code
        segment = s.segments[int(pop.segment[i])].name
        for t0, t1, f in spans:
            want = _expected(pieces.fates[f])
            times = setup.profile.sample_times(int(pop.region[i]), t0, t1, REQUESTS_PER_PIECE, rng)
            # the first and the last second of the piece too (datetimes have microseconds; a piece
            # may be shorter than a second: a relay caught just before its next request)
            for t in np.concatenate([times, [t0, max(t0, t1 - 1.0 / 3600)]]):
                got = _per_request(s, policy, pop.ids[i], region, segment,
                                   _state_at(tl.changes[i], float(t)), float(t))
                assert got == want, (pop.ids[i], float(t), got, want)
                checked += 1
                actions.add(got[2] + "/" + got[1])
    assert checked > 10_000
    return actions


def test_piece_decisions_equal_per_request_decisions(default: Loaded, small_setup: Setup) -> None:
    actions = _check_every_request(default.scenario, small_setup, entropy=3, sample_unchanged=200)
    # the sample exercised every kind of fate the default scenario has (a relay is denied from its
    # detection until the organisation's first relayed request after it: the detection cuts)
    assert {"allow/direct", "warn/direct", "deny/direct", "allow/relay", "deny/relay",
            "allow/failover", "none/"} <= actions


def test_piece_decisions_follow_failover_rules_that_name_organisations(small_setup: Setup) -> None:
    """A failover rule for a few named organisations: theirs fail over, their neighbours' (same
    region and segment) are denied — pieces asked per organisation, not per (region, segment)."""
    from scenarios.loader import load

    base = small_setup.s
    pop = small_setup.pop
    cn = [r.code for r in base.regions].index("CN")
    startup = [g.name for g in base.segments].index("startup")
    members = np.flatnonzero((pop.region == cn) & (pop.segment == startup))
    named = [pop.ids[int(k)] for k in members[1:40:3]]
    s = load("openai-2024-cn-hk", (
        f"routing.failover=[{{from: openai, to: [alibaba], when: [block], orgs: [{', '.join(named)}]}}]",
    )).scenario
    setup = Setup.of(s, 0, small_setup.scale)
    assert setup.pop.ids == pop.ids
    actions = _check_every_request(s, setup, entropy=3, sample_unchanged=300)
    assert {"allow/failover", "deny/direct"} <= actions


def test_pieces_tile_the_window(default: Loaded, small_setup: Setup) -> None:
    s = default.scenario
    policy = Policy(s)
    tl = simulate_agents(s, policy, small_setup.pop, entropy=3)
    pieces = build_pieces(s, policy, small_setup.pop, tl.changes)
    for i in np.flatnonzero(pieces.cohort_of < 0):
        rows = np.flatnonzero(pieces.org == i)
        assert pieces.t0[rows[0]] == 0.0 and pieces.t1[rows[-1]] == s.window.hours
        assert np.array_equal(pieces.t1[rows[:-1]], pieces.t0[rows[1:]])
    for table in pieces.cohort_pieces:
        assert table[0, 0] == 0.0 and table[-1, 1] == s.window.hours
        assert np.array_equal(table[:-1, 1], table[1:, 0])


def _answers_one_by_one(resolver: pieces._Resolver, flat: pieces._Flat, piece_entry: np.ndarray,
                        mid: np.ndarray, first: np.ndarray) -> np.ndarray:
    """The question loop :func:`sim.pieces._answers` replaced: NumPy scalars question by question."""
    answer = np.empty(first.size, dtype=np.int64)
    for q in np.argsort(first, kind="stable").tolist():
        k = int(first[q])
        e = int(piece_entry[k])
        answer[q] = resolver.fate(int(flat.org[e]), flat.changes[e], float(mid[k]))
    return answer


def test_answers_ask_the_questions_of_the_loop_they_replaced(small_setup: Setup) -> None:
    """The same fates, numbered the same, as asking question by question: two policies (the
    scenario's and its no-block baseline, per organisation too), every question, a single one,
    none."""
    from scenarios.failover import rules_name_orgs
    from scenarios.policy import stages_name_orgs
    from sim.setup import baseline_of

    seen = 0
    for s in (small_setup.s, baseline_of(small_setup.s)):
        policy = Policy(s)
        tl = simulate_agents(s, policy, small_setup.pop, 9)
        for per_org in (stages_name_orgs(s) or rules_name_orgs(s), True):
            flat = pieces._flatten(pieces._Resolver(s, policy, small_setup.pop, per_org, {}),
                                   s.window.hours, tl.changes)
            cuts = np.asarray(pieces.global_cuts(s, policy), dtype=float)
            piece_entry, a, b = pieces._cut(flat.t0, flat.t1, cuts)
            mid = (a + b) / 2.0
            question = flat.question[piece_entry] * (cuts.size + 1) + np.searchsorted(cuts, mid, side="right")
            _, first = np.unique(question, return_index=True)
            assert first.size > 20
            for subset in (first, first[:1], first[:0]):
                got_r, want_r = (pieces._Resolver(s, policy, small_setup.pop, per_org, {})
                                 for _ in range(2))
                got = pieces._answers(got_r, flat, piece_entry, mid, subset)
                want = _answers_one_by_one(want_r, flat, piece_entry, mid, subset)
                assert np.array_equal(got, want) and got_r.fates == want_r.fates
                assert list(got_r.fates) == list(want_r.fates)
                seen = max(seen, len(got_r.fates))
    assert seen > 3
    # the resolver's regions and segments are Python ints, as the int() of each element gave
    r = pieces._Resolver(small_setup.s, Policy(small_setup.s), small_setup.pop, False, {})
    for got_l, column in ((r.region_of, small_setup.pop.region), (r.segment_of, small_setup.pop.segment)):
        assert got_l == [int(x) for x in column] and {type(x) for x in got_l} == {int}


def _fate_as_before(resolver: pieces._Resolver, i: int, change: Change, mid: float) -> int:
    """:meth:`sim.pieces._Resolver.fate` as it was: the request by keyword, every instant computed."""
    _, state, provider, path, since = change
    if state == "churned":
        return resolver._index(NO_TRAFFIC)
    migrated = state == "migrated"
    relay = path == "relay"
    region = resolver.codes[resolver.region_of[i]]
    s = resolver.s
    start = s.window.start
    req = PolicyRequest(
        provider=provider if migrated else resolver.incumbent,
        country=s.behaviour.relay.country if relay else region,
        org=resolver.pop.ids[i], segment=resolver.segments[resolver.segment_of[i]], home_country=region,
        hosting=s.behaviour.relay.hosting if relay else False,
        relay_since=start + dt.timedelta(0, 0, 0, 0, 0, since) if since is not None else None)
    return resolver._index(resolver._decide(start + dt.timedelta(0, 0, 0, 0, 0, mid), req, relay, migrated))


def test_fate_asks_the_policy_what_it_asked_before(small_setup: Setup) -> None:
    """Every question of two policies (the scenario's and its no-block baseline; per (region,
    segment) and per organisation): the same instants and requests handed to the policy, the
    same fates, numbered the same, as the resolver before it remembered the relays' starts and
    built requests and admitted fates by position. Every entry at two instants (so each relay start is asked
    again), and a few relay questions once more."""
    from scenarios.policy import stages_name_orgs
    from sim.setup import baseline_of

    kinds: set[tuple[str, str, bool]] = set()
    for s in (small_setup.s, baseline_of(small_setup.s)):
        policy = Policy(s)
        tl = simulate_agents(s, policy, small_setup.pop, 5)
        for per_org in (stages_name_orgs(s), True):
            got_r, want_r = (pieces._Resolver(s, policy, small_setup.pop, per_org, {}) for _ in range(2))
            asked: dict[int, list[tuple[dt.datetime, PolicyRequest, bool, bool]]] = {0: [], 1: []}
            for k, r in enumerate((got_r, want_r)):
                decide = r._decide
                r._decide = (lambda when, req, relay, migrated, _d=decide, _a=asked[k]:  # type: ignore[method-assign]
                             _a.append((when, req, relay, migrated)) or _d(when, req, relay, migrated))
            rng = np.random.default_rng(11)
            questions = [(i, c, float(m)) for i, line in enumerate(tl.changes) for c in line
                         for m in (c[0] + 0.5, c[0] + rng.uniform(0.0, 300.0))]
            questions += [(i, c, m) for i, c, m in questions if c[4] is not None][:3]
            for i, c, m in questions:
                kinds.add((c[1], c[3], c[4] is not None))
                assert got_r.fate(i, c, m) == _fate_as_before(want_r, i, c, m)
            assert asked[0] == asked[1] and list(got_r.fates) == list(want_r.fates)
            assert all(type(a[1]) is PolicyRequest for a in asked[0])
            # an admitted request's fate, built by position, is the one built by keyword
            for f in got_r.fates:
                if f.action != DENY and f.path != "failover" and f != NO_TRAFFIC:
                    by_keyword = Fate(f.provider, f.path, f.action, migrated=f.migrated)
                    assert f == by_keyword and list(map(type, f)) == list(map(type, by_keyword))
    assert {("churned", "", False), ("migrated", "direct", False), ("direct", "direct", False),
            ("circumventing", "relay", True)} <= kinds


def _questions_as_before(resolver: pieces._Resolver, org: np.ndarray, changes: list[Change],
                         states: tuple[str, ...], providers: tuple[str, ...], paths: tuple[str, ...],
                         sinces: tuple[float | None, ...]) -> np.ndarray:
    """:func:`sim.pieces._questions` as it was: migrated and churned each found by comparing
    every entry's state."""
    import itertools
    import operator

    ids = resolver.pop.ids
    region_of, segment_of = resolver.region_of, resolver.segment_of
    n = len(changes)
    relay = np.fromiter(map("relay".__eq__, paths), dtype=bool, count=n)
    own = relay | np.fromiter(map(operator.is_not, sinces, itertools.repeat(None)), dtype=bool, count=n)
    individual = resolver.per_org
    if individual:
        own[:] = True
    code = {name: k + 1 for k, name in enumerate(sorted(set(providers)))}
    migrated = np.fromiter(map("migrated".__eq__, states), dtype=bool, count=n)
    provider = np.where(migrated, np.fromiter(map(code.__getitem__, providers), dtype=np.int64, count=n), 0)
    regions, segments = len(resolver.codes), len(resolver.segments)
    shared = (provider * regions + resolver.pop.region[org]) * segments + resolver.pop.segment[org]
    churned = (len(code) + 1) * regions * segments
    question = np.where(np.fromiter(map("churned".__eq__, states), dtype=bool, count=n), churned, shared)
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


def test_questions_equal_those_of_the_state_comparisons_they_replaced(small_setup: Setup) -> None:
    """The same question ids as comparing each entry's state with "migrated" and "churned":
    two policies' timelines (per (region, segment) and per organisation), a random sample of
    their entries, and entries with no migrated, no churned, only churned, or none at all."""
    from sim.setup import baseline_of

    rng = np.random.default_rng(4)
    pop = small_setup.pop
    cases: list[list[Change]] = []
    for s in (small_setup.s, baseline_of(small_setup.s)):
        tl = simulate_agents(s, Policy(s), pop, 7)
        entries = [c for line in tl.changes for c in line]
        cases += [entries, [entries[k] for k in rng.integers(0, len(entries), 500)],
                  [c for c in entries if c[1] != "migrated"], [c for c in entries if c[1] != "churned"],
                  [c for c in entries if c[1] == "churned"][:5], []]
    assert any(c[1] == "migrated" for c in cases[0]) and any(c[1] == "churned" for c in cases[0])
    for per_org in (False, True):
        resolver = pieces._Resolver(small_setup.s, Policy(small_setup.s), pop, per_org, {})
        for changes in cases:
            org = rng.integers(0, len(pop.ids), len(changes))
            columns = tuple(zip(*changes, strict=True)) if changes else ((),) * 5
            got = pieces._questions(resolver, org, changes, *columns[1:])
            want = _questions_as_before(resolver, org, changes, *columns[1:])
            assert got.dtype == want.dtype and np.array_equal(got, want)


def test_cohort_pieces_equal_those_of_the_masks_they_replaced() -> None:
    """The same tables (values, dtype, shape, layout) as masking every piece once per cohort:
    seeded pieces with cohorts of many, one and no pieces, no cohort pieces at all, none at all."""
    rng = np.random.default_rng(8)
    for size, cohorts, share in ((5000, 23, 0.01), (300, 4, 0.5), (50, 3, 0.0), (0, 2, 0.0), (40, 0, 0.0)):
        cohort = np.where(rng.random(size) < share, rng.integers(0, max(cohorts - 1, 1), size), -1)
        t0 = np.sort(rng.uniform(0.0, 2000.0, size))
        t1 = t0 + rng.uniform(0.0, 5.0, size)
        fate = rng.integers(0, 40, size)
        got = pieces._cohort_pieces(cohort, t0, t1, fate, cohorts)
        want = tuple(np.column_stack([t0[m], t1[m], fate[m].astype(float)])
                     for m in (cohort == c for c in range(cohorts)))
        assert len(got) == len(want) == cohorts
        for g, w in zip(got, want, strict=True):
            assert g.dtype == w.dtype and g.shape == w.shape and g.flags.c_contiguous == w.flags.c_contiguous
            assert g.tobytes() == w.tobytes()
