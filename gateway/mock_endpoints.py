"""The mock providers' other endpoints: legacy completions, embeddings, one model, model kinds.

* ``POST /v1/completions`` (``text_completion``): ``prompt`` a string or an array of strings
  (or token arrays: one token per integer); ``n`` choices per prompt (``index`` = prompt·n + j);
  ``max_tokens`` defaults to 16 as in the real API, so an answer runs to it (``"length"``) unless a
  ``stop`` sequence ends it; ``echo`` puts the prompt before the text; ``logprobs`` (0–5) in the
  legacy shape (``tokens``, ``token_logprobs``, ``top_logprobs``, ``text_offset``); streamed as
  ``text_completion`` chunks, the usage chunk with ``stream_options.include_usage``, ``[DONE]``.
  Prompt tokens: Σ over prompts of ``max(1, ceil(chars / 4))`` (the chat rule), or the array's length.
* ``POST /v1/embeddings``: ``input`` a string, an array of strings, or token arrays; one unit-length
  vector per input, a deterministic function of (model, input), ``dimensions`` long if asked
  (text-embedding-3 models only), as float arrays or ``encoding_format: "base64"`` (little-endian
  float32, what the official SDK asks for by default). Usage: ``prompt_tokens`` = ``total_tokens``.
* ``POST /v1/moderations``: ``input`` a string, an array of strings or of ``text`` parts; one
  result per input with every category of the omni model, scores a deterministic function of the
  input, all below 0.01, so nothing is flagged (the mock has no classifier; image parts are refused).
  ``model`` defaults to :data:`DEFAULT_MODERATION_MODEL`. Moderation is free: no usage.
* A model is served only by the endpoint of its kind (``Model.kind``); another endpoint answers
  the real API's 404 for it.
"""

from __future__ import annotations

import base64
import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gateway.mock_completion import (
    Choice,
    Sampling,
    check_parameters,
    completion_tokens,
    generate,
    longest,
    parse_n,
    parse_seed,
    parse_stop,
    top_alternatives,
)
from gateway.mock_upstream_wire import (
    CHARS_PER_TOKEN,
    DONE_EVENT,
    RequestError,
    parse_json_body,
    parse_model,
    sse,
)
from scenarios.schema import Model, Provider

LEGACY_DEFAULT_MAX_TOKENS = 16
MAX_LEGACY_LOGPROBS = 5
MAX_EMBEDDING_INPUTS = 2048
#: Native vector length of known embedding models; another embedding model gets the default.
NATIVE_DIMENSIONS = {"text-embedding-3-large": 3072, "text-embedding-3-small": 1536,
                     "text-embedding-ada-002": 1536}
DEFAULT_DIMENSIONS = 1536
SHORTENABLE = ("text-embedding-3-",)  # models that accept ``dimensions``

LEGACY_KNOWN = frozenset({"model", "prompt", "max_tokens", "temperature", "top_p", "n", "stream",
                          "stream_options", "logprobs", "echo", "stop", "presence_penalty",
                          "frequency_penalty", "logit_bias", "user", "seed", "best_of"})
LEGACY_UNSUPPORTED = frozenset({"suffix"})
MODERATION_KNOWN = frozenset({"model", "input"})
DEFAULT_MODERATION_MODEL = "omni-moderation-latest"
MODERATION_CATEGORIES = ("harassment", "harassment/threatening", "hate", "hate/threatening",
                         "illicit", "illicit/violent", "self-harm", "self-harm/instructions",
                         "self-harm/intent", "sexual", "sexual/minors", "violence",
                         "violence/graphic")
EMBEDDING_KNOWN = frozenset({"model", "input", "encoding_format", "dimensions", "user"})

#: OpenAI's answers for a model on another kind's endpoint, by (model kind, endpoint).
WRONG_ENDPOINT = {
    ("chat", "completions"): "This is a chat model and not supported in the v1/completions "
                             "endpoint. Did you mean to use v1/chat/completions?",
    ("completion", "chat_completions"): "This is not a chat model and thus not supported in the "
                                        "v1/chat/completions endpoint. Did you mean to use "
                                        "v1/completions?",
    ("embedding", "chat_completions"): "This is not a chat model and thus not supported in the "
                                       "v1/chat/completions endpoint. Did you mean to use "
                                       "v1/completions?",
}
#: The model kind each endpoint serves, and how its refusal names the endpoint.
ENDPOINT_KINDS = {"chat_completions": ("chat", "v1/chat/completions endpoint"),
                  "moderations": ("moderation", "v1/moderations endpoint"),
                  "responses": ("chat", "Responses API"),
                  "completions": ("completion", "v1/completions endpoint"),
                  "embeddings": ("embedding", "v1/embeddings endpoint")}


def all_models(provider: Provider) -> tuple[Model, ...]:
    return (*provider.models, *provider.other_models)


def model_of(provider: Provider, name: str) -> Model | None:
    return next((m for m in all_models(provider) if m.name == name), None)


def require_kind(provider: Provider, name: str, endpoint: str) -> Model:
    """The model ``name`` if ``endpoint`` serves its kind, else the real API's error."""
    model = model_of(provider, name)
    if model is None:
        raise RequestError(404, f"The model `{name}` does not exist or you do not have access to it.",
                           code="model_not_found")
    kind, label = ENDPOINT_KINDS[endpoint]
    if model.kind != kind:
        message = WRONG_ENDPOINT.get((model.kind, endpoint))
        if message is not None:
            raise RequestError(404, message, param="model", code=None)
        raise RequestError(400, f"The model `{name}` does not support the {label}.", param="model",
                           code=None)
    return model


def model_object(provider: Provider, name: str) -> dict[str, Any]:
    """``GET /v1/models/{model}``, or the real API's 404 for a model this provider lacks."""
    if model_of(provider, name) is None:
        raise RequestError(404, f"The model '{name}' does not exist", param="model",
                           code="model_not_found")
    return {"id": name, "object": "model", "created": 0, "owned_by": provider.name}


# ---------------------------------------------------------------- legacy completions


def prompt_units(prompt: Any, param: str = "prompt") -> list[tuple[str, int]]:
    """(text, tokens) of each prompt of ``prompt`` / ``input``."""
    if isinstance(prompt, str):
        return [(prompt, _text_tokens(prompt))]
    if isinstance(prompt, list) and prompt:
        if all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            return [("", len(prompt))]
        if all(isinstance(p, str) for p in prompt):
            return [(p, _text_tokens(p)) for p in prompt]
        if all(isinstance(p, list) and p and all(isinstance(t, int) for t in p) for p in prompt):
            return [("", len(p)) for p in prompt]
    raise RequestError(400, f"'$.{param}' is invalid. Please check the API reference: "
                            "https://platform.openai.com/docs/api-reference.", param=param)


def _text_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


@dataclass(frozen=True, slots=True)
class LegacyAnswer:
    """A ``text_completion`` answer (an ``Answer``: whole or streamed)."""

    model: str
    prompts: tuple[tuple[str, int], ...]
    choices: tuple[Choice, ...]
    echo: bool
    logprobs: int | None
    stream: bool
    include_usage: bool
    completion_id: str
    created: int

    @property
    def tokens(self) -> int:
        return longest(self.choices)

    def usage(self) -> dict[str, int]:
        tin = sum(t for _, t in self.prompts)
        tout = completion_tokens(self.choices)
        return {"prompt_tokens": tin, "completion_tokens": tout, "total_tokens": tin + tout}

    def _prompt_of(self, c: Choice) -> str:
        return self.prompts[c.index // (len(self.choices) // len(self.prompts))][0]

    def body(self) -> dict[str, Any]:
        choices = []
        for c in self.choices:
            prefix = self._prompt_of(c) if self.echo else ""
            choices.append({"text": prefix + c.text, "index": c.index,
                            "logprobs": self._logprobs(c, 0, None, len(prefix)),
                            "finish_reason": c.finish_reason})
        return {"id": self.completion_id, "object": "text_completion", "created": self.created,
                "model": self.model, "system_fingerprint": None, "choices": choices,
                "usage": self.usage()}

    def _logprobs(self, c: Choice, start: int, end: int | None, offset: int) -> dict[str, Any] | None:
        if self.logprobs is None:
            return None
        tokens = list(c.pieces[start:end])
        values = list(c.logprobs[start:end])
        offsets, at = [], offset + sum(len(p) for p in c.pieces[:start])
        for t in tokens:
            offsets.append(at)
            at += len(t)
        top = [dict(top_alternatives(t, v, self.logprobs)) for t, v in zip(tokens, values, strict=True)]
        return {"tokens": tokens, "token_logprobs": values, "top_logprobs": top,
                "text_offset": offsets}

    def head(self) -> bytes:
        if not self.echo:
            return b""
        return b"".join(self._chunk(c.index, self._prompt_of(c), None, None) for c in self.choices)

    def deltas(self, start: int, end: int) -> bytes:
        out = []
        for c in self.choices:
            piece = "".join(c.pieces[start:end])
            if piece:
                offset = len(self._prompt_of(c)) if self.echo else 0
                out.append(self._chunk(c.index, piece, None, self._logprobs(c, start, end, offset)))
        return b"".join(out)

    def tail(self) -> bytes:
        out = [self._chunk(c.index, "", c.finish_reason, None) for c in self.choices]
        if self.include_usage:
            out.append(sse({**self._chunk_head(), "choices": [], "usage": self.usage()}))
        out.append(DONE_EVENT)
        return b"".join(out)

    def _chunk(self, index: int, text: str, finish: str | None,
               logprobs: dict[str, Any] | None) -> bytes:
        chunk: dict[str, Any] = {**self._chunk_head(), "choices": [
            {"text": text, "index": index, "logprobs": logprobs, "finish_reason": finish}]}
        if self.include_usage:
            chunk["usage"] = None
        return sse(chunk)

    def _chunk_head(self) -> dict[str, Any]:
        return {"id": self.completion_id, "object": "text_completion", "created": self.created,
                "model": self.model, "system_fingerprint": None}


def legacy_answer(raw: bytes, provider: Provider, *, completion_id: str, created: int,
                  natural_tokens: int | None = None) -> LegacyAnswer:
    body = parse_json_body(raw)
    check_parameters(body, LEGACY_KNOWN, LEGACY_UNSUPPORTED)
    model = require_kind(provider, parse_model(body), "completions").name
    if "prompt" not in body:
        raise RequestError(400, "Missing required parameter: 'prompt'.", param="prompt",
                           code="missing_required_parameter")
    prompts = tuple(prompt_units(body["prompt"]))
    n = parse_n(body)
    best_of = body.get("best_of")
    if best_of is not None and best_of != n:
        raise RequestError(400, "Unsupported parameter: 'best_of' is only supported equal to 'n' "
                                "with this model.", param="best_of", code="unsupported_parameter")
    cap = _int_in(body, "max_tokens", 1, 1_000_000, LEGACY_DEFAULT_MAX_TOKENS)
    logprobs = _int_in(body, "logprobs", 0, MAX_LEGACY_LOGPROBS, None)
    stream, include_usage = _stream_flags(body)
    sampling = Sampling(n=n * len(prompts), cap=cap, stop=parse_stop(body),
                        logprobs=logprobs is not None, seed=parse_seed(body))
    choices = generate(sampling, natural_tokens=natural_tokens, salt=model)
    return LegacyAnswer(model, prompts, choices, body.get("echo") is True, logprobs, stream,
                        include_usage, completion_id, created)


def _int_in(body: Mapping[str, Any], name: str, low: int, high: int, default: int | None) -> int | None:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RequestError(400, f"Invalid '{name}': expected an integer from {low} to {high}, got "
                                f"{value!r}.", param=name, code="invalid_value")
    return value


def _stream_flags(body: Mapping[str, Any]) -> tuple[bool, bool]:
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise RequestError(400, f"Invalid type for 'stream': expected a boolean, but got {stream!r}.",
                           param="stream", code="invalid_type")
    options = body.get("stream_options")
    if options is not None and not stream:
        raise RequestError(400, "The 'stream_options' parameter is only allowed when 'stream' is "
                                "enabled.", param="stream_options", code="invalid_value")
    return bool(stream), isinstance(options, dict) and options.get("include_usage") is True


# ---------------------------------------------------------------- embeddings


@dataclass(frozen=True, slots=True)
class EmbeddingAnswer:
    """An embeddings answer (an ``Answer`` that is never streamed and has no output tokens)."""

    model: str
    vectors: tuple[np.ndarray, ...]
    prompt_tokens: int
    base64: bool
    stream: bool = False
    tokens: int = 0

    def body(self) -> dict[str, Any]:
        data = [{"object": "embedding", "index": i, "embedding": self._encode(v)}
                for i, v in enumerate(self.vectors)]
        return {"object": "list", "data": data, "model": self.model,
                "usage": {"prompt_tokens": self.prompt_tokens, "total_tokens": self.prompt_tokens}}

    def _encode(self, vector: np.ndarray) -> Any:
        if self.base64:
            return base64.b64encode(vector.astype("<f4").tobytes()).decode()
        return [float(x) for x in vector.astype(np.float32)]

    def head(self) -> bytes:
        return b""

    def deltas(self, start: int, end: int) -> bytes:
        return b""

    def tail(self) -> bytes:
        return b""


def embedding_answer(raw: bytes, provider: Provider) -> EmbeddingAnswer:
    body = parse_json_body(raw)
    check_parameters(body, EMBEDDING_KNOWN, frozenset())
    model = require_kind(provider, parse_model(body), "embeddings").name
    if "input" not in body:
        raise RequestError(400, "Missing required parameter: 'input'.", param="input",
                           code="missing_required_parameter")
    units = prompt_units(body["input"], "input")
    if len(units) > MAX_EMBEDDING_INPUTS or any(text == "" and tokens == 0 for text, tokens in units):
        raise RequestError(400, "'$.input' is invalid. Please check the API reference: "
                                "https://platform.openai.com/docs/api-reference.", param="input")
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise RequestError(400, f"Invalid value for 'encoding_format': {fmt!r}. Supported values are:"
                                " 'float' and 'base64'.", param="encoding_format", code="invalid_value")
    size = _dimensions(body, model)
    vectors = tuple(_vector(model, repr(item), size) for item in _items(body["input"]))
    return EmbeddingAnswer(model, vectors, sum(t for _, t in units), fmt == "base64")


def _dimensions(body: Mapping[str, Any], model: str) -> int:
    native = NATIVE_DIMENSIONS.get(model, DEFAULT_DIMENSIONS)
    asked = body.get("dimensions")
    if asked is None:
        return native
    if not model.startswith(SHORTENABLE):
        raise RequestError(400, "This model does not support specifying dimensions.",
                           param="dimensions", code=None)
    if isinstance(asked, bool) or not isinstance(asked, int) or not 1 <= asked <= native:
        raise RequestError(400, f"Invalid 'dimensions': expected an integer from 1 to {native}, got "
                                f"{asked!r}.", param="dimensions", code="invalid_value")
    return asked


def _vector(model: str, text: str, size: int) -> np.ndarray:
    """A unit vector that depends only on (model, input): the same text embeds the same."""
    rng = np.random.default_rng([zlib.crc32(model.encode()), zlib.crc32(text.encode())])
    v = rng.standard_normal(size)
    return v / np.linalg.norm(v)


def _items(value: Any) -> list[Any]:
    """Each separate input: a string, or a token array, alone or in an array."""
    if isinstance(value, str) or all(isinstance(t, int) for t in value):
        return [value]
    return list(value)


# ---------------------------------------------------------------- moderations


@dataclass(frozen=True, slots=True)
class ModerationAnswer:
    """A moderations answer (an ``Answer`` that is never streamed and bills nothing)."""

    model: str
    texts: tuple[str, ...]
    moderation_id: str
    stream: bool = False
    tokens: int = 0

    def body(self) -> dict[str, Any]:
        return {"id": self.moderation_id, "model": self.model,
                "results": [self._result(t) for t in self.texts]}

    def _result(self, text: str) -> dict[str, Any]:
        rng = np.random.default_rng([zlib.crc32(self.model.encode()), zlib.crc32(text.encode())])
        scores = {c: float(s) for c, s in zip(MODERATION_CATEGORIES,
                                               rng.random(len(MODERATION_CATEGORIES)) * 0.01,
                                               strict=True)}
        return {"flagged": False, "categories": dict.fromkeys(MODERATION_CATEGORIES, False),
                "category_scores": scores,
                "category_applied_input_types": {c: ["text"] for c in MODERATION_CATEGORIES}}

    def head(self) -> bytes:
        return b""

    def deltas(self, start: int, end: int) -> bytes:
        return b""

    def tail(self) -> bytes:
        return b""


def moderation_answer(raw: bytes, provider: Provider, *, moderation_id: str) -> ModerationAnswer:
    body = parse_json_body(raw)
    check_parameters(body, MODERATION_KNOWN, frozenset())
    name = body.get("model", DEFAULT_MODERATION_MODEL)
    if not isinstance(name, str) or not name:
        raise RequestError(400, "Invalid type for 'model': expected a string.", param="model",
                           code="invalid_type")
    model = require_kind(provider, name, "moderations").name
    if "input" not in body:
        raise RequestError(400, "Missing required parameter: 'input'.", param="input",
                           code="missing_required_parameter")
    return ModerationAnswer(model, tuple(_moderation_texts(body["input"])), moderation_id)


def _moderation_texts(value: Any) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise RequestError(400, "'$.input' is invalid. Please check the API reference: "
                                "https://platform.openai.com/docs/api-reference.", param="input")
    out = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict) and item.get("type") == "text" and isinstance(item.get("text"), str):
            out.append(item["text"])
        else:
            raise RequestError(400, f"Unsupported value: 'input[{i}]' must be text; image inputs are "
                                    "not supported with this model.", param=f"input[{i}]",
                               code="unsupported_value")
    return out
