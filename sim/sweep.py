"""``sweep``: simulate every point of a parameter grid; one run directory per point plus a table.

A grid is ``--set PATH=V1,V2,...`` per parameter; the points are the cartesian product, in the
order the parameters were given (the last varies fastest). Values are split on commas at the top
level only, so a YAML list or mapping (``[CN, HK]``, ``{a: 1}``) or a quoted string stays one value.
Every point runs with the same seed, so points differ by their parameters, not by their luck
(common random numbers across the grid). The (point, replication) tasks run in a process pool,
or on a Dask cluster (``--dask ADDRESS``).
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from scenarios.loader import Loaded, load, resolved_yaml
from scenarios.rundir import (
    FORMAT,
    FORMAT_VERSION,
    fmt_value,
    meta,
    run_dir_name,
    staged_run_dir,
    write_json,
)
from sim.errors import ClusterUnavailableError, SweepSpecError
from sim.replication import ReplicationResult, Setup
from sim.run import Replicated, _one, pool_map, seeds_for, write_run

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Parameter:
    path: str
    values: tuple[str, ...]   # raw text of each value, as given


@dataclass(frozen=True, slots=True)
class Point:
    index: int
    overrides: tuple[tuple[str, str], ...]   # (path, raw value)

    @property
    def name(self) -> str:
        return f"point-{self.index:03d}"

    def as_set(self) -> tuple[str, ...]:
        return tuple(f"{p}={v}" for p, v in self.overrides)


def split_top_level(text: str) -> list[str]:
    """``a,[b,c],{d: 1},'e,f'`` → ``['a', '[b,c]', '{d: 1}', "'e,f'"]``."""
    parts: list[str] = []
    depth = 0
    quote = ""
    current = ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
            if depth < 0:
                raise SweepSpecError(f"--set {text}: unbalanced {ch!r}")
        elif ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        current += ch
    if depth or quote:
        raise SweepSpecError(f"--set {text}: unclosed {'quote' if quote else 'bracket'}")
    parts.append(current.strip())
    return parts


def parse_grid(items: list[str]) -> list[Parameter]:
    if not items:
        raise SweepSpecError("--set: a sweep needs at least one --set PATH=V1,V2,...")
    params: list[Parameter] = []
    for item in items:
        if "=" not in item:
            raise SweepSpecError(f"--set {item}: expected PATH=V1,V2,...")
        path, raw = item.split("=", 1)
        path = path.strip()
        values = split_top_level(raw)
        if any(v == "" for v in values):
            raise SweepSpecError(f"--set {item}: empty value in the list")
        if path in {p.path for p in params}:
            raise SweepSpecError(f"--set {item}: {path} is given twice")
        params.append(Parameter(path, tuple(values)))
    return params


def points(params: list[Parameter]) -> list[Point]:
    combos = itertools.product(*(p.values for p in params))
    return [Point(i, tuple(zip((p.path for p in params), combo, strict=True)))
            for i, combo in enumerate(combos)]


def load_points(scenario: str, base: tuple[str, ...], grid: list[Point]) -> list[Loaded]:
    """Every point's scenario, validated before anything runs (a bad value fails fast, exit 2)."""
    return [load(scenario, (*base, *pt.as_set())) for pt in grid]


# ---------------------------------------------------------------- running


Task = tuple[int, int]  # (point, replication)


def run_tasks(setups: list[Setup], seqs: list[np.random.SeedSequence], *, jobs: int,
              dask: str | None, progress: Progress | None) -> dict[Task, tuple[ReplicationResult, float]]:
    tasks = [(p, r) for p in range(len(setups)) for r in range(len(seqs))]
    runner = _dask_tasks if dask else _pool_tasks
    done: dict[Task, tuple[ReplicationResult, float]] = {}
    for task, item in runner(setups, seqs, tasks, jobs, dask or ""):
        done[task] = item
        if progress is not None:
            progress(len(done), len(tasks))
    return done


def _pool_tasks(setups: list[Setup], seqs: list[np.random.SeedSequence], tasks: list[Task], jobs: int,
                address: str) -> Iterator[tuple[Task, tuple[ReplicationResult, float]]]:
    if jobs <= 1:
        for p, r in tasks:
            yield (p, r), _one(setups[p], r, seqs[r])
        return
    calls = [(p, r, seqs[r]) for p, r in tasks]
    for i, item in pool_map(_one, calls, jobs, shared=setups):
        yield tasks[i], item


def _dask_tasks(setups: list[Setup], seqs: list[np.random.SeedSequence], tasks: list[Task], jobs: int,
                address: str) -> Iterator[tuple[Task, tuple[ReplicationResult, float]]]:
    client = connect(address)
    try:
        scattered = client.scatter(setups, broadcast=True)
        futures = {client.submit(_one, scattered[p], r, seqs[r], pure=False): (p, r) for p, r in tasks}
        from distributed import as_completed as dask_completed

        for fut in dask_completed(list(futures)):
            yield futures[fut], fut.result()
    finally:
        client.close()


def connect(address: str) -> Any:
    try:
        from distributed import Client
    except ImportError as exc:
        raise ClusterUnavailableError(
            "--dask: dask.distributed is not installed (install the 'cluster' extra: "
            "pip install 'regionblock[cluster]')") from exc
    try:
        return Client(address, timeout="3s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterUnavailableError(f"--dask {address}: cannot reach the scheduler ({exc})") from exc


def check(scenario: str, grid_items: list[str], *, dask: str | None) -> None:
    """Fail fast on a bad grid, a bad value at any point, or an unreachable cluster."""
    load_points(scenario, (), points(parse_grid(grid_items)))
    if dask:
        connect(dask).close()


# ---------------------------------------------------------------- writing


def sweep(scenario: str, base_overrides: tuple[str, ...], grid_items: list[str], *, replications: int,
          seed: int, jobs: int, out: Path, scale: float = 1.0, dask: str | None = None,
          progress: Progress | None = None) -> Path:
    """Run the sweep and write its directory; returns the sweep directory's path."""
    started = dt.datetime.now(dt.UTC)
    params = parse_grid(grid_items)
    grid = points(params)
    loadeds = load_points(scenario, base_overrides, grid)
    base = load(scenario, base_overrides)
    setups = [Setup.of(ld.scenario, seed, scale) for ld in loadeds]
    seqs = seeds_for(seed, replications)
    done = run_tasks(setups, seqs, jobs=jobs, dask=dask, progress=progress)
    with staged_run_dir(out, run_dir_name(started, base.scenario.name, "sweep")) as staging:
        rows = []
        for pt, ld, setup in zip(grid, loadeds, setups, strict=True):
            items = [done[(pt.index, r)] for r in range(replications)]
            rep = Replicated(setup=setup, results=[x for x, _ in items], seconds=[t for _, t in items])
            path = write_run(ld, rep, seed=seed, out=staging.path, jobs=jobs, scale=scale,
                             started=started, name=pt.name,
                             extra_meta={"sweep_point": {p: v for p, v in pt.overrides}})
            headline = _read_headline(path)
            rows.append({"index": pt.index, "overrides": {p: _yaml_value(v) for p, v in pt.overrides},
                         "run_dir": path.name, "headline": headline})
        (staging.path / "scenario.yaml").write_text(resolved_yaml(base.scenario), encoding="utf-8")
        write_json(staging.path / "summary.json", {
            "format": FORMAT, "format_version": FORMAT_VERSION, "kind": "sweep",
            "scenario": base.scenario.name, "replications": replications, "seed": seed,
            "parameters": {p.path: [_yaml_value(v) for v in p.values] for p in params},
            "points": rows})
        write_table(staging.path / "sweep.csv", params, grid, rows)
        write_json(staging.path / "meta.json", meta(
            kind="sweep", scenario=base.scenario.name, sha256=base.sha256, source=base.source,
            seeds=[seed], started=started, finished=dt.datetime.now(dt.UTC),
            parameters={p.path: [_yaml_value(v) for v in p.values] for p in params},
            replications=replications, jobs=jobs, dask=dask or None, scale=scale,
            points=len(grid)))
    assert staging.final is not None
    return staging.final


def _read_headline(run_dir: Path) -> dict[str, Any]:
    import json

    data = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    return dict(data["headline"])


def _yaml_value(raw: str) -> Any:
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def write_table(path: Path, params: list[Parameter], grid: list[Point], rows: list[dict[str, Any]]) -> None:
    """sweep.csv: index, one column per parameter, then mean/p5/p95 of every headline figure."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row["headline"] if k not in keys]
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["index", *(p.path for p in params),
                    *(f"{k}_{stat}" for k in keys for stat in ("mean", "p5", "p95"))])
        for pt, row in zip(grid, rows, strict=True):
            cells = []
            for k in keys:
                band = row["headline"].get(k)
                cells += [fmt_value(band[stat]) if band else "" for stat in ("mean", "p5", "p95")]
            w.writerow([pt.index, *(v for _, v in pt.overrides), *cells])
