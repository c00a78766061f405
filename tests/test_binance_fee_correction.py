"""A market order's fill booked with an estimated fee (Binance's create answer has no
commission) is corrected when the venue's later report says the fee (the stream's
ORDER_TRADE_UPDATE of each trade: `n`): once, on the open position (fees, realised P/L) or on
the closed position's journal row, the fill record then holding the venue's fee — never
applied twice, a report told again after a restart included.

The real engine, adapter and ccxt over the local Binance emulator (its account pays less than
the market's listed taker rate, as a VIP tier or a BNB discount does), on a real SQLite
journal; the ledger's part on a real journal, property-tested."""

from __future__ import annotations

import asyncio
import contextlib
import math
import tempfile
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmgui.domain.enums import OrderRole, OrderSide, OrderStatus, OrderType, PositionStatus, Side
from pmgui.domain.models import Fill, Order, OrderRequest, Position
from pmgui.engine import commands as cmd
from pmgui.engine.ledger import Correction, OrderLedger
from pmgui.engine.outbox import Outbox
from pmgui.store.db import Store
from tests.binance_rig import (
    BTC,
    ESTIMATE,
    PRICE,
    VENUE_FEE,
    binance_engine,
    binance_exchange,
    open_before_the_stream,
    rated_server,
)
from tests.fakes.binance_server import BinanceServer
from tests.fakes.recording_sink import RecordingSink
from tests.venue_support import until


@pytest.fixture
async def server() -> AsyncIterator[BinanceServer]:
    async with rated_server() as srv:
        yield srv


def _filled_close(ledger: OrderLedger) -> Order:
    """A market close of 0.01 BTC of position P1, journaled, sent, and filled at PRICE by
    the venue's answer (which says no fee)."""
    order = ledger.journal(OrderRequest("pmg-c", BTC, OrderSide.SELL, OrderType.MARKET, 0.01,
                                        reduce_only=True, position_id="P1",
                                        role=OrderRole.REDUCE, reason="manual"))
    ledger.mark_sent("pmg-c")
    return replace(order, status=OrderStatus.FILLED, filled=0.01, average=PRICE,
                   exchange_id="1")


@pytest.mark.parametrize("trades", [1, 2])
async def test_market_entry_and_close_are_booked_with_the_venue_s_fee(
        server: BinanceServer, tmp_path: Path, trades: int) -> None:
    """(`trades` 2: the market order executes in two trades, each with its commission.)"""
    server.market_trades = trades
    db = tmp_path / "pmgui.db"
    engine = (await binance_engine(server, db))[0]
    try:
        # the stream's reports come after the create answer is booked (the usual order)
        rt = await open_before_the_stream(engine, server)
        pid = rt.id
        assert rt.position.fees_paid == pytest.approx(ESTIMATE)  # booked with the estimate
        server.faults.hold_order_events = False
        await server.release_held_events()
        await until(lambda: rt.position.fees_paid == pytest.approx(VENUE_FEE),
                    what="the entry's fee corrected")
        assert rt.position.realized_pnl == pytest.approx(-VENUE_FEE)
        assert rt.position.entry == pytest.approx(PRICE)
        assert engine.store.load_position(pid).fees_paid == pytest.approx(VENUE_FEE)

        server.faults.hold_order_events = True
        res = await engine.handle(cmd.ClosePosition(pid))
        assert res.ok, res.message
        closed = engine.store.load_position(pid)
        assert not closed.is_open
        assert closed.fees_paid == pytest.approx(VENUE_FEE + ESTIMATE)
        server.faults.hold_order_events = False
        await server.release_held_events()
        await until(lambda: engine.store.load_position(pid).fees_paid
                    == pytest.approx(2 * VENUE_FEE), what="the close's fee corrected")
        closed = engine.store.load_position(pid)
        assert closed.realized_pnl == pytest.approx(-2 * VENUE_FEE)  # at one price: fees
        assert closed.exit_price == pytest.approx(PRICE)
        fills = engine.store.fills(pid)
        assert sum(f.qty for f in fills) == pytest.approx(0.02)  # each fill once
        assert [f.fee for f in fills] == [pytest.approx(VENUE_FEE)] * 2
        # a fee's true-up is logged, not filed as an action of its own
        assert not [a for a in engine.store.actions(pid) if "fee" in str(a.get("inputs"))]
        journal = {(f.id, f.fee) for f in fills}
    finally:
        await engine.shutdown()

    # a restart, and the venue's reports told again: nothing changes
    ledger = OrderLedger(Store.open(db), Outbox(), lambda: 1_700_000_000.0)
    ledger.load()
    try:
        for f in fills:
            order = ledger.get(f.order_client_id or "")
            assert order is not None
            ledger.apply(order, (f,))
        assert ledger.store.load_position(pid) == closed
        assert {(f.id, f.fee) for f in ledger.store.fills(pid)} == journal
    finally:
        ledger.store.close()


async def test_the_adapter_tells_the_fill_again_with_the_venue_s_fee_once(
        server: BinanceServer) -> None:
    """The adapter alone: the create answer's fill (an estimate), then the stream's trade
    reports: the same fill, under its id, with the venue's fee — once."""
    server.market_trades = 2
    exchange = binance_exchange(server)
    sink = RecordingSink()
    await exchange.connect()
    exchange.subscribe([BTC])
    task = asyncio.create_task(exchange.run(sink))
    try:
        await sink.wait_for(lambda: sink.connections and sink.connections[-1].orders)
        server.faults.hold_order_events = True
        await exchange.create_order(OrderRequest("pmg-fee-1", BTC, OrderSide.BUY,
                                                 OrderType.MARKET, 0.01))
        (est,) = sink.fills("pmg-fee-1")
        assert est.fee == pytest.approx(ESTIMATE)
        server.faults.hold_order_events = False
        await server.release_held_events()
        await until(lambda: len(sink.fills("pmg-fee-1")) == 2, what="the venue's fee")
        fixed = sink.fills("pmg-fee-1")[1]
        assert fixed == replace(est, fee=pytest.approx(VENUE_FEE))
        await exchange.fetch_order_by_client_id("pmg-fee-1", BTC)  # a lookup after it
        assert len(sink.fills("pmg-fee-1")) == 2
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await exchange.close()


def _long(store: Store, qty: float, fees: float, realized: float, closed: bool) -> Position:
    pos = Position("P1", BTC, Side.LONG, 0.0 if closed else qty, PRICE, 10.0, 0.0, 1.0,
                   status=PositionStatus.CLOSED if closed else PositionStatus.OPEN,
                   exit_price=PRICE if closed else None, fees_paid=fees,
                   realized_pnl=realized, closed_at=1.0 if closed else None)
    store.save_position(pos)
    return pos


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(venue=st.floats(-0.5, 2.0, allow_nan=False, allow_infinity=False),
       estimate=st.floats(0.0, 2.0, allow_nan=False, allow_infinity=False),
       closed=st.booleans(),
       steps=st.lists(st.sampled_from(["report", "restart"]), min_size=1, max_size=6))
def test_the_venue_s_fee_replaces_the_estimate_once(
        venue: float, estimate: float, closed: bool, steps: list[str]) -> None:
    """Whatever the order of the venue's reports told again and restarts: the fees booked
    are the venue's once it said them, never the difference twice, never a NaN."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "j.db"
        hook: list[Correction] = []  # the engine holding an open position

        def start() -> OrderLedger:
            led = OrderLedger(Store.open(path), Outbox(), lambda: 1_700_000_000.0)
            led.load()
            led.rebook = None if closed else (lambda c: hook.append(c) is None)
            return led

        ledger = start()
        done = _filled_close(ledger)
        est = Fill("b:o:1:0.01", "pmg-c", BTC, OrderSide.SELL, 0.01, PRICE, estimate, 1.0,
                   "1")
        booked = ledger.apply(done, (est,))
        assert booked is not None and booked.fee == pytest.approx(estimate)
        base = _long(ledger.store, 0.01, 1.0 + estimate, -1.0 - estimate, closed)
        told = replace(est, fee=venue)
        reported = False
        for step in steps:
            if step == "restart":
                ledger.store.close()
                ledger = start()
            else:
                again = ledger.apply(done, (told,))
                assert again is not None and again.delta == 0.0
                reported = True
        fee = venue if reported else estimate
        (record,) = ledger.store.fills("P1")
        assert record.fee == pytest.approx(fee) and math.isfinite(record.fee)
        delta = fee - estimate
        if closed:
            pos = ledger.store.load_position("P1")
            assert pos.fees_paid == pytest.approx(base.fees_paid + delta)
            assert pos.realized_pnl == pytest.approx(base.realized_pnl - delta)
            assert math.isfinite(pos.fees_paid) and math.isfinite(pos.realized_pnl)
            assert not hook
        else:  # the engine's hook, given the fee's difference once
            fixes = [c.fee_delta for c in hook]
            assert fixes == ([pytest.approx(delta)] if reported and abs(delta) > 1e-12
                             else [])
            assert all(c.price == c.booked_price == PRICE for c in hook)
        ledger.store.close()


@pytest.mark.parametrize("closed", [False, True])
def test_a_lookup_s_fill_booked_with_an_estimate_takes_the_venue_s_fee_from_its_records(
        tmp_path: Path, closed: bool) -> None:
    """Reconciliation found the order filled without its records (a synthesized record,
    the fee estimated at the position's rate); the venue's records come later: they replace
    it, and the fee booked is the venue's — once."""
    hook: list[Correction] = []
    ledger = OrderLedger(Store.open(tmp_path / "j.db"), Outbox(), lambda: 1_700_000_000.0)
    ledger.load()
    ledger.rebook = None if closed else (lambda c: hook.append(c) is None)
    done = _filled_close(ledger)
    booked = ledger.apply(done, (), fee_rate=0.0005)
    assert booked is not None and booked.fee == pytest.approx(ESTIMATE)
    base = _long(ledger.store, 0.01, 1.0 + ESTIMATE, -1.0 - ESTIMATE, closed)
    venue = Fill("b:o:1:0.01", "pmg-c", BTC, OrderSide.SELL, 0.01, PRICE, VENUE_FEE, 1.0, "1")
    for _ in range(2):  # told again: nothing more
        again = ledger.apply(done, (venue,))
        assert again is not None and again.delta == 0.0
    (record,) = ledger.store.fills("P1")
    assert (record.id, record.fee) == (venue.id, pytest.approx(VENUE_FEE))
    delta = VENUE_FEE - ESTIMATE
    if closed:
        pos = ledger.store.load_position("P1")
        assert pos.fees_paid == pytest.approx(base.fees_paid + delta)
        assert pos.realized_pnl == pytest.approx(base.realized_pnl - delta)
    else:
        assert [c.fee_delta for c in hook] == [pytest.approx(delta)]
    ledger.store.close()
