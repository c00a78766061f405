"""The real engine and ccxt adapter over the local Binance emulator, on a real SQLite journal:
what the Binance engine tests of fills told late or looked up (fired stops, fills reported
without a price, fees of looked-up fills) share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

from pmgui.domain.enums import OrderRole, Side
from pmgui.domain.models import Fill
from pmgui.engine import commands as cmd
from pmgui.engine.core import EngineCore
from pmgui.engine.ledger import FEE_ESTIMATES_KEY
from pmgui.engine.outbox import Outbox
from pmgui.engine.runtime import PositionRuntime
from pmgui.engine.settings import EngineSettings
from pmgui.exchange.ccxt_adapter import AdapterSettings, CcxtExchange
from pmgui.exchange.credentials import Credentials
from pmgui.exchange.retry import Backoff
from pmgui.store.db import Store
from tests.fakes.binance_server import BinanceServer

BTC = "BTC/USDT:USDT"
PRICE = 50000.0  # the emulator's BTC price
TAKER_RATE = Decimal("0.0004")  # an account's own taker rate (the market lists 0.0005)
ESTIMATE = PRICE * 0.01 * 0.0005  # the fee of 0.01 BTC at the market's listed rate
VENUE_FEE = float(Decimal("50000") * Decimal("0.01") * TAKER_RATE)  # and at the account's
# short polls and quick bounded lookups (`fired_lookups` retries 10-50 ms apart)
FAST = AdapterSettings(stale_after=1.0, poll_interval=0.3, resubscribe_after=5.0,
                       order_poll_interval=0.5, supervisor_interval=0.05,
                       order_stream_check=0.1, backoff=Backoff(0.01, 2.0, 0.05, 0.0))


@asynccontextmanager
async def rated_server() -> AsyncIterator[BinanceServer]:
    """The emulator, its account charged `TAKER_RATE` (not the rate the market lists: the
    fee a venue says differs from the one estimated)."""
    srv = BinanceServer()
    srv.taker_fee = TAKER_RATE
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


def binance_exchange(server: BinanceServer, settings: AdapterSettings = FAST) -> CcxtExchange:
    """The ccxt adapter (binanceusdm) pointed at the emulator."""
    return CcxtExchange("binanceusdm", options=server.ccxt_config(),
                        credentials=Credentials("test-key", "s"), settings=settings)


async def binance_engine(server: BinanceServer, db: Path, settings: AdapterSettings = FAST,
                         stream: bool = True, outbox: Outbox | None = None
                         ) -> tuple[EngineCore, CcxtExchange, Outbox]:
    """A started engine (`manual` preset; streams on unless `stream` is False) over the
    emulator: a crossed stop is left to the exchange's own order (no close of the engine's
    own for 600 s). `outbox`: one whose listeners hear the start too."""
    exchange = binance_exchange(server, settings)
    outbox = outbox if outbox is not None else Outbox()
    engine = EngineCore(exchange, Store.open(db), outbox,
                        EngineSettings(default_preset="manual", protect_throttle=0.0,
                                       exchange_stop_grace=600.0))
    await engine.start(stream=stream)
    return engine, exchange, outbox


async def open_long(engine: EngineCore, sl: float, tp: float = 52000.0) -> tuple[str, str]:
    """A long of 0.01 BTC at the emulator's price with its stop on the exchange: (position
    id, the stop's client id)."""
    await engine.handle(cmd.OpenPosition(BTC, Side.LONG, 0.01, 10, sl=sl, tp=tp))
    pid = engine.book.find(BTC, Side.LONG).id
    stop = next(o for o in engine.orders.values() if o.role is OrderRole.STOP_LOSS)
    return pid, stop.client_id


async def open_before_the_stream(engine: EngineCore, server: BinanceServer
                                 ) -> PositionRuntime:
    """The stream's order reports held (`hold_order_events`, left on: the caller releases or
    discards them): a market long of 0.01 BTC booked from the create answer alone, with an
    estimated fee. Its runtime."""
    server.faults.hold_order_events = True
    res = await engine.handle(cmd.OpenPosition(BTC, Side.LONG, 0.01, 10, sl=48000.0,
                                               tp=52000.0))
    assert res.ok, res.message
    rt = engine.book.find(BTC, Side.LONG)
    assert rt is not None
    return rt


def waiting_fees(engine: EngineCore) -> dict:
    """The fills whose estimated fee waits for the venue's (`ledger.fee_estimates`)."""
    return engine.store.get_setting(FEE_ESTIMATES_KEY, {}) or {}


def records(engine: EngineCore, client_id: str) -> list[Fill]:
    """The journal's fill records of order `client_id`."""
    return [f for f in engine.store.fills() if f.order_client_id == client_id]


def trade_listings(server: BinanceServer) -> int:
    """How often the emulator was asked for an account's trades (`userTrades`)."""
    return sum(1 for p in server.paths() if p.endswith("/userTrades"))
