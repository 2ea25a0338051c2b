"""Every listening socket bound before anything serves (gateway.listeners)."""

from __future__ import annotations

import socket

import pytest

from gateway.listeners import bound_port, listen, listen_all
from gateway.mock_upstream_errors import ListenError


def _free_pair() -> int:
    """A base port P with P and P+1 free right now (bound and released)."""
    for _ in range(100):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            base = a.getsockname()[1]
            if base >= 65535:
                continue
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", base + 1))
                except OSError:
                    continue
        return int(base)
    raise RuntimeError("no two consecutive free ports")


def test_a_taken_port_closes_every_socket_already_bound_and_names_itself() -> None:
    base = _free_pair()
    with socket.create_server(("127.0.0.1", base + 1)):
        with pytest.raises(ListenError) as caught:
            listen_all("127.0.0.1", [(base, "first"), (base + 1, "second"), (0, "third")])
        assert str(caught.value) == (f"127.0.0.1:{base + 1} (second) is already in use; "
                                     "choose another --base-port")
    # the first port was bound, then released again: it can be bound now
    with listen("127.0.0.1", base, "again") as sock:
        assert bound_port(sock) == base


def test_every_socket_listens_in_the_order_asked() -> None:
    socks = listen_all("127.0.0.1", [(0, "a"), (0, "b"), (0, "c")])
    try:
        ports = [bound_port(s) for s in socks]
        assert len(set(ports)) == 3
        for port in ports:   # a connection is accepted by the kernel before anything serves
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                pass
    finally:
        for s in socks:
            s.close()


def test_an_address_that_cannot_be_had_is_one_line() -> None:
    with pytest.raises(ListenError, match=r"^192\.0\.2\.1:80 \(x\): cannot listen: "):
        listen("192.0.2.1", 80, "x")   # TEST-NET-1: not an address of this machine
