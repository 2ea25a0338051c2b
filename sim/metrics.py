"""Replication results as timeseries.csv rows (long format, the shared metric names, source=sim).

Rows are ordered by replication, bin, metric, then dimensions, so the file is byte-identical for
the same scenario and seed. Flow metrics are written for every (region, provider, path) that
carried any traffic in the replication or its baseline, for every bin (zeros included);
latency rows only where requests were served in the bin.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import numpy as np

from scenarios.rundir import ORG_STATES, PATHS
from scenarios.schema import Scenario
from sim.replication import FLOW_METRICS, LATENCY_METRICS, ReplicationResult

SOURCE = "sim"


def bin_times(s: Scenario, edges: np.ndarray) -> list[str]:
    return [(s.window.start + dt.timedelta(hours=float(h))).strftime("%Y-%m-%dT%H:%M:%SZ")
            for h in edges[:-1]]


def rows(s: Scenario, times: list[str], result: ReplicationResult) -> Iterator[tuple[Any, ...]]:
    """Every row of one replication."""
    regions = [r.code for r in s.regions]
    providers = [p.name for p in s.providers]
    active = np.argwhere(np.abs(result.flows).sum(axis=(0, 1)) > 0)   # (region, provider, path)
    lat_active = np.argwhere(~np.all(np.isnan(result.latency[..., 0]), axis=0))  # (provider, path)
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
