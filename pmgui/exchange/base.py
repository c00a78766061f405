"""The Exchange protocol: what the engine needs from any venue (paper, ccxt).

All methods are coroutines run on the manager thread's asyncio loop. Streams are pushed
into an `ExchangeSink` (the engine) by `run()`, so the same engine code path serves the
paper exchange, a live ccxt exchange and replay in simulated time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from pmgui.domain.enums import Side
from pmgui.domain.models import Candle, Fill, Market, Order, OrderRequest, Tick


@dataclass(frozen=True, slots=True)
class ExchangePosition:
    """A position as the exchange reports it (source of truth for live reconciliation)."""

    symbol: str
    side: Side
    qty: float
    entry: float
    leverage: float
    liquidation: float | None = None
    mark: float | None = None
    unrealized_pnl: float | None = None
    opened_at: float | None = None
    margin_mode: str | None = None  # "cross" | "isolated" as the venue reports it (None: unsaid)
    hedged: bool = False  # held in hedge (long/short) position mode
    sl: float | None = None  # position-level stop/take-profit already set on the venue
    tp: float | None = None  # (Bybit trading-stop), read on adoption


@dataclass(frozen=True, slots=True)
class Balance:
    currency: str
    total: float
    free: float
    used: float
    funding: float | None = None  # funding received (+) or paid (−) so far, when known


@dataclass(frozen=True, slots=True)
class FundingPayment:
    """One funding settlement of one position: `amount` received (+) or paid (−). `side` is
    None where the venue names only the symbol (then it is attributed only to a symbol with
    one open position)."""

    ts: float
    symbol: str
    side: Side | None
    amount: float


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What the venue can do; missing capabilities are shown to the trader, not hidden."""

    stop_orders: bool = True
    take_profit_orders: bool = True
    edit_orders: bool = False
    watch_tickers: bool = True
    watch_orders: bool = True
    watch_positions: bool = False
    fetch_ohlcv: bool = True
    hedge_mode: bool = False  # positions of both sides per symbol (positionSide/Idx, posSide)
    isolated_margin: bool = False  # orders follow each position's margin mode
    mark_trigger: bool = False  # stops can trigger on the mark price
    position_tpsl: bool = False  # the venue's own position TP/SL (shown in its app)
    missing: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """A change of one order, with the fills it brought (if any)."""

    order: Order
    fills: tuple[Fill, ...] = ()


@dataclass(frozen=True, slots=True)
class ConnectionState:
    market_data: bool
    orders: bool
    detail: str = ""
    clock_offset: float | None = None  # exchange clock minus ours, seconds (None: unknown)
    streams: tuple[tuple[str, str], ...] = ()  # (stream, state) e.g. ("orders", "up")
    rate_limit_headroom: float | None = None  # share of the request budget left, 0..1


class ExchangeSink(Protocol):
    """Where a running exchange delivers its streams (implemented by the engine).

    A sink may also have `on_tick_run(ticks, low, high, volumes) -> bool` (the engine's
    `EngineCore.on_tick_run`): the paper venue in simulated time then offers it a recorded
    file's ticks a run at once, and delivers them one by one when it declines."""

    async def on_tick(self, tick: Tick) -> None: ...

    async def on_candle(self, symbol: str, candle: Candle, closed: bool) -> None: ...

    async def on_order_update(self, update: OrderUpdate) -> None: ...

    async def on_connection(self, state: ConnectionState) -> None: ...


@runtime_checkable
class Exchange(Protocol):
    id: str
    capabilities: Capabilities

    async def connect(self) -> None:
        """Load markets and authenticate; raise ExchangeError with a clear message."""

    async def close(self) -> None: ...

    def markets(self) -> dict[str, Market]: ...

    async def fetch_positions(self) -> list[ExchangePosition]: ...

    async def fetch_balance(self) -> Balance: ...

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        """Open orders including conditional (stop / take-profit) ones."""

    async def fetch_order_by_client_id(self, client_id: str, symbol: str) -> Order | None:
        """Resolve an order whose create timed out: never re-send blindly."""

    async def create_order(self, req: OrderRequest) -> Order: ...

    async def cancel_order(self, order: Order) -> Order: ...

    async def set_leverage(self, symbol: str, leverage: float) -> None: ...

    async def fetch_ohlcv(self, symbol: str, timeframe: str = "1m",
                          limit: int = 200) -> list[Candle]: ...

    async def fetch_price(self, symbol: str) -> Tick | None:
        """REST fallback for a fresh price (None when the venue has none)."""

    def subscribe(self, symbols: Sequence[str]) -> None:
        """Stream these symbols (in addition to any already streamed)."""

    async def run(self, sink: ExchangeSink) -> None:
        """Deliver ticks, candles, order updates and connection changes until cancelled."""
