"""The equivalence verdict: does a load test's figure agree with the simulation's?

For one figure, the simulation gives one value per replication and the load test a value with its
own sampling standard error (from its repeats, or from its organisations as clusters). The
difference ``d = load test − mean(simulation)`` has the standard error
``sqrt(se_loadtest² + sd_simulation² / replications)``, and

- **agree** when the 90 % interval of d lies inside ±margin (a two one-sided tests equivalence
  check at 5 %),
- **disagree** when the 95 % interval of d excludes zero and lies wholly outside ±margin,
- **inconclusive** otherwise — with the run size that would settle it, when more requests can
  within ``PRACTICAL_FACTOR`` times the run (beyond, that no practical run can), and always when
  the figure rests on fewer than ``MIN_N`` load-test requests (or organisations).

Against a *paired* simulation the interval's width is the spread of its replications, estimated
from them; a disagreement also has to show in the load test's place among them, which needs no
assumption about their law (:func:`rank_p`): beyond the margin, the load test must stand outside
enough of the replications that its rank alone is below 5 %. Without that a handful of
replications of a count that happened not to vary (sd 0, a zero-width interval) would make one
organisation's difference a "disagree". A load test outside all R of them has rank p = 2/(R+1):
``PAIRED_REPLICATIONS`` replications can show it, 10 or 20 cannot — the verdict then says how
many would.

What an inconclusive verdict says is in the figure's own units: points for a share, the unit the
caller names (``value_unit``, " ms" for a latency) otherwise.

The margin is 10 % of the simulation's mean, or 1 point absolute for a share below 10 %.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Z90, Z95 = 1.6448536269514722, 1.959963984540054
RELATIVE_MARGIN = 0.10
SMALL_SHARE, SHARE_MARGIN = 0.10, 0.01
AGREE, DISAGREE, INCONCLUSIVE = "agree", "disagree", "inconclusive"
#: Below this many load-test requests (or organisations) a figure is not judged at all.
MIN_N = 30
#: A run more than this many times the one judged is not offered as a way to settle a figure (a
#: difference close to the margin needs a run that grows without bound as it nears it).
PRACTICAL_FACTOR = 100
#: The two-sided level of a disagreement (the 95 % interval's).
ALPHA = 0.05
#: The fewest replications of a paired simulation whose rank test can show a disagreement at
#: ``ALPHA`` (a load test outside all R of them: 2/(R+1) <= ALPHA).
MIN_PAIRED_REPLICATIONS = math.ceil(2 / ALPHA) - 1
#: The replications a paired simulation runs unless told (``simulate --sample-of``, the demo and
#: ``report``): one more than the fewest that can show a disagreement.
PAIRED_REPLICATIONS = MIN_PAIRED_REPLICATIONS + 1


def margin(sim_mean: float, *, share: bool) -> float:
    """±10 % relative; ±1 point absolute for a share below 10 %."""
    if share and abs(sim_mean) < SMALL_SHARE:
        return SHARE_MARGIN
    return RELATIVE_MARGIN * abs(sim_mean)


@dataclass(frozen=True, slots=True)
class Verdict:
    figure: str
    sim_mean: float
    sim_sd: float
    replications: int
    loadtest: float
    loadtest_se: float
    n: int                  # requests (or organisations) behind the load test's figure
    margin: float
    diff: float
    ci90: tuple[float, float]
    ci95: tuple[float, float]
    verdict: str
    why: str = ""           # for an inconclusive figure: what would settle it
    #: against a paired simulation, :func:`rank_p` (above, below) of the load test among its
    #: replications; NaN otherwise
    rank: tuple[float, float] = (math.nan, math.nan)
    #: how many load tests' ranks ``rank`` combines (``pooled``: Fisher's method)
    ranked: int = 1

    @property
    def rank_p(self) -> float:
        """The two-sided rank p-value of a difference beyond the margin in the direction of
        ``diff`` (NaN unless paired)."""
        return _two_sided(self.rank, self.diff)

    def as_dict(self) -> dict[str, object]:
        """The verdict as JSON takes it: a number that is not finite (no standard error from
        too few requests, so no interval) is null — JSON has no NaN."""
        return {"figure": self.figure, "simulation": _finite(self.sim_mean),
                "simulation_sd": _finite(self.sim_sd), "replications": self.replications,
                "loadtest": _finite(self.loadtest), "loadtest_se": _finite(self.loadtest_se),
                "n": self.n, "margin": _finite(self.margin), "difference": _finite(self.diff),
                "ci90": [_finite(v) for v in self.ci90], "ci95": [_finite(v) for v in self.ci95],
                "rank_p": _finite(self.rank_p), "verdict": self.verdict, "why": self.why}


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def judge(figure: str, sim: Sequence[float], loadtest: float, loadtest_se: float, n: int, *,
          share: bool, unit: str = "requests", paired: bool = False,
          value_unit: str = "") -> Verdict:
    """The verdict for one figure (see the module docstring)."""
    reps = len(sim)
    mean = math.fsum(sim) / reps if reps else math.nan
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in sim) / (reps - 1)) if reps > 1 else 0.0
    se = math.sqrt(loadtest_se ** 2 + (sd ** 2 / reps if reps else 0.0))
    rank = (rank_p(sim, loadtest, margin(mean, share=share)) if paired and reps
            else (math.nan, math.nan))
    return _decide(figure, mean, sd, reps, loadtest, loadtest_se, n, se, share=share, unit=unit,
                   paired=paired, value_unit=value_unit, rank=rank)


def rank_p(sim: Sequence[float], loadtest: float, m: float) -> tuple[float, float]:
    """One-sided rank p-values (above, below) of "the load test lies beyond the margin ``m`` of
    the replications ``sim``": its value shifted back by the margin, ranked among them.

    If the load test were one more draw of the replications' law moved by at most ``m``, its
    shifted value would be exchangeable with them (or lie inside them), and the chance that at
    most k of R replications reach it is at most (k + 1)/(R + 1) — whatever that law, ties
    counted against the claim. No normal approximation and no estimated spread: a count that did
    not vary over R replications gives no zero-width certainty here.
    """
    reps = len(sim)
    above = sum(1 for v in sim if v >= loadtest - m)
    below = sum(1 for v in sim if v <= loadtest + m)
    return (above + 1) / (reps + 1), (below + 1) / (reps + 1)


def fisher_p(ps: Sequence[float]) -> float:
    """Fisher's combination of independent p-values: P(χ²(2k) ≥ −2 Σ ln p) in closed form (even
    degrees of freedom). Valid — conservative — for discrete p-values like :func:`rank_p`'s."""
    half = -math.fsum(math.log(p) for p in ps)
    term, total = 1.0, 1.0
    for j in range(1, len(ps)):
        term *= half / j
        total += term
    return min(1.0, math.exp(-half) * total)


def _decide(figure: str, mean: float, sd: float, reps: int, loadtest: float, loadtest_se: float,
            n: int, se: float, *, share: bool, unit: str, paired: bool = False,
            value_unit: str = "", rank: tuple[float, float] = (math.nan, math.nan),
            ranked: int = 1) -> Verdict:
    """The verdict on ``d = loadtest − mean`` with standard error ``se`` (module docstring)."""
    m = margin(mean, share=share)
    d = loadtest - mean
    ci90 = (d - Z90 * se, d + Z90 * se)
    ci95 = (d - Z95 * se, d + Z95 * se)
    if not (math.isfinite(d) and math.isfinite(se)) or n < MIN_N:
        why = (f"no load-test {unit} to judge" if n == 0 else
               f"{n} load-test {unit}: fewer than {MIN_N}, too few to judge")
        return Verdict(figure, mean, sd, reps, loadtest, loadtest_se, n, m, d, ci90, ci95,
                       INCONCLUSIVE, why, rank, ranked)
    if -m <= ci90[0] and ci90[1] <= m:
        verdict, why = AGREE, ""
    elif (ci95[0] > 0 or ci95[1] < 0) and (ci95[0] > m or ci95[1] < -m):
        p = _two_sided(rank, d)
        if math.isfinite(p) and p > ALPHA:
            verdict, why = INCONCLUSIVE, _unranked(reps, ranked, m, p, _amount(share, value_unit))
        else:
            verdict, why = DISAGREE, ""
    else:
        verdict, why = INCONCLUSIVE, _settle(d, se, loadtest_se, m, n, unit, paired,
                                             _amount(share, value_unit))
    return Verdict(figure, mean, sd, reps, loadtest, loadtest_se, n, m, d, ci90, ci95, verdict, why,
                   rank, ranked)


def _two_sided(rank: tuple[float, float], d: float) -> float:
    """The two-sided rank p-value of ``rank`` (above, below) in the direction of ``d``."""
    one = rank[0] if d > 0 else rank[1]
    return min(1.0, 2 * one) if math.isfinite(one) else math.nan


def _unranked(reps: int, ranked: int, m: float, p: float,
              amount: Callable[[float, bool], str]) -> str:
    """Why a difference whose interval lies beyond the margin ``m`` is not called a disagreement:
    its rank p among the ``reps`` paired replications (of ``ranked`` load tests) is above
    ``ALPHA`` — and how many would show it."""
    where = (f"{reps} paired replications" if ranked == 1 else
             f"the {reps} replications of {ranked} paired simulations (Fisher)")
    return (f"the interval lies beyond the margin {amount(m, False)}, but the load test's "
            f"rank among {where} is p = {p:.2f}, above {ALPHA:g}: its spread rests on too few "
            f"of them — simulate --sample-of with --replications {MIN_PAIRED_REPLICATIONS} or "
            "more can tell")


def pooled(parts: Sequence[Verdict], *, share: bool, unit: str = "requests",
           value_unit: str = "") -> Verdict:
    """One verdict for a figure judged in several independent load tests (``--repeat``): the
    differences pooled with fixed weights, each load test's n (``d = Σ n_r d_r / Σ n_r``, its
    standard error ``sqrt(Σ n_r² se_r²) / Σ n_r``), judged by the same rule."""
    if len(parts) == 1:
        return parts[0]
    total = sum(v.n for v in parts)
    w = [v.n / total if total else 1 / len(parts) for v in parts]
    se_of = [(v.ci90[1] - v.ci90[0]) / (2 * Z90) for v in parts]
    se = math.sqrt(math.fsum((wi * s) ** 2 for wi, s in zip(w, se_of, strict=True)))
    mean = math.fsum(wi * v.sim_mean for wi, v in zip(w, parts, strict=True))
    lt = math.fsum(wi * v.loadtest for wi, v in zip(w, parts, strict=True))
    lt_se = math.sqrt(math.fsum((wi * v.loadtest_se) ** 2 for wi, v in zip(w, parts, strict=True)))
    sd = math.sqrt(math.fsum((wi * v.sim_sd) ** 2 for wi, v in zip(w, parts, strict=True)))
    # the load tests' ranks among their own paired replications, combined side by side (each
    # is independent of the others): a pooled disagreement must show in them too
    ranks = [v.rank for v in parts]
    if all(math.isfinite(r[0]) for r in ranks):
        rank = (fisher_p([r[0] for r in ranks]), fisher_p([r[1] for r in ranks]))
    else:
        rank = (math.nan, math.nan)
    return _decide(parts[0].figure, mean, sd, sum(v.replications for v in parts), lt, lt_se,
                   total, se, share=share, unit=unit, paired=True, value_unit=value_unit,
                   rank=rank, ranked=len(parts))


def _amount(share: bool, value_unit: str) -> Callable[[float, bool], str]:
    """How a difference (signed) or a margin (±) reads: points for a share, else the value and
    ``value_unit``, to the precision the verdict table shows."""
    def fmt(x: float, signed: bool) -> str:
        if share:
            return f"{x * 100:+.2f} pt" if signed else f"±{x * 100:.2f} pt"
        return f"{x:+,.4g}{value_unit}" if signed else f"±{x:,.4g}{value_unit}"
    return fmt


def _settle(d: float, se: float, se_lt: float, m: float, n: int, unit: str, paired: bool,
            amount: Callable[[float, bool], str]) -> str:
    """What run size would make the 90 % interval fit the margin, if the difference stayed d.

    Against a forecast only the load test's own error falls as 1/√n; against a paired
    simulation (or pooled load tests) the whole error does — the paired simulation of a larger
    run is of a larger sample too. A run over ``PRACTICAL_FACTOR`` times this one is not
    offered (the difference near the margin, or its error on a handful of requests, puts it past
    any practical run): the line says so, with the factor."""
    room = m - abs(d)
    if room <= 0:
        return (f"the difference {amount(d, True)} is at or beyond the margin {amount(m, False)}: "
                "a larger run can only tell whether it is outside it")
    if paired:
        need = (Z90 * se / room) ** 2
    else:
        sim_part = math.sqrt(max(se ** 2 - se_lt ** 2, 0.0))
        if Z90 * sim_part >= room:
            return "the simulation's own band is wider than the margin: run more replications"
        need = (Z90 * se_lt) ** 2 / (room ** 2 - (Z90 * sim_part) ** 2)
    if need <= 1:
        return ""
    factor = math.ceil(need)
    if factor > PRACTICAL_FACTOR:
        return (f"only a run about {factor:,}× this one could settle the difference "
                f"{amount(d, True)} against the margin {amount(m, False)}: past any practical run "
                f"(over {PRACTICAL_FACTOR}×)")
    how = ("more users (--users)" if unit == "organisations"
           else "a longer --duration or a higher --rate")
    return (f"needs about {math.ceil(n * need):,} load-test {unit} (has {n:,}): about {factor}× this "
            f"run — {how}, or --repeat {factor}")


def cluster_ratio_se(num: Sequence[float], den: Sequence[float]) -> tuple[float, float]:
    """A ratio Σnum/Σden over clusters (organisations) and its cluster-robust standard error.

    Requests of one organisation are not independent (it is blocked, or it is not), so the error
    is taken over organisations: ``var = N/(N−1) · Σ(num_u − R·den_u)² / (Σden)²``.
    """
    total = math.fsum(den)
    if total <= 0:
        return math.nan, math.nan
    ratio = math.fsum(num) / total
    k = len(den)
    if k < 2:
        return ratio, math.inf
    resid = math.fsum((y - ratio * x) ** 2 for y, x in zip(num, den, strict=True))
    return ratio, math.sqrt(k / (k - 1) * resid) / total
