"""``simulate``: replications in a process pool, written as one run directory.

Replication i uses ``SeedSequence(seed).spawn(n)[i]``, so the results do not depend on ``jobs``
(the pool only changes which process computes which replication; results are written in
replication order). Everything in timeseries.csv and summary.json is a function of the scenario,
the seed, the replication count and the scale; wall-clock timings go to meta.json only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import datetime as dt
import multiprocessing
import os
import signal
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from scenarios.errors import RunDirError
from scenarios.loader import Loaded, resolved_yaml
from scenarios.market import MarketContext
from scenarios.rundir import (
    COLUMNS,
    HEADLINE_FILE,
    made_dirs,
    meta,
    name_failed_write,
    read_run,
    run_dir_name,
    staged_run_dir,
    write_headline,
    write_json,
)
from scenarios.sample import MARKET_FILE, SAMPLE_FILE, Sample
from scenarios.schema import Scenario
from sim.metrics import bin_times, block
from sim.replication import ReplicationResult, Setup, gc_paused, run_replication
from sim.summary import summary

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Replicated:
    """All replications of one scenario, in order, with what was measured about the run."""

    setup: Setup
    results: list[ReplicationResult]
    seconds: list[float]


def seeds_for(seed: int, replications: int) -> list[np.random.SeedSequence]:
    return np.random.SeedSequence(seed).spawn(replications)


def _one(setup: Setup, index: int, seq: np.random.SeedSequence,
         streamed: bool = False) -> tuple[ReplicationResult, float]:
    """One replication with its timeseries.csv rows already formatted (in the worker, in parallel):
    zlib-compressed to be kept with the result, or (``streamed``) as they are, for the parent to
    write at once (compressing and decompressing them would cost both more than the pipe)."""
    t0 = time.perf_counter()
    with gc_paused():   # formatting the rows allocates a lot too (see gc_paused)
        result = run_replication(setup, index, seq)
        rows = block(setup.s, bin_times(setup.s, setup.edges), result, compressed=not streamed)
    return dataclasses.replace(result, timeseries=rows), time.perf_counter() - t0


def replicate(s: Scenario, *, replications: int, seed: int, jobs: int = 1, scale: float = 1.0,
              progress: Progress | None = None, paired: Paired | None = None,
              blocks: BinaryIO | None = None) -> Replicated:
    """Run ``replications`` replications (each with its baseline) on ``jobs`` processes;
    ``paired``: of a load test's sample (its organisations, in the full market's context).

    ``blocks``: a file that each replication's timeseries.csv block is written to, in replication
    order, as soon as it and every earlier one are in — while the pool computes the later ones,
    instead of all of them after the last (the results then keep no block)."""
    setup = (Setup.of(s, seed, scale) if paired is None
             else Setup.of_sample(s, paired.sample, paired.market))
    seqs = seeds_for(seed, replications)
    done: dict[int, tuple[ReplicationResult, float]] = {}
    written = 0
    for i, item in _run_all(setup, seqs, jobs, streamed=blocks is not None):
        done[i] = item
        while blocks is not None and written in done:
            result, seconds = done[written]
            blocks.write(result.timeseries)
            done[written] = (dataclasses.replace(result, timeseries=b""), seconds)
            written += 1
        if progress is not None:
            progress(len(done), replications)
    ordered = [done[i] for i in range(replications)]
    return Replicated(setup=setup, results=[r for r, _ in ordered], seconds=[t for _, t in ordered])


def _run_all(setup: Setup, seqs: list[np.random.SeedSequence], jobs: int,
             streamed: bool) -> Iterator[tuple[int, tuple[ReplicationResult, float]]]:
    if jobs <= 1 or len(seqs) <= 1:
        for i, seq in enumerate(seqs):
            yield i, _one(setup, i, seq, streamed)
        return
    yield from pool_map(_one, [(0, i, seq, streamed) for i, seq in enumerate(seqs)], jobs,
                        shared=[setup])


#: what a pool worker was handed once, at its start (:func:`pool_map`'s ``shared``)
_SHARED: list[Any] = []


def _indexed(item: tuple[int, Callable[..., Any], tuple[Any, ...]]) -> tuple[int, Any]:
    index, fn, (k, *args) = item
    return index, fn(_SHARED[k], *args)


def _worker_init(shared: list[Any]) -> None:
    """Pool workers leave Ctrl-C to the parent (which terminates them), keep freed memory, and
    keep what every call shares."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    keep_freed_memory()
    _SHARED[:] = shared


def pool_map(fn: Callable[..., Any], calls: list[tuple[Any, ...]], jobs: int,
             shared: list[Any]) -> Iterator[tuple[int, Any]]:
    """``fn(shared[k], *rest)`` for each call ``(k, *rest)`` of ``calls`` on ``jobs`` spawned
    processes, yielding ``(i, result)`` as each finishes. ``shared`` (the setups) is sent to each
    worker once, when it starts, instead of with every call (a setup pickles to a few MB).

    On any exception in the parent — Ctrl-C included — the workers are terminated at once rather
    than left to finish their replications (a clean stop within a second, not after minutes).
    """
    context = multiprocessing.get_context("spawn")
    pool = context.Pool(processes=min(jobs, len(calls)), initializer=_worker_init, initargs=(shared,))
    try:
        results = pool.imap_unordered(_indexed, [(i, fn, c) for i, c in enumerate(calls)])
        for _ in calls:
            while True:
                try:
                    item = results.next(timeout=0.2)  # a short wait keeps Ctrl-C prompt
                    break
                except multiprocessing.TimeoutError:
                    continue
            yield item
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


#: glibc ``mallopt`` parameters (malloc.h) and the values a replication worker sets.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_WORKER_MALLOC = ((_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 1 << 30), (_M_TOP_PAD, 64 << 20))


def keep_freed_memory() -> None:
    """Pool-worker initializer: let glibc keep the memory a replication frees for the next one.

    A replication allocates and frees a few hundred MB of large NumPy arrays. By default glibc
    maps each large array separately and returns it on free, so every replication faults in (and
    the kernel zeroes) tens of thousands of fresh pages — with two workers side by side that
    system time competes with the work itself. Large blocks up to 32 MB from the heap, no
    trimming: each replication reuses the previous one's pages. Results are unaffected; on
    other C libraries this does nothing.
    """
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return
    for param, value in _WORKER_MALLOC:
        mallopt(param, value)


def write_run(loaded: Loaded, rep: Replicated, *, seed: int, out: Path, jobs: int, scale: float,
              started: dt.datetime, kind: str = "simulate", name: str | None = None,
              extra_meta: dict[str, Any] | None = None, timeseries: Path | None = None) -> Path:
    """Write the run directory (staged, renamed into place when complete); return its path.
    ``timeseries``: timeseries.csv already written there (:func:`replicate`'s ``blocks``), moved in."""
    s = loaded.scenario
    times = bin_times(s, rep.setup.edges)
    with staged_run_dir(out, name or run_dir_name(started, s.name, kind)) as staging:
        (staging.path / "scenario.yaml").write_text(resolved_yaml(s), encoding="utf-8")
        if timeseries is None:
            write_blocks(staging.path / "timeseries.csv", s, times, rep.results)
        else:
            timeseries.replace(staging.path / "timeseries.csv")
        write_headline(staging.path / HEADLINE_FILE, ((r.index, r.headline) for r in rep.results))
        write_json(staging.path / "summary.json",
                   summary(s, rep.results, seed=seed, times=times, paired=rep.setup.sample is not None,
                           population=rep.setup.pop.size if rep.setup.pop.weight is None
                           else rep.setup.pop.organisations))
        write_json(staging.path / "meta.json", meta(
            kind=kind, scenario=s.name, sha256=loaded.sha256, source=loaded.source, seeds=[seed],
            started=started, finished=dt.datetime.now(dt.UTC), replications=len(rep.results),
            jobs=jobs, scale=scale, organisations=rep.setup.pop.size,
            replication_seconds=[round(t, 3) for t in rep.seconds],
            engine=ENGINE_NOTES, **(extra_meta or {})))
    assert staging.final is not None
    return staging.final


#: timeseries.csv's header line, as written (:func:`write_blocks`, :func:`streamed_timeseries`)
_HEADER = (",".join(COLUMNS) + "\n").encode("utf-8")


def write_blocks(path: Path, s: Scenario, times: list[str], results: list[ReplicationResult]) -> None:
    """timeseries.csv: the header, then every replication's block in order (the same bytes
    ``scenarios.rundir.write_timeseries`` writes for :func:`sim.metrics.rows`)."""
    with path.open("wb") as fh:
        fh.write(_HEADER)
        for result in results:
            fh.write(zlib.decompress(result.timeseries) if result.timeseries
                     else block(s, times, result, compressed=False))


#: How the run was computed (meta.json), so a reader knows what the numbers rest on.
ENGINE_NOTES = {
    "agents": "the shared state machine (scenarios.lifecycle) for organisations whose direct "
              "traffic is denied, its awaited events on one calendar delivered on SimPy's clock",
    "traffic": "Poisson counts per (cohort, bin); organisations that change state split out by rate",
    "capacity": "M/M/c/K per provider and hour (Erlang), from the requests reaching the provider",
    "latency": "request-level samples of 1000 per (provider, path, bin)",
    "baseline": "same seed, policy emptied and no announcement, common traffic draws",
}


def simulate(loaded: Loaded, *, replications: int = 10, seed: int = 0, jobs: int = 1,
             out: Path = Path("runs"), scale: float = 1.0, progress: Progress | None = None,
             paired: Paired | None = None) -> Path:
    """Simulate a scenario and write its run directory; returns the run directory's path.

    ``paired``: the paired simulation of a load test (``--sample-of``), recorded in meta.json as
    ``sample_of`` and named ``…-paired``."""
    started = dt.datetime.now(dt.UTC)
    name = run_dir_name(started, loaded.scenario.name, "simulate" if paired is None else "paired")
    with streamed_timeseries(out, name) as (blocks, path):
        rep = replicate(loaded.scenario, replications=replications, seed=seed, jobs=jobs,
                        scale=scale, progress=progress, paired=paired, blocks=blocks)
        blocks.close()
        return write_run(loaded, rep, seed=seed, out=out, jobs=jobs, scale=scale, started=started,
                         name=name, timeseries=path,
                         extra_meta=None if paired is None else {"sample_of": paired.describe()})


@contextmanager
def streamed_timeseries(out: Path, name: str) -> Iterator[tuple[BinaryIO, Path]]:
    """A hidden file under ``out`` for the run's timeseries.csv, its header written, to be
    filled while the replications run and moved into the run directory; removed (with ``out``
    if it made it) if anything fails or is interrupted — nothing half-written is left."""
    with made_dirs(out):
        path = out / f".{name}.timeseries-{os.getpid()}.partial"
        try:
            with path.open("wb") as fh:
                fh.write(_HEADER)
                yield fh, path
        except BaseException as exc:
            path.unlink(missing_ok=True)
            name_failed_write(exc, out / name)
            raise


@dataclass(frozen=True, slots=True)
class Paired:
    """A load test to simulate like for like: its sample, its market context, where it is."""

    run: Path
    sample: Sample
    market: MarketContext

    @classmethod
    def of_run(cls, path: Path, loaded: Loaded) -> Paired:
        """Read and check a load test's run directory (RunDirError, one line, if it cannot be
        paired with ``loaded``): a load test, of the same resolved scenario, with its sample."""
        run = read_run(path)
        if run.kind != "loadtest":
            raise RunDirError(f"--sample-of {path}: a {run.kind} run, not a load test")
        sample = Sample.read(path / SAMPLE_FILE)
        if sample.scenario_sha256 != loaded.sha256:
            raise RunDirError(f"--sample-of {path}: the load test ran another scenario than "
                              f"{loaded.scenario.name} as given here (sha256 "
                              f"{sample.scenario_sha256[:12]}… vs {loaded.sha256[:12]}…; same --set?)")
        sample.check(loaded.scenario, str(path / SAMPLE_FILE))
        market_file = path / MARKET_FILE
        try:
            market = (MarketContext.read(market_file) if market_file.is_file()
                      else MarketContext.closed_form(loaded.scenario))
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise RunDirError(f"{market_file}: unreadable market context: {exc}") from None
        return cls(run=path, sample=sample, market=market)

    def describe(self) -> dict[str, Any]:
        return {"run": self.run.name, "path": str(self.run.resolve()), "seed": self.sample.seed,
                "organisations": len(self.sample.orgs), "sample": self.sample.digest(),
                "stands_for": round(sum(o.weight for o in self.sample.orgs), 6)}
