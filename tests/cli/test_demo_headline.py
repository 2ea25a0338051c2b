"""The demo's headline: line 5 reads a load test's latency percentile only on enough requests."""

from __future__ import annotations

from regionblock.commands.demo import headline_text
from scenarios.rundir import band


def summaries(relay_requests: int) -> tuple[dict[str, object], dict[str, object]]:
    sim = {"headline": {"latency_ms.direct.p99.after": band([28397.8, 28397.8], unit="ms"),
                        "latency_ms.relay.p99.after": band([22221.4, 22221.4], unit="ms")}}
    lt = {"loadtest": {"timing": "true"},
          "headline": {"latency_ms.direct.p99.after": band([27887.25], unit="ms", requests=1784),
                       "latency_ms.relay.p99.after": band([49163.15], unit="ms",
                                                          requests=relay_requests)}}
    return sim, lt


def line_5(sim: dict[str, object], lt: dict[str, object]) -> str:
    return headline_text(sim, lt, "openai", 200).splitlines()[-1]


def test_a_p99_of_fewer_requests_than_the_slos_judge_on_is_not_printed_as_a_figure() -> None:
    # the demo of 2026-12-04: 15 relayed requests after the block; their p99 was their slowest
    assert line_5(*summaries(15)) == (
        "5. latency p99 after the block: direct 28,398 ms, relay 22,221 ms (simulated); "
        "load test (true time): direct 27,887 ms (1,784 requests), "
        "relay not read (15 requests, fewer than 200: too few to read)")


def test_a_p99_of_enough_requests_is_printed_with_their_count() -> None:
    assert line_5(*summaries(200)).endswith("relay 49,163 ms (200 requests)")


def test_a_path_the_load_test_served_nothing_on() -> None:
    sim, lt = summaries(15)
    del lt["headline"]["latency_ms.relay.p99.after"]  # type: ignore[attr-defined]
    assert line_5(sim, lt).endswith("relay n/a (no served requests)")
