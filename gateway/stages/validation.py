"""Validation: the body is a chat-completions request OpenAI would accept (else 400), and asks
for no more output tokens than the providers allow (``--max-completion-tokens``): one client's
``max_tokens: 1000000`` would otherwise hold upstream connections until they time out and open
the provider's circuit for everyone."""

from __future__ import annotations

from gateway.context import ChatContext
from gateway.errors import BadRequest
from gateway.validation import parse_chat


class ValidationStage:
    def __init__(self, max_completion_tokens: int) -> None:
        self.max_completion_tokens = max_completion_tokens

    def __call__(self, ctx: ChatContext) -> None:
        chat = ctx.chat = parse_chat(ctx.req.body)
        ctx.meter.stream = int(chat.stream)
        ctx.meter.model = chat.model
        cap = self.max_completion_tokens
        for name in ("max_tokens", "max_completion_tokens"):
            asked = chat.body.get(name)
            if isinstance(asked, int) and asked > cap:
                raise BadRequest(f"{name} is too large: {asked}. This model supports at most "
                                 f"{cap} completion tokens, whereas you provided {asked}.",
                                 param=name, code="invalid_value")
