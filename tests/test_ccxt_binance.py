"""CcxtExchange against the local Binance USDⓈ-M emulator, through the real ccxt classes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from pmgui.domain import errors as pe
from pmgui.domain.enums import OrderSide, OrderStatus, OrderType, Side
from pmgui.domain.models import OrderRequest
from pmgui.exchange.base import Exchange
from pmgui.exchange.ccxt_adapter import AdapterSettings, CcxtExchange
from pmgui.exchange.credentials import Credentials
from pmgui.exchange.retry import Backoff, OrderStatusUnknown
from tests.fakes.binance_server import BinanceServer, FakeMarket, ThreadedBinanceServer

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
KEY = Credentials("test-key", "test-secret", source="explicit")


class Sleeps:
    """Records the backoff delays asked for, without waiting them out."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


def make(server: BinanceServer, sleeps: Sleeps | None = None, creds: Credentials | None = KEY,
         **cfg: object) -> CcxtExchange:
    options = server.ccxt_config()
    options.update(cfg)
    return CcxtExchange(
        "binanceusdm", options=options, credentials=creds,
        settings=AdapterSettings(backoff=Backoff(0.01, 2.0, 0.1, 0.0)),
        sleep=sleeps or Sleeps())


@pytest.fixture
async def ex(server: BinanceServer) -> AsyncIterator[CcxtExchange]:
    exchange = make(server)
    await exchange.connect()
    yield exchange
    await exchange.close()


def posts(server: BinanceServer, path: str) -> list[dict[str, str]]:
    return [p for m, q, p in server.requests if m == "POST" and q.endswith(path)]


async def test_connect_loads_markets_with_tick_size_precision(ex: CcxtExchange) -> None:
    assert isinstance(ex, Exchange)
    btc = ex.markets()[BTC]
    assert (btc.tick_size, btc.amount_step, btc.min_amount, btc.min_notional) == \
        (0.1, 0.001, 0.001, 100.0)
    assert btc.contract_size == 1.0 and btc.base == "BTC" and btc.quote == "USDT"
    eth = ex.markets()[ETH]
    assert (eth.tick_size, eth.min_notional) == (0.01, 20.0)
    caps = ex.capabilities
    assert caps.stop_orders and caps.take_profit_orders and caps.watch_orders
    assert caps.edit_orders is False  # Binance TP/SL: cancel and replace
    assert all(isinstance(m, str) and m for m in caps.missing)


async def test_connect_with_wrong_key_is_a_clear_auth_error(server: BinanceServer) -> None:
    exchange = make(server, creds=Credentials("wrong-key", "s", source="explicit"))
    with pytest.raises(pe.AuthenticationError, match="API key"):
        await exchange.connect()
    assert exchange._ex is None  # the ccxt client was closed, nothing leaks


async def test_connect_without_credentials_says_where_to_put_them(
        server: BinanceServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PMGUI_NO_KEYRING", "1")
    monkeypatch.delenv("PMGUI_API_KEY", raising=False)
    monkeypatch.delenv("PMGUI_API_SECRET", raising=False)
    exchange = make(server, creds=None)
    with pytest.raises(pe.AuthenticationError, match="PMGUI_API_KEY"):
        await exchange.connect()


async def test_connect_reads_env_credentials(server: BinanceServer,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PMGUI_NO_KEYRING", "1")
    monkeypatch.setenv("PMGUI_API_KEY", "test-key")
    monkeypatch.setenv("PMGUI_API_SECRET", "s3cr3t")
    exchange = make(server, creds=None)
    await exchange.connect()
    try:
        assert BTC in exchange.markets()
    finally:
        await exchange.close()


async def test_unknown_exchange_id_is_rejected() -> None:
    with pytest.raises(pe.ValidationError, match="Unknown"):
        CcxtExchange("no-such-venue")


async def test_positions_balance_and_leverage(server: BinanceServer, ex: CcxtExchange) -> None:
    server.state.set_position("BTCUSDT", "-0.5", "51000", leverage=10)
    positions = await ex.fetch_positions()
    assert len(positions) == 1
    p = positions[0]
    assert (p.symbol, p.side, p.qty, p.entry, p.leverage) == (BTC, Side.SHORT, 0.5, 51000.0,
                                                              10.0)
    assert p.mark == 50000.0 and p.unrealized_pnl == pytest.approx(500.0)
    assert p.liquidation is not None and p.liquidation > 51000
    bal = await ex.fetch_balance()
    assert bal.currency == "USDT"
    # the wallet (realized only): ccxt's `total` is marginBalance, the wallet plus the open
    # P/L, which the engine adds again for the equity
    assert (bal.total, bal.free, bal.used) == (10000.0, 8000.0, 2500.0)
    await ex.set_leverage(BTC, 7)
    assert server.state.leverage["BTCUSDT"] == 7
    with pytest.raises(pe.ValidationError):
        await ex.set_leverage(BTC, 0)
    with pytest.raises(pe.ValidationError):
        await ex.set_leverage(BTC, float("nan"))


async def test_market_order_carries_client_id_and_fills(server: BinanceServer,
                                                        ex: CcxtExchange) -> None:
    order = await ex.create_order(OrderRequest("pm-entry-1", BTC, OrderSide.BUY,
                                               OrderType.MARKET, 0.0104))
    sent = posts(server, "/order")[-1]
    assert sent["newClientOrderId"] == "pm-entry-1"
    assert sent["quantity"] == "0.01"  # through the market's amount precision (truncated)
    assert order.client_id == "pm-entry-1" and order.status is OrderStatus.FILLED
    assert order.filled == pytest.approx(0.01) and order.average == 50000.0
    assert server.state.positions["BTCUSDT"].amount > 0


async def test_stop_and_take_profit_are_reduce_only_algo_orders(server: BinanceServer,
                                                                ex: CcxtExchange) -> None:
    server.state.set_position("BTCUSDT", "0.02", "50000")
    sl = await ex.create_order(OrderRequest("pm-sl-1", BTC, OrderSide.SELL,
                                            OrderType.STOP_MARKET, 0.02,
                                            trigger_price=48999.97, reduce_only=True))
    tp = await ex.create_order(OrderRequest("pm-tp-1", BTC, OrderSide.SELL,
                                            OrderType.TAKE_PROFIT_MARKET, 0.02,
                                            trigger_price=52000, reduce_only=True))
    algo = posts(server, "/algoOrder")
    assert [a["clientAlgoId"] for a in algo] == ["pm-sl-1", "pm-tp-1"]
    assert algo[0]["type"] == "STOP_MARKET" and algo[0]["reduceOnly"] == "true"
    assert algo[0]["triggerPrice"] == "49000"  # snapped to the 0.1 tick
    assert algo[1]["type"] == "TAKE_PROFIT_MARKET"
    assert sl.type is OrderType.STOP_MARKET and sl.status is OrderStatus.OPEN
    assert sl.trigger_price == 49000.0 and sl.reduce_only
    assert tp.type is OrderType.TAKE_PROFIT_MARKET and tp.trigger_price == 52000.0

    open_orders = {o.client_id: o for o in await ex.fetch_open_orders(BTC)}
    assert set(open_orders) == {"pm-sl-1", "pm-tp-1"}
    assert open_orders["pm-sl-1"].type is OrderType.STOP_MARKET
    assert open_orders["pm-tp-1"].type is OrderType.TAKE_PROFIT_MARKET
    assert open_orders["pm-tp-1"].filled == 0.0

    found = await ex.fetch_order_by_client_id("pm-tp-1", BTC)
    assert found is not None and found.exchange_id == tp.exchange_id

    cancelled = await ex.cancel_order(sl)
    assert cancelled.status is OrderStatus.CANCELED
    assert [o.client_id for o in await ex.fetch_open_orders()] == ["pm-tp-1"]
    # cancelling again: the order is gone, the adapter reports what it became
    again = await ex.cancel_order(sl)
    assert again.status is OrderStatus.CANCELED


async def test_replace_order_cancels_then_creates(server: BinanceServer,
                                                  ex: CcxtExchange) -> None:
    server.state.set_position("BTCUSDT", "0.02", "50000")
    sl = await ex.create_order(OrderRequest("sl-a", BTC, OrderSide.SELL, OrderType.STOP_MARKET,
                                            0.02, trigger_price=49000, reduce_only=True))
    moved = await ex.replace_order(sl, OrderRequest("sl-b", BTC, OrderSide.SELL,
                                                    OrderType.STOP_MARKET, 0.02,
                                                    trigger_price=49500, reduce_only=True))
    assert moved.trigger_price == 49500.0
    assert [o.client_id for o in await ex.fetch_open_orders(BTC)] == ["sl-b"]
    # what a reconnected order stream re-reads: the new stop, not the cancelled one
    assert [v[0] for v in ex._tracked_open.values()] == [moved.exchange_id]


async def test_a_cancelled_limit_order_is_no_longer_tracked(server: BinanceServer,
                                                           ex: CcxtExchange) -> None:
    """What the adapter re-reads after its order stream reconnects (`_tracked_open`): the
    orders still open, none it cancelled (an algo stop: the test above)."""
    limit = await ex.create_order(OrderRequest("lim-a", ETH, OrderSide.BUY, OrderType.LIMIT,
                                               0.1, price=2900))
    kept = await ex.create_order(OrderRequest("lim-b", ETH, OrderSide.BUY, OrderType.LIMIT,
                                              0.1, price=2800))
    assert sorted(v[0] for v in ex._tracked_open.values()) == sorted(
        [limit.exchange_id, kept.exchange_id])
    await ex.cancel_order(limit)
    assert [v[0] for v in ex._tracked_open.values()] == [kept.exchange_id]


async def test_immediate_trigger_is_recognised(server: BinanceServer, ex: CcxtExchange) -> None:
    server.state.set_position("BTCUSDT", "0.02", "50000")
    with pytest.raises(pe.OrderWouldTriggerImmediately, match="trigger"):
        await ex.create_order(OrderRequest("sl-bad", BTC, OrderSide.SELL,
                                           OrderType.STOP_MARKET, 0.02, trigger_price=50500,
                                           reduce_only=True))
    assert server.state.open_orders(algo=True) == []


async def test_insufficient_margin_is_insufficient_funds(server: BinanceServer,
                                                         ex: CcxtExchange) -> None:
    server.state.wallet = server.state.wallet.__class__("50")
    with pytest.raises(pe.InsufficientFunds, match="margin"):
        await ex.create_order(OrderRequest("big", BTC, OrderSide.BUY, OrderType.MARKET, 1.0))
    assert len(posts(server, "/order")) == 1  # refused once, never retried


async def test_minimum_notional_checked_before_sending(server: BinanceServer,
                                                       ex: CcxtExchange) -> None:
    with pytest.raises(pe.InvalidOrder, match="minimum"):
        await ex.create_order(OrderRequest("tiny", BTC, OrderSide.BUY, OrderType.MARKET,
                                           0.001))
    assert posts(server, "/order") == []
    with pytest.raises(pe.InvalidOrder, match="minimum"):
        await ex.create_order(OrderRequest("tiny2", BTC, OrderSide.BUY, OrderType.MARKET,
                                           0.0001))


async def test_minimum_notional_rejected_by_the_exchange_is_invalid_order(
        server: BinanceServer, ex: CcxtExchange) -> None:
    # the venue raised its minimum after the markets were loaded: the -4164 reply maps
    server.state.markets["BTCUSDT"].min_notional = "1000"
    with pytest.raises(pe.InvalidOrder, match="notional") as info:
        await ex.create_order(OrderRequest("n1", BTC, OrderSide.BUY, OrderType.MARKET, 0.01))
    assert not isinstance(info.value, pe.OrderWouldTriggerImmediately)


async def test_rate_limit_storm_is_retried_with_backoff(server: BinanceServer) -> None:
    sleeps = Sleeps()
    exchange = make(server, sleeps)
    await exchange.connect()
    try:
        server.faults.http_429 = 3
        server.state.set_position("BTCUSDT", "0.01", "50000")
        positions = await exchange.fetch_positions()
        assert len(positions) == 1
        assert len(sleeps.delays) == 3 and sleeps.delays == sorted(sleeps.delays)
        sleeps.delays.clear()
        server.faults.http_429 = 2
        server.faults.http_429_paths = ("order",)
        order = await exchange.create_order(OrderRequest("rl-1", BTC, OrderSide.BUY,
                                                         OrderType.MARKET, 0.01))
        assert order.status is OrderStatus.FILLED
        assert len(sleeps.delays) == 2
        assert len([o for o in server.state.orders.values() if o.client_id == "rl-1"]) == 1
        server.faults.http_429 = 50
        server.faults.http_429_paths = ()
        with pytest.raises(pe.RetryableExchangeError, match="rate"):
            await exchange.fetch_balance()
    finally:
        server.faults.http_429 = 0
        await exchange.close()


async def test_create_timeout_when_the_order_was_placed_is_not_resent(
        server: BinanceServer) -> None:
    exchange = make(server, timeout=400)
    await exchange.connect()
    try:
        server.faults.create_timeouts = 1
        server.faults.response_delay = 1.0
        order = await exchange.create_order(OrderRequest("to-1", BTC, OrderSide.BUY,
                                                         OrderType.MARKET, 0.01))
        assert order.client_id == "to-1" and order.status is OrderStatus.FILLED
        assert len(posts(server, "/order")) == 1
        assert len([o for o in server.state.orders.values() if o.client_id == "to-1"]) == 1

        server.state.set_position("BTCUSDT", "0.01", "50000")
        server.faults.create_timeouts = 1
        sl = await exchange.create_order(OrderRequest("to-sl", BTC, OrderSide.SELL,
                                                      OrderType.STOP_MARKET, 0.01,
                                                      trigger_price=45000, reduce_only=True))
        assert sl.status is OrderStatus.OPEN and sl.type is OrderType.STOP_MARKET
        assert len(posts(server, "/algoOrder")) == 1
    finally:
        await exchange.close()


async def test_create_timeout_when_the_order_was_not_placed_is_sent_again(
        server: BinanceServer) -> None:
    exchange = make(server, timeout=400)
    await exchange.connect()
    try:
        server.faults.create_drops = 1
        server.faults.response_delay = 1.0
        order = await exchange.create_order(OrderRequest("drop-1", BTC, OrderSide.BUY,
                                                         OrderType.MARKET, 0.01))
        assert order.status is OrderStatus.FILLED
        sent = posts(server, "/order")
        assert [p["newClientOrderId"] for p in sent] == ["drop-1", "drop-1"]
        assert len([o for o in server.state.orders.values() if o.client_id == "drop-1"]) == 1
    finally:
        await exchange.close()


async def test_create_timeout_with_failing_lookup_never_resends(server: BinanceServer) -> None:
    exchange = make(server, timeout=400)
    await exchange.connect()
    try:
        server.faults.create_timeouts = 1
        server.faults.response_delay = 1.0
        server.faults.http_429 = 100  # every lookup is refused: the outcome stays unknown
        server.faults.http_429_paths = ("order", "algoOrder")
        server.faults.http_429_methods = ("GET",)
        with pytest.raises(OrderStatusUnknown, match="reconciled") as info:
            await exchange.create_order(OrderRequest("amb-1", BTC, OrderSide.BUY,
                                                     OrderType.MARKET, 0.01))
        assert info.value.retryable and info.value.client_id == "amb-1"
        assert len(posts(server, "/order")) == 1
    finally:
        server.faults.http_429 = 0
        await exchange.close()


async def test_limit_order_and_unknown_symbol(server: BinanceServer, ex: CcxtExchange) -> None:
    order = await ex.create_order(OrderRequest("lim-1", ETH, OrderSide.BUY, OrderType.LIMIT,
                                               0.01, price=2900.004))
    assert order.type is OrderType.LIMIT and order.price == 2900.0
    assert order.status is OrderStatus.OPEN
    with pytest.raises(pe.InvalidOrder, match="unknown symbol"):
        await ex.create_order(OrderRequest("x", "DOGE/USDT:USDT", OrderSide.BUY,
                                           OrderType.MARKET, 1))
    with pytest.raises(pe.InvalidOrder, match="positive"):
        await ex.create_order(OrderRequest("x", BTC, OrderSide.BUY, OrderType.MARKET,
                                           float("inf")))
    with pytest.raises(pe.InvalidOrder, match="trigger"):
        await ex.create_order(OrderRequest("x", BTC, OrderSide.SELL, OrderType.STOP_MARKET,
                                           0.01))


async def test_reduce_only_without_position_is_rejected(server: BinanceServer,
                                                        ex: CcxtExchange) -> None:
    with pytest.raises(pe.InvalidOrder, match="reduce-only"):
        await ex.create_order(OrderRequest("ro-1", BTC, OrderSide.SELL, OrderType.MARKET, 0.01,
                                           reduce_only=True))


async def test_ohlcv_and_rest_price(server: BinanceServer, ex: CcxtExchange) -> None:
    candles = await ex.fetch_ohlcv(BTC, "1m", limit=50)
    assert len(candles) == 50
    assert candles[-1].close == 50000.0 and candles[0].ts < candles[-1].ts
    assert all(c.low <= min(c.open, c.close) <= max(c.open, c.close) <= c.high
               for c in candles)
    await server.set_price(BTC, 50123.4)
    tick = await ex.fetch_price(BTC)
    assert tick is not None and tick.price == 50123.4 and tick.symbol == BTC
    with pytest.raises(pe.ValidationError):
        await ex.fetch_ohlcv(BTC, "7m")


async def test_demo_mode_uses_demo_urls(server: BinanceServer) -> None:
    exchange = CcxtExchange("binanceusdm", demo=True, options=server.ccxt_config(),
                            credentials=KEY)
    await exchange.connect()
    try:
        assert exchange._ex.options.get("enableDemoTrading") is True
        assert BTC in exchange.markets()
    finally:
        await exchange.close()


async def test_added_market_reaches_pmgui(server: BinanceServer) -> None:
    server.state.add_market(FakeMarket("SOLUSDT", "SOL", tick_size="0.001", step_size="1",
                                       min_qty="1", min_notional="5"), price="150")
    exchange = make(server)
    await exchange.connect()
    try:
        sol = exchange.markets()["SOL/USDT:USDT"]
        assert (sol.tick_size, sol.amount_step, sol.min_amount) == (0.001, 1.0, 1.0)
    finally:
        await exchange.close()


def test_threaded_server_serves_plain_ccxt() -> None:
    """The emulator in its own thread, for synchronous (Qt) tests: plain sync ccxt works."""
    import ccxt

    with ThreadedBinanceServer() as srv:
        client = ccxt.binanceusdm({**srv.ccxt_config(), "apiKey": "test-key", "secret": "s"})
        srv.state.set_position("BTCUSDT", "0.003", "49000")
        srv.set_price(BTC, 49500)
        (pos,) = client.fetch_positions()
        assert pos["contracts"] == 0.003 and pos["markPrice"] == 49500.0
        order = client.create_order(BTC, "market", "sell", 0.003, None,
                                    {"clientOrderId": "sync-1", "reduceOnly": True})
        assert order["clientOrderId"] == "sync-1" and order["status"] == "closed"
        assert srv.state.positions["BTCUSDT"].amount == 0


async def test_missing_capabilities_are_listed_and_enforced(server: BinanceServer) -> None:
    import ccxt.pro

    deribit = ccxt.pro.deribit()
    try:
        probe = CcxtExchange("deribit")
        caps = probe._capabilities(deribit)
    finally:
        await deribit.close()
    assert caps.stop_orders and not caps.take_profit_orders
    assert any("take-profit" in m for m in caps.missing)
    assert any("leverage" in m for m in caps.missing)

    ex = make(server)
    await ex.connect()
    try:
        server.state.set_position("BTCUSDT", "0.02", "50000")
        ex.capabilities = replace(ex.capabilities, take_profit_orders=False)
        with pytest.raises(pe.InvalidOrder, match="take-profit"):
            await ex.create_order(OrderRequest("tp-x", BTC, OrderSide.SELL,
                                               OrderType.TAKE_PROFIT_MARKET, 0.02,
                                               trigger_price=52000, reduce_only=True))
        assert posts(server, "/algoOrder") == []
    finally:
        await ex.close()


async def test_unreachable_exchange_is_retryable_not_an_auth_error() -> None:
    srv = BinanceServer()
    await srv.start()
    options = srv.ccxt_config()
    await srv.stop()  # nothing listens there any more
    sleeps = Sleeps()
    exchange = CcxtExchange("binanceusdm", options=options, credentials=KEY, sleep=sleeps,
                            settings=AdapterSettings(backoff=Backoff(0.01, 2.0, 0.1, 0.0)))
    with pytest.raises(pe.RetryableExchangeError) as info:
        await exchange.connect()
    assert not isinstance(info.value, pe.AuthenticationError)
    assert len(sleeps.delays) == AdapterSettings().rest_attempts - 1
    assert exchange._ex is None


async def test_rate_limited_connect_still_connects(server: BinanceServer) -> None:
    server.faults.http_429 = 2
    exchange = make(server)
    await exchange.connect()
    try:
        assert BTC in exchange.markets()
    finally:
        await exchange.close()


async def test_hedge_mode_account_is_detected_at_connect(server: BinanceServer) -> None:
    server.state.hedge_mode = True
    exchange = make(server)
    await exchange.connect()
    try:
        assert exchange.hedged is True and exchange.is_hedged(BTC)
        assert exchange.capabilities.hedge_mode
    finally:
        await exchange.close()
