"""The gateway's other OpenAI endpoints, through the same stages as chat completions.

``POST /v1/completions``, ``POST /v1/embeddings``, ``POST /v1/responses`` and
``POST /v1/moderations`` (free: no usage, nothing billed) run the chat
pipeline's stages in the same order, reusing the :class:`gateway.app.Gateway`'s own pieces:

    admission → client address → region → identity → request validation (per endpoint)
    → model (of the endpoint's kind) → policy (with failover to a model of the same kind)
    → upstream (the chat pipeline's own forward loop, ``ForwardStage.forward``: retries,
      breaker, error failover, whole or streamed answers) → meter (usage, revenue, ledger)

Per endpoint, only three things differ, gathered in an :class:`Endpoint`: the kind of model it
serves (``Model.kind``), how its usage reads (``prompt_tokens``/``completion_tokens``,
embeddings' ``prompt_tokens`` alone, the Responses API's ``input_tokens``/``output_tokens``) and
how its stream ends (``data: [DONE]``, or the Responses API's terminal ``response.completed``
event). Revenue is the ledger contract's
(:func:`scenarios.ledger.revenue_usd`, billed by the meter stage) at the served model's list price; an
embedding model has ``price_out: 0``, so embeddings are billed by input tokens alone.

``GET /v1/models`` lists every model on sale at the scenario's clock (chat and other kinds), and
``GET /v1/models/{model}`` returns one, or the real API's 404.

A stream's terminal event (``[DONE]``, ``response.completed``…) is held back until the ledger
row is durable, as for chat.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from gateway.context import ChatContext
from gateway.enforcement import admitting_target, decide
from gateway.errors import BadRequest, ClientError, NotFound
from gateway.identity import Identity
from gateway.metering import SseMeter, usage_from
from gateway.region import ClientRegion
from gateway.routing import Target
from gateway.stages.forward import StreamMeter
from gateway.stages.policy import admit, deny
from gateway.validation import JSON_MESSAGE
from scenarios.policy import Decision

if TYPE_CHECKING:
    from gateway.app import Gateway
    from gateway.connection import ResponseWriter
    from gateway.http11 import Request
    from gateway.runtime import Runtime

_JSON = ("content-type", "application/json")
MODELS_PATH = "/v1/models"
RELAY_VIA = "regionblock-relay"  # the relay's Via token (gateway.app.RELAY_VIA)


@dataclass(frozen=True, slots=True)
class Parsed:
    """What the gateway needs of a request body: the JSON, the model, the stream options."""

    body: dict[str, Any]
    model: str
    stream: bool
    include_usage: bool


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One OpenAI endpoint the gateway forwards: its path, label, model kind and metering."""

    path: str
    label: str  # the metrics' ``endpoint`` label
    kind: str  # Model.kind it serves
    required: str  # the body field it cannot do without
    usage: Callable[[Any], tuple[int, int] | None]
    #: How a successful stream ends: ``data: [DONE]`` after chat-style chunks (whose usage chunk
    #: the gateway asks for), or the Responses API's terminal event that carries the usage.
    stream_end: Literal["done", "event"]
    default_model: str = ""  # what an absent ``model`` means ("": the model is required)


def _usage_embeddings(obj: Any) -> tuple[int, int] | None:
    usage = obj.get("usage") if isinstance(obj, dict) else None
    tin = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return (tin, 0) if isinstance(tin, int) and tin >= 0 else None


def _usage_moderations(obj: Any) -> tuple[int, int] | None:
    """Moderation is free and reports no usage: a well-formed answer bills nothing."""
    return (0, 0) if isinstance(obj, dict) and isinstance(obj.get("results"), list) else None


def _usage_responses(obj: Any) -> tuple[int, int] | None:
    if isinstance(obj, dict) and isinstance(obj.get("response"), dict):
        obj = obj["response"]  # a stream's terminal event carries the response
    usage = obj.get("usage") if isinstance(obj, dict) else None
    if not isinstance(usage, dict):
        return None
    tin, tout = usage.get("input_tokens"), usage.get("output_tokens")
    if isinstance(tin, int) and isinstance(tout, int) and tin >= 0 and tout >= 0:
        return tin, tout
    return None


ENDPOINTS = {e.path: e for e in (
    Endpoint("/v1/completions", "completions", "completion", "prompt", usage_from, "done"),
    Endpoint("/v1/embeddings", "embeddings", "embedding", "input", _usage_embeddings, "done"),
    Endpoint("/v1/responses", "responses", "chat", "input", _usage_responses, "event"),
    Endpoint("/v1/moderations", "moderations", "moderation", "input", _usage_moderations, "done",
             default_model="omni-moderation-latest"),
)}
#: The Responses API's last stream events: the response in its final state.
_TERMINAL = (b'"type":"response.completed"', b'"type":"response.incomplete"',
             b'"type":"response.failed"')


# ---------------------------------------------------------------- models


def handle_models(gw: Gateway, req: Request, writer: ResponseWriter) -> None:
    """``GET /v1/models`` and ``GET /v1/models/{model}``."""
    now = gw.runtime.clock.scenario_at(req.wall_time)
    targets = _on_sale(gw.runtime, now)
    if req.path == MODELS_PATH:
        data = [_model_object(t) for t in targets.values()]
        return writer.send(200, [_JSON], json.dumps({"object": "list", "data": data}).encode())
    name = req.path.removeprefix(MODELS_PATH + "/")
    target = targets.get(name)
    if target is None:
        exc = NotFound(f"The model '{name}' does not exist", code="model_not_found", param="model")
        return writer.send(404, [_JSON], exc.body())
    writer.send(200, [_JSON], json.dumps(_model_object(target)).encode())


def _model_object(t: Target) -> dict[str, Any]:
    return {"id": t.model.name, "object": "model", "created": 0, "owned_by": t.provider.name}


def _on_sale(rt: Runtime, now: dt.datetime) -> dict[str, Target]:
    """Every model on sale at ``now``, by name: the chat catalog, then the other kinds."""
    out = {t.model.name: t for t in rt.catalog.models(now)}
    for provider in rt.loaded.scenario.providers:
        for model in provider.other_models:
            if model.available_from is None or model.available_from <= now:
                out.setdefault(model.name, Target(provider, model))
    return out


def _lookup(rt: Runtime, name: str, kind: str, now: dt.datetime) -> Target:
    target = _on_sale(rt, now).get(name)
    if target is None:
        raise NotFound(f"The model `{name}` does not exist or you do not have access to it.",
                       code="model_not_found", param="model")
    if target.model.kind != kind:
        raise _wrong_kind(name, target.model.kind, kind)
    return target


def chat_target(rt: Runtime, name: str, now: dt.datetime) -> Target:
    """The target of a chat-completions request (the chat pipeline's model stage)."""
    target = rt.catalog.lookup(name, now)
    return target if target is not None else _lookup(rt, name, "chat_completions", now)


def _wrong_kind(name: str, has: str, wants: str) -> ClientError:
    if has == "chat" and wants == "completion":
        return NotFound("This is a chat model and not supported in the v1/completions endpoint. "
                        "Did you mean to use v1/chat/completions?", code=None, param="model")
    if wants == "chat_completions":
        return NotFound("This is not a chat model and thus not supported in the "
                        "v1/chat/completions endpoint. Did you mean to use v1/completions?",
                        code=None, param="model")
    endpoint = {"embedding": "the v1/embeddings endpoint", "completion": "the v1/completions endpoint",
                "moderation": "the v1/moderations endpoint", "chat": "the Responses API"}[wants]
    return BadRequest(f"The model `{name}` does not support {endpoint}.", code=None, param="model")


# ---------------------------------------------------------------- request validation


def parse(raw: bytes, endpoint: Endpoint) -> Parsed:
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRequest(JSON_MESSAGE) from None
    if not isinstance(body, dict):
        raise BadRequest("Invalid type for request body: expected an object.", code="invalid_type")
    model = body.get("model", endpoint.default_model or None)
    if model is None:
        raise BadRequest("Missing required parameter: 'model'.", param="model",
                         code="missing_required_parameter")
    if not isinstance(model, str) or not model:
        raise BadRequest("Invalid type for 'model': expected a non-empty string.", param="model",
                         code="invalid_type")
    if endpoint.required not in body:
        raise BadRequest(f"Missing required parameter: '{endpoint.required}'.",
                         param=endpoint.required, code="missing_required_parameter")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise BadRequest("Invalid type for 'stream': expected a boolean.", param="stream",
                         code="invalid_type")
    if stream and endpoint.kind in ("embedding", "moderation"):
        raise BadRequest("Unrecognized request argument supplied: stream", code=None)
    options = body.get("stream_options")
    if options is not None and not stream:
        raise BadRequest("The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                         param="stream_options", code="invalid_value")
    include = isinstance(options, dict) and options.get("include_usage") is True
    return Parsed(body, model, bool(stream), include)


def _upstream_body(raw: bytes, parsed: Parsed, target: Target, endpoint: Endpoint) -> bytes:
    """As received, unless the model changed (failover) or a chat-style stream needs its usage."""
    needs_usage = parsed.stream and endpoint.stream_end == "done" and not parsed.include_usage
    if not needs_usage and target.model_name == parsed.model:
        return raw
    body = dict(parsed.body)
    body["model"] = target.model.name
    if needs_usage:
        options = body.get("stream_options")
        body["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                  "include_usage": True}
    return json.dumps(body, ensure_ascii=False).encode()


# ---------------------------------------------------------------- the pipeline


class EndpointStage:
    """The endpoint's own stages after the chat pipeline's first ones (admission, identity, key
    limits, client address, region: ``Gateway._endpoint_route``): validation of the body, the
    model of the endpoint's kind, policy with failover to a model of that kind, the upstream
    (retries, breaker, error failover) and the answer, whole or streamed; the meter stage then
    records the row and ends the answer."""

    def __init__(self, gw: Gateway, endpoint: Endpoint) -> None:
        self.gw = gw
        self.endpoint = endpoint

    async def __call__(self, ctx: ChatContext) -> None:
        gw, endpoint, meter = self.gw, self.endpoint, ctx.meter
        assert ctx.who is not None and ctx.where is not None
        parsed = parse(ctx.req.body, endpoint)
        meter.stream, meter.model = int(parsed.stream), parsed.model
        target = _lookup(ctx.rt, parsed.model, endpoint.kind, ctx.now)
        decision = _decide(gw, ctx.rt, ctx.now, target, ctx.who, ctx.where)
        if decision.denied:
            routed = _failover(gw, ctx.rt, ctx.now, target, "block", ctx.who, ctx.where)
            if routed is None:
                return deny(ctx, target, decision)
            target, decision = routed
            meter.path = "failover"
        admit(ctx, target, decision)
        await gw.forward.forward(ctx, EndpointCall(gw, endpoint, parsed), parsed.stream)


class EndpointCall:
    """How one request of an endpoint is forwarded (``gateway.stages.forward.Call``): its path,
    its body for the target, failover to a model of the same kind, the endpoint's usage."""

    def __init__(self, gw: Gateway, endpoint: Endpoint, parsed: Parsed) -> None:
        self.gw = gw
        self.endpoint = endpoint
        self.parsed = parsed
        self.path = endpoint.path

    def body(self, ctx: ChatContext, target: Target) -> bytes:
        return _upstream_body(ctx.req.body, self.parsed, target, self.endpoint)

    def alternative(self, ctx: ChatContext, origin: Target) -> tuple[Target, Decision] | None:
        assert ctx.who is not None and ctx.where is not None
        return _failover(self.gw, ctx.rt, ctx.now, origin, "error", ctx.who, ctx.where)

    def usage(self, body: bytes) -> tuple[int, int] | None:
        return _usage_of(body, self.endpoint)

    def stream_meter(self, ctx: ChatContext) -> StreamMeter:
        if self.endpoint.stream_end == "done":
            return SseMeter(keep_usage_chunk=self.parsed.include_usage)
        return EventMeter(self.endpoint)


def _decide(gw: Gateway, rt: Runtime, now: dt.datetime, target: Target, who: Identity,
              where: ClientRegion) -> Decision:
    return decide(rt.policy, gw.relays, now, target.provider_name, who, where)


def _failover(gw: Gateway, rt: Runtime, now: dt.datetime, origin: Target, when: str,
              who: Identity, where: ClientRegion) -> tuple[Target, Decision] | None:
    """The chat failover rules, each alternative serving a model of the origin's kind."""
    targets = []
    for alt in rt.catalog.failover(origin, when, who, where.country, now):
        if origin.model.kind != "chat":
            model = next((m for m in alt.provider.other_models if m.kind == origin.model.kind
                          and (m.available_from is None or m.available_from <= now)), None)
            if model is None:
                continue
            alt = Target(alt.provider, model)
        targets.append(alt)
    return admitting_target(rt.policy, gw.relays, now, targets, who, where)


def _usage_of(body: bytes, endpoint: Endpoint) -> tuple[int, int] | None:
    try:
        return endpoint.usage(json.loads(body))
    except (ValueError, RecursionError):
        return None


class EventMeter:
    """Passes the Responses API's typed events through; reads the usage from the terminal event
    and holds that event back (``final``) until the ledger row is durable."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.usage: tuple[int, int] | None = None
        self.done = False
        self.final = b""
        self._pending = b""

    def estimate_out(self) -> None:
        """No estimate without the terminal event: its typed events are not one per token."""
        return None

    def feed(self, data: bytes) -> bytes:
        if self.done:
            return b""
        buf = self._pending + data
        cut = buf.rfind(b"\n\n")
        if cut < 0:
            self._pending = buf
            return b""
        complete, self._pending = buf[:cut + 2], buf[cut + 2:]
        if not any(marker in complete for marker in _TERMINAL):
            return complete
        out: list[bytes] = []
        for event in complete.split(b"\n\n")[:-1]:
            if any(marker in event for marker in _TERMINAL):
                self.final, self.done = event + b"\n\n", True
                self.usage = _usage_of(_data(event), self.endpoint)
                break
            out.append(event + b"\n\n")
        return b"".join(out)


def _data(event: bytes) -> bytes:
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            return line[5:].strip()
    return b""
