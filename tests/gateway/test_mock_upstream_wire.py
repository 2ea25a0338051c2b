"""Token counting and the OpenAI wire format of the mock upstreams (pure functions)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.mock_chat import SYSTEM_FINGERPRINT, chat_answer
from gateway.mock_upstream_wire import (
    DEFAULT_COMPLETION_TOKENS,
    FILLER_WORDS,
    ChatRequest,
    RequestError,
    filler,
    parse_chat_request,
    prompt_tokens,
)

MODELS = ("gpt-4o", "gpt-3.5-turbo")


def _parse(body: object) -> ChatRequest:
    return parse_chat_request(json.dumps(body).encode(), MODELS)


@pytest.mark.parametrize(("contents", "expected"), [
    (["hi"], 1),                        # ceil(2/4) = 1
    (["abcd"], 1),                      # exactly 4 characters
    (["abcde"], 2),                     # ceil(5/4) = 2
    ([""], 1),                          # an empty message still counts 1
    (["x" * 400, "y" * 401], 100 + 101),
    ([None], 1),                        # assistant message with tool calls, no content
    ([[{"type": "text", "text": "abcdefgh"}, {"type": "image_url", "image_url": {}}]], 2),
])
def test_prompt_tokens_rule(contents: list[object], expected: int) -> None:
    messages = [{"role": "user", "content": c} for c in contents]
    assert prompt_tokens(messages) == expected


def test_completion_tokens_precedence() -> None:
    msgs = [{"role": "user", "content": "hello"}]
    assert _parse({"model": "gpt-4o", "messages": msgs}).completion_tokens == DEFAULT_COMPLETION_TOKENS == 16
    assert _parse({"model": "gpt-4o", "messages": msgs, "max_completion_tokens": 9}).completion_tokens == 9
    both = {"model": "gpt-4o", "messages": msgs, "max_tokens": 5, "max_completion_tokens": 9}
    assert _parse(both).completion_tokens == 5


@pytest.mark.parametrize(("body", "status", "param"), [
    ({"messages": [{"role": "user", "content": "x"}]}, 400, "model"),
    ({"model": "gpt-5", "messages": [{"role": "user", "content": "x"}]}, 404, None),
    ({"model": "gpt-4o", "messages": []}, 400, "messages"),
    ({"model": "gpt-4o", "messages": ["x"]}, 400, "messages.0"),
    ({"model": "gpt-4o", "messages": [{"content": 3}]}, 400, "messages.0.content"),
    ({"model": "gpt-4o", "messages": [{"content": "x"}], "max_tokens": 0}, 400, "max_tokens"),
    ({"model": "gpt-4o", "messages": [{"content": "x"}], "max_tokens": "7"}, 400, "max_tokens"),
    ({"model": "gpt-4o", "messages": [{"content": "x"}], "stream": "yes"}, 400, "stream"),
    ([1, 2], 400, None),
])
def test_bad_requests_are_refused_like_the_api(body: object, status: int, param: str | None) -> None:
    with pytest.raises(RequestError) as info:
        _parse(body)
    assert (info.value.status, info.value.param) == (status, param)
    assert info.value.body()["error"]["type"] == "invalid_request_error"


def test_unparseable_json_is_a_400() -> None:
    with pytest.raises(RequestError, match="could not parse the JSON") as info:
        parse_chat_request(b"{nope", MODELS)
    assert info.value.status == 400


def test_unknown_model_body_matches_the_real_api() -> None:
    with pytest.raises(RequestError) as info:
        _parse({"model": "gpt-5", "messages": [{"content": "x"}]})
    assert info.value.body() == {"error": {
        "message": "The model `gpt-5` does not exist or you do not have access to it.",
        "type": "invalid_request_error", "param": None, "code": "model_not_found"}}


def test_filler_is_one_word_per_token_and_splits_consistently() -> None:
    assert filler(0, 3) == "lorem ipsum dolor "
    assert filler(0, 10) == filler(0, 4) + filler(4, 6)
    assert len(filler(0, 1000).split()) == 1000


def test_completion_body_carries_exact_usage() -> None:
    req = _parse({"model": "gpt-4o", "messages": [{"content": "abcdefghi"}], "max_tokens": 3})
    body = chat_answer(req, completion_id="chatcmpl-1", created=7).body()
    assert body == {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 7, "model": "gpt-4o",
        "choices": [{"index": 0, "finish_reason": "length", "logprobs": None,
                     "message": {"role": "assistant", "content": "lorem ipsum dolor ",
                                 "refusal": None}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
        "system_fingerprint": SYSTEM_FINGERPRINT}


def test_usage_chunk_has_no_choices() -> None:
    req = _parse({"model": "gpt-4o", "messages": [{"content": "abcd"}], "max_tokens": 2,
                  "stream": True, "stream_options": {"include_usage": True}})
    events = chat_answer(req, completion_id="c", created=1).tail().split(b"\n\n")
    assert events[-1] == b"" and events[-2] == b"data: [DONE]"
    chunk = json.loads(events[-3][6:])
    assert chunk["choices"] == [] and chunk["usage"] == {
        "prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}


@given(start=st.integers(min_value=0, max_value=10**6), count=st.integers(min_value=0, max_value=300))
def test_filler_matches_its_definition(start: int, count: int) -> None:
    """Token k is FILLER_WORDS[k % len] plus a space, however the text is built."""
    expected = "".join(FILLER_WORDS[k % len(FILLER_WORDS)] + " " for k in range(start, start + count))
    assert filler(start, count) == expected
