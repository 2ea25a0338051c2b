"""Credits sized to the load test's sample: each user's scale, the file its gateway reads, and a
bad file refused with one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtests import credits
from loadtests.plan import LoadConfig, build_plan
from regionblock.cli import main
from scenarios.ledger import grants_credit, read_credit_scales
from scenarios.traffic import hourly_intensity

PLAN = build_plan(LoadConfig(scenario="openai-2024-cn-hk", duration_s=60.0, epoch=0.0, users=12))


def test_a_users_scale_is_its_planned_tokens_over_its_organisations_expected_tokens() -> None:
    scales = credits.credit_scales(PLAN)
    s = PLAN.scenario
    assert sorted(scales) == sorted(u.org.id for u in PLAN.users)
    for u in PLAN.users:
        sch = PLAN.schedule(u)
        seg = s.segment(u.org.segment)
        window = hourly_intensity(s.traffic, s.region(u.org.region).utc_offset, s.window.start,
                                  PLAN.hours).sum()
        expected = u.org.requests_per_hour * window * (seg.tokens_in.mean() + seg.tokens_out.mean())
        assert scales[u.org.id] * expected == pytest.approx(
            float(sch.tokens_in.sum() + sch.tokens_out.sum()), rel=1e-12)
    assert all(0 <= v < 1 for v in scales.values())  # a sample sends less than its organisation


def test_the_file_round_trips_exactly_and_scales_the_grant(tmp_path: Path) -> None:
    path = credits.write(PLAN, tmp_path)
    assert read_credit_scales(path) == credits.credit_scales(PLAN)
    zhipu = PLAN.scenario.provider("zhipu")
    at = PLAN.scenario.window.start
    assert grants_credit(zhipu, at, 0.001) == 150_000 and grants_credit(zhipu, at) == 150_000_000


@pytest.mark.parametrize(("content", "message"), [
    ("[1, 2]", "must be a JSON object of organisation id to credit scale"),
    ('{"cn-startup-000001": "x"}', "cn-startup-000001: 'x' is not a credit scale"),
    ('{"cn-startup-000001": -1}', "cn-startup-000001: -1 is not a credit scale"),
    ("{", "not a readable JSON file"),
])
def test_the_gateway_refuses_a_bad_credit_scale_file_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str) -> None:
    bad = tmp_path / "scales.json"
    bad.write_text(content, encoding="utf-8")
    code = main(["gateway", "openai-2024-cn-hk", "--insecure-org-keys", "--credit-scale", str(bad),
                 "--ledger", str(tmp_path / "l.sqlite")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"--credit-scale: {bad}: ") and message in err
    assert json.loads(json.dumps(err))  # plain text, no traceback
