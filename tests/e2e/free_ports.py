"""Free loopback ports for end-to-end tests that start real servers."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port the kernel says is free right now (bound to port 0 and released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_run(n: int) -> int:
    """A base port with ``n`` consecutive free ports after it (bound and released to check)."""
    for _ in range(50):
        base = free_port()
        if base + n <= 65535 and all(is_free(base + i) for i in range(n)):
            return base
    raise RuntimeError(f"no run of {n} free ports found")


def is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
