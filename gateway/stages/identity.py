"""Identity: the API key → organisation, segment and home region (``gateway.identity``)."""

from __future__ import annotations

from gateway.context import ChatContext
from gateway.identity import identify


class IdentityStage:
    def __init__(self, *, insecure_org_keys: bool) -> None:
        self.insecure_org_keys = insecure_org_keys

    def __call__(self, ctx: ChatContext) -> None:
        who = ctx.who = identify(ctx.rt.keys, ctx.req.headers.get("authorization"),
                                 insecure_org_keys=self.insecure_org_keys)
        ctx.meter.org, ctx.meter.home_region = who.org, who.home_region
