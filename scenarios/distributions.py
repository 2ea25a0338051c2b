"""Probability distributions as declared in scenario files, and the one function that samples them.

Every random quantity in a scenario is written one way::

    {dist: lognormal, median: 800, sigma: 0.9}
    {dist: exponential, mean: 2.5}
    {dist: constant, value: 3}
    {dist: uniform, low: 1, high: 5}
    {dist: pareto, xm: 1.0, alpha: 1.6}
    {dist: empirical, quantiles: {0.0: 10, 0.5: 120, 0.99: 2000, 1.0: 9000}}

and sampled through :func:`sample` with an explicit ``numpy.random.Generator`` (no global state).
``empirical`` is a piecewise-linear inverse CDF through the given (probability, value) points.
"""

from __future__ import annotations

import itertools
import math
from statistics import NormalDist
from typing import Annotated, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

# NaN and infinity are refused (1e400 in YAML is infinity): no law of a count, time or price has them.
_FROZEN = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


#: ``highest()`` of a law without an upper bound is the value it exceeds once in a billion draws
#: (the 1 − 1e-9 quantile; ``_Z_BILLION`` is that quantile of the standard normal).
_TAIL = 1e-9
_Z_BILLION = NormalDist().inv_cdf(1 - _TAIL)


class Lognormal(BaseModel):
    model_config = _FROZEN
    dist: Literal["lognormal"]
    median: float = Field(gt=0)
    sigma: float = Field(ge=0)

    def mean(self) -> float:
        return self.median * math.exp(self.sigma**2 / 2)

    def lowest(self) -> float:
        return 0.0

    def highest(self) -> float:
        return self.median * math.exp(_Z_BILLION * self.sigma)


class Exponential(BaseModel):
    model_config = _FROZEN
    dist: Literal["exponential"]
    mean_: float = Field(gt=0, alias="mean")

    def mean(self) -> float:
        return self.mean_

    def lowest(self) -> float:
        return 0.0

    def highest(self) -> float:
        return self.mean_ * math.log(1 / _TAIL)


class Constant(BaseModel):
    model_config = _FROZEN
    dist: Literal["constant"]
    value: float

    def mean(self) -> float:
        return self.value

    def lowest(self) -> float:
        return self.value

    def highest(self) -> float:
        return self.value


class Uniform(BaseModel):
    model_config = _FROZEN
    dist: Literal["uniform"]
    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        if not self.high >= self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        return self

    def mean(self) -> float:
        return (self.low + self.high) / 2

    def lowest(self) -> float:
        return self.low

    def highest(self) -> float:
        return self.high


class Pareto(BaseModel):
    model_config = _FROZEN
    dist: Literal["pareto"]
    xm: float = Field(gt=0)
    alpha: float = Field(gt=0)

    def mean(self) -> float:
        return math.inf if self.alpha <= 1 else self.alpha * self.xm / (self.alpha - 1)

    def lowest(self) -> float:
        return self.xm

    def highest(self) -> float:
        return self.xm * _TAIL ** (-1 / self.alpha)


class Empirical(BaseModel):
    model_config = _FROZEN
    dist: Literal["empirical"]
    quantiles: dict[float, float]

    @field_validator("quantiles")
    @classmethod
    def _valid_quantiles(cls, q: dict[float, float]) -> dict[float, float]:
        probs = sorted(q)
        if len(probs) < 2 or probs[0] != 0.0 or probs[-1] != 1.0:
            raise ValueError("needs at least the probabilities 0.0 and 1.0")
        values = [q[p] for p in probs]
        if any(b < a for a, b in itertools.pairwise(values)):
            raise ValueError("values must not decrease as the probability grows")
        return {p: q[p] for p in probs}

    def mean(self) -> float:
        probs, values = list(self.quantiles), list(self.quantiles.values())
        pairs = zip(itertools.pairwise(probs), itertools.pairwise(values), strict=True)
        return float(sum((p1 - p0) * (v0 + v1) / 2 for (p0, p1), (v0, v1) in pairs))

    def lowest(self) -> float:
        return next(iter(self.quantiles.values()))

    def highest(self) -> float:
        return next(reversed(self.quantiles.values()))


Distribution = Annotated[
    Lognormal | Exponential | Constant | Uniform | Pareto | Empirical,
    Field(discriminator="dist"),
]


def _non_negative(d: Lognormal | Exponential | Constant | Uniform | Pareto | Empirical
                  ) -> Lognormal | Exponential | Constant | Uniform | Pareto | Empirical:
    if d.lowest() < 0:
        raise ValueError(f"draws negative values (as low as {d.lowest():g}); this law is of a "
                         "count, a time, a rate or a price")
    return d


#: The law of a quantity that cannot be negative: every law in a scenario but an ``uncertain:``
#: parameter's (a propensity may be drawn below zero).
NonNegative = Annotated[Distribution, AfterValidator(_non_negative)]


def _positive(d: Lognormal | Exponential | Constant | Uniform | Pareto | Empirical
              ) -> Lognormal | Exponential | Constant | Uniform | Pareto | Empirical:
    # lognormal and exponential laws come arbitrarily near 0 but never draw it
    if d.lowest() <= 0 and not isinstance(d, Lognormal | Exponential):
        raise ValueError(f"draws {d.lowest():g}; this law is of a speed, which must be above 0 "
                         "(a speed of 0 never finishes)")
    return d


#: The law of a speed (output tokens per second): above zero, or generation never ends.
Positive = Annotated[Distribution, AfterValidator(_non_negative), AfterValidator(_positive)]

#: The highest mean request rate of one organisation, per hour: 10 million is 2,800 a second,
#: all day. Past it a law is a typo or a heavy tail without a mean, and the Poisson draws of the
#: simulator's hours overflow.
MAX_REQUESTS_PER_HOUR = 1e7


def _bounded_rate(d: Lognormal | Exponential | Constant | Uniform | Pareto | Empirical
                  ) -> Lognormal | Exponential | Constant | Uniform | Pareto | Empirical:
    mean = d.mean()
    if not mean <= MAX_REQUESTS_PER_HOUR:
        raise ValueError(f"its mean is {mean:,.4g} requests an hour; at most "
                         f"{MAX_REQUESTS_PER_HOUR:,.0f} (one organisation)" if math.isfinite(mean)
                         else "its mean is infinite (a Pareto law needs alpha above 1 here)")
    return d


#: The law of one organisation's mean request rate: non-negative, with a finite, bounded mean.
Rate = Annotated[Distribution, AfterValidator(_non_negative), AfterValidator(_bounded_rate)]


def sample(d: Distribution, rng: np.random.Generator, size: int | None = None) -> np.ndarray:
    """Draw ``size`` values (an array; shape () when size is None) from ``d`` using ``rng``."""
    match d:
        case Lognormal():
            return np.asarray(rng.lognormal(math.log(d.median), d.sigma, size))
        case Exponential():
            return np.asarray(rng.exponential(d.mean_, size))
        case Constant():
            return np.full(() if size is None else size, d.value, dtype=float)
        case Uniform():
            return np.asarray(rng.uniform(d.low, d.high, size))
        case Pareto():
            return np.asarray(d.xm * (1.0 + rng.pareto(d.alpha, size)))
        case Empirical():
            u = rng.random(size)
            return np.asarray(np.interp(u, list(d.quantiles), list(d.quantiles.values())))
    raise TypeError(f"unknown distribution {d!r}")  # pragma: no cover - exhaustive match


def sample_one(d: Distribution, rng: np.random.Generator) -> float:
    """One draw as a Python float: ``float(sample(d, rng))``, the same draw without the array
    (the generators' scalar draws are the values a size-less array would hold)."""
    kind = type(d)
    if kind is Lognormal:
        return float(rng.lognormal(math.log(d.median), d.sigma))  # type: ignore[union-attr]
    if kind is Uniform:
        return float(rng.uniform(d.low, d.high))  # type: ignore[union-attr]
    if kind is Exponential:
        return float(rng.exponential(d.mean_))  # type: ignore[union-attr]
    return float(sample(d, rng))
