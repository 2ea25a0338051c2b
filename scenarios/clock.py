"""Scenario time ↔ wall time.

Scenario time is a timezone-aware UTC ``datetime``; wall time is a float of ``time.time()``
seconds. The gateway and the load test share one ``Clock`` so every record can carry both.

Every clock is a pure mapping: callers pass the wall instant in. The wall clock is read in one
place only, ``now()`` (inherited by every clock), so everything else is testable without sleeping.

Three clocks, chosen on the command line (``parse_clock``):

* ``RealClock``        scenario time is wall time (``--clock real``)
* ``PinnedClock``      scenario time stands still at one instant (``--at WHEN``)
* ``CompressedClock``  the scenario window is replayed over a short wall duration
                       (``--compress DURATION[@EPOCH]``: e.g. 120 days onto 5 minutes)
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Protocol

from scenarios.errors import UsageError

__all__ = [
    "Clock",
    "CompressedClock",
    "PinnedClock",
    "RealClock",
    "check_compression",
    "format_instant",
    "parse_clock",
    "parse_duration",
    "parse_epoch",
    "parse_when",
]


class Clock(Protocol):
    """Maps wall instants (``time.time()`` floats) to scenario instants (aware UTC datetimes)."""

    def scenario_at(self, wall: float) -> datetime:
        """The scenario instant at wall instant ``wall``."""
        ...

    def wall_at(self, scenario: datetime) -> float:
        """The wall instant at which the scenario reaches ``scenario`` (inverse of scenario_at)."""
        ...

    def describe(self) -> str:
        """One line saying what this clock does, for logs and run metadata."""
        ...

    def now(self) -> datetime:
        """The scenario instant now: ``scenario_at(time.time())``."""
        ...


class _ReadsWallClock:
    """Gives every clock the same ``now()``: the single place where the wall clock is read."""

    def scenario_at(self, wall: float) -> datetime:
        raise NotImplementedError

    def now(self) -> datetime:
        return self.scenario_at(time.time())


@dataclass(frozen=True)
class RealClock(_ReadsWallClock):
    """Scenario time is wall time."""

    def scenario_at(self, wall: float) -> datetime:
        return datetime.fromtimestamp(wall, tz=UTC)

    def wall_at(self, scenario: datetime) -> float:
        return _as_utc(scenario, "scenario").timestamp()

    def describe(self) -> str:
        return "real: scenario time is wall time"


@dataclass(frozen=True)
class PinnedClock(_ReadsWallClock):
    """Scenario time stands still at ``at`` whatever the wall time (``--at WHEN``)."""

    at: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", _as_utc(self.at, "at"))

    def scenario_at(self, wall: float) -> datetime:
        return self.at

    def wall_at(self, scenario: datetime) -> float:
        raise ValueError(
            f"a pinned clock has no inverse: every wall instant maps to {format_instant(self.at)}"
        )

    def describe(self) -> str:
        return f"pinned: {format_instant(self.at)}"


@dataclass(frozen=True)
class CompressedClock(_ReadsWallClock):
    """Maps the wall interval [epoch, epoch + duration_s] linearly onto the scenario [start, end].

    Outside that interval the mapping keeps extrapolating along the same line: a wall instant
    before ``epoch`` is a scenario instant before ``start``, one after the end runs past ``end``.
    A load test thus has a well-defined scenario time while it warms up and winds down, and
    clients and gateway never disagree about the mapping at the edges. (Far enough out the
    scenario instant leaves ``datetime``'s range and ``OverflowError`` is raised.)
    """

    start: datetime
    end: datetime
    duration_s: float
    epoch: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _as_utc(self.start, "start"))
        object.__setattr__(self, "end", _as_utc(self.end, "end"))
        if self.end <= self.start:
            start, end = format_instant(self.start), format_instant(self.end)
            raise ValueError(f"end ({end}) must be after start ({start})")
        if not (math.isfinite(self.duration_s) and self.duration_s > 0):
            raise ValueError(f"duration_s ({self.duration_s}) must be a finite number above zero")
        if not math.isfinite(self.epoch):
            raise ValueError(f"epoch ({self.epoch}) must be a finite unix time")

    @property
    def factor(self) -> float:
        """Scenario seconds per wall second."""
        return (self.end - self.start).total_seconds() / self.duration_s

    def scenario_at(self, wall: float) -> datetime:
        return self.start + timedelta(seconds=(wall - self.epoch) * self.factor)

    def wall_at(self, scenario: datetime) -> float:
        elapsed = (_as_utc(scenario, "scenario") - self.start).total_seconds()
        return self.epoch + elapsed / self.factor

    def describe(self) -> str:
        return (
            f"compressed: {format_instant(self.start)}..{format_instant(self.end)} "
            f"onto {_format_number(self.duration_s)} s from wall {self.epoch!r} "
            f"(x{_format_number(self.factor)})"
        )


def format_instant(dt: datetime) -> str:
    """ISO-8601 UTC with a trailing ``Z``; microseconds only when there are any."""
    utc = _as_utc(dt, "instant").replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds" if utc.microsecond else "seconds") + "Z"


def parse_when(text: str, *, what: str = "WHEN") -> datetime:
    """Parse a date or ISO-8601 instant into an aware UTC datetime.

    ``2024-07-10`` is midnight UTC; an instant without an offset is taken as UTC (scenario time
    is UTC throughout); ``Z`` and ``+08:00`` offsets are converted to UTC.
    """
    try:
        parsed = datetime.fromisoformat(text.strip())
        return parsed.replace(tzinfo=parsed.tzinfo or UTC).astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: "0001-01-01T00:00+01:00" has no UTC
        raise UsageError(f"{what}: {text!r} is not a date or ISO-8601 instant") from None


# Decimal arithmetic, so "90ms" is exactly 0.09 and "1d2h3m4s5ms" exactly 93784.005.
_UNIT_SECONDS = {
    "d": Decimal(86400),
    "h": Decimal(3600),
    "m": Decimal(60),
    "s": Decimal(1),
    "ms": Decimal("0.001"),
}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
# Units in falling order, each at most once, so "1h30m" reads one way only ("30m1h" is refused).
_DURATION = re.compile(
    rf"(?P<sign>[+-]?)(?:(?P<bare>{_NUMBER})|"
    + "".join(rf"(?:(?P<{unit}>{_NUMBER}){unit})?" for unit in _UNIT_SECONDS)
    + ")"
)


#: The longest duration: what a ``timedelta`` holds (999,999,999 days), so any duration can be
#: added to an instant or divided into a window without OverflowError. A command bounds its own
#: durations further (a load test's by its scenario window: ``--compress`` replays the window onto
#: no more wall time than it spans).
MAX_DURATION_S = Decimal(timedelta.max.days) * _UNIT_SECONDS["d"]


def parse_duration(text: str, *, what: str = "DURATION") -> float:
    """Parse ``300``, ``300s``, ``5m``, ``1h30m``, ``2d``, ``1.5h``, ``90ms`` into seconds
    (above zero, at most MAX_DURATION_S)."""
    match = _DURATION.fullmatch(text.strip())
    parts = match.groupdict() if match else {}
    if not any(parts.get(key) for key in ("bare", *_UNIT_SECONDS)):
        raise UsageError(f"{what}: {text!r} is not a duration (e.g. 300, 300s, 5m, 1h30m, 2d, 90ms)")
    exact = Decimal(parts["bare"] or 0) + sum(
        Decimal(parts[unit]) * factor for unit, factor in _UNIT_SECONDS.items() if parts[unit])
    if exact > MAX_DURATION_S:  # compared exactly: "9" * 400 seconds is no float
        raise UsageError(f"{what}: {text!r} is too long (at most {timedelta.max.days:,} days, "
                         "the longest a timedelta holds)")
    seconds = float(exact)
    if parts["sign"] == "-" or seconds <= 0:
        raise UsageError(f"{what}: {text!r} must be greater than zero")
    return seconds


def parse_clock(spec: str, *, window_start: datetime, window_end: datetime, now_wall: float) -> Clock:
    """Turn a clock spec into a clock.

    ``real`` → RealClock; ``at:WHEN`` → PinnedClock; ``compress:DURATION[@EPOCH]`` →
    CompressedClock mapping the scenario window onto DURATION wall seconds from EPOCH (a unix time
    or an ISO-8601 instant; ``now_wall`` when omitted). The command line's ``--clock real``,
    ``--at WHEN`` and ``--compress DURATION[@EPOCH]`` are turned into these specs.
    """
    kind, _, arg = spec.strip().partition(":")
    if kind == "real" and not arg:
        return RealClock()
    if kind == "at" and arg:
        return PinnedClock(parse_when(arg, what="--at"))
    if kind == "compress" and arg:
        duration_text, has_epoch, epoch_text = arg.partition("@")
        duration = parse_duration(duration_text, what="--compress")
        check_compression(duration, window_start, window_end, what="--compress",
                          text=duration_text)
        epoch = parse_epoch(epoch_text) if has_epoch else now_wall
        return CompressedClock(window_start, window_end, duration, epoch)
    raise UsageError(f"--clock: {spec!r} is not real, at:WHEN or compress:DURATION[@EPOCH]")


def check_compression(duration_s: float, window_start: datetime, window_end: datetime, *,
                      what: str, text: str) -> None:
    """A compressed clock replays the window onto ``duration_s`` wall seconds: no more than the
    window spans. Longer would slow the scenario down, and far longer stops it in all but name
    (a 120-day window onto 10**20 days moves by nanoseconds a day, yet looks like a running
    clock): UsageError naming ``what``, quoting ``text``."""
    window_s = (_as_utc(window_end, "end") - _as_utc(window_start, "start")).total_seconds()
    if duration_s > window_s:
        raise UsageError(f"{what}: {text!r} is longer than the scenario window it compresses "
                         f"({_format_span(window_s)}): at most the window itself, which replays "
                         "it in real time")


def _format_span(seconds: float) -> str:
    """ "122 days", "3 h", "90 s": the window's length in its largest whole unit."""
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:,.0f} {unit}"
    return f"{_format_number(seconds)} s"


_UNIX_TIME = re.compile(rf"[+-]?{_NUMBER}")


def parse_epoch(text: str, *, prefix: str = "--compress: EPOCH") -> float:
    """An EPOCH is a unix time (``1732579200`` or ``1732579200.5``) or an ISO-8601 instant, and
    an instant a ``datetime`` holds (years 1 to 9999): a unix time of 10**20 would be accepted
    and then overflow on every conversion of the clock."""
    try:
        epoch = float(text) if _UNIX_TIME.fullmatch(text.strip()) else parse_when(text).timestamp()
    except UsageError:
        epoch = math.nan
    if not math.isfinite(epoch):
        raise UsageError(f"{prefix} {text!r} is not a unix time or ISO-8601 instant")
    try:
        datetime.fromtimestamp(epoch, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise UsageError(f"{prefix} {text!r} is out of range (a unix time of the years 1 to "
                         "9999)") from None
    return epoch



def _as_utc(dt: datetime, name: str) -> datetime:
    # A naive datetime would silently mean local time to .timestamp(); refuse it instead.
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"{name} ({dt.isoformat()}) must be timezone-aware")
    return dt.astimezone(UTC)


def _format_number(value: float) -> str:
    """300.0 → "300", 0.25 → "0.25", 35136.0 → "35136": short and exact to the millisecond."""
    return f"{value:.3f}".rstrip("0").rstrip(".")
