"""A small OpenAI-compatible fake upstream for in-process gateway tests (aiohttp test server).

One server plays every provider: the gateway is pointed at ``http://host:port/p/<provider>``.
Token rule (the mock upstreams' contract): prompt tokens = max(1, characters of all message
contents // 4); output tokens = ``max_tokens`` (default 16). A stream sends a role chunk, one
chunk per output token, a finish chunk, the usage chunk if asked, then ``data: [DONE]``.
Faults are set per provider in ``FakeUpstream.faults``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

DEFAULT_MAX_TOKENS = 16


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    chars = sum(len(m.get("content") or "") for m in messages if isinstance(m.get("content"), str))
    return max(1, chars // 4)


@dataclass
class Faults:
    fail_next: int = 0  # answer this many requests with ``status``
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)  # sent with those answers
    reset_next: int = 0  # close the connection without answering
    omit_usage: bool = False
    stall_s: float = 0.0  # wait before answering
    chunk_delay_s: float = 0.0  # wait between streamed tokens
    die_after_tokens: int = -1  # stream: drop the connection after this many tokens (-1 never)
    token_text: str = "x"  # the content of each streamed token


@dataclass
class FakeUpstream:
    faults: dict[str, Faults] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/p/{provider}/v1/chat/completions", self.chat)
        return app

    async def chat(self, request: web.Request) -> web.StreamResponse:
        provider = request.match_info["provider"]
        body = await request.json()
        self.calls.append((provider, body))
        fault = self.faults.setdefault(provider, Faults())
        if fault.stall_s:
            await asyncio.sleep(fault.stall_s)
        if fault.reset_next:
            fault.reset_next -= 1
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        if fault.fail_next:
            fault.fail_next -= 1
            return web.json_response({"error": {"message": "injected", "type": "server_error",
                                                "param": None, "code": None}}, status=fault.status,
                                     headers=fault.headers)
        tin = prompt_tokens(body["messages"])
        tout = body.get("max_tokens") or DEFAULT_MAX_TOKENS
        usage = {"prompt_tokens": tin, "completion_tokens": tout, "total_tokens": tin + tout}
        if body.get("stream"):
            return await self._stream(request, body, usage, fault)
        out: dict[str, Any] = {
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 1720483200,
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "x" * tout},
                         "finish_reason": "length"}]}
        if not fault.omit_usage:
            out["usage"] = usage
        return web.json_response(out)

    async def _stream(self, request: web.Request, body: dict[str, Any], usage: dict[str, int],
                      fault: Faults) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        include = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            obj: dict[str, Any] = {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                                   "created": 1720483200, "model": body["model"],
                                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            if include:
                obj["usage"] = None
            return b"data: " + json.dumps(obj).encode() + b"\n\n"

        await resp.write(chunk({"role": "assistant", "content": ""}))
        for i in range(usage["completion_tokens"]):
            if i == fault.die_after_tokens:
                assert request.transport is not None
                request.transport.abort()  # the upstream dies mid-stream
                return resp
            await resp.write(chunk({"content": fault.token_text}))
            if fault.chunk_delay_s:
                await asyncio.sleep(fault.chunk_delay_s)
        await resp.write(chunk({}, "length"))
        if include and not fault.omit_usage:
            final = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1720483200,
                     "model": body["model"], "choices": [], "usage": usage}
            await resp.write(b"data: " + json.dumps(final).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp
