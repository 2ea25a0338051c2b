"""Provider capacity: offered load per hour, the 429 share, queueing and utilisation.

For every provider, bin and hour of the bin, the arrival rate follows from the requests that
reach the provider (each region's requests spread over the bin's hours by that region's own
diurnal and weekly pattern). The offered load is ``a = λ · E[S]`` Erlangs with ``E[S]`` the mean
service time (time to first token + output tokens / throughput). Each hour is then an M/M/c/K
queue in steady state (``c`` = concurrency, ``K − c`` = queue_limit): :func:`sim.queueing.mmck`
gives the share of arrivals rejected (429) and the waiting-time law used by :mod:`sim.latency`.
An hour is long against a service time of seconds, so the steady state is a fair description of
it; the request-level engine (:func:`sim.queueing.fcfs`) is validated against the same formulas.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scenarios.distributions import sample
from scenarios.schema import Provider, Scenario
from sim.profile import Profile
from sim.queueing import MMcK, mmck


@dataclass(frozen=True, slots=True)
class Capacity:
    """Per provider (p), bin (b), hour-of-bin (h) and region (r)."""

    offered: np.ndarray        # (p, b, h) Erlangs
    p_reject: np.ndarray       # (p, b, h)
    reject_by_region: np.ndarray  # (p, b, r): share of a region's arrivals rejected in the bin
    utilisation: np.ndarray    # (p, b): busiest hour's carried load per server
    hour_weight: np.ndarray    # (r, b, h): share of a region's bin traffic in each hour
    service_s: np.ndarray      # (p, b) mean service seconds
    queue: tuple[MMcK, ...] = ()  # per provider: the M/M/c/K state of every (b, h), flattened


def hour_weights(profile: Profile, edges: np.ndarray) -> np.ndarray:
    """(regions, bins, hours per bin): each region's share of a bin's requests by hour."""
    width = round(edges[1] - edges[0]) if edges.size > 1 else 1
    nb = edges.size - 1
    hourly = profile.hourly
    padded = np.zeros((hourly.shape[0], nb * width))
    padded[:, : min(hourly.shape[1], nb * width)] = hourly[:, : nb * width]
    per = padded.reshape(hourly.shape[0], nb, width)
    total = per.sum(axis=2, keepdims=True)
    return np.divide(per, total, out=np.zeros_like(per), where=total > 0)


def mean_inverse(d: object) -> float:
    """E[1/X] of a throughput distribution, by a fixed-seed Monte Carlo (no closed form in general)."""
    x = sample(d, np.random.default_rng(0x5EED), 200_000)  # type: ignore[arg-type]
    return float(np.mean(1.0 / np.maximum(x, 1e-9)))


def inverse_throughputs(s: Scenario) -> np.ndarray:
    """E[1/tokens_per_s] per provider (seconds per output token)."""
    return np.array([mean_inverse(p.latency.tokens_per_s) for p in s.providers])


def service_seconds(p: Provider, tokens_out_mean: np.ndarray, inverse_throughput: float) -> np.ndarray:
    return p.latency.ttft_ms.mean() / 1000.0 + tokens_out_mean * inverse_throughput


def assess(s: Scenario, arrivals: np.ndarray, tokens_out_mean: np.ndarray,
           hour_weight: np.ndarray, bin_hours: float, inverse_throughput: np.ndarray) -> Capacity:
    """``arrivals[p, r, b]`` requests reaching provider p from region r in bin b."""
    hours = hour_weight.shape[2]
    per_hour = np.einsum("prb,rbh->pbh", arrivals, hour_weight)       # requests in each hour
    seconds_per_hour = 3600.0 * bin_hours / hours
    np_, nb = arrivals.shape[0], arrivals.shape[2]
    offered = np.zeros((np_, nb, hours))
    p_reject = np.zeros_like(offered)
    util = np.zeros((np_, nb))
    service = np.zeros((np_, nb))
    queue: list[MMcK] = []
    for k, p in enumerate(s.providers):
        service[k] = service_seconds(p, tokens_out_mean[k], float(inverse_throughput[k]))
        offered[k] = per_hour[k] / seconds_per_hour * service[k][:, None]
        state = mmck(p.capacity.concurrency, p.capacity.queue_limit, offered[k].ravel())
        queue.append(state)
        p_reject[k] = state.p_reject.reshape(nb, hours)
        util[k] = state.carried_per_server.reshape(nb, hours).max(axis=1)
    by_region = np.einsum("pbh,rbh->pbr", p_reject, hour_weight)
    return Capacity(offered=offered, p_reject=p_reject, reject_by_region=by_region,
                    utilisation=util, hour_weight=hour_weight, service_s=service,
                    queue=tuple(queue))
