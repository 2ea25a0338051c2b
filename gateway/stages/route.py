"""Route: the model → the provider selling it now; 404 if none, OpenAI's 404 for a model of
another kind (an embedding model asked for a chat completion) — ``gateway.endpoints.chat_target``."""

from __future__ import annotations

from gateway.context import ChatContext
from gateway.endpoints import chat_target


def route_stage(ctx: ChatContext) -> None:
    assert ctx.chat is not None, "validation comes first"
    ctx.target = chat_target(ctx.rt, ctx.chat.model, ctx.now)
