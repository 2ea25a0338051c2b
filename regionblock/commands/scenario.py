"""``regionblock scenario list | validate PATH... | show SCENARIO | schema``."""

from __future__ import annotations

import argparse
import json
import sys

from regionblock.common import SCENARIO_REF, add_scenario_arg, add_set_arg, load_scenario
from scenarios.errors import ScenarioError
from scenarios.loader import description_line, json_schema, load, resolved_yaml, shipped


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scenario", help="list, validate, show scenarios; print the JSON Schema",
                       description="Work with scenario files.")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    actions.add_parser("list", help="shipped scenarios with one-line descriptions").set_defaults(
        func=run_list)

    v = actions.add_parser("validate", help="check scenario files; every problem is reported")
    v.add_argument("paths", nargs="+", metavar="PATH", type=SCENARIO_REF,
                   help="scenario files or shipped names")
    add_set_arg(v)
    v.set_defaults(func=run_validate)

    s = actions.add_parser("show", help="the resolved scenario (defaults filled in) as YAML")
    add_scenario_arg(s)
    s.set_defaults(func=run_show)

    actions.add_parser("schema", help="JSON Schema of scenario files (for editors)").set_defaults(
        func=run_schema)


def run_list(args: argparse.Namespace) -> int:
    library = shipped()
    width = max(len(name) for name in library)
    for name, path in library.items():
        print(f"{name:<{width}}  {description_line(path)}")
    return 0


def run_validate(args: argparse.Namespace) -> int:
    """Validate every PATH; report all problems of all files, exit 2 if any."""
    failed = False
    for path in args.paths:
        try:
            loaded = load(path, tuple(args.overrides))
        except ScenarioError as exc:
            print(str(exc), file=sys.stderr)
            failed = True
            continue
        s = loaded.scenario
        orgs = sum(r.organisations for r in s.regions)
        print(f"{loaded.source}: ok — {s.name}: {len(s.regions)} regions, {orgs:,} organisations, "
              f"{len(s.segments)} segments, {len(s.providers)} providers, "
              f"{sum(len(p.stages) for p in s.policy.values())} policy stages")
    return 2 if failed else 0


def run_show(args: argparse.Namespace) -> int:
    sys.stdout.write(resolved_yaml(load_scenario(args).scenario))
    return 0


def run_schema(args: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=2, sort_keys=True))
    return 0
