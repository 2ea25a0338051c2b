"""Child processes of a load test: start, wait until ready, stop — always, whatever happens.

Every child runs in its own session (its own process group), so a Ctrl-C in the terminal
reaches only the orchestrator, which then stops the children itself, in reverse start order:
SIGTERM to the group, a deadline, then SIGKILL. :class:`Processes` is a context manager that does
this on exit however the block ends (normal end, exception, KeyboardInterrupt); while it is
active SIGTERM to the orchestrator is turned into KeyboardInterrupt so it ends the same way
(``regionblock`` does that for the whole command, before any run directory is staged).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType

from loadtests.errors import ServiceFailedError, ServiceStartError

POLL_S = 0.05


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 12) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def exited(self) -> int | None:
        return self.proc.poll()


@dataclass
class Processes:
    """The processes one load test started (stopped in reverse order on exit)."""

    log_dir: Path
    stop_timeout_s: float = 10.0
    children: list[Child] = field(default_factory=list)
    _old_sigterm: object = None

    def __enter__(self) -> Processes:
        # not in the main thread: leave SIGTERM alone; a handler already there (the command
        # line's, which raises its own KeyboardInterrupt for the whole command) is kept
        with contextlib.suppress(ValueError):
            if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                self._old_sigterm = signal.signal(signal.SIGTERM, _raise_interrupt)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop_all()
        if self._old_sigterm is not None:
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signal.SIGTERM, self._old_sigterm)  # type: ignore[arg-type]

    def start(self, name: str, argv: Sequence[str], *, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        # A Ctrl-C or SIGTERM raised inside Popen (after the fork, while it waits for the exec)
        # or just after it would leave a child no one stops: held until the child is one of ours.
        with _signals_held(), log.open("wb") as fh:
            proc = subprocess.Popen(list(argv), stdout=fh, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                                    start_new_session=True)
            child = Child(name, proc, log)
            self.children.append(child)
        return child

    def check_alive(self, *, except_: Sequence[Child] = ()) -> None:
        """ServiceFailedError if a child (other than ``except_``) has exited."""
        for child in self.children:
            if child in except_:
                continue
            code = child.exited()
            if code is not None:
                raise ServiceFailedError(f"{child.name} exited with status {code} during the test:\n"
                                         f"{child.tail()}")

    def stop(self, child: Child) -> int | None:
        """SIGTERM its process group, wait, then SIGKILL; returns the exit status."""
        if child.exited() is None:
            _signal_group(child.proc.pid, signal.SIGTERM)
            try:
                child.proc.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                _signal_group(child.proc.pid, signal.SIGKILL)
                child.proc.wait(timeout=self.stop_timeout_s)
        return child.proc.returncode

    def stop_all(self) -> None:
        for child in reversed(self.children):
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                self.stop(child)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM that arrive in the block are handled when it ends, by the handlers that
    were in place (which raise KeyboardInterrupt there), not in the middle of it. Not in the main
    thread (no handlers can be set there) the block runs as it is."""
    held: list[signal.Signals] = []
    signals = (signal.SIGINT, signal.SIGTERM)
    try:
        previous = {sig: signal.signal(sig, lambda signum, _frame: held.append(signal.Signals(signum)))
                    for sig in signals}
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in dict.fromkeys(held):
            handler = previous[signum]
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), signum)


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


# ---------------------------------------------------------------- readiness


def wait_until(ready: Callable[[], bool], *, deadline: float, child: Child, what: str) -> None:
    """Poll ``ready`` until it is true; ServiceStartError at the deadline or if ``child`` exits."""
    while True:
        if ready():
            return
        code = child.exited()
        if code is not None:
            raise ServiceStartError(f"{child.name} exited with status {code} before {what}:\n"
                                    f"{child.tail()}")
        if time.monotonic() >= deadline:
            raise ServiceStartError(f"{child.name}: {what} did not happen within the deadline:\n"
                                    f"{child.tail()}")
        time.sleep(POLL_S)


def http_ok(url: str, timeout_s: float = 1.0) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp:
                return 200 <= int(resp.status) < 300
        except (urllib.error.URLError, OSError, ValueError):
            return False
    return check


def tcp_open(host: str, port: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            return False
    return check


# ---------------------------------------------------------------- ports


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_port_block(n: int, host: str = "127.0.0.1", attempts: int = 50) -> int:
    """A base port P such that P..P+n-1 are all free right now."""
    for _ in range(attempts):
        base = free_port(host)
        if base + n > 65535:
            continue
        if all(_bindable(host, base + i) for i in range(n)):
            return base
    raise ServiceStartError(f"no block of {n} free consecutive ports on {host}")


def _bindable(host: str, port: int) -> bool:
    """Whether our servers could listen on ``port``: they bind with SO_REUSEADDR (asyncio's and
    aiohttp's default), so a port held only by connections in TIME_WAIT (thousands after a big
    load test) is free for them too."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True
