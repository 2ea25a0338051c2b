"""What becomes of the requests in each cell: policy denials, provider failures, retries, revenue.

Per cell (bin, region, segment, model, fate):

1. **Policy.** A denied share ``p_deny`` of attempts gets the fate's status. Attempts with a
   status in the segment's ``retry.statuses`` are retried up to ``max_retries`` times (the openai
   SDK does not retry 403, so a plain block is not amplified; a throttle's 429 is). A retry meets
   the same policy (it arrives seconds later, inside the same piece).
2. **Provider.** Requests that pass reach the provider and fail with the provider's 429 share for
   that bin and region (:mod:`sim.capacity`) or its injected faults; failures with a retryable
   status (and connection resets) are retried too.
3. **Money.** Served requests keep their share of the cell's tokens; the served model is the
   provider's substitute for the organisation's incumbent model; revenue is the ledger contract's
   :func:`scenarios.ledger.revenue_usd` (list prices, net of free tokens), as in the gateway. Relayed
   traffic also pays the relay its mark-up (``relay_markup_usd``, not provider revenue).

``requests`` counts attempts (retries included), so requests = allowed + warned + blocked + failed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scenarios.ledger import revenue_usd
from scenarios.schema import Scenario
from sim.capacity import Capacity
from sim.pieces import DENY, WARN, Fate
from sim.traffic import Cells


@dataclass(frozen=True, slots=True)
class Outcome:
    """Per cell: attempts by result, retries, served tokens, money."""

    requests: np.ndarray
    allowed: np.ndarray
    warned: np.ndarray
    blocked: np.ndarray
    failed: np.ndarray
    retries: np.ndarray
    first_denied: np.ndarray   # originals denied or failed at their first attempt
    rejected_429: np.ndarray
    tokens_in: np.ndarray
    tokens_out: np.ndarray
    free_tokens: np.ndarray
    revenue_usd: np.ndarray
    markup_usd: np.ndarray
    served: np.ndarray         # originals finally served
    passed: np.ndarray         # originals that reached the provider


def resolve(n: np.ndarray, p: np.ndarray, retry: np.ndarray, rounds: np.ndarray,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Attempts of ``n`` originals, each failing with probability ``p``; failures retried with
    probability ``retry`` (per failure) up to ``rounds`` times.

    Returns (succeeded originals, failed attempts, retries, failed at first attempt).
    """
    attempts = n.copy()
    ok = np.zeros_like(n)
    failed = np.zeros_like(n)
    retries = np.zeros_like(n)
    first = np.zeros_like(n)
    certain = p >= 1.0
    for k in range(int(rounds.max(initial=0)) + 1):
        fail = np.where(certain, attempts, rng.binomial(attempts, np.clip(p, 0.0, 1.0)))
        if k == 0:
            first = fail.copy()
        ok += attempts - fail
        failed += fail
        again = np.where(retry >= 1.0, fail, rng.binomial(fail, np.clip(retry, 0.0, 1.0)))
        attempts = np.where(rounds > k, again, 0)
        retries += attempts
    return ok, failed, retries, first


def prices(s: Scenario) -> tuple[np.ndarray, np.ndarray]:
    """(providers, incumbent models) USD per 1M tokens of the model each provider serves instead."""
    names = [m.name for m in s.incumbent.models]
    pin = np.array([[p.substitute_for(n).price_in for n in names] for p in s.providers])
    pout = np.array([[p.substitute_for(n).price_out for n in names] for p in s.providers])
    return pin, pout


@dataclass(frozen=True, slots=True)
class FateArrays:
    provider: np.ndarray
    path: np.ndarray
    deny: np.ndarray
    p_deny: np.ndarray
    status: np.ndarray
    warn_pass: np.ndarray


def fate_arrays(s: Scenario, fates: tuple[Fate, ...], paths: tuple[str, ...]) -> FateArrays:
    names = [p.name for p in s.providers]
    return FateArrays(
        provider=np.array([names.index(f.provider) if f.provider else -1 for f in fates], dtype=np.int64),
        path=np.array([paths.index(f.path) if f.path else -1 for f in fates], dtype=np.int64),
        deny=np.array([f.action == DENY for f in fates]),
        p_deny=np.array([f.p_deny if f.action == DENY else 0.0 for f in fates]),
        status=np.array([f.status for f in fates], dtype=np.int64),
        warn_pass=np.array([(f.pass_action if f.action == DENY else f.action) == WARN for f in fates]),
    )


def policy_stage(s: Scenario, cells: Cells, fa: FateArrays,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(passed originals, denied attempts, retries, denied at first attempt) per cell."""
    status = fa.status[cells.fate]
    retryable = np.zeros(cells.n.size)
    rounds = np.zeros(cells.n.size, dtype=np.int64)
    for gi, seg in enumerate(s.segments):
        mine = cells.segment == gi
        retryable[mine] = np.isin(status[mine], seg.retry.statuses)
        rounds[mine] = seg.retry.max_retries
    return resolve(cells.n, fa.p_deny[cells.fate], retryable, rounds, rng)


def provider_stage(s: Scenario, cells: Cells, fa: FateArrays, passed: np.ndarray, cap: Capacity,
                   rng: np.random.Generator,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(served, failed attempts, retries, failed at first attempt, 429 attempts) per cell.

    Each retry round draws with that round's own laws (:func:`sim.capacity.attempt_laws`): the
    hour's 429 share applies to first attempts and retries alike, and an original whose first
    attempt met a busy hour is likelier to meet it again.
    """
    k = fa.provider[cells.fate]
    at = (k, cells.bin, cells.region, cells.segment)
    fail, retry, share = cap.fail[at], cap.retry[at], cap.share429[at]   # (cells, rounds)
    rounds = np.zeros(cells.n.size, dtype=np.int64)
    for gi, seg in enumerate(s.segments):
        rounds[cells.segment == gi] = seg.retry.max_retries
    attempts = passed.copy()
    served = np.zeros_like(passed)
    failed = np.zeros_like(passed)
    retries = np.zeros_like(passed)
    rejected = np.zeros_like(passed)
    first = np.zeros_like(passed)
    for j in range(fail.shape[1]):
        f = rng.binomial(attempts, np.clip(fail[:, j], 0.0, 1.0))
        if j == 0:
            first = f.copy()
        served += attempts - f
        failed += f
        rejected += rng.binomial(f, np.clip(share[:, j], 0.0, 1.0))
        again = rng.binomial(f, np.clip(retry[:, j], 0.0, 1.0))
        attempts = np.where(rounds > j, again, 0)
        retries += attempts
    return served, failed, retries, first, rejected


def money(s: Scenario, cells: Cells, fa: FateArrays, served: np.ndarray, paths: tuple[str, ...]
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(tokens in, tokens out, free tokens, revenue, relay mark-up) of the served requests."""
    share_num, share_den = served, np.maximum(cells.n, 1)
    tin = cells.tokens_in * share_num // share_den
    tout = cells.tokens_out * share_num // share_den
    fin = cells.free_in * share_num // share_den
    fout = cells.free_out * share_num // share_den
    pin, pout = prices(s)
    k = fa.provider[cells.fate]
    revenue = revenue_usd(pin[k, cells.model], pout[k, cells.model], tin, tout, fin, fout)
    relay = fa.path[cells.fate] == paths.index("relay")
    markup = np.where(relay, revenue * s.behaviour.relay.markup, 0.0)
    return tin, tout, fin + fout, revenue, markup


def outcome(s: Scenario, cells: Cells, fa: FateArrays, cap_fn: object, paths: tuple[str, ...],
            rng: np.random.Generator) -> tuple[Outcome, Capacity]:
    """Both stages and the money, with capacity assessed on the requests that pass the policy."""
    passed, denied, retries_pol, first_pol = policy_stage(s, cells, fa, rng)
    cap: Capacity = cap_fn(passed)  # type: ignore[operator]
    served, failed, retries_prov, first_prov, rejected = provider_stage(s, cells, fa, passed, cap, rng)
    tin, tout, free, revenue, markup = money(s, cells, fa, served, paths)
    warn = fa.warn_pass[cells.fate]
    out = Outcome(
        requests=cells.n + retries_pol + retries_prov,
        allowed=np.where(warn, 0, served), warned=np.where(warn, served, 0),
        blocked=denied, failed=failed, retries=retries_pol + retries_prov,
        first_denied=first_pol + first_prov, rejected_429=rejected,
        tokens_in=tin, tokens_out=tout, free_tokens=free, revenue_usd=revenue, markup_usd=markup,
        served=served, passed=passed)
    return out, cap
