"""Requests on the wire and reading responses: agreement with the mock upstream's token rule."""

from __future__ import annotations

import json

import pytest

from gateway.mock_upstream_wire import parse_chat_request
from loadtests.wire import DenialStatuses, chat_body, classify, prompt_text, read_sse_lines, usage_of
from scenarios.loader import load
from scenarios.policy import OPENAI_403_BODY, WARN_HEADER


@pytest.mark.parametrize("tokens", [1, 7, 350, 2048])
def test_the_mock_counts_exactly_the_tokens_asked_for(tokens: int) -> None:
    body = chat_body("gpt-4o", tokens, 33, stream=True)
    req = parse_chat_request(body, ["gpt-4o"])
    assert (req.prompt_tokens, req.completion_tokens) == (tokens, 33)
    assert req.stream and req.include_usage
    assert len(prompt_text(tokens)) == 4 * tokens


def test_non_streamed_body_has_no_stream_options() -> None:
    body = json.loads(chat_body("gpt-4o", 5, 6, stream=False))
    assert body == {"model": "gpt-4o", "messages": [{"role": "user", "content": prompt_text(5)}],
                    "max_tokens": 6, "stream": False}


def test_denial_statuses_come_from_the_scenarios_presets() -> None:
    d = DenialStatuses.of(load("openai-2024-cn-hk").scenario)
    assert d == DenialStatuses(frozenset({403}), frozenset({429}))
    custom = load("openai-2024-cn-hk", ("policy.openai.stages[1].response={preset: http_451}",))
    assert 451 in DenialStatuses.of(custom.scenario).block


@pytest.mark.parametrize(("status", "headers", "complete", "expected"), [
    (200, {}, True, "allow"),
    (200, {WARN_HEADER: "blocked from July 9"}, True, "warn"),
    (200, {}, False, "failed"),  # a stream that broke off
    (403, {"x-request-id": "r1"}, True, "block"),
    (429, {"retry-after": "60"}, True, "throttle"),
    (429, {"x-regionblock-provider": "zhipu"}, True, "failed"),  # the upstream's own 429
    (403, {"x-regionblock-provider": "openai"}, True, "failed"),  # an upstream 403 passed on
    (503, {}, True, "failed"),
    (0, {}, False, "failed"),
])
def test_classify(status: int, headers: dict[str, str], complete: bool, expected: str) -> None:
    denials = DenialStatuses(frozenset({403}), frozenset({429}))
    assert classify(status, headers, denials, complete=complete) == expected


def test_read_sse_finds_first_content_usage_and_done() -> None:
    events = [
        b'data: {"choices":[{"index":0,"delta":{"role":"assistant"}}]}',
        b"",
        b'data: {"choices":[{"index":0,"delta":{"content":"lorem "}}],"usage":null}',
        b'data: {"choices":[{"index":0,"delta":{"content":"ipsum "}}],"usage":null}',
        b'data: {"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":2}}',
        b"data: [DONE]",
    ]
    hits: list[int] = []
    reading = read_sse_lines(events, lambda: hits.append(1))
    assert reading.done and reading.usage == (12, 2) and hits == [1]


def test_a_stream_without_done_is_not_done() -> None:
    reading = read_sse_lines([b'data: {"choices":[{"delta":{"content":"x"}}]}'])
    assert not reading.done and reading.usage is None


def test_usage_of_whole_bodies() -> None:
    assert usage_of(b'{"usage":{"prompt_tokens":3,"completion_tokens":4}}') == (3, 4)
    assert usage_of(OPENAI_403_BODY) is None
    assert usage_of(b"not json") is None
