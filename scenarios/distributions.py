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
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class Lognormal(BaseModel):
    model_config = _FROZEN
    dist: Literal["lognormal"]
    median: float = Field(gt=0)
    sigma: float = Field(ge=0)

    def mean(self) -> float:
        return self.median * math.exp(self.sigma**2 / 2)


class Exponential(BaseModel):
    model_config = _FROZEN
    dist: Literal["exponential"]
    mean_: float = Field(gt=0, alias="mean")

    def mean(self) -> float:
        return self.mean_


class Constant(BaseModel):
    model_config = _FROZEN
    dist: Literal["constant"]
    value: float

    def mean(self) -> float:
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


class Pareto(BaseModel):
    model_config = _FROZEN
    dist: Literal["pareto"]
    xm: float = Field(gt=0)
    alpha: float = Field(gt=0)

    def mean(self) -> float:
        return math.inf if self.alpha <= 1 else self.alpha * self.xm / (self.alpha - 1)


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


Distribution = Annotated[
    Lognormal | Exponential | Constant | Uniform | Pareto | Empirical,
    Field(discriminator="dist"),
]


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
