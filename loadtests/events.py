"""The load test's own record of what its users did: one JSON object per line, per process.

Each Locust process writes ``events-<pid>.jsonl`` into the run's events directory:

* ``{"k": "req", ...}`` one per request sent (:class:`RequestRecord`): the intended, actual and
  finishing wall instants, the decision the response showed, the gateway's ``x-request-id``;
* ``{"k": "state", ...}`` one per behaviour transition (organisation, scenario instant, state);
* ``{"k": "user", ...}`` when a user starts (which organisation it plays).

The orchestrator tails these files for its progress line and reads them whole afterwards to
reconcile with the gateway's ledger and to build the timeseries. Lines are flushed as written, so
a reader sees every finished request; a torn last line (a process killed mid-write) is skipped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any


@dataclass(frozen=True, slots=True)
class RequestRecord:
    id: str  # the gateway's x-request-id ("" when no response came back)
    client_id: str  # ours: run, user index, sequence number
    user: int
    org: str
    region: str
    segment: str
    provider: str  # where the user meant the request to go (the gateway may fail over)
    path: str  # direct | relay, as the user sent it
    model: str
    stream: bool
    attempt: int  # 0 first try, 1.. retries
    intended: float  # wall instant the open-model schedule meant it to be sent
    sent: float
    done: float
    status: int
    decision: str
    tokens_in: int  # asked for
    tokens_out: int
    usage_in: int  # what the response's usage said (-1 none)
    usage_out: int
    ttft_ms: float | None
    served_by: str  # x-regionblock-provider ("" if absent)
    error: str

    @property
    def latency_ms(self) -> float:
        """From the intended send instant: a late send counts against the system (no CO)."""
        return (self.done - self.intended) * 1000


@dataclass(frozen=True, slots=True)
class StateRecord:
    user: int
    org: str
    region: str
    at: str  # scenario instant, ISO-8601 Z
    state: str
    provider: str


class EventWriter:
    """Appends records to this process's file; a no-op writer when ``directory`` is empty."""

    def __init__(self, directory: str) -> None:
        self._fh: IO[str] | None = None
        if directory:
            Path(directory).mkdir(parents=True, exist_ok=True)
            path = Path(directory) / f"events-{os.getpid()}.jsonl"
            self._fh = path.open("a", encoding="utf-8", buffering=1)  # line-buffered

    def request(self, rec: RequestRecord) -> None:
        self._write({"k": "req", **asdict(rec)})

    def state(self, rec: StateRecord) -> None:
        self._write({"k": "state", **asdict(rec)})

    def user(self, index: int, org: str, start: float) -> None:
        self._write({"k": "user", "user": index, "org": org, "start": start})

    def done(self, index: int, at: float) -> None:
        self._write({"k": "done", "user": index, "at": at})

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _write(self, obj: dict[str, Any]) -> None:
        if self._fh is not None:
            self._fh.write(json.dumps(obj, separators=(",", ":")) + "\n")


@dataclass
class Events:
    requests: list[RequestRecord]
    states: list[StateRecord]
    users: dict[int, str]


def iter_lines(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.endswith("\n"):
                return  # a torn last line
            try:
                yield json.loads(line)
            except ValueError:
                continue


def read_events(directory: Path) -> Events:
    """Every record of every process file in ``directory``."""
    out = Events([], [], {})
    for path in sorted(directory.glob("events-*.jsonl")):
        for obj in iter_lines(path):
            kind = obj.pop("k", "")
            if kind == "req":
                out.requests.append(RequestRecord(**obj))
            elif kind == "state":
                out.states.append(StateRecord(**obj))
            elif kind == "user":
                out.users[int(obj["user"])] = str(obj["org"])
    out.requests.sort(key=lambda r: (r.intended, r.user, r.attempt))
    return out


class Tail:
    """Counts new request records as they are appended (for the progress line)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._offsets: dict[Path, int] = {}

    def poll(self) -> list[dict[str, Any]]:
        new: list[dict[str, Any]] = []
        for path in sorted(self.directory.glob("events-*.jsonl")):
            start = self._offsets.get(path, 0)
            with path.open("rb") as fh:
                fh.seek(start)
                data = fh.read()
            end = data.rfind(b"\n") + 1
            self._offsets[path] = start + end
            for line in data[:end].splitlines():
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if obj.get("k") == "req":
                    new.append(obj)
        return new


def count_records(directory: Path, kind: str) -> int:
    """How many ``{"k": kind}`` records (``user``: users started, ``done``: finished) so far."""
    if not directory.is_dir():
        return 0
    prefix = f'{{"k":"{kind}"'.encode()
    n = 0
    for path in directory.glob("events-*.jsonl"):
        with path.open("rb") as fh:
            n += sum(1 for line in fh if line.startswith(prefix))
    return n
