"""Immutable data objects passed between layers and threads.

Every object here is a frozen dataclass: the manager thread derives a new value with
`dataclasses.replace` instead of mutating, so any object can be handed to the GUI thread
or the store without copying and without locks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType

from pmgui.domain.enums import (
    ActionType,
    OrderRole,
    OrderSide,
    OrderStatus,
    OrderType,
    PositionStatus,
    Reason,
    Side,
    StopKind,
)
from pmgui.domain.slots import slot_constructor, slot_copier, slots_in_base

Scalar = float | int | str | bool | None
_OPEN = PositionStatus.OPEN
EMPTY: Mapping[str, Scalar] = MappingProxyType({})


def frozen_map(d: Mapping[str, Scalar] | None = None) -> Mapping[str, Scalar]:
    """A read-only copy of `d`; used for free-form inputs carried by actions."""
    if not d:
        return EMPTY  # one shared empty map (most positions have no overrides)
    return MappingProxyType(dict(d))


@dataclass(frozen=True, slots=True)
class Market:
    """Trading rules of one symbol: precision and limits (ccxt `market` subset)."""

    symbol: str
    tick_size: float
    amount_step: float
    min_amount: float = 0.0
    min_notional: float = 0.0
    contract_size: float = 1.0
    max_leverage: int = 125
    mmr: float = 0.004  # maintenance margin rate for the paper liquidation formula
    base: str = ""
    quote: str = "USDT"

    def round_price(self, price: float) -> float:
        """Nearest multiple of the tick size (as DESIGN §7 snaps drags and orders)."""
        return _round_to(price, self.tick_size)

    def floor_amount(self, amount: float) -> float:
        """Largest multiple of the amount step not above `amount` (never over-close)."""
        if self.amount_step <= 0:
            return amount
        q = amount / self.amount_step
        # 1e-9 of a step, and the division's rounding error, which grows with the number of
        # steps: 2.3 / 1e-8 is 229999999.99999997 (a floor without it lost a step)
        steps = math.floor(q + 1e-9 + abs(q) * 1e-14)
        return _clean(steps * self.amount_step, self.amount_step)

    def round_amount(self, amount: float) -> float:
        return _round_to(amount, self.amount_step)


def _decimals(step: float) -> int:
    if step <= 0:
        return 12
    return max(0, min(12, -math.floor(math.log10(step) + 1e-12) + 2))


def _clean(value: float, step: float) -> float:
    return round(value, _decimals(step))


def _round_to(value: float, step: float) -> float:
    steps = value / step if step > 0 else math.inf
    if not math.isfinite(steps):  # no step, or a value too large to count in steps
        return value
    return _clean(round(steps) * step, step)


@dataclass(frozen=True, slots=True)
@slots_in_base  # a replay makes one per row of its file (`pmgui.domain.slots`)
class Tick:
    symbol: str
    price: float
    ts: float  # seconds since the epoch (simulated time in replay)
    volume: float = 0.0
    # True when price moved continuously from the previous tick to this one (the inside of a
    # replayed candle's O→L→H→C path): an order triggered in between fills at its own level,
    # as it would have in the market. False for real ticks: a gap fills at this price.
    continuous: bool = False


@dataclass(frozen=True, slots=True)
class Candle:
    ts: float  # open time, seconds
    open: float
    high: float
    low: float
    close: float
    volume: float = 0.0


@dataclass(frozen=True, slots=True)
class Tranche:
    """One fill that built the position (entry or add-on), with its own TP/SL (seed 002)."""

    id: str
    qty: float
    entry: float
    opened_at: float
    sl: float | None = None
    tp: float | None = None
    source: str = "entry"  # entry | add_on | scaling | adopted


@dataclass(frozen=True, slots=True)
@slots_in_base  # copies switch class cheaply (`pmgui.domain.slots`)
class Position:
    """A position as the manager thread knows it. Never mutated: see `replace`."""

    id: str
    symbol: str
    side: Side
    qty: float
    entry: float
    leverage: float
    opened_at: float
    initial_qty: float
    sl: float | None = None
    tp: float | None = None
    initial_sl: float | None = None  # defines R; None → R multiples undefined
    sl_kind: StopKind = StopKind.INITIAL
    trailing: float | None = None  # the trailing stop level currently in force, if any
    liquidation: float | None = None
    fee_rate: float = 0.0005
    contract_size: float = 1.0
    preset: str = "manual"
    overrides: Mapping[str, Scalar] = field(default_factory=lambda: EMPTY)
    automation: bool = True
    status: PositionStatus = PositionStatus.OPEN
    peak_roi: float = 0.0  # best ROI seen since open (momentum loss)
    best_price: float | None = None  # most favourable price since open (trailing)
    flags: frozenset[str] = frozenset()  # rule memory: tp1_done, breakeven_set, add_on_executed…
    realized_pnl: float = 0.0  # quote, net of fees, from reductions so far
    fees_paid: float = 0.0
    tranches: tuple[Tranche, ...] = ()
    closed_at: float | None = None
    exit_price: float | None = None
    exit_reason: str | None = None
    exchange: str = "paper"
    # as the venue reports it at every reconciliation (not journaled): cross | isolated,
    # and whether the position is one leg of a hedge-mode (long/short) account
    margin_mode: str | None = None
    hedge: bool = False
    # funding received (+) or paid (−) by this position so far; None: the venue does not say
    funding: float | None = None

    @property
    def dir(self) -> int:
        return self.side.dir

    @property
    def is_open(self) -> bool:
        return self.status is _OPEN  # a module constant: an enum member lookup costs ~0.1 µs

    def evolve(self, **changes: object) -> Position:
        """`dataclasses.replace(self, **changes)`, several times faster (it runs on every
        tick that moves a peak, a best price or a stop): one generated function per set of
        changed field names copies the other fields straight into a new instance (Position
        has no __post_init__ to run)."""
        fn = _EVOLVERS.get(tuple(changes))
        if fn is None:
            fn = _evolver(tuple(changes))
            if fn is None:
                return replace(self, **changes)  # raises the same TypeError as replace
        return fn(self, *changes.values())


_POSITION_NAMES = tuple(f.name for f in fields(Position))
_EVOLVERS: dict[tuple[str, ...], Callable[..., Position]] = {}


def evolver(*names: str) -> Callable[..., Position]:
    """`fn(pos, *values)` = `pos.evolve(**dict(zip(names, values)))`, without the keyword
    handling (for a hot path that always changes the same fields)."""
    fn = _evolver(names)
    if fn is None:
        raise TypeError(f"Position has no field among {names!r} (or one is repeated)")
    return fn


def _evolver(names: tuple[str, ...]) -> Callable[..., Position] | None:
    """`fn(pos, *values)`: a copy of `pos` with `names` set to `values` (None when a name is
    not a field or is repeated), straight-line code through the slot descriptors."""
    try:
        fn = slot_copier(Position, names)
    except TypeError:
        return None
    if len(_EVOLVERS) < 256:
        _EVOLVERS[names] = fn
    return fn


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """What pmgui asks an exchange to do. `client_id` is journaled before sending."""

    client_id: str
    symbol: str
    side: OrderSide
    type: OrderType
    amount: float
    price: float | None = None  # limit price
    trigger_price: float | None = None  # stop / take-profit trigger
    reduce_only: bool = False
    position_id: str | None = None
    role: OrderRole = OrderRole.REDUCE
    reason: str | None = None
    trigger_ref: str = "mark"  # price a stop/take-profit triggers on: "mark" | "last"


@dataclass(frozen=True, slots=True)
class Order:
    client_id: str
    symbol: str
    side: OrderSide
    type: OrderType
    amount: float
    status: OrderStatus
    exchange_id: str | None = None
    price: float | None = None
    trigger_price: float | None = None
    filled: float = 0.0
    average: float | None = None
    reduce_only: bool = False
    position_id: str | None = None
    role: OrderRole = OrderRole.REDUCE
    reason: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    error: str | None = None
    # stop / take-profit: the price it triggers on ("mark" | "last") as the venue
    # acknowledged it (not journaled: the venue's listing says it again after a restart)
    trigger_ref: str | None = None

    @property
    def remaining(self) -> float:
        return max(0.0, self.amount - self.filled)

    @staticmethod
    def from_request(req: OrderRequest, ts: float) -> Order:
        return Order(
            client_id=req.client_id, symbol=req.symbol, side=req.side, type=req.type,
            amount=req.amount, status=OrderStatus.PENDING, price=req.price,
            trigger_price=req.trigger_price, reduce_only=req.reduce_only,
            position_id=req.position_id, role=req.role, reason=req.reason,
            created_at=ts, updated_at=ts,
        )


@dataclass(frozen=True, slots=True)
class Fill:
    id: str
    order_client_id: str | None
    symbol: str
    side: OrderSide
    qty: float
    price: float
    fee: float
    ts: float
    exchange_order_id: str | None = None
    liquidation: bool = False


@dataclass(frozen=True, slots=True)
@slots_in_base  # copies switch class cheaply (`pmgui.domain.slots`)
class Action:
    """A decision: by a rule, by the trader (`manual`) or by reconciliation.

    `inputs` records what caused it (price, roi, peak, indicator values, thresholds) so the
    action log can explain every decision. `flags` are set on the position once the action
    has been carried out (e.g. `tp1_done`).
    """

    type: ActionType
    reason: Reason
    position_id: str
    price: float  # the price that triggered the decision (or the limit price for adds)
    qty: float | None = None  # reduce/add/close amount
    sl: float | None = None  # new SL for move_sl
    tp: float | None = None  # new TP for move_tp
    rule: str = ""
    priority: int = 0
    ts: float = 0.0
    inputs: Mapping[str, Scalar] = field(default_factory=lambda: EMPTY)
    flags: frozenset[str] = frozenset()
    stop_kind: StopKind | None = None  # for move_sl: what the new stop is
    limit: bool = False  # add at a limit price (add-on at EMA9) instead of market

    @property
    def is_closing(self) -> bool:
        return self.type in (ActionType.CLOSE, ActionType.REDUCE)


@dataclass(frozen=True, slots=True)
@slots_in_base  # copies switch class cheaply (`pmgui.domain.slots`)
class Indicators:
    """Indicator values from completed candles; None until enough history."""

    ema9: float | None = None
    atr: float | None = None
    highest_high: float | None = None
    lowest_low: float | None = None
    rsi: float | None = None
    volatility: float | None = None  # intraday volatility as a fraction
    momentum: float | None = None  # recent price change as a fraction
    volume: float | None = None  # recent quote volume
    trend: float | None = None  # EMA slope as a fraction
    last_change: float | None = None  # the last completed candle's close / previous close - 1
    # confirmed recent swing highs / lows (support and resistance), newest last
    swing_highs: tuple[float, ...] = ()
    swing_lows: tuple[float, ...] = ()


_NO_INDICATORS = Indicators()  # frozen: one object serves every state made without any
_NO_FRAMES: Mapping[str, Indicators] = MappingProxyType({})


@dataclass(frozen=True, slots=True, init=False)
@slots_in_base  # copies switch class cheaply (`pmgui.domain.slots`)
class MarketState:
    """What a rule may know about the market at the moment of evaluation.

    Made on every evaluated tick, so `__new__` builds it whole (`_new_market_state`: the
    slots stored on a plain twin of the class, then the class set) instead of the frozen
    dataclass `__init__`'s `object.__setattr__` per field; the defaults are shared
    immutable objects rather than a new empty map per call. Same signature and fields."""

    symbol: str
    price: float
    ts: float
    market: Market
    indicators: Indicators = _NO_INDICATORS
    # Indicators per timeframe (`1m` … `1d`, see `pmgui.domain.timeframes`). A rule reads the
    # frame of its `timeframe` parameter; a timeframe missing here falls back to
    # `indicators` (callers that compute one set only, e.g. single-timeframe tests).
    frames: Mapping[str, Indicators] = field(default_factory=lambda: _NO_FRAMES)

    def __new__(cls, symbol: str, price: float, ts: float, market: Market,
                indicators: Indicators = _NO_INDICATORS,
                frames: Mapping[str, Indicators] = _NO_FRAMES) -> MarketState:
        return _new_market_state(symbol, price, ts, market, indicators, frames)

    def __getnewargs__(self) -> tuple:
        """What `copy` and `pickle` pass to `__new__` (it takes the fields)."""
        return (self.symbol, self.price, self.ts, self.market, self.indicators, self.frames)

    def indicators_for(self, timeframe: str) -> Indicators:
        return self.frames.get(timeframe, self.indicators)


_new_market_state = slot_constructor(MarketState)
