"""The client's region: country, autonomous system and hosting flag of its address.

From the shared geography (``scenarios.geo``). ``CF-IPCountry`` (Cloudflare's country header)
replaces the GeoIP country only when enabled (``--trust-cf-ipcountry``) *and* the request came
through a trusted proxy. Private and unknown addresses get the configured treatment:
``unknown_country`` "" (the default) leaves them without a country, which no policy stage covers,
so they are allowed; a country code (``--unknown-country CN``) treats them as from that country.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.memo import Memo
from scenarios.errors import GeoError
from scenarios.geo import Geo

#: Cloudflare's codes for "unknown" and "Tor": not a country.
_CF_NOT_A_COUNTRY = frozenset({"XX", "T1", ""})


@dataclass(frozen=True, slots=True)
class ClientRegion:
    ip: str
    country: str  # "" unknown
    asn: int | None
    asn_class: str  # hosting | isp | private | unknown
    hosting: bool


class RegionResolver:
    def __init__(self, geo: Geo, *, unknown_country: str = "", trust_cf_ipcountry: bool = False) -> None:
        self._geo = geo
        self._unknown = unknown_country
        self._trust_cf = trust_cf_ipcountry
        self._regions: Memo[str, ClientRegion] = Memo(self._lookup, 65536)

    def resolve(self, ip: str, *, peer_trusted: bool, cf_country: str | None) -> ClientRegion:
        region = self._regions[ip]
        if cf_country is not None and peer_trusted and self._trust_cf:
            code = cf_country.strip().upper()
            if code not in _CF_NOT_A_COUNTRY and len(code) == 2 and code.isalpha():
                return ClientRegion(region.ip, code, region.asn, region.asn_class, region.hosting)
        return region

    def _lookup(self, ip: str) -> ClientRegion:
        try:
            info = self._geo.lookup(ip)
        except GeoError:
            return ClientRegion(ip, self._unknown, None, "unknown", False)
        if info.private:
            return ClientRegion(info.ip, self._unknown, None, "private", False)
        if not info.country:
            return ClientRegion(info.ip, self._unknown, info.asn, "unknown", info.hosting)
        return ClientRegion(info.ip, info.country, info.asn, "hosting" if info.hosting else "isp",
                            info.hosting)
