"""Events: immutable snapshots the engine publishes to the UI (DESIGN §2).

Each event has a `key`: the bridge keeps only the newest pending event per key (a price
tick for BTC replaces the previous BTC tick), except events whose key is None, which are
never dropped (actions, errors, closed positions, corrections of closed positions).
"""

from __future__ import annotations

from dataclasses import dataclass

from pmgui.domain.enums import Protection
from pmgui.domain.models import Action, Candle, Order, Position


@dataclass(frozen=True, slots=True)
class RuleIndicator:
    """The indicator a position's rules follow, as the engine computed it on the rule's own
    timeframe (DESIGN §7: the chart's thin line): the chandelier level, the trailing level
    (fixed / adaptive trail, with its `distance`) or the add-on's EMA. `value` is None while
    the timeframe has fewer than `need` completed candles (`have` so far)."""

    name: str  # "Chandelier 22×3 · 4h", "Adaptive trail · 15m", "Trail 2%", "EMA 9 · 1h"
    timeframe: str  # the candles it is read on ("" for a fixed trail)
    value: float | None
    since: float  # stepped: close of the candle that produced it; else the price's time
    step: bool  # changes only when a candle of `timeframe` completes
    have: int = 0
    need: int = 0
    distance: float | None = None  # a trail's distance as a fraction of the best price


@dataclass(frozen=True, slots=True)
class PositionSnapshot:
    position: Position
    mark: float | None
    pnl: float  # unrealized, quote, net of fees
    roi: float
    r: float | None
    protection: Protection
    stale: bool  # the mark is older than max_price_age
    ts: float
    indicator: RuleIndicator | None = None  # what its rules follow (None: no indicator)

    @property
    def key(self) -> tuple[str, str]:
        return ("position", self.position.id)


@dataclass(frozen=True, slots=True)
class PositionRemoved:
    """A position left the open set (closed); carries its final state."""

    position: Position
    ts: float
    key = None

    @property
    def clears(self) -> tuple[str, str]:
        return ("position", self.position.id)


@dataclass(frozen=True, slots=True)
class PositionCorrected:
    """A closed position's journal row was corrected after it was booked: a fill booked at a
    reference re-booked at the venue's price, or a fee booked with an estimate replaced by
    the venue's. Carries the corrected final state (as committed) and what was corrected,
    in words (`what`).

    Published by the ledger only after the corrected row is committed, and never for a
    correction that changed nothing: an open position's correction reaches the views with
    its snapshots, but a closed one has none, so without this event the history view and
    the day's realised P/L would keep showing numbers the venue has since corrected.
    Unkeyed (never coalesced, never dropped): each one is a change of booked money."""

    position: Position
    ts: float
    what: str
    key = None


@dataclass(frozen=True, slots=True)
class OrderSnapshot:
    order: Order

    @property
    def key(self) -> tuple[str, str]:
        return ("order", self.order.client_id)


@dataclass(frozen=True, slots=True)
class TickEvent:
    symbol: str
    price: float
    ts: float

    @property
    def key(self) -> tuple[str, str]:
        return ("tick", self.symbol)


@dataclass(frozen=True, slots=True)
class CandlesEvent:
    """The recent candle window of a symbol (last one possibly still forming)."""

    symbol: str
    candles: tuple[Candle, ...]
    timeframe: str = "1m"

    @property
    def key(self) -> tuple[str, str]:
        return ("candles", self.symbol)


@dataclass(frozen=True, slots=True)
class ActionTaken:
    action: Action
    symbol: str
    ok: bool = True
    detail: str = ""
    key = None


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    exchange: str
    market_data: bool
    orders: bool
    last_tick_age: float | None  # seconds since the newest tick of any symbol
    detail: str = ""
    clock_offset: float | None = None  # exchange clock minus ours, seconds (None: unknown)
    streams: tuple[tuple[str, str], ...] = ()  # (stream, state): ("orders", "up"), …
    rate_limit_headroom: float | None = None  # share of the venue's request budget left

    @property
    def key(self) -> tuple[str, str]:
        return ("connection", self.exchange)


@dataclass(frozen=True, slots=True)
class AccountEvent:
    equity: float
    balance: float
    currency: str
    ts: float
    funding: float | None = None  # funding received (+) or paid (−) so far, when known

    @property
    def key(self) -> tuple[str]:
        return ("account",)


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    message: str
    ts: float
    position_id: str | None = None
    key = None


Event = (PositionSnapshot | PositionRemoved | PositionCorrected | OrderSnapshot | TickEvent
         | CandlesEvent | ActionTaken | ConnectionEvent | AccountEvent | ErrorEvent)
