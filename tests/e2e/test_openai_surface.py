"""The supported OpenAI surface through the gateway, driven by the official SDK (sync and async).

Real processes: ``regionblock upstreams`` (the mock providers) and ``regionblock gateway`` on
free ports, plus a second gateway on a variant of the scenario whose block stage throttles
(for 429 and ``Retry-After``). Every body and stream event is validated with the SDK's own
pydantic models (``model_validate``: required fields present, types right) before its values
are asserted; ledger rows are read back for tokens and revenue.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
import pytest
from e2e_support import UPSTREAMS_PORTS, free_port, free_run, spawn_regionblock, wait_ok
from openai import AsyncOpenAI, OpenAI
from openai.types import Completion, CreateEmbeddingResponse, ModerationCreateResponse
from openai.types import Model as SdkModel
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, TypeAdapter

from gateway.mock_upstream_wire import filler

pytestmark = pytest.mark.e2e

SCENARIO = "openai-2024-cn-hk"
UPSTREAM_SERVERS = 7
EVENT: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
LIBRARY = Path(__file__).resolve().parents[2] / "scenarios" / "library"
US_IP, CN_IP = "73.0.0.1", "1.2.4.8"
MESSAGES: Any = [{"role": "user", "content": "What is the capital of France?"}]  # 8 tokens


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@contextmanager
def _running(proc: subprocess.Popen[str], *urls: str) -> Iterator[subprocess.Popen[str]]:
    try:
        for url in urls:
            wait_ok(url, proc)
        yield proc
    finally:
        _stop(proc)


def _gateway(scenario: str, base: int, ledger: Path) -> tuple[int, subprocess.Popen[str]]:
    port = free_port()
    proc = spawn_regionblock("gateway", scenario, "--insecure-org-keys", "--port", str(port),
                             "--upstream-base-port", str(base), "--trusted-proxy", "127.0.0.1/32",
                             "--ledger", str(ledger), "--at", "2024-07-10")
    return port, proc


def _throttling_scenario(tmp: Path) -> Path:
    """The shipped scenario with its block stage throttling instead (429, Retry-After: 60)."""
    text = (LIBRARY / f"{SCENARIO}.yaml").read_text(encoding="utf-8")
    old = "action: block\n        response: {preset: openai_403}"
    assert old in text
    path = tmp / "throttled.yaml"
    path.write_text(text.replace(old, "action: throttle\n        response: {preset: openai_429}"),
                    encoding="utf-8")
    return path


class Stack:
    def __init__(self, port: int, throttled_port: int, ledger: Path) -> None:
        self.port, self.throttled_port, self.ledger = port, throttled_port, ledger

    def client(self, ip: str = US_IP, org: str = "us-startup-000001", *, port: int | None = None,
               key: str | None = None) -> OpenAI:
        return OpenAI(base_url=f"http://127.0.0.1:{port or self.port}/v1",
                      api_key=key or f"sk-{org}", max_retries=0, timeout=10,
                      default_headers={"X-Forwarded-For": ip})

    def async_client(self, ip: str = US_IP, org: str = "us-startup-000002") -> AsyncOpenAI:
        return AsyncOpenAI(base_url=f"http://127.0.0.1:{self.port}/v1", api_key=f"sk-{org}",
                           max_retries=0, timeout=10, default_headers={"X-Forwarded-For": ip})

    def row(self, request_id: str) -> dict[str, Any]:
        db = sqlite3.connect(self.ledger)
        db.row_factory = sqlite3.Row
        try:
            row = db.execute("SELECT * FROM requests WHERE request_id = ?", (request_id,)).fetchone()
        finally:
            db.close()
        assert row is not None, f"{request_id} missing from the ledger"
        return dict(row)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("surface")
    base = free_run(UPSTREAMS_PORTS)
    upstreams = spawn_regionblock("upstreams", SCENARIO, "--base-port", str(base),
                                  "--time-scale", "1000")
    health = [f"http://127.0.0.1:{base + i}/healthz" for i in range(UPSTREAM_SERVERS - 1)]
    with _running(upstreams, *health):
        port, gateway = _gateway(SCENARIO, base, tmp / "ledger.sqlite")
        tport, throttled = _gateway(str(_throttling_scenario(tmp)), base, tmp / "throttled.sqlite")
        with _running(gateway, f"http://127.0.0.1:{port}/readyz"), \
                _running(throttled, f"http://127.0.0.1:{tport}/readyz"):
            yield Stack(port, tport, tmp / "ledger.sqlite")


def _raw_json(raw: Any) -> Any:
    return raw.http_response.json()


# ---------------------------------------------------------------- models


def test_models_list_and_retrieve(stack: Stack) -> None:
    client = stack.client()
    listed = client.models.with_raw_response.list()
    for m in _raw_json(listed)["data"]:
        SdkModel.model_validate(m)
    ids = {m.id for m in listed.parse()}
    assert {"gpt-4o", "text-embedding-3-small", "gpt-3.5-turbo-instruct", "glm-4"} <= ids
    assert "gpt-4o-mini" not in ids  # released 2024-07-18; the clock says 2024-07-10
    model = client.models.retrieve("text-embedding-3-small")
    assert (model.id, model.object, model.owned_by) == ("text-embedding-3-small", "model", "openai")
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("gpt-5")
    assert caught.value.code == "model_not_found" and caught.value.param == "model"


# ---------------------------------------------------------------- chat completions


def test_chat_n_stop_length_and_exact_usage(stack: Stack) -> None:
    raw = stack.client().chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MESSAGES, n=3, max_tokens=6)
    ChatCompletion.model_validate(_raw_json(raw))
    done = raw.parse()
    assert [c.message.content for c in done.choices] == [filler(0, 6), filler(3, 6), filler(6, 6)]
    assert {c.finish_reason for c in done.choices} == {"length"}
    assert done.usage is not None and (done.usage.prompt_tokens, done.usage.completion_tokens) == (8, 18)
    row = stack.row(raw.headers["x-request-id"])
    assert (row["tokens_in"], row["tokens_out"]) == (8, 18)
    assert row["revenue_usd"] == (8 * 5.0 + 18 * 15.0) / 1e6
    stopped = stack.client().chat.completions.create(model="gpt-4o", messages=MESSAGES,
                                                     stop=["sit"], max_tokens=10)
    assert stopped.choices[0].message.content == "lorem ipsum dolor "
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.usage is not None and stopped.usage.completion_tokens == 4


def test_chat_seed_and_logprobs(stack: Stack) -> None:
    create = stack.client().chat.completions.create
    a = create(model="gpt-4o", messages=MESSAGES, seed=42, logprobs=True, top_logprobs=3, max_tokens=4)
    b = create(model="gpt-4o", messages=MESSAGES, seed=42, logprobs=True, top_logprobs=3, max_tokens=4)
    c = create(model="gpt-4o", messages=MESSAGES, seed=43, logprobs=True, top_logprobs=3, max_tokens=4)
    assert a.choices == b.choices and a.choices != c.choices
    assert a.system_fingerprint == b.system_fingerprint and a.system_fingerprint
    logprobs = a.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None and len(logprobs.content) == 4
    for entry in logprobs.content:
        assert len(entry.top_logprobs) == 3 and entry.top_logprobs[0].token == entry.token
        assert entry.bytes == list(entry.token.encode())


class Weather(BaseModel):
    city: str
    days: int


def test_chat_tools_required_give_valid_tool_calls(stack: Stack) -> None:
    done = stack.client().chat.completions.create(
        model="gpt-4o", messages=MESSAGES, tools=[openai.pydantic_function_tool(Weather)],
        tool_choice="required")
    choice = done.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "Weather"
    Weather.model_validate_json(call.function.arguments)


@pytest.mark.parametrize("choice", ["auto", {"type": "function", "function": {"name": "Other"}}])
def test_chat_tool_choice_auto_and_named(stack: Stack, choice: Any) -> None:
    class Other(BaseModel):
        flag: bool

    tools = [openai.pydantic_function_tool(Weather), openai.pydantic_function_tool(Other)]
    done = stack.client().chat.completions.create(model="gpt-4o", messages=MESSAGES, tools=tools,
                                                  tool_choice=choice)
    calls = done.choices[0].message.tool_calls
    assert calls is not None and len(calls) == 1
    expected = Weather if choice == "auto" else Other  # auto calls the first tool
    assert calls[0].function.name == expected.__name__
    expected.model_validate_json(calls[0].function.arguments)
    none = stack.client().chat.completions.create(model="gpt-4o", messages=MESSAGES, tools=tools,
                                                  tool_choice="none", max_completion_tokens=3)
    assert none.choices[0].message.tool_calls is None
    assert (none.choices[0].message.content, none.choices[0].finish_reason) == (filler(0, 3), "length")


def test_chat_structured_outputs_parse_into_the_model(stack: Stack) -> None:
    client = stack.client()
    parsed = client.chat.completions.parse(model="gpt-4o", messages=MESSAGES,
                                           response_format=Weather)
    assert isinstance(parsed.choices[0].message.parsed, Weather)
    obj = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "reply in json"}],
        response_format={"type": "json_object"})
    assert obj.choices[0].message.content and obj.choices[0].message.content.startswith("{")


def test_chat_stream_n_and_tools_chunks_are_complete(stack: Stack) -> None:
    chunks = list(stack.client().chat.completions.create(
        model="gpt-4o", messages=MESSAGES, n=2, max_tokens=5, stream=True,
        stream_options={"include_usage": True}))
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk.to_dict())
    texts = ["".join(c.choices[0].delta.content or "" for c in chunks
                     if c.choices and c.choices[0].index == i) for i in range(2)]
    assert texts == [filler(0, 5), filler(3, 5)]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 10
    calls = list(stack.client().chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True,
        tools=[openai.pydantic_function_tool(Weather)], tool_choice="required"))
    arguments = "".join(tc.function.arguments or "" for c in calls if c.choices
                        for tc in c.choices[0].delta.tool_calls or [] if tc.function)
    Weather.model_validate_json(arguments)
    assert [c.choices[0].finish_reason for c in calls if c.choices][-1] == "tool_calls"


# ---------------------------------------------------------------- legacy completions


def test_legacy_completions_whole_and_streamed(stack: Stack) -> None:
    client = stack.client()
    raw = client.completions.with_raw_response.create(
        model="gpt-3.5-turbo-instruct", prompt="Say hi", max_tokens=5, n=2, logprobs=2)
    Completion.model_validate(_raw_json(raw))
    done = raw.parse()
    assert [c.text for c in done.choices] == [filler(0, 5), filler(3, 5)]
    assert done.usage is not None and (done.usage.prompt_tokens, done.usage.completion_tokens) == (2, 10)
    assert done.choices[0].logprobs is not None and done.choices[0].logprobs.tokens == \
        ["lorem ", "ipsum ", "dolor ", "sit ", "amet "]
    row = stack.row(raw.headers["x-request-id"])
    assert (row["tokens_in"], row["tokens_out"], row["revenue_usd"]) == (
        2, 10, (2 * 1.5 + 10 * 2.0) / 1e6)
    raw_stream = client.completions.with_raw_response.create(
        model="gpt-3.5-turbo-instruct", prompt="Say hi", max_tokens=7, stream=True)
    chunks = list(raw_stream.parse())
    for chunk in chunks:  # the real API streams finish_reason null, which the SDK types as required
        data = chunk.to_dict()
        Completion.model_validate({**data, "choices": [
            {**c, "finish_reason": c.get("finish_reason") or "stop"} for c in data["choices"]]})
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == filler(0, 7)
    row = stack.row(raw_stream.headers["x-request-id"])
    assert (row["tokens_in"], row["tokens_out"], row["stream"], row["error"]) == (2, 7, 1, "")


# ---------------------------------------------------------------- embeddings


def test_embeddings_default_base64_and_float_are_billed_by_input(stack: Stack) -> None:
    client = stack.client()
    raw = client.embeddings.with_raw_response.create(model="text-embedding-3-small",
                                                     input=["abcd", "abcdefgh"])
    assert isinstance(_raw_json(raw)["data"][0]["embedding"], str)  # base64, as the SDK asked
    done = raw.parse()  # decoded by the SDK
    CreateEmbeddingResponse.model_validate(done.to_dict())
    assert [len(d.embedding) for d in done.data] == [1536, 1536]
    assert (done.usage.prompt_tokens, done.usage.total_tokens) == (3, 3)
    row = stack.row(raw.headers["x-request-id"])
    assert (row["tokens_in"], row["tokens_out"], row["revenue_usd"]) == (3, 0, 3 * 0.02 / 1e6)
    floats = client.embeddings.create(model="text-embedding-3-small", input="abcd",
                                      encoding_format="float", dimensions=64)
    assert len(floats.data[0].embedding) == 64
    again = client.embeddings.create(model="text-embedding-3-small", input="abcd", dimensions=64,
                                     encoding_format="float")
    assert again.data[0].embedding == floats.data[0].embedding
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="gpt-4o", input="x")
    assert caught.value.param == "model"


def test_moderations_are_free_and_complete(stack: Stack) -> None:
    raw = stack.client().moderations.with_raw_response.create(input=["hello", "world"])
    ModerationCreateResponse.model_validate(_raw_json(raw))
    done = raw.parse()
    assert done.model == "omni-moderation-latest" and [r.flagged for r in done.results] == [False] * 2
    row = stack.row(raw.headers["x-request-id"])
    assert (row["model"], row["tokens_in"], row["revenue_usd"], row["error"]) == (
        "omni-moderation-latest", 0, 0.0, "")


# ---------------------------------------------------------------- responses


def test_responses_whole_and_incomplete(stack: Stack) -> None:
    client = stack.client()
    raw = client.responses.with_raw_response.create(model="gpt-4o", input="x" * 40,
                                                    instructions="abcd")
    Response.model_validate(_raw_json(raw))
    done = raw.parse()
    assert done.status == "completed" and done.output_text == filler(0, 16)
    assert done.usage is not None and (done.usage.input_tokens, done.usage.output_tokens) == (11, 16)
    row = stack.row(raw.headers["x-request-id"])
    assert (row["tokens_in"], row["tokens_out"]) == (11, 16)
    short = client.responses.create(model="gpt-4o", input="x", max_output_tokens=16,
                                    tools=[{"type": "function", "name": "f", "strict": False,
                                            "parameters": Weather.model_json_schema()}],
                                    tool_choice="none")
    assert short.status == "incomplete" and short.incomplete_details is not None
    assert short.incomplete_details.reason == "max_output_tokens"


async def test_responses_stream_async(stack: Stack) -> None:
    client = stack.async_client()
    stream = await client.responses.create(model="gpt-4o", input="hello", stream=True)
    events = [e async for e in stream]
    for event in events:  # each event complete and typed as the reference documents it
        EVENT.validate_python(event.to_dict())
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == filler(0, 16)
    final = events[-1]
    assert final.type == "response.completed"
    Response.model_validate(final.response.to_dict())
    await client.close()


async def test_async_chat_embeddings_and_completions(stack: Stack) -> None:
    client = stack.async_client()
    chat, emb, legacy = await asyncio.gather(
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=3),
        client.embeddings.create(model="text-embedding-3-large", input="abcd"),
        client.completions.create(model="gpt-3.5-turbo-instruct", prompt="abcd", max_tokens=2))
    assert chat.choices[0].message.content == filler(0, 3)
    assert len(emb.data[0].embedding) == 3072
    assert legacy.choices[0].text == filler(0, 2)
    await client.close()


# ---------------------------------------------------------------- errors


def test_error_classes_and_headers(stack: Stack) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        stack.client().chat.completions.create(model="gpt-4o", messages=MESSAGES,
                                               audio={"voice": "alloy", "format": "wav"})
    assert (bad.value.code, bad.value.param) == ("unsupported_parameter", "audio")
    with pytest.raises(openai.AuthenticationError) as unauth:
        stack.client(key="not a key").embeddings.create(model="text-embedding-3-small", input="x")
    assert unauth.value.status_code == 401 and unauth.value.response.headers["x-request-id"]
    with pytest.raises(openai.PermissionDeniedError) as denied:
        stack.client(CN_IP, "cn-startup-000001").embeddings.create(model="text-embedding-3-small",
                                                                   input="x")
    assert denied.value.code == "unsupported_country_region_territory"
    assert stack.row(denied.value.response.headers["x-request-id"])["decision"] == "block"
    with pytest.raises(openai.NotFoundError) as missing:
        stack.client().completions.create(model="gpt-4o", prompt="x")
    assert missing.value.param == "model"
    with pytest.raises(openai.RateLimitError) as limited:
        stack.client(CN_IP, "cn-startup-000002", port=stack.throttled_port).responses.create(
            model="gpt-4o", input="x")
    assert limited.value.response.headers["retry-after"] == "60"
    assert limited.value.response.headers["x-request-id"]
    assert limited.value.code == "rate_limit_exceeded"


# ---------------------------------------------------------------- metrics


def test_metrics_parse_with_token_counters_per_endpoint(stack: Stack) -> None:
    stack.client().embeddings.create(model="text-embedding-3-small", input="abcdefgh")
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.port}/metrics", timeout=10) as r:
        families = {f.name: f for f in text_string_to_metric_families(r.read().decode())}
    tokens = {(s.labels["endpoint"], s.labels["model"]): s.value
              for s in families["regionblock_gateway_prompt_tokens"].samples
              if s.name.endswith("_total")}
    assert tokens[("embeddings", "text-embedding-3-small")] >= 2
    assert families["regionblock_gateway_prompt_tokens"].type == "counter"
    assert "process_cpu_seconds" in families
