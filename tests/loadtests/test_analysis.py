"""Reconciliation, the revenue check, rate accuracy and the orgs timeseries, on exact inputs."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from gateway.metering import Credits
from loadtests import analysis
from loadtests.events import RequestRecord, StateRecord
from loadtests.plan import LoadConfig, Plan, build_plan
from scenarios.ledger import LedgerRow, revenue_usd
from scenarios.loader import load
from scenarios.rundir import thin_percentile
from tests.ledger_rows import ledger_row

S = load("openai-2024-cn-hk").scenario


def rec(i: int, decision: str, **kw: object) -> RequestRecord:
    base = dict(id=f"g{i}", client_id=f"c{i}", user=0, org="cn-startup-000001", region="CN",
                segment="startup", provider="openai", path="direct", model="gpt-4o", stream=False,
                attempt=0, intended=100.0 + i, sent=100.0 + i, done=100.1 + i, status=200,
                decision=decision, tokens_in=10, tokens_out=5, usage_in=10, usage_out=5,
                ttft_ms=None, served_by="openai", error="")
    base.update(kw)
    return RequestRecord(**base)  # type: ignore[arg-type]


def row(i: int, decision: str, **kw: object) -> LedgerRow:
    fields: dict[str, object] = {
        "request_id": f"g{i}", "wall_time": 100.0 + i, "org": "cn-startup-000001",
        "home_region": "CN", "country": "CN", "decision": decision, "tokens_in": 10,
        "tokens_out": 5, "revenue_usd": revenue_usd(5.0, 15.0, 10, 5)}
    return ledger_row(**{**fields, **kw})


def test_reconciliation_passes_when_every_request_is_booked_as_seen() -> None:
    r = analysis.reconcile([rec(1, "allow"), rec(2, "block")], [row(1, "allow"), row(2, "block")])
    assert r["passed"]
    assert r["by_decision"] == {"allow": {"locust": 1, "ledger": 1},
                                "block": {"locust": 1, "ledger": 1}}


def test_reconciliation_names_what_does_not_match() -> None:
    r = analysis.reconcile([rec(1, "allow"), rec(2, "block"), rec(3, "failed", id="")],
                           [row(1, "warn"), row(2, "block"), row(9, "allow")])
    assert not r["passed"]
    assert (r["unmatched_locust"], r["unmatched_ledger"], r["decision_mismatches"]) == (1, 1, 1)
    assert r["examples"]["decision_mismatches"] == [["c1", "allow", "warn"]]


def test_revenue_check_is_exact_per_row() -> None:
    good = row(1, "allow")
    bad = dataclasses.replace(row(2, "allow"), revenue_usd=good.revenue_usd * (1 + 1e-9))
    assert analysis.revenue_check(S, [good])["passed"]
    result = analysis.revenue_check(S, [good, bad])
    assert not result["passed"] and result["mismatches"] == 1
    assert result["examples"][0]["request_id"] == "g2"


def test_token_check_compares_ledger_with_the_response_usage() -> None:
    joined = analysis.join([rec(1, "allow"), rec(2, "allow", usage_out=4)],
                           [row(1, "allow"), row(2, "allow")])
    assert analysis.token_check(joined) == {"passed": False, "mismatches": 1, "examples": ["c2"]}


def plan(duration_s: float = 122.0) -> Plan:
    return build_plan(LoadConfig(scenario="openai-2024-cn-hk", duration_s=duration_s, epoch=0.0,
                                 users=40))


def test_rate_accuracy_compares_sends_with_intentions_per_day() -> None:
    p = plan()  # 122 days onto 122 s: one scenario day per wall second
    on_time = [rec(i, "allow", intended=10 + i / 100, sent=10 + i / 100) for i in range(80)]
    result = analysis.rate_accuracy(p, on_time)
    assert result["passed"] and result["judged_days"] == 1 and result["worst_error"] == 0.0
    # Half a second late: the 30 sends meant for after 10.5 s slip into the next day.
    late = [dataclasses.replace(r, sent=r.sent + 0.5) for r in on_time]
    result = analysis.rate_accuracy(p, late)
    assert not result["passed"] and result["worst_error"] == pytest.approx(30 / 80)


def test_rate_accuracy_pools_quiet_days_into_periods_that_reach_the_minimum() -> None:
    p = plan()  # one scenario day per wall second; 20 sends a day is below RATE_MIN_PER_DAY
    on_time = [rec(i, "allow", intended=10 + i / 20, sent=10 + i / 20) for i in range(120)]
    result = analysis.rate_accuracy(p, on_time)
    assert result["passed"] and "skipped" not in result
    assert (result["judged_periods"], result["judged_days"]) == (2, 6)
    assert [(x["days"], x["target"], x["achieved"]) for x in result["periods"]] == [(3, 60, 60)] * 2
    # Half a day late: each day's second half slips into the next day. Inside a period that
    # cancels; across the boundary the first period loses 10 of 60, the second gains and loses 10.
    late = [dataclasses.replace(r, sent=r.sent + 0.5) for r in on_time]
    result = analysis.rate_accuracy(p, late)
    assert [x["achieved"] for x in result["periods"]] == [50, 60]
    assert not result["passed"] and result["worst_error"] == pytest.approx(10 / 60)
    assert result["days"][-1] == {"day": "2024-06-17T00:00:00Z", "target": 0, "achieved": 10,
                                  "error": None, "judged": False}


def test_rate_accuracy_is_skipped_when_the_whole_run_is_too_small_to_judge() -> None:
    few = [rec(i, "allow", intended=10 + i / 20, sent=10 + i / 20) for i in range(49)]
    result = analysis.rate_accuracy(plan(), few)
    assert result["skipped"] and result["judged_periods"] == 0 and result["judged_days"] == 0


def test_org_states_are_weighted_and_taken_at_bin_ends() -> None:
    p = plan()
    u = p.users[2]
    states = [StateRecord(u.index, u.org.id, "CN", "2024-06-01T00:00:00Z", "direct", ""),
              StateRecord(u.index, u.org.id, "CN", "2024-07-09T12:00:00Z", "migrating", "zhipu"),
              StateRecord(u.index, u.org.id, "CN", "2024-07-10T12:00:00Z", "migrated", "zhipu")]
    rows = analysis.org_states(p, states)
    binner = analysis.Binner.of(S)
    day = binner.index(dt.datetime(2024, 7, 9, tzinfo=dt.UTC))
    mine = {(i, st, prov): w for i, r, st, prov, w in rows if r == "CN"}
    assert (day - 1, "migrating", "zhipu") not in mine
    assert mine[(day, "migrating", "zhipu")] == pytest.approx(u.weight)
    assert mine[(day + 1, "migrated", "zhipu")] == pytest.approx(u.weight)
    total_day0 = sum(w for i, _, _, _, w in rows if i == 0)
    assert total_day0 == pytest.approx(sum(r.organisations for r in S.regions))


def test_blocked_regions_and_allow_list() -> None:
    assert analysis.blocked_regions(S) == frozenset({"CN", "HK", "MO", "RU"})
    assert analysis.allow_listed(S) == frozenset({"enterprise-azure"})


# ---------------------------------------------------------------- free-token credits

OFFER = load("openai-2024-cn-hk", ["providers[3].incentive.free_tokens=50"]).scenario
AT = dt.datetime(2024, 7, 10, tzinfo=dt.UTC)


def billed(sequence: list[tuple[int, int]], *, org: str = "cn-startup-000001",
           first: int = 0, credits: Credits | None = None) -> list[LedgerRow]:
    """Rows for one organisation's requests at Tencent, billed by the gateway's own Credits."""
    credits = credits or Credits({})
    tencent = OFFER.provider("tencent")
    model = tencent.models[0]
    out = []
    for k, (tin, tout) in enumerate(sequence):
        bill = credits.bill(org=org, provider=tencent, model=model, path="direct", at=AT,
                            tokens_in=tin, tokens_out=tout)
        out.append(ledger_row(request_id=f"{org}-{first + k}", wall_time=100.0 + first + k,
                              org=org, home_region="CN", country="CN", provider="tencent",
                              model=model.name, tokens_in=tin, tokens_out=tout,
                              free_tokens_in=bill.free_in, free_tokens_out=bill.free_out,
                              revenue_usd=bill.revenue_usd, credit_opened=bill.credit_opened,
                              credit_left=bill.credit_left))
    return out


SEQUENCE = [(10, 7), (10, 7), (20, 12), (10, 7)]


def test_the_revenue_check_replays_each_rows_credit_draw() -> None:
    rows = billed(SEQUENCE)
    result = analysis.revenue_check(OFFER, rows)
    assert result["passed"] and result["free_tokens"] == 50
    assert result["credits"] == {"passed": True, "opened": 1, "problems": 0, "examples": []}
    # a row that drew one token too many (and priced the rest right) is caught
    off = dataclasses.replace(rows[2], free_tokens_in=11, credit_left=-1,
                              revenue_usd=revenue_usd(4.14, 13.8, 20, 12, 11, 6))
    result = analysis.revenue_check(OFFER, [*rows[:2], off, rows[3]])
    assert not result["passed"] and result["mismatches"] == 1
    assert result["examples"][0]["expected_free_tokens"] == [10, 6]  # the draw on 16 left
    assert result["credits"]["examples"][0]["problem"] == "credit overdrawn"


def test_a_credit_opened_by_two_replicas_is_reported() -> None:
    """An organisation that reached two replicas got a credit from each: pin orgs to replicas."""
    a, b = billed(SEQUENCE[:2]), billed(SEQUENCE[2:], first=2)  # two separate balances
    result = analysis.revenue_check(OFFER, a + b)
    assert not result["passed"] and result["mismatches"] == 0  # every row is right on its own
    (problem,) = result["credits"]["examples"]
    assert problem["org"] == "cn-startup-000001" and problem["provider"] == "tencent"
    assert problem["problem"].startswith("credit opened 2 times (replicas with separate ledgers")


def test_a_request_that_should_have_opened_a_credit_is_reported() -> None:
    rows = billed(SEQUENCE[:1])
    unopened = dataclasses.replace(rows[0], free_tokens_in=0, free_tokens_out=0, credit_opened=0,
                                   credit_left=None, revenue_usd=revenue_usd(4.14, 13.8, 10, 7))
    result = analysis.revenue_check(OFFER, [unopened])
    assert result["mismatches"] == 0 and not result["credits"]["passed"]
    assert result["credits"]["examples"][0]["problem"] == (
        "cn-startup-000001-0 found no credit while the offer was on")


def test_a_credit_whose_rows_do_not_add_up_is_reported() -> None:
    rows = billed(SEQUENCE)
    lost = rows[:1] + rows[2:]  # a drawing row missing from the ledger
    result = analysis.revenue_check(OFFER, lost)
    assert result["credits"]["examples"][0]["problem"] == "credit left 0, granted 50 less 33 drawn"


def test_free_tokens_are_in_the_token_check_and_the_timeseries() -> None:
    rows = billed(SEQUENCE)
    bad = dataclasses.replace(rows[0], free_tokens_out=8)
    joined = analysis.join([], [*rows[1:], bad])
    assert analysis.token_check(joined)["examples"] == [bad.request_id]
    cells = analysis.cells(plan(), analysis.join([], rows))
    assert {k[1:]: c.sums["free_tokens"] for k, c in cells.items()} == {
        ("CN", "tencent", "direct"): 50}


def test_the_credit_check_expects_the_grant_the_gateway_was_told_to_scale() -> None:
    rows = billed(SEQUENCE, credits=Credits({}, {"cn-startup-000001": 0.5}))
    scales = analysis.applied_scales({"credit_scales": '{"cn-startup-000001": 0.5}'})
    assert scales == {"cn-startup-000001": 0.5}
    result = analysis.revenue_check(OFFER, rows, scales, scales)
    assert result["passed"] and result["credits"]["scaled_to_plan"] is True
    assert rows[0].credit_opened == 25
    unscaled = analysis.revenue_check(OFFER, rows, {}, scales)
    assert not unscaled["passed"] and unscaled["credits"]["scaled_to_plan"] is False
    assert unscaled["credits"]["examples"][0]["problem"] == (
        "cn-startup-000001-0 opened 25 free tokens, the scenario grants 50")


def test_a_latency_percentile_carries_the_requests_it_rests_on() -> None:
    # 15 relayed and 250 direct requests served after the block (one scenario day per wall
    # second: the block starts on day 99), 3 relayed ones blocked, 20 direct ones before it
    p = plan()
    relay = [rec(i, "allow", path="relay", sent=110.0 + i / 100, intended=110.0 + i / 100,
                 done=110.0 + i / 100 + 0.5 + i) for i in range(15)]
    blocked = [rec(100 + i, "block", path="relay", sent=111.0, intended=111.0, done=111.001)
               for i in range(3)]
    direct = [rec(200 + i, "allow", sent=112.0, intended=112.0, done=112.0 + (i % 50) / 10)
              for i in range(250)]
    before = [rec(600 + i, "allow", sent=10.0, intended=10.0, done=10.2) for i in range(20)]
    joined = analysis.join([*relay, *blocked, *direct, *before], None)
    h = analysis._latency_headline(p, joined, analysis.first_block(S, "openai"))
    r99 = h["latency_ms.relay.p99.after"]
    assert r99["requests"] == 15
    assert r99["mean"] == pytest.approx(500.0 + 1000.0 * (13 + 0.86), rel=1e-9)   # np.percentile
    assert h["latency_ms.direct.p99.after"]["requests"] == 250
    assert h["latency_ms.direct.openai.p50.after"]["requests"] == 250
    assert h["latency_ms.direct.p50.before"]["requests"] == 20
    assert thin_percentile(r99, S.slos.min_requests) == "15 requests, fewer than 200: too few to read"
    assert thin_percentile(h["latency_ms.direct.p99.after"], S.slos.min_requests) is None
