"""Every validation rule of scenarios/schema.py and scenarios/distributions.py, with its exact message.

Each case patches one line of the shipped default scenario and asserts the complete list of
problems, ``s.yaml:LINE: field.path: message``, where LINE is the line the test patched (found by
a unique piece of its text, so the shipped file may gain comments without breaking these tests).
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

import pytest
from scenario_helpers import FILE, default_text, line_of, patch, problems

from scenarios.loader import load_text

ISO_SETS = "(all, unsupported_mid_2024)"
DISTS = "lognormal, exponential, constant, uniform, pareto, empirical"
INCUMBENT_MODELS = "gpt-3.5-turbo, gpt-4-turbo, gpt-4o, gpt-4o-mini"
# The lines of the default scenario that the cases below edit.
CN_RTT = "{dist: lognormal, median: 200, sigma: 0.5}"
WAIT_DAYS = "{dist: exponential, mean: 2.0}"
HOBBY_MIX = "model_mix: {gpt-4o: 0.3, gpt-3.5-turbo: 0.7}"
BLOCK_RESPONSE = "response: {preset: openai_403}   "


class Case(NamedTuple):
    old: str
    new: str
    expected: list[tuple[str, str, str]]  # (text on the reported line, field path, message)


def case(old: str, new: str, *expected: tuple[str, str, str]) -> Case:
    return Case(old, new, list(expected))


FIELD_RULES: dict[str, Case] = {
    # ---- types and ranges on fields
    "name-slug": case("name: openai-2024-cn-hk", "name: Openai 2024",
                      ("name: Openai 2024", "name",
                       "String should match pattern '^[a-z0-9][a-z0-9_.-]*$' (got 'Openai 2024')")),
    "version": case("version: 1", "version: 2", ("version: 2", "version", "Input should be 1 (got 2)")),
    "unknown-field": case("version: 1", "version: 1\nbogus: 3", ("bogus: 3", "bogus", "unknown field")),
    "window-bin": case("  bin: day", "  bin: week",
                       ("bin: week", "window.bin", "Input should be 'hour' or 'day' (got 'week')")),
    "window-start-not-a-date": case(
        "  start: 2024-06-01 ", "  start: someday ",
        ("start: someday", "window.start",
         "Input should be a valid datetime or date, input is too short")),
    "window-start-impossible-date": case("  start: 2024-06-01 ", "  start: 2024-13-01 ",
                                         ("start: 2024-13-01", "window.start", "month must be in 1..12")),
    "organisations-negative": case(
        "    organisations: 16000 ", "    organisations: -1 ",
        ("organisations: -1", "regions[0].organisations",
         "Input should be greater than or equal to 0 (got -1)")),
    "organisations-not-int": case(
        "    organisations: 16000 ", "    organisations: lots ",
        ("organisations: lots", "regions[0].organisations",
         "Input should be a valid integer, unable to parse string as an integer (got 'lots')")),
    "utc-offset": case("  - code: CN\n    organisations: 16000       # ASSUMPTION: the largest affected "
                       "developer population\n    utc_offset: 8",
                       "  - code: CN\n    organisations: 16000\n    utc_offset: 15",
                       ("utc_offset: 15", "regions[0].utc_offset",
                        "Input should be less than or equal to 14 (got 15)")),
    "region-code-lower-case": case("  - code: CN", "  - code: cn",
                                   ("code: cn", "regions[0].code", "'cn' must be upper-case ('CN')")),
    "region-code-unknown": case(
        "  - code: CN", "  - code: XX",
        ("code: XX", "regions[0].code", f"'XX' is not an ISO 3166-1 alpha-2 code or a named set {ISO_SETS}")),
    "region-code-too-long": case("  - code: CN", "  - code: CHN",
                                 ("code: CHN", "regions[0].code", "String should have at most 2 characters")),
    "region-code-named-set": case(
        "  - code: CN", "  - code: al",
        ("code: al", "regions[0].code", "'al' must be upper-case ('AL')")),
    "serves-unknown-country": case(
        "serves: [CN, HK, MO]\n    incentive: {free_tokens: 150000000",
        "serves: [CN, XX, MO]\n    incentive: {free_tokens: 150000000",
        ("serves: [CN, XX, MO]", "providers[1].serves",
         f"'XX' is not an ISO 3166-1 alpha-2 code or a named set {ISO_SETS}")),
    "stage-regions-unknown-set": case(
        "        regions: [unsupported_mid_2024]                         # FACT: the unsupported list "
        "(country-expressible part)",
        "        regions: [nowhere]",
        ("regions: [nowhere]", "policy.openai.stages[0].regions",
         f"'nowhere' is not an ISO 3166-1 alpha-2 code or a named set {ISO_SETS}")),
    "stage-regions-empty": case(
        "        regions: [unsupported_mid_2024]                         # FACT: the unsupported list "
        "(country-expressible part)",
        "        regions: []",
        ("regions: []", "policy.openai.stages[0].regions",
         "needs at least 1 item (got 0)")),
    "retry-status": case(
        "    retry: {statuses: [408, 409, 429, 500, 502, 503, 504], max_retries: 2, backoff_s: "
        "{dist: exponential, mean: 1.0}}  # FACT: the openai SDK retries these twice; not 403",
        "    retry: {statuses: [999]}",
        ("retry: {statuses: [999]}", "segments[0].retry.statuses",
         "999 is not an HTTP status code (100-599)")),
    "retry-max": case(
        "    retry: {statuses: [408, 409, 429, 500, 502, 503, 504], max_retries: 2, backoff_s: "
        "{dist: exponential, mean: 1.0}}  # FACT: the openai SDK retries these twice; not 403",
        "    retry: {max_retries: 21}",
        ("retry: {max_retries: 21}", "segments[0].retry.max_retries",
         "Input should be less than or equal to 20 (got 21)")),
    "segment-name-slug": case("  - name: enterprise\n", "  - name: Enterprise\n",
                              ("name: Enterprise", "segments[1].name",
                               "String should match pattern '^[a-z0-9][a-z0-9_.-]*$' (got 'Enterprise')")),
    "stream-share-fraction": case(
        "    stream_share: 0.7 ", "    stream_share: 1.5 ",
        ("stream_share: 1.5", "segments[2].stream_share",
         "Input should be less than or equal to 1 (got 1.5)")),
    "price-negative": case(
        "{name: gpt-4o, price_in: 5.00,", "{name: gpt-4o, price_in: -5.00,",
        ("price_in: -5.00", "providers[0].models[0].price_in",
         "Input should be greater than or equal to 0 (got -5.0)")),
    "quality-above-one": case(
        "price_out: 15.00, quality: 1.0}", "price_out: 15.00, quality: 1.5}",
        ("quality: 1.5", "providers[0].models[0].quality",
         "Input should be less than or equal to 1 (got 1.5)")),
    "models-empty": case("    label: DeepSeek\n    models:\n      - {name: deepseek-chat, price_in: 0.14, "
                         "price_out: 0.28, quality: 0.86}  # FACT: DeepSeek-V2 ¥1/¥2 per 1M\n",
                         "    label: DeepSeek\n    models: []\n",
                         ("models: []", "providers[5].models",
                          "needs at least 1 item (got 0)")),
    "concurrency": case(
        "capacity: {concurrency: 200000,", "capacity: {concurrency: 0,",
        ("concurrency: 0", "providers[0].capacity.concurrency",
         "Input should be greater than or equal to 1 (got 0)")),
    "queue-limit": case(
        "queue_limit: 400000}", "queue_limit: -1}",
        ("queue_limit: -1", "providers[0].capacity.queue_limit",
         "Input should be greater than or equal to 0 (got -1)")),
    "free-tokens": case(
        "incentive: {free_tokens: 150000000,", "incentive: {free_tokens: -1,",
        ("free_tokens: -1", "providers[1].incentive.free_tokens",
         "Input should be greater than or equal to 0 (got -1)")),
    "faults-error-rate": case(
        "    label: OpenAI\n", "    label: OpenAI\n    faults: {error_rate: 2}\n",
        ("faults: {error_rate: 2}", "providers[0].faults.error_rate",
         "Input should be less than or equal to 1 (got 2)")),
    "faults-error-status": case(
        "    label: OpenAI\n", "    label: OpenAI\n    faults: {error_status: 200}\n",
        ("faults: {error_status: 200}", "providers[0].faults.error_status",
         "Input should be greater than or equal to 400 (got 200)")),
    "faults-stall": case(
        "    label: OpenAI\n", "    label: OpenAI\n    faults: {stall_s: -1}\n",
        ("faults: {stall_s: -1}", "providers[0].faults.stall_s",
         "Input should be greater than or equal to 0 (got -1)")),
    "stage-action": case(
        "        action: warn\n", "        action: shout\n",
        ("action: shout", "policy.openai.stages[0].action",
         "Input should be 'allow', 'warn', 'throttle' or 'block' (got 'shout')")),
    "percent-above-100": case(
        "        action: warn\n", "        action: warn\n        percent: 101\n",
        ("percent: 101", "policy.openai.stages[0].percent",
         "Input should be less than or equal to 100 (got 101)")),
    "percent-negative": case(
        "        action: warn\n", "        action: warn\n        percent: -1\n",
        ("percent: -1", "policy.openai.stages[0].percent",
         "Input should be greater than or equal to 0 (got -1)")),
    "throttle-fraction": case(
        "        action: warn\n", "        action: warn\n        throttle_fraction: 1.5\n",
        ("throttle_fraction: 1.5", "policy.openai.stages[0].throttle_fraction",
         "Input should be less than or equal to 1 (got 1.5)")),
    "retry-after-negative": case(
        "        action: warn\n", "        action: warn\n        retry_after_s: -1\n",
        ("retry_after_s: -1", "policy.openai.stages[0].retry_after_s",
         "Input should be greater than or equal to 0 (got -1)")),
    "response-preset": case(
        BLOCK_RESPONSE, "response: {preset: nope}   ",
        ("response: {preset: nope}", "policy.openai.stages[1].response.preset",
         "Input should be 'openai_403', 'google_400_location', 'http_451', 'cloudflare_1009' or "
         "'openai_429' (got 'nope')")),
    "response-status-range": case(
        BLOCK_RESPONSE, "response: {status: 700, body: x}   ",
        ("response: {status: 700", "policy.openai.stages[1].response.status",
         "Input should be less than or equal to 599 (got 700)")),
    "detection-per-day": case(
        "      per_day: 0.02 ", "      per_day: 2 ",
        ("per_day: 2", "policy.openai.detection.per_day", "Input should be less than or equal to 1 (got 2)")),
    "detection-signal": case(
        "      signal: hosting_asn", "      signal: vibes",
        ("signal: vibes", "policy.openai.detection.signal", "Input should be 'hosting_asn' (got 'vibes')")),
    "failover-to-empty": case(
        "      to: [alibaba, deepseek]", "      to: []",
        ("to: []", "routing.failover[0].to", "needs at least 1 item (got 0)")),
    "failover-when": case(
        "      when: [block, error]", "      when: [block, timeout]",
        ("when: [block, timeout]", "routing.failover[0].when[1]",
         "Input should be 'block' or 'error' (got 'timeout')")),
    "bass-p": case(
        "anticipation: {p: 0.003, q: 0.08}", "anticipation: {p: 2, q: 0.08}",
        ("anticipation: {p: 2", "behaviour.announcement.anticipation.p",
         "Input should be less than or equal to 1 (got 2)")),
    "bass-q": case(
        "anticipation: {p: 0.003, q: 0.08}", "anticipation: {p: 0.003, q: 11}",
        ("anticipation: {p: 0.003, q: 11}", "behaviour.announcement.anticipation.q",
         "Input should be less than or equal to 10 (got 11)")),
    "relay-markup": case(
        "    markup: 0.3 ", "    markup: 11 ",
        ("markup: 11", "behaviour.relay.markup", "Input should be less than or equal to 10 (got 11)")),
    "relay-country-lower-case": case(
        "    country: SG ", "    country: sg ",
        ("country: sg", "behaviour.relay.country", "'sg' must be upper-case ('SG')")),
    "relay-country-unknown": case(
        "    country: SG ", "    country: XX ",
        ("country: XX", "behaviour.relay.country",
         f"'XX' is not an ISO 3166-1 alpha-2 code or a named set {ISO_SETS}")),
    "slo-regions": case(
        "  regions: [US, SG, JP, DE]", "  regions: [US, XX]",
        ("regions: [US, XX]", "slos.regions",
         f"'XX' is not an ISO 3166-1 alpha-2 code or a named set {ISO_SETS}")),
    "name-too-long": case("name: openai-2024-cn-hk", "name: " + "a" * 65,
                          ("a" * 65, "name", "String should have at most 64 characters")),
    "model-name-empty": case("{name: gpt-4o, price_in", "{name: '', price_in",
                             ("{name: ''", "providers[0].models[0].name",
                              "String should have at least 1 character")),
    "slo-latency": case(
        "  p99_latency_ms: 40000 ", "  p99_latency_ms: 0 ",
        ("p99_latency_ms: 0", "slos.p99_latency_ms", "Input should be greater than 0 (got 0)")),
    "slo-threshold-region": case(
        "    - {region: US, path: direct, ttft_p99_ms: 1500",
        "    - {region: XX, path: direct, ttft_p99_ms: 1500",
        ("{region: XX", "slos.thresholds[0].region",
         f"'XX' is not an ISO 3166-1 alpha-2 code or a named set {ISO_SETS}")),
    "slo-threshold-path": case(
        "    - {region: US, path: direct, ttft_p99_ms: 1500",
        "    - {region: US, path: tunnel, ttft_p99_ms: 1500",
        ("{region: US", "slos.thresholds[0].path", "Input should be 'direct' or 'relay' (got 'tunnel')")),
    "slo-error-rate": case(
        "  error_rate: 0.01 ", "  error_rate: 2 ",
        ("error_rate: 2", "slos.error_rate", "Input should be less than or equal to 1 (got 2)")),
    "missing-field": case(
        "    capacity: {concurrency: 200000, queue_limit: 400000}", "    # no capacity",
        ("  - name: openai", "providers[0].capacity", "required field is missing")),
    "missing-aliased-field": case(
        "    - from: openai ", "    - fro: openai ",
        ("- fro: openai", "routing.failover[0].fro", "unknown field"),
        ("- fro: openai", "routing.failover[0].from", "required field is missing")),
    # ---- distributions: each one's parameter rules, and unknown or missing `dist`
    "lognormal-median": case(CN_RTT, "{dist: lognormal, median: 0, sigma: 0.5}",
                             ("median: 0, sigma", "regions[0].rtt_ms.direct.median",
                              "Input should be greater than 0 (got 0)")),
    "lognormal-sigma": case(CN_RTT, "{dist: lognormal, median: 200, sigma: -0.5}",
                            ("sigma: -0.5", "regions[0].rtt_ms.direct.sigma",
                             "Input should be greater than or equal to 0 (got -0.5)")),
    "lognormal-missing-parameter": case(CN_RTT, "{dist: lognormal, median: 200}",
                                        ("{dist: lognormal, median: 200}", "regions[0].rtt_ms.direct.sigma",
                                         "required field is missing")),
    "lognormal-unknown-parameter": case(CN_RTT, "{dist: lognormal, median: 200, sigma: 0.5, mean: 3}",
                                        ("mean: 3}", "regions[0].rtt_ms.direct.mean", "unknown field")),
    "exponential-mean": case(WAIT_DAYS, "{dist: exponential, mean: 0}",
                             ("{dist: exponential, mean: 0}", "behaviour.wait_days.mean",
                              "Input should be greater than 0 (got 0)")),
    "constant-not-a-number": case(
        WAIT_DAYS, "{dist: constant, value: x}",
        ("{dist: constant, value: x}", "behaviour.wait_days.value",
         "Input should be a valid number, unable to parse string as a number (got 'x')")),
    "constant-missing-value": case(WAIT_DAYS, "{dist: constant}",
                                   ("{dist: constant}", "behaviour.wait_days.value",
                                    "required field is missing")),
    "uniform-order": case(WAIT_DAYS, "{dist: uniform, low: 3, high: 1}",
                          ("{dist: uniform", "behaviour.wait_days", "high (1.0) must be >= low (3.0)")),
    "pareto-xm": case(WAIT_DAYS, "{dist: pareto, xm: 0, alpha: 1.5}",
                      ("{dist: pareto", "behaviour.wait_days.xm", "Input should be greater than 0 (got 0)")),
    "pareto-alpha": case(WAIT_DAYS, "{dist: pareto, xm: 1, alpha: 0}",
                         ("{dist: pareto", "behaviour.wait_days.alpha",
                          "Input should be greater than 0 (got 0)")),
    "empirical-needs-0-and-1": case(WAIT_DAYS, "{dist: empirical, quantiles: {0.5: 1, 1.0: 2}}",
                                    ("{dist: empirical", "behaviour.wait_days.quantiles",
                                     "needs at least the probabilities 0.0 and 1.0")),
    "empirical-one-point": case(WAIT_DAYS, "{dist: empirical, quantiles: {0.0: 1}}",
                                ("{dist: empirical", "behaviour.wait_days.quantiles",
                                 "needs at least the probabilities 0.0 and 1.0")),
    "empirical-decreasing": case(WAIT_DAYS, "{dist: empirical, quantiles: {0.0: 1, 0.5: 3, 1.0: 2}}",
                                 ("{dist: empirical", "behaviour.wait_days.quantiles",
                                  "values must not decrease as the probability grows")),
    "unknown-dist": case(CN_RTT, "{dist: gamma, shape: 2}",
                         ("{dist: gamma", "regions[0].rtt_ms.direct",
                          f"unknown distribution 'gamma' (expected one of: {DISTS})")),
    "missing-dist": case(CN_RTT, "{median: 200, sigma: 0.5}",
                         ("{median: 200, sigma: 0.5}", "regions[0].rtt_ms.direct",
                          f"a distribution needs 'dist:' ({DISTS})")),
    "dist-not-a-mapping": case(CN_RTT, "200",
                               ("direct: 200", "regions[0].rtt_ms.direct",
                                "Input should be a valid dictionary or object to extract fields from")),
}

SEMANTIC_RULES: dict[str, Case] = {
    # ---- _window_rules (an end before the start also moves the announcement out of the window)
    "window-end-before-start": case(
        "  end: 2024-10-01 ", "  end: 2024-05-01 ",
        ("end: 2024-05-01", "window.end", "must be after window.start (2024-06-01T00:00:00+00:00)"),
        ("    at: 2024-06-25 ", "behaviour.announcement.at", "must lie inside the window")),
    "window-end-equals-start": case(
        "  end: 2024-10-01 ", "  end: 2024-06-01 ",
        ("end: 2024-06-01", "window.end", "must be after window.start (2024-06-01T00:00:00+00:00)"),
        ("    at: 2024-06-25 ", "behaviour.announcement.at", "must lie inside the window")),
    # ---- _region_rules
    "duplicate-region": case(
        "  - code: MO", "  - code: HK",
        ("  - code: HK\n    organisations: 150", "regions[2].code", "duplicate code 'HK'"),
        *[(needle, f"segments[{i}].share.MO", "unknown region 'MO'") for i, needle in enumerate((
            "share: {CN: 0.03, HK: 0.06, MO", "share: {CN: 0.07,", "share: {CN: 0.4,", "share: {CN: 0.5,"))]),
    # ---- _segment_rules
    "duplicate-segment": case(
        "  - name: hobbyist", "  - name: startup",
        ("  - name: startup\n    share: {CN: 0.5", "segments[3].name", "duplicate name 'startup'")),
    "share-unknown-region": case(
        "share: {CN: 0.4, HK: 0.4", "share: {CN: 0.4, XK: 0.0, HK: 0.4",
        ("XK: 0.0", "segments[2].share.XK", "unknown region 'XK'")),
    "model-mix-unknown-model": case(
        HOBBY_MIX, "model_mix: {gpt-5: 0.3, gpt-3.5-turbo: 0.7}",
        ("gpt-5: 0.3", "segments[3].model_mix.gpt-5",
         f"unknown model 'gpt-5' (the incumbent sells: {INCUMBENT_MODELS})")),
    "model-mix-sum": case(
        HOBBY_MIX, "model_mix: {gpt-4o: 0.3, gpt-3.5-turbo: 0.6}",
        ("gpt-3.5-turbo: 0.6}", "segments[3].model_mix", "shares must sum to 1 (they sum to 0.9)")),
    "model-mix-sum-just-outside-tolerance": case(
        HOBBY_MIX, "model_mix: {gpt-4o: 0.3, gpt-3.5-turbo: 0.700002}",
        ("0.700002", "segments[3].model_mix", "shares must sum to 1 (they sum to 1.000002)")),
    "region-shares-sum": case(
        "share: {CN: 0.5, HK: 0.45", "share: {CN: 0.6, HK: 0.45",
        ("segments:\n  - name: enterprise-azure", "segments",
         "shares for region CN must sum to 1 over segments (they sum to 1.1)")),
    # ---- _provider_rules
    "duplicate-provider": case(
        "  - name: baidu", "  - name: zhipu",
        ("  - name: zhipu\n    label: Baidu", "providers[2].name", "duplicate name 'zhipu'")),
    "duplicate-model": case(
        "{name: glm-4-air,", "{name: glm-4,",
        ("{name: glm-4, price_in: 0.14", "providers[1].models[1].name", "duplicate name 'glm-4'"),
        ("substitutes: {gpt-4o: glm-4,", "providers[1].substitutes.gpt-3.5-turbo",
         "zhipu has no model 'glm-4-air'")),
    "no-incumbent": case(
        "    incumbent: true\n", "",
        ("providers:", "providers", "exactly one provider must be the incumbent (found 0)")),
    "two-incumbents": case(
        "    label: Zhipu GLM\n", "    label: Zhipu GLM\n    incumbent: true\n",
        ("providers:", "providers", "exactly one provider must be the incumbent (found 2)")),
    "substitute-unknown-model": case(
        "substitutes: {gpt-4o: glm-4,", "substitutes: {gpt-4o: glm-5,",
        ("glm-5", "providers[1].substitutes.gpt-4o", "zhipu has no model 'glm-5'")),
    "incentive-deadline-before-window": case(
        "deadline: 2024-08-01", "deadline: 2024-05-01",
        ("deadline: 2024-05-01", "providers[3].incentive.deadline", "is before window.start")),
    # ---- _policy_rules
    "policy-unknown-provider": case(
        "policy:\n  openai:", "policy:\n  anthropic: {}\n  openai:",
        ("anthropic: {}", "policy.anthropic", "unknown provider 'anthropic'")),
    "duplicate-stage": case(
        "      - name: block\n", "      - name: announce\n",
        ("      - name: announce\n        start: 2024-07-09", "policy.openai.stages[1].name",
         "duplicate name 'announce'")),
    "stages-out-of-order": case(
        "        start: 2024-07-09 ", "        start: 2024-06-20 ",
        ("start: 2024-06-20", "policy.openai.stages[1].start", "must be after stages[0].start")),
    "stages-same-start": case(
        "        start: 2024-07-09 ", "        start: 2024-06-25 ",
        ("2024-06-25                                       # FACT: blocking",
         "policy.openai.stages[1].start", "must be after stages[0].start")),
    "stage-end-not-after-start": case(
        "        action: warn\n", "        action: warn\n        end: 2024-06-25\n",
        ("end: 2024-06-25", "policy.openai.stages[0].end", "must be after start")),
    "allow-list-unknown-segment": case(
        "allow_list: {segments: [enterprise-azure]}", "allow_list: {segments: [enterprise-aws]}",
        ("enterprise-aws", "policy.openai.stages[1].allow_list.segments[0]",
         "unknown segment 'enterprise-aws'")),
    "response-needs-body": case(
        BLOCK_RESPONSE, "response: {status: 403}   ",
        ("response: {status: 403}", "policy.openai.stages[1].response",
         "needs a preset, or both status and body")),
    "response-empty": case(
        BLOCK_RESPONSE, "response: {}   ",
        ("response: {}", "policy.openai.stages[1].response", "needs a preset, or both status and body")),
    "response-preset-and-custom": case(
        BLOCK_RESPONSE, "response: {preset: openai_403, body: x}   ",
        ("body: x", "policy.openai.stages[1].response",
         "give either a preset or a custom status/body, not both")),
    "detection-response": case(
        "      response: {preset: openai_403}\n\nrouting", "      response: {body: nope}\n\nrouting",
        ("response: {body: nope}", "policy.openai.detection.response",
         "needs a preset, or both status and body")),
    # ---- _routing_rules
    "failover-unknown-from": case(
        "    - from: openai ", "    - from: azure ",
        ("from: azure", "routing.failover[0].from", "unknown provider 'azure'")),
    "failover-unknown-to": case(
        "      to: [alibaba, deepseek]", "      to: [alibaba, mistral]",
        ("to: [alibaba, mistral]", "routing.failover[0].to[1]", "unknown provider 'mistral'")),
    "failover-to-itself": case(
        "      to: [alibaba, deepseek]", "      to: [alibaba, openai]",
        ("to: [alibaba, openai]", "routing.failover[0].to[1]", "cannot fail over to the same provider")),
    "failover-unknown-segment": case(
        "      segments: [enterprise]\n", "      segments: [enterprise, gov]\n",
        ("segments: [enterprise, gov]", "routing.failover[0].segments[1]", "unknown segment 'gov'")),
    # ---- _behaviour_rules
    "announcement-unknown-provider": case(
        "    provider: openai\n", "    provider: anthropic\n",
        ("provider: anthropic", "behaviour.announcement.provider", "unknown provider 'anthropic'")),
    "announcement-before-window": case(
        "    at: 2024-06-25 ", "    at: 2024-05-25 ",
        ("at: 2024-05-25", "behaviour.announcement.at", "must lie inside the window")),
    "announcement-after-window": case(
        "    at: 2024-06-25 ", "    at: 2024-10-02 ",
        ("at: 2024-10-02", "behaviour.announcement.at", "must lie inside the window")),
}


def _expected(text: str, expected: list[tuple[str, str, str]]) -> list[str]:
    return [f"{FILE}:{line_of(text, needle.strip())}: {path}: {message}"
            if "\n" not in needle else
            f"{FILE}:{_line_of_block(text, needle)}: {path}: {message}"
            for needle, path, message in expected]


def _line_of_block(text: str, block: str) -> int:
    """Line of the first line of a multi-line ``block`` (which must occur once)."""
    assert text.count(block) == 1, block
    return text[: text.index(block)].count("\n") + 1


@pytest.mark.parametrize("rule", list(FIELD_RULES), ids=list(FIELD_RULES))
def test_field_rule(rule: str) -> None:
    old, new, expected = FIELD_RULES[rule]
    text = patch(default_text(), old, new)
    assert problems(text) == _expected(text, expected)


@pytest.mark.parametrize("rule", list(SEMANTIC_RULES), ids=list(SEMANTIC_RULES))
def test_semantic_rule(rule: str) -> None:
    old, new, expected = SEMANTIC_RULES[rule]
    text = patch(default_text(), old, new)
    assert problems(text) == _expected(text, expected)


@pytest.mark.parametrize(("old", "new"), [
    (HOBBY_MIX, "model_mix: {gpt-4o: 0.3, gpt-3.5-turbo: 0.7000005}"),   # off by 5e-7 < 1e-6
    ("  end: 2024-10-01 ", "  end: 2024-06-25 "),                          # announcement at the end
    (WAIT_DAYS, "{dist: uniform, low: 3, high: 3}"),                       # a uniform of width 0
    (WAIT_DAYS, "{dist: empirical, quantiles: {0.0: 1, 0.5: 1, 1.0: 4}}"),  # flat steps allowed
    ("deadline: 2024-08-01", "deadline: 2024-06-01"),                      # deadline at the start
    ("        action: warn\n", "        action: warn\n        percent: 0\n"),
], ids=["share-within-tolerance", "announcement-at-window-end", "uniform-zero-width",
        "empirical-flat", "deadline-at-window-start", "percent-zero"])
def test_boundaries_are_accepted(old: str, new: str) -> None:
    load_text(patch(default_text(), old, new), file=FILE)


def test_all_problems_reported_at_once_in_file_order() -> None:
    text = patch(patch(patch(default_text(), "  bin: day", "  bin: week"),
                       "    markup: 0.3 ", "    markup: 11 "),
                 "  - code: CN", "  - code: cn")
    assert problems(text) == [
        f"s.yaml:{line_of(text, 'bin: week')}: window.bin: Input should be 'hour' or 'day' (got 'week')",
        f"s.yaml:{line_of(text, 'code: cn')}: regions[0].code: 'cn' must be upper-case ('CN')",
        f"s.yaml:{line_of(text, 'markup: 11')}: behaviour.relay.markup: "
        "Input should be less than or equal to 10 (got 11)",
    ]


def test_dates_read_as_utc() -> None:
    text = patch(default_text(), "  start: 2024-06-01 ", "  start: 2024-06-01T08:00:00+08:00 ")
    s = load_text(text, file=FILE).scenario
    assert s.window.start.isoformat() == "2024-06-01T00:00:00+00:00"
    naive = patch(default_text(), "  start: 2024-06-01 ", "  start: 2024-06-01T06:30:00 ")
    assert load_text(naive, file=FILE).scenario.window.start.isoformat() == "2024-06-01T06:30:00+00:00"



@pytest.mark.parametrize("line, date", [
    ("  start: 2024-06-01 ", "2024-06-01"),                   # window.start
    ("available_from: 2024-07-18", "2024-07-18"),             # a model's release
    ("deadline: 2024-08-01", "2024-08-01"),                   # an incentive's deadline
    ("        start: 2024-07-09 ", "2024-07-09"),             # a policy stage
    ("      start: 2024-07-25 ", "2024-07-25"),               # detection
    ("    at: 2024-06-25 ", "2024-06-25"),                    # the announcement
], ids=["window", "available_from", "deadline", "stage", "detection", "announcement"])
def test_quoted_times_without_a_zone_are_utc_in_every_datetime_field(line: str, date: str) -> None:
    """A quoted ISO time without a zone is parsed by pydantic, not by YAML: it must come out aware too.

    Before, it stayed naive and the first comparison with an aware date raised TypeError (and the
    gateway answered 500 to every request).
    """
    text = patch(default_text(), line, line.replace(date, f'"{date}T06:30"'))
    stamps = _all_datetimes(load_text(text, file=FILE).scenario)
    assert stamps and all(t.utcoffset() == dt.timedelta(0) for t in stamps)
    assert f"{date}T06:30:00+00:00" in {t.isoformat() for t in stamps}


def _all_datetimes(model: object) -> list[dt.datetime]:
    if isinstance(model, dt.datetime):
        return [model]
    if isinstance(model, dict):
        return [t for v in model.values() for t in _all_datetimes(v)]
    if isinstance(model, (list, tuple)):
        return [t for v in model for t in _all_datetimes(v)]
    if hasattr(type(model), "model_fields"):
        return [t for name in type(model).model_fields for t in _all_datetimes(getattr(model, name))]
    return []


def test_set_a_time_without_a_zone_is_utc() -> None:
    s = load_text(default_text(), file=FILE, overrides=["window.start=2024-06-01T00:00"]).scenario
    assert s.window.start.isoformat() == "2024-06-01T00:00:00+00:00"


SET = "s.yaml (--set {o})"


@pytest.mark.parametrize(("override", "path", "message"), [
    ("segments[0].requests_per_hour={dist: constant, value: -5}", "segments[0].requests_per_hour",
     "draws negative values (as low as -5); this law is of a count, a time, a rate or a price"),
    ("segments[0].tokens_in={dist: uniform, low: -5, high: 3}", "segments[0].tokens_in",
     "draws negative values (as low as -5); this law is of a count, a time, a rate or a price"),
    ("providers[0].latency.ttft_ms={dist: empirical, quantiles: {0.0: -1, 1.0: 5}}",
     "providers[0].latency.ttft_ms",
     "draws negative values (as low as -1); this law is of a count, a time, a rate or a price"),
    ("segments[0].requests_per_hour={dist: constant, value: .nan}",
     "segments[0].requests_per_hour.value", "Input should be a finite number"),
    ("providers[0].latency.ttft_ms={dist: constant, value: 1e400}",   # YAML reads 1e400 as infinity
     "providers[0].latency.ttft_ms.value", "Input should be a finite number"),
    ("providers[0].models[0].price_in=.inf", "providers[0].models[0].price_in",
     "Input should be a finite number"),
    ("behaviour.choice.price=.nan", "behaviour.choice.price", "Input should be a finite number"),
    ("providers[0].models[0].price_out=10000.5", "providers[0].models[0].price_out",
     "Input should be less than or equal to 10000 (got 10000.5)"),
    ("providers[0].latency.tokens_per_s={dist: constant, value: 0}", "providers[0].latency.tokens_per_s",
     "draws 0; this law is of a speed, which must be above 0 (a speed of 0 never finishes)"),
    ("segments[0].requests_per_hour={dist: constant, value: 1.0e+300}", "segments[0].requests_per_hour",
     "its mean is 1e+300 requests an hour; at most 10,000,000 (one organisation)"),
    ("segments[0].requests_per_hour={dist: lognormal, median: 100, sigma: 5}",
     "segments[0].requests_per_hour",
     "its mean is 2.683e+07 requests an hour; at most 10,000,000 (one organisation)"),
    ("segments[0].requests_per_hour={dist: pareto, xm: 1, alpha: 0.9}", "segments[0].requests_per_hour",
     "its mean is infinite (a Pareto law needs alpha above 1 here)"),
    ("window.end=2999-01-01", "window.end",
     "the window is 355,960 days long; at most 1,096 (three years) is simulated"),
    ("regions[0].organisations=1000000000000", "regions[0].organisations",
     "the regions hold 1,000,000,039,150 organisations; at most 1,000,000 are simulated (each has "
     "its own life in the model: use --scale, or fewer, larger organisations)"),
], ids=["negative-rate", "negative-uniform", "negative-empirical", "nan-rate", "inf-latency",
        "inf-price", "nan-coefficient", "price-past-10000", "zero-speed", "huge-rate",
        "lognormal-mean-too-high", "pareto-no-mean", "window-of-centuries", "a-trillion-orgs"])
def test_values_that_validated_then_crashed_the_simulator(override: str, path: str, message: str) -> None:
    """Each of these passed `scenario validate` and then raised in `simulate` (or ran for hours)."""
    assert problems(default_text(), [override]) == [f"{SET.format(o=override)}: {path}: {message}"]


@pytest.mark.parametrize("override", [
    "segments[0].requests_per_hour={dist: constant, value: 10000000}",   # the bound itself
    "providers[0].models[0].price_out=10000",
    "window.end=2027-06-01",                                              # 1,095 days
    "regions[0].organisations=960850",                                    # 1,000,000 in all
    "providers[0].latency.tokens_per_s={dist: exponential, mean: 50}",    # near 0, never 0
    "providers[0].latency.ttft_ms={dist: constant, value: 0}",            # a time may be 0
])
def test_the_bounds_themselves_are_accepted(override: str) -> None:
    load_text(default_text(), file=FILE, overrides=[override])
