"""Money math (DESIGN §3). Pure functions; every one is safe on bad prices.

A price that is not finite and positive never produces NaN or a division by zero: the
functions return 0.0 (or None where "undefined" is the honest answer, like R without a stop).
"""

from __future__ import annotations

import math

from pmgui.domain.enums import Side
from pmgui.domain.models import Position


def valid_price(p: float | None) -> bool:
    """True for a finite, strictly positive number (seed 000 §4-5). The usual float is
    decided by one chained comparison (NaN fails it, as does inf): every tick of every
    symbol passes here."""
    if type(p) is float:
        return 0.0 < p < _INF
    return isinstance(p, (int, float)) and not isinstance(p, bool) and math.isfinite(p) and p > 0


_INF = math.inf


def finite_or(value: float, default: float = 0.0) -> float:
    return value if math.isfinite(value) else default


def move(side: Side, entry: float, price: float) -> float:
    """Unleveraged favourable price move as a fraction of entry."""
    if not (valid_price(entry) and valid_price(price)):
        return 0.0
    return finite_or(side.dir * (price - entry) / entry)


def roi(side: Side, entry: float, price: float, leverage: float, fee_rate: float = 0.0) -> float:
    """ROI on margin: leverage·(dir·(p − entry) − fee_rate·(entry + p))/entry."""
    if not (valid_price(entry) and valid_price(price)) or not math.isfinite(leverage):
        return 0.0
    lev = max(leverage, 0.0)
    return finite_or(lev * (side.dir * (price - entry) - fee_rate * (entry + price)) / entry)


def risk_per_unit(entry: float, initial_sl: float | None) -> float | None:
    """R = |entry − initial_sl|; None when there is no stop or it sits on the entry."""
    if initial_sl is None or not (valid_price(entry) and valid_price(initial_sl)):
        return None
    r = abs(entry - initial_sl)
    return r if r > 0 else None


def trade_r(pos: Position) -> float | None:
    """A closed trade's result in R multiples: realised P/L over R · initial qty · contract size,
    R = |first entry − initial stop| (the first tranche's entry when tranches are known).
    None without an initial stop (`pmgui.store.metrics` sums it; a window re-rates a
    corrected trade with it)."""
    first_entry = pos.tranches[0].entry if pos.tranches else pos.entry
    r = risk_per_unit(first_entry, pos.initial_sl)
    if r is None:
        return None
    risk = r * pos.initial_qty * pos.contract_size
    if not math.isfinite(risk) or risk <= 0 or not math.isfinite(pos.realized_pnl):
        return None
    value = pos.realized_pnl / risk
    return value if math.isfinite(value) else None


def pnl_r(side: Side, entry: float, price: float, initial_sl: float | None) -> float | None:
    r = risk_per_unit(entry, initial_sl)
    if r is None or not valid_price(price):
        return None
    v = side.dir * (price - entry) / r
    return v if math.isfinite(v) else None


def unrealized_pnl(side: Side, entry: float, price: float, qty: float,
                   contract_size: float = 1.0, fee_rate: float = 0.0) -> float:
    """dir·(p − entry)·qty·contract_size − fees (entry and exit at `fee_rate`)."""
    if not (valid_price(entry) and valid_price(price)) or not math.isfinite(qty) or qty <= 0:
        return 0.0
    notional_in = entry * qty * contract_size
    notional_out = price * qty * contract_size
    fees = fee_rate * (notional_in + notional_out)
    return finite_or(side.dir * (price - entry) * qty * contract_size - fees)


def liquidation_price(side: Side, entry: float, leverage: float, mmr: float) -> float | None:
    """Isolated-margin liquidation (paper): long entry·(1 − 1/lev + mmr), short the mirror."""
    if not valid_price(entry) or not math.isfinite(leverage) or leverage < 1:
        return None
    if side is Side.LONG:
        liq = entry * (1 - 1 / leverage + mmr)
    else:
        liq = entry * (1 + 1 / leverage - mmr)
    return liq if liq > 0 else None


def margin(entry: float, qty: float, leverage: float, contract_size: float = 1.0) -> float:
    if not valid_price(entry) or leverage <= 0 or qty <= 0:
        return 0.0
    return entry * qty * contract_size / leverage


def average_entry(qty_a: float, entry_a: float, qty_b: float, entry_b: float) -> float:
    """Quantity-weighted average entry after an add."""
    total = qty_a + qty_b
    if total <= 0:
        return entry_a
    return (qty_a * entry_a + qty_b * entry_b) / total


def price_at_roi(side: Side, entry: float, target_roi: float, leverage: float,
                 fee_rate: float = 0.0) -> float | None:
    """Inverse of `roi`: the price at which ROI equals `target_roi` (for dialogs, previews)."""
    if not valid_price(entry) or leverage <= 0:
        return None
    d = side.dir
    # target·entry/lev = d·(p − entry) − f·(entry + p)
    #   →  p·(d − f) = target·entry/lev + d·entry + f·entry
    denom = d - fee_rate
    if denom == 0:
        return None
    p = (target_roi * entry / leverage + d * entry + fee_rate * entry) / denom
    return p if valid_price(p) else None


# Convenience wrappers over a Position -------------------------------------------------------

def position_roi(pos: Position, price: float) -> float:
    return roi(pos.side, pos.entry, price, pos.leverage, pos.fee_rate)


def position_move(pos: Position, price: float) -> float:
    return move(pos.side, pos.entry, price)


def position_pnl(pos: Position, price: float) -> float:
    return unrealized_pnl(pos.side, pos.entry, price, pos.qty, pos.contract_size, pos.fee_rate)


def position_r(pos: Position, price: float) -> float | None:
    return pnl_r(pos.side, pos.entry, price, pos.initial_sl)


def stop_hit(side: Side, stop: float | None, price: float) -> bool:
    """Long closes when p ≤ sl, short when p ≥ sl."""
    if stop is None or not valid_price(price):
        return False
    return price <= stop if side is Side.LONG else price >= stop


def target_hit(side: Side, target: float | None, price: float) -> bool:
    if target is None or not valid_price(price):
        return False
    return price >= target if side is Side.LONG else price <= target


def tighter_stop(side: Side, current: float | None, candidate: float | None) -> float | None:
    """The more protective of two stops (higher for a long, lower for a short)."""
    if candidate is None:
        return current
    if current is None:
        return candidate
    return max(current, candidate) if side is Side.LONG else min(current, candidate)


def is_improvement(side: Side, current: float | None, candidate: float) -> bool:
    """True when `candidate` is strictly more protective than `current`."""
    if current is None:
        return True
    return candidate > current if side is Side.LONG else candidate < current
