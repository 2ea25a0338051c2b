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

    def as_dict(self) -> dict[str, object]:
        """The verdict as JSON takes it: a number that is not finite (no standard error from
        too few requests, so no interval) is null — JSON has no NaN."""
        return {"figure": self.figure, "simulation": _finite(self.sim_mean),
                "simulation_sd": _finite(self.sim_sd), "replications": self.replications,
                "loadtest": _finite(self.loadtest), "loadtest_se": _finite(self.loadtest_se),
                "n": self.n, "margin": _finite(self.margin), "difference": _finite(self.diff),
                "ci90": [_finite(v) for v in self.ci90], "ci95": [_finite(v) for v in self.ci95],
                "verdict": self.verdict, "why": self.why}


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
    return _decide(figure, mean, sd, reps, loadtest, loadtest_se, n, se, share=share, unit=unit,
                   paired=paired, value_unit=value_unit)


def _decide(figure: str, mean: float, sd: float, reps: int, loadtest: float, loadtest_se: float,
            n: int, se: float, *, share: bool, unit: str, paired: bool = False,
            value_unit: str = "") -> Verdict:
    """The verdict on ``d = loadtest − mean`` with standard error ``se`` (module docstring)."""
    m = margin(mean, share=share)
    d = loadtest - mean
    ci90 = (d - Z90 * se, d + Z90 * se)
    ci95 = (d - Z95 * se, d + Z95 * se)
    if not (math.isfinite(d) and math.isfinite(se)) or n < MIN_N:
        why = (f"no load-test {unit} to judge" if n == 0 else
               f"{n} load-test {unit}: fewer than {MIN_N}, too few to judge")
        return Verdict(figure, mean, sd, reps, loadtest, loadtest_se, n, m, d, ci90, ci95,
                       INCONCLUSIVE, why)
    if -m <= ci90[0] and ci90[1] <= m:
        verdict, why = AGREE, ""
    elif (ci95[0] > 0 or ci95[1] < 0) and (ci95[0] > m or ci95[1] < -m):
        verdict, why = DISAGREE, ""
    else:
        verdict, why = INCONCLUSIVE, _settle(d, se, loadtest_se, m, n, unit, paired,
                                             _amount(share, value_unit))
    return Verdict(figure, mean, sd, reps, loadtest, loadtest_se, n, m, d, ci90, ci95, verdict, why)


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
    return _decide(parts[0].figure, mean, sd, sum(v.replications for v in parts), lt, lt_se,
                   total, se, share=share, unit=unit, paired=True, value_unit=value_unit)


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
