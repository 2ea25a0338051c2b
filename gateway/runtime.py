"""What the admin API may swap at run time, as one immutable value.

The scenario, its compiled policy and catalog, the clock and the key store form one ``Runtime``;
a request uses the runtime it started with from start to end, and a swap is one assignment.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.keystore import KeyStore
from gateway.routing import Catalog
from scenarios.clock import Clock
from scenarios.loader import Loaded
from scenarios.policy import Policy


@dataclass(frozen=True, slots=True)
class Runtime:
    """Scenario, compiled policy, catalog, clock and key store."""

    loaded: Loaded
    policy: Policy
    catalog: Catalog
    clock: Clock
    clock_spec: str
    keys: KeyStore | None = None

    @classmethod
    def build(cls, loaded: Loaded, clock_spec: str, clock: Clock,
              keys: KeyStore | None = None) -> Runtime:
        return cls(loaded, Policy(loaded.scenario), Catalog(loaded.scenario), clock, clock_spec,
                   keys)
