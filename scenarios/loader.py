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
    if path.is_dir():
        raise ScenarioNotFoundError(f"{name_or_path}: is a directory, not a scenario file")
    if path.exists():  # /dev/null, a FIFO, a socket: there, but not a file to read
        raise ScenarioNotFoundError(f"{name_or_path}: not a regular file")
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


# A scenario is a few thousand values, eight levels deep. Past these a file is not a scenario but
# an accident or an attack: aliases that expand exponentially (`a1: [*a0, *a0, ...]`, a "billion
# laughs") would take hours to walk, and nesting past Python's recursion limit would crash.
MAX_VALUES = 200_000
MAX_DEPTH = 64


class _Limits:
    """What one file's construction has spent: values built, the anchors on the current path."""

    def __init__(self) -> None:
        self.values = 0
        self.open: set[int] = set()
        self.merged: dict[int, int] = {}


def _too_much(message: str, node: yaml.Node) -> yaml.constructor.ConstructorError:
    return yaml.constructor.ConstructorError(None, None, message, node.start_mark)


def _construct_with_lines(loader: _LineLoader, node: yaml.Node, path: Loc, lines: dict[Loc, int],
                          limits: _Limits) -> Any:
    limits.values += 1
    if limits.values > MAX_VALUES:
        raise _too_much(f"more than {MAX_VALUES:,} values (aliases that expand exponentially?)",
                        node)
    if len(path) > MAX_DEPTH:
        raise _too_much(f"nested more than {MAX_DEPTH} levels deep", node)
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
        if id(node) in limits.open:  # `a: &x [*x]`: the alias is inside its own anchor
            raise _too_much("a recursive alias (an alias inside its own anchor)", node)
        limits.open.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [_construct_with_lines(loader, n, (*path, i), lines, limits)
                        for i, n in enumerate(node.value)]
            return _construct_mapping(loader, node, path, lines, limits)
        finally:
            limits.open.discard(id(node))
    return _scalar(loader, node)


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode, path: Loc,
                       lines: dict[Loc, int], limits: _Limits) -> dict[Any, Any]:
    if id(node) not in limits.merged:
        # `<<: *defaults` merge keys (YAML 1.1): SafeLoader puts the merged pairs first, so keys
        # written here override them. Remember how many came from merges: those may repeat a key.
        own = sum(1 for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge")
        loader.flatten_mapping(node)
        limits.merged[id(node)] = len(node.value) - own
    merged = limits.merged[id(node)]
    out: dict[Any, Any] = {}
    first_line: dict[Any, int] = {}
    for index, (key_node, value_node) in enumerate(node.value):
        if not isinstance(key_node, yaml.ScalarNode):  # `[a, b]: 1` would make an unhashable key
            raise yaml.constructor.ConstructorError(None, None, "found unhashable key",
                                                    key_node.start_mark)
        key = _scalar(loader, key_node)
        if key_node.style is None and (key is None or isinstance(key, bool)):
            # a plain `NO:` (Norway), `on:` or `null:` key is its text: YAML 1.1 would make it
            # False or None, a key no scenario field has
            key = key_node.value
        line = key_node.start_mark.line + 1
        if index >= merged and key in first_line and first_line[key] >= 0:
            raise _too_much(f"duplicate key {key!r} (first on line {first_line[key]}); "
                            "YAML would silently keep only the last", key_node)
        first_line[key] = line if index >= merged else -1
        lines[(*path, key)] = line
        out[key] = _construct_with_lines(loader, value_node, (*path, key), lines, limits)
        lines[(*path, key)] = line
    return out


def _scalar(loader: _LineLoader, node: yaml.Node) -> Any:
    try:
        return loader.construct_object(node, deep=True)
    except ValueError:
        # YAML resolves 2024-13-01 as a timestamp but cannot build it; keep the text so the
        # schema reports the problem against its field and line instead of a traceback.
        return node.value


def read_yaml(text: str, file: str, *, empty: bool = False) -> tuple[Any, dict[Loc, int]]:
    """Parse YAML text, returning the data and a map of field location → line number.

    An empty document is a problem unless ``empty`` (an override's VALUE: ``--set a=#`` is null).
    """
    loader: _LineLoader | None = None
    try:
        loader = _LineLoader(text)  # checks the characters: a NUL byte fails here
        try:
            node = loader.get_single_node()
        except RecursionError:  # the composer recurses once per level: `[[[[...]]]]`
            raise _yaml_problem(file, None, f"nested more than {MAX_DEPTH} levels deep") from None
        if node is None:
            if empty:
                return None, {}
            raise ScenarioValidationError([Problem(file, None, "", "file is empty")])
        lines: dict[Loc, int] = {}
        return _construct_with_lines(loader, node, (), lines, _Limits()), lines
    except yaml.reader.ReaderError as exc:
        at: int | None = text[: exc.position].count("\n") + 1
        what = f"character #x{exc.character:04x} is not allowed (control characters cannot be " \
               "in YAML)" if isinstance(exc.character, int) else str(exc).splitlines()[0]
        raise _yaml_problem(file, at, what) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise _yaml_problem(file, line, what) from None
    finally:
        if loader is not None:
            loader.dispose()


def _yaml_problem(file: str, line: int | None, what: str) -> ScenarioValidationError:
    return ScenarioValidationError([Problem(file, line, "", f"invalid YAML: {what}")])


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
        value = read_yaml(raw, "VALUE", empty=True)[0] if raw.strip() else ""
    except ScenarioValidationError as exc:
        what = exc.problems[0].message.removeprefix("invalid YAML: ")
        raise OverrideError(f"--set {text}: VALUE is not valid YAML: {what}") from None
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


# A chain of files, each extending the next, longer than this is a mistake (and would exhaust
# Python's recursion limit near 300).
MAX_EXTENDS = 16


def _inherit(data: Any, lines: dict[Loc, int], *, file: str, base_dir: Path | None,
             seen: tuple[Path, ...]) -> tuple[Any, dict[Loc, int]]:
    """Resolve ``extends: BASE`` (deep-merged, lists replaced) and ``set: {PATH: VALUE}``."""
    if not isinstance(data, dict) or "extends" not in data:
        return data, lines
    base_name = data.pop("extends")
    edits = data.pop("set", None) or {}
    if not isinstance(base_name, str):
        raise ScenarioValidationError([Problem(file, lines.get(("extends",)), "extends",
                                               "must be a scenario name or path")])
    base_path = _base_path(base_name, base_dir, file, lines)
    chain = (*seen, base_path.resolve())
    names = " -> ".join(p.name for p in chain)
    if base_path.resolve() in seen:
        raise ScenarioValidationError([Problem(file, lines.get(("extends",)), "extends",
                                               f"circular: {names}")])
    if len(chain) > MAX_EXTENDS:
        raise ScenarioValidationError([Problem(file, lines.get(("extends",)), "extends", f"more "
                                               f"than {MAX_EXTENDS} files extend one another "
                                               f"({chain[0].name} -> ... -> {chain[-1].name})")])
    try:
        base_text = base_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioValidationError([Problem(file, lines.get(("extends",)), "extends",
                                               f"{base_path}: cannot read: {exc}")]) from None
    base, base_lines = read_yaml(base_text, base_path.name)
    base, base_lines = _inherit(base, base_lines, file=base_path.name, base_dir=base_path.parent,
                                seen=chain)
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
    if kind == "too_short" and isinstance(err.get("input"), list | tuple):
        least = err.get("ctx", {}).get("min_length", 1)
        return f"needs at least {least} item{'s' if least != 1 else ''} (got {len(err['input'])})"
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
        errors = exc.errors()
        # A tuple with a bad item is also "too short after validation": the item's error says it
        errors = [err for err in errors if not (err["type"] == "too_short" and any(
            other["loc"][: len(err["loc"])] == err["loc"] and len(other["loc"]) > len(err["loc"])
            for other in errors))]
        problems = [problem(_data_loc(data, err["loc"]), _message(err)) for err in errors]
        raise ScenarioValidationError(_sorted(problems)) from None
    semantic = [problem(loc, msg) for loc, msg in
                [*semantic_problems(scenario), *uncertain_problems(scenario)]]
    if semantic:
        raise ScenarioValidationError(_sorted(semantic))
    return scenario


#: Uncertain parameters may not change who the organisations are (a run's organisation count is
#: one number, checked for conservation, and every replication resamples the same organisations).
FIXED_POPULATION = ("organisations", "share")


def uncertain_problems(s: Scenario) -> list[tuple[Loc, str]]:
    """What is wrong with the scenario's ``uncertain:`` parameters, as (location, message) pairs.

    Each path must name a number the population does not depend on, and every value its law can
    draw must give a valid scenario: the law's lowest value and its highest (for a law without an
    upper bound, the value it passes once in a billion draws) are both tried. The simulator
    draws from these laws per replication (``sim.setup.perturbed``); checked here, a bad one is
    a line of ``scenario validate``, not a failure in the middle of a run."""
    out: list[tuple[Loc, str]] = []
    if not s.uncertain:
        return out
    data = resolved_dict(s)
    for i, u in enumerate(s.uncertain):
        where = ("uncertain", i)
        try:
            loc = parse_path(u.path)
        except OverrideError as exc:
            out.append(((*where, "path"), str(exc).removeprefix(f"--set {u.path}: ")))
            continue
        if any(part in FIXED_POPULATION for part in loc):
            out.append(((*where, "path"), f"{u.path}: organisation counts and segment shares "
                        "cannot be uncertain (every replication simulates the same organisations)"))
            continue
        current = uncertain_target(data, loc)
        if isinstance(current, str):
            out.append(((*where, "path"), f"{u.path}: {current}"))
            continue
        for which, value in (("lowest", u.dist.lowest()), ("highest", u.dist.highest())):
            value = round(value) if isinstance(current, int) else value
            trial = resolved_dict(s)
            apply_override(trial, loc, value, u.path)
            trial["uncertain"] = []
            try:
                broken = [(loc, msg) for loc, msg in semantic_problems(Scenario.model_validate(trial))]
            except ValidationError as exc:
                err = exc.errors()[0]
                broken = [(_data_loc(trial, err["loc"]), _message(err))]
            if broken:
                out.append(((*where, "dist"), f"its {which} value {value:,.6g} makes "
                            f"{format_loc(broken[0][0])} invalid: {broken[0][1]}"))
                break
    return out


def uncertain_target(data: Any, loc: Loc) -> int | float | str:
    """The number at ``loc`` in a scenario's resolved data, or why there is none (a str)."""
    node = data
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return "no such field"
    if isinstance(node, bool) or not isinstance(node, int | float):
        return f"not a number ({node!r})"
    return node


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
    if not isinstance(data, dict):  # before --set, which would say "  is not a mapping"
        raise ScenarioValidationError([Problem(file, 1, "", "a scenario must be a YAML mapping")])
    data, lines = _inherit(data, lines, file=file, base_dir=base_dir,
                           seen=(((base_dir or Path.cwd()) / Path(file).name).resolve(),))
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
        data = read_yaml(path.read_text(encoding="utf-8"), path.name)[0]
    except (OSError, UnicodeDecodeError, ScenarioValidationError):
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
