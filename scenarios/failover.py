"""Failover: where a request that one provider refused or failed may go instead.

One definition, used by the gateway's router (``gateway.routing``) and by the simulator
(``sim.pieces``). A rule of ``routing.failover`` applies to a request when

- its ``from`` is the provider that refused the request (``"block"``: the policy denied it) or
  failed it (``"error"``: the upstream answered 5xx, reset or timed out), and ``when`` lists that;
- it covers the organisation: a rule that lists neither ``segments`` nor ``orgs`` covers everyone;
  otherwise it covers the organisations of the listed segments *and* the listed organisations
  (the union: ``segments: [enterprise], orgs: [cn-startup-000007]`` covers every enterprise and
  that one start-up).

Its targets are the rule's ``to`` providers, in order, that serve the *client's country* — the
country the request comes from as the policy sees it (the relay's country for a relayed request),
not the organisation's home — each provider once across all rules, in rule order. The caller then
asks the policy about each target in turn (a target's own policy may deny the request too) and
takes the first that admits it; the gateway also needs the target to sell a substitute for the
requested model at that instant (a model-level check the simulator, which routes whole model
mixes, has no use for).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from scenarios.countries import expand_regions
from scenarios.policy import Decision, Policy, PolicyRequest
from scenarios.schema import FailoverRule, Provider, Scenario

BLOCK, ERROR = "block", "error"


def rules_name_orgs(s: Scenario) -> bool:
    """Does any failover rule name organisations? Then two organisations of a region and
    segment may be failed over differently."""
    return any(rule.orgs for rule in s.routing.failover)


def covers(rule: FailoverRule, *, segment: str, org: str) -> bool:
    """Does ``rule`` apply to this organisation (see the module docstring)?"""
    if not rule.segments and not rule.orgs:
        return True
    return segment in rule.segments or org in rule.orgs


def failover_targets(s: Scenario, *, provider: str, when: str, segment: str, org: str,
                     country: str) -> tuple[Provider, ...]:
    """Providers the scenario's rules allow this request to fail over to, in order.

    ``when`` is ``"block"`` or ``"error"``; ``country`` the client's country ("" when unknown:
    then no target is dropped for the country it serves).
    """
    out: list[Provider] = []
    for rule in s.routing.failover:
        if rule.from_ != provider or when not in rule.when or not covers(rule, segment=segment, org=org):
            continue
        for name in rule.to:
            alt = s.provider(name)
            if country and country not in expand_regions(alt.serves):
                continue
            if all(p.name != alt.name for p in out):
                out.append(alt)
    return tuple(out)


def first_admitting(policy: Policy, now: dt.datetime, request: PolicyRequest,
                    candidates: Sequence[str]) -> tuple[int, Decision] | None:
    """The first candidate provider whose own policy admits ``request`` (asked as the same
    client: country, hosting, relay), with its decision; None if every one denies it."""
    for k, name in enumerate(candidates):
        decision = policy.decide(now, request._replace(provider=name))
        if not decision.denied:
            return k, decision
    return None


def serving_target(s: Scenario, policy: Policy, now: dt.datetime,
                   request: PolicyRequest) -> tuple[Provider, Decision] | None:
    """Where a request its provider's policy denies fails over to and is served (with the
    target's decision): the first target of the rules whose own policy admits it; None: none."""
    targets = failover_targets(s, provider=request.provider, when=BLOCK, segment=request.segment,
                               org=request.org, country=request.country)
    hit = first_admitting(policy, now, request, [p.name for p in targets]) if targets else None
    return None if hit is None else (targets[hit[0]], hit[1])


def served_instead(s: Scenario, policy: Policy, now: dt.datetime, request: PolicyRequest) -> bool:
    """Would a request its provider's policy denies be failed over to a target that serves it?

    Then the organisation sees a served response, not a denial: what it *notices* (the load
    test's user reads it off the wire; the simulator asks this)."""
    return serving_target(s, policy, now, request) is not None


def failover_providers(s: Scenario, provider: str) -> frozenset[str]:
    """Every provider a request refused by ``provider`` may fail over to (any rule, any client)."""
    return frozenset(name for rule in s.routing.failover if rule.from_ == provider
                     and BLOCK in rule.when for name in rule.to)
