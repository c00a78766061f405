"""A fill found by a lookup (the restart's reconciliation: it filled while pmgui was down)
is booked with the venue's fee, read from the order's own record or its trades — not an
estimate at the taker rate.

A resting limit entry fills as a maker (2 bp) while pmgui is down; at the restart the lookup
by client id finds it filled: the position opens with the maker fee the venue charged.

The real engine, adapter and ccxt over the local Binance emulator, on a real SQLite journal.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from pmgui.domain.enums import OrderRole, OrderSide, OrderType, Side
from pmgui.domain.models import OrderRequest
from pmgui.engine import commands as cmd
from pmgui.engine.core import EngineCore
from tests.binance_rig import BTC, binance_engine, binance_exchange
from tests.fakes.binance_server import MAKER_FEE, BinanceServer
from tests.fakes.recording_sink import RecordingSink

LIMIT = 49500.0
VENUE_FEE = float(Decimal("49500") * Decimal("0.01") * MAKER_FEE)


async def _engine(server: BinanceServer, db: Path, stream: bool = True) -> EngineCore:
    return (await binance_engine(server, db, stream=stream))[0]


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("priceless", [False, True])
async def test_an_entry_filled_while_down_is_booked_with_the_venue_s_fee(
        server: BinanceServer, tmp_path: Path, priceless: bool, stream: bool) -> None:
    """(`stream` False: the engine restarted without the venue's streams — its lookups
    still deliver what they find with the venue's fee.)"""
    db = tmp_path / "pmgui.db"
    engine = await _engine(server, db)
    res = await engine.handle(cmd.OpenPosition(BTC, Side.LONG, 0.01, 10, sl=48000.0,
                                               tp=52000.0, order_type="limit", price=LIMIT))
    assert res.ok, res.message
    (entry,) = [o for o in engine.orders.values() if o.role is OrderRole.ENTRY]
    await engine.shutdown()
    server.faults.priceless_reports = priceless  # (then its trades say the price too)
    await server.set_price(BTC, LIMIT)  # the limit fills, as a maker
    engine = await _engine(server, db, stream)
    try:
        pos = engine.book.find(BTC, Side.LONG)
        assert pos is not None and pos.is_open
        assert pos.position.entry == pytest.approx(LIMIT)
        assert pos.position.fees_paid == pytest.approx(VENUE_FEE)  # not the taker estimate
        fills = [f for f in engine.store.fills() if f.order_client_id == entry.client_id]
        assert sum(f.qty for f in fills) == pytest.approx(0.01)  # once
        assert sum(f.fee for f in fills) == pytest.approx(VENUE_FEE)
    finally:
        await engine.shutdown()


async def test_a_lookup_tells_the_fill_of_an_order_it_finds_filled(
        server: BinanceServer) -> None:
    """The adapter alone: an order found filled by a lookup by client id comes with its
    fill record (the venue's price and fee, under the id the stream's report has)."""
    exchange = binance_exchange(server)
    await exchange.connect()
    try:
        await exchange.create_order(OrderRequest(
            "pmg-lk-1", BTC, OrderSide.BUY, OrderType.LIMIT, 0.01, price=LIMIT))
        await server.set_price(BTC, LIMIT)
        sink = RecordingSink()
        exchange.attach(sink)  # no stream: what the lookup finds is delivered there
        found = await exchange.fetch_order_by_client_id("pmg-lk-1", BTC)
        assert found is not None and found.filled == pytest.approx(0.01)
        (fill,) = sink.fills("pmg-lk-1")
        assert (fill.qty, fill.price, fill.fee) == \
            (pytest.approx(0.01), pytest.approx(LIMIT), pytest.approx(VENUE_FEE))
        again = await exchange.fetch_order_by_client_id("pmg-lk-1", BTC)
        assert again is not None and sink.fills("pmg-lk-1") == [fill]  # told once
    finally:
        await exchange.close()


async def test_after_a_restart_the_first_report_tells_the_fill_since_then(
        server: BinanceServer) -> None:
    """An order partly filled (and booked) before a restart, filled further while pmgui
    was down: the journal's order names what was booked (`recall_orders`), so the fill
    record the adapter tells is the quantity since then at its own price — not all the
    order ever executed again, at its cumulative average."""
    exchange = binance_exchange(server)
    await exchange.connect()
    try:
        journaled = await exchange.create_order(OrderRequest(
            "pmg-rc-1", BTC, OrderSide.BUY, OrderType.LIMIT, 0.01, price=LIMIT))
        # as the journal holds it: 0.004 booked at 49,600 (its first fills)
        exchange.recall_orders([replace(journaled, filled=0.004, average=49600.0)])
        sink = RecordingSink()
        exchange.attach(sink)
        await server.set_price(BTC, LIMIT)  # the rest (the venue: all 0.01 at 49,500)
        await exchange.fetch_order_by_client_id("pmg-rc-1", BTC)
        (fill,) = sink.fills("pmg-rc-1")
        assert fill.qty == pytest.approx(0.006)
        assert fill.price == pytest.approx((LIMIT * 0.01 - 49600.0 * 0.004) / 0.006)
        assert fill.fee == pytest.approx(VENUE_FEE * 0.6)  # its share of the venue's fee
    finally:
        await exchange.close()
