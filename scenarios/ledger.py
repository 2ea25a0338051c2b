"""(placeholder until the ledger contract lands from the ledger branch: same function)"""

from __future__ import annotations

import datetime as dt

from scenarios.schema import Provider


def grants_credit(provider: Provider, at: dt.datetime) -> int:
    """Free tokens a first request to ``provider`` at scenario instant ``at`` opens (0: no offer)."""
    inc = provider.incentive
    if provider.incumbent or inc is None or (inc.deadline is not None and at >= inc.deadline):
        return 0
    return inc.free_tokens
