"""CcxtExchange.run(): prices, order updates and connection state from the emulator's
websockets, with drops, silent stalls and REST fallback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal

import pytest

from pmgui.domain.enums import OrderSide, OrderStatus, OrderType
from pmgui.domain.models import Candle, OrderRequest, Tick
from pmgui.exchange.ccxt_adapter import CcxtExchange
from tests.adapter_rig import FAST_STREAMS
from tests.adapter_rig import running as adapter_running
from tests.binance_rig import binance_exchange
from tests.fakes.binance_server import BinanceServer
from tests.fakes.recording_sink import RecordingSink

BTC = "BTC/USDT:USDT"


@pytest.fixture
async def running(server: BinanceServer) -> AsyncIterator[tuple[CcxtExchange, RecordingSink]]:
    async with adapter_running(binance_exchange(server, FAST_STREAMS)) as pair:
        yield pair


async def test_ticks_candles_and_connection(server: BinanceServer,
                                            running: tuple[CcxtExchange, RecordingSink]) -> None:
    ex, sink = running
    await server.set_price(BTC, 50100)
    await sink.wait_for(lambda: any(t.price == 50100 for t in sink.ticks))
    assert all(t.symbol == BTC and t.price > 0 for t in sink.ticks)
    assert sink.candles and sink.candles[-1][1].close == 50100
    assert sink.connections[-1].market_data and sink.connections[-1].orders
    assert "btcusdt@miniTicker" in server.ws_subscriptions()
    age = ex.price_age(BTC)
    assert age is not None and age >= 0


async def test_order_stream_reports_fills_and_triggered_stop(
        server: BinanceServer, running: tuple[CcxtExchange, RecordingSink]) -> None:
    ex, sink = running
    entry = await ex.create_order(OrderRequest("s-entry", BTC, OrderSide.BUY, OrderType.MARKET,
                                               0.01))
    assert entry.status is OrderStatus.FILLED
    await sink.wait_for(lambda: sink.fills("s-entry"))
    (fill,) = sink.fills("s-entry")
    assert fill.qty == pytest.approx(0.01) and fill.price == 50000.0 and fill.fee > 0

    await ex.create_order(OrderRequest("s-sl", BTC, OrderSide.SELL, OrderType.STOP_MARKET,
                                       0.01, trigger_price=49500, reduce_only=True))
    await sink.wait_for(lambda: any(u.order.client_id == "s-sl" for u in sink.updates))
    await server.set_price(BTC, 49400)
    await sink.wait_for(lambda: any(u.order.client_id == "s-sl"
                                    and u.order.status is OrderStatus.FILLED
                                    for u in sink.updates))
    sl_updates = [u for u in sink.updates if u.order.client_id == "s-sl"]
    assert all(u.order.type is OrderType.STOP_MARKET for u in sl_updates)
    assert all(u.order.trigger_price == 49500 for u in sl_updates)
    fills = sink.fills("s-sl")
    assert sum(f.qty for f in fills) == pytest.approx(0.01)
    assert fills[-1].price == 49400.0
    ids = [f.id for f in sink.fills()]
    assert len(ids) == len(set(ids))
    assert server.state.positions["BTCUSDT"].amount == 0


async def test_websocket_drop_reconnects_and_resubscribes(
        server: BinanceServer, running: tuple[CcxtExchange, RecordingSink]) -> None:
    _, sink = running
    before = dict(server.ws_connects)
    await server.drop_websockets()
    await sink.wait_for(lambda: not sink.connections[-1].orders)
    await sink.wait_for(lambda: server.ws_connects["market"] > before["market"]
                        and server.ws_connects["user"] > before["user"]
                        and "btcusdt@miniTicker" in server.ws_subscriptions())
    await sink.wait_for(lambda: sink.connections[-1].orders
                        and sink.connections[-1].market_data)
    n = len(sink.ticks)
    await server.set_price(BTC, 50321.5)
    await sink.wait_for(lambda: any(t.price == 50321.5 for t in sink.ticks[n:]))


async def test_silent_stall_falls_back_to_rest_then_resubscribes(
        server: BinanceServer, running: tuple[CcxtExchange, RecordingSink]) -> None:
    _, sink = running
    markets_before = server.ws_connects["market"]
    server.faults.market_data_stalled = True
    # the price moves but the websocket says nothing: only REST polling can see it
    server.state.prices["BTCUSDT"] = Decimal("50777")
    await sink.wait_for(lambda: any(t.price == 50777 for t in sink.ticks))
    assert any(p.endswith("ticker/24hr") for p in server.paths())
    # after `resubscribe_after` of silence the stream is torn down and dialled again
    await sink.wait_for(lambda: server.ws_connects["market"] > markets_before)
    server.faults.market_data_stalled = False
    await server.set_price(BTC, 50800)
    await sink.wait_for(lambda: any(t.price == 50800 for t in sink.ticks))


async def test_stream_and_rest_down_reports_stale_market_data(
        server: BinanceServer, running: tuple[CcxtExchange, RecordingSink]) -> None:
    _, sink = running
    server.faults.market_data_stalled = True
    server.faults.http_429 = 10_000
    server.faults.http_429_paths = ("ticker",)
    await sink.wait_for(lambda: not sink.connections[-1].market_data)
    assert "no fresh price" in sink.connections[-1].detail
    server.faults.http_429 = 0
    server.faults.market_data_stalled = False
    await server.set_price(BTC, 50010)
    await sink.wait_for(lambda: sink.connections[-1].market_data)


async def test_missed_order_events_are_recovered_after_reconnect(
        server: BinanceServer, running: tuple[CcxtExchange, RecordingSink]) -> None:
    ex, sink = running
    server.state.set_position("BTCUSDT", "0.01", "50000")
    await ex.create_order(OrderRequest("r-sl", BTC, OrderSide.SELL, OrderType.STOP_MARKET,
                                       0.01, trigger_price=49500, reduce_only=True))
    await sink.wait_for(lambda: any(u.order.client_id == "r-sl" for u in sink.updates))
    # the user stream goes deaf and drops; the stop fires while nobody listens
    server.faults.user_stream_stalled = True
    await server.drop_websockets(market=False, user=True)
    await server.set_price(BTC, 49000)
    server.faults.user_stream_stalled = False
    await sink.wait_for(lambda: any(u.order.client_id == "r-sl"
                                    and u.order.status is OrderStatus.FILLED
                                    for u in sink.updates))
    fills = sink.fills("r-sl")
    assert sum(f.qty for f in fills) == pytest.approx(0.01)
    assert fills[-1].price == 49000.0


async def test_without_streams_prices_and_orders_come_from_rest(server: BinanceServer) -> None:
    """A venue without websockets: REST polling carries prices and order fills."""
    ex = binance_exchange(server, FAST_STREAMS)
    await ex.connect()
    ex.capabilities = replace(ex.capabilities, watch_tickers=False, watch_orders=False,
                              missing=("live price stream", "live order stream"))
    ex.subscribe([BTC])
    sink = RecordingSink()
    task = asyncio.create_task(ex.run(sink))
    try:
        await sink.wait_for(lambda: sink.ticks and sink.connections[-1].market_data)
        server.state.set_position("BTCUSDT", "0.01", "50000")
        await ex.create_order(OrderRequest("p-sl", BTC, OrderSide.SELL, OrderType.STOP_MARKET,
                                           0.01, trigger_price=49500, reduce_only=True))
        await server.set_price(BTC, 49300)
        await sink.wait_for(lambda: any(t.price == 49300 for t in sink.ticks))
        await sink.wait_for(lambda: any(u.order.client_id == "p-sl"
                                        and u.order.status is OrderStatus.FILLED
                                        for u in sink.updates))
        fills = sink.fills("p-sl")
        assert sum(f.qty for f in fills) == pytest.approx(0.01)
        assert fills[-1].price == 49300.0
        assert server.ws_connects == {"market": 0, "user": 0}
        assert sink.connections[-1].orders  # polling works, so orders are not "down"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await ex.close()


async def test_bids_asks_price_source(server: BinanceServer) -> None:
    settings = replace(FAST_STREAMS, price_source="bids_asks")
    ex = binance_exchange(server, settings)
    await ex.connect()
    ex.subscribe([BTC])
    sink = RecordingSink()
    task = asyncio.create_task(ex.run(sink))
    try:
        await sink.wait_for(lambda: "btcusdt@bookTicker" in server.ws_subscriptions())
        await server.set_price(BTC, 50200)
        await sink.wait_for(lambda: any(t.price == 50200 for t in sink.ticks))  # mid price
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await ex.close()


class ReactiveSink(RecordingSink):
    """An engine-like sink: closes at market when an entry fills; its tick handler is buggy."""

    exchange: CcxtExchange | None = None

    async def on_tick(self, tick) -> None:  # type: ignore[no-untyped-def]
        await super().on_tick(tick)
        raise RuntimeError("engine bug while handling a tick")

    async def on_order_update(self, update) -> None:  # type: ignore[no-untyped-def]
        await super().on_order_update(update)
        if update.order.client_id == "re-entry" and update.fills and self.exchange:
            await self.exchange.create_order(OrderRequest(
                "re-close", BTC, OrderSide.SELL, OrderType.MARKET, 0.01, reduce_only=True))


async def test_engine_reacting_inside_callbacks_neither_deadlocks_nor_kills_streams(
        server: BinanceServer) -> None:
    ex = binance_exchange(server, FAST_STREAMS)
    await ex.connect()
    ex.subscribe([BTC])
    sink = ReactiveSink()
    sink.exchange = ex
    task = asyncio.create_task(ex.run(sink))
    try:
        await sink.wait_for(lambda: sink.connections and sink.connections[-1].orders)
        await ex.create_order(OrderRequest("re-entry", BTC, OrderSide.BUY, OrderType.MARKET,
                                           0.01))
        await sink.wait_for(lambda: sink.fills("re-close"))
        assert server.state.positions["BTCUSDT"].amount == 0
        n = len(sink.ticks)
        await server.set_price(BTC, 50055)
        await sink.wait_for(lambda: any(t.price == 50055 for t in sink.ticks[n:]))
        assert len(sink.fills("re-entry")) == 1 and len(sink.fills("re-close")) == 1
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await ex.close()


async def test_late_child_order_events_do_not_duplicate_fills(
        server: BinanceServer, running: tuple[CcxtExchange, RecordingSink]) -> None:
    """The stop's ALGO_UPDATE (with avg price and qty) arrives first, the triggered market
    order's own events later: one execution, one fill id."""
    ex, sink = running
    server.state.set_position("BTCUSDT", "0.01", "50000")
    await ex.create_order(OrderRequest("late-sl", BTC, OrderSide.SELL, OrderType.STOP_MARKET,
                                       0.01, trigger_price=49500, reduce_only=True))
    await sink.wait_for(lambda: any(u.order.client_id == "late-sl" for u in sink.updates))
    server.faults.hold_order_events = True
    await server.set_price(BTC, 49450)
    await sink.wait_for(lambda: sink.fills("late-sl"))
    server.faults.hold_order_events = False
    assert await server.release_held_events() > 0
    (algo,) = [o for o in server.state.algo_orders.values() if o.client_id == "late-sl"]
    child = str(algo.actual_order_id)
    # wait until the adapter has processed the late child events (it links them to the stop)
    await sink.wait_for(lambda: ex._algo_by_child.get(child) == str(algo.order_id)
                        and any(str(o.get("id")) == child for o in ex._ex.orders))
    await ex._process_cache()  # the stream loop's own pass, run now to be deterministic
    fills = sink.fills("late-sl")
    assert len({f.id for f in fills}) == 1
    assert sum(f.qty for f in {f.id: f for f in fills}.values()) == pytest.approx(0.01)
    assert fills[0].price == 49450.0
    assert all(u.order.type is OrderType.STOP_MARKET for u in sink.updates
               if u.order.client_id == "late-sl")


async def test_candles_from_ticks_close_on_the_minute_and_prefer_the_venue_kline(
        server: BinanceServer) -> None:
    ex = binance_exchange(server, FAST_STREAMS)
    await ex.connect()
    sink = RecordingSink()
    try:
        # ticks far in the past: the venue has no kline for that minute → built from ticks
        for ts, price in ((120.0, 100.0), (130.0, 104.0), (150.0, 98.0), (110.0, 500.0),
                          (185.0, 101.0)):
            await ex._update_candle(sink, Tick(BTC, price, ts))
        await asyncio.gather(*ex._background)
        closed = [c for s, c, done in sink.candles if done]
        assert closed == [Candle(120.0, 100.0, 104.0, 98.0, 98.0, 0.0)]  # late tick ignored
        forming = [c for s, c, done in sink.candles if not done]
        assert forming[-1] == Candle(180.0, 101.0, 101.0, 101.0, 101.0, 0.0)

        # a minute the venue knows: its kline (true high/low) replaces the tick-built one
        (venue,) = await ex.fetch_ohlcv(BTC, "1m", limit=1)
        built = Candle(venue.ts, venue.close, venue.close, venue.close, venue.close, 0.0)
        await ex._emit_closed_candle(sink, BTC, built)
        assert sink.candles[-1] == (BTC, venue, True)
        assert venue.high > venue.close > venue.low

        server.faults.http_429 = 100  # unreachable: fall back to the tick-built candle
        await ex._emit_closed_candle(sink, BTC, built)
        assert sink.candles[-1] == (BTC, built, True)
    finally:
        server.faults.http_429 = 0
        await ex.close()
