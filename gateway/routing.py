"""Routing: model → provider, and the scenario's failover rules.

The model named in a request selects the provider that sells it (the first in the scenario's
provider list, so the incumbent wins a name two providers share). When a provider refuses an
organisation (``block``) or fails it (``error``), a ``routing.failover`` rule may send the request
to an alternative: which rules cover whom and which targets serve the client's country is
``scenarios.failover`` (shared with the simulator); here the target must also sell a substitute
for the requested model (``Provider.substitute_for``). The policy is then checked again for the
alternative.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from gateway.identity import Identity
from scenarios.failover import failover_targets
from scenarios.schema import Model, Provider, Scenario


@dataclass(frozen=True, slots=True)
class Target:
    provider: Provider
    model: Model
    # Read on every request: copied once (an attribute of a pydantic model costs several times
    # a slot's read, through the model's __getattr__ hook).
    provider_name: str = field(init=False, repr=False, compare=False)
    model_name: str = field(init=False, repr=False, compare=False)
    available_from: dt.datetime | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "provider_name", self.provider.name)
        object.__setattr__(self, "model_name", self.model.name)
        object.__setattr__(self, "available_from", self.model.available_from)


class Catalog:
    """Which provider sells which model, compiled once per scenario."""

    def __init__(self, scenario: Scenario) -> None:
        self._by_model: dict[str, Target] = {}
        for provider in scenario.providers:
            for model in provider.models:
                self._by_model.setdefault(model.name, Target(provider, model))
        self._scenario = scenario

    def lookup(self, model: str, now: dt.datetime) -> Target | None:
        """The target selling ``model`` at scenario time ``now`` (None: unknown or not yet out)."""
        target = self._by_model.get(model)
        if target is None:
            return None
        released = target.available_from
        return target if released is None or released <= now else None

    def models(self, now: dt.datetime) -> list[Target]:
        return [t for t in self._by_model.values()
                if t.available_from is None or t.available_from <= now]

    def failover(self, origin: Target, when: str, who: Identity, country: str,
                 now: dt.datetime) -> list[Target]:
        """Alternatives a failover rule allows for this organisation (``scenarios.failover``), in
        rule order, each with its substitute for the requested model if that is out at ``now``."""
        out: list[Target] = []
        for alt in failover_targets(self._scenario, provider=origin.provider.name, when=when,
                                    segment=who.segment, org=who.org, country=country):
            model = alt.substitute_for(origin.model.name)
            if model.available_from is None or model.available_from <= now:
                out.append(Target(alt, model))
        return out
