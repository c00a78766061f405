"""Enumerations shared by every layer. String-valued so they persist and serialise as is."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Side(StrEnum):
    LONG = "long"
    SHORT = "short"

    dir: int
    """+1 for long, -1 for short: the sign every money formula multiplies by. An attribute
    of each member (set as the member is made), not a property: it is read by every money
    formula, several times per position on most ticks."""

    def __init__(self, value: str) -> None:
        self.dir = 1 if value == "long" else -1

    @property
    def close_side(self) -> OrderSide:
        return OrderSide.SELL if self is Side.LONG else OrderSide.BUY

    @property
    def open_side(self) -> OrderSide:
        return OrderSide.BUY if self is Side.LONG else OrderSide.SELL


class OrderSide(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP_MARKET = "stop_market"
    TAKE_PROFIT_MARKET = "take_profit_market"


class OrderStatus(StrEnum):
    PENDING = "pending"  # journaled, not yet acknowledged by the exchange
    OPEN = "open"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def is_final(self) -> bool:
        return self in (OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED,
                        OrderStatus.EXPIRED)


class OrderRole(StrEnum):
    """Why pmgui holds an order: ties an exchange order to a position (order_links)."""

    ENTRY = "entry"
    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"
    REDUCE = "reduce"  # a rule's or the trader's market close / partial
    ADD = "add"  # add-on / scaling


class PositionStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class StopKind(StrEnum):
    """What last set the stop, so a stop-out reports the right reason code."""

    INITIAL = "initial"
    MANUAL = "manual"
    TRAILING = "trailing"
    BREAKEVEN = "breakeven"


class Protection(StrEnum):
    ON_EXCHANGE = "on_exchange"
    LOCAL_ONLY = "local_only"
    UNPROTECTED = "unprotected"


class ActionType(StrEnum):
    OPEN = "open"
    MOVE_SL = "move_sl"
    MOVE_TP = "move_tp"
    REDUCE = "reduce"
    ADD = "add"
    CLOSE = "close"
    CANCEL = "cancel"  # withdraw a resting order of the position (a stale add-on)


class Reason(StrEnum):
    """Reason codes (DESIGN §4). Shown in the action log, on the chart and in replay JSON."""

    EMERGENCY_STOP_LIQUIDATION_RISK = "emergency_stop_liquidation_risk"
    EMERGENCY_STOP_SEVERE_LOSS = "emergency_stop_severe_loss"
    EMERGENCY_STOP_EXCESSIVE_LOSS = "emergency_stop_excessive_loss"
    STOP_LOSS = "stop_loss"
    TRAILING_STOP = "trailing_stop"
    BREAKEVEN_STOP = "breakeven_stop"
    TAKE_PROFIT = "take_profit"
    SMART_TAKE_PROFIT = "smart_take_profit"
    MOMENTUM_LOSS = "momentum_loss"
    TP1 = "tp1"
    TP2 = "tp2"
    PROFIT_BOOKING = "profit_booking"
    ADD_ON = "add_on"
    ADD_ON_CANCEL = "add_on_cancel"
    SCALING = "scaling"
    BREAKEVEN = "breakeven"
    TRAILING = "trailing"
    DYNAMIC_TP = "dynamic_tp"
    MANUAL = "manual"
    LIQUIDATION = "liquidation"
    RECONCILE = "reconcile"


class Priority(IntEnum):
    """Rule priority (DESIGN §4): lower value wins; at most one closing action per tick."""

    EMERGENCY = 1
    STOP_LOSS = 2
    TAKE_PROFIT = 3
    SMART_TP = 4
    MOMENTUM_LOSS = 5
    PARTIAL = 6
    STOP_ADJUST = 7
    TP_ADJUST = 8
    ADD = 9
