"""``regionblock policy explain SCENARIO --at WHEN (--ip IP | --country CC) [--org ID] [--json]``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from regionblock.common import add_scenario_arg, load_scenario, nonempty_path, nonempty_text
from scenarios.clock import format_instant, parse_when
from scenarios.errors import GeoError, UsageError
from scenarios.geo import Geo, IpInfo, default_geo
from scenarios.policy import Decision, Policy, PolicyRequest, response_json
from scenarios.population import parse_org_id
from scenarios.schema import Scenario

DEFAULT_ORG = "example-org"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("policy", help="explain the policy's decision for a request",
                       description="Ask the policy engine what it decides, and why.")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    e = actions.add_parser("explain", help="the decision, stage, reason and exact response")
    add_scenario_arg(e)
    e.add_argument("--at", required=True, metavar="WHEN", help="a date or ISO-8601 instant (UTC)")
    who = e.add_mutually_exclusive_group(required=True)
    who.add_argument("--ip", help="the client's IP address (resolved with the GeoIP data)")
    who.add_argument("--country", metavar="CC", help="the client's ISO 3166-1 alpha-2 country")
    e.add_argument("--org", default=DEFAULT_ORG, metavar="ID", type=nonempty_text("an organisation id"),
                   help="organisation id, e.g. cn-startup-000042 (its bucket decides percentage "
                        "rollouts; its id gives its home region and segment)")
    e.add_argument("--provider", metavar="NAME", help="provider asked (default: the incumbent)")
    e.add_argument("--geoip-db", metavar="MMDB", type=nonempty_path,
                   help="a MaxMind MMDB file instead of the embedded data")
    e.add_argument("--json", action="store_true", help="machine-readable output")
    e.set_defaults(func=run_explain)


def _client(args: argparse.Namespace) -> IpInfo:
    if args.ip is not None:
        geo = Geo(args.geoip_db) if args.geoip_db else default_geo()
        try:
            return geo.lookup(args.ip)
        except GeoError as exc:
            raise UsageError(f"--ip: {exc}") from None
    cc = args.country.strip().upper()
    from scenarios.countries import ISO_ALPHA2

    if cc not in ISO_ALPHA2:
        raise UsageError(f"--country: {args.country!r} is not an ISO 3166-1 alpha-2 code")
    return IpInfo(ip="", country=cc, asn=None, asn_name="", hosting=False, private=False)


def _provider(s: Scenario, name: str | None) -> str:
    if name is None:
        return s.incumbent.name
    if name not in {p.name for p in s.providers}:
        known = ", ".join(p.name for p in s.providers)
        raise UsageError(f"--provider: unknown provider {name!r} (this scenario has: {known})")
    return name


def run_explain(args: argparse.Namespace) -> int:
    loaded = load_scenario(args)
    s = loaded.scenario
    at = parse_when(args.at, what="--at")
    client = _client(args)
    home = parse_org_id(args.org)
    request = PolicyRequest(provider=_provider(s, args.provider), country=client.country,
                            org=args.org, segment=home[1] if home else "",
                            home_country=home[0] if home else "", hosting=client.hosting,
                            asn=client.asn)
    decision = Policy(s).decide(at, request)
    if args.json:
        print(json.dumps(_as_json(at, client, request, decision), indent=2))
    else:
        print(_as_text(at, client, request, decision))
    return 0


def _client_text(c: IpInfo) -> str:
    if not c.ip:
        return c.country
    kind = "private" if c.private else ("hosting" if c.hosting else "isp")
    asn = f"AS{c.asn} {c.asn_name}".strip() if c.asn else "no ASN"
    return f"{c.country or 'unknown'} ({c.ip}, {asn}, {kind})"


def _as_text(at: Any, client: IpInfo, req: PolicyRequest, d: Decision) -> str:
    lines = [
        f"decision  {d.action}",
        f"stage     {d.stage or '-'}",
        f"reason    {d.reason}",
        f"request   provider {req.provider} · client {_client_text(client)} · org {req.org} · "
        f"at {format_instant(at)}",
    ]
    for name, value in d.headers:
        lines.append(f"header    {name}: {value}")
    if d.response is None:
        extra = " (with the headers above)" if d.headers else ""
        lines.append(f"response  forwarded to the provider{extra}")
    else:
        lines.append(f"response  HTTP {d.response.status}")
        lines += [f"          {k}: {v}" for k, v in d.response.headers]
        lines += [f"          {line}" for line in d.response.body.decode("utf-8", "replace").splitlines()]
    return "\n".join(lines)


def _as_json(at: Any, client: IpInfo, req: PolicyRequest, d: Decision) -> dict[str, Any]:
    return {
        "decision": d.action,
        "stage": d.stage,
        "reason": d.reason,
        "at": format_instant(at),
        "request": {"provider": req.provider, "country": req.country, "ip": client.ip,
                    "asn": client.asn, "hosting": client.hosting, "org": req.org,
                    "segment": req.segment, "home_country": req.home_country},
        "headers": dict(d.headers),
        "response": response_json(d.response) if d.response else None,
    }
