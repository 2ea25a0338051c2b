"""The admin API, behind a bearer token (``--admin-token`` or REGIONBLOCK_ADMIN_TOKEN).

    GET  /admin/state    scenario, clock, active stages per provider, ledger, upstream circuits
    GET  /admin/clock    the clock;   PUT /admin/clock {"clock": "real" | "at:WHEN" | "compress:5m[@EPOCH]"}
    GET  /admin/policy   the scenario's policy and the stages active now
    POST /admin/reload   {"scenario": NAME_OR_PATH (default: the current one), "set": ["PATH=VALUE", ...]}
                         loads and validates the scenario, then swaps it in atomically
    POST /admin/keys/reload  re-reads the --keys file (or {"keys": PATH}) and swaps the key store
                         in atomically; a bad file is refused (400) and the old keys stay
Without a configured token the admin API answers 403; a wrong or missing token gets 401.

The admin API sees the gateway through ``AdminTarget`` (what it reads and swaps), so it imports
nothing of ``gateway.app``: the app imports the admin API, not the other way round.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from gateway.config import GatewayConfig, UpstreamUrl
from gateway.enforcement import RelayMemory
from gateway.errors import error_body
from gateway.http11 import Request
from gateway.keystore import KeyFileError, KeyStore
from gateway.ledger import Ledger
from gateway.runtime import Runtime
from gateway.upstreams import Upstreams
from scenarios.clock import format_instant
from scenarios.errors import ScenarioError
from scenarios.loader import load
from scenarios.schema import Scenario

Reply = tuple[int, bytes]


class AdminTarget(Protocol):
    """What of the gateway the admin API reads and swaps."""

    config: GatewayConfig
    runtime: Runtime
    upstreams: Upstreams
    ledger: Ledger
    relays: RelayMemory

    @property
    def inflight(self) -> int: ...

    def set_runtime(self, runtime: Runtime) -> None: ...

    def set_clock(self, spec: str) -> Runtime: ...


def handle(gw: AdminTarget, req: Request) -> Reply:
    denied = _authorise(gw.config.admin_token, req.headers.get("authorization", ""))
    if denied is not None:
        return denied
    route = (req.method, req.path)
    try:
        if route == ("GET", "/admin/state"):
            return _ok(state(gw))
        if route == ("GET", "/admin/clock"):
            return _ok(clock(gw))
        if route == ("PUT", "/admin/clock"):
            return _set_clock(gw, _json(req))
        if route == ("GET", "/admin/policy"):
            return _ok(policy(gw))
        if route == ("POST", "/admin/reload"):
            return _reload(gw, _json(req))
        if route == ("POST", "/admin/keys/reload"):
            return _reload_keys(gw, _json(req))
    except _BadInput as exc:
        return 400, error_body(str(exc), type_="invalid_request_error", code="invalid_admin_request")
    return 404, error_body(f"Invalid URL ({req.method} {req.path})", type_="invalid_request_error",
                           code=None)


class _BadInput(Exception):
    pass


def _authorise(token: str, header: str) -> Reply | None:
    if not token:
        return 403, error_body("the admin API is disabled: start the gateway with --admin-token or "
                               "REGIONBLOCK_ADMIN_TOKEN", type_="invalid_request_error",
                               code="admin_disabled")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        return 401, error_body("admin token missing or wrong", type_="invalid_request_error",
                               code="invalid_admin_token")
    return None


def _ok(obj: Any) -> Reply:
    return 200, json.dumps(obj, indent=1).encode()


def _json(req: Request) -> dict[str, Any]:
    try:
        obj = json.loads(req.body or b"{}")
    except (ValueError, RecursionError):
        raise _BadInput("the body is not JSON") from None
    if not isinstance(obj, dict):
        raise _BadInput("the body must be a JSON object")
    return obj


def clock(gw: AdminTarget) -> dict[str, Any]:
    rt = gw.runtime
    return {"spec": rt.clock_spec, "describe": rt.clock.describe(),
            "scenario_time": format_instant(rt.clock.scenario_at(time.time()))}


def active_stages(scenario: Scenario, now: dt.datetime) -> dict[str, list[str]]:
    return {name: [st.name for st in pol.stages if st.start <= now and (st.end is None or now < st.end)]
            for name, pol in scenario.policy.items()}


def state(gw: AdminTarget) -> dict[str, Any]:
    rt = gw.runtime
    now = rt.clock.scenario_at(time.time())
    return {"scenario": rt.loaded.scenario.name, "sha256": rt.loaded.sha256,
            "source": str(rt.loaded.source), "clock": clock(gw),
            "stages": active_stages(rt.loaded.scenario, now), "inflight": gw.inflight,
            "ledger": {"path": str(gw.ledger.path), "rows": gw.ledger.written,
                       "backlog": gw.ledger.backlog},
            "upstreams": {name: {"url": gw.upstreams.url(name).url, "circuit": circuit}
                          for name, circuit in gw.upstreams.states().items()},
            "relay_orgs_tracked": len(gw.relays),
            "keys": {"source": str(rt.keys.source) if rt.keys else None,
                     "count": len(rt.keys) if rt.keys else 0}}


def policy(gw: AdminTarget) -> dict[str, Any]:
    scenario = gw.runtime.loaded.scenario
    now = gw.runtime.clock.scenario_at(time.time())
    return {"policy": {name: pol.model_dump(mode="json", by_alias=True, exclude_defaults=True)
                       for name, pol in scenario.policy.items()},
            "routing": scenario.routing.model_dump(mode="json", by_alias=True),
            "active": active_stages(scenario, now), "scenario_time": format_instant(now)}


def _set_clock(gw: AdminTarget, body: dict[str, Any]) -> Reply:
    spec = body.get("clock")
    if not isinstance(spec, str):
        raise _BadInput('expected {"clock": "real" | "at:WHEN" | "compress:DURATION[@EPOCH]"}')
    try:
        gw.set_clock(spec)
    except (ScenarioError, ValueError) as exc:
        raise _BadInput(f"clock: {exc}") from None
    return _ok(clock(gw))


def _reload(gw: AdminTarget, body: dict[str, Any]) -> Reply:
    source = body.get("scenario")
    overrides = body.get("set", [])
    if not isinstance(source, str | None) or not isinstance(overrides, list) \
            or not all(isinstance(o, str) for o in overrides):
        raise _BadInput('expected {"scenario": NAME_OR_PATH, "set": ["PATH=VALUE", ...]}')
    if source is None:  # the scenario the gateway was started with, with its --set overrides
        source = gw.config.scenario_ref or gw.runtime.loaded.scenario.name
        overrides = [*gw.config.scenario_overrides, *overrides]
    try:
        loaded = load(source, tuple(overrides))
    except ScenarioError as exc:
        raise _BadInput(f"reload refused: {exc}") from None
    except (ValueError, OSError) as exc:  # e.g. a NUL in the path, or an unreadable file
        raise _BadInput(f"reload refused: {source!r}: {exc}") from None
    gw.upstreams.configure(_upstreams_for(gw, loaded.scenario))
    old = gw.runtime
    gw.set_runtime(Runtime.build(loaded, old.clock_spec, old.clock, old.keys))
    return _ok(state(gw))


def _reload_keys(gw: AdminTarget, body: dict[str, Any]) -> Reply:
    given = body.get("keys")
    if not isinstance(given, str | None):
        raise _BadInput('expected {} or {"keys": PATH}')
    path = Path(given) if given else gw.config.keys_path
    if path is None:
        raise _BadInput("no key file: start the gateway with --keys FILE or give {\"keys\": PATH}")
    try:
        keys = KeyStore.load(path)
    except KeyFileError as exc:
        raise _BadInput(f"keys reload refused: {exc}") from None
    gw.set_runtime(replace(gw.runtime, keys=keys))
    return _ok({"keys": len(keys), "source": str(path)})


def _upstreams_for(gw: AdminTarget, scenario: Scenario) -> dict[str, UpstreamUrl]:
    """Configured upstreams for known providers; the default port for any new one."""
    known = gw.config.upstreams
    base = gw.config.upstream_base_port
    return {p.name: known.get(p.name) or UpstreamUrl("127.0.0.1", base + i)
            for i, p in enumerate(scenario.providers)}
