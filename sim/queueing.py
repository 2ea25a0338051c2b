"""Request-level queueing: a multi-server FCFS queue with a finite waiting room, and its theory.

:func:`fcfs` serves requests in arrival order on ``c`` identical servers with at most
``queue_limit`` requests waiting; an arrival that finds every server busy and the waiting room
full is rejected (HTTP 429). It is one tight loop over the requests, not one SimPy process per
request: FCFS start times never decrease, so the waiting requests are a FIFO of start times and
the servers a heap of the times they become free (a Kiefer–Wolfowitz/Lindley recursion).

The closed forms (Erlang B, Erlang C, M/M/c/K) are the theory the engine is tested against and
what the simulator uses for every hour of every bin (see :mod:`sim.capacity`).
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class QueueResult:
    """Per request: seconds waited before service (NaN if rejected) and whether it was rejected."""

    wait: np.ndarray
    rejected: np.ndarray
    busy_time: float
    horizon: float


def fcfs(arrivals: np.ndarray, services: np.ndarray, *, servers: int,
         queue_limit: int | None = None) -> QueueResult:
    """Serve ``arrivals`` (sorted seconds) needing ``services`` seconds on ``servers`` servers."""
    if servers < 1:
        raise ValueError(f"servers ({servers}) must be at least 1")
    limit = math.inf if queue_limit is None else queue_limit
    free = [0.0] * servers  # a valid heap: every server free from time 0
    waiting: deque[float] = deque()
    n = len(arrivals)
    waits = [0.0] * n
    rejected = [False] * n
    busy = 0.0
    heapreplace, popleft, append = heapq.heapreplace, waiting.popleft, waiting.append
    for i, (t, s) in enumerate(zip(arrivals.tolist(), services.tolist(), strict=True)):
        while waiting and waiting[0] <= t:
            popleft()
        earliest = free[0]
        if earliest <= t:
            heapreplace(free, t + s)
        elif len(waiting) >= limit:
            rejected[i] = True
            waits[i] = math.nan
            continue
        else:
            heapreplace(free, earliest + s)
            append(earliest)
            waits[i] = earliest - t
        busy += s
    horizon = float(arrivals[-1]) if n else 0.0
    return QueueResult(np.asarray(waits), np.asarray(rejected), busy, horizon)


# ---------------------------------------------------------------- theory


def erlang_b(servers: int, offered: float) -> float:
    """Probability that an arrival finds all ``servers`` busy with no waiting room (Erlang B)."""
    b = 1.0
    for n in range(1, servers + 1):
        b = offered * b / (n + offered * b)
    return b


def erlang_c(servers: int, offered: float) -> float:
    """Probability that an arrival waits in an M/M/c queue with unlimited room (Erlang C)."""
    if offered >= servers:
        return 1.0
    b = erlang_b(servers, offered)
    rho = offered / servers
    return b / (1.0 - rho + rho * b)


def mmc_mean_wait(servers: int, arrival_rate: float, service_rate: float) -> float:
    """Mean wait in queue of an M/M/c queue: C(c, a) / (c·μ − λ)."""
    offered = arrival_rate / service_rate
    return erlang_c(servers, offered) / (servers * service_rate - arrival_rate)


def erlang_b_vector(servers: int, offered: np.ndarray) -> np.ndarray:
    """Erlang B for many offered loads at once (same ``servers``).

    Loads far below ``servers`` (more than 12 standard deviations of a Poisson) have a blocking
    probability below 1e-30; they use the Poisson tail ratio directly instead of the O(c) recursion.
    """
    a = np.asarray(offered, dtype=float)
    out = np.zeros_like(a)
    far = a + 12.0 * np.sqrt(a) + 30.0 < servers
    near = ~far & (a > 0)
    if np.any(far & (a > 0)):
        af = a[far & (a > 0)]
        log_pmf = servers * np.log(af) - af - math.lgamma(servers + 1)
        out[far & (a > 0)] = np.exp(log_pmf)
    if np.any(near):
        an = a[near]
        b = np.ones_like(an)
        t = np.empty_like(an)
        d = np.empty_like(an)
        multiply, add, divide = np.multiply, np.add, np.divide
        for n in range(1, servers + 1):   # b = a·b / (n + a·b), in place (servers can be 10^5)
            multiply(an, b, out=t)
            add(t, n, out=d)
            divide(t, d, out=b)
        out[near] = b
    return out


@dataclass(frozen=True, slots=True)
class MMcK:
    """Steady state of M/M/c with ``queue_limit`` waiting places, as seen by arrivals (PASTA).

    ``p_reject``: an arrival is rejected; ``p_wait``: an arrival is admitted and waits;
    ``rho``: offered load per server; ``geo_ratio`` and ``places`` describe the waiting
    position of an admitted arrival that waits (truncated geometric on 0..places-1).
    """

    p_reject: np.ndarray
    p_wait: np.ndarray
    carried_per_server: np.ndarray
    rho: np.ndarray

    def take(self, index: np.ndarray) -> MMcK:
        """The states at ``index`` (e.g. one per request, gathered from a grid of offered loads)."""
        return MMcK(p_reject=self.p_reject[index], p_wait=self.p_wait[index],
                    carried_per_server=self.carried_per_server[index], rho=self.rho[index])


def mmck(servers: int, queue_limit: int, offered: np.ndarray) -> MMcK:
    """M/M/c/K (K = servers + queue_limit) for many offered loads (Erlangs) at once."""
    a = np.asarray(offered, dtype=float)
    b = erlang_b_vector(servers, a)
    rho = a / servers
    k = queue_limit
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_rho = np.log(np.where(rho > 0, rho, 1.0))
        # S(j) = sum_{i=0}^{j-1} rho^i, evaluated stably on both sides of rho = 1
        geo_k = _geo_sum(rho, log_rho, k)            # waiting positions 0..K-1
        tail = np.where(rho > 0, np.exp(np.minimum(k * log_rho, 700.0)), 0.0)  # rho^K
        if k == 0:
            tail = np.ones_like(a)
        norm = 1.0 + b * (rho * geo_k)               # relative to sum_{n<=c} a^n/n!
        # rho^K can overflow for rho > 1 and a huge K: then almost every state is "full"
        big = (rho > 1.0) & (k * log_rho > 600.0)
        p_reject = np.where(big, 1.0 - 1.0 / np.where(rho > 0, rho, 1.0), b * tail / norm)
        p_wait = np.where(big, 1.0 / np.where(rho > 0, rho, 1.0), b * geo_k / norm)
    p_reject = np.clip(np.nan_to_num(p_reject), 0.0, 1.0)
    p_wait = np.clip(np.nan_to_num(p_wait), 0.0, 1.0)
    if k == 0:
        p_wait = np.zeros_like(a)
    carried = a * (1.0 - p_reject) / servers
    return MMcK(p_reject=p_reject, p_wait=p_wait, carried_per_server=np.minimum(carried, 1.0),
                rho=rho)


def _geo_sum(rho: np.ndarray, log_rho: np.ndarray, k: int) -> np.ndarray:
    """sum_{i=0}^{k-1} rho^i, element-wise, without overflow (capped at 1e300)."""
    if k == 0:
        return np.zeros_like(rho)
    near_one = np.abs(rho - 1.0) < 1e-9
    rk = np.exp(np.minimum(k * log_rho, 690.0))
    denom = np.where(near_one, 1.0, 1.0 - rho)
    out = np.where(near_one, float(k), (1.0 - rk) / denom)
    return np.minimum(out, 1e300)


def sample_mmck_waits(servers: int, queue_limit: int, offered: np.ndarray,
                      service_rate: float | np.ndarray, rng: np.random.Generator,
                      state: MMcK | None = None) -> np.ndarray:
    """One waiting time (seconds) per admitted request, each at its own offered load ``offered[i]``.

    ``state``, if given, is ``mmck(servers, queue_limit, offered)`` already computed.

    An admitted arrival waits with probability p_wait / (1 − p_reject); if it does, it finds j
    requests ahead of it in the queue (truncated geometric with ratio rho on 0..K−1) and waits
    for j + 1 service completions at rate c·μ: a Gamma(j + 1, 1/(c·μ)) time (see :class:`WaitLaw`).
    """
    if state is None:
        state = mmck(servers, queue_limit, np.asarray(offered, dtype=float))
    return wait_law(servers, queue_limit, state, service_rate).draw(rng)


@dataclass(frozen=True, slots=True)
class WaitLaw:
    """The waiting-time law of :func:`sample_mmck_waits` for each of many M/M/c/K states.

    Everything in it depends on the state alone, so requests drawn at many states of a small
    grid (the latency sampler: some 10^5 requests per provider over its few thousand hours) read
    it by their state's index instead of computing it again per request — the same operations on
    the same values, so the same bits.
    """

    p_wait: np.ndarray        # P(wait | admitted) = p_wait / (1 − p_reject)
    ahead: TruncGeometric     # how many requests an arrival that waits finds ahead of it
    completions: np.ndarray   # c·μ: service completions per second while all servers are busy
    scale: np.ndarray         # 1 / (c·μ): the Gamma's scale

    def draw(self, rng: np.random.Generator, at: np.ndarray | None = None) -> np.ndarray:
        """One wait (seconds) per request at state ``at[i]`` (default: one request per state, in
        order): a uniform per request for whether it waits, a uniform for the requests ahead,
        then one Gamma per request (drawn for every request, used where it waits)."""
        if at is None:
            n, p_wait, scale = self.p_wait.size, self.p_wait, self.scale
        else:
            n, p_wait, scale = at.size, self.p_wait[at], self.scale[at]
        waits = rng.random(n) < p_wait
        ahead = self.ahead.inverse(rng.random(n), at)
        gam = rng.gamma(ahead + 1.0, scale)
        return np.where(waits, gam, 0.0)


def wait_law(servers: int, queue_limit: int, state: MMcK,
             service_rate: float | np.ndarray) -> WaitLaw:
    """:class:`WaitLaw` of the states ``state`` with service rate ``service_rate`` per server
    (one per state, or one for all)."""
    admitted = np.maximum(1.0 - state.p_reject, 1e-300)
    completions = servers * np.asarray(service_rate, dtype=float)
    return WaitLaw(p_wait=state.p_wait / admitted,
                   ahead=trunc_geometric_law(state.rho, queue_limit),
                   completions=completions, scale=1.0 / completions)


def trunc_geometric(rho: np.ndarray, places: int, u: np.ndarray) -> np.ndarray:
    """Inverse CDF at ``u`` of the law on 0..places-1 with P(j) ∝ rho^j (the number of requests
    ahead of an arrival that waits in M/M/c/K); see :class:`TruncGeometric`."""
    return trunc_geometric_law(rho, places).inverse(u)


@dataclass(frozen=True, slots=True)
class TruncGeometric:
    """The law on 0..places-1 with P(j) ∝ rho^j, for each of many ratios rho.

    Computed in logarithms on both sides of rho = 1, so a huge ``places · ln rho`` (a long queue
    in overload: the arrival finds it nearly full) is exact instead of capped: for rho > 1 the law
    is mirrored, j = places − 1 − j' with j' geometric of ratio 1/rho. What depends on rho alone
    is held per ratio; :meth:`inverse` does per draw only what depends on the draw.
    """

    places: int
    log_ratio: np.ndarray     # −|ln rho|: ln r of the ratio r ≤ 1 after mirroring
    one_minus_rk: np.ndarray  # 1 − r^places
    flat: np.ndarray          # |ln rho| < 1e-12: uniform on 0..places-1
    mirror: np.ndarray        # rho > 1: counted down from places − 1
    any_flat: bool
    any_mirror: bool

    def inverse(self, u: np.ndarray, at: np.ndarray | None = None) -> np.ndarray:
        """Inverse CDF at ``u[i]`` of the law of ratio ``at[i]`` (default: of the ratios as
        given, broadcast with ``u``). Where no ratio is flat (or mirrored), selecting the flat
        (mirrored) value where it is would select nothing, and is skipped."""
        u = np.asarray(u, dtype=float)
        if self.places <= 0:
            return np.zeros_like(u)
        places = self.places
        lr, one_minus_rk = ((self.log_ratio, self.one_minus_rk) if at is None
                            else (self.log_ratio[at], self.one_minus_rk[at]))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            # j = floor(log(1 − u(1 − r^K)) / log r)
            j = np.floor(np.log1p(-u * one_minus_rk) / lr)
            if self.any_flat:
                j = np.where(self.flat if at is None else self.flat[at], np.floor(u * places), j)
            j = np.nan_to_num(j, nan=0.0, posinf=places - 1.0)
            j = np.clip(j, 0.0, places - 1.0)
            if self.any_mirror:
                j = np.where(self.mirror if at is None else self.mirror[at], places - 1.0 - j, j)
            return j


def trunc_geometric_law(rho: np.ndarray, places: int) -> TruncGeometric:
    """:class:`TruncGeometric` of the ratios ``rho`` on 0..places-1."""
    rho = np.maximum(np.asarray(rho, dtype=float), 1e-300)
    log_r = np.log(rho)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        lr = -np.abs(log_r)
        one_minus_rk = -np.expm1(places * lr)
        flat = np.abs(log_r) < 1e-12
        mirror = log_r > 0
    return TruncGeometric(places=places, log_ratio=lr, one_minus_rk=one_minus_rk, flat=flat,
                          mirror=mirror, any_flat=bool(flat.any()), any_mirror=bool(mirror.any()))


def trunc_geometric_mean(rho: np.ndarray, places: int) -> np.ndarray:
    """Mean of :func:`trunc_geometric` (stable for any rho and ``places``)."""
    if places <= 0:
        return np.zeros_like(np.asarray(rho, dtype=float))
    rho = np.maximum(np.asarray(rho, dtype=float), 1e-300)
    log_r = np.log(rho)
    lr = -np.abs(log_r)
    r = np.exp(lr)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        rk = np.exp(places * lr)
        m = r / (1.0 - r) - places * rk / (1.0 - rk)
    m = np.where(np.abs(log_r) < 1e-9, (places - 1) / 2.0, np.nan_to_num(m))
    m = np.clip(m, 0.0, places - 1.0)
    return np.where(log_r > 0, places - 1.0 - m, m)


def mean_waiting(servers: int, queue_limit: int, state: MMcK) -> np.ndarray:
    """Mean number of requests waiting (not in service) in the M/M/c/K steady state:
    λ_admitted · W_q by Little's law, W_q = P(wait | admitted) · E[ahead + 1] / (c·μ), so
    L_q = a · P(wait) · (E[ahead] + 1) / c with a the offered load (Erlangs)."""
    ahead = trunc_geometric_mean(state.rho, queue_limit)
    return state.rho * state.p_wait * (ahead + 1.0)


def fcfs_retry(arrivals: np.ndarray, services: np.ndarray, backoff: np.ndarray, *, servers: int,
               queue_limit: int, max_retries: int) -> RetryResult:
    """:func:`fcfs` with rejected requests retried ``backoff[i, k]`` seconds later, up to
    ``max_retries`` times (each attempt needs the same service time) — the request-level engine
    the per-hour capacity model is checked against: retries are offered load like any arrival.
    """
    if servers < 1:
        raise ValueError(f"servers ({servers}) must be at least 1")
    pending = [(float(t), i, 0) for i, t in enumerate(arrivals.tolist())]
    heapq.heapify(pending)
    free = [0.0] * servers
    waiting: deque[float] = deque()
    svc = services.tolist()
    times: list[float] = []
    starts: list[float] = []
    ok: list[bool] = []
    served = np.zeros(len(svc), dtype=bool)
    heappop, heappush, heapreplace = heapq.heappop, heapq.heappush, heapq.heapreplace
    while pending:
        t, i, k = heappop(pending)
        while waiting and waiting[0] <= t:
            waiting.popleft()
        earliest = free[0]
        times.append(t)
        if earliest <= t:
            heapreplace(free, t + svc[i])
            starts.append(t)
        elif len(waiting) >= queue_limit:
            ok.append(False)
            starts.append(math.nan)
            if k < max_retries:
                heappush(pending, (t + float(backoff[i, k]), i, k + 1))
            continue
        else:
            heapreplace(free, earliest + svc[i])
            waiting.append(earliest)
            starts.append(earliest)
        ok.append(True)
        served[i] = True
    return RetryResult(attempt_time=np.asarray(times), start=np.asarray(starts),
                       admitted=np.asarray(ok), served=served)


@dataclass(frozen=True, slots=True)
class RetryResult:
    """Per attempt (in time order): when it arrived, when its service started (NaN if
    rejected), whether it was admitted; per original request: whether it was finally served."""

    attempt_time: np.ndarray
    start: np.ndarray
    admitted: np.ndarray
    served: np.ndarray
