"""What every subcommand shares: the SCENARIO argument with ``--set``, loading, the console, the
check of an output directory, and the ``type=`` functions of every option's value."""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from rich.console import Console

from scenarios.errors import UsageError
from scenarios.loader import Loaded, load

T = TypeVar("T")


def add_scenario_arg(p: argparse.ArgumentParser) -> None:
    """SCENARIO (a path or a shipped name) and repeatable ``--set PATH=VALUE`` overrides."""
    p.add_argument("scenario", metavar="SCENARIO", type=SCENARIO_REF,
                   help="a scenario file or a shipped scenario name")
    add_set_arg(p)


def add_set_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                   help="override a scenario field, e.g. --set policy.openai.stages[1].percent=50")


def load_scenario(args: argparse.Namespace) -> Loaded:
    """Load SCENARIO with the command's overrides (raises ScenarioError on bad input)."""
    return load(args.scenario, tuple(getattr(args, "overrides", ()) or ()))


def stderr_console() -> Console:
    """Progress and notices go to stderr so stdout stays clean for data."""
    return Console(stderr=True, highlight=False)


def default_runs_dir() -> Path:
    return Path("runs")


def check_out_dir(out: Path, flag: str = "--out") -> None:
    """``out`` must be a directory we can write into, or creatable in one — checked before any
    work, so a typo does not cost a whole simulation and a traceback.

    The nearest existing directory is tried for real: a directory made in it and removed at once
    (nothing is left). Permission bits alone do not tell: root passes ``os.access`` on /proc and
    /sys, and a read-only mount or a full quota says no only when something is made."""
    probe = out
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        what = "exists and is not a directory" if probe == out else f"{probe} is not a directory"
        raise UsageError(f"{flag}: {out}: {what}")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".regionblock-probe-", dir=probe))
    except OSError as exc:
        raise UsageError(f"{flag}: {out}: cannot write there ({probe}: "
                         f"{(exc.strerror or str(exc)).lower()})") from None


# ---------------------------------------------------------------- argument types
#
# Every command's numeric, port, host and path options are parsed by these ``type=`` functions,
# so a bad value is refused by argparse before any work, as one line in one format:
# ``--replications: must be at most 10,000 (got 99999999999999999999)`` (the parser turns
# argparse's ``argument --x: ...`` into ``--x: ...``, the form every other usage error takes).

#: Seeds are 0..2**64-1: an organisation's own generator reads the seed modulo 2**64
#: (``scenarios.lifecycle.org_rng``), so a larger one would alias a smaller one there and only there.
MAX_SEED = 2**64 - 1

#: A value shown in an error is cut to this many characters (a 5,000-digit number stays one line).
_SHOWN = 40


def _shown(text: str, *, quote: bool = False) -> str:
    """The value as the user typed it, cut short; quoted when it is not a number at all."""
    text = text.strip()
    cut = text if len(text) <= _SHOWN else text[:_SHOWN] + "…"
    return repr(cut) if quote or not cut else cut


def _named(fn: Callable[[str], T], name: str) -> Callable[[str], T]:
    fn.__name__ = name  # what argparse calls the type in its own messages
    return fn


def whole_number(minimum: int | None = None, maximum: int | None = None, *,
                 why: str = "") -> Callable[[str], int]:
    """``type=`` for a whole number in [minimum, maximum]; ``why`` says why the maximum is what
    it is (shown after it: ``must be at most 10,000 (got 20000): why``)."""

    def parse(text: str) -> int:
        digits = text.strip()
        if not _WHOLE.fullmatch(digits):
            raise argparse.ArgumentTypeError(f"must be a whole number "
                                             f"(got {_shown(text, quote=True)})")
        # int() refuses over 4,300 digits (ValueError): beyond 40, any bound is passed already
        if len(digits.lstrip("+-").lstrip("0")) > 40:
            value = -(10**41) if digits.startswith("-") else 10**41
        else:
            value = int(digits)
        _within(value, text, minimum, maximum, why, ",")
        try:
            return int(digits)
        except ValueError:  # over 4,300 digits with no bound given
            raise argparse.ArgumentTypeError(f"is too large (got {_shown(text)})") from None

    return _named(parse, "whole number")


_WHOLE = re.compile(r"[+-]?[0-9]+")


def _within(value: float, text: str, minimum: float | None, maximum: float | None, why: str,
            spec: str) -> None:
    """ArgumentTypeError unless minimum <= value <= maximum (bounds shown with ``spec``)."""
    if minimum is not None and value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum:{spec}} (got {_shown(text)})")
    if maximum is not None and value > maximum:
        because = f": {why}" if why else ""
        raise argparse.ArgumentTypeError(f"must be at most {maximum:{spec}} "
                                         f"(got {_shown(text)}){because}")


def finite_number(minimum: float | None = None, maximum: float | None = None, *,
                  above: float | None = None, why: str = "") -> Callable[[str], float]:
    """``type=`` for a finite number: at least ``minimum``, greater than ``above``, at most
    ``maximum``. NaN and infinities are refused (``float()`` takes them: 'nan' compares false
    with everything, so a check like ``x < 0`` lets it through)."""

    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number "
                                             f"(got {_shown(text, quote=True)})") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number (got {_shown(text)})")
        if above is not None and not value > above:
            raise argparse.ArgumentTypeError(f"must be greater than {above:g} (got {_shown(text)})")
        _within(value, text, minimum, maximum, why, ",g")
        return value

    return _named(parse, "number")


#: ``--seed S``: 0..MAX_SEED.
seed_number = whole_number(0, MAX_SEED, why="2**64-1, the most an organisation's generator reads")


def tcp_port(*, any_port: bool = False) -> Callable[[str], int]:
    """``type=`` for a TCP port: 1-65535, or 0 too (``any_port``: the system picks one)."""
    low = 0 if any_port else 1
    parse = whole_number(low, 65535)

    def parse_port(text: str) -> int:
        try:
            return parse(text)
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(f"must be a TCP port, {low}-65535 "
                                             f"(got {_shown(text)})") from None

    return _named(parse_port, "port")


def listen_host(text: str) -> str:
    """``type=`` for an address to listen on: an IP address or a host name, never empty.

    An empty host would make asyncio listen on every interface — a surprise when the project
    listens on loopback by default; every interface is said as such, ``0.0.0.0`` or ``::``.
    A malformed name (``garbage..host``: an empty label) is refused here rather than by the
    resolver's codec as a traceback; a well-formed name that does not resolve is the server's
    one-line "cannot listen" when it binds."""
    name = text.strip()
    if not name:
        raise argparse.ArgumentTypeError("must not be empty (an address to listen on, e.g. "
                                         "127.0.0.1; every interface is 0.0.0.0 or ::)")
    try:
        ipaddress.ip_address(name)
        return name
    except ValueError:
        pass
    try:  # what the resolver does with a name first (asyncio, uvloop): a bad one is a traceback
        name.encode("idna")
    except UnicodeError:
        raise argparse.ArgumentTypeError(f"{_shown(text, quote=True)} is neither an IP address "
                                         "nor a host name") from None
    return name


def nonempty_path(text: str) -> Path:
    """``type=`` for a file or directory path, never empty (``Path('')`` is the current
    directory: an empty ``--out`` would write there)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty (a path; the current directory is .)")
    return Path(text)


def nonempty_text(what: str) -> Callable[[str], str]:
    """``type=`` for a string that must not be empty or blank (``what`` names what it is)."""

    def parse(value: str) -> str:
        if not value.strip():
            raise argparse.ArgumentTypeError(f"must not be empty ({what})")
        return value

    return _named(parse, "text")


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask where the system has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


#: Worker processes per CPU beyond which more only divide the CPUs thinner (each worker is a
#: whole interpreter with its own copy of the world).
PROCESSES_PER_CPU = 4


def process_count(minimum: int) -> Callable[[str], int]:
    """``type=`` for a count of local worker processes: at most PROCESSES_PER_CPU per CPU."""
    n = cpu_count()
    return whole_number(minimum, PROCESSES_PER_CPU * n,
                        why=f"{PROCESSES_PER_CPU} per CPU ({n} here): more only divide the CPUs "
                            "thinner")


#: SCENARIO (a path or a shipped name): ``''`` would be the current directory.
SCENARIO_REF = nonempty_text("a scenario file or a shipped scenario name")
