"""Policy: the scenario's decision for this request (``gateway.enforcement``), with failover.

A denial first tries the scenario's ``block`` failover rules: the first alternative whose own
policy admits the request serves it (path ``failover``). Otherwise the denial is the answer, as
the stage's response preset says (403, 429, a Cloudflare page...). Header values from the
scenario (a warning's text) are made safe to send here, before any response starts.
"""

from __future__ import annotations

import functools

from gateway.context import Answer, ChatContext
from gateway.enforcement import RelayMemory, admitting_target, decide
from gateway.http11 import safe_header_value
from gateway.routing import Target
from scenarios.policy import Decision


class PolicyStage:
    def __init__(self, relays: RelayMemory) -> None:
        self.relays = relays

    def __call__(self, ctx: ChatContext) -> None:
        target = ctx.target
        assert target is not None and ctx.who is not None and ctx.where is not None
        decision = decide(ctx.rt.policy, self.relays, ctx.now, target.provider_name, ctx.who,
                          ctx.where)
        if decision.denied:
            routed = failover(ctx, self.relays, target, "block")
            if routed is None:
                return deny(ctx, target, decision)
            target, decision = routed
            ctx.meter.path = "failover"
        admit(ctx, target, decision)


def failover(ctx: ChatContext, relays: RelayMemory, origin: Target,
             when: str) -> tuple[Target, Decision] | None:
    """The first alternative a failover rule allows and whose own policy admits the request."""
    assert ctx.who is not None and ctx.where is not None
    targets = ctx.rt.catalog.failover(origin, when, ctx.who, ctx.where.country, ctx.now)
    return admitting_target(ctx.rt.policy, relays, ctx.now, targets, ctx.who, ctx.where)


def admit(ctx: ChatContext, target: Target, decision: Decision) -> None:
    """Serve the request from ``target`` under ``decision`` (its headers go on the response)."""
    ctx.target, ctx.decision = target, decision
    meter = ctx.meter
    meter.provider, meter.model, meter.target = target.provider_name, target.model_name, target
    meter.decision, meter.stage = decision.action, decision.stage


def deny(ctx: ChatContext, target: Target, decision: Decision) -> None:
    assert decision.response is not None
    admit(ctx, target, decision)
    response = decision.response
    ctx.meter.status = response.status
    ctx.answer = Answer(response.status, [*safe_headers(response.headers),
                                          ("x-request-id", ctx.meter.request_id)], response.body)


@functools.lru_cache(maxsize=4096)
def safe_headers(headers: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """A scenario's headers, safe to send (no CR/LF, non-Latin-1 text as UTF-8 bytes)."""
    return tuple((name, safe_header_value(value)) for name, value in headers)
