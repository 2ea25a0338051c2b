"""reports: charts (matplotlib) and the HTML/Markdown report, built from run directories.

``reports.build.build_report(run_dirs, out)`` is the entry point; ``regionblock report`` and
``regionblock demo`` call it.
"""
