"""Funding per position: each settlement the venue reports is attributed to the position of
its symbol and side that was open at that moment, summed and stored with the position.

Recomputed from the venue's history each time (never accumulated by increments), so a
settlement seen twice, or seen again after a restart, is counted once. A venue without a
per-position funding history leaves `Position.funding` as None (the table shows "—").
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pmgui.domain.errors import ExchangeError

if TYPE_CHECKING:
    from pmgui.engine.core import EngineCore

log = logging.getLogger("pmgui.engine.funding")


async def sync_funding(core: EngineCore) -> int:
    """Bring every open position's funding in line with the venue; returns how many changed."""
    fetch = getattr(core.exchange, "fetch_funding_history", None)
    rts = [rt for rt in core.book.runtimes() if rt.is_open]
    if fetch is None or not rts:
        return 0
    try:
        payments = await fetch(min(rt.position.opened_at for rt in rts))
    except ExchangeError as exc:
        log.info("funding history unavailable: %s", exc)
        return 0
    if payments is None:
        return 0
    changed = 0
    for rt in rts:
        pos = rt.position
        total = sum(p.amount for p in payments if p.symbol == pos.symbol
                    and p.side is pos.side and p.ts >= pos.opened_at)
        if pos.funding is None or abs(total - pos.funding) > 1e-12:
            if not rt.is_open or core.book.runtime(rt.id) is not rt:
                continue
            core.set_position(rt.position.evolve(funding=total))
            core.publish_position(rt)
            changed += 1
    return changed
