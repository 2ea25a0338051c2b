"""Support for end-to-end tests that start real servers: free loopback ports, readiness polls."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READY_DEADLINE_S = 30.0
#: Ports ``regionblock upstreams`` binds for the default scenario from its base port on: six
#: providers, the relay, then two WAN paths (direct, relay) for each of its eight regions. A run
#: reserved shorter lets another process take a WAN path's port, and the upstreams exit.
UPSTREAMS_PORTS = 6 + 1 + 2 * 8
POLL_S = 0.05  # polling interval of a readiness check, not a wait for behaviour


def free_port() -> int:
    """A port the kernel says is free right now (bound to port 0 and released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_run(n: int) -> int:
    """A base port with ``n`` consecutive free ports after it (bound and released to check),
    below the kernel's ephemeral range: a run inside it can lose a port, between this check and
    the server's bind, to the local end of any outgoing connection — the test's own readiness
    polls included (seen: `regionblock upstreams` exiting with "address already in use" on a WAN
    path's port about once in ten test files)."""
    low, _ = ephemeral_range()
    start = 20000 + (os.getpid() * 97) % max(1, low - 20000 - n)   # spread concurrent test runs
    for k in range(200):
        base = 20000 + (start - 20000 + k * (n + 1)) % max(1, low - 20000 - n)
        if base + n <= low and all(is_free(base + i) for i in range(n)):
            return base
    raise RuntimeError(f"no run of {n} free ports found below {low}")


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range of local ports for outgoing connections (Linux; a common default)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_ok(url: str, proc: subprocess.Popen[str], deadline_s: float = READY_DEADLINE_S) -> None:
    """Poll ``url`` until it answers 200; fail if ``proc`` exits or the deadline passes.

    Any socket error counts as "not ready yet" -- a refused connection, a reset, and also a read
    timeout: a server may accept into its backlog before its event loop is free to answer.
    """
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"process exited early ({proc.returncode}): {err}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:  # URLError, ConnectionError and TimeoutError are all OSErrors
            pass
        time.sleep(POLL_S)
    raise AssertionError(f"{url} not ready within {deadline_s} s")


def spawn_regionblock(*args: str) -> subprocess.Popen[str]:
    """``python -m regionblock ARGS`` from the repository root. stdout is discarded (an unread pipe
    could fill and block a chatty server); stderr is kept for :func:`wait_ok`'s early-exit report."""
    return subprocess.Popen([sys.executable, "-m", "regionblock", *args], cwd=ROOT, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
