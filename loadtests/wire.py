"""What a load-test user puts on the wire, and how it reads what comes back.

Requests are OpenAI chat completions. The prompt of ``n`` tokens is one user message of exactly
``4·n`` characters, which the mock upstreams count as ``n`` prompt tokens (``ceil(chars / 4)``,
see ``gateway.mock_upstream_wire``); ``max_tokens`` asks for the completion tokens. Streamed
requests set ``stream_options.include_usage`` so the last chunk carries the usage.

A response is classified into the ledger's decisions, from what the client can see:

* 200: ``warn`` when the policy's warning header is present, else ``allow``; a stream that ends
  without ``data: [DONE]`` (or a body without usage) is ``failed``;
* a status the scenario's policy answers denials with (``403`` for ``openai_403``, ``451``,
  ``400`` for ``google_400_location``, ``429`` for throttles, custom statuses), *without* the
  gateway's ``x-regionblock-provider`` header (which only forwarded upstream answers carry):
  ``block`` or ``throttle``;
* anything else, including connection errors: ``failed``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from scenarios.policy import WARN_HEADER, build_response, stage_response
from scenarios.schema import Scenario

PROVIDER_HEADER = "x-regionblock-provider"
PATH_HEADER = "x-regionblock-path"
REQUEST_ID_HEADER = "x-request-id"
_FILLER = "lorem ipsum dolor sit amet consectetur adipiscing elit "

DECISIONS = ("allow", "warn", "throttle", "block", "failed")


def prompt_text(tokens: int) -> str:
    """A prompt of exactly ``4 * tokens`` characters (counted as ``tokens`` prompt tokens)."""
    chars = 4 * max(1, tokens)
    reps = chars // len(_FILLER) + 1
    return (_FILLER * reps)[:chars]


def chat_body(model: str, tokens_in: int, tokens_out: int, stream: bool) -> bytes:
    body: dict[str, object] = {
        "model": model,
        "messages": [{"role": "user", "content": prompt_text(tokens_in)}],
        "max_tokens": int(tokens_out),
        "stream": bool(stream),
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True)
class DenialStatuses:
    """HTTP statuses the scenario's policies deny with: by ``block`` and by ``throttle``."""

    block: frozenset[int]
    throttle: frozenset[int]

    @classmethod
    def of(cls, s: Scenario) -> DenialStatuses:
        block: set[int] = {403}
        throttle: set[int] = {429}
        for pol in s.policy.values():
            for st in pol.stages:
                spec = stage_response(st)
                if spec is not None:
                    status = build_response(spec, country="ZZ").status
                    (throttle if st.action == "throttle" else block).add(status)
            if pol.detection and pol.detection.response:
                block.add(build_response(pol.detection.response, country="ZZ").status)
        return cls(frozenset(block), frozenset(throttle))


def classify(status: int, headers: dict[str, str], denials: DenialStatuses, *,
             complete: bool) -> str:
    """The decision a response shows (``headers`` with lower-case names)."""
    if status == 200:
        if not complete:
            return "failed"
        return "warn" if WARN_HEADER in headers else "allow"
    if status == 0 or PROVIDER_HEADER in headers:
        return "failed"
    if status in denials.throttle and status not in denials.block:
        return "throttle"
    if status in denials.block:
        return "block"
    return "failed"


@dataclass
class StreamReading:
    """What reading a server-sent-events body found."""

    done: bool = False
    usage: tuple[int, int] | None = None
    first_content: bool = False


def read_sse_lines(lines: Iterable[bytes], on_first_content: object = None) -> StreamReading:
    """Follow ``data:`` events: whether ``[DONE]`` came, the usage, and the first content.

    ``on_first_content`` (a callable, if given) is called once, when the first chunk with
    non-empty delta content arrives: that instant is the time to first token.
    """
    out = StreamReading()
    for raw in lines:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            out.done = True
            continue
        try:
            event = json.loads(data)
        except ValueError:
            continue
        if not out.first_content and _has_content(event):
            out.first_content = True
            if callable(on_first_content):
                on_first_content()
        usage = event.get("usage") if isinstance(event, dict) else None
        if isinstance(usage, dict):
            out.usage = (int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)))
    return out


def _has_content(event: object) -> bool:
    if not isinstance(event, dict):
        return False
    for choice in event.get("choices") or ():
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict) and delta.get("content"):
            return True
    return False


def usage_of(body: bytes) -> tuple[int, int] | None:
    """(prompt, completion) tokens of a whole chat.completion body, or None."""
    try:
        usage = json.loads(body).get("usage")
    except (ValueError, AttributeError):
        return None
    if not isinstance(usage, dict):
        return None
    return int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
