"""The stages of the chat pipeline, one module each; ``gateway.app`` assembles them in order.

A stage is a callable over the request's ``ChatContext``: it returns None, or an awaitable when
it must wait (the forward stage). It fills in the context, or decides the answer: by raising a
``ClientError`` (a refusal, 4xx) or by setting ``ctx.answer``; the remaining stages are then
skipped. Whatever happens, ``gateway.stages.meter`` then records exactly one ledger row and
writes the answer. A new check is a new module here and one line in ``Gateway.chat_stages``.
"""

from __future__ import annotations

import types
from collections.abc import Awaitable, Callable
from typing import cast

from gateway.context import ChatContext

Stage = Callable[[ChatContext], Awaitable[None] | None]


def bound(stage: Stage) -> Stage:
    """The stage as the pipeline calls it: an object's ``__call__`` as a bound method, a function
    as it is. (The interpreter calls a bound method of Python code directly; calling the object
    itself goes through its type's call slot and a tuple of the arguments, per stage per request.)"""
    call = next((vars(c)["__call__"] for c in type(stage).__mro__ if "__call__" in vars(c)), None)
    if isinstance(call, types.FunctionType):  # an instance of a class of ours
        return cast(Stage, types.MethodType(call, stage))
    return stage
