"""What the mock providers' answers contain: every parameter honoured, checked with the SDK's types.

Each body and stream chunk is validated with the official ``openai`` SDK's pydantic models
(``model_validate``: required fields present, types right) and then asserted exactly.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types import Completion, CreateEmbeddingResponse, ModerationCreateResponse
from openai.types import Model as SdkModel
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response
from pydantic import BaseModel

from gateway.mock_completion import Sampling, Tool, generate
from gateway.mock_json import instance
from gateway.mock_upstream import make_upstream_app
from gateway.mock_upstream_wire import filler
from scenarios.loader import load

PROMPT = [{"role": "user", "content": "x" * 40}]  # 10 prompt tokens


def _provider(name: str = "openai") -> Any:
    return load("openai-2024-cn-hk").scenario.provider(name)


@pytest.fixture
async def mock(aiohttp_client: Any) -> Any:
    return await aiohttp_client(make_upstream_app(_provider(), time_scale=1e6))


async def _post(mock: Any, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    resp = await mock.post(path, json=body)
    raw = await resp.read()
    if resp.headers["content-type"].startswith("text/event-stream"):
        return resp.status, _sse(raw)
    return resp.status, json.loads(raw)


def _sse(raw: bytes) -> list[Any]:
    out: list[Any] = []
    for block in raw.decode().split("\n\n"):
        data = [line[6:] for line in block.split("\n") if line.startswith("data: ")]
        if data:
            out.append(data[0] if data[0] == "[DONE]" else json.loads(data[0]))
    return out


async def _chat(mock: Any, **params: Any) -> dict[str, Any]:
    status, body = await _post(mock, "/v1/chat/completions",
                               {"model": "gpt-4o", "messages": PROMPT, **params})
    assert status == 200, body
    ChatCompletion.model_validate(body)
    return dict(body)


async def _chat_stream(mock: Any, **params: Any) -> list[dict[str, Any]]:
    status, events = await _post(mock, "/v1/chat/completions", {
        "model": "gpt-4o", "messages": PROMPT, "stream": True,
        "stream_options": {"include_usage": True}, **params})
    assert status == 200 and events[-1] == "[DONE]"
    for e in events[:-1]:
        ChatCompletionChunk.model_validate(e)
    return list(events[:-1])


def _joined(chunks: list[dict[str, Any]], index: int = 0) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks
                   if c["choices"] and c["choices"][0]["index"] == index)


# ---------------------------------------------------------------- chat


async def test_default_answer_stops_by_itself_after_16_tokens(mock: Any) -> None:
    body = await _chat(mock)
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["choices"][0]["message"]["content"] == filler(0, 16)
    assert body["usage"] == {"prompt_tokens": 10, "completion_tokens": 16, "total_tokens": 26}


@pytest.mark.parametrize("cap", ["max_tokens", "max_completion_tokens"])
async def test_the_cap_ends_the_answer_with_length(mock: Any, cap: str) -> None:
    body = await _chat(mock, **{cap: 5})
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["choices"][0]["message"]["content"] == filler(0, 5)
    assert body["usage"]["completion_tokens"] == 5


async def test_n_choices_differ_and_are_all_billed(mock: Any) -> None:
    body = await _chat(mock, n=3, max_tokens=4)
    texts = [c["message"]["content"] for c in body["choices"]]
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert texts == [filler(0, 4), filler(3, 4), filler(6, 4)]
    assert body["usage"] == {"prompt_tokens": 10, "completion_tokens": 12, "total_tokens": 22}
    chunks = await _chat_stream(mock, n=3, max_tokens=4)
    assert [_joined(chunks, i) for i in range(3)] == texts
    assert chunks[-1]["usage"]["completion_tokens"] == 12


async def test_stop_sequence_ends_before_it_and_bills_through_it(mock: Any) -> None:
    body = await _chat(mock, stop=["sit"], max_tokens=10)
    choice = body["choices"][0]
    assert choice["message"]["content"] == "lorem ipsum dolor "
    assert choice["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == 4  # lorem ipsum dolor sit
    chunks = await _chat_stream(mock, stop="dolor", max_tokens=10)
    assert _joined(chunks) == "lorem ipsum "
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] == 3


async def test_seed_gives_the_same_completion_and_another_seed_another(mock: Any) -> None:
    a = await _chat(mock, seed=7, logprobs=True)
    b = await _chat(mock, seed=7, logprobs=True)
    c = await _chat(mock, seed=8, logprobs=True)
    assert a["choices"] == b["choices"] and a["choices"] != c["choices"]
    assert a["system_fingerprint"] == b["system_fingerprint"]


async def test_logprobs_shape(mock: Any) -> None:
    body = await _chat(mock, max_tokens=3, logprobs=True, top_logprobs=2)
    content = body["choices"][0]["logprobs"]["content"]
    assert [e["token"] for e in content] == ["lorem ", "ipsum ", "dolor "]
    for e in content:
        assert e["bytes"] == list(e["token"].encode()) and e["logprob"] < 0
        top = e["top_logprobs"]
        assert len(top) == 2 and top[0]["token"] == e["token"] and top[0]["logprob"] == e["logprob"]
        assert top[1]["logprob"] < top[0]["logprob"]
        assert sum(np.exp(t["logprob"]) for t in top) < 1
    chunks = await _chat_stream(mock, max_tokens=3, logprobs=True, top_logprobs=1)
    streamed = [e["token"] for c in chunks if c["choices"] and c["choices"][0]["logprobs"]
                for e in c["choices"][0]["logprobs"]["content"]]
    assert streamed == ["lorem ", "ipsum ", "dolor "]
    assert (await _chat(mock))["choices"][0]["logprobs"] is None


WEATHER = {"type": "object", "properties": {
    "city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]},
    "days": {"type": "integer", "minimum": 1, "maximum": 7}}, "required": ["city", "unit", "days"],
    "additionalProperties": False}
TOOLS = [{"type": "function", "function": {"name": "weather", "parameters": WEATHER}},
         {"type": "function", "function": {"name": "time", "parameters": {"type": "object"}}}]


class Weather(BaseModel):
    city: str
    unit: str
    days: int


@pytest.mark.parametrize("choice", ["required", "auto", {"type": "function",
                                                         "function": {"name": "weather"}}])
async def test_tools_give_a_tool_call_with_valid_arguments(mock: Any, choice: Any) -> None:
    body = await _chat(mock, tools=TOOLS, tool_choice=choice)
    c = body["choices"][0]
    assert c["finish_reason"] == "tool_calls" and c["message"]["content"] is None
    (call,) = c["message"]["tool_calls"]
    assert call["type"] == "function" and call["function"]["name"] == "weather"
    args = Weather.model_validate_json(call["function"]["arguments"])
    assert args.unit in ("c", "f") and 1 <= args.days <= 7
    out = len(call["function"]["arguments"])
    assert body["usage"]["completion_tokens"] == -(-out // 4)
    chunks = await _chat_stream(mock, tools=TOOLS, tool_choice=choice)
    deltas = [c["choices"][0]["delta"].get("tool_calls") for c in chunks if c["choices"]]
    assert deltas[0][0]["id"] == call["id"] and deltas[0][0]["function"]["name"] == "weather"
    streamed = "".join(d[0]["function"]["arguments"] for d in deltas if d)
    assert streamed == call["function"]["arguments"]


async def test_tool_choice_none_and_named_other_tool(mock: Any) -> None:
    assert (await _chat(mock, tools=TOOLS, tool_choice="none"))["choices"][0]["finish_reason"] == "stop"
    body = await _chat(mock, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "time"}})
    assert body["choices"][0]["message"]["tool_calls"][0]["function"] == {"name": "time",
                                                                          "arguments": "{}"}


async def test_json_object_is_json_and_needs_the_word(mock: Any) -> None:
    body = await _chat(mock, messages=[{"role": "user", "content": "answer in JSON"}],
                       response_format={"type": "json_object"})
    assert isinstance(json.loads(body["choices"][0]["message"]["content"]), dict)
    status, error = await _post(mock, "/v1/chat/completions", {
        "model": "gpt-4o", "messages": PROMPT, "response_format": {"type": "json_object"}})
    assert status == 400 and error["error"] == {
        "message": "'messages' must contain the word 'json' in some form, to use 'response_format' "
                   "of type 'json_object'.", "type": "invalid_request_error", "param": "messages",
        "code": None}


async def test_json_schema_content_is_valid_for_the_schema(mock: Any) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "weather", "schema": WEATHER, "strict": True}}
    body = await _chat(mock, response_format=fmt)
    Weather.model_validate_json(body["choices"][0]["message"]["content"])


@pytest.mark.parametrize(("params", "status", "param", "code"), [
    ({"audio": {"voice": "alloy"}}, 400, "audio", "unsupported_parameter"),
    ({"frobnicate": 1}, 400, None, None),
    ({"tool_choice": "required"}, 400, "tool_choice", None),
    ({"top_logprobs": 2}, 400, "top_logprobs", "invalid_value"),
    ({"stop": ["a", "b", "c", "d", "e"]}, 400, "stop", "array_above_max_length"),
    ({"tools": [{"type": "web_search"}]}, 400, "tools[0].type", "unsupported_value"),
    ({"model": "text-embedding-3-small"}, 404, "model", None),
])
async def test_refused_parameters_answer_openai_errors(mock: Any, params: dict[str, Any], status: int,
                                                       param: str | None, code: str | None) -> None:
    got, body = await _post(mock, "/v1/chat/completions", {"model": "gpt-4o", "messages": PROMPT,
                                                           **params})
    assert got == status
    assert (body["error"]["type"], body["error"]["param"], body["error"]["code"]) == (
        "invalid_request_error", param, code)


# ---------------------------------------------------------------- the other endpoints


async def test_model_retrieve(mock: Any) -> None:
    resp = await mock.get("/v1/models/text-embedding-3-small")
    SdkModel.model_validate(await resp.json())
    resp = await mock.get("/v1/models/glm-4")
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "model_not_found"


async def test_legacy_completions(mock: Any) -> None:
    status, body = await _post(mock, "/v1/completions", {
        "model": "gpt-3.5-turbo-instruct", "prompt": ["abcd", "abcdefgh"], "n": 2, "logprobs": 1,
        "echo": True})
    assert status == 200
    Completion.model_validate(body)
    assert [c["index"] for c in body["choices"]] == [0, 1, 2, 3]
    assert body["choices"][0]["text"] == "abcd" + filler(0, 16)  # the default cap: 16
    assert {c["finish_reason"] for c in body["choices"]} == {"length"}
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 64, "total_tokens": 67}
    lp = body["choices"][0]["logprobs"]
    assert lp["tokens"][0] == "lorem " and lp["text_offset"][:2] == [4, 10]
    status, events = await _post(mock, "/v1/completions", {
        "model": "gpt-3.5-turbo-instruct", "prompt": "hi", "max_tokens": 3, "stream": True,
        "stream_options": {"include_usage": True}})
    for e in events[:-1]:  # the real API streams finish_reason null, which the SDK's model types
        _validate_legacy_chunk(e)  # as required; every other field is checked as is
    assert "".join(c["choices"][0]["text"] for c in events[:-1] if c["choices"]) == filler(0, 3)
    assert events[-2]["usage"]["completion_tokens"] == 3 and events[-1] == "[DONE]"
    status, body = await _post(mock, "/v1/completions", {"model": "gpt-4o", "prompt": "x"})
    assert status == 404 and body["error"]["message"].startswith("This is a chat model")


def _validate_legacy_chunk(chunk: dict[str, Any]) -> None:
    choices = [{**c, "finish_reason": c["finish_reason"] or "stop"} for c in chunk["choices"]]
    Completion.model_validate({**chunk, "choices": choices})


async def test_embeddings_float_and_base64(mock: Any) -> None:
    status, body = await _post(mock, "/v1/embeddings", {"model": "text-embedding-3-small",
                                                        "input": ["abcd", "abcdefghi"]})
    assert status == 200
    CreateEmbeddingResponse.model_validate(body)
    vectors = [np.array(d["embedding"]) for d in body["data"]]
    assert [v.size for v in vectors] == [1536, 1536]
    assert all(abs(np.linalg.norm(v) - 1) < 1e-5 for v in vectors)
    assert body["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    status, b64 = await _post(mock, "/v1/embeddings", {"model": "text-embedding-3-small",
                                                       "input": "abcd", "encoding_format": "base64",
                                                       "dimensions": 8})
    decoded = np.frombuffer(base64.b64decode(b64["data"][0]["embedding"]), dtype="<f4")
    assert decoded.size == 8
    status, err = await _post(mock, "/v1/embeddings", {"model": "gpt-4o", "input": "x"})
    assert status == 400 and err["error"]["param"] == "model"


async def test_responses_whole_incomplete_and_streamed(mock: Any) -> None:
    status, body = await _post(mock, "/v1/responses", {"model": "gpt-4o", "input": "x" * 40,
                                                       "instructions": "abcd"})
    assert status == 200
    r = Response.model_validate(body)
    assert r.status == "completed" and r.output_text == filler(0, 16)
    assert body["usage"]["input_tokens"] == 11 and body["usage"]["output_tokens"] == 16
    status, body = await _post(mock, "/v1/responses", {"model": "gpt-4o", "input": "x",
                                                       "max_output_tokens": 20})
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    status, events = await _post(mock, "/v1/responses", {"model": "gpt-4o", "input": "x",
                                                         "stream": True, "max_output_tokens": 20})
    kinds = [e["type"] for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.incomplete"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == \
        filler(0, 20)


async def test_responses_function_call(mock: Any) -> None:
    tools = [{"type": "function", "name": "weather", "parameters": WEATHER, "strict": True}]
    status, body = await _post(mock, "/v1/responses", {"model": "gpt-4o", "input": "x",
                                                       "tools": tools, "tool_choice": "required"})
    assert status == 200
    r = Response.model_validate(body)
    (call,) = r.output
    assert call.type == "function_call" and call.name == "weather"
    Weather.model_validate_json(call.arguments)


# ---------------------------------------------------------------- pure functions


@settings(derandomize=True, max_examples=60)
@given(cap=st.integers(1, 40), stop=st.sampled_from(["", "sit", "m i", "elit", "zzz"]),
       n=st.integers(1, 3))
def test_cut_invariants(cap: int, stop: str, n: int) -> None:
    sampling = Sampling(n=n, cap=cap, stop=(stop,) if stop else ())
    for c in generate(sampling):
        assert c.tokens <= cap and len(c.pieces) <= c.tokens
        if stop:
            assert stop not in c.text
        full = filler(c.index * 3, c.tokens)
        assert full.startswith(c.text)
        assert c.finish_reason == ("stop" if c.tokens < cap or (stop and stop in full) else "length")


def test_json_instance_follows_refs_and_bounds() -> None:
    schema = {"$defs": {"P": {"type": "object", "properties": {"x": {"type": "number",
                                                                     "exclusiveMinimum": 2,
                                                                     "maximum": 3}}}},
              "type": "object", "properties": {"p": {"$ref": "#/$defs/P"},
                                               "tags": {"type": "array", "items": {"const": "t"},
                                                        "minItems": 3},
                                               "maybe": {"anyOf": [{"type": "null"},
                                                                   {"type": "boolean"}]}}}
    value = instance(schema, np.random.default_rng(0))
    assert 2 < value["p"]["x"] <= 3 and value["tags"] == ["t", "t", "t"]
    assert isinstance(value["maybe"], bool)
    assert Tool("f", schema).name == "f"


async def test_moderations_every_category_nothing_flagged(mock: Any) -> None:
    status, body = await _post(mock, "/v1/moderations", {"input": ["hello", {"type": "text",
                                                                             "text": "hi"}]})
    assert status == 200
    ModerationCreateResponse.model_validate(body)
    assert body["model"] == "omni-moderation-latest" and len(body["results"]) == 2
    for result in body["results"]:
        assert result["flagged"] is False and not any(result["categories"].values())
        assert all(0 <= v < 0.01 for v in result["category_scores"].values())
    status, again = await _post(mock, "/v1/moderations", {"input": "hello"})
    assert again["results"][0] == body["results"][0]  # a function of the input
    status, err = await _post(mock, "/v1/moderations", {"input": [{"type": "image_url"}]})
    assert status == 400 and err["error"]["code"] == "unsupported_value"
