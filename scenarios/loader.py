"""Load a scenario: find it, read the YAML with line numbers, apply ``--set`` overrides, validate.

Every problem is reported at once as ``FILE:LINE: field.path: message`` (a
:class:`~scenarios.errors.ScenarioValidationError`); nothing here prints or exits.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from scenarios.errors import (
    OverrideError,
    Problem,
    ScenarioNotFoundError,
    ScenarioValidationError,
)
from scenarios.schema import Loc, Scenario, semantic_problems

LIBRARY = "library"


@dataclass(frozen=True, slots=True)
class Loaded:
    """A validated scenario, where it came from, and the hash of its resolved form."""

    scenario: Scenario
    source: str
    sha256: str


# ---------------------------------------------------------------- finding scenarios


def shipped_dir() -> Path:
    return Path(str(resources.files("scenarios") / LIBRARY))


def shipped() -> dict[str, Path]:
    """Shipped scenario names → files."""
    return {p.stem: p for p in sorted(shipped_dir().glob("*.yaml"))}


def resolve_path(name_or_path: str) -> Path:
    """A path to an existing file, or the file of a shipped scenario of that name."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    library = shipped()
    if name_or_path in library:
        return library[name_or_path]
    if path.suffix in {".yaml", ".yml"} or "/" in name_or_path:
        raise ScenarioNotFoundError(f"{name_or_path}: no such file")
    names = ", ".join(library)
    raise ScenarioNotFoundError(f"{name_or_path}: not a file or a shipped scenario ({names})")


# ---------------------------------------------------------------- YAML with line numbers


class _LineLoader(yaml.SafeLoader):
    """A safe loader that records the line of every mapping key and sequence item."""


def _construct_with_lines(loader: _LineLoader, node: yaml.Node, path: Loc, lines: dict[Loc, int]) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):  # `[a, b]: 1` would make an unhashable key
                raise yaml.constructor.ConstructorError(None, None, "found unhashable key",
                                                        key_node.start_mark)
            key = _scalar(loader, key_node)
            lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = _construct_with_lines(loader, value_node, (*path, key), lines)
            lines[(*path, key)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct_with_lines(loader, n, (*path, i), lines) for i, n in enumerate(node.value)]
    return _scalar(loader, node)


def _scalar(loader: _LineLoader, node: yaml.Node) -> Any:
    try:
        return loader.construct_object(node, deep=True)
    except ValueError:
        # YAML resolves 2024-13-01 as a timestamp but cannot build it; keep the text so the
        # schema reports the problem against its field and line instead of a traceback.
        return node.value


def read_yaml(text: str, file: str) -> tuple[Any, dict[Loc, int]]:
    """Parse YAML text, returning the data and a map of field location → line number."""
    loader = _LineLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ScenarioValidationError([Problem(file, None, "", "file is empty")])
        lines: dict[Loc, int] = {}
        try:
            return _construct_with_lines(loader, node, (), lines), lines
        except RecursionError:  # an alias inside its own anchor: `a: &x [*x]`
            raise ScenarioValidationError([Problem(file, None, "", "invalid YAML: a recursive alias "
                                                   "(or nesting too deep)")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ScenarioValidationError([Problem(file, line, "", f"invalid YAML: {what}")]) from exc
    finally:
        loader.dispose()


# ---------------------------------------------------------------- overrides

_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_path(path: str) -> Loc:
    """``policy.openai.stages[1].percent`` → ('policy', 'openai', 'stages', 1, 'percent')."""
    text = path.strip()
    parts: list[str | int] = []
    pos = 0
    while pos < len(text):
        if text[pos] == "." and parts:
            pos += 1
        m = _SEGMENT.match(text, pos)
        if not m:
            raise OverrideError(f"--set {path}: cannot parse the field path at {text[pos:]!r}")
        parts.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    if not parts:
        raise OverrideError(f"--set {path}: empty field path")
    return tuple(parts)


def parse_override(text: str) -> tuple[Loc, Any]:
    """``PATH=VALUE`` with VALUE read as YAML (so ``50``, ``true``, ``[CN, HK]`` all work)."""
    if "=" not in text:
        raise OverrideError(f"--set {text}: expected PATH=VALUE")
    path, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise OverrideError(f"--set {text}: VALUE is not valid YAML") from exc
    return parse_path(path), value


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def apply_override(data: Any, loc: Loc, value: Any, original: str) -> None:
    """Set ``value`` at ``loc`` in the raw scenario data (mapping keys may be new; indices must exist)."""
    node = data
    for depth, part in enumerate(loc[:-1]):
        node = _child(node, part, loc[: depth + 1], original)
    last = loc[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or not -len(node) <= last < len(node):
            raise OverrideError(f"--set {original}: {format_loc(loc)}: no such list item")
        node[last] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise OverrideError(f"--set {original}: {format_loc(loc[:-1])} is not a mapping")


def _child(node: Any, part: str | int, loc: Loc, original: str) -> Any:
    if isinstance(part, int):
        if isinstance(node, list) and -len(node) <= part < len(node):
            return node[part]
        raise OverrideError(f"--set {original}: {format_loc(loc)}: no such list item")
    if isinstance(node, dict):
        if part not in node:
            node[part] = {}
        return node[part]
    raise OverrideError(f"--set {original}: {format_loc(loc[:-1])} is not a mapping")


# ---------------------------------------------------------------- inheritance


def _inherit(data: Any, lines: dict[Loc, int], *, file: str, base_dir: Path | None,
             seen: tuple[str, ...]) -> tuple[Any, dict[Loc, int]]:
    """Resolve ``extends: BASE`` (deep-merged, lists replaced) and ``set: {PATH: VALUE}``."""
    if not isinstance(data, dict) or "extends" not in data:
        return data, lines
    base_name = data.pop("extends")
    edits = data.pop("set", None) or {}
    if not isinstance(base_name, str):
        raise ScenarioValidationError([Problem(file, lines.get(("extends",)), "extends",
                                               "must be a scenario name or path")])
    base_path = _base_path(base_name, base_dir, file, lines)
    if base_path.name in seen:
        raise ScenarioValidationError([Problem(file, lines.get(("extends",)), "extends",
                                               f"circular: {' -> '.join((*seen, base_path.name))}")])
    base, base_lines = read_yaml(base_path.read_text(encoding="utf-8"), base_path.name)
    base, base_lines = _inherit(base, base_lines, file=base_path.name, base_dir=base_path.parent,
                                seen=(*seen, base_path.name))
    merged = _deep_merge(base, data)
    if not isinstance(edits, dict):
        raise ScenarioValidationError([Problem(file, lines.get(("set",)), "set",
                                               "must map field paths to values")])
    # Line numbers of the base file mean nothing in this one: a problem in an inherited field
    # points at `extends:`, one in a field set here at its `set:` entry.
    merged_lines = {loc: lines.get(("extends",), 1) for loc in base_lines} | lines
    for path, value in edits.items():
        line = lines.get(("set", path))
        try:
            loc = parse_path(str(path))
            apply_override(merged, loc, value, str(path))
        except OverrideError as exc:
            raise ScenarioValidationError([Problem(file, line, "set", str(exc).removeprefix("--set "))
                                           ]) from None
        for known in [k for k in merged_lines if k[: len(loc)] == loc]:
            merged_lines[known] = line or 1
        merged_lines[loc] = line or 1
    return merged, merged_lines


def _base_path(name: str, base_dir: Path | None, file: str, lines: dict[Loc, int]) -> Path:
    if base_dir is not None and (base_dir / name).is_file():
        return base_dir / name
    try:
        return resolve_path(name)
    except ScenarioNotFoundError:
        raise ScenarioValidationError([Problem(file, lines.get(("extends",)), "extends",
                                               f"no scenario {name!r}")]) from None


def _deep_merge(base: Any, child: Any) -> Any:
    if isinstance(base, dict) and isinstance(child, dict):
        out = dict(base)
        for key, value in child.items():
            out[key] = _deep_merge(base[key], value) if key in base else value
        return out
    return child


# ---------------------------------------------------------------- validation


def _line_for(lines: dict[Loc, int], loc: Loc) -> int | None:
    while True:
        if loc in lines:
            return lines[loc]
        if not loc:
            return None
        loc = loc[:-1]


def _data_loc(data: Any, loc: tuple[Any, ...]) -> Loc:
    """Drop the parts of a pydantic error location that are not in the data (union tags)."""
    out: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
            out.append(part)
        elif isinstance(node, dict) and part == "from_" and "from" in node:
            node = node["from"]
            out.append("from")
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            out.append(part)
        elif isinstance(node, dict) and isinstance(part, str) and part not in _TAGS:
            out.append(part)  # a missing required field: name it
            node = None
    return tuple(out)


_TAGS = {"lognormal", "exponential", "constant", "uniform", "pareto", "empirical"}


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "union_tag_invalid":
        return f"unknown distribution {err['input'].get('dist')!r} (expected one of: " \
               "lognormal, exponential, constant, uniform, pareto, empirical)"
    if kind == "union_tag_not_found":
        return "a distribution needs 'dist:' (lognormal, exponential, constant, uniform, pareto, empirical)"
    msg = str(err["msg"])
    msg = msg.removeprefix("Value error, ")
    if kind.startswith(("greater", "less", "literal", "string_pattern", "int_", "float_", "bool_")):
        msg = f"{msg} (got {err['input']!r})"
    return msg


def validate(data: Any, *, file: str, lines: dict[Loc, int] | None = None,
             overridden: dict[Loc, str] | None = None) -> Scenario:
    """Build the scenario from raw data, or raise with every problem found.

    ``overridden`` maps locations set by ``--set`` to the override text, so a problem in an
    overridden value names the override rather than a line of the file.
    """
    lines = lines or {}
    overridden = overridden or {}

    def problem(loc: Loc, message: str) -> Problem:
        for prefix, item in overridden.items():
            # in the value set, or in a mapping the override made on its way there (a field the
            # file does not have: `--set foo.bar=1` makes `foo`)
            if loc[: len(prefix)] == prefix or (loc and prefix[: len(loc)] == loc and loc not in lines):
                return Problem(f"{file} (--set {item})", None, format_loc(loc), message)
        return Problem(file, _line_for(lines, loc), format_loc(loc), message)

    if not isinstance(data, dict):
        raise ScenarioValidationError([Problem(file, 1, "", "a scenario must be a YAML mapping")])
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        problems = [problem(_data_loc(data, err["loc"]), _message(err)) for err in exc.errors()]
        raise ScenarioValidationError(_sorted(problems)) from None
    semantic = [problem(loc, msg) for loc, msg in semantic_problems(scenario)]
    if semantic:
        raise ScenarioValidationError(_sorted(semantic))
    return scenario


def _sorted(problems: list[Problem]) -> list[Problem]:
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (p.line or 0, p.path))


def load(name_or_path: str, overrides: list[str] | tuple[str, ...] = ()) -> Loaded:
    """Find, read, override and validate a scenario."""
    path = resolve_path(name_or_path)
    file = path.name if path.parent == shipped_dir() else str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioNotFoundError(f"{file}: cannot read: {exc}") from exc
    return load_text(text, file=file, overrides=overrides, base_dir=path.parent)


def load_text(text: str, *, file: str, overrides: list[str] | tuple[str, ...] = (),
              base_dir: Path | None = None) -> Loaded:
    data, lines = read_yaml(text, file)
    data, lines = _inherit(data, lines, file=file, base_dir=base_dir, seen=(Path(file).name,))
    overridden: dict[Loc, str] = {}
    for item in overrides:
        loc, value = parse_override(item)
        apply_override(data, loc, value, item)
        overridden[loc] = item
    scenario = validate(data, file=file, lines=lines, overridden=overridden)
    return Loaded(scenario=scenario, source=file, sha256=scenario_sha256(scenario))


# ---------------------------------------------------------------- resolved form


def resolved_dict(scenario: Scenario) -> dict[str, Any]:
    """The scenario with every default filled in, as plain data (JSON/YAML ready)."""
    return scenario.model_dump(mode="json", by_alias=True)


def resolved_yaml(scenario: Scenario) -> str:
    return yaml.safe_dump(resolved_dict(scenario), sort_keys=False, allow_unicode=True, width=100)


def scenario_sha256(scenario: Scenario) -> str:
    return hashlib.sha256(resolved_yaml(scenario).encode()).hexdigest()


def description_line(path: Path) -> str:
    """The scenario's one-line description, without validating it (for listings)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return "(unreadable)"
    text = str(data.get("description", "")) if isinstance(data, dict) else ""
    return text.strip().splitlines()[0] if text.strip() else ""


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a scenario file (``regionblock scenario schema``, for editors).

    A whole scenario is checked field by field. A file that ``extends:`` another holds only what
    it changes — partial mappings, deep-merged into the base's before the scenario is validated,
    and ``set:`` edits by field path — so it is checked for its top-level keys only: every
    scenario field, ``extends`` and ``set``, nothing else."""
    whole = Scenario.model_json_schema(by_alias=True)
    defs = whole.pop("$defs", {})
    extending = {
        "type": "object",
        "required": ["extends"],
        "properties": {
            **{name: {"description": "merged into the base scenario's"}
               for name in whole["properties"]},
            "extends": {"type": "string", "description": "the base scenario: a shipped name or "
                        "a path relative to this file"},
            "set": {"type": "object", "description": "field path → value, applied to the "
                    "merged scenario (as --set PATH=VALUE)"},
        },
        "additionalProperties": False,
    }
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "regionblock scenario", "$defs": defs,
            "if": {"type": "object", "required": ["extends"]},
            "then": extending, "else": whole}
