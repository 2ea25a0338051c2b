"""Enforcement: the shared policy engine's decision for a request, at the gateway's clock time.

The gateway adds what only it can observe: whether the client address is a hosting ASN, the
organisation's home country (from its id), and ``relay_since`` — the first scenario instant this
organisation was seen from a hosting ASN — so the policy engine can catch relayed organisations
exactly as the simulator does. ``relay_since`` lives in a bounded LRU map (oldest forgotten first).
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from collections.abc import Sequence

from gateway.identity import Identity
from gateway.memo import Memo
from gateway.region import ClientRegion
from gateway.routing import Target
from scenarios.failover import first_admitting
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


def policy_request(relays: RelayMemory, now: dt.datetime, provider: str, who: Identity,
                   where: ClientRegion) -> PolicyRequest:
    """What the policy may know of ``who`` calling ``provider`` from ``where`` at ``now``."""
    if where.hosting and who.org:
        return _request(provider, who, where, relays.seen(who.org, now))
    # Keyed by the fields the request is made of (strings, whose hashes Python caches), not by
    # the Identity and ClientRegion themselves: hashing those runs their dataclass __hash__.
    return _STEADY_REQUESTS[provider, where.country, who.org, who.segment, who.home_region,
                            where.hosting, where.asn, who.key]


_SteadyKey = tuple[str, str, str, str, str, bool, int | None, str]


def _steady_request(fields: _SteadyKey) -> PolicyRequest:
    """The request of a client that is not relaying: the same for every request of the pair
    (a PolicyRequest costs a few microseconds to build; most requests repeat one)."""
    provider, country, org, segment, home_country, hosting, asn, key = fields
    return PolicyRequest(provider=provider, country=country, org=org, segment=segment,
                         home_country=home_country, hosting=hosting, asn=asn, relay_since=None,
                         key=key)


_STEADY_REQUESTS: Memo[_SteadyKey, PolicyRequest] = Memo(_steady_request, 65536)


def _request(provider: str, who: Identity, where: ClientRegion,
             relay_since: dt.datetime | None) -> PolicyRequest:
    return PolicyRequest(provider=provider, country=where.country, org=who.org,
                         segment=who.segment, home_country=who.home_region,
                         hosting=where.hosting, asn=where.asn, relay_since=relay_since,
                         key=who.key)


def decide(policy: Policy, relays: RelayMemory, now: dt.datetime, provider: str,
           who: Identity, where: ClientRegion) -> Decision:
    """The policy decision for ``who`` calling ``provider`` from ``where`` at scenario time ``now``."""
    return policy.decide(now, policy_request(relays, now, provider, who, where))


def admitting_target(policy: Policy, relays: RelayMemory, now: dt.datetime,
                     targets: Sequence[Target], who: Identity,
                     where: ClientRegion) -> tuple[Target, Decision] | None:
    """The first of the failover ``targets`` whose own policy admits the request
    (``scenarios.failover.first_admitting``, shared with the simulator)."""
    if not targets:
        return None
    request = policy_request(relays, now, targets[0].provider.name, who, where)
    hit = first_admitting(policy, now, request, [t.provider.name for t in targets])
    return None if hit is None else (targets[hit[0]], hit[1])
