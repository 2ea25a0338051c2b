"""Geography: an IP address's country and autonomous system, and public addresses of a country.

The data comes from one of two sources:

* by default, the MaxMind GeoLite2 Country + ASN data embedded in the ``geoip2fast`` package
  (``geoip2fast-asn-ipv6.dat.gz``: IPv4 and IPv6). That file names each autonomous system but
  does not carry its number, so ``IpInfo.asn`` is only known for the curated hosting systems
  below (recovered from their GeoLite2 organisation name) and is ``None`` otherwise;
* a MaxMind MMDB file named by the user (GeoLite2-Country, GeoLite2-ASN or a file with both),
  read with ``maxminddb``; fields the file lacks come back empty.

``Geo.lookup`` is on the gateway's hot path, so results are kept in a bounded per-instance LRU
cache. ``Geo.sample_ips`` draws addresses of a country for simulated and load-test clients.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import ipaddress
import pickle
import re
import socket
from bisect import bisect_right
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

import maxminddb
import numpy as np
import numpy.typing as npt

from scenarios.errors import GeoError

__all__ = ["Geo", "IpInfo", "default_geo", "is_hosting_asn"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_IPV4_MAX = 2**32 - 1
_LOOKUP_CACHE_SIZE = 65_536
_EMBEDDED_FILE = "geoip2fast-asn-ipv6.dat.gz"
_EMBEDDED_VERSION = 120
# sample_ips gives up after this many rounds of drawing without reaching n verified addresses.
_MAX_SAMPLING_ROUNDS = 64


@dataclass(frozen=True, slots=True)
class IpInfo:
    """What the GeoIP data says about one address."""

    ip: str  # normalised textual address (an IPv4-mapped IPv6 address becomes the IPv4 one)
    country: str  # ISO 3166 alpha-2, upper-case, or "" when unknown
    asn: int | None
    asn_name: str  # "" when unknown
    hosting: bool  # the address belongs to a hosting / datacentre / cloud autonomous system
    private: bool  # private, loopback, link-local, shared (CGNAT), multicast, reserved...


# Well-known cloud and hosting autonomous systems, with the organisation name GeoLite2 gives each
# (the embedded data carries names only, so the name is how we recover the number).
_HOSTING_ASNS: Mapping[int, str] = MappingProxyType(
    {
        16509: "AMAZON-02",  # AWS
        14618: "AMAZON-AES",  # AWS us-east-1
        8987: "Amazon Data Services Ireland Ltd",  # AWS Europe
        15169: "GOOGLE",  # Google, including Google Cloud front ends
        19527: "GOOGLE-2",
        396982: "GOOGLE-CLOUD-PLATFORM",
        8075: "MICROSOFT-CORP-MSN-AS-BLOCK",  # Microsoft Azure
        45102: "Alibaba US Technology Co., Ltd.",  # Alibaba Cloud outside China
        37963: "Hangzhou Alibaba Advertising Co.,Ltd.",  # Alibaba Cloud in China
        45090: "Shenzhen Tencent Computer Systems Company Limited",  # Tencent Cloud
        132203: "Tencent Building, Kejizhongyi Avenue",  # Tencent Cloud outside China
        136907: "HUAWEI CLOUDS",
        55990: "Huawei Cloud Service data center",
        14061: "DIGITALOCEAN-ASN",
        16276: "OVH SAS",
        24940: "Hetzner Online GmbH",
        63949: "Akamai Connected Cloud",  # formerly Linode
        20473: "AS-CHOOPA",  # Vultr
        31898: "ORACLE-BMC-31898",  # Oracle Cloud
        13335: "CLOUDFLARENET",
        54113: "FASTLY",
        51167: "Contabo GmbH",
        60781: "LeaseWeb Netherlands B.V.",
        12876: "Scaleway S.a.s.",
        9009: "M247 Europe SRL",
        49505: "OOO Network of data-centers Selectel",
        8560: "IONOS SE",
        36352: "AS-COLOCROSSING",
        8100: "ASN-QUADRANET-GLOBAL",
    }
)
_HOSTING_ASN_BY_NAME: Mapping[str, int] = MappingProxyType({name: asn for asn, name in _HOSTING_ASNS.items()})
# Whole words only: "servers" must not match "Wasserversorgung" (a water utility's network).
_HOSTING_WORDS = re.compile(
    r"\b(?:hosting|cloud|vps|data[- ]?cent(?:er|re)s?\b|servers?\b|colo(?:cation)?\b)",
    re.IGNORECASE,
)


def is_hosting_asn(asn: int | None, asn_name: str) -> bool:
    """Whether an autonomous system looks like a hosting / datacentre / cloud network.

    A heuristic, documented so nobody mistakes it for ground truth: True for a curated set of
    well-known cloud and hosting systems (AWS, Google, Azure, Alibaba, Tencent, Huawei Cloud,
    DigitalOcean, OVH, Hetzner, Akamai/Linode, Vultr, Oracle, Cloudflare, Fastly, ...), known by
    number or by GeoLite2 organisation name, and for any name containing one of the words hosting,
    cloud (also as a prefix: "Cloudflare"), vps, datacenter / data center / data-centre,
    server(s) or colo(cation). It misses small hosters with other names and can flag an ISP that
    sells "cloud" services; eyeball networks (China Telecom, Comcast...) are never matched.
    """
    if asn is not None and asn in _HOSTING_ASNS:
        return True
    return asn_name in _HOSTING_ASN_BY_NAME or _HOSTING_WORDS.search(asn_name) is not None


# (first, last, country, hosting): one IPv4 range, as integers, inclusive.
_Piece = tuple[int, int, str, bool]


class _Source(Protocol):
    """Where a Geo gets its data from."""

    @property
    def description(self) -> str: ...

    def fields(self, address: Address) -> tuple[str, int | None, str, bool]:
        """(country, asn, asn_name, hosting) of a public address."""
        ...

    def ipv4_pieces(self) -> Iterator[_Piece]:
        """Sorted, disjoint IPv4 ranges with a known country, each wholly hosting or not."""
        ...


class Geo:
    """IP → country / autonomous system lookups, and addresses of a country, on one data source."""

    def __init__(self, mmdb_path: str | Path | None = None) -> None:
        self._source: _Source = _embedded_source() if mmdb_path is None else _MmdbSource(mmdb_path)
        # Per instance, not per class, so the cache dies with the Geo and holds no other Geo's data.
        self._cached_lookup = functools.lru_cache(maxsize=_LOOKUP_CACHE_SIZE)(self._lookup)

    @property
    def source(self) -> str:
        """Where the data comes from, for run metadata and error messages."""
        return self._source.description

    def lookup(self, ip: str) -> IpInfo:
        """Country and autonomous system of ``ip``; GeoError when it is not an IP address."""
        return self._cached_lookup(ip)

    def _lookup(self, ip: str) -> IpInfo:
        address, text = _parse_address(ip)
        if _is_private(address):
            return IpInfo(text, "", None, "", hosting=False, private=True)
        country, asn, asn_name, hosting = self._source.fields(address)
        return IpInfo(text, country, asn, asn_name, hosting, private=False)

    def sample_ips(
        self, country: str, n: int, rng: np.random.Generator, *, hosting: bool = False,
        isp: bool = False,
    ) -> list[str]:
        """``n`` public IPv4 addresses that ``lookup`` maps to ``country`` (and to a hosting system
        when ``hosting``; to any other network when ``isp``), drawn uniformly over that part of the
        country's address space from ``rng``.

        Deterministic for a given rng state and data source. Addresses ending in .0 or .255 are
        skipped, and every address is checked to round-trip through ``lookup``. GeoError when the
        data has no (hosting) network for ``country`` (an upper-case ISO alpha-2 code).
        """
        if n < 0:
            raise ValueError(f"n ({n}) must not be negative")
        if hosting and isp:
            raise ValueError("an address is of a hosting network or not: not both hosting and isp")
        table = self._tables.get((country, hosting))
        if table is None:
            kind = "hosting networks" if hosting else "networks"
            raise GeoError(f"{country!r}: no {kind} for this country in {self.source}")
        return self._draw_verified(table, country, n, rng, hosting, isp)

    def _draw_verified(
        self, table: _RangeTable, country: str, n: int, rng: np.random.Generator, hosting: bool,
        isp: bool,
    ) -> list[str]:
        picked: list[str] = []
        for _ in range(_MAX_SAMPLING_ROUNDS):
            missing = n - len(picked)
            if missing == 0:
                return picked
            # Draw a little more than needed: some candidates are .0/.255 or fail the round trip.
            for ip in _as_texts(table.draw(rng, missing + missing // 8 + 8)):
                info = self._lookup(ip)
                if info.country == country and (info.hosting if hosting else not (isp and info.hosting)):
                    picked.append(ip)
                    if len(picked) == n:
                        return picked
        raise GeoError(f"{country!r}: could not draw {n} addresses that map back to {country}")

    @functools.cached_property
    def _tables(self) -> dict[tuple[str, bool], _RangeTable]:
        """Per (country, hosting-only) the ranges to draw from; built on first use (~1 s)."""
        firsts: dict[tuple[str, bool], list[int]] = {}
        sizes: dict[tuple[str, bool], list[int]] = {}
        for first, last, country, hosting in self._source.ipv4_pieces():
            for key in ((country, False), (country, True)) if hosting else ((country, False),):
                firsts.setdefault(key, []).append(first)
                sizes.setdefault(key, []).append(last - first + 1)
        return {key: _RangeTable.build(firsts[key], sizes[key]) for key in firsts}


@functools.lru_cache(maxsize=1)
def default_geo() -> Geo:
    """The process-wide Geo on the embedded data, loaded on first use."""
    return Geo()


@dataclass(frozen=True)
class _RangeTable:
    """Integer ranges laid end to end, so a uniform draw over [0, total) picks an address with
    probability proportional to its range's size."""

    firsts: npt.NDArray[np.int64]
    offsets: npt.NDArray[np.int64]  # addresses in all the ranges before this one
    total: int

    @classmethod
    def build(cls, firsts: list[int], sizes: list[int]) -> _RangeTable:
        size_array = np.asarray(sizes, dtype=np.int64)
        offsets = np.concatenate(([0], np.cumsum(size_array)[:-1])).astype(np.int64)
        return cls(np.asarray(firsts, dtype=np.int64), offsets, int(size_array.sum()))

    def draw(self, rng: np.random.Generator, k: int) -> npt.NDArray[np.int64]:
        position = rng.integers(0, self.total, size=k, dtype=np.int64)
        index = np.searchsorted(self.offsets, position, side="right") - 1
        return self.firsts[index] + (position - self.offsets[index])


def _as_texts(addresses: npt.NDArray[np.int64]) -> Iterator[str]:
    """Dotted quads, leaving out x.x.x.0 and x.x.x.255: they read as network/broadcast addresses."""
    low_octet = addresses & 0xFF
    for value in addresses[(low_octet != 0) & (low_octet != 0xFF)].tolist():
        yield socket.inet_ntoa(value.to_bytes(4, "big"))


def _parse_address(ip: str) -> tuple[Address, str]:
    """The address and its normalised text; GeoError when ``ip`` is not an IP address."""
    try:
        # The fast path for the common case. inet_pton takes only a canonical dotted quad (no
        # "1.2.3", no leading zeros), so the text is already normalised; several times faster
        # than ipaddress.ip_address.
        return ipaddress.IPv4Address(socket.inet_pton(socket.AF_INET, ip)), ip
    except (OSError, TypeError, ValueError):
        pass
    if not isinstance(ip, str):
        raise GeoError(f"{ip!r}: not an IP address")
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        raise GeoError(f"{ip!r}: not an IP address") from None
    # A dual-stack socket reports an IPv4 client as ::ffff:a.b.c.d; it is that IPv4 client.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address, str(address)


# Every IPv4 special-purpose block (RFC 6890 registry: private, shared, loopback, link-local,
# documentation, benchmarking, multicast, reserved) starts with one of these octets. Any other
# address is global, which spares the hot path ipaddress's slow is_global (about 10 µs).
_SPECIAL_IPV4_OCTETS = frozenset({0, 10, 100, 127, 169, 172, 192, 198, 203, *range(224, 256)})


def _is_private(address: Address) -> bool:
    if address.version == 4 and int(address) >> 24 not in _SPECIAL_IPV4_OCTETS:
        return False
    # is_global alone lets multicast, and IPv6's reserved and site-local ranges, through.
    if not address.is_global or address.is_multicast or address.is_reserved:
        return True
    return isinstance(address, ipaddress.IPv6Address) and address.is_site_local


# --- the embedded geoip2fast data -----------------------------------------------------------------


@dataclass(frozen=True)
class _Ranges:
    """Sorted, disjoint CIDR ranges (first address, prefix length), each with a value index."""

    firsts: list[int]
    prefixes: list[int]
    values: list[int]

    def find(self, key: int, version: int) -> int | None:
        i = bisect_right(self.firsts, key) - 1
        if i < 0:
            return None
        first = self.firsts[i]
        # IPv4 and IPv6 ranges share one list; an IPv6 key must not land in an IPv4 range.
        bits = 32 if first <= _IPV4_MAX else 128
        if (bits == 32) != (version == 4) or key >= first + (1 << (bits - self.prefixes[i])):
            return None
        return self.values[i]

    def ipv4_spans(self) -> Iterator[tuple[int, int, int]]:
        """(first, last, value) of every IPv4 range, in order."""
        for first, prefix, value in zip(self.firsts, self.prefixes, self.values, strict=True):
            if first > _IPV4_MAX:
                return
            yield first, first + (1 << (32 - prefix)) - 1, value


class _EmbeddedSource:
    """The GeoLite2 Country + ASN data shipped inside the geoip2fast package."""

    def __init__(self, info: str, tables: tuple[Any, ...]) -> None:
        (_, _, country_names, asn_names, firsts, asn_firsts, country_ids, asn_ids, prefixes,
         asn_prefixes) = tables  # fmt: skip
        self.description = f"geoip2fast embedded data ({info})"
        self._countries = _Ranges(_flat(firsts), _flat(prefixes), _flat(country_ids))
        self._asns = _Ranges(_flat(asn_firsts), _flat(asn_prefixes), _flat(asn_ids))
        # Entries look like "CN:China"; reserved ranges use "01".."15", continents "ASIA".
        self._codes = [_iso_code(entry.partition(":")[0]) for entry in country_names]
        self._asn_names = ["" if name == "<unknown>" else str(name) for name in asn_names]
        self._asn_numbers = [_HOSTING_ASN_BY_NAME.get(name) for name in self._asn_names]
        self._hosting = [
            is_hosting_asn(asn, name) for asn, name in zip(self._asn_numbers, self._asn_names, strict=True)
        ]

    def fields(self, address: Address) -> tuple[str, int | None, str, bool]:
        key = int(address)
        country = self._countries.find(key, address.version)
        asn = self._asns.find(key, address.version)
        code = "" if country is None else self._codes[country]
        if asn is None:
            return code, None, "", False
        return code, self._asn_numbers[asn], self._asn_names[asn], self._hosting[asn]

    def ipv4_pieces(self) -> Iterator[_Piece]:
        hosting_spans = ((first, last) for first, last, asn in self._asns.ipv4_spans() if self._hosting[asn])
        countries = (
            (first, last, self._codes[value])
            for first, last, value in self._countries.ipv4_spans()
            if self._codes[value]
        )
        return _split_by_hosting(countries, hosting_spans)


def _split_by_hosting(
    countries: Iterator[tuple[int, int, str]], hosting: Iterator[tuple[int, int]]
) -> Iterator[_Piece]:
    """Cut sorted country ranges where sorted hosting ranges begin and end (one merge pass)."""
    span = next(hosting, None)
    for first, last, country in countries:
        position = first
        while span is not None and span[0] <= last:
            span_first, span_last = span
            if span_last >= position:
                if span_first > position:
                    yield position, span_first - 1, country, False
                    position = span_first
                yield position, min(span_last, last), country, True
                position = min(span_last, last) + 1
                if span_last > last:
                    break  # the hosting range runs on into the next country range
            span = next(hosting, None)
        if position <= last:
            yield position, last, country, False


@functools.lru_cache(maxsize=1)
def _embedded_source() -> _EmbeddedSource:
    """Load the embedded data once per process (about a second)."""
    path = _embedded_path()
    try:
        with gzip.open(path, "rb") as stream:
            version, source_info, _, tables = _PlainUnpickler(stream).load()
        if version != _EMBEDDED_VERSION or not (source_info["country"] and source_info["asn"]):
            raise ValueError(f"unexpected data layout (version {version})")
        return _EmbeddedSource(source_info["info"], tables)
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, KeyError) as exc:
        raise GeoError(f"{path}: cannot read GeoIP database: {exc}") from exc


def _embedded_path() -> Path:
    # find_spec locates the package without importing it: importing geoip2fast sets
    # PYTHONWARNINGS=ignore in os.environ, which every child process would inherit.
    spec = importlib.util.find_spec("geoip2fast")
    if spec is None or not spec.submodule_search_locations:
        raise GeoError("geoip2fast is not installed: cannot load the embedded GeoIP data")
    return Path(next(iter(spec.submodule_search_locations))) / _EMBEDDED_FILE


class _PlainUnpickler(pickle.Unpickler):
    """The data file holds only lists, dicts, strings and numbers: refuse anything that would
    import and call code, so a tampered file cannot run any."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in the data file")


def _flat(chunks: list[list[int]]) -> list[int]:
    return [value for chunk in chunks for value in chunk]


def _iso_code(code: str) -> str:
    return code.upper() if len(code) == 2 and code.isalpha() else ""


# --- a MaxMind MMDB file ------------------------------------------------------------------------


class _MmdbSource:
    """A MaxMind DB file: GeoLite2/GeoIP2 Country, ASN, or a file with both kinds of record."""

    def __init__(self, path: str | Path) -> None:
        try:
            self._reader = maxminddb.open_database(str(path))
            metadata = self._reader.metadata()
        except maxminddb.InvalidDatabaseError as exc:
            # Its message repeats the path and asks a question; say it once, plainly.
            raise GeoError(f"{path}: cannot read GeoIP database: not a MaxMind DB file") from exc
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise GeoError(f"{path}: cannot read GeoIP database: {reason}") from exc
        self.description = f"{path} ({metadata.database_type}, built {metadata.build_epoch})"

    def fields(self, address: Address) -> tuple[str, int | None, str, bool]:
        try:
            record = self._reader.get(address)
        except ValueError:  # an IPv6 address asked of an IPv4-only file
            record = None
        country, asn, asn_name = _mmdb_fields(record)
        return country, asn, asn_name, is_hosting_asn(asn, asn_name)

    def ipv4_pieces(self) -> Iterator[_Piece]:
        for network, record in self._reader:
            country, asn, asn_name = _mmdb_fields(record)
            if network.version == 4 and country:
                first, last = int(network.network_address), int(network.broadcast_address)
                yield first, last, country, is_hosting_asn(asn, asn_name)


def _mmdb_fields(record: object) -> tuple[str, int | None, str]:
    """(country, asn, asn_name) from a GeoLite2 Country and/or ASN record."""
    if not isinstance(record, dict):
        return "", None, ""
    country = _iso_of(record.get("country")) or _iso_of(record.get("registered_country"))
    asn = record.get("autonomous_system_number")
    asn_name = record.get("autonomous_system_organization")
    return (
        country,
        asn if isinstance(asn, int) else None,
        asn_name if isinstance(asn_name, str) else "",
    )


def _iso_of(place: object) -> str:
    code = place.get("iso_code") if isinstance(place, dict) else None
    return _iso_code(code) if isinstance(code, str) else ""
