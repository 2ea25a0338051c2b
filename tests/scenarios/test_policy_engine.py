"""scenarios/policy.py: stages, sticky percentage buckets, allow-lists, warn/throttle/block, the
response presets byte for byte, and circumvention detection against its exponential law."""

from __future__ import annotations

import datetime as dt
import math
import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scenarios.loader import load
from scenarios.policy import (
    OPENAI_403_BODY,
    STAGE_HEADER,
    WARN_HEADER,
    Decision,
    Policy,
    PolicyRequest,
    build_response,
    response_json,
)
from scenarios.schema import Detection, ProviderPolicy, Response, Scenario, Stage

UTC = dt.UTC
US = dt.timedelta(microseconds=1)
BLOCK_DAY = dt.datetime(2024, 7, 9, tzinfo=UTC)
DETECTION_DAY = dt.datetime(2024, 7, 25, tzinfo=UTC)
WINDOW = (dt.datetime(2024, 6, 1), dt.datetime(2024, 9, 30))
JSON = ("content-type", "application/json")
# Written out here, not imported, so the test checks the engine against the published body.
OPENAI_403 = (b'{"error":{"code":"unsupported_country_region_territory","message":"Country, region, '
              b'or territory not supported","param":null,"type":"request_forbidden"}}')
SETTINGS = settings(max_examples=60, deadline=None)

orgs = st.from_regex(r"[a-z]{2}-[a-z]{3,8}-\d{6}", fullmatch=True)
instants = st.datetimes(min_value=WINDOW[0], max_value=WINDOW[1], timezones=st.just(UTC))


def stage(name: str = "s", **fields: Any) -> Stage:
    spec: dict[str, Any] = {"name": name, "start": BLOCK_DAY, "regions": ["CN"], "action": "block"}
    return Stage.model_validate(spec | fields)


def policy_with(s: Scenario, *stages: Stage, detection: Detection | None = None,
                salt: str | None = None) -> Policy:
    """The scenario with openai's policy replaced (validated stage objects, no YAML round trip)."""
    pp = ProviderPolicy(stages=stages, detection=detection, salt=salt)
    return Policy(s.model_copy(update={"policy": {"openai": pp}}))


def req(country: str = "CN", org: str = "cn-startup-000001", **fields: Any) -> PolicyRequest:
    return PolicyRequest(provider="openai", country=country, org=org, **fields)


def binomial_bounds(n: int, p: float, z: float = 3.29) -> tuple[float, float]:
    """A normal-approximation 99.9 % interval for the count of successes in n trials."""
    sd = math.sqrt(n * p * (1 - p))
    return n * p - z * sd, n * p + z * sd


# ---------------------------------------------------------------- the default scenario


def test_default_block_is_the_openai_403(scenario: Scenario) -> None:
    d = Policy(scenario).decide(dt.datetime(2024, 7, 10, tzinfo=UTC), req())
    assert (d.action, d.stage, d.denied) == ("block", "block", True)
    assert d.reason == "stage block (block 100% from 2024-07-09T00:00:00Z) covers CN"
    assert d.response is not None
    assert (d.response.status, d.response.headers, d.response.body) == (403, (JSON,), OPENAI_403)
    assert OPENAI_403_BODY == OPENAI_403


def test_default_timeline_for_cn_and_us(scenario: Scenario) -> None:
    p = Policy(scenario)

    def action(when: dt.datetime, country: str) -> str:
        return p.decide(when, req(country)).action

    announce = dt.datetime(2024, 6, 25, tzinfo=UTC)
    assert [action(t, "CN") for t in (announce - US, announce, BLOCK_DAY - US, BLOCK_DAY)] == [
        "allow", "warn", "warn", "block"]
    assert {action(t, "US") for t in (announce, BLOCK_DAY, DETECTION_DAY)} == {"allow"}
    assert {action(BLOCK_DAY, c) for c in ("CN", "HK", "MO", "RU", "BY", "IR", "KP", "SY", "CU", "VE")} == {
        "block"}


def test_warn_adds_the_headers(scenario: Scenario) -> None:
    d = Policy(scenario).decide(dt.datetime(2024, 7, 1, tzinfo=UTC), req("HK"))
    message = ("Your organization has API traffic from a region that OpenAI does not support; "
               "it will be blocked from July 9.")
    assert d == Decision("warn", "announce", "stage announce (warn 100% from 2024-06-25T00:00:00Z) covers HK",
                         None, ((WARN_HEADER, message), (STAGE_HEADER, "announce")))
    assert not d.denied
    assert (WARN_HEADER, STAGE_HEADER) == ("x-regionblock-warning", "x-regionblock-stage")


def test_warn_default_message(scenario: Scenario) -> None:
    d = policy_with(scenario, stage(action="warn")).decide(BLOCK_DAY, req())
    assert d.headers == ((WARN_HEADER, "traffic from CN will be restricted"), (STAGE_HEADER, "s"))


def test_allow_list_by_segment(scenario: Scenario) -> None:
    d = Policy(scenario).decide(BLOCK_DAY, req(org="cn-enterprise-azure-000003", segment="enterprise-azure"))
    assert d == Decision("allow", "block", "allow-listed: stage block exempts segment enterprise-azure")
    other = Policy(scenario).decide(BLOCK_DAY, req(org="cn-enterprise-000003", segment="enterprise"))
    assert other.action == "block"


def test_allow_list_by_org(scenario: Scenario) -> None:
    p = policy_with(scenario, stage("block", allow_list={"orgs": ["cn-startup-000007"]}))
    assert p.decide(BLOCK_DAY, req(org="cn-startup-000007")) == Decision(
        "allow", "block", "allow-listed: stage block exempts organisation cn-startup-000007")
    assert p.decide(BLOCK_DAY, req(org="cn-startup-000008")).action == "block"


def test_provider_without_policy(scenario: Scenario) -> None:
    d = Policy(scenario).decide(BLOCK_DAY, PolicyRequest(provider="deepseek", country="CN", org="x"))
    assert d == Decision("allow", "", "deepseek has no blocking policy")
    assert Policy(scenario).decide(BLOCK_DAY, req("US")).reason == "no stage of openai applies to US"
    unknown = Policy(scenario).decide(BLOCK_DAY, req(""))
    assert unknown.reason == "no stage of openai applies to unknown country"


def test_change_points(scenario: Scenario) -> None:
    assert Policy(scenario).change_points("openai") == (
        dt.datetime(2024, 6, 25, tzinfo=UTC), BLOCK_DAY, DETECTION_DAY)
    assert Policy(scenario).change_points("deepseek") == ()
    ended = policy_with(scenario, stage(end=dt.datetime(2024, 8, 1, tzinfo=UTC)))
    assert ended.change_points("openai") == (BLOCK_DAY, dt.datetime(2024, 8, 1, tzinfo=UTC))


# ---------------------------------------------------------------- stage timing


@SETTINGS
@given(start=instants)
def test_a_stage_takes_effect_exactly_at_its_start(scenario: Scenario, start: dt.datetime) -> None:
    p = policy_with(scenario, stage(start=start))
    assert p.decide(start - US, req()).action == "allow"
    assert p.decide(start, req()).action == "block"


@SETTINGS
@given(start=instants, length=st.timedeltas(min_value=US, max_value=dt.timedelta(days=30)))
def test_a_stage_ends_exactly_at_its_end(scenario: Scenario, start: dt.datetime,
                                         length: dt.timedelta) -> None:
    warn = stage("warn", start=start - dt.timedelta(days=1), action="warn")
    p = policy_with(scenario, warn, stage("block", start=start, end=start + length))
    assert p.decide(start + length - US, req()).action == "block"
    assert p.decide(start + length, req()).action == "warn"  # the earlier stage applies again


def test_latest_started_matching_stage_wins(scenario: Scenario) -> None:
    p = policy_with(scenario,
                    stage("warn-all", start=BLOCK_DAY, regions=["unsupported_mid_2024"], action="warn"),
                    stage("block-cn", start=BLOCK_DAY + dt.timedelta(days=1), regions=["CN"]))
    later = BLOCK_DAY + dt.timedelta(days=2)
    assert (p.decide(later, req("CN")).stage, p.decide(later, req("HK")).stage) == ("block-cn", "warn-all")


# ---------------------------------------------------------------- percentage rollouts


@SETTINGS
@given(org=orgs, low=st.floats(0, 100), high=st.floats(0, 100))
def test_raising_the_percent_never_unblocks(scenario: Scenario, org: str, low: float, high: float) -> None:
    low, high = min(low, high), max(low, high)
    before = policy_with(scenario, stage(percent=low)).decide(BLOCK_DAY, req(org=org))
    after = policy_with(scenario, stage(percent=high)).decide(BLOCK_DAY, req(org=org))
    assert not (before.action == "block" and after.action != "block")


def test_staged_rollout_is_sticky_and_proportional() -> None:
    p = Policy(load("staged-percent-rollout").scenario)
    ids = [f"cn-startup-{i:06d}" for i in range(4000)]
    blocked: dict[str, set[str]] = {}
    for day, name in ((10, "block-10"), (17, "block-50"), (31, "block-100")):
        when = dt.datetime(2024, 7, day, tzinfo=UTC)
        blocked[name] = {o for o in ids if p.decide(when, req(org=o)).action == "block"}
    assert blocked["block-10"] <= blocked["block-50"] <= blocked["block-100"] == set(ids)
    for name, share in (("block-10", 0.10), ("block-50", 0.50)):
        lo, hi = binomial_bounds(len(ids), share)
        assert lo <= len(blocked[name]) <= hi, (name, len(blocked[name]))
    # Not yet blocked at 10 %: the announcement's warning still applies.
    spared = next(o for o in ids if o not in blocked["block-10"])
    assert p.decide(dt.datetime(2024, 7, 10, tzinfo=UTC), req(org=spared)).stage == "announce"


def test_percent_zero_blocks_nobody_and_salt_reshuffles(scenario: Scenario) -> None:
    ids = [f"cn-startup-{i:06d}" for i in range(500)]
    assert {policy_with(scenario, stage(percent=0)).decide(BLOCK_DAY, req(org=o)).action for o in ids} == {
        "allow"}
    a = {o for o in ids if policy_with(scenario, stage(percent=50)).decide(BLOCK_DAY, req(org=o)).denied}
    b = {o for o in ids if policy_with(scenario, stage(percent=50), salt="other").decide(
        BLOCK_DAY, req(org=o)).denied}
    c = {o for o in ids if policy_with(scenario, stage(percent=50, salt="other")).decide(
        BLOCK_DAY, req(org=o)).denied}
    assert a != b and b == c


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_decisions_do_not_depend_on_call_order(scenario: Scenario, seed: int) -> None:
    s = load("staged-percent-rollout").scenario if seed % 2 else scenario
    rnd = random.Random(seed)
    start = dt.datetime(2024, 6, 20, tzinfo=UTC)
    requests = [
        (start + dt.timedelta(hours=rnd.randrange(24 * 60)),
         req(rnd.choice(["CN", "HK", "US", "SG", "RU"]),
             org=f"cn-{rnd.choice(['startup', 'enterprise-azure'])}-{rnd.randrange(50):06d}",
             segment=rnd.choice(["startup", "enterprise-azure"]),
             hosting=rnd.random() < 0.5, home_country="CN", key=f"k{rnd.randrange(9)}"))
        for _ in range(80)
    ]
    in_order = [Policy(s).decide(t, r) for t, r in requests]
    shuffled = list(range(len(requests)))
    rnd.shuffle(shuffled)
    p = Policy(s)
    again = {i: p.decide(*requests[i]) for i in shuffled}
    assert [again[i] for i in range(len(requests))] == in_order


# ---------------------------------------------------------------- throttling


def test_throttle_is_429_with_retry_after(scenario: Scenario) -> None:
    p = policy_with(scenario, stage("slow", action="throttle", retry_after_s=30))
    d = p.decide(BLOCK_DAY, req(key="sk-1"))
    assert (d.action, d.stage) == ("throttle", "slow")
    assert d.response is not None
    assert d.response.status == 429
    assert d.response.headers == (JSON, ("retry-after", "30"))
    assert d.response.body == (b'{"error":{"code":"rate_limit_exceeded","message":"Rate limit reached for '
                               b'requests from your region. Please try again later.","param":null,'
                               b'"type":"requests"}}')


def test_throttle_fraction_by_request_key(scenario: Scenario) -> None:
    p = policy_with(scenario, stage("slow", action="throttle", throttle_fraction=0.25))
    keys = [f"req-{i}" for i in range(8000)]
    throttled = [k for k in keys if p.decide(BLOCK_DAY, req(key=k)).action == "throttle"]
    lo, hi = binomial_bounds(len(keys), 0.25)
    assert lo <= len(throttled) <= hi
    # The same key always gets the same answer, whatever the organisation.
    assert all(p.decide(BLOCK_DAY, req(key=k, org="other")).action == "throttle" for k in throttled[:200])


def test_custom_throttle_response_gets_retry_after(scenario: Scenario) -> None:
    custom = {"status": 503, "headers": {"x-why": "region"}, "body": "busy"}
    p = policy_with(scenario, stage(action="throttle", retry_after_s=5, response=custom))
    d = p.decide(BLOCK_DAY, req())
    assert d.response is not None
    assert (d.response.status, d.response.headers, d.response.body) == (
        503, (JSON, ("x-why", "region"), ("retry-after", "5")), b"busy")


# ---------------------------------------------------------------- response presets


def test_preset_openai_403() -> None:
    r = build_response(Response(preset="openai_403"), country="CN")
    assert (r.status, r.headers, r.body) == (403, (JSON,), OPENAI_403)


def test_preset_google_400_location() -> None:
    r = build_response(Response(preset="google_400_location"), country="CN")
    assert r.status == 400
    assert r.headers == (("content-type", "application/json; charset=UTF-8"),)
    assert r.body == (b'{\n  "error": {\n    "code": 400,\n    "message": "User location is not supported '
                      b'for the API use.",\n    "status": "FAILED_PRECONDITION"\n  }\n}\n')


def test_preset_http_451() -> None:
    r = build_response(Response(preset="http_451"), country="CN")
    assert (r.status, r.headers) == (451, (JSON,))
    assert r.body == (b'{"error":{"code":"unavailable_for_legal_reasons","message":"Unavailable For Legal '
                      b'Reasons","param":null,"type":"request_forbidden"}}')


def test_preset_cloudflare_1009_names_the_country(scenario: Scenario) -> None:
    r = build_response(Response(preset="cloudflare_1009"), country="HK")
    assert r.status == 403
    assert r.headers == (("content-type", "text/html; charset=UTF-8"), ("server", "cloudflare"))
    assert r.body == (
        b'<!DOCTYPE html>\n<html lang="en-US">\n<head><title>Access denied | Error 1009</title></head>\n'
        b"<body>\n<h1>Error 1009</h1>\n<h2>Access denied</h2>\n<p>The owner of this website has banned "
        b"the country or region your IP address is in (HK) from accessing this website.</p>\n"
        b"</body>\n</html>\n")
    # Through the engine each country gets its own page.
    p = policy_with(scenario, stage(regions=["CN", "HK"], response={"preset": "cloudflare_1009"}))
    bodies = {c: p.decide(BLOCK_DAY, req(c)).response.body for c in ("CN", "HK")}  # type: ignore[union-attr]
    assert b"(CN)" in bodies["CN"] and b"(HK)" in bodies["HK"] and b"(CN)" not in bodies["HK"]


def test_custom_response() -> None:
    r = build_response(Response(status=418, headers={"x-a": "b"}, body='{"no": 1}'), country="CN")
    assert (r.status, r.headers, r.body) == (418, (JSON, ("x-a", "b")), b'{"no": 1}')
    html = build_response(Response(status=403, headers={"Content-Type": "text/plain"}, body="no"), country="")
    assert (html.headers, html.body) == ((("Content-Type", "text/plain"),), b"no")


def test_preset_with_extra_headers() -> None:
    r = build_response(Response(preset="http_451", headers={"link": "<https://x>"}), country="CN")
    assert r.headers == (JSON, ("link", "<https://x>"))


def test_response_json() -> None:
    r = build_response(Response(preset="openai_403"), country="CN")
    assert response_json(r) == {
        "status": 403, "headers": {"content-type": "application/json"},
        "body": {"error": {"code": "unsupported_country_region_territory",
                           "message": "Country, region, or territory not supported", "param": None,
                           "type": "request_forbidden"}},
        "body_bytes": OPENAI_403.decode()}
    html = build_response(Response(status=403, body="<p>no</p>"), country="")
    assert response_json(html)["body"] == "<p>no</p>"


# ---------------------------------------------------------------- detection


def relayed(org: str = "cn-startup-000001", since: dt.datetime | None = None, **fields: Any) -> PolicyRequest:
    spec: dict[str, Any] = {"country": "SG", "org": org, "home_country": "CN", "hosting": True,
                            "relay_since": since}
    return PolicyRequest(provider="openai", **(spec | fields))


def test_detection_blocks_a_relayed_org_when_caught(scenario: Scenario) -> None:
    p = Policy(scenario)
    org, since = "cn-startup-000123", dt.datetime(2024, 7, 10, 12, tzinfo=UTC)
    caught = p.detection_at("openai", org, since)
    assert caught is not None and caught >= DETECTION_DAY
    assert p.decide(caught - US, relayed(org, since)).action == "allow"
    d = p.decide(caught, relayed(org, since))
    assert (d.action, d.stage) == ("block", "block")
    assert d.reason == (f"circumvention detected (hosting_asn): organisation's home CN is blocked by stage "
                        f"block; caught {caught.strftime('%Y-%m-%dT%H:%M:%SZ')}")
    assert d.response is not None and d.response.body == OPENAI_403


def test_detection_needs_hosting_and_a_blocked_home(scenario: Scenario) -> None:
    p = Policy(scenario)
    late = dt.datetime(2030, 1, 1, tzinfo=UTC)  # long after any detection instant at 2 %/day
    org = "cn-startup-000123"
    assert p.decide(late, relayed(org)).action == "block"
    assert p.decide(late, relayed(org, hosting=False)).action == "allow"
    assert p.decide(late, relayed(org, home_country="")).action == "allow"
    assert p.decide(late, relayed("us-startup-000123", home_country="US")).action == "allow"
    azure = relayed("cn-enterprise-azure-000001", segment="enterprise-azure")
    assert p.decide(late, azure).action == "allow"  # allow-listed at home, so nothing to catch


def test_detection_never_before_its_start(scenario: Scenario) -> None:
    p = Policy(scenario)
    for i in range(300):
        caught = p.detection_at("openai", f"cn-startup-{i:06d}", BLOCK_DAY)
        assert caught is not None and caught >= DETECTION_DAY
        assert p.decide(DETECTION_DAY - US, relayed(f"cn-startup-{i:06d}", BLOCK_DAY)).action == "allow"


def test_detection_is_deterministic(scenario: Scenario) -> None:
    since = dt.datetime(2024, 8, 3, 4, 5, 6, tzinfo=UTC)
    a = Policy(scenario).detection_at("openai", "cn-hobbyist-000009", since)
    assert a == Policy(scenario).detection_at("openai", "cn-hobbyist-000009", since)
    assert a != Policy(scenario).detection_at("openai", "cn-hobbyist-000009", since + US)
    assert a != Policy(scenario).detection_at("openai", "cn-hobbyist-000010", since)


def test_detection_per_day_zero_and_one(scenario: Scenario) -> None:
    block = stage("block", start=BLOCK_DAY)
    never = policy_with(scenario, block, detection=Detection(per_day=0.0))
    assert never.detection_at("openai", "cn-startup-000001", BLOCK_DAY) is None
    assert never.decide(dt.datetime(2099, 1, 1, tzinfo=UTC), relayed()).action == "allow"
    at_once = policy_with(scenario, block, detection=Detection(per_day=1.0))
    since = BLOCK_DAY + dt.timedelta(hours=5)
    assert at_once.detection_at("openai", "cn-startup-000001", since) == since
    # Relaying since before detection started: caught the moment detection starts (the first block).
    assert at_once.detection_at("openai", "cn-startup-000001", BLOCK_DAY - dt.timedelta(days=3)) == BLOCK_DAY
    assert at_once.decide(BLOCK_DAY, relayed(since=BLOCK_DAY - dt.timedelta(days=3))).action == "block"
    assert policy_with(scenario, block).detection_at("openai", "x", BLOCK_DAY) is None


@pytest.mark.parametrize("per_day", [0.02, 0.25, 0.7])
def test_detection_delays_are_exponential(scenario: Scenario, per_day: float) -> None:
    p = policy_with(scenario, stage("block"), detection=Detection(per_day=per_day, start=BLOCK_DAY))
    n = 20_000
    delays = np.array([
        (p.detection_at("openai", f"cn-startup-{i:06d}", BLOCK_DAY) - BLOCK_DAY)  # type: ignore[operator]
        .total_seconds() / 86400 for i in range(n)])
    rate = -math.log(1 - per_day)
    # Fraction caught within one day is per_day, within a binomial 99.9 % interval.
    lo, hi = binomial_bounds(n, per_day)
    assert lo <= int((delays <= 1.0).sum()) <= hi
    # Kolmogorov–Smirnov against Exp(rate): the 99.9 % critical value is 1.949/sqrt(n).
    x = np.sort(delays)
    cdf = 1 - np.exp(-rate * x)
    ks = max(float((np.arange(1, n + 1) / n - cdf).max()), float((cdf - np.arange(n) / n).max()))
    assert ks < 1.949 / math.sqrt(n)
    assert abs(delays.mean() - 1 / rate) < 4 * (1 / rate) / math.sqrt(n)


def test_first_denial_and_denied_regions_of_the_shipped_scenarios() -> None:
    import datetime as _dt

    from scenarios.loader import load as _load
    from scenarios.policy import denied_regions, first_denial

    s = _load("openai-2024-cn-hk").scenario
    assert first_denial(s) == _dt.datetime(2024, 7, 9, tzinfo=_dt.UTC)
    assert denied_regions(s) == ("CN", "HK", "MO", "RU")
    assert first_denial(s, "zhipu") is None and denied_regions(s, "zhipu") == ()
    throttled = _load("openai-2024-cn-hk", ("policy.openai.stages[1].action=throttle",
                                            "policy.openai.stages[1].regions=[HK]")).scenario
    assert first_denial(throttled) == _dt.datetime(2024, 7, 9, tzinfo=_dt.UTC)
    assert denied_regions(throttled) == ("HK",)


def test_stable_unit_is_the_blake2b_of_salt_and_key_and_unit_hash_caches_it() -> None:
    """stable_unit: the first 8 bytes of BLAKE2b("salt\\x1fkey"), big-endian, over 2**64 — fixed
    values, so no machine or release changes a bucket, a detection or a request stream; unit_hash
    is the same function, cached."""
    import hashlib

    from scenarios.policy import stable_unit, unit_hash

    for salt, key in (("s", "k"), ("42/arrivals", "cn-startup-000001#3"), ("", "")):
        digest = hashlib.blake2b(f"{salt}\x1f{key}".encode(), digest_size=8).digest()
        assert stable_unit(salt, key) == unit_hash(salt, key) == int.from_bytes(digest, "big") / 2**64
    assert stable_unit("s", "k") == float.fromhex("0x1.9f2fda16261ecp-2")
    assert stable_unit("42/arrivals", "cn-startup-000001#3") == float.fromhex("0x1.52ac91bf97fa4p-1")
    assert unit_hash.cache_info().maxsize == 1 << 18
