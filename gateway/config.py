"""The gateway's configuration: one validated, immutable value object built from CLI flags.

Every value is checked where it is built (``parse_*`` helpers raise ``UsageError`` naming the flag
and the bad value), so the rest of the gateway never re-validates.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from scenarios.countries import ISO_ALPHA2
from scenarios.errors import UsageError
from scenarios.schema import Scenario

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Provider i of the scenario listens on DEFAULT_UPSTREAM_BASE_PORT + i (``regionblock upstreams``).
DEFAULT_UPSTREAM_BASE_PORT = 18100
DEFAULT_PORT = 18080
ADMIN_TOKEN_ENV = "REGIONBLOCK_ADMIN_TOKEN"


@dataclass(frozen=True, slots=True)
class UpstreamUrl:
    """Where one provider's OpenAI-compatible API is: ``http://host:port[/prefix]``."""

    host: str
    port: int
    prefix: str = ""

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.prefix}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Hardening limits: sizes, timeouts and the admission limit."""

    max_body_bytes: int = 4 * 1024 * 1024
    max_header_bytes: int = 16 * 1024
    max_headers: int = 100
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keepalive_timeout_s: float = 75.0
    send_timeout_s: float = 30.0  # a response the client stops reading must drain within this
    max_inflight: int = 1024  # requests in progress beyond this are refused at once (503)
    drain_timeout_s: float = 30.0  # graceful shutdown: how long in-flight requests may finish


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamPolicy:
    """Timeouts, retries and the circuit breaker for calls to upstream providers."""

    connect_timeout_s: float = 5.0
    response_timeout_s: float = 60.0  # until the response headers (time to first byte)
    read_timeout_s: float = 60.0  # between two chunks of a body or stream
    retries: int = 2  # extra attempts on 5xx / connection errors, before anything reached the client
    breaker_failures: int = 5  # consecutive failures that open the circuit
    breaker_cooldown_s: float = 10.0  # open circuit: fail fast for this long, then one probe
    pool_size: int = 512  # idle keep-alive connections kept per upstream


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayConfig:
    """Everything ``regionblock gateway`` was told, validated."""

    scenario_ref: str = ""  # SCENARIO as given (name or path): what a reload loads by default
    scenario_overrides: tuple[str, ...] = ()  # its --set overrides, reapplied by such a reload
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    upstreams: dict[str, UpstreamUrl] = field(default_factory=dict)
    upstream_base_port: int = DEFAULT_UPSTREAM_BASE_PORT  # for providers added by a reload
    trusted_proxies: tuple[Network, ...] = ()
    trust_cf_ipcountry: bool = False
    unknown_country: str = ""  # "" = private/unknown addresses have no country: no stage applies
    clock: str = "real"  # a parse_clock spec: real | at:WHEN | compress:DURATION[@EPOCH]
    ledger_path: Path = Path("runs/ledger")
    ledger_sync: str = "normal"  # normal: durable across a process crash; full: across power loss
    credit_scales: dict[str, float] = field(default_factory=dict)  # org → free-token credit scale
    geoip_db: Path | None = None
    admin_token: str = ""  # "" = admin API disabled
    relay_memory: int = 100_000  # organisations remembered for relay_since (LRU)
    keys_path: Path | None = None  # --keys FILE: the key store (hashed secrets → organisations)
    insecure_org_keys: bool = False  # also accept an org id as the key (tests, load tests, demo)
    max_completion_tokens: int = 16_384  # max_tokens above this: 400, as a provider answers
    min_tokens_per_s: float = 20.0  # slowest generation the upstream timeout allows for
    limits: Limits = Limits()
    upstream: UpstreamPolicy = UpstreamPolicy()


def parse_upstream_url(text: str, *, what: str) -> UpstreamUrl:
    parts = urlsplit(text.strip())
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"{what}: {text!r} has a bad port") from None
    if parts.scheme != "http" or not parts.hostname:
        raise UsageError(f"{what}: {text!r} is not an http://HOST:PORT URL (https is not supported)")
    if port == 0:  # not "no port" (which means 80): port 0 is never connectable
        raise UsageError(f"{what}: {text!r} has a bad port")
    if parts.query or parts.fragment:
        raise UsageError(f"{what}: {text!r} must not carry a query or fragment")
    prefix = parts.path.rstrip("/")
    if prefix.endswith("/v1"):
        prefix = prefix[:-3]  # accept an OpenAI-style base URL that already ends in /v1
    return UpstreamUrl(parts.hostname, port or 80, prefix)


def parse_upstreams(pairs: list[str], scenario: Scenario, *, base_port: int,
                    host: str = "127.0.0.1") -> dict[str, UpstreamUrl]:
    """Every provider's upstream: ``--upstream NAME=URL`` or the mock upstream's default port."""
    names = [p.name for p in scenario.providers]
    out = {name: UpstreamUrl(host, base_port + i) for i, name in enumerate(names)}
    for pair in pairs:
        name, eq, url = pair.partition("=")
        if not eq:
            raise UsageError(f"--upstream: {pair!r} is not NAME=URL")
        if name not in out:
            raise UsageError(f"--upstream: unknown provider {name!r} (scenario has: {', '.join(names)})")
        out[name] = parse_upstream_url(url, what=f"--upstream {name}")
    return out


def parse_networks(items: list[str], *, what: str) -> tuple[Network, ...]:
    nets: list[Network] = []
    for item in items:
        try:
            nets.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise UsageError(f"{what}: {item!r} is not an IP address or CIDR") from None
    return tuple(nets)


def parse_country(text: str, *, what: str) -> str:
    """An assigned ISO 3166-1 alpha-2 code (``XX``, two letters that name no country, is refused:
    the policy would match no stage on it and treat such clients as allowed without a word)."""
    code = text.strip().upper()
    if code not in ISO_ALPHA2:
        raise UsageError(f"{what}: {text!r} is not an ISO 3166-1 alpha-2 country code")
    return code


def parse_port(value: int, *, what: str) -> int:
    if not 0 <= value <= 65535:
        raise UsageError(f"{what}: {value} is not a TCP port (0-65535)")
    return value


def default_ledger_path(runs: Path) -> Path:
    """One shard per process: ``runs/ledger-<pid>.sqlite``."""
    return runs / f"ledger-{os.getpid()}.sqlite"


def admin_token_from(flag: str | None) -> str:
    """The admin token: ``--admin-token`` or the environment variable; "" disables the API."""
    return (flag if flag is not None else os.environ.get(ADMIN_TOKEN_ENV, "")).strip()
