"""Funding per position: each settlement the venue reports is attributed to the position of
its symbol and side that was open at that moment, summed and stored with the position.

Recomputed from the venue's history each time (never accumulated by increments), so a
settlement seen twice, or seen again after a restart, is counted once. A venue that names
only the symbol (ccxt's funding history) is attributed where that symbol has one open
position; with both sides open, or a venue without a funding history, `Position.funding`
stays None (the table shows "—"). The sum is written behind (rebuilt from the venue on the
next pass), so a first pass over a large book is not hundreds of synced writes. Live
venues are asked at most once a minute (settlements come every few hours); the paper venue's
own record is read each time.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pmgui.domain.errors import ExchangeError

if TYPE_CHECKING:
    from pmgui.engine.core import EngineCore

log = logging.getLogger("pmgui.engine.funding")

LIVE_INTERVAL = 60.0  # seconds between funding-history requests to a live venue


class FundingSync:
    def __init__(self, core: EngineCore) -> None:
        self.core = core
        self.asked_at: float | None = None

    async def sync(self, force: bool = False) -> int:
        """Bring every open position's funding in line with the venue; returns how many
        changed."""
        core = self.core
        fetch = getattr(core.exchange, "fetch_funding_history", None)
        rts = [rt for rt in core.book.runtimes() if rt.is_open]
        if fetch is None or not rts:
            return 0
        now = core.clock()
        if core.exchange.id != "paper" and not force and self.asked_at is not None \
                and now - self.asked_at < LIVE_INTERVAL:
            return 0
        self.asked_at = now
        try:
            payments = await fetch(min(rt.position.opened_at for rt in rts))
        except ExchangeError as exc:
            log.info("funding history unavailable: %s", exc)
            return 0
        if payments is None:
            return 0
        per_symbol: dict[str, int] = {}
        for rt in rts:
            per_symbol[rt.symbol] = per_symbol.get(rt.symbol, 0) + 1
        paid: dict[str, list] = {}  # the payments of each symbol (not a scan per position)
        for p in payments:
            paid.setdefault(p.symbol, []).append(p)
        changed = 0
        for rt in rts:
            pos = rt.position
            mine = paid.get(pos.symbol, ())
            if per_symbol[pos.symbol] > 1 and any(p.side is None for p in mine):
                continue  # both sides open: the venue does not say which one paid
            total = sum(p.amount for p in mine
                        if (p.side is None or p.side is pos.side) and p.ts >= pos.opened_at)
            if pos.funding is not None and abs(total - pos.funding) <= 1e-12:
                continue
            if not rt.is_open or core.book.runtime(rt.id) is not rt:
                continue
            # recomputed from the venue's history every time: written behind, not synced
            core.set_position(rt.position.evolve(funding=total), persist="behind")
            core.publish_position(rt)
            changed += 1
        return changed
