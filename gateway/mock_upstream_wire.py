"""What the mock upstreams put on the wire: OpenAI-compatible bodies, chunks and error objects.

Token counting (the gateway and the load tests rely on it, so it is exact and documented):

* ``prompt_tokens`` = the sum over ``messages`` of ``max(1, ceil(len(content) / 4))``, where
  ``len(content)`` is the number of characters of a string content, the summed characters of the
  ``text`` of every text part when the content is a list of parts, and 0 when it is missing/null
  (such a message still counts 1 token).
* ``completion_tokens`` = ``max_tokens`` if given, else ``max_completion_tokens``, else 16
  (:data:`DEFAULT_COMPLETION_TOKENS`).
* ``total_tokens`` = their sum.

The generated text is one word per token: token ``k`` is ``FILLER_WORDS[k % len(FILLER_WORDS)]``
followed by a space, so the content of ``n`` tokens is always the same string. What an answer
contains beyond that (choices, stop, finish reasons, tools, JSON, logprobs) is decided in
:mod:`gateway.mock_completion` and written by :mod:`gateway.mock_chat`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_COMPLETION_TOKENS = 16
#: The most output tokens one request may ask for (keeps a bad request from exhausting memory).
MAX_COMPLETION_TOKENS = 1_000_000
CHARS_PER_TOKEN = 4
FILLER_WORDS = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit")


class RequestError(Exception):
    """A request the mock refuses, with the OpenAI-style status, message, param and code."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict[str, Any]:
        return error_body(self.message, kind=self.kind, param=self.param, code=self.code)


def error_body(message: str, *, kind: str, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """The OpenAI error object: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """The parts of a chat-completions request the mock acts on."""

    model: str
    prompt_tokens: int
    completion_tokens: int
    stream: bool
    include_usage: bool
    body: Mapping[str, Any] = field(default_factory=dict)  # the whole request, for the content


def parse_chat_request(raw: bytes, models: Sequence[str]) -> ChatRequest:
    """Validate a request body against this provider's ``models``; raise RequestError if bad."""
    body = parse_json_body(raw)
    model = parse_model(body)
    if model not in models:
        raise RequestError(404, f"The model `{model}` does not exist or you do not have access to it.",
                           code="model_not_found")
    stream = body.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise RequestError(400, f"Invalid value for 'stream': expected a boolean, got {stream!r}.",
                           param="stream")
    options = body.get("stream_options") or {}
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    return ChatRequest(model=model, prompt_tokens=prompt_tokens(body.get("messages")),
                       completion_tokens=completion_tokens(body), stream=bool(stream),
                       include_usage=include_usage, body=body)


def parse_json_body(raw: bytes) -> dict[str, Any]:
    """The request's JSON object, or the API's 400."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"We could not parse the JSON body of your request: {exc}") from None
    if not isinstance(body, dict):
        raise RequestError(400, "The request body must be a JSON object.")
    return body


def parse_model(body: Mapping[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError(400, "You must provide a model parameter.", param="model")
    return model


def prompt_tokens(messages: Any) -> int:
    """Σ max(1, ceil(chars / 4)) over the messages (see the module docstring)."""
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "'messages' must be a non-empty array.", param="messages")
    total = 0
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise RequestError(400, f"'messages.{i}' must be an object.", param=f"messages.{i}")
        chars = _content_chars(message.get("content"), i)
        total += max(1, math.ceil(chars / CHARS_PER_TOKEN))
    return total


def _content_chars(content: Any, i: int) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(len(part["text"]) for part in content
                   if isinstance(part, dict) and isinstance(part.get("text"), str))
    raise RequestError(400, f"'messages.{i}.content' must be a string, an array of parts or null.",
                       param=f"messages.{i}.content")


def completion_tokens(body: Mapping[str, Any]) -> int:
    """``max_tokens``, else ``max_completion_tokens``, else the default."""
    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_COMPLETION_TOKENS:
            raise RequestError(400, f"Invalid '{name}': expected an integer from 1 to "
                                    f"{MAX_COMPLETION_TOKENS}, got {value!r}.", param=name)
        return value
    return DEFAULT_COMPLETION_TOKENS


def filler(start: int, count: int) -> str:
    """The text of tokens ``start`` .. ``start + count - 1`` (one word and a space per token).

    Built by repeating and slicing one cycle of the words, so the cost is C-level per character
    rather than a Python step per token (this is the mock's hottest path).
    """
    first = start % len(FILLER_WORDS)
    reps = -(-(first + count) // len(FILLER_WORDS))
    return (_CYCLE * reps)[_char_offset(first):_char_offset(first + count)]


_CYCLE = "".join(word + " " for word in FILLER_WORDS)
_STARTS = tuple(sum(len(w) + 1 for w in FILLER_WORDS[:k]) for k in range(len(FILLER_WORDS)))


def _char_offset(token: int) -> int:
    """Where token ``token`` starts in ``_CYCLE`` repeated."""
    cycles, k = divmod(token, len(FILLER_WORDS))
    return cycles * len(_CYCLE) + _STARTS[k]


def sse(obj: Mapping[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


DONE_EVENT = b"data: [DONE]\n\n"


def models_body(models: Sequence[str], *, owner: str, created: int) -> dict[str, Any]:
    """``GET /v1/models``: the OpenAI list format."""
    return {"object": "list",
            "data": [{"id": m, "object": "model", "created": created, "owned_by": owner} for m in models]}
