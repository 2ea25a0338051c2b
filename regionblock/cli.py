"""The command line: the front door that assembles every room's subcommands.

Exit codes: 0 ok, 1 a check failed (SLO, threshold, reconciliation), 2 bad usage or bad input.
A user's mistake is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import pkgutil
import re
import signal
import sys
from collections.abc import Iterator, Sequence
from types import FrameType

from regionblock import commands
from scenarios.errors import ScenarioError

#: The order ``--help`` lists the subcommand modules found in ``regionblock.commands``.
COMMAND_ORDER = ("scenario", "policy", "simulate", "sweep", "upstreams", "gateway", "loadtest",
                 "report", "compare", "demo")

EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE = 0, 1, 2
#: Ended by Ctrl-C (SIGINT) or by SIGTERM: 128 + the signal's number, as a shell reports it.
EXIT_INTERRUPTED, EXIT_TERMINATED = 128 + signal.SIGINT, 128 + signal.SIGTERM

#: argparse's "argument --x: what is wrong" for an option (not a positional argument).
_OPTION_ERROR = re.compile(r"argument (-[^:]*): (.*)", re.DOTALL)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump) and exit status 2.

    A bad option value reads as every other usage error does, ``--flag: what is wrong`` (the
    ``type=`` functions of :mod:`regionblock.common`, argparse's own choices and conflicts);
    other mistakes (a missing argument, an unknown one) keep the command's name in front."""

    def error(self, message: str) -> None:  # type: ignore[override]
        option = _OPTION_ERROR.fullmatch(message)
        line = f"{option[1]}: {option[2]}" if option else f"{self.prog}: {message}"
        self.exit(EXIT_USAGE, line + "\n")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so it unwinds as Ctrl-C does: a run directory being
    written is removed (``scenarios.rundir.staged_run_dir``), worker pools and child processes are
    stopped, and nothing half-written is left."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(f"signal {signum}")


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While a command runs, SIGTERM raises :class:`Terminated` (the gateway and ``upstreams``
    replace it with their own graceful stop while they serve); the previous handler afterwards."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread (an embedding program): leave SIGTERM alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``only``, just that subcommand's module is imported (fast start-up:
    the rooms import heavy libraries — locust, matplotlib, aiohttp — that other commands don't need)."""
    parser = _Parser(prog="regionblock",
                     description="Rehearse an API provider's region block: simulate it, enforce it "
                                 "on a real gateway, load-test it, report on it.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in [only] if only else command_modules():
        importlib.import_module(f"regionblock.commands.{name}").register(sub)
    return parser


def command_modules() -> list[str]:
    """Every subcommand module in ``regionblock.commands``, in COMMAND_ORDER, then by name."""
    found = {m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_")}
    rank = {name: i for i, name in enumerate(COMMAND_ORDER)}
    return sorted(found, key=lambda n: (rank.get(n, len(rank)), n))


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("regionblock")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


def raise_open_file_limit() -> None:
    """Lift the soft limit on open files to the hard one, as Locust and servers do.

    A load test's gateway, mock providers and WAN paths hold a few descriptors per request in
    flight: a thousand users each with a few requests in flight pass a soft limit of 1,024 (a
    common default) and fail with EMFILE mid-run. Where the platform has no such limit, nothing."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):  # forbidden (a container): keep the soft
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    only = first if first in command_modules() else None
    args = build_parser(only).parse_args(argv)
    raise_open_file_limit()
    try:
        with _sigterm_as_interrupt():
            return int(args.func(args) or 0)
    except ScenarioError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except Terminated:
        print("terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `regionblock scenario show X | head`
        return EXIT_OK
    except OSError as exc:
        from scenarios.rundir import WRITE_FAILURES  # (numpy: not at start-up)

        # errors of the machine, not of the program, met while writing a run: one line
        if exc.errno not in WRITE_FAILURES:
            raise
        # the disk filled (or went read-only) mid-run: what was staged is already removed
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{args.command}: {where}cannot write: {os.strerror(exc.errno)}", file=sys.stderr)
        return EXIT_USAGE
