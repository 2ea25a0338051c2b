"""The mock providers' Responses API (``POST /v1/responses``), whole and streamed.

``input`` is a string or an array of items (messages with string content or ``input_text``
parts, ``function_call_output`` items); ``instructions`` counts as one more message. Prompt
tokens follow the chat rule per message (``max(1, ceil(chars / 4))``). The answer is one output
item: a ``message`` with one ``output_text`` part, or (``tools`` of type ``function`` with a
``tool_choice`` that calls one) a ``function_call`` whose ``arguments`` are valid for its
parameters. ``text.format`` ``json_object`` / ``json_schema`` shape the text as in chat.
``max_output_tokens`` reached: ``status: "incomplete"``, ``incomplete_details.reason:
"max_output_tokens"``. Streamed, the events are the real API's, in its order, each with a
``sequence_number``: ``response.created``, ``response.in_progress``, ``response.output_item.added``,
(``response.content_part.added``, ``response.output_text.delta``…, ``response.output_text.done``,
``response.content_part.done`` | ``response.function_call_arguments.delta``…,
``response.function_call_arguments.done``), ``response.output_item.done``, and
``response.completed`` or ``response.incomplete``. Stateful features (``previous_response_id``,
``conversation``, ``background``, stored prompts) are refused with the API's 400.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from gateway.mock_completion import (
    Choice,
    Sampling,
    check_parameters,
    generate,
    parse_output_format,
    parse_tools,
)
from gateway.mock_endpoints import require_kind
from gateway.mock_upstream_wire import CHARS_PER_TOKEN, RequestError, parse_json_body, parse_model
from scenarios.schema import Provider

KNOWN = frozenset({"model", "input", "instructions", "max_output_tokens", "temperature", "top_p",
                   "stream", "tools", "tool_choice", "parallel_tool_calls", "text", "metadata",
                   "store", "user", "include", "truncation", "service_tier", "safety_identifier",
                   "prompt_cache_key", "max_tool_calls", "top_logprobs", "stream_options"})
UNSUPPORTED = frozenset({"previous_response_id", "conversation", "background", "prompt",
                         "reasoning"})


def input_tokens(value: Any, instructions: Any) -> int:
    """Σ max(1, ceil(chars / 4)) over the input's messages and the instructions."""
    items = [{"role": "user", "content": value}] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise RequestError(400, "Invalid 'input': expected a string or a non-empty array of items.",
                           param="input", code="invalid_value")
    total = 0 if instructions is None else _tokens(str(instructions))
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise RequestError(400, f"Invalid type for 'input[{i}]': expected an object.",
                               param=f"input[{i}]", code="invalid_type")
        total += _tokens(_item_text(item))
    return total


def _item_text(item: dict[str, Any]) -> str:
    if item.get("type") == "function_call_output":
        return str(item.get("output", ""))
    if item.get("type") == "function_call":
        return str(item.get("arguments", ""))
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


@dataclass(slots=True)
class ResponsesAnswer:
    """One Responses API answer (an ``Answer``; it counts the stream's sequence numbers, so
    ``head``, ``deltas`` and ``tail`` must be called once each, in stream order)."""

    request: dict[str, Any]
    model: str
    choice: Choice
    input_tokens: int
    response_id: str
    created: int
    stream: bool
    seq: int = 0

    @property
    def tokens(self) -> int:
        return self.choice.tokens

    # -------------------------------------------------------------- objects

    def usage(self) -> dict[str, Any]:
        out = self.choice.tokens
        return {"input_tokens": self.input_tokens,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": out, "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": self.input_tokens + out}

    @property
    def incomplete(self) -> bool:
        return self.choice.finish_reason == "length"

    @property
    def item_id(self) -> str:
        kind = "fc" if self.choice.tool else "msg"
        return f"{kind}_{self.response_id.removeprefix('resp_')}"

    def item(self, *, done: bool) -> dict[str, Any]:
        c = self.choice
        status = "incomplete" if done and self.incomplete else "completed" if done else "in_progress"
        if c.tool:
            return {"type": "function_call", "id": self.item_id, "call_id": c.call_id,
                    "name": c.tool.name, "arguments": c.text if done else "", "status": status}
        return {"type": "message", "id": self.item_id, "status": status, "role": "assistant",
                "content": [self.part()] if done else []}

    def part(self, text: str | None = None) -> dict[str, Any]:
        return {"type": "output_text", "text": self.choice.text if text is None else text,
                "annotations": [], "logprobs": []}

    def response(self, *, done: bool) -> dict[str, Any]:
        r = self.request
        status = ("incomplete" if self.incomplete else "completed") if done else "in_progress"
        tools = r.get("tools") or []
        return {
            "id": self.response_id, "object": "response", "created_at": self.created,
            "status": status, "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if done and self.incomplete else None,
            "instructions": r.get("instructions"), "max_output_tokens": r.get("max_output_tokens"),
            "model": self.model, "output": [self.item(done=True)] if done else [],
            "parallel_tool_calls": r.get("parallel_tool_calls", True),
            "previous_response_id": None, "reasoning": {"effort": None, "summary": None},
            "store": r.get("store", True), "temperature": r.get("temperature", 1.0),
            "text": r.get("text") or {"format": {"type": "text"}},
            "tool_choice": r.get("tool_choice", "auto"), "tools": tools,
            "top_p": r.get("top_p", 1.0), "truncation": r.get("truncation", "disabled"),
            "usage": self.usage() if done else None, "user": r.get("user"),
            "metadata": r.get("metadata") or {},
        }

    def body(self) -> dict[str, Any]:
        return self.response(done=True)

    # -------------------------------------------------------------- streamed

    def head(self) -> bytes:
        return self._events([
            ("response.created", {"response": self.response(done=False)}),
            ("response.in_progress", {"response": self.response(done=False)}),
            ("response.output_item.added", {"output_index": 0, "item": self.item(done=False)}),
            *([] if self.choice.tool else [("response.content_part.added", {
                "item_id": self.item_id, "output_index": 0, "content_index": 0,
                "part": self.part("")})]),
        ])

    def deltas(self, start: int, end: int) -> bytes:
        piece = "".join(self.choice.pieces[start:end])
        if not piece:
            return b""
        if self.choice.tool:
            return self._events([("response.function_call_arguments.delta", {
                "item_id": self.item_id, "output_index": 0, "delta": piece})])
        return self._events([("response.output_text.delta", {
            "item_id": self.item_id, "output_index": 0, "content_index": 0, "delta": piece,
            "logprobs": []})])

    def tail(self) -> bytes:
        text = self.choice.text
        if self.choice.tool:
            middle = [("response.function_call_arguments.done", {
                "item_id": self.item_id, "output_index": 0, "arguments": text})]
        else:
            middle = [
                ("response.output_text.done", {"item_id": self.item_id, "output_index": 0,
                                               "content_index": 0, "text": text, "logprobs": []}),
                ("response.content_part.done", {"item_id": self.item_id, "output_index": 0,
                                                "content_index": 0, "part": self.part()}),
            ]
        final = "response.incomplete" if self.incomplete else "response.completed"
        return self._events([*middle,
                             ("response.output_item.done", {"output_index": 0,
                                                            "item": self.item(done=True)}),
                             (final, {"response": self.response(done=True)})])


    def _events(self, events: list[tuple[str, dict[str, Any]]]) -> bytes:
        """Server-sent events ``event: TYPE`` / ``data: {"type": TYPE, "sequence_number", ...}``."""
        out = []
        for kind, data in events:
            payload = json.dumps({"type": kind, "sequence_number": self.seq, **data},
                                 separators=(",", ":"))
            self.seq += 1
            out.append(f"event: {kind}\ndata: {payload}\n\n".encode())
        return b"".join(out)


def responses_answer(raw: bytes, provider: Provider, *, response_id: str, created: int,
                     natural_tokens: int | None = None) -> ResponsesAnswer:
    body = parse_json_body(raw)
    check_parameters(body, KNOWN, UNSUPPORTED)
    model = require_kind(provider, parse_model(body), "responses").name
    if "input" not in body:
        raise RequestError(400, "Missing required parameter: 'input'.", param="input",
                           code="missing_required_parameter")
    tokens_in = input_tokens(body["input"], body.get("instructions"))
    cap = body.get("max_output_tokens")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 16):
        raise RequestError(400, f"Invalid 'max_output_tokens': integer below minimum value. Expected "
                                f"a value >= 16, but got {cap!r} instead.",
                           param="max_output_tokens", code="integer_below_min_value")
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    output, schema = parse_output_format(fmt, param="text.format",
                                         said=[body["input"], body.get("instructions")])
    stream = body.get("stream") is True
    sampling = Sampling(cap=cap, tool=parse_tools(body, flat=True), output=output, schema=schema)
    choice = generate(sampling, natural_tokens=natural_tokens, salt=model)[0]
    return ResponsesAnswer(body, model, choice, tokens_in, response_id, created, stream)
