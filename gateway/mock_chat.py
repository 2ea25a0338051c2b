"""A mock provider's ``chat.completion`` and its ``chat.completion.chunk`` stream, from a request.

What the answer says is decided in :mod:`gateway.mock_completion`; this module writes it in the
chat-completions wire format: whole (``choices[i].message`` with ``content`` or ``tool_calls``,
``logprobs.content``), or streamed (per choice: a role chunk, content or tool-call argument
deltas, a finish chunk; then the usage chunk with ``stream_options.include_usage``, and
``data: [DONE]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.mock_completion import (
    Choice,
    Sampling,
    check_parameters,
    completion_tokens,
    generate,
    logprob_entries,
    longest,
    parse_chat_logprobs,
    parse_n,
    parse_output_format,
    parse_seed,
    parse_stop,
    parse_tools,
)
from gateway.mock_upstream_wire import DONE_EVENT, ChatRequest, sse

SYSTEM_FINGERPRINT = "fp_regionblock_mock"
KNOWN = frozenset({
    "model", "messages", "max_tokens", "max_completion_tokens", "n", "stop", "stream",
    "stream_options", "temperature", "top_p", "presence_penalty", "frequency_penalty", "logit_bias",
    "logprobs", "top_logprobs", "user", "seed", "tools", "tool_choice", "parallel_tool_calls",
    "response_format", "metadata", "store", "service_tier", "reasoning_effort", "verbosity",
    "safety_identifier", "prompt_cache_key"})
#: Parameters of the real API that the mock models do not offer: answered with OpenAI's 400.
UNSUPPORTED = frozenset({"audio", "modalities", "prediction", "web_search_options", "functions",
                         "function_call"})


def sampling_of(req: ChatRequest) -> Sampling:
    """The content parameters of a chat request (already checked for model, messages, tokens)."""
    body = req.body
    check_parameters(body, KNOWN, UNSUPPORTED)
    logprobs, top = parse_chat_logprobs(body)
    output, schema = parse_output_format(body.get("response_format"), param="response_format",
                                         said=body.get("messages"))
    cap = body.get("max_tokens") or body.get("max_completion_tokens")
    return Sampling(n=parse_n(body), cap=cap, stop=parse_stop(body), logprobs=logprobs,
                    top_logprobs=top, seed=parse_seed(body), tool=parse_tools(body),
                    output=output, schema=schema)


@dataclass(frozen=True, slots=True)
class ChatAnswer:
    """One chat-completions answer, as a whole body or as stream events (an ``Answer``)."""

    req: ChatRequest
    sampling: Sampling
    choices: tuple[Choice, ...]
    completion_id: str
    created: int

    @property
    def stream(self) -> bool:
        return self.req.stream

    @property
    def tokens(self) -> int:
        return longest(self.choices)

    def usage(self) -> dict[str, int]:
        out = completion_tokens(self.choices)
        return {"prompt_tokens": self.req.prompt_tokens, "completion_tokens": out,
                "total_tokens": self.req.prompt_tokens + out}

    def body(self) -> dict[str, Any]:
        return {"id": self.completion_id, "object": "chat.completion", "created": self.created,
                "model": self.req.model, "choices": [self._whole(c) for c in self.choices],
                "usage": self.usage(), "system_fingerprint": SYSTEM_FINGERPRINT}

    def _whole(self, c: Choice) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": None if c.tool else c.text,
                                   "refusal": None}
        if c.tool:
            message["tool_calls"] = [self._call(c, c.text)]
        return {"index": c.index, "finish_reason": c.finish_reason, "message": message,
                "logprobs": self._logprobs(c, 0, None)}

    def _call(self, c: Choice, arguments: str) -> dict[str, Any]:
        assert c.tool is not None
        return {"id": c.call_id, "type": "function",
                "function": {"name": c.tool.name, "arguments": arguments}}

    def _logprobs(self, c: Choice, start: int, end: int | None) -> dict[str, Any] | None:
        if not self.sampling.logprobs:
            return None
        return {"content": logprob_entries(c, start, end, self.sampling.top_logprobs),
                "refusal": None}

    # -------------------------------------------------------------- streamed

    def head(self) -> bytes:
        out = []
        for c in self.choices:
            delta: dict[str, Any] = {"role": "assistant", "content": None if c.tool else "",
                                     "refusal": None}
            if c.tool:
                delta["tool_calls"] = [{"index": 0, **self._call(c, "")}]
            out.append(self._chunk(c.index, delta, None, self._logprobs(c, 0, 0)))
        return b"".join(out)

    def deltas(self, start: int, end: int) -> bytes:
        out = []
        for c in self.choices:
            piece = "".join(c.pieces[start:end])
            if not piece:
                continue
            delta = {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]} if c.tool \
                else {"content": piece}
            out.append(self._chunk(c.index, delta, None, self._logprobs(c, start, end)))
        return b"".join(out)

    def tail(self) -> bytes:
        out = [self._chunk(c.index, {}, c.finish_reason, None) for c in self.choices]
        if self.req.include_usage:
            out.append(sse({**self._head(), "choices": [], "usage": self.usage()}))
        out.append(DONE_EVENT)
        return b"".join(out)

    def _chunk(self, index: int, delta: dict[str, Any], finish: str | None,
               logprobs: dict[str, Any] | None) -> bytes:
        chunk: dict[str, Any] = {**self._head(), "choices": [
            {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]}
        if self.req.include_usage:
            chunk["usage"] = None  # as the real API does: usage only in the last chunk
        return sse(chunk)

    def _head(self) -> dict[str, Any]:
        return {"id": self.completion_id, "object": "chat.completion.chunk",
                "created": self.created, "model": self.req.model,
                "system_fingerprint": SYSTEM_FINGERPRINT}


def chat_answer(req: ChatRequest, *, completion_id: str, created: int,
                natural_tokens: int | None = None) -> ChatAnswer:
    """The answer to a parsed chat request (raises RequestError for a parameter it refuses)."""
    sampling = sampling_of(req)
    choices = generate(sampling, natural_tokens=natural_tokens, salt=req.model)
    return ChatAnswer(req, sampling, choices, completion_id, created)
