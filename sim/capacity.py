"""Provider capacity per hour: retries in the offered load, the 429 share, queues that carry over.

For every provider and hour ``t`` (bins are cut into hours; ``t = bin · hours + hour`` runs in
time order) the first attempts that reach the provider arrive at ``λ0_g(t)`` per second from each
segment ``g`` (each region's requests spread over the bin's hours by its own diurnal pattern).
A failed attempt is retried seconds later, in the same hour, so the load the provider sees is

    λ(t) = Σ_g λ0_g(t) · A_g(p(t)),   A_g(p) = Σ_{k=0..R_g} c_g(p)^k,

with ``c_g(p)`` the chance that an attempt fails *and* is retried (the 429 share ``p`` plus the
injected errors and resets the segment's client retries). The 429 share in turn depends on the
load: ``p(t) = F_t(λ(t))``. That fixed point is solved per provider-hour (bisection: ``F`` rises
with ``λ``, ``λ`` with ``p``), so served work never exceeds what the servers can do.

``F_t`` is one of two laws, chosen per hour by how long the queue takes to respond:

* **steady state** (M/M/c/K, :func:`sim.queueing.mmck`) where the queue fills or drains within
  ``RELAX_H`` (0.1 h) — a service time of seconds against an hour;
* **fluid** where it does not (an overload against a long waiting room, or a backlog carried from
  the previous hour): the queue ``Q`` moves at ``λ − c·μ`` from where the previous hour left it,
  clipped to ``[0, K]``; only arrivals that find it full are rejected. The hour's end state
  carries into the next hour.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from scenarios.distributions import sample
from scenarios.schema import Provider, Scenario
from sim.profile import Profile
from sim.queueing import MMcK, mean_waiting, mmck

#: An hour whose queue needs longer than this to fill (or drain) is not in its steady state.
RELAX_H = 0.1
#: Bisection steps of the per-hour fixed point (2^-40 of the 429 share).
BISECT = 40
#: Below this first-attempt 429 share an hour is taken as loss-free (retries add nothing).
NEGLIGIBLE = 1e-12


@dataclass(frozen=True, slots=True)
class Hours:
    """One provider's hours, flattened in time order (``t = bin · hours + hour``)."""

    servers: int
    queue_limit: int
    seconds: float            # length of one hour slot
    mu: np.ndarray            # (t,) service rate per server, 1/s
    rate: np.ndarray          # (t,) attempts per second offered (retries included)
    first: np.ndarray         # (t,) first attempts per second
    rate_open: np.ndarray     # (t,) attempts per second while nothing is rejected (no 429 retries)
    p_reject: np.ndarray      # (t,) 429 share of attempts
    served: np.ndarray        # (t,) attempts completed per second (departures)
    fluid: np.ndarray         # (t,) bool: the hour follows the fluid recursion
    q0: np.ndarray            # (t,) requests waiting at the hour's start
    q1: np.ndarray            # (t,) requests waiting at its end
    steady: MMcK              # (t,) the steady state at the hour's load (used where not fluid)


@dataclass(frozen=True, slots=True)
class Capacity:
    """Per provider (p), bin (b), hour-of-bin (h), region (r) and segment (g)."""

    offered: np.ndarray        # (p, b, h) Erlangs, retries included
    p_reject: np.ndarray       # (p, b, h) 429 share of attempts
    utilisation: np.ndarray    # (p, b): busiest hour's served load per server
    hour_weight: np.ndarray    # (r, b, h): share of a region's bin traffic in each hour
    service_s: np.ndarray      # (p, b) mean service seconds
    hours: tuple[Hours, ...]   # per provider
    #: (p, b, r, g, round): an attempt's chance to fail, a failure's to be retried, and the 429
    #: share of failures, for the attempts of each retry round (see :func:`attempt_laws`)
    fail: np.ndarray
    retry: np.ndarray
    share429: np.ndarray

    @property
    def queue(self) -> tuple[MMcK, ...]:
        return tuple(h.steady for h in self.hours)


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


@dataclass(frozen=True, slots=True)
class RetryClass:
    """What one segment's client retries, per provider: (g,) rounds, (g,) 429, (g, p) errors."""

    rounds: np.ndarray
    on_429: np.ndarray
    on_error: np.ndarray
    error_rate: np.ndarray    # (p,)
    reset_rate: np.ndarray    # (p,)

    @classmethod
    def of(cls, s: Scenario) -> RetryClass:
        return cls(
            rounds=np.array([g.retry.max_retries for g in s.segments], dtype=np.int64),
            on_429=np.array([429 in g.retry.statuses for g in s.segments]),
            on_error=np.array([[p.faults.error_status in g.retry.statuses for p in s.providers]
                               for g in s.segments]),
            error_rate=np.array([p.faults.error_rate for p in s.providers]),
            reset_rate=np.array([p.faults.reset_rate for p in s.providers]))

    def laws(self, k: int, p429: np.ndarray, g: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(fail, retried-if-failed, 429 share of failures) of an attempt at provider k, segment g."""
        err, reset = self.error_rate[k], self.reset_rate[k]
        fail = 1.0 - (1.0 - p429) * (1.0 - err) * (1.0 - reset)
        weight = p429 * self.on_429[g] + err * self.on_error[g, k] + reset  # the SDK retries resets
        total = p429 + err + reset
        retry = np.divide(weight, total, out=np.zeros_like(total), where=total > 0)
        share = np.divide(p429, total, out=np.zeros_like(total), where=total > 0)
        return fail, retry, share

    def scalar_rate(self, k: int, lam0: list[float]) -> Callable[[float], float]:
        """λ(p) = Σ_g λ0_g · A_g(p) for one hour, in plain floats (the fluid hours' bisection
        calls it some forty times per hour; NumPy's per-call overhead would dominate)."""
        err, reset = float(self.error_rate[k]), float(self.reset_rate[k])
        terms = [(lam, bool(self.on_429[g]), bool(self.on_error[g, k]), int(self.rounds[g]))
                 for g, lam in enumerate(lam0) if lam > 0.0]

        def rate(p: float) -> float:
            fail = 1.0 - (1.0 - p) * (1.0 - err) * (1.0 - reset)
            total = p + err + reset
            out = 0.0
            for lam, on429, onerr, rounds in terms:
                c = fail * (p * on429 + err * onerr + reset) / total if total > 0.0 else 0.0
                a, term = 1.0, 1.0
                for _ in range(rounds):
                    term *= c
                    a += term
                out += lam * a
            return out
        return rate

    def attempts(self, k: int, p429: np.ndarray, g: int) -> np.ndarray:
        """Expected attempts per original: Σ_{j ≤ R} (fail · retry)^j."""
        fail, retry, _ = self.laws(k, p429, g)
        c = fail * retry
        out = np.ones_like(c)
        term = np.ones_like(c)
        for _ in range(int(self.rounds[g])):
            term = term * c
            out = out + term
        return out


def assess(s: Scenario, arrivals: np.ndarray, tokens_out_mean: np.ndarray,
           hour_weight: np.ndarray, bin_hours: float, inverse_throughput: np.ndarray,
           retry: RetryClass | None = None) -> Capacity:
    """``arrivals[p, g, r, b]``: first attempts reaching provider p from segment g, region r in bin b."""
    retry = retry or RetryClass.of(s)
    hours = hour_weight.shape[2]
    per_hour = np.einsum("pgrb,rbh->pgbh", arrivals, hour_weight)       # first attempts per hour
    seconds = 3600.0 * bin_hours / hours
    np_, ng, nb = arrivals.shape[0], arrivals.shape[1], arrivals.shape[3]
    service = np.zeros((np_, nb))
    states: list[Hours] = []
    for k, p in enumerate(s.providers):
        service[k] = service_seconds(p, tokens_out_mean[k], float(inverse_throughput[k]))
        mu = np.repeat(1.0 / np.maximum(service[k], 1e-9), hours)
        lam0 = per_hour[k].reshape(ng, nb * hours) / seconds
        states.append(solve_hours(p.capacity.concurrency, p.capacity.queue_limit, mu, lam0,
                                  seconds, retry, k))
    offered = np.stack([h.rate / h.mu for h in states]).reshape(np_, nb, hours)
    p_reject = np.stack([h.p_reject for h in states]).reshape(np_, nb, hours)
    busy = np.stack([h.served / (h.mu * h.servers) for h in states]).reshape(np_, nb, hours)
    fail, again, share = attempt_laws(retry, p_reject, hour_weight)
    return Capacity(offered=offered, p_reject=p_reject, utilisation=np.minimum(busy, 1.0).max(axis=2),
                    hour_weight=hour_weight, service_s=service, hours=tuple(states),
                    fail=fail, retry=again, share429=share)


def solve_hours(servers: int, queue_limit: int, mu: np.ndarray, lam0: np.ndarray, seconds: float,
                retry: RetryClass, k: int) -> Hours:
    """The 429 share and queue of every hour of one provider (``lam0[g, t]`` first attempts/s)."""
    steady_p, rate = _steady_fixed_point(servers, queue_limit, mu, lam0, retry, k)
    steady = mmck(servers, queue_limit, rate / mu)
    lq = mean_waiting(servers, queue_limit, steady)
    t_n = mu.size
    cmu = servers * mu
    # hours whose overload needs more than RELAX_H to fill the room: the steady state is wrong
    # there. Judged on the first attempts (and the retries of injected errors): while the room
    # fills nothing is rejected, so 429s add no retries yet.
    rate0 = _offered_rate(lam0, np.zeros(mu.size), retry, k)
    p, fluid, q0, q1 = steady_p.copy(), np.zeros(t_n, dtype=bool), np.zeros(t_n), lq.copy()
    slow_fill = (rate0 > cmu) & (queue_limit / np.maximum(rate0 - cmu, 1e-300) > RELAX_H * 3600.0)
    if np.any(slow_fill):
        p, rate, fluid, q0, q1 = _carry(servers, queue_limit, mu, lam0, seconds, retry, k,
                                        steady_p, rate, rate0, lq, int(np.argmax(slow_fill)))
        steady = mmck(servers, queue_limit, rate / mu)   # at the carried rates
    served = np.where(fluid, rate * (1.0 - p) + (q0 - q1) / seconds, rate * (1.0 - p))
    return Hours(servers=servers, queue_limit=queue_limit, seconds=seconds, mu=mu, rate=rate,
                 first=lam0.sum(axis=0), rate_open=rate0, p_reject=p,
                 served=np.maximum(served, 0.0), fluid=fluid, q0=q0, q1=q1,
                 steady=steady)


def _offered_rate(lam0: np.ndarray, p: np.ndarray, retry: RetryClass, k: int) -> np.ndarray:
    return sum((lam0[g] * retry.attempts(k, p, g) for g in range(lam0.shape[0])),
               start=np.zeros(lam0.shape[1]))


def _steady_fixed_point(servers: int, queue_limit: int, mu: np.ndarray, lam0: np.ndarray,
                        retry: RetryClass, k: int) -> tuple[np.ndarray, np.ndarray]:
    """p = F(λ(p)) per hour under the M/M/c/K steady state, vectorised over the hours that lose
    anything at all (the rest keep p = F(λ(0)), below ``NEGLIGIBLE``)."""
    rate0 = _offered_rate(lam0, np.zeros(mu.size), retry, k)
    p0 = mmck(servers, queue_limit, rate0 / mu).p_reject
    p = p0.copy()
    live = np.flatnonzero(p0 > NEGLIGIBLE)
    if live.size:
        sub, m = lam0[:, live], mu[live]
        lo, hi = p0[live], np.ones(live.size)
        for _ in range(BISECT):
            mid = 0.5 * (lo + hi)
            f = mmck(servers, queue_limit, _offered_rate(sub, mid, retry, k) / m).p_reject
            up = f > mid
            lo = np.where(up, mid, lo)
            hi = np.where(up, hi, mid)
        p[live] = 0.5 * (lo + hi)
    return p, _offered_rate(lam0, p, retry, k)


def fluid_hour(q0: float, rate: float, cmu: float, limit: int, seconds: float) -> tuple[float, float, float]:
    """(429 share of the hour's attempts, queue at its end, when the queue emptied or filled — s
    from the hour's start, or ``seconds`` if neither) of a fluid queue."""
    net = rate - cmu
    if net > 0.0:
        t_full = (limit - q0) / net
        if t_full >= seconds:
            return 0.0, q0 + net * seconds, seconds
        t_full = max(t_full, 0.0)
        return net * (seconds - t_full) / (rate * seconds), float(limit), t_full
    if net < 0.0 and q0 > 0.0:
        t_empty = q0 / -net
        if t_empty >= seconds:
            return 0.0, q0 + net * seconds, seconds
        return 0.0, 0.0, t_empty
    return 0.0, q0, 0.0 if q0 <= 0.0 else seconds


def _carry(servers: int, limit: int, mu: np.ndarray, lam0: np.ndarray, seconds: float,
           retry: RetryClass, k: int, steady_p: np.ndarray, steady_rate: np.ndarray,
           first_rate: np.ndarray, lq: np.ndarray,
           first: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The fluid recursion from hour ``first`` on: an hour is fluid while it carries a backlog
    beyond its steady state or its overload fills the room slowly; the queue at each hour's end
    starts the next. Per hour the 429 share is again a fixed point with the retries it causes."""
    t_n = mu.size
    p, rate = steady_p.copy(), steady_rate.copy()
    fluid = np.zeros(t_n, dtype=bool)
    q0 = np.zeros(t_n)
    q1 = lq.copy()
    q = float(lq[first - 1]) if first > 0 else 0.0
    cmu_all = (servers * mu).tolist()
    r_first = first_rate.tolist()
    slack = RELAX_H * 3600.0
    for t in range(first, t_n):
        cmu = cmu_all[t]
        r0 = r_first[t]
        q0[t] = q
        backlog = q - float(lq[t])
        slow_fill = r0 > cmu and (limit - q) / (r0 - cmu) > slack
        # a backlog beyond the hour's steady state takes time to drain: carry it (fluid) unless
        # it is gone within a hundredth of RELAX_H
        slow_drain = backlog > 1.0 and (r0 >= cmu or backlog / (cmu - r0) > 0.01 * slack)
        if not (slow_fill or slow_drain):
            q = float(lq[t])        # the hour reaches its steady state: nothing carries over
            continue
        fluid[t] = True
        p[t], q_end, rate[t] = _fluid_fixed_point(q, lam0[:, t], cmu, limit, seconds, retry, k,
                                                  float(steady_p[t]))
        q = q1[t] = q_end
    return p, rate, fluid, q0, q1


def _fluid_fixed_point(q0: float, lam0: np.ndarray, cmu: float, limit: int, seconds: float,
                       retry: RetryClass, k: int, steady_p: float) -> tuple[float, float, float]:
    """(429 share of the hour's attempts, queue at its end, attempts per second) of a fluid hour.

    While the room fills nothing is rejected, so the load is the first attempts alone (with the
    retries of injected errors); once it is full, arrivals beyond c·μ are rejected and retried
    in turn: that phase's share p solves p = 1 − c·μ / λ(p) (bisection). Once a backlog has
    drained, the rest of the hour is in its steady state and rejects ``steady_p``.
    """
    rate_of = retry.scalar_rate(k, lam0.tolist())
    r0 = rate_of(0.0)
    if r0 <= 0.0:
        return 0.0, max(q0 - cmu * seconds, 0.0), 0.0
    _, q_end, when = fluid_hour(q0, r0, cmu, limit, seconds)
    if r0 <= cmu:
        return steady_p * (1.0 - when / seconds) if q_end <= 0.0 else 0.0, q_end, r0
    full = seconds - when
    if full <= 0.0:
        return 0.0, q_end, r0
    lo, hi = 0.0, 1.0
    for _ in range(BISECT):
        mid = 0.5 * (lo + hi)
        if 1.0 - cmu / rate_of(mid) > mid:
            lo = mid
        else:
            hi = mid
    p_full = 0.5 * (lo + hi)
    rate_full = rate_of(p_full)
    attempts = r0 * when + rate_full * full
    return p_full * rate_full * full / attempts, q_end, attempts / seconds


def attempt_laws(retry: RetryClass, p_reject: np.ndarray,
                 hour_weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p, b, r, g, round) laws of the attempts of each retry round, mixed over the bin's hours.

    An original lands in hour h with the region's weight w_h and all its retries stay in that
    hour. Given that it reached round j, its hour is distributed ∝ w_h · c_h^j (c = fail ·
    retried), so round j fails with Σ w c^j f / Σ w c^j and a failure is retried with
    Σ w c^j f r / Σ w c^j f: drawing round by round with these is exact in law, and the 429 share
    of each hour applies to first attempts and retries alike.
    """
    np_, nb, _ = p_reject.shape
    ng = retry.rounds.size
    rounds = int(retry.rounds.max(initial=0)) + 1
    nr = hour_weight.shape[0]
    fail = np.zeros((np_, nb, nr, ng, rounds))
    again = np.zeros_like(fail)
    share = np.zeros_like(fail)
    for k in range(np_):
        for g in range(ng):
            f, r, s429 = retry.laws(k, p_reject[k], g)     # (b, h)
            c = f * r
            # (r, b, h): w · c^j (never changed in place: the weights themselves in round 0)
            mass = hour_weight
            for j in range(rounds):
                m = mass.sum(axis=2)
                failed = mass * f                           # w · c^j · f, multiplied once
                mf = failed.sum(axis=2)
                fail[k, :, :, g, j] = np.divide(mf, m, out=np.zeros_like(m), where=m > 0).T
                mfr = (failed * r).sum(axis=2)
                again[k, :, :, g, j] = np.divide(mfr, mf, out=np.zeros_like(mf), where=mf > 0).T
                ms = (failed * s429).sum(axis=2)
                share[k, :, :, g, j] = np.divide(ms, mf, out=np.zeros_like(mf), where=mf > 0).T
                mass = mass * c
    return fail, again, share
