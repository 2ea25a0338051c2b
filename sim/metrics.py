"""Replication results as timeseries.csv rows (long format, the shared metric names, source=sim).

Rows are ordered by replication, bin, metric, then dimensions, so the file is byte-identical for
the same scenario and seed. Flow metrics are written for every (region, provider, path) that
carried any traffic in the replication or its baseline, for every bin (zeros included);
latency rows only where requests were served in the bin.

:func:`rows` yields the rows one by one (the reference); :func:`block` formats the same rows as
CSV text in one go — that runs in the worker process that computed the replication, so a pool
formats its replications in parallel and the parent only concatenates (zlib-compressed) blocks.
tests/sim/test_metrics.py checks that both give the same bytes as
:func:`scenarios.rundir.write_timeseries`.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Iterator
from itertools import compress, repeat
from typing import Any

import numpy as np

from scenarios.rundir import ORG_STATES, PATHS, fmt_value
from scenarios.schema import Scenario
from sim.replication import FLOW_METRICS, LATENCY_METRICS, ReplicationResult

SOURCE = "sim"
#: Integral floats below this are written as integers by ``fmt_value`` (and exactly by int64).
_EXACT_INT = 1e15
#: Rounding rules of :func:`_fmt` besides a number of decimals.
FLOW, COUNT = -1, -2
#: Integral floats from this magnitude on are written by ``format(v, ".10g")`` in exponent form.
_FIXED = 1e10


def bin_times(s: Scenario, edges: np.ndarray) -> list[str]:
    return [(s.window.start + dt.timedelta(hours=float(h))).strftime("%Y-%m-%dT%H:%M:%SZ")
            for h in edges[:-1]]


def rows(s: Scenario, times: list[str], result: ReplicationResult) -> Iterator[tuple[Any, ...]]:
    """Every row of one replication."""
    regions = [r.code for r in s.regions]
    providers = [p.name for p in s.providers]
    active = _active(result)
    lat_active = _lat_active(result)
    orgs_active = _org_rows(result.orgs)
    rep = result.index
    for b, when in enumerate(times):
        for m, metric in enumerate(FLOW_METRICS):
            for r, k, j in active:
                yield (when, rep, SOURCE, metric, regions[r], providers[k], PATHS[j], "",
                       _value(result.flows[m, b, r, k, j]))
        for q, metric in enumerate(LATENCY_METRICS):
            for k, j in lat_active:
                v = result.latency[b, k, j, q]
                if not np.isnan(v):
                    yield (when, rep, SOURCE, metric, "", providers[k], PATHS[j], "", round(float(v), 3))
        for k, name in enumerate(providers):
            yield (when, rep, SOURCE, "utilisation", "", name, "", "",
                   round(float(result.utilisation[k, b]), 6))
            yield (when, rep, SOURCE, "rejected_429", "", name, "", "", int(result.rejected[k, b]))
        for r, st, k in orgs_active:
            yield (when, rep, SOURCE, "orgs", regions[r], providers[k - 1] if k else "",
                   "", ORG_STATES[st], int(result.orgs[b, r, st, k]))


def block(s: Scenario, times: list[str], result: ReplicationResult, *, compressed: bool = True) -> bytes:
    """The rows of :func:`rows` as CSV lines (what ``write_timeseries`` writes for them),
    zlib-compressed unless not ``compressed`` (a block written at once needs no compression).

    Each bin's rows are one fixed list of (dimensions, value) columns — the same for every bin —
    so the dimensions are formatted once and the values as (bins × columns) arrays; only latency
    cells that are NaN (nothing served) drop out.
    """
    dims, values, keep = _columns(s, result)
    rep = result.index
    heads = [f"{d}," for d in dims]
    # each line is the bin's prefix + a column's dimensions + its value: dimensions and value
    # concatenated by map, and the prefix put in by the join's separator (and before the first
    # line), at C speed instead of an f-string or a second concatenation per line
    chunks: list[str] = []
    for when, row_v, row_k in zip(times, values, keep, strict=True):
        prefix = f"{when},{rep},{SOURCE},"
        cells = list(compress(map(str.__add__, heads, row_v), row_k))
        if cells:
            chunks.append(prefix + ("\n" + prefix).join(cells))
    text = ("\n".join(chunks) + "\n" if chunks else "").encode("utf-8")
    return zlib.compress(text, 1) if compressed else text


def _columns(s: Scenario, result: ReplicationResult) -> tuple[list[str], list[list[str]], list[list[bool]]]:
    """(dimension text per column, formatted values per bin and column, which cells to write)."""
    regions = [r.code for r in s.regions]
    providers = [p.name for p in s.providers]
    nb = result.flows.shape[1]
    active = _active(result)
    lat_active = _lat_active(result)
    orgs_active = _org_rows(result.orgs)
    dims: list[str] = []
    parts: list[np.ndarray] = []
    flows = result.flows[:, :, active[:, 0], active[:, 1], active[:, 2]]     # (metric, bin, a)
    for m, metric in enumerate(FLOW_METRICS):
        dims += [f"{metric},{regions[r]},{providers[k]},{PATHS[j]}," for r, k, j in active]
        parts.append(_fmt(flows[m], FLOW))
    lat = result.latency[:, lat_active[:, 0], lat_active[:, 1], :]            # (bin, l, q)
    for q, metric in enumerate(LATENCY_METRICS):
        dims += [f"{metric},,{providers[k]},{PATHS[j]}," for k, j in lat_active]
        parts.append(_fmt(lat[:, :, q], 3))
    util = _fmt(result.utilisation.T, 6)
    rejected = _fmt(np.trunc(result.rejected.T), COUNT)
    for k, name in enumerate(providers):
        dims += [f"utilisation,,{name},,", f"rejected_429,,{name},,"]
        parts.append(np.stack([util[:, k], rejected[:, k]], axis=1))
    org_idx = np.asarray(orgs_active, dtype=np.int64).reshape(-1, 3)
    dims += [f"orgs,{regions[r]},{providers[k - 1] if k else ''},,{ORG_STATES[st]}"
             for r, st, k in orgs_active]
    parts.append(_fmt(np.trunc(result.orgs[:, org_idx[:, 0], org_idx[:, 1], org_idx[:, 2]]), COUNT))
    values = np.concatenate(parts, axis=1)
    keep = np.ones(values.shape, dtype=bool)
    start = flows.shape[0] * flows.shape[2]
    width = lat.shape[1] * lat.shape[2]
    keep[:, start:start + width] = ~np.isnan(np.moveaxis(lat, 2, 1).reshape(nb, width))
    return dims, values.tolist(), keep.tolist()


def _fmt(values: np.ndarray, rule: int) -> np.ndarray:
    """``fmt_value`` of every value, rounded as the row functions round it: ``FLOW`` (:func:`_value`),
    ``COUNT`` (already integral: ``int``) or a number of decimals (``round(v, rule)``).

    Integral values below 1e15 are written as integers by every rule: zeros (most flow cells) as
    one shared "0", the others by ``str`` of their int64. The rest (fractions, NaN, huge values)
    are rounded by ``round`` and written by ``format(…, ".10g")`` through ``map``, without a Python
    frame per value: that is ``fmt_value``'s text unless the rounded value is integral and zero
    or at least 1e10 (where ``fmt_value`` writes ``str(int(v))``, not ``.10g``) or infinite —
    those few go through ``fmt_value`` itself.
    """
    v = np.asarray(values, dtype=float)
    whole = np.isfinite(v) & (v == np.trunc(v)) & (np.abs(v) < _EXACT_INT)
    zero = v == 0
    out = np.empty(v.shape, dtype=object)
    out[zero] = "0"
    ints = whole & ~zero
    out[ints] = list(map(str, v[ints].astype(np.int64).tolist()))
    odd = np.flatnonzero(~whole.ravel())
    rest = v.ravel()[odd].tolist()
    if rule == COUNT:
        text = [fmt_value(int(x)) for x in rest]
    else:
        rounded = list(map(round, rest, repeat(6 if rule == FLOW else rule)))
        text = list(map(format, rounded, repeat(".10g")))
        r = np.array(rounded, dtype=float)
        special = np.isinf(r) | ((r == np.trunc(r)) & ((r == 0) | (np.abs(r) >= _FIXED)))
        for i in np.flatnonzero(special).tolist():
            text[i] = fmt_value(_value(rest[i]) if rule == FLOW else round(rest[i], rule))
    out.reshape(-1)[odd] = np.array(text, dtype=object)
    return out


def _active(result: ReplicationResult) -> np.ndarray:
    """(region, provider, path) that carried traffic in the replication or its baseline."""
    return np.argwhere(np.abs(result.flows).sum(axis=(0, 1)) > 0).reshape(-1, 3)


def _lat_active(result: ReplicationResult) -> np.ndarray:
    """(provider, path) with a latency in some bin."""
    return np.argwhere(~np.all(np.isnan(result.latency[..., 0]), axis=0)).reshape(-1, 2)


def _value(v: float) -> float | int:
    return int(v) if float(v).is_integer() else round(float(v), 6)


def _org_rows(orgs: np.ndarray) -> list[tuple[int, int, int]]:
    """(region, state, provider slot): every state for every region; migrating/migrated only
    for providers some organisation chose."""
    out: list[tuple[int, int, int]] = []
    for r in range(orgs.shape[1]):
        for st, name in enumerate(ORG_STATES):
            if name in ("migrating", "migrated"):
                chosen = np.flatnonzero(orgs[:, r, st, 1:].sum(axis=0) > 0) + 1
                out += [(r, st, int(k)) for k in chosen]
            else:
                out.append((r, st, 0))
    return out
