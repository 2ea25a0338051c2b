"""Errors raised by the loadtests package.

Hierarchy::

    scenarios.errors.ScenarioError        (printed as one line by the command line, exit 2)
    └── scenarios.errors.UsageError       a bad load-test option (--users 0, a bad --host URL)
    LoadTestError                         the load test could not be carried out (exit 1)
    ├── ServiceStartError                 a gateway, upstream or Locust process did not start or
    │                                     become ready before its deadline (carries its stderr tail)
    ├── ServiceFailedError                a process we started exited while the test was running
    └── RunOutputError                    Locust's or the gateway's output files are missing or
                                          unreadable after the run (no stats CSV, no ledger)

A failed *check* (SLO, reconciliation, revenue) is not an error: it is recorded in summary.json
and turns into exit status 1.
"""

from __future__ import annotations


class LoadTestError(Exception):
    """Base class: the load test itself could not be run to the end."""


class ServiceStartError(LoadTestError):
    """A process we started did not become ready in time (or exited while starting)."""


class ServiceFailedError(LoadTestError):
    """A process we started exited before the test was over."""


class RunOutputError(LoadTestError):
    """An output file the analysis needs is missing or unreadable."""
