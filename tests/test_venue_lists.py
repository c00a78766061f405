"""Lists that exceed a page, and lookups by client id, on each venue's emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from pmgui.exchange.ccxt_adapter import CcxtExchange
from pmgui.exchange.credentials import Credentials
from tests.fakes.bybit_server import BybitServer
from tests.fakes.okx_server import OkxServer
from tests.fakes.venue_core import VMarket
from tests.venue_support import BTC, FAST

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def bybit() -> AsyncIterator[BybitServer]:
    srv = BybitServer()
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def okx() -> AsyncIterator[OkxServer]:
    srv = OkxServer()
    await srv.start()
    yield srv
    await srv.stop()


async def test_bybit_open_orders_are_read_page_by_page(bybit: BybitServer) -> None:
    bybit.core.set_position("BTCUSDT", "long", "1", "50000")
    for i in range(120):  # more than two of the largest (50) pages, conditional ones too
        await bybit.core.place(symbol="BTCUSDT", side="sell", kind="stop" if i % 2 else
                               "limit", qty=Decimal("0.01"), client_id=f"pmg-p{i}",
                               leg="net", price=Decimal(60_000 + i),
                               trigger=Decimal(40_000 + i), reduce_only=True)
    ex = CcxtExchange("bybit", options=bybit.ccxt_config(),
                      credentials=Credentials("k", "s"), settings=FAST)
    await ex.connect()
    try:
        orders = await ex.fetch_open_orders()
        assert sorted(o.client_id for o in orders) == sorted(f"pmg-p{i}" for i in range(120))
        pages = [p for m, q, p in bybit.requests if q == "/v5/order/realtime"]
        assert any(p.get("cursor") for p in pages)  # it did follow the cursor
        assert all(int(p.get("limit", 20)) <= 50 for p in pages)
        # by client id, open and finished alike (finished: the 50-at-most history)
        found = await ex.fetch_order_by_client_id("pmg-p7", BTC)
        assert found is not None and found.exchange_id
        await bybit.core.cancel(bybit.core.find(client_id="pmg-p8"))
        gone = await ex.fetch_order_by_client_id("pmg-p8", BTC)
        assert gone is not None and gone.status.is_final
        assert await ex.fetch_order_by_client_id("pmg-never", BTC) is None
        hist = [p for m, q, p in bybit.requests if q == "/v5/order/history"]
        assert all(int(p.get("limit", 20)) <= 50 for p in hist)
    finally:
        await ex.close()


async def test_okx_lists_conditional_and_oco_algo_orders(okx: OkxServer) -> None:
    okx.core.set_position("BTC-USDT-SWAP", "long", "3", "50000")
    await okx.core.place(symbol="BTC-USDT-SWAP", side="sell", kind="stop", qty=Decimal(1),
                         client_id="pmgcond1", leg="net", trigger=Decimal(49_000),
                         reduce_only=True, algo=True, extra={"ordType": "conditional"})
    await okx.core.place(symbol="BTC-USDT-SWAP", side="sell", kind="stop", qty=Decimal(1),
                         client_id="pmgoco1", leg="net", trigger=Decimal(48_000),
                         reduce_only=True, algo=True, extra={"ordType": "oco"})
    await okx.core.place(symbol="BTC-USDT-SWAP", side="sell", kind="limit", qty=Decimal(1),
                         client_id="pmglim1", leg="net", price=Decimal(60_000),
                         reduce_only=True)
    ex = CcxtExchange("okx", options=okx.ccxt_config(),
                      credentials=Credentials("k", "s", "p"), settings=FAST)
    await ex.connect()
    try:
        orders = {o.client_id: o for o in await ex.fetch_open_orders()}
        assert set(orders) == {"pmgcond1", "pmgoco1", "pmglim1"}
        assert orders["pmgcond1"].trigger_price == 49_000.0
        kinds = {p.get("ordType") for m, q, p in okx.requests
                 if q == "/api/v5/trade/orders-algo-pending"}
        assert kinds == {"conditional", "oco"}
        found = await ex.fetch_order_by_client_id("pmgcond1", BTC)
        assert found is not None and found.exchange_id == orders["pmgcond1"].exchange_id
        assert (await ex.cancel_order(found)).status.is_final
        assert not [o for o in okx.algo_orders() if o.client_id == "pmgcond1"]
    finally:
        await ex.close()


async def test_okx_open_orders_are_read_page_by_page(okx: OkxServer) -> None:
    """OKX lists pending orders (regular and algo alike) at most 100 to a page, newest
    first; the rest is behind the `after` cursor (the oldest ordId / algoId of the page). A
    protective order on page two must not read as missing (it would be placed again)."""
    okx.core.set_position("BTC-USDT-SWAP", "long", "500", "50000")
    for i in range(130):  # more than one page of conditional orders …
        await okx.core.place(symbol="BTC-USDT-SWAP", side="sell", kind="stop",
                             qty=Decimal(1), client_id=f"pmgcond{i}", leg="net",
                             trigger=Decimal(40_000 + i), reduce_only=True, algo=True,
                             extra={"ordType": "conditional"})
    for i in range(105):  # … and of regular ones
        await okx.core.place(symbol="BTC-USDT-SWAP", side="sell", kind="limit",
                             qty=Decimal(1), client_id=f"pmglim{i}", leg="net",
                             price=Decimal(60_000 + i), reduce_only=True)
    ex = CcxtExchange("okx", options=okx.ccxt_config(),
                      credentials=Credentials("k", "s", "p"), settings=FAST)
    await ex.connect()
    try:
        orders = await ex.fetch_open_orders()
        want = {f"pmgcond{i}" for i in range(130)} | {f"pmglim{i}" for i in range(105)}
        assert sorted(o.client_id for o in orders) == sorted(want)
        for path in ("/api/v5/trade/orders-algo-pending", "/api/v5/trade/orders-pending"):
            assert any(p.get("after") for m, q, p in okx.requests if q == path)
        per_symbol = await ex.fetch_open_orders(BTC)
        assert {o.client_id for o in per_symbol} == want
    finally:
        await ex.close()


async def test_bybit_positions_are_read_page_by_page(bybit: BybitServer) -> None:
    """Bybit lists positions at most 200 to a page (cursor): a position on page two must
    not read as closed (it would be booked as closed outside pmgui)."""
    for i in range(230):
        bybit.core.add_market(VMarket(f"C{i}USDT", f"C{i}", tick="0.01", step="1",
                                      min_qty="1"), "10")
        bybit.core.set_position(f"C{i}USDT", "long", "5", "10")
    ex = CcxtExchange("bybit", options=bybit.ccxt_config(),
                      credentials=Credentials("k", "s"), settings=FAST)
    await ex.connect()
    try:
        positions = await ex.fetch_positions()
        assert sorted(p.symbol for p in positions) == sorted(
            f"C{i}/USDT:USDT" for i in range(230))
        pages = [p for m, q, p in bybit.requests if q == "/v5/position/list"]
        assert any(p.get("cursor") for p in pages)  # it did follow the cursor
    finally:
        await ex.close()
