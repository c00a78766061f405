"""Shared helpers for the paper-exchange tests: a recording sink (a test double of the
engine's ExchangeSink) and a small venue driven tick by tick."""

from __future__ import annotations

from pmgui.domain.enums import OrderSide, OrderType
from pmgui.domain.models import Candle, Market, OrderRequest, Tick
from pmgui.exchange.base import ConnectionState, OrderUpdate
from pmgui.exchange.paper import PaperExchange

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
MARKETS = {
    BTC: Market(BTC, tick_size=0.1, amount_step=0.001, min_amount=0.001, min_notional=5.0,
                mmr=0.004, base="BTC"),
    ETH: Market(ETH, tick_size=0.01, amount_step=0.001, min_amount=0.001, min_notional=5.0,
                mmr=0.005, base="ETH"),
}


class RecordingSink:
    """Records every call in order, as the engine would receive them."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    async def on_tick(self, tick: Tick) -> None:
        self.calls.append(("tick", tick))

    async def on_candle(self, symbol: str, candle: Candle, closed: bool) -> None:
        self.calls.append(("candle", symbol, candle, closed))

    async def on_order_update(self, update: OrderUpdate) -> None:
        self.calls.append(("update", update))

    async def on_connection(self, state: ConnectionState) -> None:
        self.calls.append(("connection", state))

    def updates(self) -> list[OrderUpdate]:
        return [c[1] for c in self.calls if c[0] == "update"]

    def ticks(self) -> list[Tick]:
        return [c[1] for c in self.calls if c[0] == "tick"]


def venue(**kw) -> PaperExchange:
    kw.setdefault("realtime", False)
    return PaperExchange(dict(MARKETS), None, **kw)


class Driver:
    """Feeds hand-made ticks to a venue in simulated time."""

    def __init__(self, ex: PaperExchange, sink: RecordingSink | None = None) -> None:
        self.ex = ex
        self.sink = sink or RecordingSink()
        self.ts = 1_700_000_000.0

    async def tick(self, price: float, symbol: str = BTC) -> list[OrderUpdate]:
        """Deliver a tick; returns the updates it caused (earlier queued ones go first)."""
        await self.ex.flush(self.sink)
        before = len(self.sink.updates())
        self.ts += 1.0
        await self.ex.deliver(Tick(symbol, price, self.ts), self.sink)
        return self.sink.updates()[before:]


def req(cid: str, side: str, otype: OrderType = OrderType.MARKET, amount: float = 0.1,
        symbol: str = BTC, **kw) -> OrderRequest:
    return OrderRequest(client_id=cid, symbol=symbol, side=OrderSide(side), type=otype,
                        amount=amount, **kw)
