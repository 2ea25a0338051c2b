"""Reproducible benchmarks: ``python -m benchmarks`` (= ``make bench``) runs every ``bench_*.py``.

Each module has a ``main() -> int`` that prints its figures, compares them with a baseline measured
in the same run (a ratio), and returns non-zero when it misses its target.
"""
