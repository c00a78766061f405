"""The live path's per-message work in a price storm (pmgui.bench.live measures it):
Binance prices read straight off the websocket message, and order events diffed by what
changed instead of by converting every cached order again."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pmgui.domain.enums import OrderSide, OrderStatus, OrderType
from pmgui.domain.models import OrderRequest
from pmgui.exchange.ccxt_adapter import CcxtExchange
from tests.adapter_rig import FAST_STREAMS
from tests.adapter_rig import running as adapter_running
from tests.binance_rig import binance_exchange
from tests.fakes.binance_server import BinanceServer
from tests.fakes.recording_sink import RecordingSink

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"


@pytest.fixture
async def running(server: BinanceServer) -> AsyncIterator[tuple[CcxtExchange, RecordingSink]]:
    async with adapter_running(binance_exchange(server, FAST_STREAMS)) as pair:
        yield pair


@pytest.mark.parametrize("stream", ["btcusdt@miniTicker", "btcusdt@ticker"])
async def test_fast_tick_reads_a_ticker_as_ccxt_does(server: BinanceServer, stream: str) -> None:
    ex = binance_exchange(server, FAST_STREAMS)
    await ex.connect()
    try:
        ex.subscribe([BTC])
        server.state.prices["BTCUSDT"] = server.state.prices["BTCUSDT"] + 1  # 50001
        message = server._market_events("BTCUSDT", stream)
        assert message is not None
        ours = ex._fast_tick(dict(message))
        theirs = ex._tick_from(BTC, ex._client().parse_ws_ticker(dict(message), "contract"))
        assert ours is not None and ours == theirs and ours.price == 50001.0
        # a combined stream's wrapper carries the same event
        assert ex._fast_tick({"stream": stream, "data": dict(message)}) == ours
        # not a subscribed symbol's, or not a ticker: ccxt's own path handles it
        eth = server._market_events("ETHUSDT", "ethusdt@miniTicker")
        assert ex._fast_tick(eth) is None
        assert ex._fast_tick(server._market_events("BTCUSDT", "btcusdt@bookTicker")) is None
        assert ex._fast_tick({**message, "c": "nan"}) is None
        assert ex._fast_tick({"result": None, "id": 1}) is None
    finally:
        await ex.close()


async def test_prices_skip_ccxts_ticker_parsing_and_survive_a_drop(
        server: BinanceServer, running: tuple[CcxtExchange, RecordingSink]) -> None:
    ex, sink = running
    await server.set_price(BTC, 50100)
    await sink.wait_for(lambda: any(t.price == 50100 for t in sink.ticks))
    assert BTC not in (ex._client().tickers or {})  # ccxt never parsed a BTC ticker
    assert sink.connections[-1].market_data
    before = server.ws_connects["market"]
    await server.drop_websockets(market=True, user=False)
    await sink.wait_for(lambda: server.ws_connects["market"] > before
                        and "btcusdt@miniTicker" in server.ws_subscriptions())
    n = len(sink.ticks)
    await server.set_price(BTC, 50200)
    await sink.wait_for(lambda: any(t.price == 50200 for t in sink.ticks[n:]))
    assert BTC not in (ex._client().tickers or {})


async def test_order_events_convert_only_the_orders_that_changed(
        server: BinanceServer, running: tuple[CcxtExchange, RecordingSink],
        monkeypatch: pytest.MonkeyPatch) -> None:
    ex, sink = running
    server.state.set_position("BTCUSDT", "0.02", "50000")
    for i, trig in enumerate((49000, 48000, 47000)):
        await ex.create_order(OrderRequest(f"c-sl{i}", BTC, OrderSide.SELL,
                                           OrderType.STOP_MARKET, 0.01, trigger_price=trig,
                                           reduce_only=True))
    await sink.wait_for(lambda: {u.order.client_id for u in sink.updates}
                        >= {"c-sl0", "c-sl1", "c-sl2"})
    await sink.wait_for(lambda: len(ex._client().orders or []) >= 3)
    await ex._process_cache()  # whatever the stream loop has not diffed yet
    converted: list[str] = []
    real = ex._to_order

    def counting(o, **kw):
        converted.append(str(o.get("clientOrderId")))
        return real(o, **kw)

    monkeypatch.setattr(ex, "_to_order", counting)
    n = len(sink.updates)
    await ex._process_cache()
    assert converted == [] and len(sink.updates) == n  # nothing changed: nothing converted

    await server.set_price(BTC, 48900)  # the 49 000 stop triggers and fills
    await sink.wait_for(lambda: sink.fills("c-sl0"))
    await sink.wait_for(lambda: any(u.order.client_id == "c-sl0"
                                    and u.order.status is OrderStatus.FILLED
                                    for u in sink.updates))
    assert set(converted) <= {"c-sl0"}  # the other stops were not converted again
    (fill,) = {f.id: f for f in sink.fills("c-sl0")}.values()
    assert fill.qty == pytest.approx(0.01) and fill.price == 48900.0
    await ex._process_cache()  # the trigger's last events, if the stream loop is behind
    converted.clear()
    n = len(sink.updates)
    await ex._process_cache()
    assert converted == [] and len(sink.updates) == n


async def test_order_rows_cached_after_a_watch_returned_are_taken_at_once() -> None:
    """`_new_order_rows`: what ccxt's next `watch_orders` would start with, taken now (the
    last events of a burst are not left waiting for the next event), each row once."""
    import ccxt.pro as ccxtpro
    from ccxt.async_support.base.ws.cache import ArrayCacheBySymbolById

    ex = ccxtpro.binanceusdm({"newUpdates": True})
    try:
        ex.orders = ArrayCacheBySymbolById(1000)
        assert CcxtExchange._new_order_rows(ex) == []
        a = {"symbol": BTC, "id": "1", "status": "open"}
        b = {"symbol": ETH, "id": "2", "status": "open"}
        ex.orders.append(a)
        ex.orders.append(b)
        assert CcxtExchange._new_order_rows(ex) == [a, b]
        assert CcxtExchange._new_order_rows(ex) == []  # taken: not again
        ex.orders.append({"symbol": BTC, "id": "1", "status": "closed"})  # in place
        assert CcxtExchange._new_order_rows(ex) == [{"symbol": BTC, "id": "1",
                                                     "status": "closed"}]
        ex.newUpdates = False  # the client does not count its updates: nothing to take
        ex.orders.append({"symbol": ETH, "id": "2", "status": "closed"})
        assert CcxtExchange._new_order_rows(ex) == []
    finally:
        await ex.close()
