"""Forward: call the provider (retries, circuit breaker, ``error`` failover), then pass its
answer through: whole, or as a stream of server-sent events metered as it passes.

One forward loop serves every endpoint (:meth:`ForwardStage.forward`): chat completions (this
module's :class:`ChatCall`) and the other OpenAI endpoints (``gateway.endpoints.EndpointCall``).
What differs between them is a :class:`Call`: the upstream path and body, the failover to an
alternative of the same kind, how the usage reads and how a stream ends.

The upstream's response timeout for chat scales with the generation asked for: a non-streamed
answer arrives only once every token is generated, so ``max_tokens`` at ``min_tokens_per_s`` is
added to the base timeout (a 4,800-token answer at 81 tokens/s takes a minute). A stream's chunks
are bounded by the read timeout between two chunks instead.

A provider's own answer (a 4xx, or a 5xx once retries are spent) reaches the client with its
status, body, content type and its ``Retry-After`` / ``retry-after-ms`` (what clients back off by).

A stream that breaks off upstream is broken off to the client too (an error event, then the
connection closes without the terminating chunk), never ended cleanly. A client that leaves
mid-stream is metered by tokens: the upstream's remaining events are read (without being sent)
for up to ``DRAIN_AFTER_CLIENT_GONE_S`` so its usage chunk gives the exact counts.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Protocol

from gateway.config import UpstreamPolicy
from gateway.connection import ClientGone
from gateway.context import STREAM_BROKEN, STREAM_DONE, STREAM_GONE, Answer, ChatContext, Headers
from gateway.enforcement import RelayMemory
from gateway.errors import CircuitOpen, UpstreamError, UpstreamStatusError, error_body
from gateway.http11 import safe_header_value
from gateway.metering import SseMeter, usage_of_body
from gateway.metrics import Metrics
from gateway.routing import Target
from gateway.stages.policy import admit, failover, safe_headers
from gateway.upstream_client import UpstreamResponse
from gateway.upstreams import Upstreams
from gateway.validation import ChatRequest
from scenarios.policy import Decision

CHAT_PATH = "/v1/chat/completions"
DRAIN_AFTER_CLIENT_GONE_S = 10.0
SSE_HEADERS = (("content-type", "text/event-stream; charset=utf-8"), ("cache-control", "no-cache"))
#: The provider's headers a client needs to see on its answer: when to retry.
PASSED_THROUGH = ("retry-after", "retry-after-ms")
#: Without max_tokens a provider may generate up to its limit; assume this many for the timeout.
_ASSUMED_TOKENS = 4096


class StreamMeter(Protocol):
    """Reads a stream as it passes (``gateway.metering.SseMeter``, ``endpoints.EventMeter``)."""

    usage: tuple[int, int] | None
    done: bool
    final: bytes  # what ends the stream once the row is durable

    def feed(self, data: bytes) -> bytes: ...

    def estimate_out(self) -> int | None: ...


class Call(Protocol):
    """What one endpoint's forwarding needs to know (the rest is :meth:`ForwardStage.forward`)."""

    path: str

    def body(self, ctx: ChatContext, target: Target) -> bytes:
        """The upstream request body for ``target`` (which may be a failover's)."""

    def alternative(self, ctx: ChatContext, origin: Target) -> tuple[Target, Decision] | None:
        """The ``error`` failover: the first alternative that admits the request, if any."""

    def usage(self, body: bytes) -> tuple[int, int] | None:
        """(input, output) tokens of a whole answer; None if it carries none."""

    def stream_meter(self, ctx: ChatContext) -> StreamMeter: ...


class ForwardStage:
    def __init__(self, upstreams: Upstreams, metrics: Metrics, relays: RelayMemory,
                 policy: UpstreamPolicy, *, min_tokens_per_s: float) -> None:
        self.upstreams = upstreams
        self.metrics = metrics
        self.relays = relays
        self.policy = policy
        self.min_tokens_per_s = min_tokens_per_s
        self.chat = ChatCall(relays)

    def __call__(self, ctx: ChatContext) -> Awaitable[None]:
        chat = ctx.chat
        assert chat is not None
        return self.forward(ctx, self.chat, chat.stream, self.response_timeout(chat))

    def response_timeout(self, chat: ChatRequest) -> float:
        """Until the response head: the base, plus the whole generation when not streamed."""
        if chat.stream:
            return self.policy.response_timeout_s
        asked = chat.body.get("max_completion_tokens") or chat.body.get("max_tokens")
        tokens = asked if isinstance(asked, int) else _ASSUMED_TOKENS
        return self.policy.response_timeout_s + tokens / self.min_tokens_per_s

    async def forward(self, ctx: ChatContext, call: Call, stream: bool,
                      timeout: float | None = None) -> None:
        """The request to its admitted target (``ctx.target``), failing over on errors; the answer
        (whole, in ``ctx.answer``) or the stream, metered."""
        target = ctx.target
        assert target is not None
        meter = ctx.meter
        tried: set[str] = set()
        while True:
            name = target.provider_name
            tried.add(name)
            started = time.perf_counter()
            try:
                response = await self.upstreams.call(name, call.path, call.body(ctx, target),
                                                     response_timeout_s=timeout)
            except UpstreamError as exc:
                self.metrics.upstream_time(name, time.perf_counter() - started)
                routed = call.alternative(ctx, target)
                if routed is not None and routed[0].provider_name not in tried:
                    admit(ctx, *routed)
                    target = routed[0]
                    meter.path = "failover"
                    continue
                meter.upstream_ms = (time.perf_counter() - started) * 1000
                return upstream_failed(ctx, exc)
            break
        decision = ctx.decision
        assert decision is not None
        headers = ctx.response_headers
        if decision.headers:
            headers += safe_headers(decision.headers)
        headers.append(("x-regionblock-provider", name))
        if meter.path != "direct":
            headers.append(("x-regionblock-path", meter.path))
        if stream and response.status == 200:
            return await self._stream(ctx, call, response, started)
        body = response.body_now()
        if body is None:
            try:
                body = await response.read()
            except UpstreamError as exc:
                meter.upstream_ms = (time.perf_counter() - started) * 1000
                return upstream_failed(ctx, exc)
        meter.upstream_ms = ms = (time.perf_counter() - started) * 1000
        self.metrics.upstream_time(name, ms / 1000)
        status = meter.status = response.status
        upstream = response.headers
        if status >= 400:
            meter.decision, meter.error = "failed", f"upstream_{status}"
            headers += passed_through(upstream)
        else:
            usage = call.usage(body)
            if usage is None:
                meter.error = "usage_missing"
            else:
                meter.tokens_in, meter.tokens_out = usage
        ctx.answer = Answer(status, [("content-type", upstream.get("content-type",
                                                                   "application/json")),
                                     *headers], body)

    async def _stream(self, ctx: ChatContext, call: Call, response: UpstreamResponse,
                      started: float) -> None:
        meter = ctx.meter
        meter.status = 200
        sse = call.stream_meter(ctx)
        ctx.writer.start(200, [*SSE_HEADERS, *ctx.response_headers])
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
            # The upstream ended its body without its end: a truncated answer, not a complete one.
            meter.decision, meter.error = "failed", "upstream_truncated"
            ctx.stream_end = STREAM_BROKEN
        meter.upstream_ms = (time.perf_counter() - started) * 1000
        self.metrics.upstream_time(meter.provider, meter.upstream_ms / 1000)
        stream_usage(ctx, sse)
        ctx.stream_last = sse.final  # sent by the meter stage once the row is durable


class ChatCall:
    """Chat completions: the body as received unless the model changes or the usage chunk must
    be asked for; ``error`` failover by the scenario's rules; usage from the body or the stream."""

    path = CHAT_PATH

    def __init__(self, relays: RelayMemory) -> None:
        self.relays = relays

    def body(self, ctx: ChatContext, target: Target) -> bytes:
        assert ctx.chat is not None
        return upstream_body(ctx.req.body, ctx.chat, target)

    def alternative(self, ctx: ChatContext, origin: Target) -> tuple[Target, Decision] | None:
        return failover(ctx, self.relays, origin, "error")

    def usage(self, body: bytes) -> tuple[int, int] | None:
        return usage_of_body(body)

    def stream_meter(self, ctx: ChatContext) -> StreamMeter:
        assert ctx.chat is not None
        return SseMeter(keep_usage_chunk=ctx.chat.include_usage)


async def _drain(response: UpstreamResponse, chunks: AsyncIterator[bytes],
                 sse: StreamMeter) -> None:
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


def stream_usage(ctx: ChatContext, sse: StreamMeter) -> None:
    meter = ctx.meter
    if sse.usage is not None:
        meter.tokens_in, meter.tokens_out = sse.usage
        return
    # No usage: estimate from the chunks where the stream allows it (chat-style chunks) rather
    # than record a silent zero; the error column flags the estimate (or the missing usage).
    estimate = sse.estimate_out()
    if estimate is not None:
        meter.tokens_out = estimate
    if not meter.error:
        meter.error = "usage_missing"


def passed_through(upstream: Mapping[str, str]) -> Headers:
    """The provider's headers that go on our answer (``PASSED_THROUGH``), made safe to send."""
    return [(name, safe_header_value(upstream[name])) for name in PASSED_THROUGH
            if name in upstream]


def upstream_failed(ctx: ChatContext, exc: UpstreamError) -> None:
    """The answer when no upstream could serve: its own 5xx, or 502/503/504 of ours."""
    meter = ctx.meter
    if isinstance(exc, UpstreamStatusError):
        status, body = exc.status, exc.body
        upstream = dict(exc.headers)
        ctype = upstream.get("content-type", "application/json")
        extra = passed_through(upstream)
    else:
        status = 504 if "timeout" in exc.code else 503 if isinstance(exc, CircuitOpen) else 502
        body, ctype = error_body(f"upstream {meter.provider} failed: {exc}", type_="server_error",
                                 code=exc.code), "application/json"
        extra = []
    ctx.refuse(status, body, error=exc.code, headers=extra)
    assert ctx.answer is not None
    ctx.answer.headers[0] = ("content-type", ctype)


def upstream_body(raw: bytes, chat: ChatRequest, target: Target) -> bytes:
    """The body for the upstream: as received, unless the model or the usage option must change."""
    needs_usage = chat.stream and not chat.include_usage
    if not needs_usage and target.model_name == chat.model:
        return raw
    body = dict(chat.body)
    body["model"] = target.model_name
    if chat.stream:
        options = body.get("stream_options")
        body["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                  "include_usage": True}
    return json.dumps(body, ensure_ascii=False).encode()
