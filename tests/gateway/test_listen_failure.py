"""A gateway that cannot listen says so in one line, exits 2 and leaves no empty ledger behind."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from regionblock.cli import main


def test_port_in_use_is_one_line_and_leaves_no_ledger(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    ledger = tmp_path / "ledger.sqlite"
    try:
        code = main(["gateway", "openai-2024-cn-hk", "--port", str(port), "--ledger", str(ledger),
                     "--insecure-org-keys"])
    finally:
        taken.close()
    err = capsys.readouterr().err
    assert code == 2
    assert err == f"gateway: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    assert list(tmp_path.iterdir()) == []


def test_an_existing_ledger_is_kept_when_the_port_is_taken(tmp_path: Path) -> None:
    """A ledger the gateway did not create (a restart onto yesterday's file) is never removed."""
    ledger = tmp_path / "ledger.sqlite"
    ledger.write_bytes(b"")   # SQLite takes an empty file as an empty database
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        assert main(["gateway", "openai-2024-cn-hk", "--port", str(taken.getsockname()[1]),
                     "--ledger", str(ledger), "--insecure-org-keys"]) == 2
    finally:
        taken.close()
    assert ledger.is_file()
