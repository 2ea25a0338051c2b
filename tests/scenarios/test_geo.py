"""Tests for scenarios.geo: lookups, hosting heuristic, sampling a country's addresses, MMDB files.

Expected values come from the GeoLite2 data (2024-06-18) embedded in geoip2fast 1.2.2.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scenarios.errors import GeoError
from scenarios.geo import Geo, IpInfo, default_geo, is_hosting_asn


@pytest.fixture(scope="module")
def geo() -> Geo:
    return default_geo()


# --- lookups on the embedded data -----------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("114.114.114.114", IpInfo("114.114.114.114", "CN", None, "ZEN-ECN", False, False)),
        ("8.8.8.8", IpInfo("8.8.8.8", "US", 15169, "GOOGLE", True, False)),
        # GeoLite2 places Cloudflare's resolver in Australia, where APNIC registered 1.1.1.0/24.
        ("1.1.1.1", IpInfo("1.1.1.1", "AU", 13335, "CLOUDFLARENET", True, False)),
        ("10.0.0.1", IpInfo("10.0.0.1", "", None, "", False, True)),
        # Known cloud ranges: Alibaba Cloud in China and abroad, AWS in Singapore.
        (
            "47.96.0.1",
            IpInfo("47.96.0.1", "CN", 37963, "Hangzhou Alibaba Advertising Co.,Ltd.", True, False),
        ),
        (
            "47.74.0.1",
            IpInfo("47.74.0.1", "JP", 45102, "Alibaba US Technology Co., Ltd.", True, False),
        ),
        ("52.220.0.1", IpInfo("52.220.0.1", "SG", 16509, "AMAZON-02", True, False)),
        ("159.69.0.1", IpInfo("159.69.0.1", "DE", 24940, "Hetzner Online GmbH", True, False)),
        ("175.45.176.1", IpInfo("175.45.176.1", "KP", None, "Ryugyong-dong", False, False)),
        # geoip2fast's own lookup() calls Andorra "private" (an off-by-one in its reserved-code
        # check on the IPv4 files); reading the data ourselves must not inherit that.
        ("5.62.60.6", IpInfo("5.62.60.6", "AD", None, "AVAST Software s.r.o.", False, False)),
        # IPv6, and an IPv4 client seen through a dual-stack socket (normalised to IPv4).
        (
            "2001:4860:4860::8888",
            IpInfo("2001:4860:4860::8888", "US", 15169, "GOOGLE", True, False),
        ),
        ("::ffff:8.8.4.4", IpInfo("8.8.4.4", "US", 15169, "GOOGLE", True, False)),
        ("2001:4860:4860:0::8888", IpInfo("2001:4860:4860::8888", "US", 15169, "GOOGLE", True, False)),
    ],
)
def test_lookup_known_addresses(geo: Geo, ip: str, expected: IpInfo) -> None:
    assert geo.lookup(ip) == expected


@pytest.mark.parametrize(
    "ip",
    [
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "127.0.0.1",
        "169.254.1.1",
        "100.64.0.1",  # shared address space (CGNAT)
        "0.0.0.0",
        "192.0.2.1",
        "198.51.100.7",
        "203.0.113.9",
        "198.18.0.1",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "fec0::1",
        "2001:db8::1",
    ],
)
def test_lookup_private_addresses(geo: Geo, ip: str) -> None:
    info = geo.lookup(ip)
    assert (info.country, info.asn, info.asn_name, info.hosting, info.private) == (
        "",
        None,
        "",
        False,
        True,
    )


@pytest.mark.parametrize(
    "junk",
    ["not-an-ip", "", "1.2.3", "256.1.1.1", "01.2.3.4", " 1.2.3.4", "1.2.3.4/24", "1.2.3.4\x00", "::g"],
)
def test_lookup_rejects_junk_with_exact_message(geo: Geo, junk: str) -> None:
    with pytest.raises(GeoError, match=f"^{re.escape(repr(junk))}: not an IP address$"):
        geo.lookup(junk)


def test_lookup_rejects_non_strings(geo: Geo) -> None:
    with pytest.raises(GeoError, match=r"^167772161: not an IP address$"):
        geo.lookup(167772161)  # type: ignore[arg-type]


def test_lookup_results_are_cached(geo: Geo) -> None:
    assert geo.lookup("114.114.114.114") is geo.lookup("114.114.114.114")


def test_default_geo_is_one_per_process() -> None:
    assert default_geo() is default_geo()


def test_source_names_the_embedded_data(geo: Geo) -> None:
    assert geo.source == ("geoip2fast embedded data (MAXMIND:GeoLite2-CountryASN-IPv4IPv6-en-20240618)")


def _reference_private(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    return not address.is_global or address.is_multicast or address.is_reserved


@settings(max_examples=2000, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_private_flag_agrees_with_ipaddress(value: int) -> None:
    # The hot path skips ipaddress for first octets outside the special-purpose blocks;
    # it must agree with ipaddress everywhere.
    ip = str(ipaddress.IPv4Address(value))
    assert default_geo().lookup(ip).private == _reference_private(ip)


@pytest.mark.parametrize("octet", range(256))
def test_private_flag_agrees_with_ipaddress_in_every_slash8(octet: int) -> None:
    rng = np.random.default_rng(octet)
    for low in rng.integers(0, 2**24, size=64).tolist():
        ip = str(ipaddress.IPv4Address((octet << 24) | low))
        assert default_geo().lookup(ip).private == _reference_private(ip), ip


# --- the hosting heuristic ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asn", "name", "expected"),
    [
        (16509, "", True),  # AWS by number
        (None, "AMAZON-02", True),  # AWS by its GeoLite2 name
        (8075, "MICROSOFT-CORP-MSN-AS-BLOCK", True),
        (45102, "Alibaba US Technology Co., Ltd.", True),
        (None, "Hangzhou Alibaba Advertising Co.,Ltd.", True),
        (None, "Cloudflare, Inc.", True),  # "cloud" as a word prefix
        (None, "Example Hosting Ltd", True),
        (None, "OOO Network of data-centers Selectel", True),
        (None, "Some Data Center GmbH", True),
        (None, "UK Dedicated Servers Limited", True),
        (None, "Tiny VPS Co", True),
        (None, "Colo Crossing", True),
        (None, "Wasserversorgung Bayerischer Wald", False),  # "server" inside a word
        (7018, "ATT-INTERNET4", False),
        (4134, "CHINANET-BACKBONE", False),
        (None, "ZEN-ECN", False),
        (None, "", False),
    ],
)
def test_is_hosting_asn(asn: int | None, name: str, expected: bool) -> None:
    assert is_hosting_asn(asn, name) is expected


# --- sampling a country's addresses ----------------------------------------------------------

COUNTRIES = [
    "CN", "HK", "MO", "RU", "BY", "IR", "KP", "SY", "CU", "VE", "US",
    "SG", "JP", "DE", "GB", "IN", "BR", "KR", "TW", "AU", "FR", "CA",
]  # fmt: skip
# Countries the embedded data has no network for: none of ours (even KP has a few /24s).
COUNTRIES_WITHOUT_NETWORKS: frozenset[str] = frozenset()
# Every country above has at least one hosting range (GeoLite2 even places Cloudflare and
# Oracle ranges in Cuba, Syria and North Korea), so none is expected to fail with hosting=True.
COUNTRIES_WITHOUT_HOSTING: frozenset[str] = frozenset()


@pytest.mark.parametrize("country", COUNTRIES)
def test_sample_ips_round_trips(geo: Geo, country: str) -> None:
    if country in COUNTRIES_WITHOUT_NETWORKS:
        with pytest.raises(GeoError):
            geo.sample_ips(country, 10, np.random.default_rng(0))
        return
    ips = geo.sample_ips(country, 300, np.random.default_rng(7))
    assert len(ips) == 300
    for ip in ips:
        info = geo.lookup(ip)
        assert (info.country, info.private) == (country, False), ip
        assert ipaddress.ip_address(ip).version == 4
        assert not ip.endswith((".0", ".255")), ip


@pytest.mark.parametrize("country", COUNTRIES)
def test_sample_hosting_ips_round_trips(geo: Geo, country: str) -> None:
    if country in COUNTRIES_WITHOUT_HOSTING:
        with pytest.raises(GeoError, match="no hosting networks"):
            geo.sample_ips(country, 10, np.random.default_rng(0), hosting=True)
        return
    for ip in geo.sample_ips(country, 100, np.random.default_rng(11), hosting=True):
        info = geo.lookup(ip)
        assert (info.country, info.hosting, info.private) == (country, True, False), ip


@pytest.mark.parametrize("country", ["CN", "HK", "RU", "SG"])
def test_isp_samples_leave_out_the_hosting_networks(geo: Geo, country: str) -> None:
    # uniform draws over HK's space fall on a hosting network about one time in five, SG's one in
    # three: an organisation's home address must not (the detection reads hosting as a relay)
    uniform = geo.sample_ips(country, 400, np.random.default_rng(5))
    assert any(geo.lookup(ip).hosting for ip in uniform)
    for ip in geo.sample_ips(country, 400, np.random.default_rng(5), isp=True):
        info = geo.lookup(ip)
        assert (info.country, info.hosting, info.private) == (country, False, False), ip
    with pytest.raises(ValueError, match="not both hosting and isp"):
        geo.sample_ips(country, 1, np.random.default_rng(5), hosting=True, isp=True)


@pytest.mark.parametrize("country", ["US", "SG", "JP", "DE"])
def test_hosting_samples_come_from_several_clouds(geo: Geo, country: str) -> None:
    names = {
        geo.lookup(ip).asn_name for ip in geo.sample_ips(country, 500, np.random.default_rng(3), hosting=True)
    }
    assert len(names) >= 3, names


def test_sample_ips_is_deterministic_for_a_seed(geo: Geo) -> None:
    first = geo.sample_ips("CN", 200, np.random.default_rng(42))
    again = geo.sample_ips("CN", 200, np.random.default_rng(42))
    other = geo.sample_ips("CN", 200, np.random.default_rng(43))
    assert first == again
    assert first != other


def test_sample_ips_draws_distinct_public_addresses(geo: Geo) -> None:
    # 2,000 draws over the 1.5 billion US addresses: a repeat would point at a sampling bug.
    ips = geo.sample_ips("US", 2000, np.random.default_rng(5))
    assert len(set(ips)) == len(ips)


def test_sample_ips_edge_cases(geo: Geo) -> None:
    assert geo.sample_ips("US", 0, np.random.default_rng(0)) == []
    with pytest.raises(ValueError, match=r"^n \(-1\) must not be negative$"):
        geo.sample_ips("US", -1, np.random.default_rng(0))


@pytest.mark.parametrize("country", ["XX", "cn", ""])
def test_sample_ips_unknown_country(geo: Geo, country: str) -> None:
    expected = f"{country!r}: no networks for this country in {geo.source}"
    with pytest.raises(GeoError, match=f"^{re.escape(expected)}$"):
        geo.sample_ips(country, 5, np.random.default_rng(0))


def test_sample_50000_addresses(geo: Geo) -> None:
    # how fast: benchmarks/bench_policy.py (Geo.sample_ips, target <= 3 s), not a timed test
    ips = geo.sample_ips("CN", 50_000, np.random.default_rng(0))
    assert len(ips) == 50_000
    assert all(geo.lookup(ip).country == "CN" for ip in ips)
    assert not any(ip.endswith((".0", ".255")) for ip in ips)
    assert ips[:100] == geo.sample_ips("CN", 100, np.random.default_rng(0))  # the same first draws


# --- MaxMind DB files ------------------------------------------------------------------------
# maxminddb only reads, so the test writes its own tiny file with the minimal writer below
# (format: https://maxmind.github.io/MaxMind-DB/): an IPv4 search tree of 24-bit records,
# 16 zero bytes, the data section, then the metadata marker and metadata map.

_U16, _U32, _U64 = 5, 6, 9  # MaxMind DB type numbers for typed unsigned integers


def _control(type_number: int, size: int) -> bytes:
    assert size < 285  # enough for this test: sizes 29..284 take one extra byte
    size_bits, size_bytes = (size, b"") if size < 29 else (29, bytes([size - 29]))
    if type_number <= 7:
        return bytes([(type_number << 5) | size_bits]) + size_bytes
    # An extended type: type 0 in the control byte, the real type (minus 7) in the next one.
    return bytes([size_bits, type_number - 7]) + size_bytes


def _encode(value: object) -> bytes:
    if isinstance(value, str):
        payload = value.encode()
        return _control(2, len(payload)) + payload
    if isinstance(value, tuple):  # (type number, unsigned integer)
        type_number, number = value
        payload = number.to_bytes((number.bit_length() + 7) // 8, "big")
        return _control(type_number, len(payload)) + payload
    if isinstance(value, dict):
        body = b"".join(_encode(k) + _encode(v) for k, v in value.items())
        return _control(7, len(value)) + body
    if isinstance(value, list):
        return _control(11, len(value)) + b"".join(_encode(item) for item in value)
    raise TypeError(value)


def _tree_path(cidr: str, ip_version: int) -> list[int] | None:
    """The bits leading to a network in the search tree; IPv4 sits at ::/96 in an IPv6 tree."""
    network = ipaddress.ip_network(cidr)
    if network.version > ip_version:
        return None
    width = 128 if ip_version == 6 else 32
    prefix = network.prefixlen + width - network.max_prefixlen
    return [(int(network.network_address) >> (width - 1 - i)) & 1 for i in range(prefix)]


def _write_mmdb(path: Path, records: dict[str, dict[str, object]], ip_version: int) -> None:
    data = b""
    root: list[object] = [None, None]
    for cidr, record in records.items():
        bits = _tree_path(cidr, ip_version)
        if bits is None:
            continue  # an IPv6 network has no place in an IPv4 tree
        leaf = ("data", len(data))
        data += _encode(record)
        node = root
        for bit in bits[:-1]:
            if node[bit] is None:
                node[bit] = [None, None]
            node = node[bit]  # type: ignore[assignment]
        node[bits[-1]] = leaf
    nodes: list[list[object]] = [root]
    for node in nodes:  # breadth first: grows while we walk it
        nodes.extend(child for child in node if isinstance(child, list))
    index = {id(node): i for i, node in enumerate(nodes)}

    def record_value(child: object) -> int:
        if child is None:
            return len(nodes)  # empty
        if isinstance(child, tuple):
            return len(nodes) + 16 + child[1]
        return index[id(child)]

    tree = b"".join(
        struct.pack(">I", record_value(node[0]))[1:] + struct.pack(">I", record_value(node[1]))[1:]
        for node in nodes
    )
    metadata = {
        "node_count": (_U32, len(nodes)),
        "record_size": (_U16, 24),
        "ip_version": (_U16, ip_version),
        "database_type": "Test-Country-ASN",
        "languages": ["en"],
        "binary_format_major_version": (_U16, 2),
        "binary_format_minor_version": (_U16, 0),
        "build_epoch": (_U64, 1718668800),
        "description": {"en": "regionblock test database"},
    }
    path.write_bytes(tree + bytes(16) + data + b"\xab\xcd\xefMaxMind.com" + _encode(metadata))


@pytest.fixture(params=[4, 6], ids=["ipv4-tree", "ipv6-tree"])
def mmdb(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    path = tmp_path / f"test-ipv{request.param}.mmdb"
    _write_mmdb(
        path,
        {
            # A combined Country + ASN record: an Alibaba Cloud range in China.
            "1.2.3.0/24": {
                "country": {"iso_code": "CN", "names": {"en": "China"}},
                "registered_country": {"iso_code": "CN"},
                "autonomous_system_number": (_U32, 37963),
                "autonomous_system_organization": "Hangzhou Alibaba Advertising Co.,Ltd.",
            },
            # A GeoLite2-Country record with only the registered country.
            "5.6.0.0/16": {"registered_country": {"iso_code": "DE"}},
            # A consumer ISP.
            "9.9.9.0/24": {
                "country": {"iso_code": "US"},
                "autonomous_system_number": (_U32, 7018),
                "autonomous_system_organization": "ATT-INTERNET4",
            },
            # Two French ranges, one twice the size of the other.
            "7.7.7.0/24": {"country": {"iso_code": "FR"}},
            "7.7.8.0/23": {"country": {"iso_code": "FR"}},
            # A GeoLite2-ASN record: no country at all.
            "20.0.0.0/8": {
                "autonomous_system_number": (_U32, 8075),
                "autonomous_system_organization": "MICROSOFT-CORP-MSN-AS-BLOCK",
            },
            # Only in the IPv6 tree.
            "2001:4860::/32": {
                "country": {"iso_code": "US"},
                "autonomous_system_number": (_U32, 15169),
                "autonomous_system_organization": "GOOGLE",
            },
        },
        ip_version=request.param,
    )
    return path


def test_mmdb_lookups(mmdb: Path) -> None:
    geo = Geo(mmdb)
    assert geo.source == f"{mmdb} (Test-Country-ASN, built 1718668800)"
    assert geo.lookup("1.2.3.4") == IpInfo(
        "1.2.3.4", "CN", 37963, "Hangzhou Alibaba Advertising Co.,Ltd.", True, False
    )
    assert geo.lookup("5.6.7.8") == IpInfo("5.6.7.8", "DE", None, "", False, False)
    assert geo.lookup("9.9.9.9") == IpInfo("9.9.9.9", "US", 7018, "ATT-INTERNET4", False, False)
    assert geo.lookup("20.1.2.3") == IpInfo("20.1.2.3", "", 8075, "MICROSOFT-CORP-MSN-AS-BLOCK", True, False)
    assert geo.lookup("8.8.8.8") == IpInfo("8.8.8.8", "", None, "", False, False)
    assert geo.lookup("10.1.1.1") == IpInfo("10.1.1.1", "", None, "", False, True)
    # An IPv6 address asked of an IPv4-only database is simply unknown.
    google = IpInfo("2001:4860::1", "US", 15169, "GOOGLE", True, False)
    unknown = IpInfo("2001:4860::1", "", None, "", False, False)
    assert geo.lookup("2001:4860::1") == (google if "ipv6" in mmdb.name else unknown)


def test_mmdb_sampling(mmdb: Path) -> None:
    geo = Geo(mmdb)
    rng = np.random.default_rng(1)
    cn = geo.sample_ips("CN", 50, rng, hosting=True)
    assert all(ipaddress.IPv4Address(ip) in ipaddress.IPv4Network("1.2.3.0/24") for ip in cn)
    assert not any(ip in ("1.2.3.0", "1.2.3.255") for ip in cn)
    de = geo.sample_ips("DE", 50, rng)
    assert {geo.lookup(ip).country for ip in de} == {"DE"}
    us = geo.sample_ips("US", 5, rng)
    assert {geo.lookup(ip).asn for ip in us} == {7018}
    expected = f"'US': no hosting networks for this country in {geo.source}"
    with pytest.raises(GeoError, match=f"^{re.escape(expected)}$"):
        geo.sample_ips("US", 5, rng, hosting=True)
    with pytest.raises(GeoError, match=r"^'JP': no networks for this country"):
        geo.sample_ips("JP", 5, rng)


def test_mmdb_sampling_weights_ranges_by_size(mmdb: Path) -> None:
    ips = Geo(mmdb).sample_ips("FR", 3000, np.random.default_rng(2))
    in_larger = sum(ipaddress.IPv4Address(ip) in ipaddress.IPv4Network("7.7.8.0/23") for ip in ips)
    # 508 of the 762 usable addresses (x.x.x.0 and .255 are skipped) are in the /23: expect
    # 2000 of 3000, standard deviation 26; allow four of them either way.
    assert 1896 < in_larger < 2104


def test_mmdb_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.mmdb"
    expected = f"{path}: cannot read GeoIP database: No such file or directory"
    with pytest.raises(GeoError, match=f"^{re.escape(expected)}$"):
        Geo(path)


@pytest.mark.parametrize("content", [b"", b"not a maxmind database at all"])
def test_mmdb_invalid_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "junk.mmdb"
    path.write_bytes(content)
    expected = f"{path}: cannot read GeoIP database: not a MaxMind DB file"
    with pytest.raises(GeoError, match=f"^{re.escape(expected)}$"):
        Geo(str(path))


def test_mmdb_directory(tmp_path: Path) -> None:
    expected = f"{tmp_path}: cannot read GeoIP database: not a MaxMind DB file"
    with pytest.raises(GeoError, match=f"^{re.escape(expected)}$"):
        Geo(tmp_path)
