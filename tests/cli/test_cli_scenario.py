"""``regionblock scenario list | validate | show | schema``: golden outputs and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import assert_golden, assert_one_line_error, run_cli

from scenarios.loader import load, load_text, shipped

Capsys = pytest.CaptureFixture[str]


def test_list(capsys: Capsys) -> None:
    r = run_cli(capsys, "scenario", "list")
    assert (r.code, r.err) == (0, "")
    assert [line.split()[0] for line in r.out.splitlines()] == sorted(shipped())
    assert_golden("scenario_list.txt", r.out)


def test_validate_ok(capsys: Capsys) -> None:
    r = run_cli(capsys, "scenario", "validate", *sorted(shipped()))
    assert (r.code, r.err) == (0, "")
    assert_golden("scenario_validate_ok.txt", r.out)


def test_validate_failing(capsys: Capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    text = shipped()["openai-2024-cn-hk"].read_text(encoding="utf-8")
    Path("bad.yaml").write_text(text.replace("  bin: day", "  bin: week").replace(
        "    markup: 0.3 ", "    markup: 11 "), encoding="utf-8")
    Path("empty.yaml").write_text("", encoding="utf-8")
    r = run_cli(capsys, "scenario", "validate", "bad.yaml", "openai-2024-cn-hk", "empty.yaml", "nope.yaml")
    assert r.code == 2
    assert r.out.startswith("openai-2024-cn-hk.yaml: ok — ")
    assert "Traceback" not in r.err
    assert_golden("scenario_validate_failing.stderr.txt", r.err)


def test_validate_with_set(capsys: Capsys) -> None:
    r = run_cli(capsys, "scenario", "validate", "staged-percent-rollout",
                "--set", "policy.openai.stages[1].percent=150")
    assert_one_line_error(r, "staged-percent-rollout.yaml (--set policy.openai.stages[1].percent=150): "
                             "policy.openai.stages[1].percent: Input should be less than or equal to 100 "
                             "(got 150)")
    ok = run_cli(capsys, "scenario", "validate", "staged-percent-rollout",
                 "--set", "policy.openai.stages[1].percent=50")
    assert ok.code == 0 and ok.out.endswith(", 4 policy stages\n")


@pytest.mark.parametrize("name", sorted(shipped()))
def test_show_parses_back(capsys: Capsys, name: str) -> None:
    r = run_cli(capsys, "scenario", "show", name)
    assert (r.code, r.err) == (0, "")
    assert load_text(r.out, file="shown.yaml").scenario == load(name).scenario


def test_show_applies_overrides(capsys: Capsys) -> None:
    r = run_cli(capsys, "scenario", "show", "openai-2024-cn-hk",
                "--set", "policy.openai.stages[1].percent=50")
    shown = load_text(r.out, file="shown.yaml").scenario
    assert shown.policy["openai"].stages[1].percent == 50.0
    assert shown == load("openai-2024-cn-hk", ["policy.openai.stages[1].percent=50"]).scenario


def test_show_errors(capsys: Capsys) -> None:
    assert_one_line_error(run_cli(capsys, "scenario", "show", "openai-2024-cn-hk", "--set", "window.bin"),
                          "--set window.bin: expected PATH=VALUE")
    assert_one_line_error(run_cli(capsys, "scenario", "show", "nope"),
                          "nope: not a file or a shipped scenario (mmc-validation, no-incentives, "
                          "openai-2024-cn-hk, staged-percent-rollout, strict-enforcement)")


def test_schema(capsys: Capsys) -> None:
    r = run_cli(capsys, "scenario", "schema")
    assert (r.code, r.err) == (0, "")
    schema = json.loads(r.out)
    assert schema["title"] == "regionblock scenario"
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    whole = schema["else"]                          # a whole scenario, field by field
    assert "policy" in whole["properties"]
    assert set(whole["required"]) >= {"name", "window", "regions", "segments", "providers", "behaviour",
                                      "slos"}
    assert "from" in schema["$defs"]["FailoverRule"]["properties"]  # aliases, as written in files
    assert schema["if"] == {"type": "object", "required": ["extends"]}
    assert set(schema["then"]["properties"]) == set(whole["properties"]) | {"extends", "set"}


def test_every_shipped_scenario_file_is_valid_against_the_schema(capsys: Capsys) -> None:
    # what an editor does with `scenario schema`: check the files as they are written
    import jsonschema
    import yaml

    from scenarios.loader import shipped_dir

    r = run_cli(capsys, "scenario", "schema")
    validator = jsonschema.Draft202012Validator(json.loads(r.out))
    files = sorted(shipped_dir().glob("*.yaml"))
    assert len(files) == 5
    for f in files:
        data = yaml.safe_load(f.read_text(encoding="utf-8"))
        # YAML dates are dates; JSON Schema sees them as the strings the file spells
        text = json.loads(json.dumps(data, default=str))
        assert [e.message for e in validator.iter_errors(text)] == [], f.name
    default = json.loads(json.dumps(yaml.safe_load(
        (shipped_dir() / "openai-2024-cn-hk.yaml").read_text(encoding="utf-8")), default=str))
    # a typo at the top, in a whole file and in an extending one; a whole file missing a field
    assert [e.message for e in validator.iter_errors({**default, "polcy": {}})] == [
        "Additional properties are not allowed ('polcy' was unexpected)"]
    assert [e.message for e in validator.iter_errors({"extends": "openai-2024-cn-hk", "nme": "x"})] \
        == ["Additional properties are not allowed ('nme' was unexpected)"]
    del default["window"]
    assert [e.message for e in validator.iter_errors(default)] == ["'window' is a required property"]


def test_usage_errors_are_one_line(capsys: Capsys) -> None:
    r = run_cli(capsys, "scenario")
    assert (r.code, r.out) == (2, "")
    assert r.err == "regionblock scenario: the following arguments are required: ACTION\n"
    r = run_cli(capsys, "scenario", "validate")
    assert r.err == "regionblock scenario validate: the following arguments are required: PATH\n"
