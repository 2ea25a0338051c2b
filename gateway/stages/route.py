"""Route: the model → the provider selling it now (``gateway.routing.Catalog``); 404 if none."""

from __future__ import annotations

from gateway.context import ChatContext
from gateway.errors import NotFound


def route_stage(ctx: ChatContext) -> None:
    assert ctx.chat is not None, "validation comes first"
    model = ctx.chat.model
    ctx.target = ctx.rt.catalog.lookup(model, ctx.now)
    if ctx.target is None:
        raise NotFound(f"The model `{model}` does not exist or you do not have access to it.",
                       code="model_not_found", param="model")
