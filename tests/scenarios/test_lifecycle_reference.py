"""The transitions of ``scenarios.lifecycle`` against a reference copy of them as they were
before they read a state's fields by unpacking it (and built states without a helper's frame):
the same next state, the same actions and the same draws, for every kind of event on states of
every kind — bit for bit."""

from __future__ import annotations

import datetime as dt
import itertools
import math

import numpy as np
import pytest

from scenarios import behaviour
from scenarios import lifecycle as lc
from scenarios.distributions import sample_one
from scenarios.loader import load
from scenarios.policy import Policy

_new = tuple.__new__


# ---------------------------------------------------------------- the reference copy


def _ref_life(state: str, provider: str, excluded: frozenset[str], warned: bool, threshold: float | None,
          denied_seen: bool, decide_after: dt.datetime | None, relay_since: dt.datetime | None,
          migrate_done: dt.datetime | None) -> lc.Life:
    """``lc.Life(...)`` from all its fields in order, without the keyword machinery of ``_replace``
    (a transition builds a few hundred thousand of them per simulation)."""
    return _new(lc.Life, (state, provider, excluded, warned, threshold, denied_seen, decide_after,
                       relay_since, migrate_done))




def _ref_warned(life: lc.Life, event: lc.Warned, org: lc.Org, rng: np.random.Generator,
            ctx: lc.Context) -> tuple[lc.Life, tuple[lc.Action, ...]]:
    if life.warned or life.denied_seen or life.state != lc.DIRECT:
        return life, ()
    threshold = float(rng.exponential())
    return (_ref_life(lc.DIRECT, life.provider, life.excluded, True, threshold, False, life.decide_after,
                  life.relay_since, life.migrate_done), (_new(lc.AwaitAnticipation, (threshold,)),))


def _ref_migration_done(life: lc.Life, event: lc.MigrationDone, org: lc.Org, rng: np.random.Generator,
                    ctx: lc.Context) -> tuple[lc.Life, tuple[lc.Action, ...]]:
    if life.state != lc.MIGRATING:
        return life, ()
    at, provider = event.at, life.provider
    return (_ref_life(lc.MIGRATED, provider, life.excluded, life.warned, life.threshold,
                  life.denied_seen, life.decide_after, life.relay_since, None),
            (_new(lc.Enter, (at, lc.MIGRATED, provider)), _new(lc.AwaitDenial, (at, "direct", provider))))


def _ref_denied(life: lc.Life, ev: lc.Denied, org: lc.Org, rng: np.random.Generator,
            ctx: lc.Context) -> tuple[lc.Life, tuple[lc.Action, ...]]:
    state, provider, excluded = life.state, life.provider, life.excluded
    seen = life if life.denied_seen else _ref_life(
        state, provider, excluded, life.warned, life.threshold, True, life.decide_after,
        life.relay_since, life.migrate_done)
    if state == lc.CIRCUMVENTING and ev.path == "relay":
        # detected: the relay is burnt for good (detection flags the organisation, not a route)
        burnt = _ref_life(state, provider, excluded | {behaviour.CIRCUMVENT}, seen.warned, seen.threshold,
                      True, seen.decide_after, seen.relay_since, seen.migrate_done)
        return _ref_decide(burnt, ev.at, org, rng, ctx)
    if state == lc.MIGRATED and ev.provider == provider:
        gone = _ref_life(lc.DIRECT, "", excluded | {provider}, seen.warned, seen.threshold, True,
                     seen.decide_after, seen.relay_since, seen.migrate_done)
        return _ref_decide(gone, ev.at, org, rng, ctx, entered=(_new(lc.Enter, (ev.at, lc.DIRECT, "")),))
    if state == lc.DIRECT and ev.path == "direct" and ev.provider == ctx.incumbent and (
            life.decide_after is None or ev.at >= life.decide_after):
        return _ref_decide(seen, ev.at, org, rng, ctx)
    return seen, ()


def _ref_decide(life: lc.Life, at: dt.datetime, org: lc.Org, rng: np.random.Generator, ctx: lc.Context,
            entered: tuple[lc.Action, ...] = ()) -> tuple[lc.Life, tuple[lc.Action, ...]]:
    closed = ctx.closed(org, at)
    picked = ctx.choose(org, at, life.excluded | closed if closed else life.excluded, rng)
    choice = behaviour.WAIT if picked is None else picked
    if choice == behaviour.WAIT:
        # nothing open: waiting for good (no draw)
        days = math.inf if picked is None else max(0.0, sample_one(ctx.s.behaviour.wait_days, rng))
        if math.isinf(days):
            return (_ref_life(lc.DIRECT, life.provider, life.excluded, life.warned, life.threshold,
                          life.denied_seen, None, life.relay_since, life.migrate_done), entered)
        after = at + dt.timedelta(days)   # (days by position: the same value)
        back = (_new(lc.Enter, (at, lc.DIRECT, "")),) if life.state != lc.DIRECT else entered
        return (_ref_life(lc.DIRECT, life.provider, life.excluded, life.warned, life.threshold,
                      life.denied_seen, after, None, life.migrate_done),
                (*back, _new(lc.AwaitDenial, (after, "direct", ctx.incumbent))))
    if choice == behaviour.CIRCUMVENT:
        return (_ref_life(lc.CIRCUMVENTING, life.provider, life.excluded, life.warned, life.threshold,
                      life.denied_seen, None, at, life.migrate_done),
                (*entered, _new(lc.Enter, (at, lc.CIRCUMVENTING, "")),
                 _new(lc.AwaitDenial, (at, "relay", ctx.incumbent))))
    if choice == behaviour.CHURN:
        churned = _ref_life(lc.CHURNED, life.provider, life.excluded, life.warned, life.threshold,
                        life.denied_seen, None, None, life.migrate_done)
        return churned, (*entered, _new(lc.Enter, (at, lc.CHURNED, "")))
    life2, actions = _ref_migrate(life, choice, at, org, rng, ctx)
    return life2, (*entered, *actions) if entered else actions


def _ref_migrate(life: lc.Life, provider: str, at: dt.datetime, org: lc.Org, rng: np.random.Generator,
             ctx: lc.Context) -> tuple[lc.Life, tuple[lc.Action, ...]]:
    days = max(0.0, sample_one(ctx.migration_days[org.segment], rng))
    done = at + dt.timedelta(days)
    return (_ref_life(lc.MIGRATING, provider, life.excluded, life.warned, life.threshold, life.denied_seen,
                  None, None, done),
            (_new(lc.Chose, (at, provider)), _new(lc.Enter, (at, lc.MIGRATING, provider)),
             _new(lc.AwaitMigration, (done,))))


def _ref_anticipation_due(life: lc.Life, event: lc.AnticipationDue, org: lc.Org,
                          rng: np.random.Generator,
                          ctx: lc.Context) -> tuple[lc.Life, tuple[lc.Action, ...]]:
    if not lc.may_anticipate(life):
        return life, ()
    choice = ctx.choose(org, event.at, lc.ANTICIPATING_EXCLUDES | life.excluded
                        | ctx.closed(org, event.at), rng)
    if choice is None:
        return life, ()
    return _ref_migrate(life, choice, event.at, org, rng, ctx)


_REF_STEPS = {lc.Warned: _ref_warned, lc.AnticipationDue: _ref_anticipation_due,
              lc.MigrationDone: _ref_migration_done, lc.Denied: _ref_denied}


# ---------------------------------------------------------------- the cases

BLOCK = dt.datetime(2024, 7, 9, tzinfo=dt.UTC)
LATER = BLOCK + dt.timedelta(days=3, hours=5)


def _lives() -> list[lc.Life]:
    """States of every kind, with and without each optional field."""
    out = []
    for state, provider in ((lc.DIRECT, ""), (lc.CIRCUMVENTING, ""), (lc.MIGRATING, "zhipu"),
                            (lc.MIGRATED, "zhipu"), (lc.MIGRATED, "deepseek"), (lc.CHURNED, "")):
        for excluded, warned, seen, after, since in itertools.product(
                (frozenset(), frozenset({behaviour.CIRCUMVENT, "baidu"})), (False, True),
                (False, True), (None, BLOCK + dt.timedelta(days=1), BLOCK - dt.timedelta(days=1)),
                (None, BLOCK)):
            out.append(lc.Life(state=state, provider=provider, excluded=excluded, warned=warned,
                               threshold=0.7 if warned else None, denied_seen=seen,
                               decide_after=after, relay_since=since,
                               migrate_done=LATER if state == lc.MIGRATING else None))
    return out


EVENTS = (lc.Warned(BLOCK - dt.timedelta(days=2)), lc.AnticipationDue(BLOCK),
          lc.MigrationDone(LATER), lc.Denied(BLOCK, "direct", "openai"),
          lc.Denied(LATER, "relay", "openai"), lc.Denied(LATER, "direct", "zhipu"),
          lc.Denied(BLOCK, "direct", "deepseek"))


# every kind of choice made often: as shipped, and with waiting, churning, circumventing likely;
# and an alternative with a policy of its own (closed to some at some instants)
@pytest.mark.parametrize("overrides", [
    (), ("behaviour.choice.asc_wait=3",), ("behaviour.choice.asc_churn=3",),
    ("behaviour.choice.asc_circumvent=3",),
    ("policy.zhipu={stages: [{name: cn, start: 2024-07-01, regions: [CN], action: block}]}",)])
def test_transitions_are_the_reference_bit_for_bit(overrides: tuple[str, ...]) -> None:
    s = load("openai-2024-cn-hk", overrides).scenario
    policy = Policy(s)
    shares = {"zhipu": 0.2, "baidu": 0.05}
    market = type("M", (), {"shares": lambda self, region, at: shares})()
    new_ctx, ref_ctx = lc.Context(s, policy, market), lc.Context(s, policy, market)
    kinds: set[tuple[str, str]] = set()
    for n, (life, event) in enumerate(itertools.product(_lives(), EVENTS)):
        for segment in ("startup", "enterprise"):
            org = lc.Org(f"cn-{segment}-{n:06d}", "CN", segment)
            a, b = np.random.default_rng(n), np.random.default_rng(n)
            got = lc.step(life, event, org, a, new_ctx)
            want = _REF_STEPS[type(event)](life, event, org, b, ref_ctx)
            assert got == want, (life, event)
            assert all(type(x) is type(y) for x, y in zip(got[1], want[1], strict=True))
            assert a.bit_generator.state == b.bit_generator.state   # the same draws
            kinds.add((got[0].state, type(got[1][-1]).__name__ if got[1] else ""))
    # every kind of outcome was met
    assert {(lc.MIGRATING, "AwaitMigration"), (lc.CHURNED, "Enter"), (lc.CIRCUMVENTING, "AwaitDenial"),
            (lc.DIRECT, "AwaitDenial"), (lc.MIGRATED, "AwaitDenial"), (lc.DIRECT, "AwaitAnticipation"),
            (lc.DIRECT, "")} <= kinds
