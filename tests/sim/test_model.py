"""The simulator's adapter to the shared organisation life: transitions, detection, randomness."""

from __future__ import annotations

import datetime as dt
import itertools

from scenarios.loader import Loaded
from scenarios.policy import Policy
from sim.model import simulate_agents
from sim.replication import Setup

ALLOWED = {
    "direct": {"direct", "circumventing", "migrating", "churned"},
    "circumventing": {"direct", "circumventing", "migrating", "churned"},
    "migrating": {"migrated"},
    "migrated": set(),
    "churned": set(),
}


def test_state_machine_transitions(default: Loaded, small_setup: Setup) -> None:
    s = default.scenario
    tl = simulate_agents(s, Policy(s), small_setup.pop, entropy=5)
    seen: set[tuple[str, str]] = set()
    for line in tl.changes:
        assert line[0][:2] == (0.0, "direct")
        times = [c[0] for c in line]
        assert times == sorted(times)
        for a, b in itertools.pairwise(line):
            assert b[1] in ALLOWED[a[1]], (a, b)
            seen.add((a[1], b[1]))
        for a, b in itertools.pairwise(line):
            if b[1] == "circumventing" and a[1] != "circumventing":
                assert b[3] == "relay" and b[4] == b[0]   # relaying since the moment it started
            if b[1] == "circumventing" and a[1] == "circumventing":   # the catch, noticed later
                assert b[4] == a[4] < b[0]
        for c in line:
            if c[1] in ("migrating", "migrated"):
                assert c[2] in {p.name for p in s.alternatives}
    assert {("direct", "migrating"), ("direct", "circumventing"), ("direct", "churned"),
            ("migrating", "migrated"), ("circumventing", "migrating")} <= seen
    # supported regions never change state
    us = [i for i, oid in enumerate(small_setup.pop.ids) if oid.startswith("us-")]
    assert all(len(tl.changes[i]) == 1 for i in us)
    # the allow-listed enterprise path keeps access: Azure enterprises never move
    azure = [i for i, oid in enumerate(small_setup.pop.ids) if "-enterprise-azure-" in oid]
    assert azure and all(len(tl.changes[i]) == 1 for i in azure)


def test_detection_ends_circumvention_when_the_policy_says(default: Loaded, small_setup: Setup) -> None:
    s = default.scenario
    policy = Policy(s)
    tl = simulate_agents(s, policy, small_setup.pop, entropy=5)
    checked = 0
    for i, line in enumerate(tl.changes):
        for a, b in itertools.pairwise(line):
            if a[1] == "circumventing" and a[4] is not None:
                caught = policy.detection_at("openai", small_setup.pop.ids[i],
                                             s.window.start + dt.timedelta(hours=a[4]))
                assert caught is not None
                hours = (caught - s.window.start).total_seconds() / 3600
                # noticed at its first relayed request after the catch: later, but not by much
                # more than its own requests are apart (its rate at the quietest hour bounds it)
                assert max(hours, a[0]) <= b[0] <= max(hours, a[0]) + 24 * 14
                checked += 1
    assert checked > 0


def test_agent_randomness_is_seeded(default: Loaded) -> None:
    """The same agent entropy gives the same timelines; another gives other timelines."""
    s = default.scenario
    full = Setup.of(s, 0, 0.03)
    policy = Policy(s)
    a = simulate_agents(s, policy, full.pop, entropy=9)
    b = simulate_agents(s, policy, full.pop, entropy=9)
    assert a.changes == b.changes
    c = simulate_agents(s, policy, full.pop, entropy=10)
    assert a.changes != c.changes
