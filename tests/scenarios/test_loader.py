"""scenarios/loader.py: YAML errors, ``--set`` overrides, ``extends``/``set`` inheritance, lookup."""

from __future__ import annotations

from pathlib import Path

import pytest
from scenario_helpers import DEFAULT_NAME, FILE, default_text, line_of, patch, problems

from scenarios.errors import OverrideError, ScenarioNotFoundError, ScenarioValidationError
from scenarios.loader import format_loc, load, load_text, parse_override, parse_path, shipped

SHIPPED_NAMES = "mmc-validation, no-incentives, openai-2024-cn-hk, staged-percent-rollout, strict-enforcement"

# ---------------------------------------------------------------- reading the file


@pytest.mark.parametrize(("text", "expected"), [
    ("", "s.yaml: file is empty"),
    ("# only a comment\n\n", "s.yaml: file is empty"),
    ("- a\n- b\n", "s.yaml:1: a scenario must be a YAML mapping"),
    ("just words\n", "s.yaml:1: a scenario must be a YAML mapping"),
    ("name: x\nwindow: [1, 2\nregions: 3\n", "s.yaml:3: invalid YAML: expected ',' or ']', but got ':'"),
    ("name: a: b\n", "s.yaml:1: invalid YAML: mapping values are not allowed here"),
    ("window:\n\tstart: 2024-06-01\n",
     "s.yaml:2: invalid YAML: found character '\\t' that cannot start any token"),
    ("x: 1\n[a, b]: 1\n", "s.yaml:2: invalid YAML: found unhashable key"),
    ("{a: 1}: 2\n", "s.yaml:1: invalid YAML: found unhashable key"),
    ("a: &x [*x]\n", "s.yaml:1: invalid YAML: a recursive alias (an alias inside its own anchor)"),
], ids=["empty", "comments-only", "a-list", "a-scalar", "unclosed-list", "nested-colon", "tab",
        "list-as-key", "mapping-as-key", "recursive-alias"])
def test_unreadable_files(text: str, expected: str) -> None:
    assert problems(text) == [expected]


def test_impossible_date_as_a_key() -> None:
    text = patch(default_text(), "version: 1", "version: 1\n2024-13-01: x")
    assert problems(text) == [f"s.yaml:{line_of(text, '2024-13-01: x')}: 2024-13-01: unknown field"]


def test_aliases_are_expanded() -> None:
    text = patch(default_text(), "  - code: HK\n    organisations: 4000 ",
                 "  - code: HK\n    organisations: &n 4000 ")
    text = patch(text, "    organisations: 150 ", "    organisations: *n ")
    assert load_text(text, file=FILE).scenario.region("MO").organisations == 4000


def test_problems_carry_file_line_path_and_message() -> None:
    text = patch(default_text(), "    markup: 0.3 ", "    markup: 11 ")
    with pytest.raises(ScenarioValidationError) as info:
        load_text(text, file=FILE)
    (p,) = info.value.problems
    assert (p.file, p.line, p.path) == (FILE, line_of(text, "markup: 11"), "behaviour.relay.markup")
    assert p.message == "Input should be less than or equal to 10 (got 11)"


def test_file_names_in_messages(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(patch(default_text(), "  bin: day", "  bin: week"), encoding="utf-8")
    with pytest.raises(ScenarioValidationError) as info:
        load(str(bad))
    assert str(info.value) == (f"{bad}:{line_of(bad.read_text(), 'bin: week')}: window.bin: "
                               "Input should be 'hour' or 'day' (got 'week')")


# ---------------------------------------------------------------- finding scenarios


def test_not_found_messages() -> None:
    with pytest.raises(ScenarioNotFoundError) as info:
        load("nope")
    assert str(info.value) == f"nope: not a file or a shipped scenario ({SHIPPED_NAMES})"
    with pytest.raises(ScenarioNotFoundError) as info:
        load("nope.yaml")
    assert str(info.value) == "nope.yaml: no such file"
    with pytest.raises(ScenarioNotFoundError) as info:
        load("dir/nope")
    assert str(info.value) == "dir/nope: no such file"


def test_shipped_names_and_source() -> None:
    assert ", ".join(shipped()) == SHIPPED_NAMES
    assert load(DEFAULT_NAME).source == "openai-2024-cn-hk.yaml"


def test_unreadable_file(tmp_path: Path) -> None:
    f = tmp_path / "latin1.yaml"
    f.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ScenarioNotFoundError) as info:
        load(str(f))
    assert str(info.value).startswith(f"{f}: cannot read: 'utf-8' codec can't decode byte 0xe9")


# ---------------------------------------------------------------- --set overrides


def test_parse_path_with_indices() -> None:
    assert parse_path("policy.openai.stages[1].percent") == ("policy", "openai", "stages", 1, "percent")
    assert parse_path("regions[0]") == ("regions", 0)
    assert parse_path("a[2][3].b") == ("a", 2, 3, "b")
    assert format_loc(("policy", "openai", "stages", 1, "percent")) == "policy.openai.stages[1].percent"


def test_override_values_are_yaml() -> None:
    assert parse_override("a.b=50") == (("a", "b"), 50)
    assert parse_override("a=true") == (("a",), True)
    assert parse_override("a=[CN, HK]") == (("a",), ["CN", "HK"])
    assert parse_override("a=x=y") == (("a",), "x=y")
    assert parse_override("a=") == (("a",), "")
    assert parse_override("a=2024-07-01") == (("a",), __import__("datetime").date(2024, 7, 1))


def test_override_changes_the_value() -> None:
    s = load(DEFAULT_NAME, ["policy.openai.stages[1].percent=50", "behaviour.relay.markup=0.5",
                            "regions[0].organisations=10"]).scenario
    assert s.policy["openai"].stages[1].percent == 50.0
    assert s.behaviour.relay.markup == 0.5
    assert s.region("CN").organisations == 10
    assert load(DEFAULT_NAME).scenario.policy["openai"].stages[1].percent == 100.0  # untouched


def test_override_may_add_an_optional_field() -> None:
    s = load(DEFAULT_NAME, ["policy.openai.stages[0].end=2024-07-01"]).scenario
    assert s.policy["openai"].stages[0].end is not None
    assert s.policy["openai"].stages[0].end.isoformat() == "2024-07-01T00:00:00+00:00"


@pytest.mark.parametrize(("overrides", "expected"), [
    (["policy.openai.stages[1].percent=150"],
     ["s.yaml (--set policy.openai.stages[1].percent=150): policy.openai.stages[1].percent: "
      "Input should be less than or equal to 100 (got 150)"]),
    (["policy.openai.stages[1].percent=abc", "window.bin=week"],
     ["s.yaml (--set policy.openai.stages[1].percent=abc): policy.openai.stages[1].percent: "
      "Input should be a valid number, unable to parse string as a number (got 'abc')",
      "s.yaml (--set window.bin=week): window.bin: Input should be 'hour' or 'day' (got 'week')"]),
    (["policy.openai.stages[1].bogus=1"],
     ["s.yaml (--set policy.openai.stages[1].bogus=1): policy.openai.stages[1].bogus: unknown field"]),
    (["policy.openai.stages[1].start=2024-06-01"],
     ["s.yaml (--set policy.openai.stages[1].start=2024-06-01): policy.openai.stages[1].start: "
      "must be after stages[0].start"]),
    (["regions[0].code=XX"],
     ["s.yaml (--set regions[0].code=XX): regions[0].code: 'XX' is not an ISO 3166-1 alpha-2 code "
      "or a named set (all, unsupported_mid_2024)"]),
    (["window.bin=day", "policy.openai.detection={per_day: 7}"],
     ["s.yaml (--set policy.openai.detection={per_day: 7}): policy.openai.detection.per_day: "
      "Input should be less than or equal to 1 (got 7)"]),
    # a mapping the override made on its way (the file has no `foo`, no `policy.nosuch`): named
    # by the override, not by a line of the file it never was on
    (["foo.bar=1"], ["s.yaml (--set foo.bar=1): foo: unknown field"]),
    (["policy.nosuch.stages=[]"],
     ["s.yaml (--set policy.nosuch.stages=[]): policy.nosuch: unknown provider 'nosuch'"]),
], ids=["range", "two-overrides", "unknown-field", "semantic", "country", "inside-a-mapping",
        "made-mapping", "made-provider"])
def test_override_problems_name_the_override(overrides: list[str], expected: list[str]) -> None:
    assert problems(default_text(), overrides) == expected


def test_override_problem_and_file_problem_together() -> None:
    assert problems(default_text(), ["window.end=2024-05-01"]) == [
        "s.yaml (--set window.end=2024-05-01): window.end: must be after window.start "
        "(2024-06-01T00:00:00+00:00)",
        f"s.yaml:{line_of(default_text(), '    at: 2024-06-25')}: behaviour.announcement.at: "
        "must lie inside the window",
    ]
    text = patch(default_text(), "    markup: 0.3 ", "    markup: 11 ")
    assert problems(text, ["window.bin=week"]) == [  # overrides first, then the file's lines
        "s.yaml (--set window.bin=week): window.bin: Input should be 'hour' or 'day' (got 'week')",
        f"s.yaml:{line_of(text, 'markup: 11')}: behaviour.relay.markup: "
        "Input should be less than or equal to 10 (got 11)",
    ]


def test_cross_field_rules_wait_for_valid_fields() -> None:
    # Cross-field rules need a scenario whose fields are valid; until then only field problems show.
    text = patch(default_text(), "    markup: 0.3 ", "    markup: 11 ")
    assert problems(text, ["window.end=2024-05-01"]) == [
        f"s.yaml:{line_of(text, 'markup: 11')}: behaviour.relay.markup: "
        "Input should be less than or equal to 10 (got 11)",
    ]


@pytest.mark.parametrize(("override", "expected"), [
    ("policy.openai.stages[1].percent", "--set policy.openai.stages[1].percent: expected PATH=VALUE"),
    ("policy..x=1", "--set policy..x: cannot parse the field path at '.x'"),
    ("stages[x]=1", "--set stages[x]: cannot parse the field path at '[x]'"),
    ("stages[-1].percent=1", "--set stages[-1].percent: cannot parse the field path at '[-1].percent'"),
    ("=1", "--set : empty field path"),
    ("window.bin=[day", "--set window.bin=[day: VALUE is not valid YAML: expected ',' or ']', "
                        "but got '<stream end>'"),
    ("policy.openai.stages[5].percent=1",
     "--set policy.openai.stages[5].percent=1: policy.openai.stages[5]: no such list item"),
    ("regions[9]=1", "--set regions[9]=1: regions[9]: no such list item"),
    ("window.bin.x=1", "--set window.bin.x=1: window.bin is not a mapping"),
    ("name.x=1", "--set name.x=1: name is not a mapping"),
    ("regions.x=1", "--set regions.x=1: regions is not a mapping"),
], ids=["no-equals", "empty-segment", "bad-index", "negative-index", "empty-path", "bad-yaml",
        "index-in-path", "index-at-end", "through-a-scalar", "scalar-at-end", "list-as-mapping"])
def test_override_parse_errors(override: str, expected: str) -> None:
    with pytest.raises(OverrideError) as info:
        load(DEFAULT_NAME, [override])
    assert str(info.value) == expected


# ---------------------------------------------------------------- extends / set


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_extends_merges_mappings_and_replaces_lists(tmp_path: Path) -> None:
    path = _write(tmp_path, "child.yaml", "extends: openai-2024-cn-hk\nname: child\n"
                  "window: {bin: hour}\nslos: {regions: [US]}\n")
    s = load(str(path)).scenario
    base = load(DEFAULT_NAME).scenario
    assert (s.name, s.window.bin, s.slos.regions) == ("child", "hour", ("US",))
    assert (s.window.start, s.window.end, s.slos.p99_latency_ms) == (
        base.window.start, base.window.end, base.slos.p99_latency_ms)
    assert s.providers == base.providers


def test_extends_a_sibling_file(tmp_path: Path) -> None:
    _write(tmp_path, "base.yaml", default_text().replace("name: openai-2024-cn-hk", "name: base"))
    path = _write(tmp_path, "child.yaml",
                  "extends: base.yaml\nname: child\nset:\n  regions[0].organisations: 7\n")
    s = load(str(path)).scenario
    assert (s.name, s.region("CN").organisations) == ("child", 7)


@pytest.mark.parametrize(("text", "expected"), [
    ("extends: [a]\nname: x\n", "s.yaml:1: extends: must be a scenario name or path"),
    ("name: x\nextends: nope\n", "s.yaml:2: extends: no scenario 'nope'"),
    ("extends: openai-2024-cn-hk\nname: x\nset: [a]\n", "s.yaml:3: set: must map field paths to values"),
    ("extends: openai-2024-cn-hk\nname: x\nset:\n  policy..x: 1\n",
     "s.yaml:4: set: policy..x: cannot parse the field path at '.x'"),
    ("extends: openai-2024-cn-hk\nname: x\nset:\n  window.bin: day\n  regions[20].code: CN\n",
     "s.yaml:5: set: regions[20].code: regions[20]: no such list item"),
    ("extends: openai-2024-cn-hk\nname: x\nset:\n  policy.openai.detection.per_day: 3\n",
     "s.yaml:4: policy.openai.detection.per_day: Input should be less than or equal to 1 (got 3)"),
    ("extends: openai-2024-cn-hk\nname: x\nset:\n  policy.openai.detection: {per_day: 3}\n",
     "s.yaml:4: policy.openai.detection.per_day: Input should be less than or equal to 1 (got 3)"),
    ("extends: openai-2024-cn-hk\nname: x\nwindow:\n  bin: week\n",
     "s.yaml:4: window.bin: Input should be 'hour' or 'day' (got 'week')"),
], ids=["extends-not-a-string", "unknown-base", "set-not-a-mapping", "set-bad-path", "set-bad-index",
        "set-invalid-value", "set-invalid-nested", "child-invalid"])
def test_extends_problems(text: str, expected: str) -> None:
    assert problems(text) == [expected]


def test_inherited_problems_point_at_extends() -> None:
    # The child replaces `regions` with CN only, so the base's shares name regions that are gone:
    # those lines are in the base file, so the problem points at this file's `extends:` line.
    text = ("# derived\nextends: openai-2024-cn-hk\nname: x\nregions:\n"
            "  - {code: CN, organisations: 1, utc_offset: 8}\n")
    gone = ("HK", "MO", "RU", "US", "SG", "JP", "DE")
    shares = [f"s.yaml:2: segments[{i}].share.{code}: unknown region {code!r}"
              for i in range(4) for code in gone]
    slo_thresholds = [f"s.yaml:2: slos.thresholds[{i}].region: unknown region {code!r}"
                      for i, code in enumerate(("US", "SG", "JP", "DE", "CN", "HK")) if code != "CN"]
    assert problems(text) == sorted(shares + slo_thresholds)


def test_circular_extends(tmp_path: Path) -> None:
    a = _write(tmp_path, "a.yaml", "extends: b.yaml\nname: a\n")
    _write(tmp_path, "b.yaml", "name: b\nextends: a.yaml\n")
    with pytest.raises(ScenarioValidationError) as info:
        load(str(a))
    assert str(info.value) == "b.yaml:2: extends: circular: a.yaml -> b.yaml -> a.yaml"


def test_self_extends(tmp_path: Path) -> None:
    c = _write(tmp_path, "c.yaml", "extends: c.yaml\nname: c\n")
    with pytest.raises(ScenarioValidationError) as info:
        load(str(c))
    assert str(info.value) == f"{c}:1: extends: circular: c.yaml -> c.yaml"


# ---------------------------------------------------------------- hostile files


def _laughs(levels: int) -> str:
    """Aliases that expand tenfold per level: 10**levels values from a file of a few hundred bytes."""
    out = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    out += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    return "\n".join(out) + "\n"


def test_an_alias_bomb_is_refused_without_expanding_it() -> None:
    # 10**9 values: walking them would take hours; the count stops at 200,000
    assert problems(_laughs(8)) == [
        "s.yaml:1: invalid YAML: more than 200,000 values (aliases that expand exponentially?)"]


@pytest.mark.parametrize("text", [
    "a: " + "[" * 600 + "]" * 600 + "\n",
    "".join("  " * i + f"k{i}:\n" for i in range(600)) + "  " * 600 + "v: 1\n",
    "a: " + "[" * 70 + "]" * 70 + "\n",
], ids=["lists-600", "mappings-600", "lists-70"])
def test_deep_nesting_is_one_line_not_a_recursion_error(text: str) -> None:
    [line] = problems(text)
    assert line.startswith("s.yaml") and line.endswith(": invalid YAML: nested more than 64 levels deep")


@pytest.mark.parametrize(("raw", "code"), [(b"\x00", "0000"), (b"\x07", "0007"), (b"\x1b", "001b")])
def test_control_characters_name_their_line(raw: bytes, code: str) -> None:
    text = "version: 1\nname: x" + raw.decode() + "\n"
    assert problems(text) == [f"s.yaml:2: invalid YAML: character #x{code} is not allowed "
                              "(control characters cannot be in YAML)"]


def test_a_duplicate_key_is_refused_not_silently_last_wins() -> None:
    text = patch(default_text(), "  bin: day", "  bin: day\n  bin: hour")
    first = line_of(text, "bin: day")
    assert problems(text) == [f"s.yaml:{first + 1}: invalid YAML: duplicate key 'bin' (first on "
                              f"line {first}); YAML would silently keep only the last"]


def test_merge_keys_merge_and_the_mapping_s_own_keys_win() -> None:
    text = patch(default_text(), "window:", "window: &w")
    text = text.replace("\nregions:", "\nx: &other {<<: *w, bin: hour}\nregions:", 1)
    # the merged mapping is a real mapping: its unknown key is reported, not `<<`
    assert problems(text) == [f"s.yaml:{line_of(text, 'x: &other')}: x: unknown field"]
    merged = patch(default_text(), "  bin: day", "  <<: {bin: hour}\n  end: 2024-10-01")
    merged = merged.replace("  end: 2024-10-01            #", "  # was end:", 1)
    assert load_text(merged, file=FILE).scenario.window.bin == "hour"
    own = patch(default_text(), "  bin: day", "  <<: {bin: hour}\n  bin: day")
    assert load_text(own, file=FILE).scenario.window.bin == "day"


@pytest.mark.parametrize(("override", "expected"), [
    ("name=" + "[" * 600 + "]" * 600, "--set name=" + "[" * 600 + "]" * 600
     + ": VALUE is not valid YAML: nested more than 64 levels deep"),
    ("name=#", None),
])
def test_override_values_get_the_file_s_limits(override: str, expected: str | None) -> None:
    if expected is None:  # an empty document is null, as yaml.safe_load reads it
        assert parse_override(override) == (("name",), None)
        return
    with pytest.raises(OverrideError) as info:
        parse_override(override)
    assert str(info.value) == expected


def test_a_directory_is_not_a_scenario(tmp_path: Path) -> None:
    with pytest.raises(ScenarioNotFoundError) as info:
        load(str(tmp_path))
    assert str(info.value) == f"{tmp_path}: is a directory, not a scenario file"


def test_extends_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "latin.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    child = _write(tmp_path, "child.yaml", "name: c\nextends: latin.yaml\n")
    with pytest.raises(ScenarioValidationError) as info:
        load(str(child))
    assert str(info.value) == (f"{child}:2: extends: {tmp_path / 'latin.yaml'}: cannot read: 'utf-8' "
                               "codec can't decode byte 0xe9 in position 9: invalid continuation byte")


def test_a_long_extends_chain_stops_at_16_files(tmp_path: Path) -> None:
    for i in range(400):
        _write(tmp_path, f"c{i}.yaml", f"extends: c{i + 1}.yaml\n")
    _write(tmp_path, "c400.yaml", f"extends: {DEFAULT_NAME}\n")
    with pytest.raises(ScenarioValidationError) as info:
        load(str(tmp_path / "c0.yaml"))
    assert str(info.value) == "c15.yaml:1: extends: more than 16 files extend one another " \
                              "(c0.yaml -> ... -> c16.yaml)"
    assert load(str(tmp_path / "c390.yaml")).scenario.name == DEFAULT_NAME  # 11 files: fine


def test_files_of_one_name_in_two_directories_are_not_circular(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _write(tmp_path / "a", "base.yaml", "extends: ../b/base.yaml\nname: first\n")
    _write(tmp_path / "b", "base.yaml", f"extends: {DEFAULT_NAME}\nname: second\n")
    assert load(str(first)).scenario.name == "first"


UNCERTAIN = "uncertain=[{{path: '{path}', dist: {dist}}}]"


@pytest.mark.parametrize(("path", "dist", "where", "message"), [
    ("providers[1].capacity.nope", "{dist: constant, value: 1}", "path",
     "providers[1].capacity.nope: no such field"),
    ("name", "{dist: constant, value: 1}", "path", "name: not a number ('openai-2024-cn-hk')"),
    ("a..b", "{dist: constant, value: 1}", "path", "cannot parse the field path at '.b'"),
    ("regions[0].organisations", "{dist: constant, value: 1}", "path",
     "regions[0].organisations: organisation counts and segment shares cannot be uncertain "
     "(every replication simulates the same organisations)"),
    ("providers[1].capacity.concurrency", "{dist: uniform, low: -5, high: 1500}", "dist",
     "its lowest value -5 makes providers[1].capacity.concurrency invalid: "
     "Input should be greater than or equal to 1 (got -5)"),
    # unbounded above: the once-in-a-billion draw, 0.05·e^(5.9978·0.5) = 1.0032, is past a fraction's 1
    ("providers[1].faults.error_rate", "{dist: lognormal, median: 0.05, sigma: 0.5}", "dist",
     "its highest value 1.00318 makes providers[1].faults.error_rate invalid: "
     "Input should be less than or equal to 1 (got 1.0031762699360944)"),
    ("behaviour.relay.markup", "{dist: uniform, low: 0, high: 11}", "dist",
     "its highest value 11 makes behaviour.relay.markup invalid: "
     "Input should be less than or equal to 10 (got 11.0)"),
], ids=["no-field", "not-a-number", "bad-path", "population", "below-a-bound", "lognormal-tail",
        "above-a-bound"])
def test_uncertain_parameters_are_checked_with_the_file(path: str, dist: str, where: str,
                                                        message: str) -> None:
    override = UNCERTAIN.format(path=path, dist=dist)
    assert problems(default_text(), [override]) == [f"s.yaml (--set {override}): uncertain[0].{where}: "
                                                    f"{message}"]


def test_uncertain_parameters_whose_every_value_is_valid_pass() -> None:
    for path, dist in (("providers[1].capacity.concurrency", "{dist: uniform, low: 500, high: 1500}"),
                       ("providers[1].faults.error_rate", "{dist: lognormal, median: 0.01, sigma: 0.5}"),
                       ("behaviour.choice.price", "{dist: uniform, low: -5, high: 1}")):  # may be < 0
        load_text(default_text(), file=FILE, overrides=[UNCERTAIN.format(path=path, dist=dist)])


def test_a_bad_list_item_is_one_problem_not_also_a_short_list() -> None:
    override = "routing.failover[0].to=[BAD SLUG]"
    assert problems(default_text(), [override]) == [
        f"s.yaml (--set {override}): routing.failover[0].to[0]: String should match pattern "
        "'^[a-z0-9][a-z0-9_.-]*$' (got 'BAD SLUG')"]
    assert problems(default_text(), ["regions=[5]"]) == [
        "s.yaml (--set regions=[5]): regions[0]: Input should be a valid dictionary or instance of Region"]


def test_plain_yes_no_null_keys_are_their_text() -> None:
    # YAML 1.1 reads a plain NO (Norway) as False and `null:` as None: keys no field has
    text = patch(default_text(), "version: 1", "version: 1\ntrue: 1\nNO: 2\nnull: 3\n'yes': 4")
    assert problems(text)[:4] == [
        f"s.yaml:{line_of(text, 'true: 1')}: true: unknown field",
        f"s.yaml:{line_of(text, 'NO: 2')}: NO: unknown field",
        f"s.yaml:{line_of(text, 'null: 3')}: null: unknown field",
        f"s.yaml:{line_of(text, 'yes')}: yes: unknown field"]
    assert problems(default_text(), ["segments[0].share={NO: 0.1}"])[0] == (
        "s.yaml (--set segments[0].share={NO: 0.1}): segments[0].share.NO: unknown region 'NO'")


def test_set_on_a_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    listed = _write(tmp_path, "list.yaml", "- a\n")
    with pytest.raises(ScenarioValidationError) as info:
        load(str(listed), ["name=x"])
    assert str(info.value) == f"{listed}:1: a scenario must be a YAML mapping"


def test_a_device_is_not_a_scenario() -> None:
    with pytest.raises(ScenarioNotFoundError) as info:
        load("/dev/null")
    assert str(info.value) == "/dev/null: not a regular file"
