"""Errors raised by the sim package.

Hierarchy::

    SimError                      base of everything the simulator raises on purpose
    ├── SweepSpecError            a malformed sweep grid (also a scenarios UsageError: exit 2)
    ├── EmptyPopulationError      nothing to simulate: no organisations at this scale (UsageError)
    └── ClusterUnavailableError   --dask given but dask.distributed cannot be imported or reached
                                  (also a scenarios UsageError: exit 2)

Scenario problems stay :class:`scenarios.errors.ScenarioError`; the command line prints every
``ScenarioError`` as one line and exits with status 2.
"""

from __future__ import annotations

from scenarios.errors import UsageError


class SimError(Exception):
    """Base class of the simulator's own errors."""


class SweepSpecError(SimError, UsageError):
    """A ``--set PATH=V1,V2`` grid that cannot be parsed."""


class EmptyPopulationError(SimError, UsageError):
    """The scenario (at the requested scale) has no organisations."""


class ClusterUnavailableError(SimError, UsageError):
    """Dask is not installed, or the scheduler at ``--dask ADDRESS`` cannot be reached."""


class UncertainParameterError(SimError, UsageError):
    """A scenario's ``uncertain`` entry names no number, or draws an invalid scenario."""
