"""The stages of the chat pipeline, one module each; ``gateway.app`` assembles them in order.

A stage is a callable over the request's ``ChatContext``: it returns None, or an awaitable when
it must wait (the forward stage). It fills in the context, or decides the answer: by raising a
``ClientError`` (a refusal, 4xx) or by setting ``ctx.answer``; the remaining stages are then
skipped. Whatever happens, ``gateway.stages.meter`` then records exactly one ledger row and
writes the answer. A new check is a new module here and one line in ``Gateway.chat_stages``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from gateway.context import ChatContext

Stage = Callable[[ChatContext], Awaitable[None] | None]
