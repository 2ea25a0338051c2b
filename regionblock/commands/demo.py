"""``regionblock demo [--out DIR]``: the main job on the default scenario."""

from __future__ import annotations

import argparse
import datetime as dt

from regionblock.common import default_runs_dir
from scenarios.loader import load
from scenarios.policy import Policy, PolicyRequest

DEFAULT_SCENARIO = "openai-2024-cn-hk"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the main job on the default scenario",
                       description="Validate the default scenario and show its policy at work.")
    p.add_argument("--out", type=str, default=str(default_runs_dir()), metavar="DIR",
                   help="runs root (default: runs/)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    loaded = load(DEFAULT_SCENARIO)
    s = loaded.scenario
    print(f"{loaded.source}: ok ({sum(r.organisations for r in s.regions):,} organisations)")
    policy = Policy(s)
    for when, country in (("2024-06-01", "CN"), ("2024-06-26", "CN"), ("2024-07-10", "CN"),
                          ("2024-07-10", "US")):
        at = dt.datetime.fromisoformat(when).replace(tzinfo=dt.UTC)
        d = policy.decide(at, PolicyRequest(provider=s.incumbent.name, country=country, org="demo"))
        status = d.response.status if d.response else 200
        print(f"{when} {country}: {d.action:<5} HTTP {status}  {d.reason}")
    return 0
