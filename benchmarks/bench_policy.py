"""How long ``Policy.decide`` takes on the default scenario, for a realistic mix of requests.

Cases: a blocked mainland-China request, a warned one (the announcement), an allowed US request,
an allow-listed enterprise (Azure segment), the percentage-rollout stages of
staged-percent-rollout (half the organisations blocked, half fall through to the warning), and
the detection path (hosting-ASN traffic of a China-homed organisation relayed from Singapore).
Organisations cycle through a pool of 2,000, as a gateway sees repeat callers.

Baseline, measured in the same run: what a decision can hardly be cheaper than — one dict lookup
plus constructing the frozen ``Decision`` dataclass, plus the blake2b hash of the organisation
that sticky bucketing needs. The target is at most 5 µs per decision (a gateway budget of well
under 1 % of a ~1 ms proxy hop); exit status 1 when the mix misses it.

Also timed: ``Geo.sample_ips``, which gives every load-test user its source address — 50,000
mainland-China addresses at most 3 s (a 5,000-user load test draws 5,000), against the same
run's baseline of looking the 50,000 drawn addresses up once (sampling checks each by a lookup).

Run: ``python -m benchmarks policy`` (or ``make bench`` for all benchmarks).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import timeit
from collections.abc import Callable, Sequence

from scenarios.loader import load
from scenarios.policy import Decision, Policy, PolicyRequest

TARGET_US = 5.0
SAMPLE_IPS, SAMPLE_TARGET_S = 50_000, 3.0
POOL = 2_000
MIX_SIZE = 20_000
REPEAT = 5
UTC = dt.UTC
Call = tuple[Policy, dt.datetime, PolicyRequest]


def _at(day: str) -> dt.datetime:
    return dt.datetime.fromisoformat(day).replace(tzinfo=UTC)


def cases() -> dict[str, tuple[float, list[Call]]]:
    """Case name → (its weight in the mix, the calls it makes)."""
    default = Policy(load("openai-2024-cn-hk").scenario)
    staged = Policy(load("staged-percent-rollout").scenario)
    block, announce, relay = _at("2024-07-10"), _at("2024-06-30"), _at("2024-08-15")

    def calls(policy: Policy, now: dt.datetime, make: Callable[[int], PolicyRequest]) -> list[Call]:
        return [(policy, now, make(i)) for i in range(POOL)]

    return {
        "blocked CN": (0.20, calls(default, block, lambda i: PolicyRequest(
            "openai", "CN", f"cn-startup-{i:06d}", "startup", "CN"))),
        "warned HK": (0.10, calls(default, announce, lambda i: PolicyRequest(
            "openai", "HK", f"hk-startup-{i:06d}", "startup", "HK"))),
        "allowed US": (0.40, calls(default, block, lambda i: PolicyRequest(
            "openai", "US", f"us-startup-{i:06d}", "startup", "US"))),
        "allow-listed": (0.10, calls(default, block, lambda i: PolicyRequest(
            "openai", "CN", f"cn-enterprise-azure-{i:06d}", "enterprise-azure", "CN"))),
        "rollout 50 %": (0.10, calls(staged, _at("2024-07-17"), lambda i: PolicyRequest(
            "openai", "CN", f"cn-hobbyist-{i:06d}", "hobbyist", "CN"))),
        "detection": (0.10, calls(default, relay, lambda i: PolicyRequest(
            "openai", "SG", f"cn-startup-{i:06d}", "startup", "CN", hosting=True, asn=16509))),
    }


def per_call_us(fn: Callable[[], object], n: int) -> float:
    """Best of REPEAT timings of ``fn`` (which makes ``n`` calls), in µs per call."""
    fn()  # warm caches as a running gateway has them
    return min(timeit.repeat(fn, number=1, repeat=REPEAT)) / n * 1e6


def time_decide(calls: Sequence[Call]) -> float:
    def loop() -> None:
        for policy, now, request in calls:
            policy.decide(now, request)

    return per_call_us(loop, len(calls))


def time_baseline(calls: Sequence[Call]) -> float:
    table = {("CN", "block"): "block", ("US", ""): "allow"}

    def loop() -> None:
        for _, _, request in calls:
            action = table.get((request.country, "block"), "allow")
            hashlib.blake2b(request.org.encode(), digest_size=8).digest()
            Decision(action, "block", "baseline")  # type: ignore[arg-type]

    return per_call_us(loop, len(calls))


def mix(all_cases: dict[str, tuple[float, list[Call]]], seed: int = 20240709) -> list[Call]:
    """A shuffled stream with each case in proportion to its weight."""
    rng = random.Random(seed)
    stream = [calls[i % len(calls)] for weight, calls in all_cases.values()
              for i in range(round(weight * MIX_SIZE))]
    rng.shuffle(stream)
    return stream


def check_outcomes(all_cases: dict[str, tuple[float, list[Call]]]) -> dict[str, str]:
    """What each case decides, so the figures are known to time the intended paths."""
    out = {}
    for name, (_, calls) in all_cases.items():
        actions = sorted({p.decide(now, r).action for p, now, r in calls})
        out[name] = "/".join(actions)
    return out


def main() -> int:
    all_cases = cases()
    outcomes = check_outcomes(all_cases)
    print(f"Policy.decide on openai-2024-cn-hk (+ staged-percent-rollout), {POOL} orgs per case, "
          f"best of {REPEAT}")
    for name, (weight, calls) in all_cases.items():
        us = time_decide(calls)
        print(f"  {name:<14} {us:6.2f} µs/decision   ({weight:4.0%} of mix; {outcomes[name]})")
    stream = mix(all_cases)
    overall = time_decide(stream)
    baseline = time_baseline(stream)
    print(f"  {'mix':<14} {overall:6.2f} µs/decision   ({len(stream)} requests)")
    print(f"baseline (dict lookup + blake2b(org) + Decision): {baseline:.2f} µs; "
          f"ratio {overall / baseline:.2f}x")
    ok = overall <= TARGET_US
    print(f"target ≤ {TARGET_US:g} µs/decision: {'PASS' if ok else 'FAIL'} ({overall:.2f} µs)")
    seconds, lookups = time_sample_ips()
    fast = seconds <= SAMPLE_TARGET_S
    print(f"Geo.sample_ips: {SAMPLE_IPS:,} CN addresses in {seconds:.3f} s (best of {REPEAT}); "
          f"baseline {SAMPLE_IPS:,} lookups of them {lookups:.3f} s; ratio {seconds / lookups:.2f}x")
    print(f"target ≤ {SAMPLE_TARGET_S:g} s: {'PASS' if fast else 'FAIL'}")
    return 0 if ok and fast else 1


def time_sample_ips() -> tuple[float, float]:
    """(seconds to draw SAMPLE_IPS mainland-China addresses, seconds to look each of them up
    once), best of REPEAT each, the range tables built first as a gateway has them."""
    import numpy as np

    from scenarios.geo import default_geo

    geo = default_geo()
    geo.sample_ips("CN", 10, np.random.default_rng(0))
    ips = geo.sample_ips("CN", SAMPLE_IPS, np.random.default_rng(0))
    draw = min(timeit.repeat(lambda: geo.sample_ips("CN", SAMPLE_IPS, np.random.default_rng(0)),
                             number=1, repeat=REPEAT))
    # uncached, as sampling checks them (``lookup`` answers a repeated address from its cache)
    look = min(timeit.repeat(lambda: [geo._lookup(ip) for ip in ips], number=1, repeat=REPEAT))
    return draw, look


if __name__ == "__main__":
    raise SystemExit(main())
