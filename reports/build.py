"""Build a report from run directories: charts (PNG + SVG), report.html, summary.md.

Everything is written to a hidden staging directory next to the destination and renamed into
place at the end, so a failure never leaves a half-written report behind.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

from reports import html, markdown, style
from reports.charts import (
    capacity,
    compare,
    headline,
    latency,
    orgs,
    outcomes,
    revenue,
    sweep,
    versus,
    waterfall,
)
from reports.charts.common import Context, Section
from reports.data import RunData, load_runs
from reports.errors import ReportInputError
from scenarios.rundir import name_failed_write

SECTIONS: tuple[ModuleType, ...] = (headline, versus, revenue, waterfall, orgs, latency,
                                    outcomes, capacity, compare, sweep)
MARKERS = ("report.html", "summary.md", "charts.json")  # (summary.json: the verdicts)


def build_report(run_dirs: list[Path], out: Path | None = None, *,
                 now: dt.datetime | None = None,
                 loaded: Mapping[Path, RunData] | None = None) -> Path:
    """Read ``run_dirs`` and write the report to ``out`` (default ``<first run>/report``).

    Returns the path of report.html. Raises RunDirError for a directory that is not a run, and
    ReportInputError when ``out`` exists and is not a previous report. ``loaded``: runs read
    already (``reports.data.load_run``), by path, not read again.
    """
    runs = load_runs(run_dirs, loaded)
    final = out if out is not None else default_destination(run_dirs)
    if out is not None:
        check_destination(final)
    else:
        check_destination(final, "report", DEFAULT_HINT)
    staging = final.parent / f".{final.name}.partial-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        write(runs, staging, now or dt.datetime.now(dt.UTC))
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        name_failed_write(exc, final)
        raise
    replace(staging, final)
    return final / "report.html"


#: What a message about the default destination (no ``--out``) ends with.
DEFAULT_HINT = "; give --out DIR"


def default_destination(run_dirs: Sequence[Path]) -> Path:
    """Where a report goes without ``--out``: beside the first run's files."""
    return run_dirs[0] / "report"


def check_destination(final: Path, flag: str = "--out", hint: str = "") -> None:
    """Refuse to replace anything that is not a report this module wrote: one line worded as
    ``regionblock.common.check_out_dir`` words its own, ``FLAG: PATH: what is wrong`` (``flag``
    ``report`` and ``hint`` "; give --out DIR" for the default destination)."""
    if final.exists() and not final.is_dir():
        raise ReportInputError(f"{flag}: {final}: exists and is not a directory{hint}")
    if final.is_dir() and any(final.iterdir()) and not (final / "charts.json").is_file():
        raise ReportInputError(f"{flag}: {final}: exists and is not a report directory"
                               f"{hint or ' (choose an empty or new directory)'}")


def replace(staging: Path, final: Path) -> None:
    if final.exists():
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        final.rename(old)
        staging.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(final)


def sections(runs: Sequence[RunData], out: Path) -> list[Section]:
    ctx = Context(runs=list(runs), palette=style.palette([r.scenario for r in runs]), out=out)
    # a section with nothing to say of these runs at all (not even why) is left out
    return [sec for module in SECTIONS
            if (sec := module.section(ctx)).charts or sec.tables or sec.notes]


def write(runs: Sequence[RunData], out: Path, now: dt.datetime) -> None:
    secs = sections(runs, out)
    (out / "summary.md").write_text(markdown.render(runs, secs), encoding="utf-8")
    stamp = now.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    (out / "report.html").write_text(html.render(runs, secs, out, stamp), encoding="utf-8")
    (out / "charts.json").write_text(json.dumps(manifest(secs), indent=2) + "\n", encoding="utf-8")
    data = {name: value for s in secs for name, value in s.data.items()}
    (out / "summary.json").write_text(json.dumps({"verdicts": data}, indent=2, allow_nan=False) + "\n",
                                      encoding="utf-8")


def manifest(secs: Sequence[Section]) -> list[dict[str, object]]:
    """Every chart written: file stem, title, caption and pixel size (tests and tools read it)."""
    return [{"section": s.title, "name": c.name, "title": c.title, "caption": c.caption,
             "png": f"{c.name}.png", "svg": f"{c.name}.svg", "width": c.size_px[0],
             "height": c.size_px[1]} for s in secs for c in s.charts]
