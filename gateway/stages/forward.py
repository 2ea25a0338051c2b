"""Forward: call the provider (retries, circuit breaker, ``error`` failover), then pass its
answer through: whole, or as a stream of server-sent events metered as it passes.

The upstream's response timeout scales with the generation asked for: a non-streamed answer
arrives only once every token is generated, so ``max_tokens`` at ``min_tokens_per_s`` is added to
the base timeout (a 4,800-token answer at 81 tokens/s takes a minute). A stream's chunks are
bounded by the read timeout between two chunks instead.

A stream that breaks off upstream is broken off to the client too (an error event, then the
connection closes without the terminating chunk), never ended cleanly. A client that leaves
mid-stream is metered by tokens: the upstream's remaining events are read (without being sent)
for up to ``DRAIN_AFTER_CLIENT_GONE_S`` so its usage chunk gives the exact counts.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from gateway.config import UpstreamPolicy
from gateway.connection import ClientGone
from gateway.context import STREAM_BROKEN, STREAM_DONE, STREAM_GONE, Answer, ChatContext
from gateway.enforcement import RelayMemory
from gateway.errors import CircuitOpen, UpstreamError, UpstreamStatusError, error_body
from gateway.metering import SseMeter, usage_of_body
from gateway.metrics import Metrics
from gateway.routing import Target
from gateway.stages.policy import admit, failover, safe_headers
from gateway.upstream_client import UpstreamResponse
from gateway.upstreams import Upstreams
from gateway.validation import ChatRequest

CHAT_PATH = "/v1/chat/completions"
DRAIN_AFTER_CLIENT_GONE_S = 10.0
_SSE_HEADERS = [("content-type", "text/event-stream; charset=utf-8"), ("cache-control", "no-cache")]
#: Without max_tokens a provider may generate up to its limit; assume this many for the timeout.
_ASSUMED_TOKENS = 4096


class ForwardStage:
    def __init__(self, upstreams: Upstreams, metrics: Metrics, relays: RelayMemory,
                 policy: UpstreamPolicy, *, min_tokens_per_s: float) -> None:
        self.upstreams = upstreams
        self.metrics = metrics
        self.relays = relays
        self.policy = policy
        self.min_tokens_per_s = min_tokens_per_s

    async def __call__(self, ctx: ChatContext) -> None:
        chat, target = ctx.chat, ctx.target
        assert chat is not None and target is not None
        tried: set[str] = set()
        timeout = self.response_timeout(chat)
        while True:
            tried.add(target.provider.name)
            started = time.perf_counter()
            try:
                response = await self.upstreams.call(target.provider.name, CHAT_PATH,
                                                     upstream_body(ctx.req.body, chat, target),
                                                     response_timeout_s=timeout)
            except UpstreamError as exc:
                self.metrics.upstream_time(target.provider.name, time.perf_counter() - started)
                routed = failover(ctx, self.relays, target, "error")
                if routed is not None and routed[0].provider.name not in tried:
                    admit(ctx, *routed)
                    target = routed[0]
                    ctx.meter.path = "failover"
                    continue
                ctx.meter.upstream_ms = (time.perf_counter() - started) * 1000
                return upstream_failed(ctx, exc)
            break
        assert ctx.decision is not None
        ctx.response_headers += [*safe_headers(ctx.decision.headers),
                                 ("x-regionblock-provider", target.provider.name)]
        if ctx.meter.path != "direct":
            ctx.response_headers.append(("x-regionblock-path", ctx.meter.path))
        if chat.stream and response.status == 200:
            await self._stream(ctx, chat, target, response, started)
        else:
            await self._complete(ctx, target, response, started)

    def response_timeout(self, chat: ChatRequest) -> float:
        """Until the response head: the base, plus the whole generation when not streamed."""
        if chat.stream:
            return self.policy.response_timeout_s
        asked = chat.body.get("max_completion_tokens") or chat.body.get("max_tokens")
        tokens = asked if isinstance(asked, int) else _ASSUMED_TOKENS
        return self.policy.response_timeout_s + tokens / self.min_tokens_per_s

    async def _complete(self, ctx: ChatContext, target: Target, response: UpstreamResponse,
                        started: float) -> None:
        meter = ctx.meter
        try:
            body = await response.read()
        except UpstreamError as exc:
            meter.upstream_ms = (time.perf_counter() - started) * 1000
            return upstream_failed(ctx, exc)
        meter.upstream_ms = (time.perf_counter() - started) * 1000
        self.metrics.upstream_time(meter.provider, meter.upstream_ms / 1000)
        meter.status = response.status
        if response.status >= 400:
            meter.decision, meter.error = "failed", f"upstream_{response.status}"
        else:
            usage = usage_of_body(body)
            if usage is None:
                meter.error = "usage_missing"
            else:
                meter.tokens_in, meter.tokens_out = usage
        ctype = response.headers.get("content-type", "application/json")
        ctx.answer = Answer(response.status, [("content-type", ctype), *ctx.response_headers], body)

    async def _stream(self, ctx: ChatContext, chat: ChatRequest, target: Target,
                      response: UpstreamResponse, started: float) -> None:
        meter = ctx.meter
        meter.status = 200
        sse = SseMeter(keep_usage_chunk=chat.include_usage)
        ctx.writer.start(200, [*_SSE_HEADERS, *ctx.response_headers])
        ctx.stream_end = STREAM_DONE
        chunks = response.chunks()
        try:
            async for chunk in chunks:
                out = sse.feed(chunk)
                if out:
                    if meter.ttft_ms is None:
                        meter.ttft_ms = (time.perf_counter() - ctx.req.started) * 1000
                    await ctx.writer.write(out)
        except UpstreamError as exc:
            meter.decision, meter.error = "failed", exc.code
            ctx.stream_end = STREAM_BROKEN
        except ClientGone:
            meter.error = "client_disconnected"
            ctx.stream_end = STREAM_GONE
            await _drain(response, chunks, sse)
        if ctx.stream_end == STREAM_DONE and not sse.done:
            # The upstream ended its body without [DONE]: a truncated answer, not a complete one.
            meter.decision, meter.error = "failed", "upstream_truncated"
            ctx.stream_end = STREAM_BROKEN
        meter.upstream_ms = (time.perf_counter() - started) * 1000
        self.metrics.upstream_time(meter.provider, meter.upstream_ms / 1000)
        stream_usage(ctx, sse, target)


async def _drain(response: UpstreamResponse, chunks: AsyncIterator[bytes], sse: SseMeter) -> None:
    """Read the rest of the stream (not sent anywhere) for its usage chunk; bounded in time."""
    try:
        async with asyncio.timeout(DRAIN_AFTER_CLIENT_GONE_S):
            async for chunk in chunks:
                sse.feed(chunk)
                if sse.usage is not None:
                    break
    except (UpstreamError, TimeoutError):
        pass
    response.close()


def stream_usage(ctx: ChatContext, sse: SseMeter, target: Target) -> None:
    meter = ctx.meter
    if sse.usage is not None:
        meter.tokens_in, meter.tokens_out = sse.usage
    else:
        # No usage chunk: estimate from the chunks (all but the role and the finish chunk)
        # rather than record a silent zero; the error column flags the estimate.
        meter.tokens_out = max(1, sse.events - 2)
        if not meter.error:
            meter.error = "usage_missing"


def upstream_failed(ctx: ChatContext, exc: UpstreamError) -> None:
    """The answer when no upstream could serve: its own 5xx, or 502/503/504 of ours."""
    meter = ctx.meter
    if isinstance(exc, UpstreamStatusError):
        status, body = exc.status, exc.body
        ctype = dict(exc.headers).get("content-type", "application/json")
    else:
        status = 504 if "timeout" in exc.code else 503 if isinstance(exc, CircuitOpen) else 502
        body, ctype = error_body(f"upstream {meter.provider} failed: {exc}", type_="server_error",
                                 code=exc.code), "application/json"
    ctx.refuse(status, body, error=exc.code)
    assert ctx.answer is not None
    ctx.answer.headers[0] = ("content-type", ctype)


def upstream_body(raw: bytes, chat: ChatRequest, target: Target) -> bytes:
    """The body for the upstream: as received, unless the model or the usage option must change."""
    needs_usage = chat.stream and not chat.include_usage
    if not needs_usage and target.model.name == chat.model:
        return raw
    body = dict(chat.body)
    body["model"] = target.model.name
    if chat.stream:
        options = body.get("stream_options")
        body["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                  "include_usage": True}
    return json.dumps(body, ensure_ascii=False).encode()
