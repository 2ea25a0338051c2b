"""The compared figures: one definition each, computed alike from a simulation's and a load test's
run directory, in like-for-like units (shares and per-request latencies, never absolute money of
two different scales).

All figures count from the incumbent's first block or throttle (``scenarios.policy.first_denial``):

- ``block_share.R`` — of region R's requests meant for the incumbent (those it served or denied,
  *and* those failed over from it to an alternative), the share the incumbent denied;
- ``revenue_share.k`` — provider k's share of all providers' revenue;
- ``orgs_share.S`` — of the organisations of the blocked regions, the share in state S at the end
  of the window;
- ``latency_ms.P.qQ`` — the Q-th latency percentile on path P (true time only), and
  ``latency_ms.direct.K.qQ`` at provider K;
- ``ttft_ms.P.qQ`` — the Q-th percentile of the time to first token of streamed requests on path
  P (true time only), and ``ttft_ms.direct.K.qQ`` at provider K.

A simulation gives one value per replication (from ``timeseries.csv``, or the headline's band for
the latency percentiles); a load test one value, and its standard error with the organisations
as clusters (from its ledger): one organisation's requests are not independent draws.

The like-for-like reference is the *paired* simulation (``simulate --sample-of``: the load test's
own organisations, in its units, with their generators, in the full market's context): its
replications are the prediction band of that very sample, and the load test's figure is judged
against it (:func:`paired_se`). Against a full-market simulation (the forecast) the comparison
also carries the sample's composition, so the load test's cluster-robust error is used: a
disagreement there may mean the sample, not the system.
"""

from __future__ import annotations

import math
import sqlite3
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from scenarios.errors import RunDirError
from scenarios.ledger import LedgerFormatError, check_finished, open_finished
from scenarios.policy import denied_regions, first_denial
from scenarios.rundir import ORG_STATES, Run
from scenarios.sample import SAMPLE_FILE, Sample
from scenarios.schema import Scenario
from scenarios.verdict import Z90, Verdict, cluster_ratio_se, judge, pooled

#: (metric, percentile) of the compared latency figures, on each path of ``LATENCY_PATHS``
LATENCY_FIGURES = (("latency_ms", 50), ("latency_ms", 95), ("ttft_ms", 50), ("ttft_ms", 95))
#: the paths a request is served on (``scenarios.rundir.PATHS``): the direct one, the relay a
#: circumventing organisation sends through, and the alternative a failover rule sends it to
LATENCY_PATHS = ("direct", "relay", "failover")


def latency_figures(s: Scenario) -> list[tuple[str, str, int, str]]:
    """(metric, path, percentile, provider or "" for all) of every compared latency figure: each
    path's (all its providers), then each provider's on the direct path. Its key is
    ``metric.path[.provider].pQ``, its headline band ``metric.path[.provider].pQ.after``."""
    pooled = [(name, path, q, "") for path in LATENCY_PATHS for name, q in LATENCY_FIGURES]
    return pooled + [(name, "direct", q, p.name) for p in s.providers for name, q in LATENCY_FIGURES]


def _latency_key(name: str, path: str, q: int, provider: str) -> str:
    return f"{name}.{path}.{provider + '.' if provider else ''}p{q}"
BLOCKED = ("block", "throttle")
#: The fewest requests a latency percentile's order-statistic error is taken from; a figure on
#: fewer is listed with no interval (and judged too few: ``scenarios.verdict.MIN_N`` is larger).
MIN_RANKS = 20


@dataclass(frozen=True, slots=True)
class Observed:
    """A load test's figure: value, standard error, and how many requests (or orgs) it rests on."""

    value: float
    se: float
    n: int


def _after(s: Scenario) -> str:
    start = first_denial(s) or s.window.start
    return start.strftime("%Y-%m-%dT%H:%M:%SZ")


def _last_bin(times: np.ndarray) -> str:
    return str(max(times)) if times.size else ""


def sim_figures(s: Scenario, ts: Mapping[str, np.ndarray], summary: Mapping[str, object]
                ) -> dict[str, list[float]]:
    """Every figure, one value per replication, from a simulation's timeseries and headline.

    Each row's kind (metric, region, provider, path) is tested once and every figure summed per
    replication in one pass (``np.bincount`` by replication): linear in the rows, where a mask of
    every row per replication grew with rows × replications (200 replications: over 15 minutes)."""
    after = _after(s)
    inc = s.incumbent.name
    reps, at = np.unique(ts["replication"], return_inverse=True)
    at = at.ravel()
    nrep = reps.size
    out: dict[str, list[float]] = defaultdict(list)
    metric, region, provider, value = ts["metric"], ts["region"], ts["provider"], ts["value"]
    late = ts["time"] >= after

    def per_rep(mask: np.ndarray) -> np.ndarray:
        """The sum of ``value`` over the rows of ``mask``, per replication."""
        return np.bincount(at[mask], weights=value[mask], minlength=nrep)

    def ratios(num: np.ndarray, den: np.ndarray) -> list[float]:
        return [float(a / b) if b else math.nan for a, b in zip(num.tolist(), den.tolist(), strict=True)]

    regions = list(denied_regions(s))
    blocked = late & (metric == "blocked") & (provider == inc)
    meant = late & (metric == "requests") & ((provider == inc) | (ts["path"] == "failover"))
    for code in regions:
        here = region == code
        out[f"block_share.{code}"] = ratios(per_rep(blocked & here), per_rep(meant & here))
    rev = late & (metric == "revenue_usd")
    total = per_rep(rev)
    for p in s.providers:
        out[f"revenue_share.{p.name}"] = ratios(per_rep(rev & (provider == p.name)), total)
    # organisations at each replication's last bin (times are ISO text of one form: they sort)
    orgs = (metric == "orgs") & np.isin(region, regions)
    _, code_of = np.unique(ts["time"][orgs], return_inverse=True)
    last = np.full(nrep, -1)
    np.maximum.at(last, at[orgs], code_of.ravel())
    end = np.zeros(orgs.size, dtype=bool)
    end[orgs] = code_of.ravel() == last[at[orgs]]
    n = per_rep(end)
    for state in ORG_STATES:
        out[f"orgs_share.{state}"] = ratios(per_rep(end & (ts["state"] == state)), n)
    headline = summary.get("headline", {})
    assert isinstance(headline, Mapping)
    for name, lpath, q, prov in latency_figures(s):
        key = _latency_key(name, lpath, q, prov)
        band = headline.get(f"{key}.after")
        if isinstance(band, Mapping) and band.get("mean") is not None:
            out[key] = _band_values(band, nrep)
    return dict(out)


def _band_values(band: Mapping[str, object], reps: int) -> list[float]:
    """Replication values with the band's mean and spread (the headline keeps mean and 5/95 %)."""
    mean = float(band["mean"])  # type: ignore[arg-type]
    sd = (float(band.get("p95", mean)) - float(band.get("p5", mean))) / (2 * Z90)  # type: ignore[arg-type]
    if reps < 2 or sd == 0:
        return [mean] * max(reps, 1)
    z = np.linspace(-1, 1, reps)
    z = z / z.std(ddof=1)
    return [mean + sd * float(v) for v in z]


def loadtest_figures(s: Scenario, run: Run) -> dict[str, Observed]:
    """Every figure of a load test, with its cluster-robust standard error, from its ledger."""
    ledger = run.path / "ledger.sqlite"
    if not ledger.is_file():
        return {}
    check_ledger(run)
    after = _after(s)
    inc = s.incumbent.name
    try:
        db = open_finished(ledger)
        try:
            rows = db.execute("SELECT org, home_region, provider, path, decision, revenue_usd, "
                              "total_ms, ttft_ms FROM requests WHERE scenario_time >= ?",
                              (after,)).fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise RunDirError(f"{ledger}: unreadable ledger ({exc})") from None
    out: dict[str, Observed] = {}
    for code in denied_regions(s):
        num: dict[str, float] = defaultdict(float)
        den: dict[str, float] = defaultdict(float)
        for org, home, provider, path, decision, *_ in rows:
            if home != code or not (provider == inc or path == "failover"):
                continue
            den[org] += 1
            num[org] += decision in BLOCKED
        orgs = sorted(den)
        share, se = cluster_ratio_se([num[o] for o in orgs], [den[o] for o in orgs])
        out[f"block_share.{code}"] = Observed(share, se, int(sum(den.values())))
    by_org: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for org, _, provider, _, _, revenue, *_ in rows:
        by_org[org][provider] += revenue or 0.0
    orgs = sorted(by_org)
    totals = [sum(by_org[o].values()) for o in orgs]
    for p in s.providers:
        share, se = cluster_ratio_se([by_org[o].get(p.name, 0.0) for o in orgs], totals)
        out[f"revenue_share.{p.name}"] = Observed(share, se, len(rows))
    out.update(_orgs_figures(s, run))
    timing = (run.summary.get("loadtest") or {}).get("timing")
    if timing == "true":
        samples: dict[tuple[str, str, str], list[float]] = defaultdict(list)
        for r in rows:
            if r[4] not in ("allow", "warn"):
                continue
            # the path's, and on the direct path each provider's too
            for prov in ("", r[2]) if r[3] == "direct" else ("",):
                if r[6] is not None:
                    samples["latency_ms", r[3], prov].append(r[6])
                if r[7] is not None:
                    samples["ttft_ms", r[3], prov].append(r[7])
        out.update(_latency_figures(s, run, samples))
    return out


def check_ledger(run: Run) -> None:
    """RunDirError naming the file unless the run's ledger.sqlite, if it has one, is a ledger of
    the contract (``scenarios.ledger.check_finished``): checked before any work, read without
    leaving anything beside it."""
    ledger = run.path / "ledger.sqlite"
    if ledger.is_file():
        try:
            check_finished(ledger)
        except LedgerFormatError as exc:
            raise RunDirError(f"{ledger}: {exc}") from None


def _orgs_figures(s: Scenario, run: Run) -> dict[str, Observed]:
    ts = run.timeseries()
    regions = list(denied_regions(s))
    orgs = (ts["metric"] == "orgs") & np.isin(ts["region"], regions)
    end = orgs & (ts["time"] == _last_bin(ts["time"][orgs]))
    total = float(ts["value"][end].sum())
    users, effective = _users_of(run, regions)
    out = {}
    for state in ORG_STATES:
        p = float(ts["value"][end & (ts["state"] == state)].sum() / total) if total else math.nan
        # users stand for organisations: the share is a weighted proportion of the users of those
        # regions, its error that of so many users' worth of independent ones (Kish)
        out[f"orgs_share.{state}"] = Observed(
            p, math.sqrt(p * (1 - p) / effective) if total and effective else math.nan, users)
    return out


def _users_of(run: Run, regions: list[str]) -> tuple[int, float]:
    """(users, Kish's effective number of them: (Σw)²/Σw²) of the load test's organisations in
    ``regions``, by its sample (each user's weight: the organisations it stands for); without
    a sample, every user of the run, equally weighted."""
    path = run.path / SAMPLE_FILE
    if not path.is_file():
        users = int((run.summary.get("scale") or {}).get("users", 0))
        return users, float(users)
    weights = [o.weight for o in Sample.read(path).orgs if o.region in regions]
    square = math.fsum(w * w for w in weights)
    return len(weights), (math.fsum(weights) ** 2 / square if square else 0.0)


def _latency_figures(s: Scenario, run: Run,
                     samples: Mapping[tuple[str, str, str], list[float]]) -> dict[str, Observed]:
    """The headline's percentiles, their standard error from the order statistics of the
    ledger's latencies on that path (distribution-free: ranks n·q ± z·sqrt(n·q·(1−q)))."""
    headline = run.summary.get("headline") or {}
    out = {}
    for name, p, q, prov in latency_figures(s):
        xs = np.sort(np.asarray(samples.get((name, p, prov), []), dtype=float))
        n = xs.size
        key = _latency_key(name, p, q, prov)
        band = headline.get(f"{key}.after")
        if not isinstance(band, Mapping) or band.get("mean") is None or n == 0:
            continue
        value = float(band["mean"])
        if n < MIN_RANKS:
            # listed, and judged too few (``scenarios.verdict.judge``): no error from so few ranks
            out[key] = Observed(value, math.nan, n)
            continue
        f = q / 100
        lo = int(max(0, math.floor(n * f - Z90 * math.sqrt(n * f * (1 - f)))))
        hi = int(min(n - 1, math.ceil(n * f + Z90 * math.sqrt(n * f * (1 - f)))))
        centre = float(np.quantile(xs, f))
        rel = (xs[hi] - xs[lo]) / (2 * Z90) / centre if centre > 0 else 0.0
        out[key] = Observed(value, abs(value) * rel, n)
    return out


def is_paired(sim: Run, loadtest: Run) -> bool:
    """Is ``sim`` the paired simulation of ``loadtest`` (``simulate --sample-of`` it)?"""
    return sim.sample_of is not None and sim.sample_of.get("run") == loadtest.path.name


def compare(s: Scenario, sim: Run, loadtest: Run) -> list[Verdict]:
    """The verdict table: every figure both runs have, in a stable order (see the module
    docstring for how the paired simulation's band enters the load test's standard error)."""
    simulated = sim_figures(s, sim.timeseries(), sim.summary)
    observed = loadtest_figures(s, loadtest)
    paired = is_paired(sim, loadtest)
    out = []
    for key in sorted(simulated, key=_order):
        values = [v for v in simulated[key] if math.isfinite(v)]
        obs = observed.get(key)
        if obs is None or not values or not math.isfinite(obs.value):
            continue
        if key.startswith("revenue_share.") and obs.n and max(values) < 1e-3 and obs.value < 1e-3:
            continue   # a provider with no revenue in either: nothing to compare
        se = paired_se(key, obs.se, values) if paired else obs.se
        out.append(judge(key, values, obs.value, se, obs.n, share=_kind(key) in SHARES,
                         unit="organisations" if _kind(key) == "orgs_share" else "requests",
                         paired=paired, value_unit=_value_unit(key)))
    return out


def paired_se(key: str, loadtest_se: float, sim: list[float]) -> float:
    """The load test's standard error against its paired simulation (see the module docstring).

    Its organisations are the simulation's, with the same generators: what can still vary is
    request-level chance, which the paired replications' spread is the model's prediction of —
    the load test's own clusters (resampling organisations) would count a variation the pairing
    removed. A share is therefore judged on that spread. A latency percentile also carries the
    sampling error of the load test's own requests (the simulation samples latencies at its own
    sample size): the larger of the two."""
    sd = float(np.std(sim, ddof=1)) if len(sim) > 1 else 0.0
    return sd if _kind(key) in SHARES else max(loadtest_se, sd)


def compare_series(s: Scenario, pairs: list[tuple[Run, Run]]) -> list[Verdict]:
    """The verdict table of several load tests (``loadtest --repeat``), each with its reference
    (its paired simulation, or one forecast for all): per figure, the load tests' verdicts pooled
    (``scenarios.verdict.pooled``) over those that judged it."""
    by: dict[str, list[Verdict]] = defaultdict(list)
    for sim, lt in pairs:
        for v in compare(s, sim, lt):
            by[v.figure].append(v)
    return [pooled(parts, share=_kind(key) in SHARES,
                   unit="organisations" if _kind(key) == "orgs_share" else "requests",
                   value_unit=_value_unit(key))
            for key, parts in sorted(by.items(), key=lambda kv: _order(kv[0]))]


SHARES = ("block_share", "revenue_share", "orgs_share")
LATENCIES = ("latency_ms", "ttft_ms")
KINDS = (*SHARES, *LATENCIES)


def _kind(key: str) -> str:
    return key.split(".")[0]


def _value_unit(key: str) -> str:
    """The unit a figure's value reads in, after the number: " ms" for a latency (a share reads
    in points, ``scenarios.verdict``)."""
    return " ms" if _kind(key) in LATENCIES else ""


def _order(key: str) -> tuple[int, int, str]:
    """By kind; a path's latency before its providers'."""
    return (KINDS.index(_kind(key)), key.count("."), key)

