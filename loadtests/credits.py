"""Free-token credits sized to the load test's sample (the ledger contract's ``credit_scale``).

A Locust user plays one organisation but sends far fewer tokens than that organisation would (the
load test keeps the world's shape, not its size: see :mod:`loadtests.plan`). A full credit would
then pay for all of a migrated user's requests, where the simulated organisation's credit pays
for a share of its traffic that depends on how fast it uses tokens. Each user's credit is scaled by
its planned tokens over the window divided by its organisation's expected tokens over the window
(its requests per hour × the window's traffic intensity × mean tokens per request), so a credit
lasts as large a share of the user's requests as of its organisation's.
"""

from __future__ import annotations

from pathlib import Path

from loadtests.plan import Plan
from scenarios.ledger import credit_scale, write_credit_scales
from scenarios.traffic import hourly_intensity

FILE = "credit_scale.json"


def credit_scales(plan: Plan) -> dict[str, float]:
    """Organisation id → credit scale, for every user of the plan."""
    s = plan.scenario
    out: dict[str, float] = {}
    for user in plan.users:
        sch = plan.schedule(user)
        planned = float(sch.tokens_in.sum() + sch.tokens_out.sum())
        seg = s.segment(user.org.segment)
        hours = hourly_intensity(s.traffic, s.region(user.org.region).utc_offset, s.window.start,
                                 plan.hours).sum()
        expected = user.org.requests_per_hour * hours * (seg.tokens_in.mean() + seg.tokens_out.mean())
        out[user.org.id] = credit_scale(planned, expected)
    return out


def write(plan: Plan, run_dir: Path) -> Path:
    path = run_dir / FILE
    write_credit_scales(path, credit_scales(plan))
    return path
