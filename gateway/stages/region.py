"""Region: the client address → country, ASN and whether it is a hosting network."""

from __future__ import annotations

from gateway.context import ChatContext
from gateway.region import RegionResolver


class RegionStage:
    def __init__(self, resolver: RegionResolver) -> None:
        self.resolver = resolver

    def __call__(self, ctx: ChatContext) -> None:
        addr = ctx.addr
        assert addr is not None, "the client address stage comes first"
        where = ctx.where = self.resolver.resolve(addr.ip, peer_trusted=addr.peer_trusted,
                                                  cf_country=ctx.req.headers.get("cf-ipcountry"))
        ctx.meter.country, ctx.meter.asn, ctx.meter.asn_class = where.country, where.asn, \
            where.asn_class
