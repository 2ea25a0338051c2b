"""The policy engine: one ``decide(now, request)`` for the simulator and the gateway alike.

A provider's policy is an ordered list of stages. At scenario time ``now`` the stages that have
started (and not ended) are consulted latest first; the first that matches the request decides.
A stage matches when the client's country is in its regions and the organisation's sticky bucket
is below the stage's percent. Buckets come from a stable hash of (salt, organisation): stages
share their provider's salt unless told otherwise, so raising the percent never un-blocks an
organisation that was already blocked. Allow-listed organisations or segments get ``allow``.

Circumvention detection: a request from a hosting/datacentre ASN whose organisation's *home*
country would be blocked is caught after an exponentially distributed time (a ``per_day`` chance
each day) from when the organisation started relaying, drawn from a stable hash, so the same
organisation relaying from the same instant is caught at the same instant in both engines.

Everything here is pure: no clock, no randomness beyond stable hashes, no I/O.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import math
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import NamedTuple

from scenarios.countries import expand_regions
from scenarios.schema import Action, Detection, Response, Scenario, Stage

WARN_HEADER = "x-regionblock-warning"
STAGE_HEADER = "x-regionblock-stage"


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """An HTTP response to send as is, instead of forwarding the request upstream."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


class PolicyRequest(NamedTuple):
    """What the policy may know about a request.

    A named tuple, not a frozen dataclass: both engines build one per question (the simulator's
    pieces, the gateway's requests), and a frozen dataclass's ``__init__`` costs ten times as
    much (one ``object.__setattr__`` per field). Change one with ``_replace``."""

    provider: str
    country: str
    org: str
    segment: str = ""
    home_country: str = ""
    hosting: bool = False
    asn: int | None = None
    relay_since: dt.datetime | None = None
    key: str = ""


class Decision(NamedTuple):
    """The outcome: an action, the stage that decided, why, and what to send. (A named tuple:
    a detected relay gets a decision of its own, with its catch in the reason — one per relayed
    piece in the simulator, one per request at the gateway.)"""

    action: Action
    stage: str
    reason: str
    response: HttpResponse | None = None
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def denied(self) -> bool:
        return self.response is not None


# ---------------------------------------------------------------- response presets

OPENAI_403_BODY = (
    b'{"error":{"code":"unsupported_country_region_territory",'
    b'"message":"Country, region, or territory not supported","param":null,'
    b'"type":"request_forbidden"}}'
)
GOOGLE_400_BODY = (
    b'{\n  "error": {\n    "code": 400,\n'
    b'    "message": "User location is not supported for the API use.",\n'
    b'    "status": "FAILED_PRECONDITION"\n  }\n}\n'
)
HTTP_451_BODY = (
    b'{"error":{"code":"unavailable_for_legal_reasons",'
    b'"message":"Unavailable For Legal Reasons","param":null,"type":"request_forbidden"}}'
)
OPENAI_429_BODY = (
    b'{"error":{"code":"rate_limit_exceeded",'
    b'"message":"Rate limit reached for requests from your region. Please try again later.",'
    b'"param":null,"type":"requests"}}'
)
_JSON = ("content-type", "application/json")


def cloudflare_1009_body(country: str) -> bytes:
    """Cloudflare's country-ban page (Error 1009), naming the client's country."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en-US\">\n<head><title>Access denied | Error 1009</title></head>\n"
        "<body>\n<h1>Error 1009</h1>\n<h2>Access denied</h2>\n"
        "<p>The owner of this website has banned the country or region your IP address is in "
        f"({country or 'unknown'}) from accessing this website.</p>\n</body>\n</html>\n"
    ).encode()


def build_response(spec: Response, *, country: str, retry_after_s: int | None = None) -> HttpResponse:
    """The exact response for a preset or a custom specification."""
    extra = tuple(spec.headers.items())
    retry = (("retry-after", str(retry_after_s)),) if retry_after_s is not None else ()
    match spec.preset:
        case "openai_403":
            return HttpResponse(403, (_JSON, *extra), OPENAI_403_BODY)
        case "google_400_location":
            return HttpResponse(400, (("content-type", "application/json; charset=UTF-8"), *extra),
                                GOOGLE_400_BODY)
        case "http_451":
            return HttpResponse(451, (_JSON, *extra), HTTP_451_BODY)
        case "cloudflare_1009":
            headers = (("content-type", "text/html; charset=UTF-8"), ("server", "cloudflare"), *extra)
            return HttpResponse(403, headers, cloudflare_1009_body(country))
        case "openai_429":
            return HttpResponse(429, (_JSON, *retry, *extra), OPENAI_429_BODY)
    assert spec.status is not None and spec.body is not None  # guaranteed by schema validation
    headers = extra if any(k.lower() == "content-type" for k, _ in extra) else (_JSON, *extra)
    return HttpResponse(spec.status, (*headers, *retry), spec.body.encode())


def response_json(r: HttpResponse) -> dict[str, object]:
    """A response as plain data, for ``policy explain --json``."""
    try:
        body: object = json.loads(r.body)
    except ValueError:
        body = r.body.decode("utf-8", "replace")
    return {"status": r.status, "headers": dict(r.headers), "body": body,
            "body_bytes": r.body.decode("utf-8", "replace")}


# ---------------------------------------------------------------- stable hashing


def stable_unit(salt: str, key: str) -> float:
    """A stable number in [0, 1) for (salt, key): the same on every machine and in every process.
    Uncached: for keys asked once (a request stream's n-th gap); :func:`unit_hash` caches it."""
    digest = hashlib.blake2b(f"{salt}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


#: :func:`stable_unit`, cached: for keys asked again and again (rollout buckets, detection)
unit_hash = functools.lru_cache(maxsize=1 << 18)(stable_unit)


def bucket(salt: str, org: str) -> float:
    """The organisation's sticky rollout bucket in [0, 100)."""
    return unit_hash(salt, org) * 100.0


@functools.lru_cache(maxsize=1 << 16)
def detection_delay_days(salt: str, org: str, since: dt.datetime, per_day: float) -> float:
    """Days from ``since`` until the organisation's relayed traffic is detected (inf if never)."""
    if per_day <= 0.0:
        return math.inf
    if per_day >= 1.0:
        return 0.0
    u = 1.0 - unit_hash(f"{salt}/detect", f"{org}@{since.isoformat()}")  # in (0, 1]
    return math.log(u) / math.log1p(-per_day)


def _utc_stamp(at: dt.datetime) -> str:
    """``at.strftime('%Y-%m-%dT%H:%M:%SZ')`` for years 1000–9999, in about half its time."""
    # (printf-style: faster here than format specifiers, which parse a spec per field)
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (  # noqa: UP031
        at.year, at.month, at.day, at.hour, at.minute, at.second)


# ---------------------------------------------------------------- the compiled policy


@dataclass(frozen=True, slots=True)
class _Stage:
    spec: Stage
    countries: frozenset[str]
    salt: str
    allow_orgs: frozenset[str]
    allow_segments: frozenset[str]
    response: Response | None


@dataclass(frozen=True, slots=True)
class _ProviderPolicy:
    name: str
    stages: tuple[_Stage, ...]
    starts: tuple[dt.datetime, ...]
    detection: Detection | None
    detection_start: dt.datetime | None
    salt: str
    _responses: dict[tuple[str, str], HttpResponse] = field(default_factory=dict)
    _decisions: dict[tuple[int, str], Decision] = field(default_factory=dict)


def stage_response(st: Stage) -> Response | None:
    """What a stage answers with: its own response, else its action's default (none for allow/warn)."""
    if st.response is not None:
        return st.response
    if st.action == "block":
        return Response(preset="openai_403")
    if st.action == "throttle":
        return Response(preset="openai_429")
    return None


def _compile(provider: str, spec_salt: str | None, stages: tuple[Stage, ...],
             detection: Detection | None) -> _ProviderPolicy:
    salt = spec_salt or provider
    compiled = tuple(
        _Stage(spec=st, countries=expand_regions(st.regions), salt=st.salt or salt,
               allow_orgs=frozenset(st.allow_list.orgs),
               allow_segments=frozenset(st.allow_list.segments),
               response=stage_response(st))
        for st in stages
    )
    first_block = next((st.start for st in stages if st.action == "block"), None)
    det_start = (detection.start or first_block) if detection else None
    return _ProviderPolicy(name=provider, stages=compiled, starts=tuple(s.start for s in stages),
                           detection=detection, detection_start=det_start, salt=salt)


class Policy:
    """The scenario's policies, compiled once; ``decide`` is pure and safe to share."""

    def __init__(self, scenario: Scenario) -> None:
        self._policies = {
            name: _compile(name, pol.salt, pol.stages, pol.detection)
            for name, pol in scenario.policy.items()
        }

    def decide(self, now: dt.datetime, request: PolicyRequest) -> Decision:
        pol = self._policies.get(request.provider)
        if pol is None or not pol.stages:
            return Decision("allow", "", f"{request.provider} has no blocking policy")
        decision = self._by_stage(pol, now, request, request.country)
        if decision is not None:
            return decision
        detected = self._detection(pol, now, request)
        if detected is not None:
            return detected
        cached = pol._decisions.get((-1, request.country))
        if cached is None:
            where = request.country or "unknown country"
            cached = pol._decisions[(-1, request.country)] = Decision(
                "allow", "", f"no stage of {pol.name} applies to {where}")
        return cached

    def change_points(self, provider: str) -> tuple[dt.datetime, ...]:
        """Instants at which a decision for ``provider`` may change (stage starts and ends)."""
        pol = self._policies.get(provider)
        if pol is None:
            return ()
        points = {st.spec.start for st in pol.stages} | {st.spec.end for st in pol.stages if st.spec.end}
        if pol.detection_start is not None:
            points.add(pol.detection_start)
        return tuple(sorted(points))

    def detection_at(self, provider: str, org: str, since: dt.datetime) -> dt.datetime | None:
        """When an organisation relaying from ``since`` is caught (None: never).

        ``since`` is its first relayed request, where the incumbent first sees it from a hosting
        network: the gateway's first sighting (``gateway.enforcement.RelayMemory``), and in the
        simulator the first request of its stream after it chose the relay (``sim.model``)."""
        pol = self._policies.get(provider)
        if pol is None or pol.detection is None or pol.detection_start is None:
            return None
        start = max(since, pol.detection_start)
        days = detection_delay_days(pol.salt, org, since, pol.detection.per_day)
        if math.isinf(days):
            return None
        return start + dt.timedelta(days)   # (days by position: the same value)

    # ------------------------------------------------------------ internals

    def _by_stage(self, pol: _ProviderPolicy, now: dt.datetime, req: PolicyRequest,
                  country: str) -> Decision | None:
        for i in range(bisect_right(pol.starts, now) - 1, -1, -1):
            st = pol.stages[i]
            spec = st.spec
            if (spec.end is not None and now >= spec.end) or country not in st.countries:
                continue
            if req.org in st.allow_orgs or req.segment in st.allow_segments:
                who = f"organisation {req.org}" if req.org in st.allow_orgs else f"segment {req.segment}"
                return Decision("allow", spec.name, f"allow-listed: stage {spec.name} exempts {who}")
            if spec.percent < 100.0 and bucket(st.salt, req.org) >= spec.percent:
                continue
            if spec.action == "throttle" and spec.throttle_fraction < 1.0 \
                    and unit_hash(f"{st.salt}/throttle", req.key) >= spec.throttle_fraction:
                continue
            cached = pol._decisions.get((i, country))
            if cached is None:
                cached = pol._decisions[(i, country)] = self._act(pol, st, country)
            return cached
        return None

    def _act(self, pol: _ProviderPolicy, st: _Stage, country: str) -> Decision:
        spec = st.spec
        reason = f"stage {spec.name} ({spec.action} {spec.percent:g}% from " \
                 f"{spec.start.strftime('%Y-%m-%dT%H:%M:%SZ')}) covers {country}"
        if spec.action == "allow":
            return Decision("allow", spec.name, reason)
        if spec.action == "warn":
            message = spec.message or f"traffic from {country} will be restricted"
            return Decision("warn", spec.name, reason, None,
                            ((WARN_HEADER, message), (STAGE_HEADER, spec.name)))
        assert st.response is not None
        retry = spec.retry_after_s if spec.action == "throttle" else None
        return Decision(spec.action, spec.name, reason, self._response(pol, st.response, country, retry))

    def _response(self, pol: _ProviderPolicy, spec: Response, country: str,
                  retry_after_s: int | None) -> HttpResponse:
        key = (f"{id(spec)}/{retry_after_s}", country if spec.preset == "cloudflare_1009" else "")
        cached = pol._responses.get(key)
        if cached is None:
            cached = pol._responses[key] = build_response(spec, country=country,
                                                          retry_after_s=retry_after_s)
        return cached

    def _detection(self, pol: _ProviderPolicy, now: dt.datetime,
                   req: PolicyRequest) -> Decision | None:
        det = pol.detection
        if det is None or pol.detection_start is None or not req.hosting or not req.home_country:
            return None
        if now < pol.detection_start:
            return None
        home = self._by_stage(pol, now, req, req.home_country)
        if home is None or home.action != "block":
            return None
        caught = self.detection_at(pol.name, req.org, req.relay_since or pol.detection_start)
        if caught is None or now < caught:
            return None
        spec = det.response or Response(preset="openai_403")
        reason = (f"circumvention detected ({det.signal}): organisation's home {req.home_country} "
                  f"is blocked by stage {home.stage}; caught {_utc_stamp(caught)}")
        return Decision("block", home.stage, reason, self._response(pol, spec, req.country, None))


# ---------------------------------------------------------------- what a scenario's policy denies

DENYING_ACTIONS = frozenset({"block", "throttle"})


def stages_name_orgs(s: Scenario) -> bool:
    """Does any stage treat organisations one by one (a rollout by percent, allow-listed
    organisations)? Then two organisations of a region and segment may be answered differently."""
    return any(st.percent < 100.0 or st.allow_list.orgs for pol in s.policy.values() for st in pol.stages)


def first_denial(s: Scenario, provider: str | None = None) -> dt.datetime | None:
    """When ``provider``'s (default: the incumbent's) first block or throttle stage starts."""
    pol = s.policy.get(provider or s.incumbent.name)
    starts = [st.start for st in (pol.stages if pol else ()) if st.action in DENYING_ACTIONS]
    return min(starts) if starts else None


def denied_regions(s: Scenario, provider: str | None = None) -> tuple[str, ...]:
    """The scenario's regions (in scenario order) any block or throttle stage of ``provider`` targets."""
    pol = s.policy.get(provider or s.incumbent.name)
    targeted: set[str] = set()
    for st in pol.stages if pol else ():
        if st.action in DENYING_ACTIONS:
            targeted |= expand_regions(st.regions)
    return tuple(r.code for r in s.regions if r.code in targeted)
