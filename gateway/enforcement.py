"""Enforcement: the shared policy engine's decision for a request, at the gateway's clock time.

The gateway adds what only it can observe: whether the client address is a hosting ASN, the
organisation's home country (from its id), and ``relay_since`` — the first scenario instant this
organisation was seen from a hosting ASN — so the policy engine can catch relayed organisations
exactly as the simulator does. ``relay_since`` lives in a bounded LRU map (oldest forgotten first).
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict

from gateway.identity import Identity
from gateway.region import ClientRegion
from scenarios.policy import Decision, Policy, PolicyRequest


class RelayMemory:
    """First scenario instant each organisation was seen from a hosting ASN (bounded LRU)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._since: OrderedDict[str, dt.datetime] = OrderedDict()

    def seen(self, org: str, now: dt.datetime) -> dt.datetime:
        since = self._since.get(org)
        if since is None or now < since:
            # A pinned or rewound clock may show an earlier instant: the earliest sighting counts.
            self._since[org] = since = now
            if len(self._since) > self.capacity:
                self._since.popitem(last=False)
        else:
            self._since.move_to_end(org)
        return since

    def get(self, org: str) -> dt.datetime | None:
        return self._since.get(org)

    def __len__(self) -> int:
        return len(self._since)


def decide(policy: Policy, relays: RelayMemory, now: dt.datetime, provider: str,
           who: Identity, where: ClientRegion) -> Decision:
    """The policy decision for ``who`` calling ``provider`` from ``where`` at scenario time ``now``."""
    relay_since = relays.seen(who.org, now) if where.hosting and who.org else None
    request = PolicyRequest(provider=provider, country=where.country, org=who.org,
                            segment=who.segment, home_country=who.home_region,
                            hosting=where.hosting, asn=where.asn, relay_since=relay_since,
                            key=who.key)
    return policy.decide(now, request)
