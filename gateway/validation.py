"""Request validation: the chat-completions body, checked like OpenAI checks it (400s).

Only what the gateway relies on, plus the common parameters whose wrong type would otherwise
reach the upstream: a JSON object; ``model`` a non-empty string; ``messages`` a non-empty array
of objects with a known ``role``; ``stream`` a boolean; ``stream_options`` an object, only with
``stream``; token limits positive integers; ``n``, ``temperature``, ``top_p`` in range.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from json.scanner import make_scanner
from typing import Any

from gateway.errors import BadRequest

ROLES = frozenset({"system", "user", "assistant", "tool", "function", "developer"})
JSON_MESSAGE = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
    "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not "
    "valid JSON. If you have trouble figuring out how to fix this, please contact us through our "
    "help center at help.openai.com.)"
)
_DECODER = json.JSONDecoder()
_SCAN: Callable[[str, int], tuple[Any, int]] = make_scanner(_DECODER)  # type: ignore[arg-type]
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_POSITIVE = ("max_tokens", "max_completion_tokens")  # positive integers when given
_RANGES = (("n", 1, 128, True), ("temperature", 0.0, 2.0, False), ("top_p", 0.0, 1.0, False))
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
               list: "an array", dict: "an object", type(None): "null"}


@dataclass(slots=True)  # not frozen: a frozen dataclass costs a microsecond to build, per request
class ChatRequest:
    body: dict[str, Any]
    model: str
    stream: bool
    include_usage: bool  # the client itself asked for the usage chunk


def parse_chat(raw: bytes) -> ChatRequest:
    try:
        body = _loads(raw)
    except (ValueError, RecursionError):
        raise BadRequest(JSON_MESSAGE) from None
    if not isinstance(body, dict):
        raise BadRequest(f"Invalid type for request body: expected an object, but got "
                         f"{_kind(body)} instead.", code="invalid_type")
    model = body.get("model")
    if type(model) is not str:  # (the common case takes no call; the checks name the error)
        model = _required(body, "model", str)
    if not model:
        raise BadRequest("you must provide a model parameter", param="model")
    messages = body.get("messages")
    _messages(messages if type(messages) is list else _required(body, "messages", list))
    stream = body.get("stream")
    if stream is None:
        stream = False
    elif stream is not True and stream is not False:
        _typed(stream, "stream", bool)
    options = body.get("stream_options")
    include = False
    if options is not None:
        _typed(options, "stream_options", dict)
        if not stream:
            raise BadRequest("The 'stream_options' parameter is only allowed when 'stream' is "
                             "enabled.", param="stream_options", code="invalid_value")
        include = bool(options and _optional(options, "include_usage", bool, False,
                                             "stream_options."))
    for name in _POSITIVE:
        value = body.get(name)
        if value is not None and (type(value) is not int or value < 1):  # (valid: no call)
            _positive_int(body, name)
    for name, low, high, integer in _RANGES:
        if name in body:
            _range(body, name, low, high, integer=integer)
    return ChatRequest(body, model, stream, include)


def _loads(raw: bytes) -> Any:
    """``json.loads(raw)``, minus its encoding detection when the body is plainly UTF-8 JSON text
    (an object's ``{`` then a non-NUL byte: what json.detect_encoding calls UTF-8).

    Strict UTF-8 (an encoded surrogate is not UTF-8), and no lone surrogate from a ``\\uD800``
    escape either: such a string cannot be encoded again, neither for the upstream nor for the
    ledger (where it once wedged the writer). A valid pair decodes to one code point, so the walk
    only runs when a surrogate escape is present and only fails on a lone one.
    """
    if raw[:1] == b"{" and raw[1:2] != b"\x00":
        text = raw.decode("utf-8")
        try:  # the decoder's own scanner: JSONDecoder.decode without its two frames and regexes
            value, end = _SCAN(text, 0)
        except StopIteration as err:
            raise json.JSONDecodeError("Expecting value", text, err.value) from None
        if end != len(text) and text[end:].strip(" \t\n\r"):
            raise json.JSONDecodeError("Extra data", text, end)
    else:
        value = _DECODER.decode(raw.decode(json.detect_encoding(raw)))
    if b"\\u" in raw and _SURROGATE_ESCAPE.search(raw) is not None and _has_lone_surrogate(value):
        raise BadRequest("The request body contains a lone UTF-16 surrogate (an unpaired \\uD800-"
                         "\\uDFFF escape), which is not valid Unicode text.", code="invalid_unicode")
    return value


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item) is not None:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _kind(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _required(body: dict[str, Any], name: str, kind: type) -> Any:
    if name not in body:
        raise BadRequest(f"Missing required parameter: '{name}'.", param=name,
                         code="missing_required_parameter")
    return _typed(body[name], name, kind)


def _optional(body: dict[str, Any], name: str, kind: type, default: Any, prefix: str = "") -> Any:
    value = body.get(name)
    return default if value is None else _typed(value, prefix + name, kind)


def _typed(value: Any, name: str, kind: type) -> Any:
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        raise BadRequest(f"Invalid type for '{name}': expected {_TYPE_NAMES[kind]}, but got "
                         f"{_kind(value)} instead.", param=name, code="invalid_type")
    return value


def _messages(messages: list[Any]) -> None:
    if not messages:
        raise BadRequest("Invalid 'messages': empty array. Expected an array with minimum length 1, "
                         "but got an empty array instead.", param="messages",
                         code="empty_array")
    for i, message in enumerate(messages):
        # The place in the error messages is formatted only for an error.
        if not isinstance(message, dict) or "role" not in message:
            _typed(message, f"messages[{i}]", dict)
            _required_in(message, "role", f"messages[{i}]")
        role = message["role"]
        if not isinstance(role, str) or role not in ROLES:
            where = f"messages[{i}]"
            raise BadRequest(f"Invalid value for '{where}.role': {json.dumps(role)[:80]}. Supported "
                             f"values are: {', '.join(sorted(ROLES))}.", param=f"{where}.role",
                             code="invalid_value")
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):  # (no union built)
            where = f"messages[{i}]"
            raise BadRequest(f"Invalid type for '{where}.content': expected a string or an array, "
                             f"but got {_kind(content)} instead.", param=f"{where}.content",
                             code="invalid_type")


def _required_in(obj: dict[str, Any], name: str, where: str) -> Any:
    if name not in obj:
        raise BadRequest(f"Missing required parameter: '{where}.{name}'.", param=f"{where}.{name}",
                         code="missing_required_parameter")
    return obj[name]


def _positive_int(body: dict[str, Any], name: str) -> None:
    value = _optional(body, name, int, None)
    if value is not None and value < 1:
        raise BadRequest(f"Invalid '{name}': integer below minimum value. Expected a value >= 1, "
                         f"but got {value} instead.", param=name, code="integer_below_min_value")


def _range(body: dict[str, Any], name: str, low: float, high: float, *, integer: bool = False) -> None:
    value = body.get(name)
    if value is None:
        return
    wrong_type = isinstance(value, bool) or not isinstance(value, int | float)
    if wrong_type or (integer and not isinstance(value, int)):
        raise BadRequest(f"Invalid type for '{name}': expected {'an integer' if integer else 'a number'},"
                         f" but got {_kind(value)} instead.", param=name, code="invalid_type")
    if not low <= value <= high:
        raise BadRequest(f"Invalid '{name}': expected a value between {low:g} and {high:g}, but got "
                         f"{value} instead.", param=name, code="invalid_value")
