"""``python -m benchmarks [NAME...]``: run every ``benchmarks/bench_*.py`` module's ``main()``.

Each benchmark runs in its own subprocess (a fresh interpreter, so one benchmark's caches and
imports cannot flatter the next), its output streamed as it goes. Exit status 1 if any failed.
NAME filters by module name (``policy`` or ``bench_policy``).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def modules(names: list[str]) -> list[str]:
    found = sorted(p.stem for p in HERE.glob("bench_*.py"))
    wanted = {n if n.startswith("bench_") else f"bench_{n}" for n in names}
    return [m for m in found if not wanted or m in wanted]


def run_one(module: str) -> tuple[int, float]:
    """Run ``benchmarks.<module>.main()`` in a child interpreter; its return value is the exit code."""
    code = f"import sys\nfrom benchmarks.{module} import main\nsys.exit(main())\n"
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
        print(f"{module:<20} {'ok' if rc == 0 else f'FAILED (exit {rc})':<16} {seconds:6.1f} s")
    return 0 if all(rc == 0 for rc, _ in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
