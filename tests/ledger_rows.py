"""Ledger rows for tests, built by column name from the ledger contract (never by position)."""

from __future__ import annotations

import dataclasses
from typing import Any

from scenarios.ledger import LedgerRow, revenue_usd

DEFAULTS: dict[str, Any] = dict(
    request_id="r0", wall_time=1.5, scenario_time="2024-07-10T00:00:00Z", org="us-startup-000001",
    home_region="US", country="US", asn=None, asn_class="isp", provider="openai", model="gpt-4o",
    decision="allow", stage="", status=200, tokens_in=8, tokens_out=12, free_tokens_in=0,
    free_tokens_out=0, revenue_usd=revenue_usd(5.0, 15.0, 8, 12), credit_opened=0,
    credit_left=None, upstream_ms=1.0, total_ms=2.0, ttft_ms=None, path="direct", stream=0,
    error="")


def ledger_row(**fields: Any) -> LedgerRow:
    return LedgerRow(**{**DEFAULTS, **fields})


def row_tuple(**fields: Any) -> tuple[Any, ...]:
    """The row as the gateway's ledger writer takes it (column order of the contract)."""
    return dataclasses.astuple(ledger_row(**fields))
