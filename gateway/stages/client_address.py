"""Client address: the TCP peer, or X-Forwarded-For walked past trusted proxies."""

from __future__ import annotations

from gateway.client_address import AddressResolver
from gateway.context import ChatContext

RELAY_VIA = "regionblock-relay"


class AddressStage:
    def __init__(self, resolver: AddressResolver) -> None:
        self.resolver = resolver

    def __call__(self, ctx: ChatContext) -> None:
        headers = ctx.req.headers
        addr = ctx.addr = self.resolver.resolve(ctx.req.peer, headers.get("x-forwarded-for"))
        if addr.peer_trusted and RELAY_VIA in headers.get("via", ""):
            ctx.meter.path = "relay"
