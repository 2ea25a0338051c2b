"""The run directory: one format for every run (simulate, sweep, loadtest), read by ``report``.

::

    runs/<UTC-stamp>-<scenario>-<kind>/
      meta.json        format, kind, scenario name + sha256, seed(s), versions, command, timings
      scenario.yaml    the resolved scenario exactly as run
      timeseries.csv   long format: time, replication, source, metric, region, provider, path, state, value
      summary.json     headline figures, each {mean, p5, p95, n, unit, label} (a load test's latency
                       percentiles also {requests}), plus waterfall and hot spots

A run is staged in a hidden sibling directory and renamed into place only when complete, so an
interrupted or failed run never leaves a half-written run directory behind.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import errno
import json
import math
import os
import platform
import shutil
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from scenarios.errors import RunDirError

FORMAT = "regionblock-run"
FORMAT_VERSION = 1
KINDS = ("simulate", "sweep", "loadtest")
SOURCES = ("sim", "loadtest")
COLUMNS = ("time", "replication", "source", "metric", "region", "provider", "path", "state", "value")

#: Metrics both engines write (DESIGN.md). ``orgs`` is split by ``state``.
SHARED_METRICS = (
    "requests", "allowed", "warned", "blocked", "failed", "retries", "tokens_in", "tokens_out",
    "revenue_usd", "latency_ms_p50", "latency_ms_p95", "latency_ms_p99", "orgs",
)
#: Further metrics a run may write: the no-block counterfactual (sim), relay mark-up paid to
#: resellers (not provider revenue), free tokens consumed, capacity use and 429s, streaming TTFT.
EXTRA_METRICS = (
    "baseline_requests", "baseline_revenue_usd", "relay_markup_usd", "free_tokens",
    "utilisation", "rejected_429", "ttft_ms_p50", "ttft_ms_p95", "ttft_ms_p99",
    # the simulator's latency decomposed: network, queueing at the provider, generation
    "network_ms_p50", "network_ms_p95", "network_ms_p99", "queue_ms_p50", "queue_ms_p95",
    "queue_ms_p99", "generation_ms_p50", "generation_ms_p95", "generation_ms_p99",
)
ORG_STATES = ("direct", "circumventing", "migrating", "migrated", "churned")
PATHS = ("direct", "relay", "failover")


# ---------------------------------------------------------------- writing


def stamp(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def run_dir_name(now: dt.datetime, scenario: str, kind: str) -> str:
    return f"{stamp(now)}-{scenario}-{kind}"


@dataclass
class Staging:
    """A run being written: files go to ``path``; after a successful exit it lives at ``final``."""

    path: Path
    final: Path | None = None


@contextlib.contextmanager
def staged_run_dir(root: Path, name: str) -> Iterator[Staging]:
    """Stage a run in a hidden directory; on success rename it to ``root/name`` (made unique).
    On any failure the staged directory is removed, with the directories made for it."""
    with made_dirs(root):
        staging = Staging(root / f".{name}.partial-{os.getpid()}")
        if staging.path.exists():
            shutil.rmtree(staging.path)
        staging.path.mkdir()
        try:
            yield staging
        except BaseException as exc:
            shutil.rmtree(staging.path, ignore_errors=True)
            name_failed_write(exc, root / name)
            raise
        staging.final = unique_path(root / name)
        staging.path.rename(staging.final)


@contextlib.contextmanager
def made_dirs(root: Path) -> Iterator[None]:
    """Make ``root`` and its missing parents; if the body fails, remove those made here again
    (innermost first; one that something else filled meanwhile stays), so a failed run leaves
    no empty ``--out`` behind."""
    made = [p for p in (root, *root.parents) if not p.exists()]
    root.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for p in made:
            with contextlib.suppress(OSError):
                p.rmdir()
        raise


#: The errors of a write the disk refused (full, over quota, read-only, past a file-size limit):
#: what a user can act on is where the run was going, not a hidden staging file.
WRITE_FAILURES = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


def name_failed_write(exc: BaseException, run: Path) -> None:
    """Make a refused write name the run it was for: ``run`` (the path the run would have had;
    its staged files are gone), instead of a hidden staging file or nothing at all (a write on an
    open file names none). The outermost run staged names it last: a sweep, not its point."""
    if isinstance(exc, OSError) and exc.errno in WRITE_FAILURES:
        exc.filename, exc.filename2 = str(run), None


def unique_path(path: Path) -> Path:
    if not path.exists():
        return path
    for i in range(2, 10_000):
        candidate = path.with_name(f"{path.name}-{i}")
        if not candidate.exists():
            return candidate
    raise RunDirError(f"{path}: too many runs with this name")


def fmt_value(value: float) -> str:
    """A number as written to timeseries.csv: integers bare, others with 10 significant digits."""
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    v = float(value)
    if math.isnan(v):
        return "nan"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.10g}"


def write_timeseries(path: Path, rows: Iterable[Sequence[Any]]) -> int:
    """Write rows in COLUMNS order (value formatted by ``fmt_value``); returns the row count."""
    n = 0
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(COLUMNS)
        for row in rows:
            w.writerow((*row[:-1], fmt_value(row[-1])))
            n += 1
    return n


#: A simulation's headline figures per replication (``simulate``; what summary.json's bands are
#: made of): the report compares two simulations replication by replication with them.
HEADLINE_FILE = "headline.csv"
HEADLINE_COLUMNS = ("replication", "figure", "value")


def write_headline(path: Path, per_replication: Iterable[tuple[int, Mapping[str, float]]]) -> None:
    """headline.csv: ``(replication, figures)`` in the order given, each replication's figures by
    name, values as timeseries.csv writes them (:func:`fmt_value`)."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(HEADLINE_COLUMNS)
        for index, figures in per_replication:
            for name in sorted(figures):
                w.writerow((index, name, fmt_value(figures[name])))


def read_headline(path: Path) -> dict[str, dict[int, float]]:
    """headline.csv as figure → {replication: value} ({} where the run has none: a load test, or
    a simulation written before the file existed); RunDirError naming the file, the line and
    what is wrong otherwise."""
    if not path.is_file():
        return {}
    lines = _read_text(path).splitlines()
    if not lines or tuple(lines[0].split(",")) != HEADLINE_COLUMNS:
        raise RunDirError(f"{path}: header must be {','.join(HEADLINE_COLUMNS)}")
    out: dict[str, dict[int, float]] = {}
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split(",")
        if len(fields) != len(HEADLINE_COLUMNS):
            raise RunDirError(f"{path}: line {number}: {len(fields)} fields, every row must have "
                              f"{len(HEADLINE_COLUMNS)}")
        rep, name, value = fields
        try:
            index = int(rep)
        except ValueError:
            raise RunDirError(f"{path}: line {number}: replication {rep!r} is not an integer") from None
        try:
            number_value = float(value)
        except ValueError:
            raise RunDirError(f"{path}: line {number}: value {value!r} is not a number") from None
        mine = out.setdefault(name, {})
        if index in mine:
            raise RunDirError(f"{path}: line {number}: {name} of replication {index} twice")
        mine[index] = number_value
    return out


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")


def band(values: Sequence[float] | np.ndarray, *, unit: str = "", label: str = "",
         requests: int | None = None) -> dict[str, Any]:
    """Mean and 5/95 % percentiles over replications (linear interpolation), rounded for output,
    and from two replications on their standard deviation (``sd``, n − 1 in the denominator:
    what a difference between two runs' means is judged by, ``reports.charts.versus``);
    ``requests``: how many requests a load test's percentile rests on (:func:`thin_percentile`)."""
    arr = np.asarray(values, dtype=float)
    out: dict[str, Any] = {
        "mean": _round(float(arr.mean())) if arr.size else 0.0,
        "p5": _round(float(np.percentile(arr, 5))) if arr.size else 0.0,
        "p95": _round(float(np.percentile(arr, 95))) if arr.size else 0.0,
        "n": int(arr.size),
    }
    sd = float(arr.std(ddof=1)) if arr.size > 1 and np.isfinite(arr).all() else math.nan
    if math.isfinite(sd):
        out["sd"] = _round(sd)
    if unit:
        out["unit"] = unit
    if label:
        out["label"] = label
    if requests is not None:
        out["requests"] = int(requests)
    return out


def thin_percentile(b: Mapping[str, Any], min_requests: int) -> str | None:
    """Why a load test's latency percentile ``b`` (a headline band with ``requests``) is not a
    figure to read, or None: it rests on fewer than the scenario's ``slos.min_requests``
    requests (the rule its SLO check judges by — the p99 of so few is about their maximum)."""
    n = b.get("requests")
    if n is None or n >= min_requests:
        return None
    return f"{n} request{'' if n == 1 else 's'}, fewer than {min_requests}: too few to read"


def _round(v: float) -> float:
    return float(f"{v:.10g}") if math.isfinite(v) else 0.0


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("regionblock", "numpy", "simpy", "aiohttp", "locust"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def meta(*, kind: str, scenario: str, sha256: str, source: str, seeds: list[int] | None,
         started: dt.datetime, finished: dt.datetime, **extra: Any) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "scenario": {"name": scenario, "sha256": sha256, "source": source},
        "seeds": seeds or [],
        "versions": versions(),
        "command": sys.argv,
        "timings": {
            "started": started.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
            "finished": finished.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
            "wall_s": round((finished - started).total_seconds(), 3),
        },
        **extra,
    }


# ---------------------------------------------------------------- run sets

#: A run set (``loadtest --repeat N``, ``simulate --sample-of`` such a set): run directories, one
#: per seed, inside one directory that names them in ``set.json``.
SET_FILE = "set.json"
SET_FORMAT = "regionblock-set"
SET_KINDS = ("loadtest-set", "paired-set")


def write_set(path: Path, *, kind: str, scenario: str, members: Sequence[Path],
              seeds: Sequence[int]) -> None:
    write_json(path / SET_FILE, {"format": SET_FORMAT, "format_version": FORMAT_VERSION,
                                 "kind": kind, "scenario": scenario,
                                 "runs": [m.name for m in members], "seeds": list(seeds)})


def set_members(path: Path) -> list[Path] | None:
    """The run directories of the run set at ``path`` (None: ``path`` is not a run set)."""
    file = path / SET_FILE
    if not file.is_file():
        return None
    data = _read_json(file)
    runs = data.get("runs")
    if data.get("format") != SET_FORMAT or data.get("kind") not in SET_KINDS or not (
            isinstance(runs, list) and runs and all(isinstance(r, str) for r in runs)):
        raise RunDirError(f"{file}: not a run set this version reads")
    members = [path / r for r in runs]
    for m in members:
        if not m.is_dir():
            raise RunDirError(f"{file}: names {m.name}, which is not in {path}")
    return members


def expand_sets(paths: Sequence[Path]) -> list[Path]:
    """Run directories with every run set replaced by its members, in order."""
    out: list[Path] = []
    for p in paths:
        members = set_members(p) if p.is_dir() else None
        out += members if members is not None else [p]
    return out


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class Run:
    """A run directory as read back: its meta, summary, and timeseries columns."""

    path: Path
    meta: dict[str, Any]
    summary: dict[str, Any]
    scenario_yaml: str

    @property
    def kind(self) -> str:
        return str(self.meta["kind"])

    @property
    def sample_of(self) -> dict[str, Any] | None:
        """A paired simulation's record of the load test it simulates (``simulate --sample-of``):
        {run, path, seed, organisations, sample, stands_for}; None for any other run."""
        of = self.meta.get("sample_of")
        return of if self.kind == "simulate" and isinstance(of, dict) else None

    def timeseries(self) -> dict[str, np.ndarray]:
        return read_timeseries(self.path / "timeseries.csv")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"{path.parent}: not a run directory (no {path.name})") from None
    except UnicodeDecodeError as exc:
        raise RunDirError(f"{path}: unreadable: {_not_text(exc)}") from None
    except (OSError, ValueError) as exc:
        raise RunDirError(f"{path}: unreadable: {exc}") from exc
    if not isinstance(data, dict):
        raise RunDirError(f"{path}: expected a JSON object")
    return data


def _read_text(path: Path) -> str:
    """A run directory's text file, or RunDirError naming it (not UTF-8, unreadable)."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RunDirError(f"{path}: unreadable: {_not_text(exc)}") from None
    except OSError as exc:
        raise RunDirError(f"{path}: unreadable: {exc.strerror or exc}") from None


def _not_text(exc: UnicodeDecodeError) -> str:
    return f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"


def read_run(path: Path) -> Run:
    """Read and check a run directory; RunDirError (one line) if it is not one this version reads.

    meta.json and summary.json are checked here, field by field, for what any reader takes from
    them (:func:`check_meta`, :func:`check_summary`), so a damaged file is one line naming the
    file and the field before any work starts, whichever command reads it."""
    if not path.is_dir():
        raise RunDirError(f"{path}: not a directory")
    m = _read_json(path / "meta.json")
    if m.get("format") != FORMAT:
        raise RunDirError(f"{path}: meta.json: not a regionblock run (format {m.get('format')!r})")
    if m.get("format_version") != FORMAT_VERSION:
        raise RunDirError(f"{path}: meta.json: format_version {m.get('format_version')!r} is not "
                          f"supported (this version reads {FORMAT_VERSION})")
    if m.get("kind") not in KINDS:
        raise RunDirError(f"{path}: meta.json: unknown kind {m.get('kind')!r}")
    check_meta(path / "meta.json", m)
    summary = _read_json(path / "summary.json")
    check_summary(path / "summary.json", summary)
    scenario = path / "scenario.yaml"
    if not scenario.is_file():
        raise RunDirError(f"{path}: not a run directory (no scenario.yaml)")
    if m["kind"] != "sweep" and not (path / "timeseries.csv").is_file():
        raise RunDirError(f"{path}: not a run directory (no timeseries.csv)")
    return Run(path=path, meta=m, summary=summary, scenario_yaml=_read_text(scenario))


# ---------------------------------------------------------------- checking meta.json and summary.json


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _is_number_or_none(x: Any) -> bool:
    """A number, or null where the run does not know it (a load test against another gateway
    has no time scale of its own)."""
    return x is None or _is_number(x)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_instant(x: Any) -> bool:
    """An ISO-8601 UTC instant as the run directory writes them (``2024-07-09T00:00:00Z``)."""
    if not isinstance(x, str):
        return False
    try:
        parse_time(x)
    except ValueError:
        return False
    return True


_KINDS_OF: dict[Any, str] = {_is_number: "a number", _is_int: "an integer",
                              _is_number_or_none: "a number or null",
                              _is_instant: "an ISO-8601 instant"}


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _want(file: Path, field: str, value: Any, ok: Any, what: str | None = None) -> None:
    """RunDirError ``file: field: value is not what`` unless ``ok`` (a type or a predicate)."""
    good = isinstance(value, ok) if isinstance(ok, type | tuple) else ok(value)
    if not good:
        kind = what or _KINDS_OF.get(ok) or {dict: "an object", list: "a list", str: "a string"}[ok]
        raise RunDirError(f"{file}: {field}: {_shown(value)} is not {kind}")


def _fields(file: Path, where: str, record: Mapping[str, Any], spec: Mapping[str, Any]) -> None:
    """Each key of ``spec`` that ``record`` has is of its kind (a type or a predicate)."""
    for key, ok in spec.items():
        if key in record:
            _want(file, f"{where}.{key}" if where else key, record[key], ok)


_BAND = {"mean": _is_number, "p5": _is_number, "p95": _is_number, "n": _is_int, "unit": str,
         "label": str, "requests": _is_int}


def _bands(file: Path, where: str, value: Any) -> None:
    _want(file, where, value, dict)
    for key, b in value.items():
        _want(file, f"{where}.{key}", b, dict)
        _fields(file, f"{where}.{key}", b, _BAND)


def _records(file: Path, where: str, value: Any, spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    _want(file, where, value, list)
    for i, item in enumerate(value):
        _want(file, f"{where}[{i}]", item, dict)
        _fields(file, f"{where}[{i}]", item, spec)
    return value


def check_meta(file: Path, m: Mapping[str, Any]) -> None:
    """RunDirError naming ``file`` and the field unless each field a reader takes from meta.json
    is of its kind (fields a run does not record are left out, as before)."""
    _fields(file, "", m, {"seeds": list, "scale": _is_number, "loadtest": dict,
                          "parameters": dict, "sample_of": dict})
    for i, seed in enumerate(m.get("seeds", ())):
        _want(file, f"seeds[{i}]", seed, _is_int)
    sc = m.get("scenario")
    if sc is not None:
        _want(file, "scenario", sc, (dict, str), "an object or a name")
        if isinstance(sc, dict):
            _fields(file, "scenario", sc, {"name": str, "sha256": str, "source": str})
    if "loadtest" in m:
        _fields(file, "loadtest", m["loadtest"], {"timing": str, "time_scale": _is_number_or_none})
    for key, values in m.get("parameters", {}).items():
        _want(file, f"parameters.{key}", values, list)
    if "sample_of" in m:
        _fields(file, "sample_of", m["sample_of"], {"run": str, "path": str, "seed": _is_int,
                                                    "organisations": _is_int,
                                                    "stands_for": _is_number})


def check_summary(file: Path, s: Mapping[str, Any]) -> None:
    """RunDirError naming ``file`` and the field unless each field a reader takes from
    summary.json is of its kind: the headline's bands (numbers), a sweep's points, the
    waterfall, the capacity hot spots, a load test's scale and timing."""
    _fields(file, "", s, {"replications": _is_int, "seed": _is_int, "scale": dict,
                          "loadtest": dict})
    if "headline" in s:
        _bands(file, "headline", s["headline"])
    if "points" in s:
        for i, point in enumerate(_records(file, "points", s["points"],
                                           {"overrides": dict, "run_dir": str})):
            if "headline" in point:
                _bands(file, f"points[{i}].headline", point["headline"])
    if "waterfall" in s:
        _records(file, "waterfall", s["waterfall"], {"value_usd": _is_number, "label": str})
    if "capacity_hotspots" in s:
        _records(file, "capacity_hotspots", s["capacity_hotspots"],
                 {"provider": str, "time": _is_instant, "utilisation": _is_number,
                  "rejected_429": _is_number})
    if "scale" in s:
        _fields(file, "scale", s["scale"], {"users": _is_int, "organisations": _is_int,
                                            "requests_scale": _is_number,
                                            "orgs_per_user": _is_number})
    if "loadtest" in s:
        _fields(file, "loadtest", s["loadtest"], {"timing": str, "time_scale": _is_number_or_none})


# ---------------------------------------------------------------- reading timeseries.csv


def parse_time(text: str) -> np.datetime64:
    """A timeseries instant (ISO-8601; UTC unless it says otherwise) as datetime64[s] UTC."""
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"time {text!r} is not an ISO-8601 instant") from None
    if t.tzinfo is not None:
        t = t.astimezone(dt.UTC).replace(tzinfo=None)
    return np.datetime64(t, "s")


def read_columns(path: Path) -> dict[str, list[str]]:
    """The CSV's columns as lists of strings (header and field counts checked).

    Every field we write is an ISO time, a number or a slug — no commas, no quotes — so one split
    of the whole text is several times faster than ``csv.reader`` on million-row simulations;
    a file with quotes (written by something else) goes through the csv module instead.
    """
    text = _read_text(path)
    header, _, body = text.partition("\n")
    if tuple(header.strip().split(",")) != COLUMNS:
        raise RunDirError(f"{path}: header must be {','.join(COLUMNS)}")
    n = len(COLUMNS)
    if '"' in body:
        try:
            rows = list(csv.reader(body.splitlines()))
        except csv.Error as exc:
            raise RunDirError(f"{path}: not a CSV file ({exc})") from None
        for i, r in enumerate(rows):
            if len(r) != n:
                raise RunDirError(f"{path}: line {i + 2}: {len(r)} fields, every row must have {n}")
        return {name: [r[i] for r in rows] for i, name in enumerate(COLUMNS)}
    fields = body.replace("\r", "").replace("\n", ",").split(",")
    if fields and fields[-1] == "":
        fields.pop()
    if len(fields) % n:
        lines = body.replace("\r", "").split("\n")
        for i, line in enumerate(lines[:-1] if lines[-1] == "" else lines):
            if line.count(",") != n - 1:
                raise RunDirError(f"{path}: line {i + 2}: {line.count(',') + 1} fields, every "
                                  f"row must have {n}")
        raise RunDirError(f"{path}: every row must have {n} fields")  # pragma: no cover
    return {name: fields[i::n] for i, name in enumerate(COLUMNS)}


def read_typed_columns(path: Path) -> dict[str, Any]:
    """The CSV's columns, every field checked: ``replication`` as int64 and ``value`` as float
    arrays, the others lists of strings (each ``time`` an ISO-8601 instant); RunDirError naming
    the file, the line and the field otherwise."""
    cols: dict[str, Any] = read_columns(path)
    cols["replication"] = _converted(path, "replication", cols["replication"], np.int64,
                                     "an integer")
    cols["value"] = _converted(path, "value", cols["value"], float, "a number")
    times = cols["time"]
    canonical: dict[str, str] = {}
    for t in set(times):
        try:
            canonical[t] = f"{np.datetime_as_string(parse_time(t), unit='s')}Z"
        except ValueError as exc:
            raise RunDirError(f"{path}: line {times.index(t) + 2}: {exc}") from None
    if any(t != c for t, c in canonical.items()):
        # `2024-07-09T08:00:00+08:00` is the instant we write `2024-07-09T00:00:00Z`: readers
        # match times as text, so every time reads in the one form the run directory writes
        cols["time"] = [canonical[t] for t in times]
    return cols


def _converted(path: Path, name: str, values: list[str], dtype: Any, what: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=dtype)
    except (ValueError, OverflowError):
        pass
    for i, v in enumerate(values):     # the first field that does not convert, for the message
        try:
            np.asarray([v], dtype=dtype)
        except (ValueError, OverflowError):
            raise RunDirError(f"{path}: line {i + 2}: {name} {_shown(v)} is not {what}") from None
    raise RunDirError(f"{path}: {name}: not {what} in every row")  # pragma: no cover


def read_timeseries(path: Path) -> dict[str, np.ndarray]:
    """The CSV as columns: strings for dimensions, int for replication, float for value (every
    field checked, :func:`read_typed_columns`)."""
    cols = read_typed_columns(path)
    return {name: values if isinstance(values, np.ndarray) else np.asarray(values, dtype=object)
            for name, values in cols.items()}
