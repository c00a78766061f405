"""Bybit: whether a stop / take-profit is the position's own TP/SL (trading-stop, Full:
it closes the whole position) or a conditional order sized to its tranche is decided by
the position's size. A fill that changed the position since the last listing must not
leave the old size deciding: a tranche's stop read as "the whole position" would replace
the position's stop level and close everything at the tranche's level."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from pmgui.domain.enums import OrderRole, OrderSide, OrderType
from pmgui.domain.models import OrderRequest
from pmgui.exchange.ccxt_adapter import CcxtExchange
from pmgui.exchange.credentials import Credentials
from tests.fakes.bybit_server import BybitServer
from tests.fakes.recording_sink import RecordingSink
from tests.venue_support import BTC, FAST

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def server() -> AsyncIterator[BybitServer]:
    srv = BybitServer()
    await srv.start()
    yield srv
    await srv.stop()


async def test_a_tranche_stop_after_an_add_is_a_conditional_order(
        server: BybitServer) -> None:
    server.core.set_position("BTCUSDT", "long", "0.01", "50000")
    ex = CcxtExchange("bybit", options=server.ccxt_config(),
                      credentials=Credentials("k", "s"), settings=FAST)
    await ex.connect()
    sink = RecordingSink()
    task = asyncio.create_task(ex.run(sink))
    try:
        assert [p.qty for p in await ex.fetch_positions()] == [0.01]
        # a resting limit entry adds a second tranche of 0.01 when the price comes down
        entry = await ex.create_order(OrderRequest(
            "pmgadd0001", BTC, OrderSide.BUY, OrderType.LIMIT, 0.01, price=49_000.0))
        assert entry.filled == 0
        await sink.wait_for(lambda: server._private)
        await server.set_price("BTCUSDT", "48900")
        await sink.wait_for(lambda: any(u.order.client_id == "pmgadd0001"
                                        and u.order.filled > 0 for u in sink.updates))
        assert [float(p.qty) for p in server.core.open_positions()] == [0.02]
        # the new tranche's stop: 0.01 of a 0.02 position
        stop = await ex.create_order(OrderRequest(
            "pmgsl00002", BTC, OrderSide.SELL, OrderType.STOP_MARKET, 0.01,
            trigger_price=47_000.0, reduce_only=True, role=OrderRole.STOP_LOSS))
        assert not server.trading_stops  # the position's own TP/SL is left alone
        resting = [o for o in server.core.open_orders("BTCUSDT") if o.conditional]
        assert [(o.client_id, float(o.qty)) for o in resting] == [("pmgsl00002", 0.01)]
        assert stop.exchange_id == str(resting[0].id)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await ex.close()
