"""Run directories as the report sees them, and timeseries aggregation.

A run's ``timeseries.csv`` is read once into a :class:`Table` of factorised columns (an integer
code per row for each dimension plus the list of labels), so every chart's query is a mask and a
``numpy.bincount``: sum over the dimensions a chart does not show, per replication and time bin,
then mean and 5/95 % percentiles across replications (:class:`Cube`, :func:`bands`).

Counts and money are summed (a missing row is a zero); percentiles and utilisation are averaged
over the dimensions a chart does not show (a missing row is no data).
"""

from __future__ import annotations

import csv
import datetime as dt
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from reports.errors import ReportInputError
from scenarios.errors import RunDirError
from scenarios.loader import load_text
from scenarios.policy import denied_regions, first_denial
from scenarios.rundir import (
    HEADLINE_FILE,
    Run,
    parse_time,
    read_headline,
    read_run,
    read_typed_columns,
)
from scenarios.schema import Scenario

DIMENSIONS = ("source", "metric", "region", "provider", "path", "state")
#: Metrics that are levels, not flows: combined by averaging, never by summing.
MEAN_METRICS = frozenset({"latency_ms_p50", "latency_ms_p95", "latency_ms_p99", "utilisation",
                          "ttft_ms_p50", "ttft_ms_p95", "ttft_ms_p99"})
#: ``orgs`` is a stock: summed over dimensions within a bin, never over time.
STOCK_METRICS = frozenset({"orgs"})


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class Table:
    """A timeseries as factorised columns."""

    times: np.ndarray                    # datetime64[s], sorted unique bin starts
    time_idx: np.ndarray                 # per row: index into ``times``
    reps: np.ndarray                     # sorted unique replication numbers
    rep_idx: np.ndarray                  # per row: index into ``reps``
    codes: dict[str, np.ndarray]         # per dimension: per-row code
    labels: dict[str, tuple[str, ...]]   # per dimension: code → label
    value: np.ndarray                    # float per row

    @property
    def datetimes(self) -> list[dt.datetime]:
        return [t.astype("datetime64[s]").item().replace(tzinfo=dt.UTC) for t in self.times]

    def has(self, metric: str) -> bool:
        return metric in self.labels["metric"] and bool(np.any(self.mask(metric)))

    def values_of(self, dim: str, metric: str | None = None) -> list[str]:
        """Labels of ``dim`` that occur (for ``metric`` if given), in first-seen order."""
        codes = self.codes[dim] if metric is None else self.codes[dim][self.mask(metric)]
        return [self.labels[dim][c] for c in sorted(set(np.unique(codes).tolist()))]

    def mask(self, metric: str, where: Mapping[str, str | Sequence[str]] | None = None) -> np.ndarray:
        out = self.codes["metric"] == self._code("metric", metric)
        for dim, want in (where or {}).items():
            wanted = [want] if isinstance(want, str) else list(want)
            out &= np.isin(self.codes[dim], [self._code(dim, w) for w in wanted])
        return out

    def _code(self, dim: str, label: str) -> int:
        try:
            return self.labels[dim].index(label)
        except ValueError:
            return -1


def read_table(path: Path) -> Table:
    """Read ``timeseries.csv`` quickly (every field checked, ``scenarios.rundir``)."""
    return _table_from_columns(path, read_typed_columns(path))


def _table_from_columns(path: Path, cols: Mapping[str, Any]) -> Table:
    value = np.asarray(cols["value"], dtype=float)
    reps, rep_idx = np.unique(np.asarray(cols["replication"], dtype=np.int64), return_inverse=True)
    time_codes, time_labels = _factorise(cols["time"])
    try:
        times = np.asarray([parse_time(t) for t in time_labels], dtype="datetime64[s]")
    except ValueError as exc:   # read_typed_columns has checked them: a table built otherwise
        raise ReportInputError(f"{path}: {exc}") from exc
    codes, labels = {}, {}
    for dim in DIMENSIONS:
        codes[dim], labels[dim] = _factorise(cols[dim])
    t_order = np.argsort(times, kind="stable")
    return Table(times=times[t_order], time_idx=_recode(time_codes, t_order),
                 reps=reps, rep_idx=rep_idx.reshape(-1).astype(np.int64),
                 codes=codes, labels=labels, value=value)


def _factorise(values: Sequence[Any] | np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    seen: dict[str, int] = {}
    codes = np.fromiter((seen.setdefault(str(v), len(seen)) for v in values), dtype=np.int32,
                        count=len(values))
    return codes, tuple(seen)


def _recode(codes: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Codes into an unsorted label list → codes into the list sorted by ``order``."""
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return rank[codes] if codes.size else codes


# ---------------------------------------------------------------- aggregation


@dataclass(frozen=True)
class Cube:
    """One metric by (replication, time bin, key), keys being label tuples of the ``by`` dims."""

    times: np.ndarray
    keys: list[tuple[str, ...]]
    data: np.ndarray  # shape (replications, times, keys); NaN where a mean metric has no rows

    def key_index(self, key: tuple[str, ...]) -> int:
        return self.keys.index(key)

    def total(self) -> np.ndarray:
        """Summed over keys: (replications, times)."""
        return np.nansum(self.data, axis=2)

    def series(self, key: tuple[str, ...]) -> np.ndarray:
        return self.data[:, :, self.key_index(key)]


def cube(table: Table, metric: str, by: Sequence[str] = (),
         where: Mapping[str, str | Sequence[str]] | None = None) -> Cube | None:
    """``metric`` per replication, time bin and ``by`` key; None when there are no such rows."""
    m = table.mask(metric, where)
    if not np.any(m):
        return None
    key_codes, keys = _combine([table.codes[d][m] for d in by], [table.labels[d] for d in by],
                               int(np.count_nonzero(m)))
    n_r, n_t, n_k = table.reps.size, table.times.size, len(keys)
    flat = (table.rep_idx[m] * n_t + table.time_idx[m]) * n_k + key_codes
    size = n_r * n_t * n_k
    total = np.bincount(flat, weights=table.value[m], minlength=size)
    if metric in MEAN_METRICS:
        count = np.bincount(flat, minlength=size)
        with np.errstate(invalid="ignore", divide="ignore"):
            total = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return Cube(times=table.times, keys=keys, data=total.reshape(n_r, n_t, n_k))


def _combine(columns: list[np.ndarray], labels: list[tuple[str, ...]], rows: int
             ) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """Rows' codes in several dimensions → one code per distinct combination that occurs."""
    if not columns:
        return np.zeros(rows, dtype=np.int64), [()]
    stacked = np.stack(columns, axis=1)
    uniq, inverse = np.unique(stacked, axis=0, return_inverse=True)
    keys = [tuple(labels[d][int(c)] for d, c in enumerate(row)) for row in uniq]
    return inverse.reshape(-1).astype(np.int64), keys


@dataclass(frozen=True)
class Bands:
    """Mean and 5/95 % percentiles across replications (linear interpolation, as summary.json)."""

    mean: np.ndarray
    p5: np.ndarray
    p95: np.ndarray


def bands(per_rep: np.ndarray) -> Bands:
    """Across axis 0 (replications), ignoring NaN; all-NaN positions stay NaN."""
    arr = np.asarray(per_rep, dtype=float)
    with warnings.catch_warnings():
        # why: a bin without data in any replication is expected (NaN), not a problem to report
        warnings.simplefilter("ignore", RuntimeWarning)
        return Bands(mean=np.nanmean(arr, axis=0), p5=np.nanpercentile(arr, 5, axis=0),
                     p95=np.nanpercentile(arr, 95, axis=0))


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den elementwise, NaN where den is 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


# ---------------------------------------------------------------- runs


@dataclass(frozen=True)
class RunData:
    """A run directory with its scenario and (except for sweeps) its timeseries."""

    key: str            # short unique name used in file names and headings: sim, loadtest-2...
    run: Run
    scenario: Scenario
    table: Table | None = field(default=None, repr=False)
    #: a simulation's headline figures per replication (headline.csv): figure → {replication: value}
    per_replication: dict[str, dict[int, float]] = field(default_factory=dict, repr=False)

    @property
    def kind(self) -> str:
        return self.run.kind

    @property
    def name(self) -> str:
        return self.run.path.name

    @property
    def headline(self) -> dict[str, dict[str, Any]]:
        h = self.run.summary.get("headline", {})
        return h if isinstance(h, dict) else {}

    @property
    def source(self) -> str:
        return "loadtest" if self.kind == "loadtest" else "sim"


KIND_KEYS = {"simulate": "sim", "loadtest": "loadtest", "sweep": "sweep"}
#: A load test's time to first token per provider, region and path (written by the load test).
LOCUST_TTFT = "locust_ttft.csv"


def load_runs(paths: Sequence[Path], loaded: Mapping[Path, RunData] | None = None) -> list[RunData]:
    """Read every run directory (RunDirError on the first bad one), keys unique by kind;
    ``loaded``: runs read already (:func:`load_run`), by path, not read again."""
    if not paths:
        raise ReportInputError("report: give at least one run directory")
    return with_keys([(loaded or {}).get(p) or load_run(p) for p in paths])


def load_run(path: Path) -> RunData:
    """One run directory, read and checked: every file the report reads (meta.json,
    summary.json, scenario.yaml, timeseries.csv, a load test's ledger.sqlite and
    locust_ttft.csv), so a damaged one is one line before any work (its key is set by
    :func:`with_keys`)."""
    from scenarios.figures import check_ledger

    run = read_run(path)
    scenario = load_text(run.scenario_yaml, file=str(path / "scenario.yaml")).scenario
    table = None if run.kind == "sweep" else read_table(path / "timeseries.csv")
    if run.kind == "loadtest":
        check_ledger(run)
        check_locust_ttft(path / LOCUST_TTFT)
    per_replication = read_headline(path / HEADLINE_FILE) if run.kind == "simulate" else {}
    return RunData(key="", run=run, scenario=scenario, table=table, per_replication=per_replication)


def with_keys(runs: Sequence[RunData]) -> list[RunData]:
    """The runs with their short unique names: sim, loadtest, paired, sweep, then -2, -3..."""
    out: list[RunData] = []
    seen: dict[str, int] = {}
    for r in runs:
        base = "paired" if is_paired_sim(r.run) else KIND_KEYS[r.kind]
        seen[base] = seen.get(base, 0) + 1
        out.append(replace(r, key=base if seen[base] == 1 else f"{base}-{seen[base]}"))
    return out


def check_locust_ttft(path: Path) -> None:
    """RunDirError naming the file and line unless ``path`` (if there) is a CSV whose TTFT rows
    count their requests in numbers (the other figures of a row are shown as n/a when bad)."""
    if not path.is_file():
        return
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            for row in reader:
                count = row.get("Count") if row.get("Type") == "TTFT" else None
                if count:
                    try:
                        float(count)
                    except ValueError:
                        raise RunDirError(f"{path}: line {reader.line_num}: Count {count!r} is "
                                          "not a number") from None
    except UnicodeDecodeError as exc:
        raise RunDirError(f"{path}: unreadable: not UTF-8 text ({exc.reason})") from None
    except csv.Error as exc:
        raise RunDirError(f"{path}: not a CSV file ({exc})") from None
    except OSError as exc:
        raise RunDirError(f"{path}: unreadable: {exc.strerror or exc}") from None


def is_paired_sim(run: Run) -> bool:
    """A paired simulation (``simulate --sample-of``): a load test's own organisations."""
    return run.sample_of is not None


def block_start(s: Scenario) -> dt.datetime | None:
    """The first start of a stage that blocks or throttles, on the incumbent's policy."""
    return first_denial(s)


def blocked_regions(s: Scenario) -> list[str]:
    """The scenario's regions any blocking stage of the incumbent applies to, in scenario order."""
    return list(denied_regions(s))


def as_datetime64(when: dt.datetime) -> np.datetime64:
    return np.datetime64(when.astimezone(dt.UTC).replace(tzinfo=None), "s")
