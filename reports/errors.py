"""Errors raised by the reports package.

Hierarchy::

    scenarios.errors.ScenarioError    (printed as one line by the command line, exit 2)
    └── scenarios.errors.RunDirError  a directory that is not a readable run directory
        └── ReportInputError          run directories that can be read but not reported on
                                      together (an empty list, a malformed timeseries value)
    OSError                           writing the report failed (left to the caller)
"""

from __future__ import annotations

from scenarios.errors import RunDirError


class ReportInputError(RunDirError):
    """Run directories that cannot be reported on (one line naming the directory)."""
