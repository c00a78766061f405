"""Closed-trade metrics for the history tab (DESIGN §7).

Pure computation over closed `Position`s and the reasons of the actions carried out on them, so
it is tested on a small concrete history without any database.

Definitions (a "trade" is one closed position):
- pnl of a trade = `realized_pnl` (quote, net of fees). win: pnl > 0, loss: pnl < 0; a trade of
  exactly 0 is neither. `win_rate` = wins / count.
- R of a trade = pnl / (R · initial_qty · contract_size), with R = |first entry − initial_sl|
  (`money.risk_per_unit`; the first entry is the first tranche's entry when tranches are known,
  else the position's entry). Trades without an initial stop have no R. `avg_r` averages the
  trades that have one.
- `tp1_hit_rate` / `tp2_hit_rate`: share of the trades with an R (TP1/TP2 are R targets, so they
  cannot exist without an R) in which TP1 / TP2 was taken: flag `tp1_done` / `tp2_done` on the
  position, or a successful action with reason `tp1` / `tp2`.
- `breakeven_count`: trades whose stop was moved to breakeven (flag `breakeven_set`, a successful
  `breakeven` action, a stop of kind breakeven, or an exit by `breakeven_stop`).
- `trailing_count`: trades where a trailing stop moved or stopped them out (a successful
  `trailing` action, a stop of kind trailing, or an exit by `trailing_stop`).
- `add_on_count`: trades that were added to (flag `add_on_executed` or `scaled`, a successful
  `add_on` / `scaling` action, or a tranche whose source is `add_on` or `scaling`).
- `avg_hold_seconds` = mean of closed_at − opened_at over trades with a close time.
Every field is finite; rates and averages without data are None (avg_r, TP hit rates) or 0.0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pmgui.domain.enums import Reason, StopKind
from pmgui.domain.models import Position
from pmgui.domain.money import trade_r


@dataclass(frozen=True, slots=True)
class TradeMetrics:
    count: int = 0
    wins: int = 0
    losses: int = 0
    win_rate: float = 0.0
    avg_r: float | None = None
    tp1_hit_rate: float | None = None
    tp2_hit_rate: float | None = None
    avg_hold_seconds: float = 0.0
    breakeven_count: int = 0
    trailing_count: int = 0
    add_on_count: int = 0
    total_pnl: float = 0.0


def compute_metrics(closed: Iterable[Position],
                    reasons: Mapping[str, set[str]] | None = None) -> TradeMetrics:
    """Metrics over `closed` positions; `reasons[position_id]` = reasons of its ok actions."""
    reasons = reasons or {}
    count = wins = losses = 0
    total = 0.0
    rs: list[float] = []
    tp1 = tp2 = 0
    holds: list[float] = []
    be = trail = add = 0
    for pos in closed:
        count += 1
        pnl = pos.realized_pnl if math.isfinite(pos.realized_pnl) else 0.0
        total += pnl
        if pnl > 0:
            wins += 1
        elif pnl < 0:
            losses += 1
        why = reasons.get(pos.id, set())
        r = trade_r(pos)
        if r is not None:
            rs.append(r)
            if "tp1_done" in pos.flags or Reason.TP1 in why:
                tp1 += 1
            if "tp2_done" in pos.flags or Reason.TP2 in why:
                tp2 += 1
        if pos.closed_at is not None:
            hold = pos.closed_at - pos.opened_at
            if math.isfinite(hold):
                holds.append(max(0.0, hold))
        if ("breakeven_set" in pos.flags or Reason.BREAKEVEN in why
                or pos.sl_kind is StopKind.BREAKEVEN or pos.exit_reason == Reason.BREAKEVEN_STOP):
            be += 1
        if (Reason.TRAILING in why or pos.sl_kind is StopKind.TRAILING
                or pos.exit_reason == Reason.TRAILING_STOP):
            trail += 1
        if ("add_on_executed" in pos.flags or "scaled" in pos.flags
                or Reason.ADD_ON in why or Reason.SCALING in why
                or any(t.source in ("add_on", "scaling") for t in pos.tranches)):
            add += 1
    return TradeMetrics(
        count=count, wins=wins, losses=losses,
        win_rate=wins / count if count else 0.0,
        avg_r=sum(rs) / len(rs) if rs else None,
        tp1_hit_rate=tp1 / len(rs) if rs else None,
        tp2_hit_rate=tp2 / len(rs) if rs else None,
        avg_hold_seconds=sum(holds) / len(holds) if holds else 0.0,
        breakeven_count=be, trailing_count=trail, add_on_count=add,
        total_pnl=total if math.isfinite(total) else 0.0,
    )
