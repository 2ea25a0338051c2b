"""The same organisation, the same events: the simulator's adapter and the load test's make the
same transitions, send their requests to the same place and open the same free-token credit."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from loadtests.agent import Route
from scenarios import lifecycle as lc
from scenarios.loader import load
from scenarios.market import MarketContext
from scenarios.policy import Policy
from sim.model import World, _first_denials, change_hours
from sim.replication import Setup
from tests.crossengine.lifecycle_harness import run_both

BLOCK = dt.datetime(2024, 7, 9, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
INC = "openai"
NO_ANNOUNCEMENT = "behaviour.announcement=null"
#: every alternative but Tencent (offer until 2024-08-01) stops serving CN
ONLY_TENCENT = tuple(f"providers[{k}].serves=[US]" for k in (1, 2, 4, 5))


def denied(at: dt.datetime, path: str = "direct", provider: str = INC) -> lc.Denied:
    return lc.Denied(at, path, provider)


def probes(n: int = 40) -> list[dt.datetime]:
    start = dt.datetime(2024, 6, 20, tzinfo=dt.UTC)
    return [start + k * 2 * DAY + dt.timedelta(hours=5) for k in range(n)]


CASES = {
    # name: (overrides, organisation, denials, what the load test's log must show)
    "blocked then wait": (
        ["behaviour.choice.asc_wait=60", "behaviour.wait_days={dist: constant, value: 2}", NO_ANNOUNCEMENT],
        "cn-startup-000001", [denied(BLOCK), denied(BLOCK + DAY), denied(BLOCK + 3 * DAY)],
        ["direct"]),
    "circumvent then detected": (
        ["behaviour.choice.asc_circumvent=8", NO_ANNOUNCEMENT],
        "cn-startup-000002", [denied(BLOCK), denied(BLOCK + 5 * DAY, "relay"), denied(BLOCK + 9 * DAY)],
        ["direct", "circumventing"]),
    "migrate with an incentive": (
        ["behaviour.choice.asc_migrate=60", "behaviour.choice.incentive=9", NO_ANNOUNCEMENT],
        "cn-startup-000003", [denied(BLOCK)], ["direct", "migrating", "migrated"]),
    "migrate to tencent, arriving after its offer ended": (
        ["behaviour.choice.asc_migrate=60", NO_ANNOUNCEMENT, *ONLY_TENCENT,
         "segments[2].migration_days={dist: constant, value: 30}"],
        "cn-startup-000004", [denied(BLOCK + 10 * DAY)], ["direct", "migrating", "migrated"]),
    "migrate to tencent within its offer": (
        ["behaviour.choice.asc_migrate=60", NO_ANNOUNCEMENT, *ONLY_TENCENT,
         "segments[2].migration_days={dist: constant, value: 3}"],
        "cn-startup-000004", [denied(BLOCK)], ["direct", "migrating", "migrated"]),
    "migrate without any incentive": (
        ["behaviour.choice.asc_migrate=60", NO_ANNOUNCEMENT,
         *(f"providers[{k}].incentive=null" for k in range(1, 6))],
        "cn-startup-000008", [denied(BLOCK)], ["direct", "migrating", "migrated"]),
    "churn": (
        ["behaviour.choice.asc_churn=60", NO_ANNOUNCEMENT], "cn-hobbyist-000005", [denied(BLOCK)],
        ["direct", "churned"]),
    "anticipation before the block": (
        ["behaviour.announcement.anticipation.p=0.5", "behaviour.announcement.anticipation.q=0"],
        "cn-startup-000006", [denied(BLOCK)], ["direct", "migrating", "migrated"]),
    "a throttle is a denial": (
        ['policy.openai.stages[1].action=throttle', NO_ANNOUNCEMENT, "behaviour.choice.asc_churn=60"],
        "cn-startup-000007", [denied(BLOCK)], ["direct", "churned"]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_same_events_same_life(name: str) -> None:
    overrides, oid, events, states = CASES[name]
    s = load("openai-2024-cn-hk", overrides).scenario
    region, segment = oid.split("-")[0].upper(), oid.split("-")[1]
    org = lc.Org(oid, region, segment)
    sim, lt = run_both(s, org, seed=7, events=events, probes=probes())
    assert sim == lt
    assert [state for _, state, _ in lt.transitions][:len(states)] == states
    if "migrated" in states:
        (migrated,) = [(at, k) for at, state, k in lt.transitions if state == "migrated"]
        provider = s.provider(migrated[1])
        open_offer = provider.incentive is not None and (
            provider.incentive.deadline is None or migrated[0] < provider.incentive.deadline)
        assert lt.credit == (provider.incentive.free_tokens if open_offer else 0)  # type: ignore[union-attr]
        assert lt.routes[-1] == Route(migrated[1], "direct")
    if "tencent" in name:
        expected = 0 if "after" in name else 100_000_000
        assert [k for _, state, k in lt.transitions if state == "migrated"] == ["tencent"]
        assert (sim.credit, lt.credit) == (expected, expected)
    if "without" in name:
        assert lt.credit == sim.credit == 0


def test_a_detected_relay_is_never_used_again() -> None:
    s = load("openai-2024-cn-hk", ["behaviour.choice.asc_circumvent=3", NO_ANNOUNCEMENT]).scenario
    org = lc.Org("cn-startup-000002", "CN", "startup")
    relayed = 0
    for k in range(40):   # over many organisations' choices: circumvent, detected, never again
        events = [denied(BLOCK)] + [denied(BLOCK + (j + 1) * 3 * DAY, "relay" if j == 0 else "direct")
                                    for j in range(12)]
        sim, lt = run_both(s, org, seed=k, events=events, probes=probes())
        assert sim == lt
        states = [state for _, state, _ in lt.transitions]
        if states[1:2] == ["circumventing"]:
            relayed += 1
            assert states.count("circumventing") == 1
    assert relayed > 10


def test_the_simulators_first_denials_are_the_shared_definition() -> None:
    """sim.model's cached first denials equal lifecycle.denial_start for every organisation —
    allow-listed Azure enterprises (never) and throttled regions included."""
    for overrides in ([], ["policy.openai.stages[1].action=throttle"]):
        s = load("openai-2024-cn-hk", overrides).scenario
        setup = Setup.of(s, 0, 0.01)
        policy = Policy(s)
        world = World(env=None, s=s, policy=policy, pop=setup.pop, profile=setup.profile, seed=0,  # type: ignore[arg-type]
                      timelines=[], credit=None, decided_at=None, market=None, ctx=None)  # type: ignore[arg-type]
        world.points = change_hours(world, s.incumbent.name)
        got = _first_denials(world, world.points)
        for i in range(setup.pop.size):
            start = lc.denial_start(policy, s, world.org(i), s.window.start)
            expected = None if start is None else world.hours(start)
            assert got.get(i) == expected, setup.pop.ids[i]
        assert any("azure" in setup.pop.ids[i] for i in range(setup.pop.size)
                   if i not in got and setup.pop.ids[i].startswith("cn-"))


EVENT = st.tuples(st.integers(min_value=0, max_value=80), st.sampled_from(["direct", "relay", "target"]))
VARIANTS = [
    [NO_ANNOUNCEMENT],
    ["behaviour.choice.asc_circumvent=3", NO_ANNOUNCEMENT],
    ["behaviour.choice.asc_migrate=3"],
    ["behaviour.announcement.anticipation.p=0.2"],
    ["policy.zhipu={stages: [{name: z, start: 2024-07-20, action: block, regions: [CN]}]}",
     "behaviour.choice.asc_migrate=3", NO_ANNOUNCEMENT],
]
SCENARIOS = [load("openai-2024-cn-hk", v).scenario for v in VARIANTS]


@seed(20241201)
@settings(max_examples=60, deadline=None, derandomize=True)
@given(variant=st.integers(min_value=0, max_value=len(VARIANTS) - 1),
       org_seed=st.integers(min_value=0, max_value=2**32 - 1),
       raw=st.lists(EVENT, min_size=1, max_size=12))
def test_property_both_adapters_agree_on_any_event_sequence(variant: int, org_seed: int,
                                                            raw: list[tuple[int, str]]) -> None:
    s = SCENARIOS[variant]
    org = lc.Org("cn-startup-000042", "CN", "startup")
    events = []
    for k, (half_days, kind) in enumerate(sorted(raw)):
        at = BLOCK + dt.timedelta(hours=12 * half_days, minutes=k)
        if kind == "target":   # a denial by whichever alternative it may have gone to
            events += [denied(at, "direct", p.name) for p in s.alternatives[:2]]
        else:
            events.append(denied(at, kind))
    sim, lt = run_both(s, org, seed=org_seed, events=events, probes=probes(45),
                       market=MarketContext.closed_form(s))
    assert sim == lt
