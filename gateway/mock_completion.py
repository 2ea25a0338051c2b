"""What a mock provider's completion contains: pure functions from a request to choices and usage.

The pacing of an answer (time to first token, tokens per second) lives in
:mod:`gateway.mock_upstream`; this module only decides *what* is said, the same way for a
streamed and a whole answer, for chat completions, legacy completions and the Responses API:

* **Tokens.** A text answer is filler words, one word and a space per token
  (:func:`gateway.mock_upstream_wire.filler`). Structured output (a JSON object, JSON for a
  schema, tool-call arguments) is cut into tokens of :data:`JSON_CHARS_PER_TOKEN` characters.
* **Length.** A structured answer is as long as its JSON. A text answer is ``natural_tokens``
  long when the caller draws a length, else it runs on until the cap (``max_tokens``,
  ``max_completion_tokens``, ``max_output_tokens``) when there is one, else
  :data:`~gateway.mock_upstream_wire.DEFAULT_COMPLETION_TOKENS` words. An answer cut by the cap
  ends with ``finish_reason: "length"`` (a cut JSON is then invalid, as it is from the real API).
* **stop.** The answer ends before the first stop sequence (``finish_reason: "stop"``), which
  is not part of the content; the tokens up to the one that completed it are billed.
* **n.** ``n`` choices, each its own text (the filler starts further on per choice); the
  completion tokens of all choices are billed, the prompt once.
* **seed.** Everything an answer contains is a function of the request: the same request gives
  the same completion, and ``seed`` selects which (another seed, another text and logprobs).
* **logprobs.** One entry per emitted token, with ``top_logprobs`` alternatives of decreasing
  probability, the chosen token first (probabilities sum below 1).
* **tools.** ``tool_choice`` ``"auto"`` or ``"required"`` calls the first function tool, a named
  choice calls that function, ``"none"`` answers in text; arguments are JSON valid for the
  function's ``parameters`` (:mod:`gateway.mock_json`), ``finish_reason: "tool_calls"``.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from gateway.mock_json import instance
from gateway.mock_upstream_wire import DEFAULT_COMPLETION_TOKENS, FILLER_WORDS, RequestError, filler

JSON_CHARS_PER_TOKEN = 4
MAX_STOP = 4
MAX_TOP_LOGPROBS = 20
MAX_N = 128


@dataclass(frozen=True, slots=True)
class Tool:
    """The function a choice calls: its name and the JSON Schema of its arguments."""

    name: str
    parameters: Any


@dataclass(frozen=True, slots=True)
class Sampling:
    """The request parameters that shape the answer's content (validated)."""

    n: int = 1
    cap: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0
    seed: int | None = None
    tool: Tool | None = None
    output: str = "text"  # "text" | "json_object" | "json_schema"
    schema: Any = None


@dataclass(frozen=True, slots=True)
class Choice:
    """One generated choice: the text of each emitted token, what they cost, why they ended."""

    index: int
    pieces: tuple[str, ...]
    tokens: int
    finish_reason: str  # "stop" | "length" | "tool_calls"
    logprobs: tuple[float, ...]
    tool: Tool | None = None
    call_id: str = ""

    @property
    def text(self) -> str:
        return "".join(self.pieces)


# ---------------------------------------------------------------- generation


def generate(sampling: Sampling, *, natural_tokens: int | None = None,
             salt: str = "") -> tuple[Choice, ...]:
    """The ``n`` choices of the answer (``salt``: what else makes a request itself, e.g. its model)."""
    variant = _variant(sampling.seed, salt)
    return tuple(_choice(sampling, i, variant, natural_tokens) for i in range(sampling.n))


def _variant(seed: int | None, salt: str) -> int:
    """0 without a seed (so an unseeded answer starts at the first filler word), else a hash."""
    return 0 if seed is None else zlib.crc32(f"{seed}:{salt}".encode()) or 1


def _choice(s: Sampling, index: int, variant: int, natural_tokens: int | None) -> Choice:
    tool = s.tool
    # A generator costs tens of microseconds: a plain text answer without logprobs needs none.
    rng = np.random.default_rng([variant, index]) if tool or s.output != "text" or s.logprobs \
        else None
    if tool is not None:
        assert rng is not None
        pieces = _json_pieces(instance(tool.parameters, rng))
        natural = len(pieces)
    elif s.output != "text":
        assert rng is not None
        value = {"answer": filler(variant + index * 3, 8).strip()} if s.output == "json_object" \
            else instance(s.schema, rng)
        pieces = _json_pieces(value)
        natural = len(pieces)
    else:
        natural = natural_tokens or (s.cap + 1 if s.cap else DEFAULT_COMPLETION_TOKENS)
        pieces = text_pieces(variant + index * 3, min(natural, s.cap or natural))
    kept, tokens, finish = _cut(pieces, natural, s.cap, s.stop if tool is None else ())
    if tool is not None and finish == "stop":
        finish = "tool_calls"
    call_id = f"call_{zlib.crc32(f'{variant}:{index}'.encode()):08x}{index:04d}" if tool else ""
    return Choice(index=index, pieces=kept, tokens=tokens, finish_reason=finish,
                  logprobs=_logprob_values(rng, len(kept)) if rng and s.logprobs else (), tool=tool,
                  call_id=call_id)


_TOKENS = tuple(w + " " for w in FILLER_WORDS)


def text_pieces(start: int, count: int) -> tuple[str, ...]:
    """Filler tokens ``start`` .. ``start + count - 1``, one word and a space each (sliced from a
    repeated cycle: C-level work per token, as this is on the mock's hot path)."""
    first = start % len(_TOKENS)
    reps = -(-(first + count) // len(_TOKENS))
    return (_TOKENS * reps)[first:first + count]


def _json_pieces(value: Any) -> tuple[str, ...]:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return tuple(text[i:i + JSON_CHARS_PER_TOKEN] for i in range(0, len(text), JSON_CHARS_PER_TOKEN))


def _cut(pieces: tuple[str, ...], natural: int, cap: int | None,
         stop: tuple[str, ...]) -> tuple[tuple[str, ...], int, str]:
    """(emitted pieces, billed tokens, finish reason) after the cap and the stop sequences."""
    limit = min(natural, cap) if cap else natural
    pieces = pieces[:limit]
    text = "".join(pieces)
    at = min((p for p in (text.find(s) for s in stop) if p >= 0), default=-1)
    if at >= 0:
        end = at + len(next(s for s in stop if text.find(s) == at))
        kept, done, billed = [], 0, 0
        for piece in pieces:
            if done >= end:
                break
            billed += 1
            if done < at:
                kept.append(piece[:at - done])
            done += len(piece)
        return tuple(kept), billed, "stop"
    return pieces, len(pieces), "length" if cap is not None and natural > cap else "stop"


def _logprob_values(rng: np.random.Generator, count: int) -> tuple[float, ...]:
    """log p of each chosen token, p in (0.5, 1): the chosen token is always the likeliest."""
    return tuple(float(math.log(p)) for p in 0.5 + 0.5 * rng.random(count) * 0.999 + 0.0005)


def top_alternatives(token: str, logprob: float, count: int) -> list[tuple[str, float]]:
    """The ``count`` likeliest tokens at a position: the chosen one, then others sharing 1 − p."""
    rest = 1.0 - math.exp(logprob)
    words = [w + " " for w in FILLER_WORDS if w + " " != token]
    out = [(token, logprob)]
    for k in range(1, count):
        out.append((words[(k - 1) % len(words)] + ("" if k <= len(words) else str(k)),
                    math.log(rest * 0.5 ** k)))
    return out[:count]


def logprob_entries(choice: Choice, start: int = 0, end: int | None = None,
                    top: int = 0) -> list[dict[str, Any]]:
    """Chat-style logprobs ``content`` entries for emitted tokens ``start``..``end``."""
    out = []
    for token, lp in zip(choice.pieces[start:end], choice.logprobs[start:end], strict=True):
        out.append({"token": token, "logprob": lp, "bytes": list(token.encode()),
                    "top_logprobs": [{"token": t, "logprob": v, "bytes": list(t.encode())}
                                     for t, v in top_alternatives(token, lp, top)]})
    return out


def completion_tokens(choices: Sequence[Choice]) -> int:
    return sum(c.tokens for c in choices)


def longest(choices: Sequence[Choice]) -> int:
    """Tokens of the longest choice: the choices are generated side by side, so this paces them."""
    return max((c.tokens for c in choices), default=0)


# ---------------------------------------------------------------- request parameters


def bad(message: str, param: str | None, code: str | None = "invalid_value") -> RequestError:
    return RequestError(400, message, param=param, code=code)


def parse_n(body: Mapping[str, Any]) -> int:
    n = body.get("n")
    if n is None:
        return 1
    if isinstance(n, bool) or not isinstance(n, int):
        raise bad(f"Invalid type for 'n': expected an integer, but got {_kind(n)} instead.", "n",
                  "invalid_type")
    if not 1 <= n <= MAX_N:
        raise bad(f"Invalid 'n': expected a value between 1 and {MAX_N}, but got {n} instead.", "n")
    return n


def parse_stop(body: Mapping[str, Any]) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,) if stop else ()
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise bad("Invalid type for 'stop': expected a string or an array of strings.", "stop",
                  "invalid_type")
    if len(stop) > MAX_STOP:
        raise bad(f"Invalid 'stop': array too long. Expected an array with maximum length {MAX_STOP},"
                  f" but got an array with length {len(stop)} instead.", "stop",
                  "array_above_max_length")
    return tuple(s for s in stop if s)


def parse_seed(body: Mapping[str, Any]) -> int | None:
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise bad(f"Invalid type for 'seed': expected an integer, but got {_kind(seed)} instead.",
                  "seed", "invalid_type")
    return seed


def parse_chat_logprobs(body: Mapping[str, Any]) -> tuple[bool, int]:
    logprobs, top = body.get("logprobs"), body.get("top_logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise bad(f"Invalid type for 'logprobs': expected a boolean, but got {_kind(logprobs)} "
                  "instead.", "logprobs", "invalid_type")
    if top is None:
        return bool(logprobs), 0
    if isinstance(top, bool) or not isinstance(top, int):
        raise bad(f"Invalid type for 'top_logprobs': expected an integer, but got {_kind(top)} "
                  "instead.", "top_logprobs", "invalid_type")
    if not 0 <= top <= MAX_TOP_LOGPROBS:
        raise bad(f"Invalid 'top_logprobs': expected a value between 0 and {MAX_TOP_LOGPROBS}, but "
                  f"got {top} instead.", "top_logprobs")
    if not logprobs:
        raise bad("Invalid value for 'top_logprobs': 'logprobs' must be set to true when "
                  "'top_logprobs' is used.", "top_logprobs")
    return True, top


def parse_tools(body: Mapping[str, Any], *, flat: bool = False) -> Tool | None:
    """The function the answer calls, from ``tools`` and ``tool_choice`` (None: answer in text).

    ``flat``: the Responses API's shape (``{"type": "function", "name", "parameters"}``) instead
    of chat's (``{"type": "function", "function": {"name", "parameters"}}``).
    """
    tools, choice = body.get("tools"), body.get("tool_choice")
    if tools is None or tools == []:
        if choice is not None and choice != "none":
            raise bad("Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' "
                      "are specified.", "tool_choice", None)
        return None
    if not isinstance(tools, list):
        raise bad("Invalid type for 'tools': expected an array.", "tools", "invalid_type")
    functions = [_function(tool, i, flat) for i, tool in enumerate(tools)]
    if choice is None or choice in ("auto", "required"):
        return functions[0]
    if choice == "none":
        return None
    name = _chosen_name(choice, flat)
    for tool in functions:
        if tool.name == name:
            return tool
    raise bad(f"Invalid value for 'tool_choice': tool '{name}' is not in 'tools'.", "tool_choice")


def _function(tool: Any, i: int, flat: bool) -> Tool:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        kind = tool.get("type") if isinstance(tool, dict) else tool
        raise RequestError(400, f"Unsupported value: 'tools[{i}].type' does not support "
                                f"{json.dumps(kind)} with this model; only 'function' tools are "
                                "supported.", param=f"tools[{i}].type", code="unsupported_value")
    spec = tool if flat else tool.get("function")
    where = f"tools[{i}]" if flat else f"tools[{i}].function"
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
        raise bad(f"Missing required parameter: '{where}.name'.", f"{where}.name",
                  "missing_required_parameter")
    parameters = spec.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(parameters, dict):
        raise bad(f"Invalid type for '{where}.parameters': expected an object.",
                  f"{where}.parameters", "invalid_type")
    return Tool(spec["name"], parameters)


def _chosen_name(choice: Any, flat: bool) -> str:
    if isinstance(choice, dict) and choice.get("type") == "function":
        spec = choice if flat else choice.get("function")
        if isinstance(spec, dict) and isinstance(spec.get("name"), str):
            return str(spec["name"])
    raise bad(f"Invalid value for 'tool_choice': {json.dumps(choice)[:80]}. Supported values are: "
              "'none', 'auto', 'required' and a named function.", "tool_choice")


def parse_output_format(fmt: Any, *, param: str, said: Any) -> tuple[str, Any]:
    """(``text`` | ``json_object`` | ``json_schema``, schema) from ``response_format`` or
    (Responses API) ``text.format``; ``said``: the messages or input (json_object needs the
    word "json" in them)."""
    if fmt is None:
        return "text", None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return "text", None
    if kind == "json_object":
        if not mentions_json(said):
            raise bad(f"'messages' must contain the word 'json' in some form, to use '{param}' of "
                      "type 'json_object'.", "messages" if param == "response_format" else "input",
                      None)
        return "json_object", None
    if kind == "json_schema":
        assert isinstance(fmt, dict)
        spec = fmt.get("json_schema") if param == "response_format" else fmt
        where = f"{param}.json_schema" if param == "response_format" else param
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise bad(f"Missing required parameter: '{where}.name'.", f"{where}.name",
                      "missing_required_parameter")
        schema = spec.get("schema", {})
        if not isinstance(schema, dict):
            raise bad(f"Invalid type for '{where}.schema': expected an object.", f"{where}.schema",
                      "invalid_type")
        return "json_schema", schema
    raise bad(f"Invalid value: {json.dumps(kind)}. Supported values are: 'text', 'json_object' and "
              "'json_schema'.", f"{param}.type")


def mentions_json(value: Any) -> bool:
    """Whether a message list (or input) contains the word "json", as OpenAI checks it."""
    return "json" in json.dumps(value, ensure_ascii=False).lower()


def _kind(value: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
             list: "an array", dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def check_parameters(body: Mapping[str, Any], known: frozenset[str],
                     unsupported: frozenset[str]) -> None:
    """OpenAI's 400 for a parameter this mock model does not offer, or one no endpoint knows:
    never silently ignored."""
    for name in body:
        if name in unsupported:
            raise RequestError(400, f"Unsupported parameter: '{name}' is not supported with this "
                                    "model.", param=name, code="unsupported_parameter")
        if name not in known:
            raise RequestError(400, f"Unrecognized request argument supplied: {name}")


class Answer(Protocol):
    """What :mod:`gateway.mock_upstream` paces and sends, whatever the endpoint."""

    @property
    def stream(self) -> bool:
        """Whether the client asked for a stream of events."""
        ...

    @property
    def tokens(self) -> int:
        """Output tokens of the longest choice (the pace of the answer)."""
        ...

    def body(self) -> dict[str, Any]:
        """The whole answer, not streamed."""
        ...

    def head(self) -> bytes:
        """The stream's first events (before token 0)."""
        ...

    def deltas(self, start: int, end: int) -> bytes:
        """The events carrying tokens ``start`` .. ``end - 1``."""
        ...

    def tail(self) -> bytes:
        """The events after the last token, through the end of the stream."""
        ...
