"""``python -m benchmarks [NAME...]``: run every ``benchmarks/bench_*.py`` module's ``main()``.

Each benchmark runs in its own subprocess (a fresh interpreter, so one benchmark's caches and
imports cannot flatter the next), its output streamed as it goes. The summary says of each "ok",
"target missed" (its ``main()`` returned 1) or "FAILED" (it raised, or exited otherwise). Exit
status 1 if any did not say "ok".
NAME filters by module name (``policy`` or ``bench_policy``).
"""

from __future__ import annotations

import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent


def modules(names: list[str]) -> list[str]:
    found = sorted(p.stem for p in HERE.glob("bench_*.py"))
    wanted = {n if n.startswith("bench_") else f"bench_{n}" for n in names}
    return [m for m in found if not wanted or m in wanted]


#: The exit status of a benchmark that raised (1 is a missed target: what ``main()`` returns).
CRASHED = 3


def outcome(main: Callable[[], int | None]) -> int:
    """The exit status of one benchmark's ``main``: what it returns (None: 0; 1: a target
    missed); an exception, or ``SystemExit`` with a message, is ``CRASHED`` (its traceback or
    message printed); ``SystemExit`` with a status (a usage error: 2) keeps it."""
    try:
        rc = main()
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return CRASHED
    except BaseException:
        traceback.print_exc()
        return CRASHED
    return 0 if rc is None else int(rc)


def run_one(module: str) -> tuple[int, float]:
    """Run ``benchmarks.<module>.main()`` in a child interpreter; its exit status is
    :func:`outcome`'s."""
    code = (f"import sys\nfrom benchmarks.__main__ import outcome\n"
            f"from benchmarks.{module} import main\nsys.exit(outcome(main))\n")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], cwd=HERE.parent, check=False)
    return done.returncode, time.perf_counter() - started


def main(argv: list[str]) -> int:
    selected = modules(argv)
    if not selected:
        print(f"no benchmark matches {' '.join(argv)}", file=sys.stderr)
        return 2
    results: dict[str, tuple[int, float]] = {}
    for module in selected:
        print(f"=== {module}", flush=True)
        results[module] = run_one(module)
        print(flush=True)
    print("=== summary")
    for module, (rc, seconds) in results.items():
        said = {0: "ok", 1: "target missed"}.get(rc, f"FAILED (exit {rc})")
        print(f"{module:<20} {said:<16} {seconds:6.1f} s")
    return 0 if all(rc == 0 for rc, _ in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
