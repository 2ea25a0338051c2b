"""After the run: reconcile client and ledger, check SLOs, build timeseries.csv and summary.json.

Inputs are the users' event records (what Locust sent and saw), the gateway's ledger (what the
gateway decided and billed) and the plan (what was meant to be sent). Joined on the gateway's
``x-request-id``, each request gets its dimensions from the ledger when it has a row there
(scenario time of arrival, the provider that served it after any failover, the path) and from
the client otherwise.

Timeseries rows (``source=loadtest``, replication 0), per window bin (by scenario time) and per
(home region, provider, path): ``requests, allowed, warned, blocked`` (throttles included)
``, failed, retries, tokens_in, tokens_out, revenue_usd``, latency percentiles of *served*
requests measured from their intended send instant, ``ttft_ms_*`` of served streams,
``relay_markup_usd``; ``baseline_requests``/``baseline_revenue_usd`` (every planned request at
the incumbent's price, as if nothing were blocked); ``rejected_429`` per provider; ``orgs`` by
state at the end of each bin, weighted by the organisations each user stands for.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from loadtests.agent import first_block
from loadtests.events import RequestRecord, StateRecord
from loadtests.plan import Plan
from loadtests.wire import DECISIONS
from scenarios.clock import format_instant
from scenarios.countries import expand_regions
from scenarios.ledger import LedgerRow, credit_draw, draws_credit, grants_credit, revenue_usd
from scenarios.policy import denied_regions
from scenarios.rundir import ORG_STATES, band
from scenarios.schema import Provider, Scenario

SERVED = ("allow", "warn")
PCTS = (50, 95, 99)
ORDER = {d: i for i, d in enumerate(DECISIONS)}
#: Per-day achieved/target comparisons need this many planned sends in the day to mean much.
RATE_MIN_PER_DAY = 50
RATE_TOLERANCE = 0.05


# ---------------------------------------------------------------- the joined requests


@dataclass(frozen=True, slots=True)
class Joined:
    rec: RequestRecord | None
    row: LedgerRow | None

    @property
    def decision(self) -> str:
        return self.row.decision if self.row else self.rec.decision  # type: ignore[union-attr]


def join(requests: Sequence[RequestRecord], ledger: Sequence[LedgerRow] | None) -> list[Joined]:
    by_id = {r.request_id: r for r in ledger or ()}
    out = [Joined(rec, by_id.pop(rec.id, None) if rec.id else None) for rec in requests]
    out += [Joined(None, row) for row in by_id.values()]
    return out


# ---------------------------------------------------------------- checks


def reconcile(requests: Sequence[RequestRecord], ledger: Sequence[LedgerRow]) -> dict[str, Any]:
    """The requests Locust sent against the ledger's rows: by decision, and request by request."""
    client = Counter(r.decision for r in requests)
    booked = Counter(r.decision for r in ledger)
    ids = {r.request_id: r for r in ledger}
    unmatched_client = [r.client_id for r in requests if r.id not in ids]
    seen = {r.id for r in requests}
    unmatched_ledger = [r.request_id for r in ledger if r.request_id not in seen]
    mismatched = [(r.client_id, r.decision, ids[r.id].decision) for r in requests
                  if r.id in ids and ids[r.id].decision != r.decision]
    decisions = sorted(set(client) | set(booked), key=lambda d: ORDER.get(d, 99))
    by = {d: {"locust": client.get(d, 0), "ledger": booked.get(d, 0)} for d in decisions}
    passed = (client == booked and not unmatched_client and not unmatched_ledger
              and not mismatched)
    return {
        "passed": passed,
        "locust_requests": len(requests), "ledger_rows": len(ledger),
        "by_decision": by,
        "unmatched_locust": len(unmatched_client), "unmatched_ledger": len(unmatched_ledger),
        "decision_mismatches": len(mismatched),
        "examples": {"unmatched_locust": unmatched_client[:5],
                     "unmatched_ledger": unmatched_ledger[:5],
                     "decision_mismatches": [list(m) for m in mismatched[:5]]},
    }


def applied_scales(meta: dict[str, str]) -> dict[str, float]:
    """The credit scales the gateway applied (its ledger's meta ``credit_scales``; none: full)."""
    try:
        found = json.loads(meta.get("credit_scales") or "{}")
    except ValueError:
        return {}
    return {str(k): float(v) for k, v in found.items()} if isinstance(found, dict) else {}


def revenue_check(s: Scenario, ledger: Sequence[LedgerRow],
                  scales: dict[str, float] | None = None,
                  planned: dict[str, float] | None = None) -> dict[str, Any]:
    """Every ledger row's money by the ledger contract (:mod:`scenarios.ledger`): its free tokens
    are the draw on the credit it found (``credit_left`` after it, plus what it drew), its
    ``revenue_usd`` the list price of the rest, bit for bit; and the credits themselves
    (:func:`credit_check`) were opened, drawn and left as the contract says."""
    prices = {(p.name, m.name): (m.price_in, m.price_out) for p in s.providers for m in p.models}
    bad: list[dict[str, Any]] = []
    total = expected_total = 0.0
    for row in ledger:
        price = prices.get((row.provider, row.model))
        expected = revenue_usd(*price, row.tokens_in, row.tokens_out, row.free_tokens_in,
                               row.free_tokens_out) if price else 0.0
        free = _expected_free(row)
        total += row.revenue_usd
        expected_total += expected
        if row.revenue_usd != expected or (row.free_tokens_in, row.free_tokens_out) != free:
            bad.append({"request_id": row.request_id, "provider": row.provider,
                        "model": row.model, "tokens_in": row.tokens_in,
                        "tokens_out": row.tokens_out, "free_tokens": [row.free_tokens_in,
                                                                      row.free_tokens_out],
                        "expected_free_tokens": list(free), "revenue_usd": row.revenue_usd,
                        "expected_usd": expected})
    credits = credit_check(s, ledger, scales or {})
    if planned is not None:
        credits["scaled_to_plan"] = (scales or {}) == planned
    return {"passed": not bad and credits["passed"], "rows": len(ledger), "mismatches": len(bad),
            "examples": bad[:5], "revenue_usd": total, "expected_usd": expected_total,
            "free_tokens": sum(r.free_tokens_in + r.free_tokens_out for r in ledger),
            "credits": credits}


def _expected_free(row: LedgerRow) -> tuple[int, int]:
    """What the row's credit should have paid: the draw on the balance it found."""
    if row.credit_left is None:
        return 0, 0
    before = row.credit_left + row.free_tokens_in + row.free_tokens_out
    if row.credit_opened and before != row.credit_opened:
        return -1, -1  # an opening row found a balance other than its grant: never matches
    return credit_draw(row.tokens_in, row.tokens_out, before)


def credit_check(s: Scenario, ledger: Sequence[LedgerRow],
                 scales: dict[str, float] | None = None) -> dict[str, Any]:
    """Free-token credits per (org, provider), replayed against the ledger contract: opened once
    (two openings mean the organisation reached two replicas that each gave it a credit: pin
    organisations to replicas), with the scenario's grant at its instant (times the organisation's
    credit scale, ``scales``, as the gateway was told); every request that could
    open one while the offer was on found one; never overdrawn; the last balance (balances only
    fall) is the grant less the draws."""
    providers = {p.name: p for p in s.providers}
    by_key: defaultdict[tuple[str, str], list[LedgerRow]] = defaultdict(list)
    for row in ledger:
        if row.provider in providers:
            by_key[(row.org, row.provider)].append(row)
    problems: list[dict[str, Any]] = []
    opened = 0
    for (org, name), rows in sorted(by_key.items()):
        found = _credit_problem(providers[name], rows, (scales or {}).get(org, 1.0))
        opened += sum(1 for r in rows if r.credit_opened > 0)
        if found:
            problems.append({"org": org, "provider": name, "problem": found})
    return {"passed": not problems, "opened": opened, "problems": len(problems),
            "examples": problems[:5]}


def _credit_problem(provider: Provider, rows: list[LedgerRow], scale: float) -> str:
    openings = [r for r in rows if r.credit_opened > 0]
    if len(openings) > 1:
        return (f"credit opened {len(openings)} times (replicas with separate ledgers each gave "
                "one: route each organisation to one replica)")
    for r in openings:
        granted = grants_credit(provider, _parse_instant(r.scenario_time), scale)
        if r.credit_opened != granted or not draws_credit(provider, r.path):
            return f"{r.request_id} opened {r.credit_opened} free tokens, the scenario grants {granted}"
    holding = [r for r in rows if r.credit_left is not None]
    if any(r.credit_left < 0 for r in holding):  # type: ignore[operator]
        return "credit overdrawn"
    missed = [r for r in rows if r.credit_left is None and r.org and draws_credit(provider, r.path)
              and grants_credit(provider, _parse_instant(r.scenario_time), scale) > 0]
    if missed:  # once open, a credit stays open (at 0 when used up)
        return f"{missed[0].request_id} found no credit while the offer was on"
    if openings and holding:
        drawn = sum(r.free_tokens_in + r.free_tokens_out for r in holding)
        last = min(r.credit_left for r in holding)  # type: ignore[type-var]
        if last != openings[0].credit_opened - drawn:
            return f"credit left {last}, granted {openings[0].credit_opened} less {drawn} drawn"
    return ""


def token_check(joined: Sequence[Joined]) -> dict[str, Any]:
    """Served requests: the ledger's tokens are the ones the client asked for and was told; and no
    row's credit paid for more tokens than it metered."""
    bad = [j.rec.client_id for j in joined if j.rec and j.row and j.row.decision in SERVED
           and (j.row.tokens_in, j.row.tokens_out) != (j.rec.usage_in, j.rec.usage_out)]
    bad += [j.row.request_id for j in joined if j.row
            and not (0 <= j.row.free_tokens_in <= j.row.tokens_in
                     and 0 <= j.row.free_tokens_out <= j.row.tokens_out)]
    return {"passed": not bad, "mismatches": len(bad), "examples": bad[:5]}


def slo_check(s: Scenario, joined: Sequence[Joined], *,
              latencies_not_judged: str | None = None) -> dict[str, Any]:
    """k6-style thresholds: p99 latency and error rate of the SLO regions' requests.

    ``latencies_not_judged`` (why) leaves every latency threshold unjudged — a run whose delays
    were divided by ``--time-scale`` measures no latency the SLOs speak of — and judges the error
    rate alone."""
    judge = latencies_not_judged is None
    regions = sorted(expand_regions(s.slos.regions) & {r.code for r in s.regions})
    per: dict[str, Any] = {}
    all_lat: list[float] = []
    all_n = all_failed = 0
    for region in regions:
        reqs = [j for j in joined if j.rec and j.rec.region == region]
        lat = [j.rec.latency_ms for j in reqs if j.rec and j.decision in SERVED]
        failed = sum(1 for j in reqs if j.decision == "failed")
        per[region] = _slo_entry(s, lat, len(reqs), failed, judge)
        all_lat += lat
        all_n += len(reqs)
        all_failed += failed
    overall = _slo_entry(s, all_lat, all_n, all_failed, judge)
    thresholds = threshold_checks(s, joined, judge=judge)
    passed = overall["passed"] and all(v["passed"] for v in per.values()) \
        and all(t["passed"] is not False for t in thresholds)
    return {"passed": passed, "regions": regions, "p99_latency_ms_max": s.slos.p99_latency_ms,
            "error_rate_max": s.slos.error_rate, "overall": overall, "by_region": per,
            "thresholds": thresholds, "breaches": breach_lines(overall, per, thresholds, s),
            "latencies_not_judged": latencies_not_judged}


def quantiles(values: Sequence[float]) -> list[float]:
    """p50, p95, p99 (numpy's default linear interpolation, as everywhere in the run)."""
    return [float(v) for v in np.percentile(np.asarray(values, dtype=float), PCTS)]


def threshold_checks(s: Scenario, joined: Sequence[Joined], *,
                     judge: bool = True) -> list[dict[str, Any]]:
    """Every ``slos.thresholds`` entry judged on its region's served requests by its path:
    ``passed`` is None (not judged) when fewer than ``slos.min_requests`` were served, or when
    not ``judge``."""
    out: list[dict[str, Any]] = []
    for t in s.slos.thresholds:
        served = [j.rec for j in joined if j.rec and j.rec.region == t.region
                  and (j.row.path if j.row else j.rec.path) == t.path and j.decision in SERVED]
        limits = (("ttft_p99_ms", t.ttft_p99_ms,
                   [r.ttft_ms for r in served if r.stream and r.ttft_ms is not None]),
                  ("latency_p99_ms", t.latency_p99_ms, [r.latency_ms for r in served]))
        for metric, limit, values in limits:
            if limit is None:
                continue
            judged = judge and len(values) >= s.slos.min_requests
            p99 = float(np.percentile(values, 99)) if values else None
            out.append({"region": t.region, "path": t.path, "metric": metric, "limit": limit,
                        "value": p99, "requests": len(values),
                        "passed": (p99 is not None and p99 <= limit) if judged else None})
    return out


def breach_lines(overall: dict[str, Any], per: dict[str, Any], thresholds: list[dict[str, Any]],
                 s: Scenario) -> list[str]:
    """One line per breached threshold (what, limit, measured, n)."""
    lines = []
    for where, e in [("SLO regions", overall), *per.items()]:
        if e["latency_judged"] and e["p99_latency_ms"] > s.slos.p99_latency_ms:
            lines.append(f"{where}: latency p99 {e['p99_latency_ms']:.0f} ms > "
                         f"{s.slos.p99_latency_ms:g} ms (n={e['requests']})")
        if e["error_rate"] > s.slos.error_rate:
            lines.append(f"{where}: error rate {e['error_rate']:.2%} > {s.slos.error_rate:.2%} "
                         f"(n={e['requests']})")
    for t in thresholds:
        if t["passed"] is False:
            what = "TTFT p99 (streamed)" if t["metric"] == "ttft_p99_ms" else "latency p99"
            lines.append(f"{t['region']} {t['path']}: {what} {t['value']:.0f} ms > "
                         f"{t['limit']:g} ms (n={t['requests']})")
    return lines


def _slo_entry(s: Scenario, latencies: list[float], n: int, failed: int,
               judge: bool = True) -> dict[str, Any]:
    """The p99 is judged on at least ``slos.min_requests`` served requests (a p99 of fewer is the
    maximum of a handful), and only when ``judge``; the error rate always."""
    p99 = float(np.percentile(latencies, 99)) if latencies else 0.0
    rate = failed / n if n else 0.0
    judged = judge and len(latencies) >= s.slos.min_requests
    latency_ok = p99 <= s.slos.p99_latency_ms or not judged
    return {"requests": n, "failed": failed, "error_rate": rate, "p99_latency_ms": p99,
            "latency_judged": judged,
            "passed": latency_ok and rate <= s.slos.error_rate}


def rate_accuracy(plan: Plan, requests: Sequence[RequestRecord]) -> dict[str, Any]:
    """Per scenario day: requests actually sent against those meant to be sent (open model).

    The target of a day is the number of sends whose intended instant falls in it (the rate
    curve as drawn, thinned by churn, plus retries); achieved counts actual send instants. A day
    with at least RATE_MIN_PER_DAY targets is judged alone; quieter days (a long window squeezed
    onto a short run) are pooled with their neighbours into periods of consecutive days that
    reach RATE_MIN_PER_DAY, and each period is judged on its sums (±1 request would be > 2 % of a
    smaller count). A trailing remainder below the minimum is listed but not judged.
    """
    day = 86400.0
    start = plan.scenario.window.start

    def day_of(wall: float) -> int:
        return int((plan.scenario_at(wall) - start).total_seconds() // day)

    target = Counter(day_of(r.intended) for r in requests)
    achieved = Counter(day_of(r.sent) for r in requests)
    days: list[dict[str, Any]] = []
    periods: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    for d in sorted(set(target) | set(achieved)):
        t, a = target.get(d, 0), achieved.get(d, 0)
        item = {"day": format_instant(start + dt.timedelta(days=d)), "target": t, "achieved": a,
                "error": round((a - t) / t, 6) if t else None, "judged": False}
        days.append(item)
        pending.append(item)
        if sum(x["target"] for x in pending) >= RATE_MIN_PER_DAY:
            periods.append(_judged_period(pending))
            pending = []
    worst = max((abs(p["achieved"] - p["target"]) / p["target"] for p in periods), default=0.0)
    lateness = np.array([(r.sent - r.intended) * 1000 for r in requests]) if requests else \
        np.zeros(1)
    expected = plan.target_curve().sum() * plan.step_wall_s
    planned = sum(len(plan.schedule(u)) for u in plan.users)
    skipped = {"skipped": True,
               "reason": f"fewer than {RATE_MIN_PER_DAY} sends planned in the whole run"} \
        if not periods else {}
    return {
        **skipped,
        "passed": worst <= RATE_TOLERANCE, "tolerance": RATE_TOLERANCE,
        "judged_days": sum(1 for x in days if x["judged"]), "judged_periods": len(periods),
        "worst_error": worst,
        "send_lateness_ms": {"p50": float(np.percentile(lateness, 50)),
                             "p99": float(np.percentile(lateness, 99)),
                             "max": float(lateness.max())},
        "planned_requests": planned, "expected_requests": float(expected),
        "planned_vs_expected": (planned - expected) / expected if expected else 0.0,
        "planned_poisson_sd": 1 / math.sqrt(expected) if expected else 0.0,
        "periods": periods, "days": days,
    }


def _judged_period(days: list[dict[str, Any]]) -> dict[str, Any]:
    """Mark ``days`` judged and return their pooled comparison."""
    t = sum(x["target"] for x in days)
    a = sum(x["achieved"] for x in days)
    for x in days:
        x["judged"] = True
    return {"first_day": days[0]["day"], "days": len(days), "target": t, "achieved": a,
            "error": round((a - t) / t, 6)}


# ---------------------------------------------------------------- timeseries


@dataclass
class Binner:
    start: dt.datetime
    bin_s: int
    n: int

    @classmethod
    def of(cls, s: Scenario) -> Binner:
        w = s.window
        return cls(w.start, w.bin_seconds, math.ceil((w.end - w.start).total_seconds() / w.bin_seconds))

    def index(self, t: dt.datetime) -> int:
        i = int((t - self.start).total_seconds() // self.bin_s)
        return min(max(i, 0), self.n - 1)

    def label(self, i: int) -> str:
        return format_instant(self.start + dt.timedelta(seconds=i * self.bin_s))

    def end(self, i: int) -> dt.datetime:
        return self.start + dt.timedelta(seconds=(i + 1) * self.bin_s)


Key = tuple[int, str, str, str]  # bin, region, provider, path


@dataclass
class Cell:
    counts: Counter[str] = field(default_factory=Counter)
    sums: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    latency: list[float] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)


def _parse_instant(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def cells(plan: Plan, joined: Iterable[Joined]) -> dict[Key, Cell]:
    s, binner = plan.scenario, Binner.of(plan.scenario)
    markup = s.behaviour.relay.markup
    out: dict[Key, Cell] = defaultdict(Cell)
    for j in joined:
        rec, row = j.rec, j.row
        when = _parse_instant(row.scenario_time) if row else plan.scenario_at(rec.sent)  # type: ignore[union-attr]
        region = rec.region if rec else (row.home_region if row else "")
        provider = row.provider if row and row.provider else (rec.provider if rec else "")
        path = row.path if row else rec.path  # type: ignore[union-attr]
        cell = out[(binner.index(when), region, provider, path)]
        decision = j.decision
        cell.counts["requests"] += 1
        metric = {"allow": "allowed", "warn": "warned", "block": "blocked", "throttle": "blocked",
                  "failed": "failed"}.get(decision, "failed")
        cell.counts[metric] += 1
        if rec and rec.attempt > 0:
            cell.counts["retries"] += 1
        if row:
            cell.sums["tokens_in"] += row.tokens_in
            cell.sums["tokens_out"] += row.tokens_out
            cell.sums["revenue_usd"] += row.revenue_usd
            cell.sums["free_tokens"] += row.free_tokens_in + row.free_tokens_out
            if row.path == "relay":
                cell.sums["relay_markup_usd"] += row.revenue_usd * markup
            if row.status == 429 and row.decision == "failed":
                cell.counts["rejected_429"] += 1
        if rec and decision in SERVED:
            cell.latency.append(rec.latency_ms)
            if rec.ttft_ms is not None:
                cell.ttft.append(rec.ttft_ms)
    return out


def baseline(plan: Plan) -> dict[tuple[int, str], tuple[int, float]]:
    """(bin, region) → (planned requests, their revenue at the incumbent's list prices)."""
    s, binner = plan.scenario, Binner.of(plan.scenario)
    inc = s.incumbent
    out: dict[tuple[int, str], tuple[int, float]] = {}
    for u in plan.users:
        sch = plan.schedule(u)
        for k in range(len(sch)):
            m = inc.model(sch.models[k])
            usd = revenue_usd(m.price_in, m.price_out, int(sch.tokens_in[k]),
                              int(sch.tokens_out[k])) if m else 0.0
            key = (binner.index(plan.scenario_at(plan.config.epoch + float(sch.offsets[k]))),
                   u.org.region)
            n, total = out.get(key, (0, 0.0))
            out[key] = (n + 1, total + usd)
    return out


def org_states(plan: Plan, states: Sequence[StateRecord]) -> list[tuple[int, str, str, str, float]]:
    """(bin, region, state, provider, weighted organisations) at the end of every bin."""
    binner = Binner.of(plan.scenario)
    logs: dict[int, list[tuple[dt.datetime, str, str]]] = defaultdict(list)
    for st in states:
        logs[st.user].append((_parse_instant(st.at), st.state, st.provider))
    out: defaultdict[tuple[int, str, str, str], float] = defaultdict(float)
    for u in plan.users:
        log = sorted(logs.get(u.index) or [(plan.scenario.window.start, "direct", "")],
                     key=lambda x: x[0])
        k = 0
        state, provider = "direct", ""
        for i in range(binner.n):
            end = binner.end(i)
            while k < len(log) and log[k][0] < end:
                _, state, provider = log[k]
                k += 1
            out[(i, u.org.region, state, provider if state in ("migrating", "migrated") else "")] \
                += u.weight
    return [(i, r, st, p, w) for (i, r, st, p), w in sorted(out.items())]


def timeseries_rows(plan: Plan, joined: Sequence[Joined],
                    states: Sequence[StateRecord]) -> list[tuple[Any, ...]]:
    binner = Binner.of(plan.scenario)
    rows: list[tuple[Any, ...]] = []

    def add(i: int, metric: str, region: str, provider: str, path: str, state: str,
            value: float) -> None:
        rows.append((binner.label(i), 0, "loadtest", metric, region, provider, path, state, value))

    for (i, region, provider, path), cell in sorted(cells(plan, joined).items()):
        for metric in ("requests", "allowed", "warned", "blocked", "failed", "retries"):
            add(i, metric, region, provider, path, "", cell.counts.get(metric, 0))
        for metric in ("tokens_in", "tokens_out", "revenue_usd"):
            add(i, metric, region, provider, path, "", cell.sums.get(metric, 0.0))
        if cell.sums.get("free_tokens"):
            add(i, "free_tokens", region, provider, path, "", cell.sums["free_tokens"])
        if path == "relay":
            add(i, "relay_markup_usd", region, provider, path, "", cell.sums["relay_markup_usd"])
        for name, values in (("latency_ms", cell.latency), ("ttft_ms", cell.ttft)):
            if values:
                for p, v in zip(PCTS, np.percentile(values, PCTS), strict=True):
                    add(i, f"{name}_p{p}", region, provider, path, "", float(v))
    inc = plan.scenario.incumbent.name
    for (i, region), (n, usd) in sorted(baseline(plan).items()):
        add(i, "baseline_requests", region, inc, "direct", "", n)
        add(i, "baseline_revenue_usd", region, inc, "direct", "", usd)
    rejected: Counter[tuple[int, str]] = Counter()
    for (i, _, provider, _), cell in cells(plan, joined).items():
        rejected[(i, provider)] += cell.counts.get("rejected_429", 0)
    for (i, provider), n in sorted(rejected.items()):
        if n:
            add(i, "rejected_429", "", provider, "", "", n)
    for i, region, state, provider, weight in org_states(plan, states):
        add(i, "orgs", region, provider, "", state, weight)
    return rows


# ---------------------------------------------------------------- summary


def blocked_regions(s: Scenario) -> frozenset[str]:
    return frozenset(denied_regions(s))


def allow_listed(s: Scenario) -> frozenset[str]:
    pol = s.policy.get(s.incumbent.name)
    return frozenset(g for st in (pol.stages if pol else ()) for g in st.allow_list.segments)


def _when(plan: Plan, j: Joined) -> dt.datetime:
    if j.row:
        return _parse_instant(j.row.scenario_time)
    assert j.rec is not None
    return plan.scenario_at(j.rec.sent)


def headline(plan: Plan, joined: Sequence[Joined], states: Sequence[StateRecord],
             ledger_available: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    s = plan.scenario
    inc = s.incumbent.name
    block_at = first_block(s, inc)
    base = baseline(plan)
    base_total = sum(usd for _, usd in base.values())
    rev: defaultdict[str, float] = defaultdict(float)
    for j in joined:
        if j.row:
            rev[j.row.provider] += j.row.revenue_usd
    h: dict[str, Any] = {}
    usd = "usd"
    if ledger_available:
        actual = rev.get(inc, 0.0)
        lost = base_total - actual
        h["incumbent_revenue_usd"] = band([actual], unit=usd, label="incumbent revenue (load test)")
        h["incumbent_revenue_lost_usd"] = band([lost], unit=usd, label="incumbent revenue lost")
        h["incumbent_revenue_lost_pct"] = band([100 * lost / base_total if base_total else 0.0],
                                               unit="pct", label="incumbent revenue lost")
        for p in s.alternatives:
            h[f"alt_revenue_gained_usd.{p.name}"] = band([rev.get(p.name, 0.0)], unit=usd,
                                                         label=f"revenue gained by {p.name}")
        markup = s.behaviour.relay.markup
        h["relay_markup_usd"] = band([sum(j.row.revenue_usd * markup for j in joined
                                          if j.row and j.row.path == "relay")], unit=usd,
                                     label="mark-up paid to relays")
    h["incumbent_baseline_revenue_usd"] = band([base_total], unit=usd,
                                               label="incumbent revenue without the block")
    final = org_states(plan, states)
    last = max((i for i, *_ in final), default=0)
    by_state: defaultdict[str, float] = defaultdict(float)
    by_provider: defaultdict[str, float] = defaultdict(float)
    for i, _, state, provider, w in final:
        if i == last:
            by_state[state] += w
            if state == "migrated":
                by_provider[provider] += w
    for state in ORG_STATES:
        h[f"orgs_final.{state}"] = band([by_state.get(state, 0.0)], unit="orgs",
                                        label=f"organisations {state} at the end (weighted)")
    for p in s.alternatives:
        h[f"orgs_migrated.{p.name}"] = band([by_provider.get(p.name, 0.0)], unit="orgs",
                                            label=f"organisations migrated to {p.name}")
    h.update(_latency_headline(plan, joined, block_at))
    firsts = sum(1 for j in joined if j.rec and j.rec.attempt == 0)
    total = sum(1 for j in joined if j.rec)
    h["retry_amplification"] = band([total / firsts if firsts else 1.0], unit="ratio",
                                    label="requests sent per first attempt")
    for region in (r.code for r in s.regions):
        mine = [j for j in joined if j.rec and j.rec.region == region and j.rec.provider == inc
                and (block_at is None or _when(plan, j) >= block_at)]
        blocked = sum(1 for j in mine if j.decision in ("block", "throttle"))
        h[f"block_rate.{region}"] = band([blocked / len(mine) if mine else 0.0], unit="ratio",
                                         label=f"incumbent requests from {region} blocked after "
                                               "the block start")
    waterfall = _waterfall(plan, joined, states, base, block_at) if ledger_available else []
    return h, waterfall


def _latency_headline(plan: Plan, joined: Sequence[Joined],
                      block_at: dt.datetime | None) -> dict[str, Any]:
    groups: defaultdict[tuple[str, str, str, str], list[float]] = defaultdict(list)
    for j in joined:
        if j.rec is None or j.decision not in SERVED:
            continue
        path = j.row.path if j.row else j.rec.path
        when = "after" if block_at is not None and _when(plan, j) >= block_at else "before"
        provider = j.row.provider if j.row else j.rec.provider
        # (path, "") pools every provider; on the direct path after the block also each provider
        keys = [(path, "")] + ([(path, provider)] if path == "direct" and when == "after" else [])
        for where in keys:
            groups[("latency_ms", *where, when)].append(j.rec.latency_ms)
            if j.rec.stream and j.rec.ttft_ms is not None:
                groups[("ttft_ms", *where, when)].append(j.rec.ttft_ms)
    out: dict[str, Any] = {}
    for (name, path, provider, when), values in sorted(groups.items()):
        what = "latency" if name == "latency_ms" else "time to first token (streamed)"
        at = f"{provider}." if provider else ""
        for p, v in zip(PCTS, np.percentile(values, PCTS), strict=True):
            if provider and p == 99:
                continue   # per provider: p50 and p95 (the compared figures)
            out[f"{name}.{path}.{at}p{p}.{when}"] = band(
                [float(v)], unit="ms", requests=len(values),
                label=f"{path} {what} p{p}{' at ' + provider if provider else ''} "
                      f"{when} the block (from the intended send instant)")
    return out


def _waterfall(plan: Plan, joined: Sequence[Joined], states: Sequence[StateRecord],
               base: dict[tuple[int, str], tuple[int, float]],
               block_at: dt.datetime | None) -> list[dict[str, Any]]:
    s = plan.scenario
    inc = s.incumbent.name
    regions = blocked_regions(s)
    listed = allow_listed(s)
    binner = Binner.of(s)
    first_bin = binner.index(block_at) if block_at else binner.n
    base_total = sum(usd for _, usd in base.values())
    blocked = sum(usd for (i, r), (_, usd) in base.items() if r in regions and i >= first_bin)
    relay = allow = actual = 0.0
    kept_by_user: defaultdict[int, float] = defaultdict(float)
    for j in joined:
        if not j.row or j.row.provider != inc:
            continue
        actual += j.row.revenue_usd
        if j.rec is None or j.rec.region not in regions or binner.index(_when(plan, j)) < first_bin:
            continue
        kept_by_user[j.rec.user] += j.row.revenue_usd
        if j.row.path == "relay":
            relay += j.row.revenue_usd
        elif j.rec.segment in listed:
            allow += j.row.revenue_usd
    final_state = {st.user: st.state for st in sorted(states, key=lambda x: x.at)}
    to_alt = to_churn = 0.0
    for u in plan.users:
        if u.org.region not in regions:
            continue
        sch = plan.schedule(u)
        owed = 0.0
        for k in range(len(sch)):
            if binner.index(plan.scenario_at(plan.config.epoch + float(sch.offsets[k]))) < first_bin:
                continue
            m = s.incumbent.model(sch.models[k])
            if m:
                owed += revenue_usd(m.price_in, m.price_out, int(sch.tokens_in[k]),
                                    int(sch.tokens_out[k]))
        loss = owed - kept_by_user.get(u.index, 0.0)
        if final_state.get(u.index) in ("migrating", "migrated"):
            to_alt += loss
        else:
            to_churn += loss
    return [
        {"label": "baseline", "value_usd": base_total},
        {"label": "blocked", "value_usd": -blocked},
        {"label": "kept via relay", "value_usd": relay},
        {"label": "kept via allow-list", "value_usd": allow},
        {"label": "lost to alternatives", "value_usd": -to_alt},
        {"label": "lost to churn", "value_usd": -to_churn},
        {"label": "actual", "value_usd": actual},
    ]


def capacity_hotspots(plan: Plan, joined: Sequence[Joined]) -> list[dict[str, Any]]:
    """Bins where a provider refused work with 429, with its mean concurrency (Little's law)."""
    s, binner = plan.scenario, Binner.of(plan.scenario)
    bin_wall_ms = binner.bin_s / plan.speedup * 1000
    busy: defaultdict[tuple[int, str], float] = defaultdict(float)
    rejected: Counter[tuple[int, str]] = Counter()
    for j in joined:
        if not j.row or not j.row.provider:
            continue
        key = (binner.index(_parse_instant(j.row.scenario_time)), j.row.provider)
        busy[key] += j.row.upstream_ms or 0.0
        if j.row.status == 429 and j.row.decision == "failed":
            rejected[key] += 1
    out = []
    for (i, provider), n in sorted(rejected.items()):
        capacity = s.provider(provider).capacity.concurrency
        out.append({"provider": provider, "time": binner.label(i),
                    "utilisation": busy[(i, provider)] / bin_wall_ms / capacity,
                    "rejected_429": n})
    return out
