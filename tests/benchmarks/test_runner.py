"""python -m benchmarks: a benchmark's exit status says a missed target apart from a crash."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from benchmarks.__main__ import CRASHED, outcome


def _raises(exc: BaseException) -> None:
    raise exc


@pytest.mark.parametrize(("main", "status"), [
    (lambda: 0, 0),
    (lambda: None, 0),                               # a main that judges no target
    (lambda: 1, 1),                                  # a target missed
    (lambda: _raises(ValueError("boom")), CRASHED),
    (lambda: _raises(SystemExit("callgrind failed")), CRASHED),   # a message: it failed
    (lambda: _raises(SystemExit(2)), 2),             # argparse's usage error keeps its status
    (lambda: _raises(SystemExit(None)), 0),
])
def test_outcome(main: Callable[[], int | None], status: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert outcome(main) == status
    err = capsys.readouterr().err
    if status == CRASHED:
        assert ("boom" in err and "Traceback" in err) or err == "callgrind failed\n"
    else:
        assert err == ""
