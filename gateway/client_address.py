"""The client's address: the TCP peer, or X-Forwarded-For walked right to left past trusted proxies.

nginx ``real_ip_recursive on`` semantics: only when the peer is a trusted proxy is
X-Forwarded-For read at all; then, from the rightmost entry leftwards, every address that is
itself a trusted proxy is skipped and the first untrusted one is the client. If every entry is
trusted, the leftmost is the client. An entry that is not an IP address ends the walk (the last
good address stands). A header sent by an untrusted peer is ignored entirely: it can never
change who the client is.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

from gateway.config import Network
from gateway.memo import Memo


@dataclass(frozen=True, slots=True)
class ClientAddress:
    ip: str
    peer_trusted: bool  # the TCP peer is a trusted proxy (its forwarded headers count)


_CACHED_FORWARDED_FOR = 128


class AddressResolver:
    """Resolves the client address of a request; the trust check is cached per address."""

    def __init__(self, trusted: tuple[Network, ...]) -> None:
        self._trusted = trusted
        self.is_trusted = functools.lru_cache(maxsize=4096)(self._is_trusted)
        self._normalise = functools.lru_cache(maxsize=65536)(_normalise)
        self._resolved: Memo[tuple[str, str | None], ClientAddress] = Memo(self._resolve_pair, 65536)

    def resolve(self, peer: str, forwarded_for: str | None) -> ClientAddress:
        # Clients repeat the same (peer, X-Forwarded-For) pair: remembered when short (the bound
        # on the cache's memory), walked each time when long.
        if forwarded_for is None or len(forwarded_for) <= _CACHED_FORWARDED_FOR:
            return self._resolved[peer, forwarded_for]
        return self._resolve(peer, forwarded_for)

    def _resolve_pair(self, pair: tuple[str, str | None]) -> ClientAddress:
        return self._resolve(*pair)

    def _resolve(self, peer: str, forwarded_for: str | None) -> ClientAddress:
        peer_ip = self._normalise(peer) or peer
        if not self._trusted or not self.is_trusted(peer_ip):
            return ClientAddress(peer_ip, False)
        if not forwarded_for:
            return ClientAddress(peer_ip, True)
        client = peer_ip
        for entry in reversed(forwarded_for.split(",")):
            ip = self._normalise(entry.strip())
            if ip is None:
                break
            client = ip
            if not self.is_trusted(ip):
                break
        return ClientAddress(client, True)

    def _is_trusted(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in net for net in self._trusted)


def _normalise(text: str) -> str | None:
    """The canonical text of an address (``::ffff:1.2.3.4`` is 1.2.3.4); None if not an address.

    A port suffix (``1.2.3.4:5678``, ``[2001:db8::1]:80``) is accepted, as proxies sometimes add it.
    """
    candidate = text
    if candidate.startswith("[") and "]" in candidate:
        candidate = candidate[1:candidate.index("]")]
    elif candidate.count(":") == 1:
        candidate = candidate.partition(":")[0]
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)
