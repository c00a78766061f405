"""Validation (DESIGN §4, seed 000 §8). Each check raises ValidationError naming the field."""

from __future__ import annotations

import math
from collections.abc import Iterable

from pmgui.domain.enums import Side
from pmgui.domain.errors import ValidationError
from pmgui.domain.models import Market, Position
from pmgui.domain.numbers import plain_number as _num


def require_price(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"{field} must be a number", field=field)
    v = float(value)
    if math.isnan(v):
        raise ValidationError(f"{field} is not a number (NaN)", field=field)
    if math.isinf(v):
        raise ValidationError(f"{field} must be finite", field=field)
    if v == 0:
        raise ValidationError(f"{field} cannot be zero", field=field)
    if v < 0:
        raise ValidationError(f"{field} cannot be negative", field=field)
    return v


def validate_amount(amount: object, field: str = "amount") -> float:
    v = require_price(amount, field)
    return v


def validate_leverage(leverage: object, max_leverage: int = 125) -> float:
    if isinstance(leverage, bool) or not isinstance(leverage, (int, float)) or not math.isfinite(
        float(leverage)
    ):
        raise ValidationError("leverage must be a number", field="leverage")
    if leverage < 1 or leverage > max_leverage:
        raise ValidationError(
            f"leverage must be between 1x and {max_leverage}x (got {leverage:g}x)",
            field="leverage",
        )
    return float(leverage)


def validate_sl_fraction(pct: object) -> float:
    if isinstance(pct, bool) or not isinstance(pct, (int, float)) or not math.isfinite(float(pct)):
        raise ValidationError("stop-loss percentage must be a number", field="stop_loss.pct")
    if not 0 < pct < 1:
        raise ValidationError(
            f"stop-loss percentage must be between 0 and 100% (got {pct:.2%})",
            field="stop_loss.pct",
        )
    return float(pct)


def validate_targets(side: Side, price: float, sl: float | None, tp: float | None,
                     liquidation: float | None = None) -> None:
    """SL and TP on the correct side of the current price, and the SL before liquidation."""
    if sl is not None:
        require_price(sl, "SL")
        if side is Side.LONG and sl >= price:
            raise ValidationError(
                f"SL {_num(sl)} must be below the current price {_num(price)} for a long",
                field="sl")
        if side is Side.SHORT and sl <= price:
            raise ValidationError(
                f"SL {_num(sl)} must be above the current price {_num(price)} for a short",
                field="sl")
        if liquidation is not None:
            if side is Side.LONG and sl <= liquidation:
                raise ValidationError(
                    f"SL {_num(sl)} is beyond the liquidation price {_num(liquidation)}",
                    field="sl")
            if side is Side.SHORT and sl >= liquidation:
                raise ValidationError(
                    f"SL {_num(sl)} is beyond the liquidation price {_num(liquidation)}",
                    field="sl")
    if tp is not None:
        require_price(tp, "TP")
        if side is Side.LONG and tp <= price:
            raise ValidationError(
                f"TP {_num(tp)} must be above the current price {_num(price)} for a long",
                field="tp")
        if side is Side.SHORT and tp >= price:
            raise ValidationError(
                f"TP {_num(tp)} must be below the current price {_num(price)} for a short",
                field="tp")


def validate_new_position(symbol: str, side: Side, amount: object, leverage: object,
                          open_positions: Iterable[Position], market: Market | None = None,
                          price: float | None = None) -> None:
    """Seed 000 §8: amount > 0, leverage 1–125, one position per symbol and side."""
    qty = validate_amount(amount)
    validate_leverage(leverage, market.max_leverage if market else 125)
    for p in open_positions:
        if p.is_open and p.symbol == symbol and p.side is side:
            raise ValidationError(
                f"a {side.value} position in {symbol} is already open", field="symbol")
    if market is not None:
        if market.min_amount and qty < market.min_amount:
            raise ValidationError(
                f"amount {_num(qty)} is below the minimum {_num(market.min_amount)} for {symbol}",
                field="amount")
        if price is not None and market.min_notional:
            notional = qty * price * market.contract_size
            if notional < market.min_notional:
                raise ValidationError(
                    f"order value {_num(notional)} is below the minimum "
                    f"{_num(market.min_notional)} {market.quote} for {symbol}", field="amount")


def validate_close_qty(qty: object, position: Position) -> float:
    v = validate_amount(qty, "quantity")
    if v > position.qty * (1 + 1e-9):
        raise ValidationError(
            f"cannot close {_num(v)}: the position is only {_num(position.qty)}", field="qty")
    return min(v, position.qty)


def check_entry_price(kind: str, side: Side, price: float, market_price: float) -> None:
    """A limit entry waits for a better price, a stop entry for a breakout (pure)."""
    below = (kind == "limit") == (side is Side.LONG)
    if below and not price < market_price:
        raise ValidationError(
            f"a {kind} {'buy' if side is Side.LONG else 'sell'} must be below the market "
            f"({_num(market_price)}); {_num(price)} is not"
            + (" — use a stop entry to buy a breakout" if kind == "limit"
               else " — use a limit entry to sell a rally"), field="price")
    if not below and not price > market_price:
        raise ValidationError(
            f"a {kind} {'buy' if side is Side.LONG else 'sell'} must be above the market "
            f"({_num(market_price)}); {_num(price)} is not"
            + (" — use a stop entry to sell a breakdown" if kind == "limit"
               else " — use a limit entry to buy a dip"), field="price")
