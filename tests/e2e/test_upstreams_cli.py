"""``regionblock upstreams`` as a real process, driven by the official openai SDK."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import READY_DEADLINE_S, free_run, wait_ok
from openai import APIConnectionError, OpenAI
from openai.types.chat import ChatCompletionMessageParam

from gateway.mock_upstream_wire import filler
from regionblock import cli

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = "openai-2024-cn-hk"
SERVERS = 7  # six providers and the relay
WAN_PATHS = 16  # then a direct and a relay WAN path for each of the eight regions


@pytest.fixture
def upstreams() -> Iterator[tuple[int, subprocess.Popen[str]]]:
    base = free_run(SERVERS + WAN_PATHS)
    proc = subprocess.Popen(
        [sys.executable, "-m", "regionblock", "upstreams", SCENARIO, "--base-port", str(base),
         "--time-scale", "1000", "--relay-target", f"http://127.0.0.1:{base}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_ok(f"http://127.0.0.1:{base}/healthz", proc)
        wait_ok(f"http://127.0.0.1:{base + SERVERS - 1}/__relay/healthz", proc)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_openai_sdk_against_a_mock_upstream(upstreams: tuple[int, subprocess.Popen[str]]) -> None:
    base, proc = upstreams
    client = OpenAI(base_url=f"http://127.0.0.1:{base}/v1", api_key="sk-us-startup-000001",
                    max_retries=0, timeout=10)
    # 30 characters: ceil(30 / 4) = 8 prompt tokens
    messages: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "What is the capital of France?"}]

    completion = client.chat.completions.create(model="gpt-4o", messages=messages, max_tokens=12)
    assert completion.choices[0].message.content == filler(0, 12)
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens,
            completion.usage.total_tokens) == (8, 12, 20)

    stream = client.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=40,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == filler(0, 40)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"  # ran to max_tokens
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (8, 40)

    # Through the relay (pointed at the openai upstream itself): the same stream, intact.
    via_relay = OpenAI(base_url=f"http://127.0.0.1:{base + SERVERS - 1}/v1",
                       api_key="sk-cn-startup-000001", max_retries=0, timeout=10)
    relayed = list(via_relay.chat.completions.create(
        model="gpt-4o", messages=messages, max_tokens=25, stream=True,
        stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in relayed if c.choices) == filler(0, 25)
    assert relayed[-1].usage is not None and relayed[-1].usage.completion_tokens == 25

    # Through CN's direct WAN path (to --relay-target, here the openai upstream): intact.
    via_wan = OpenAI(base_url=f"http://127.0.0.1:{base + SERVERS}/v1",
                     api_key="sk-cn-startup-000001", max_retries=0, timeout=10)
    wan_stream = list(via_wan.chat.completions.create(
        model="gpt-4o", messages=messages, max_tokens=30, stream=True,
        stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in wan_stream if c.choices) == filler(0, 30)

    # Runtime fault injection: every request now ends in a TCP reset.
    put = urllib.request.Request(f"http://127.0.0.1:{base}/admin/faults", method="PUT",
                                 data=b'{"reset_rate": 1.0}')
    with urllib.request.urlopen(put, timeout=5) as resp:
        assert resp.status == 200
    with pytest.raises(APIConnectionError):
        client.chat.completions.create(model="gpt-4o", messages=messages, max_tokens=1)

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=READY_DEADLINE_S) == 0
    out = proc.stdout.read() if proc.stdout else ""
    lines = out.splitlines()
    assert lines[0] == (f"openai    http://127.0.0.1:{base}  (gpt-4o, gpt-4-turbo, gpt-3.5-turbo, "
                        "gpt-4o-mini, text-embedding-3-small, text-embedding-3-large, "
                        "gpt-3.5-turbo-instruct, omni-moderation-latest)")
    assert lines[6].startswith(f"relay     http://127.0.0.1:{base + 6}  -> http://127.0.0.1:{base}  ")
    assert lines[SERVERS] == (f"wan CN/direct  http://127.0.0.1:{base + SERVERS}  -> "
                              f"127.0.0.1:{base}  (round trip 227 ms mean)")
    assert lines[SERVERS + 1] == (f"wan CN/relay   http://127.0.0.1:{base + SERVERS + 1}  -> "
                                  f"127.0.0.1:{base + 6}  (round trip 366 ms mean)")
    assert len(lines) == SERVERS + WAN_PATHS


def test_a_taken_port_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["upstreams", SCENARIO, "--base-port", str(port)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"upstreams: 127.0.0.1:{port} (openai) is already in use; "
                            "choose another --base-port\n")


def test_a_taken_wan_path_port_fails_before_any_server_starts(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The last of the 23 ports taken: one line naming it, exit 2, and no provider ever served
    (every port is bound before any server starts)."""
    from regionblock.commands import upstreams as command

    started: list[str] = []

    def spy(*args: object, **kwargs: object) -> object:   # pragma: no cover - must not run
        started.append("start_upstreams")
        raise AssertionError("a server started before every port was bound")

    monkeypatch.setattr(command, "start_upstreams", spy)
    base = free_run(SERVERS + WAN_PATHS)
    last = base + SERVERS + WAN_PATHS - 1
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", last))
        taken.listen()
        assert cli.main(["upstreams", SCENARIO, "--base-port", str(base)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"upstreams: 127.0.0.1:{last} (WAN path DE/relay) is already in use; "
                            "choose another --base-port\n")
    assert started == []
    # and every port bound before it was released again
    for port in range(base, last):
        with socket.socket() as again:
            again.bind(("127.0.0.1", port))
