"""The lookup of a priceless fill's price runs beside the order stream, not on it.

A limit order fills and the venue reports it without a price (`faults.priceless_reports`);
its trades are not visible yet (`faults.hidden_trades`), so the adapter keeps looking them up
(boundedly). Meanwhile another order's update — here a new order's acknowledgement on the
stream — is delivered at once, not after that lookup. Once the trades show, the fill is
delivered once, at their price and with the venue's fee, however often the venue told the
priceless report meanwhile.

Real ccxt (binanceusdm) against the local Binance emulator; the sink records what the
adapter delivers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal

import pytest

from pmgui.domain.enums import OrderSide, OrderType
from pmgui.domain.models import OrderRequest
from pmgui.exchange.ccxt_adapter import CcxtExchange
from tests.adapter_rig import running as adapter_running
from tests.binance_rig import BTC, FAST, binance_exchange
from tests.fakes.binance_server import MAKER_FEE, BinanceServer
from tests.fakes.recording_sink import RecordingSink

LIMIT = 49500.0
HIDDEN = 10**9  # trade listings answer [] until the test shows them
# the bounded lookup goes on for as long as the test needs (a look every 10-50 ms: 15 s and
# more)
PATIENT = replace(FAST, fired_lookups=600)


@pytest.fixture
async def running(server: BinanceServer) -> AsyncIterator[tuple[CcxtExchange, RecordingSink]]:
    async with adapter_running(binance_exchange(server, PATIENT), prices=False) as pair:
        yield pair


def _limit(cid: str, side: OrderSide, price: float) -> OrderRequest:
    return OrderRequest(cid, BTC, side, OrderType.LIMIT, 0.01, price=price)


async def test_other_orders_updates_do_not_wait_behind_a_priceless_fills_lookup(
        server: BinanceServer, running: tuple[CcxtExchange, RecordingSink]) -> None:
    ex, sink = running
    await ex.create_order(_limit("pmg-buy", OrderSide.BUY, LIMIT))
    server.faults.priceless_reports = True
    server.faults.hidden_trades = HIDDEN
    await server.set_price(BTC, LIMIT)  # the limit fills; its reports say no price
    # its trades are being looked up (and not visible)
    await sink.wait_for(lambda: server.faults.hidden_trades < HIDDEN - 2, timeout=15)
    server.faults.priceless_reports = False
    await ex.create_order(_limit("pmg-other", OrderSide.SELL, 60000.0))
    # the other order's acknowledgement comes through the stream while the lookup goes on
    await sink.wait_for(lambda: any(u.order.client_id == "pmg-other" for u in sink.updates),
                        timeout=15)
    assert server.faults.hidden_trades > 0  # (the lookup has not found anything yet)
    assert sink.fills("pmg-buy") == []  # never delivered at a guess
    server.faults.hidden_trades = 0  # the trades show
    await sink.wait_for(lambda: sink.fills("pmg-buy"), timeout=15)
    (fill,) = sink.fills("pmg-buy")
    assert (fill.qty, fill.price) == (pytest.approx(0.01), pytest.approx(LIMIT))
    assert fill.fee == pytest.approx(float(Decimal("49500") * Decimal("0.01") * MAKER_FEE))
    # told again by the REST resync: still one fill
    await ex._resync_tracked()
    await ex._process_cache()
    assert len(sink.fills("pmg-buy")) == 1


async def test_a_lookup_beside_an_attached_sink_ends_with_the_exchange(
        server: BinanceServer) -> None:
    """No stream runs (a sink attached): a lookup still under way when the exchange closes
    is stopped with it, not left pending behind it."""
    ex = binance_exchange(server, PATIENT)
    await ex.connect()
    sink = RecordingSink()
    ex.attach(sink)
    await ex.create_order(_limit("pmg-buy", OrderSide.BUY, LIMIT))
    server.faults.priceless_reports = True
    server.faults.hidden_trades = HIDDEN
    await server.set_price(BTC, LIMIT)
    await ex._resync_tracked()  # the REST poll finds it filled, priceless: looked up beside
    tasks = list(ex._pricing.values())
    assert tasks and not any(t.done() for t in tasks)
    await ex.close()
    assert all(t.done() for t in tasks) and sink.fills("pmg-buy") == []


async def test_a_priced_report_during_the_lookup_and_the_lookup_book_the_fill_once(
        server: BinanceServer, running: tuple[CcxtExchange, RecordingSink]) -> None:
    ex, sink = running
    await ex.create_order(_limit("pmg-buy", OrderSide.BUY, LIMIT))
    server.faults.priceless_reports = True
    server.faults.hidden_trades = HIDDEN
    await server.set_price(BTC, LIMIT)
    await sink.wait_for(lambda: server.faults.hidden_trades < HIDDEN - 2, timeout=15)
    (task,) = ex._pricing.values()
    server.faults.priceless_reports = False
    await ex._resync_tracked()  # the venue's priced record comes while the lookup goes on
    assert len(sink.fills("pmg-buy")) == 1
    server.faults.hidden_trades = 0  # and the lookup finds the trades too
    await task
    # its quantity told once; the REST record said no fee (an estimate at the taker rate),
    # the lookup's trades say the venue's (maker): the same fill told again with it
    estimated, fill = sink.fills("pmg-buy")
    assert fill == replace(estimated, fee=fill.fee)
    assert fill.fee == pytest.approx(float(Decimal("49500") * Decimal("0.01") * MAKER_FEE))
    assert fill.price == pytest.approx(LIMIT)
