"""The numbers an exchange shows for a position and the account, from engine snapshots.

One place computes them so the table, the account panel and the dialogs cannot disagree:
P/L, ROI % and R are all *net*: the entry fees paid and the estimated exit fee (at the
position's fee rate) are taken off, so the three always agree in sign. The exchange's own
ROE is gross (before fees); it is given too, for the tooltip that says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pmgui.domain.enums import Side
from pmgui.domain.models import Market, Position
from pmgui.domain.money import risk_per_unit, valid_price
from pmgui.engine.events import PositionSnapshot

_INF = float("inf")


@dataclass(frozen=True, slots=True)
class Figures:
    notional: float | None  # at the mark, quote
    margin: float  # initial margin at entry, quote
    gross_pnl: float | None  # before any fee
    fees: float  # entry fees of the open quantity + estimated exit fee
    pnl: float | None  # net
    roi: float | None  # net P/L on margin
    roe: float | None  # the exchange's ROE: gross P/L on margin
    r: float | None  # net P/L in multiples of the initial risk
    liq_distance: float | None  # fraction of the mark the price may still move against us
    maintenance: float  # maintenance margin (mmr × notional), quote


def open_entry_fees(p: Position) -> float:
    """Entry fees of the quantity still open: fees paid pro rata, or the fee-rate estimate."""
    cs = p.contract_size
    estimate = p.fee_rate * p.entry * p.qty * cs
    if p.fees_paid > 0 and p.initial_qty > 0 and p.qty <= p.initial_qty:
        return min(p.fees_paid, p.fees_paid * p.qty / p.initial_qty) if p.qty < p.initial_qty \
            else p.fees_paid
    return estimate


def figures(snap: PositionSnapshot, market: Market | None = None) -> Figures:
    p = snap.position
    cs = p.contract_size
    mark = snap.mark if valid_price(snap.mark) else None
    margin = p.entry * p.qty * cs / p.leverage if p.leverage > 0 and valid_price(p.entry) \
        else 0.0
    mmr = market.mmr if market is not None else 0.0
    if mark is None:
        return Figures(None, margin, None, 0.0, None, None, None, None, None, 0.0)
    notional = mark * p.qty * cs
    gross = p.side.dir * (mark - p.entry) * p.qty * cs
    fees = open_entry_fees(p) + p.fee_rate * notional
    net = gross - fees
    roi = net / margin if margin > 0 else None
    roe = gross / margin if margin > 0 else None
    risk = risk_per_unit(p.entry, p.initial_sl)
    r = net / (risk * p.qty * cs) if risk is not None and p.qty > 0 else None
    liq = None
    if valid_price(p.liquidation):
        liq = p.side.dir * (mark - p.liquidation) / mark  # type: ignore[operator]
    return Figures(notional, margin, gross, fees, net, roi, roe, r, liq, mmr * notional)


@dataclass(frozen=True, slots=True)
class AccountFigures:
    wallet: float | None
    unrealized: float  # net, over the open positions
    equity: float | None
    margin: float  # initial margin in use
    available: float | None
    margin_ratio: float | None  # maintenance margin / equity (liquidation at 100 %)


def account_terms(snap: PositionSnapshot, market: Market | None = None
                  ) -> tuple[float, float, float]:
    """A position's share of the account: (net P/L, initial margin, maintenance margin) —
    `figures`' pnl (0 without one), margin and maintenance, by the same arithmetic in the
    same order (the same floats), without the figures the account does not sum (the panel
    sums every position a few times a second in a storm)."""
    p = snap.position
    cs = p.contract_size
    entry = p.entry
    # (valid_price, with a finite positive float — the usual price — tested inline)
    margin = entry * p.qty * cs / p.leverage if p.leverage > 0 and (
        (entry.__class__ is float and 0.0 < entry < _INF) or valid_price(entry)) else 0.0
    mark = snap.mark
    if not (mark.__class__ is float and 0.0 < mark < _INF) and not valid_price(mark):
        return (0.0, margin, 0.0)
    notional = mark * p.qty * cs
    gross = (1 if p.side is Side.LONG else -1) * (mark - entry) * p.qty * cs  # Side.dir
    fees = open_entry_fees(p) + p.fee_rate * notional
    mmr = market.mmr if market is not None else 0.0
    return ((gross - fees) or 0.0, margin, mmr * notional)


def account_figures(wallet: float | None, snaps: list[PositionSnapshot],
                    market_for=lambda _s: None,
                    terms: Callable[[PositionSnapshot], tuple[float, float, float]] | None = None
                    ) -> AccountFigures:
    upnl = margin = maint = 0.0
    for s in snaps:
        t = terms(s) if terms is not None else account_terms(s, market_for(s.position.symbol))
        upnl += t[0]
        margin += t[1]
        maint += t[2]
    return account_of(wallet, upnl, margin, maint)


def account_of(wallet: float | None, upnl: float, margin: float, maint: float
               ) -> AccountFigures:
    """The account from its positions' summed terms (`account_figures`' second half)."""
    if wallet is None:
        return AccountFigures(None, upnl, None, margin, None, None)
    equity = wallet + upnl
    available = wallet - margin  # isolated margin: what new orders may still use
    ratio = maint / equity if equity > 0 else None
    return AccountFigures(wallet, upnl, equity, margin, available, ratio)
