"""Client address and region: X-Forwarded-For past trusted proxies, CF-IPCountry, unknown addresses."""

from __future__ import annotations

import pytest

from gateway.client_address import AddressResolver, ClientAddress
from gateway.config import parse_networks
from gateway.region import RegionResolver
from scenarios.geo import default_geo
from scenarios.policy import OPENAI_403_BODY
from tests.gateway.conftest import CN_IP, CN_KEY, SG_HOSTING_IP, US_IP, StartGateway

TRUSTED = parse_networks(["127.0.0.1/32", "10.0.0.0/8"], what="test")


@pytest.mark.parametrize(("peer", "xff", "expected"), [
    ("127.0.0.1", None, ClientAddress("127.0.0.1", True)),
    ("127.0.0.1", "1.2.4.8", ClientAddress("1.2.4.8", True)),
    # walked right to left past trusted hops; the first untrusted is the client
    ("127.0.0.1", "73.0.0.1, 1.2.4.8, 10.1.1.1", ClientAddress("1.2.4.8", True)),
    # the client cannot hide behind a spoofed leftmost entry
    ("10.0.0.5", "1.2.4.8, 73.0.0.1", ClientAddress("73.0.0.1", True)),
    # every hop trusted: the leftmost
    ("127.0.0.1", "10.0.0.1, 10.0.0.2", ClientAddress("10.0.0.1", True)),
    # garbage stops the walk at the last good address
    ("127.0.0.1", "1.2.4.8, not-an-ip, 10.0.0.3", ClientAddress("10.0.0.3", True)),
    # ports and IPv4-mapped IPv6 are normalised
    ("::ffff:127.0.0.1", "73.0.0.1:4711", ClientAddress("73.0.0.1", True)),
    ("127.0.0.1", "[2001:db8::1]:80", ClientAddress("2001:db8::1", True)),
    # an untrusted peer's header is ignored entirely
    ("203.0.113.9", "1.2.4.8", ClientAddress("203.0.113.9", False)),
])
def test_forwarded_for_walk(peer: str, xff: str | None, expected: ClientAddress) -> None:
    assert AddressResolver(TRUSTED).resolve(peer, xff) == expected


def test_no_trusted_proxies_means_the_peer() -> None:
    assert AddressResolver(()).resolve("127.0.0.1", "1.2.4.8") == ClientAddress("127.0.0.1", False)


def test_regions_from_geo() -> None:
    regions = RegionResolver(default_geo())
    cn = regions.resolve(CN_IP, peer_trusted=True, cf_country=None)
    assert (cn.country, cn.asn_class, cn.hosting) == ("CN", "isp", False)
    sg = regions.resolve(SG_HOSTING_IP, peer_trusted=True, cf_country=None)
    assert (sg.country, sg.asn, sg.asn_class, sg.hosting) == ("SG", 16509, "hosting", True)
    local = regions.resolve("127.0.0.1", peer_trusted=False, cf_country=None)
    assert (local.country, local.asn_class) == ("", "private")


def test_cf_ipcountry_only_when_enabled_and_trusted() -> None:
    off = RegionResolver(default_geo())
    on = RegionResolver(default_geo(), trust_cf_ipcountry=True)
    assert off.resolve(US_IP, peer_trusted=True, cf_country="CN").country == "US"
    assert on.resolve(US_IP, peer_trusted=False, cf_country="CN").country == "US"
    assert on.resolve(US_IP, peer_trusted=True, cf_country="cn").country == "CN"
    assert on.resolve(US_IP, peer_trusted=True, cf_country="XX").country == "US"


async def test_untrusted_peer_cannot_change_the_decision_with_headers(
        start_gateway: StartGateway) -> None:
    # The peer (127.0.0.1) is not trusted here, and unknown addresses count as US.
    gw = await start_gateway(trusted_proxies=(), unknown_country="US", trust_cf_ipcountry=True)
    for headers in ({"X-Forwarded-For": CN_IP}, {"CF-IPCountry": "CN"},
                    {"X-Forwarded-For": CN_IP, "CF-IPCountry": "CN"}):
        status, h, _ = await gw.chat(ip=None, key=CN_KEY, headers=headers)
        assert status == 200
        row = gw.row(h["x-request-id"])
        assert (row["country"], row["asn_class"], row["decision"]) == ("US", "private", "allow")


async def test_untrusted_peer_cannot_escape_a_block_with_headers(start_gateway: StartGateway) -> None:
    gw = await start_gateway(trusted_proxies=(), unknown_country="CN")
    status, _, body = await gw.chat(ip=None, key=CN_KEY, headers={"X-Forwarded-For": US_IP,
                                                                  "CF-IPCountry": "US"})
    assert (status, body) == (403, OPENAI_403_BODY)


async def test_trusted_cf_ipcountry_decides(start_gateway: StartGateway) -> None:
    gw = await start_gateway(trust_cf_ipcountry=True)
    status, _, _ = await gw.chat(ip=US_IP, key=CN_KEY, headers={"CF-IPCountry": "HK"})
    assert status == 403


async def test_private_address_default_is_allowed_without_country(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    status, h, _ = await gw.chat(ip="192.168.1.20", key=CN_KEY)
    assert status == 200
    row = gw.row(h["x-request-id"])
    assert (row["country"], row["asn_class"]) == ("", "private")


async def test_relay_via_header_from_trusted_peer_is_path_relay(start_gateway: StartGateway) -> None:
    gw = await start_gateway(clock="at:2024-07-12")  # after the block, before detection starts
    status, h, _ = await gw.chat(ip=SG_HOSTING_IP, key=CN_KEY,
                                 headers={"Via": "1.1 regionblock-relay"})
    assert status == 200
    row = gw.row(h["x-request-id"])
    assert (row["path"], row["country"], row["asn"], row["asn_class"]) == (
        "relay", "SG", 16509, "hosting")
    assert gw.gateway.relays.get("cn-startup-000001") is not None
