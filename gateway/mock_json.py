"""A JSON value valid against a JSON Schema: what a mock model writes for tools and structured output.

The mock providers answer ``tools`` with ``tool_calls`` whose ``arguments`` are valid for the
function's ``parameters``, and ``response_format: json_schema`` with content valid for its
``schema``. :func:`instance` builds such a value for the subset of JSON Schema that OpenAI's
structured outputs accept: ``type`` (one or a list), ``properties`` (every property is written, so
``required`` always holds), ``items``, ``enum``, ``const``, ``anyOf``/``oneOf`` (the first branch),
``allOf`` (merged), ``$ref`` into ``$defs``/``definitions``, string ``format`` (date-time, date,
time, email, uri, uuid), ``minLength``/``maxLength``, ``minimum``/``maximum`` (and exclusive),
``minItems``/``maxItems``. ``pattern`` is not honoured (no generator for regular expressions).
Choices among allowed values come from the caller's seeded generator, so the same seed writes
the same value.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

MAX_DEPTH = 6  # a recursive schema stops nesting here (optional branches are left empty)
_WORDS = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit")
_FORMATS = {"date-time": "2024-07-09T00:00:00Z", "date": "2024-07-09", "time": "00:00:00",
            "email": "dev@example.com", "uri": "https://example.com/",
            "uuid": "00000000-0000-4000-8000-000000000000"}


def instance(schema: Any, rng: np.random.Generator) -> Any:
    """A value valid against ``schema`` (a JSON Schema as a dict; ``True``/``{}`` allow anything)."""
    return _value(schema, schema, rng, 0)


def _value(schema: Any, root: Any, rng: np.random.Generator, depth: int) -> Any:
    if not isinstance(schema, dict):
        return _word(rng)  # ``true`` or a malformed schema: any value is valid
    if "$ref" in schema:
        return _value(_resolve(schema["$ref"], root), root, rng, depth)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][int(rng.integers(len(schema["enum"])))]
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            return _value(_first_non_null(branches, root), root, rng, depth)
    if isinstance(schema.get("allOf"), list):
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            merged.update(_resolve(part["$ref"], root) if isinstance(part, dict) and "$ref" in part
                          else part if isinstance(part, dict) else {})
        return _value(merged, root, rng, depth)
    return _typed(schema, _type_of(schema), root, rng, depth)


def _typed(schema: dict[str, Any], kind: str, root: Any, rng: np.random.Generator,
           depth: int) -> Any:
    if kind == "object":
        found = schema.get("properties")
        props: dict[str, Any] = found if isinstance(found, dict) else {}
        required = set(schema.get("required") or ())
        return {name: _value(sub, root, rng, depth + 1) for name, sub in props.items()
                if depth < MAX_DEPTH or name in required}
    if kind == "array":
        low = int(schema.get("minItems", 0))
        high = int(schema.get("maxItems", max(low, 2)))
        count = low if depth >= MAX_DEPTH else min(max(low, 2), high)
        return [_value(schema.get("items", {}), root, rng, depth + 1) for _ in range(count)]
    if kind == "string":
        return _string(schema, rng)
    if kind in ("integer", "number"):
        return _number(schema, rng, integer=kind == "integer")
    if kind == "boolean":
        return bool(rng.integers(2))
    return None


def _type_of(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if kinds else "null"
    if isinstance(kind, str):
        return kind
    return "object" if "properties" in schema else "array" if "items" in schema else "string"


def _resolve(ref: Any, root: Any) -> Any:
    """``#/$defs/Name`` (or any local JSON pointer) inside the root schema."""
    if not isinstance(ref, str) or not ref.startswith("#"):
        return {}
    node = root
    for part in ref.lstrip("#/").split("/") if ref != "#" else []:
        part = part.replace("~1", "/").replace("~0", "~")
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node


def _first_non_null(branches: list[Any], root: Any) -> Any:
    for branch in branches:
        target = _resolve(branch["$ref"], root) if isinstance(branch, dict) and "$ref" in branch \
            else branch
        if not (isinstance(target, dict) and target.get("type") == "null"):
            return branch
    return branches[0]


def _word(rng: np.random.Generator) -> str:
    return _WORDS[int(rng.integers(len(_WORDS)))]


def _string(schema: dict[str, Any], rng: np.random.Generator) -> str:
    fmt = schema.get("format")
    text = _FORMATS[fmt] if fmt in _FORMATS else _word(rng)
    low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
    while len(text) < low:
        text += " " + _word(rng)
    return text[:int(high)] if high is not None else text


def _number(schema: dict[str, Any], rng: np.random.Generator, *, integer: bool) -> int | float:
    low, high = _bound(schema, "minimum", "exclusiveMinimum", 1, integer), \
        _bound(schema, "maximum", "exclusiveMaximum", -1, integer)
    low = 0.0 if low is None else low
    high = low + 100.0 if high is None else high
    if integer:
        lo, hi = math.ceil(low), math.floor(high)
        return int(rng.integers(lo, hi + 1)) if hi >= lo else lo
    return float(low + (high - low) * rng.random())


def _bound(schema: dict[str, Any], inclusive: str, exclusive: str, side: int,
           integer: bool) -> float | None:
    """A limit as an inclusive one; an exclusive limit moves inwards by one (integers) or a hair."""
    if isinstance(schema.get(inclusive), int | float):
        return float(schema[inclusive])
    value = schema.get(exclusive)
    if not isinstance(value, int | float):
        return None
    return float(value) + side * (1.0 if integer else (abs(value) + 1) * 1e-6)
