"""Every listening socket bound before anything serves (gateway.listeners)."""

from __future__ import annotations

import socket

import pytest

from gateway.listeners import bound_port, listen, listen_all
from gateway.mock_upstream_errors import ListenError


def test_a_taken_port_closes_every_socket_already_bound_and_names_itself() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:   # a port free once the probe closes
        first = probe.getsockname()[1]
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ListenError) as caught:
            listen_all("127.0.0.1", [(first, "first"), (port, "second"), (0, "third")])
        assert str(caught.value) == (f"127.0.0.1:{port} (second) is already in use; "
                                     "choose another --base-port")
    # the first port was bound, then released again: it can be bound now
    with listen("127.0.0.1", first, "again") as sock:
        assert bound_port(sock) == first


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
