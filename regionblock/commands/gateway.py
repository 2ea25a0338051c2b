"""``regionblock gateway SCENARIO ...``: the OpenAI-compatible gateway that enforces the scenario."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway.config import (
    GatewayConfig,
    Limits,
    UpstreamPolicy,
    admin_token_from,
    default_ledger_path,
    parse_country,
    parse_networks,
    parse_upstreams,
)
from regionblock.common import (
    add_scenario_arg,
    default_runs_dir,
    finite_number,
    listen_host,
    load_scenario,
    nonempty_path,
    nonempty_text,
    tcp_port,
    whole_number,
)
from scenarios.errors import UsageError
from scenarios.loader import Loaded

DESCRIPTION = """\
Serve an OpenAI-compatible API (POST /v1/chat/completions, GET /v1/models, /healthz, /readyz,
/metrics, /admin/*) that enforces the scenario's region policy at the gateway's clock time,
routes each model to the provider selling it (with retries, circuit breakers and the scenario's
failover rules), and meters every request into a SQLite ledger.

Client address: the TCP peer, or X-Forwarded-For walked right to left past --trusted-proxy
networks (nginx real_ip_recursive). Private and unknown addresses have no country by default,
so no policy stage applies to them (they are allowed); --unknown-country CC treats them as CC.

Ledger: one SQLite file per gateway process, runs/ledger-<pid>.sqlite unless --ledger is given.

API keys: --keys FILE maps hashed secrets to organisations (see README, "Hardening"); an unknown
key is OpenAI's 401 invalid_api_key. --insecure-org-keys also accepts an organisation id as its
own key (sk-<org id>): anyone can then claim any organisation. For tests, load tests, demos only.
"""


#: A timeout or cooldown: seconds, finite and above zero.
SECONDS = finite_number(above=0)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gateway", help="run the enforcing OpenAI-compatible gateway",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_scenario_arg(p)
    p.add_argument("--host", type=listen_host, default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; every interface: 0.0.0.0)")
    p.add_argument("--port", type=tcp_port(any_port=True), default=18080,
                   help="port to listen on (default 18080; 0: any)")
    p.add_argument("--upstream", action="append", default=[], metavar="NAME=URL",
                   help="where provider NAME is served (default http://127.0.0.1:BASE+i)")
    p.add_argument("--upstream-base-port", type=tcp_port(), default=18100, metavar="P",
                   help="provider i of the scenario is on P+i unless --upstream says (default 18100)")
    p.add_argument("--trusted-proxy", action="append", default=[], metavar="CIDR",
                   help="trust X-Forwarded-For (and CF-IPCountry) from these peers; repeatable")
    p.add_argument("--trust-cf-ipcountry", action="store_true",
                   help="take the country from CF-IPCountry when sent by a trusted proxy")
    p.add_argument("--unknown-country", metavar="CC", default="",
                   help="country for private/unknown addresses (default: none, i.e. allowed)")
    clock = p.add_mutually_exclusive_group()
    clock.add_argument("--clock", choices=["real"], help="scenario time is wall time (default)")
    clock.add_argument("--at", metavar="WHEN", help="pin scenario time at WHEN (date or ISO instant)")
    clock.add_argument("--compress", metavar="DURATION[@EPOCH]",
                       help="replay the scenario window over DURATION of wall time from EPOCH")
    p.add_argument("--ledger", type=nonempty_path, metavar="PATH",
                   help="SQLite ledger file (default runs/ledger-<pid>.sqlite)")
    p.add_argument("--ledger-sync", choices=["off", "normal", "full"], default="normal",
                   help="off: durable across a crash of the process, never fsyncs; normal (default): "
                        "also stays consistent across a power loss (fsync at WAL checkpoints); "
                        "full: fsync every commit, durable across a power loss")
    p.add_argument("--credit-scale", type=nonempty_path, metavar="FILE",
                   help="JSON object of organisation id to the fraction of its free-token credits "
                        "it gets (a load test's sampled users; written by regionblock loadtest)")
    p.add_argument("--geoip-db", type=nonempty_path, metavar="MMDB",
                   help="MaxMind MMDB file (default: the GeoLite2 data embedded in geoip2fast)")
    p.add_argument("--admin-token", metavar="TOKEN",
                   help="bearer token of the admin API (or env REGIONBLOCK_ADMIN_TOKEN; none: off)")
    keys = p.add_argument_group("API keys")
    keys.add_argument("--keys", type=nonempty_path, metavar="FILE",
                      help="key store: YAML/JSON list of {sha256, org, segment, home_region, "
                           "rate_per_s, burst, max_concurrent}; reload with POST /admin/keys/reload")
    keys.add_argument("--insecure-org-keys", action="store_true",
                      help="INSECURE: accept sk-<org id> as that organisation's key (anyone can "
                           "claim any organisation); for tests, load tests and demos")
    keys.add_argument("--hash-key", metavar="KEY", type=nonempty_text("the API key to hash"),
                      help="print the sha256 line of KEY for a --keys file, and exit")
    limits = p.add_argument_group("limits")
    limits.add_argument("--max-inflight", type=whole_number(
                            1, 1_000_000, why="each request in progress holds a client socket and "
                            "an upstream one"), default=1024, metavar="N",
                        help="requests in progress beyond N are answered 503 at once (default 1024)")
    limits.add_argument("--max-body", type=whole_number(1, 1 << 30, why="a body is held in memory whole "
                                          "(1 GiB)"), default=4 * 1024 * 1024, metavar="BYTES",
                        help="request body limit (default 4 MiB)")
    limits.add_argument("--header-timeout", type=SECONDS, default=10.0, metavar="S",
                        help="time allowed to send a request head (default 10)")
    limits.add_argument("--body-timeout", type=SECONDS, default=30.0, metavar="S",
                        help="time allowed to send a request body (default 30)")
    limits.add_argument("--upstream-timeout", type=SECONDS, default=60.0, metavar="S",
                        help="upstream response head / between body chunks (default 60); a "
                             "non-streamed answer also gets max_tokens / --min-tokens-per-s")
    limits.add_argument("--min-tokens-per-s", type=finite_number(above=0), default=20.0, metavar="R",
                        help="slowest generation rate the upstream timeout allows for (default 20)")
    limits.add_argument("--max-completion-tokens", type=whole_number(1, 10_000_000, why="no model "
                                          "writes that many tokens"), default=16384, metavar="N",
                        help="max_tokens above N is refused with 400, as providers do (default "
                             "16384)")
    limits.add_argument("--send-timeout", type=SECONDS, default=30.0, metavar="S",
                        help="a client that stops reading its response is cut off after S "
                             "(default 30)")
    limits.add_argument("--retries", type=whole_number(0, 10, why="each retry may wait out "
                                          "--upstream-timeout"), default=2, metavar="N",
                        help="retries on upstream 5xx or connection errors (default 2)")
    limits.add_argument("--breaker-failures", type=whole_number(1), default=5, metavar="N",
                        help="consecutive upstream failures that open its circuit (default 5)")
    limits.add_argument("--breaker-cooldown", type=SECONDS, default=10.0, metavar="S",
                        help="seconds an open circuit fails fast before a probe (default 10)")
    limits.add_argument("--drain-timeout", type=SECONDS, default=30.0, metavar="S",
                        help="on SIGTERM, time for in-flight requests to finish (default 30)")
    p.set_defaults(func=run)


def clock_spec(args: argparse.Namespace) -> str:
    if args.at:
        return f"at:{args.at}"
    if args.compress:
        return f"compress:{args.compress}"
    return "real"


def build_config(args: argparse.Namespace, loaded: Loaded) -> GatewayConfig:
    """The validated GatewayConfig for these arguments (UsageError naming the flag if not).

    Each value alone is parsed and bounded by its option's ``type=``; here what needs the
    scenario or another option."""
    if args.keys is None and not args.insecure_org_keys:
        raise UsageError("--keys: give a key file (--keys FILE), or --insecure-org-keys to accept "
                         "organisation ids as keys (tests and demos only)")
    base = args.upstream_base_port
    n = len(loaded.scenario.providers)
    if base + n - 1 > 65535:
        raise UsageError(f"--upstream-base-port: {base} leaves no room for the scenario's {n} "
                         f"providers (P..P+{n - 1} must lie in 1-65535)")
    return GatewayConfig(
        scenario_ref=args.scenario,
        scenario_overrides=tuple(args.overrides),
        host=args.host,
        port=args.port,
        upstreams=parse_upstreams(args.upstream, loaded.scenario, base_port=base),
        upstream_base_port=base,
        trusted_proxies=parse_networks(args.trusted_proxy, what="--trusted-proxy"),
        trust_cf_ipcountry=args.trust_cf_ipcountry,
        unknown_country=parse_country(args.unknown_country, what="--unknown-country")
        if args.unknown_country else "",
        clock=clock_spec(args),
        ledger_path=args.ledger or default_ledger_path(default_runs_dir()),
        ledger_sync=args.ledger_sync,
        credit_scales=credit_scales_from(args.credit_scale),
        geoip_db=args.geoip_db,
        admin_token=admin_token_from(args.admin_token),
        keys_path=args.keys,
        insecure_org_keys=args.insecure_org_keys,
        max_completion_tokens=args.max_completion_tokens,
        min_tokens_per_s=args.min_tokens_per_s,
        limits=Limits(max_body_bytes=args.max_body, header_timeout_s=args.header_timeout,
                      body_timeout_s=args.body_timeout, max_inflight=args.max_inflight,
                      drain_timeout_s=args.drain_timeout, send_timeout_s=args.send_timeout),
        upstream=UpstreamPolicy(response_timeout_s=args.upstream_timeout,
                                read_timeout_s=args.upstream_timeout, retries=args.retries,
                                breaker_failures=args.breaker_failures,
                                breaker_cooldown_s=args.breaker_cooldown),
    )


def credit_scales_from(path: Path | None) -> dict[str, float]:
    from scenarios.ledger import read_credit_scales

    try:
        return read_credit_scales(path) if path else {}
    except ValueError as exc:
        raise UsageError(f"--credit-scale: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from gateway.errors import LedgerError
    from gateway.keystore import KeyFileError, KeyStore, hash_key
    from gateway.server import run as serve
    from scenarios.clock import parse_clock

    if args.hash_key is not None:
        print(f"- sha256: {hash_key(args.hash_key)}")
        return 0
    loaded = load_scenario(args)
    config = build_config(args, loaded)
    if config.keys_path is not None:
        try:  # a bad key file is a usage error before anything listens
            KeyStore.load(config.keys_path)
        except KeyFileError as exc:
            raise UsageError(f"--keys: {exc}") from None
    window = loaded.scenario.window
    try:  # a bad --at/--compress is a usage error before anything listens
        parse_clock(config.clock, window_start=window.start, window_end=window.end, now_wall=0.0)
    except ValueError as exc:
        raise UsageError(f"--compress: {exc}") from None
    try:
        return serve(config, loaded, announce=lambda line: print(line, file=sys.stderr, flush=True))
    except LedgerError as exc:
        raise UsageError(f"--ledger: {exc}") from None
