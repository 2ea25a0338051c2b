"""Listening sockets for a set of servers, all bound before any of them serves.

``regionblock upstreams`` runs 23 servers on consecutive ports (providers, the relay, the WAN
paths). Bound one by one as each server starts, a port taken late in the range was found only
after the first servers already answered — and after the GeoIP tables had loaded, a second in
which any other process could take one of the remaining ports. :func:`listen_all` binds every
address at once, first, so either all the servers listen or none does, with one line naming the
first address that could not be had.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence

from gateway.mock_upstream_errors import ListenError

#: Listen backlog of every mock server (the gateway's own is 4096 too).
BACKLOG = 4096


def listen(host: str, port: int, name: str) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0: any free port), or ListenError naming ``name``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=BACKLOG)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ListenError(f"{host}:{port} ({name}) is already in use; "
                              "choose another --base-port") from exc
        raise ListenError(f"{host}:{port} ({name}): cannot listen: {exc.strerror}") from exc


def listen_all(host: str, wanted: Sequence[tuple[int, str]]) -> list[socket.socket]:
    """One listening socket per (port, name), in order; on the first that fails, every socket
    already bound is closed again and its ListenError raised."""
    out: list[socket.socket] = []
    try:
        for port, name in wanted:
            out.append(listen(host, port, name))
    except BaseException:
        for sock in out:
            sock.close()
        raise
    return out


def bound_port(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])
