"""Errors raised by the scenarios package.

Hierarchy::

    ScenarioError                 base of everything a user can cause through a scenario
    ├── ScenarioValidationError   one or more problems in a scenario file (carries every problem)
    ├── ScenarioNotFoundError     neither a path nor the name of a shipped scenario
    ├── OverrideError             a malformed ``--set PATH=VALUE``
    ├── UsageError                a bad command-line value (a WHEN, a DURATION, an IP, a country)
    ├── GeoError                  an address or GeoIP database that cannot be used
    └── RunDirError               a directory that is not a readable run directory

Every error's ``str()`` is one line fit for a user: it names the file, field or argument and says
what is wrong. The command line prints it and exits with status 2.
"""

from __future__ import annotations

from dataclasses import dataclass


class ScenarioError(Exception):
    """Base class: a problem the user can fix, reported as one line (or one line per problem)."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One validation problem: where it is (file, line, dotted field path) and what is wrong."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ScenarioValidationError(ScenarioError):
    """A scenario failed validation; ``problems`` lists every problem found, in file order."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class ScenarioNotFoundError(ScenarioError):
    """The SCENARIO argument is neither an existing file nor a shipped scenario name."""


class OverrideError(ScenarioError):
    """A ``--set PATH=VALUE`` override that cannot be parsed or applied."""


class UsageError(ScenarioError):
    """A command-line value that cannot be parsed (a time, a duration, an address...)."""


class GeoError(ScenarioError):
    """An IP address or GeoIP database that cannot be used."""


class RunDirError(ScenarioError):
    """A directory that is not a run directory this version can read."""
