"""A stop on Binance that fired: its algo order says TRIGGERED, its fill is its market child's.

Binance USDⓈ-M serves stops as algo orders. Once the trigger fires, the algo order reports
TRIGGERED (with `actualOrderId`: the market order it created) until it says FINISHED a
moment later; the algo record never carries what was executed. A lookup of the stop by its
client id in that instant (the close the venue refused because the stop filled first, or the
reconciliation after a restart) must follow it to its market order and book that order's
fill — its real price, quantity and fee — once: not read TRIGGERED as "still resting", find
the position flat and book it "closed outside pmgui" at the last price.

The real engine and adapter over the local Binance emulator (tests.fakes.binance_server):
its `algo_finish_held` keeps a fired stop TRIGGERED after its market order filled,
`hold_order_events` holds the order stream's reports back, `hidden_children` hides the
market order from lookups for a while, `before_create` lets the stop fill in the instant a
close reaches the venue.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import ccxt
import pytest

from pmgui.domain.enums import OrderSide, OrderStatus, OrderType
from pmgui.domain.models import OrderRequest
from pmgui.engine import commands as cmd
from pmgui.engine.core import EngineCore
from pmgui.engine.events import ErrorEvent
from pmgui.engine.outbox import Outbox
from pmgui.exchange.ccxt_adapter import CcxtExchange
from pmgui.exchange.retry import Backoff
from tests.binance_rig import BTC, binance_engine, binance_exchange, open_long
from tests.binance_rig import FAST as QUICK
from tests.fakes.binance_server import TAKER_FEE, BinanceServer
from tests.fakes.recording_sink import RecordingSink

# bounded lookups 50-300 ms apart (the other Binance rig tests: 10-50 ms)
FAST = replace(QUICK, backoff=Backoff(0.05, 2.0, 0.3, 0.0))
FILL = 48900.0  # where the stop's market order fills
LAST = 48000.0  # where the market is by the time pmgui looks
STOP_FEE = float(Decimal("48900") * Decimal("0.01") * TAKER_FEE)


async def _engine(server: BinanceServer, db: Path) -> tuple[EngineCore, CcxtExchange, Outbox]:
    return await binance_engine(server, db, FAST)


async def _open_long(engine: EngineCore) -> tuple[str, str]:
    """A long of 0.01 BTC at 50,000 with its stop (49,000) on the exchange: (position id,
    the stop's client id)."""
    return await open_long(engine, sl=49000)


async def _stop_fires(server: BinanceServer) -> None:
    """The market falls through the stop (its market order fills at FILL) and moves on."""
    await server.set_price(BTC, FILL)
    await server.set_price(BTC, LAST)


def _stop_fills(engine: EngineCore, pid: str, stop_cid: str) -> list:
    return [f for f in engine.store.fills(pid) if f.order_client_id == stop_cid]


def _assert_closed_by_its_stop(engine: EngineCore, pid: str, stop_cid: str) -> None:
    pos = engine.store.load_position(pid)
    assert pos is not None and not pos.is_open
    assert (pos.exit_reason, pos.exit_price) == ("stop_loss", pytest.approx(FILL)), \
        (pos.exit_reason, pos.exit_price)
    (fill,) = _stop_fills(engine, pid, stop_cid)
    assert (fill.qty, fill.price) == (pytest.approx(0.01), pytest.approx(FILL))
    assert fill.fee == pytest.approx(STOP_FEE)  # the venue's fee, not an estimate


async def test_a_close_refused_because_the_stop_fired_books_the_stop_s_market_order(
        server: BinanceServer, tmp_path: Path) -> None:
    engine, exchange, outbox = await _engine(server, tmp_path / "pmgui.db")
    try:
        pid, stop_cid = await _open_long(engine)
        server.faults.hold_order_events = True  # the stream reports the fill late
        server.faults.algo_finish_held = True  # the stop says TRIGGERED meanwhile

        async def stop_fills_first(params: dict[str, str]) -> None:
            await _stop_fires(server)

        server.faults.before_create = stop_fills_first
        outbox.drain()
        result = await engine.handle(cmd.ClosePosition(pid))
        events = outbox.drain()
        assert [e.message for e in events if isinstance(e, ErrorEvent)] == []
        _assert_closed_by_its_stop(engine, pid, stop_cid)
        # the trader is told what happened: the stop closed it at its own price
        assert result.ok and "@ 48900.0 by its stop loss" in result.message, result.message
        assert "closed outside" not in str([getattr(e, "detail", "") for e in events])
        # the stream's late reports and the stop's FINISHED come after: booked once still
        (algo,) = [o for o in server.state.algo_orders.values() if o.client_id == stop_cid]
        child = str(algo.actual_order_id)
        await server.release_held_events()
        await server.finish_held_algos()
        waiter = RecordingSink()
        await waiter.wait_for(lambda: (BTC, child) in exchange._raw_seen
                              and (BTC, str(algo.order_id)) in exchange._raw_seen
                              and exchange._raw_seen[(BTC, str(algo.order_id))][1] == "closed",
                              timeout=15)
        _assert_closed_by_its_stop(engine, pid, stop_cid)
        # the entry and the stop's exit, nothing else (the entry's is booked before its
        # position exists: not under the position's id)
        assert len(engine.store.fills()) == 2, engine.store.fills()
        # one close was sent (refused), none re-sent; the position is flat
        assert server.state.positions["BTCUSDT"].amount == 0
        await waiter.wait_for(lambda: not server.state.open_orders(algo=True), timeout=15)
    finally:
        await engine.shutdown()


@pytest.mark.parametrize("hidden", [0, 2])
async def test_reconcile_after_a_restart_books_a_triggered_stop_s_market_order(
        server: BinanceServer, tmp_path: Path, hidden: int) -> None:
    """pmgui was down while the stop fired; at the restart the stop still says TRIGGERED
    (and its market order may not be visible for a moment yet): reconciliation books the
    market order's fill, not "closed outside pmgui" at the last price."""
    db = tmp_path / "pmgui.db"
    engine, _, _ = await _engine(server, db)
    pid, stop_cid = await _open_long(engine)
    await engine.shutdown()
    server.faults.algo_finish_held = True
    await _stop_fires(server)
    server.faults.hidden_children = hidden
    engine, _, _ = await _engine(server, db)
    try:
        assert server.faults.hidden_children == 0
        _assert_closed_by_its_stop(engine, pid, stop_cid)
        notes = [str(a.get("inputs")) for a in engine.store.actions(pid)]
        assert not [n for n in notes if "closed outside" in n], notes
    finally:
        await engine.shutdown()


async def test_a_fired_stop_whose_fill_stays_invisible_is_closed_outside_and_says_why(
        server: BinanceServer, tmp_path: Path) -> None:
    """Only when the venue shows no fill of the fired stop after a bounded look does the
    reconciliation fall back to "closed outside pmgui" at the last price, and its log says
    that the stop fired and its fill was not seen."""
    db = tmp_path / "pmgui.db"
    engine, _, _ = await _engine(server, db)
    pid, _ = await _open_long(engine)
    await engine.shutdown()
    server.faults.algo_finish_held = True
    await _stop_fires(server)
    server.faults.hidden_children = 10_000
    engine, _, _ = await _engine(server, db)
    try:
        pos = engine.store.load_position(pid)
        assert pos is not None and not pos.is_open and pos.exit_reason == "reconcile"
        notes = [str(a.get("inputs")) for a in engine.store.actions(pid)]
        (note,) = [n for n in notes if "closed outside" in n]
        assert "stop_loss order fired" in note and "no fill" in note, note
    finally:
        await engine.shutdown()


async def test_a_cancel_that_raced_a_fill_reports_what_was_filled(server: BinanceServer) -> None:
    """A cancel reaching an order a fill has just reached: the venue's answer says what was
    executed (and at what price); the adapter's result says it too, not the quantity the
    caller knew before — the order is final after it, so nothing else would resync it."""
    server.state.set_position("BTCUSDT", "0.01", "50000")
    exchange = binance_exchange(server, FAST)
    await exchange.connect()
    try:
        # a reduce-only limit for more than is held: it fills 0.01 and stays working
        order = await exchange.create_order(OrderRequest(
            "pmg-race-1", BTC, OrderSide.SELL, OrderType.LIMIT, 0.02, price=51000.0,
            reduce_only=True))
        assert order.filled == 0.0
        await server.set_price(BTC, 51000)
        (venue,) = [o for o in server.state.orders.values() if o.client_id == "pmg-race-1"]
        assert (venue.status, venue.executed) == ("PARTIALLY_FILLED", Decimal("0.01"))
        sink = RecordingSink()
        exchange._sink = sink  # (as `run` sets it) the order stream says nothing meanwhile
        result = await exchange.cancel_order(order)  # `order`: what the caller knew
        assert result.status is OrderStatus.CANCELED
        assert (result.filled, result.average) == (pytest.approx(0.01), pytest.approx(51000))
        # its fill record: the venue's price and (maker) fee
        (fill,) = sink.fills("pmg-race-1")
        (trade,) = [t for t in server.state.trades if t.order_id == venue.order_id]
        assert (fill.qty, fill.price, fill.fee) == \
            (pytest.approx(0.01), pytest.approx(51000), pytest.approx(float(trade.fee)))
        assert trade.maker
    finally:
        await exchange.close()


async def test_a_fired_stop_whose_market_order_is_still_working_is_not_final() -> None:
    """OKX reports a stop `effective` the moment it fires; the market order it created may
    have filled part of it only. The stop is not done (final) until that order is: its
    remaining fills are still to come, and a final stop would look like the position's
    protection gone (a stop placed again) while its own order is still closing it."""
    ex = CcxtExchange("okx")
    sink = RecordingSink()
    ex._sink = sink
    algo = {"id": "A1", "clientOrderId": None, "symbol": BTC, "type": "market", "side": "sell",
            "amount": 1.0, "filled": 1.0, "average": None, "cost": None, "status": "closed",
            "triggerPrice": 49500.0, "lastUpdateTimestamp": 2,
            "info": {"algoId": "A1", "algoClOrdId": "pmgSL1", "ordType": "conditional",
                     "state": "effective", "ordId": "C1", "slTriggerPx": "49500"}}
    child = {"id": "C1", "clientOrderId": None, "symbol": BTC, "type": "market",
             "side": "sell", "amount": 1.0, "filled": 0.4, "average": 49400.0,
             "cost": 0.4 * 49400.0, "status": "open", "lastUpdateTimestamp": 2,
             "info": {"ordId": "C1", "algoId": "A1", "algoClOrdId": "pmgSL1",
                      "ordType": "market", "state": "partially_filled", "accFillSz": "0.4"}}
    await ex._process_orders([algo, child])
    (update,) = [u for u in sink.updates if u.order.client_id == "pmgSL1"]
    assert (update.order.status, update.order.filled) == (OrderStatus.OPEN, 0.4)
    assert [(f.qty, f.price) for f in update.fills] == [(0.4, 49400.0)]
    await ex._process_orders([algo, {**child, "filled": 1.0, "cost": 49400.0,
                                     "status": "closed", "lastUpdateTimestamp": 3}])
    last = [u for u in sink.updates if u.order.client_id == "pmgSL1"][-1]
    assert (last.order.status, last.order.filled) == (OrderStatus.FILLED, 1.0)
    assert [(f.qty, f.price) for f in last.fills] == [(pytest.approx(0.6), 49400.0)]


def test_a_triggered_conditional_order_s_own_fills_are_not_hidden() -> None:
    """Bybit: a conditional order that fired executes as itself (no child), so its record's
    cumulative quantity, with its price, is what it executed — also while it is still
    working. Read as "nothing filled yet", a lookup would show the position smaller than
    its orders explain (booked again as "changed outside pmgui" at the last price, then
    its own fills on top)."""
    bybit = ccxt.bybit()
    raw = {"orderId": "b1", "orderLinkId": "pmgT1", "symbol": "BTCUSDT", "side": "Sell",
           "orderType": "Market", "orderStatus": "PartiallyFilled", "qty": "1",
           "cumExecQty": "0.4", "cumExecValue": "19760", "avgPrice": "49400",
           "cumExecFee": "10.868", "triggerPrice": "49500", "triggerDirection": 2,
           "stopOrderType": "Stop", "reduceOnly": True, "positionIdx": 0,
           "createdTime": "1700000000000", "updatedTime": "1700000000500"}
    o = bybit.parse_order(raw)
    ex = CcxtExchange("bybit")
    order = ex._to_order(o)
    assert (order.type, order.status) == (OrderType.STOP_MARKET, OrderStatus.OPEN)
    assert (order.filled, order.average) == (0.4, 49400.0)
    untriggered = ex._to_order(bybit.parse_order(
        {**raw, "orderStatus": "Untriggered", "cumExecQty": "0", "cumExecValue": "0",
         "avgPrice": "", "cumExecFee": "0"}))
    assert (untriggered.status, untriggered.filled) == (OrderStatus.OPEN, 0.0)


async def test_after_a_restart_a_fired_stop_whose_market_order_still_works_is_not_resting(
        server: BinanceServer, tmp_path: Path) -> None:
    """pmgui was down while the stop fired; its market order (under the stop's client id
    too) is still working, unfilled, at the restart. The lookup by client id follows the
    stop (its algo order) to that market order — it does not take the market order for the
    stop itself, which read as a resting order of the market type without a trigger (the
    protection then "moved" it: cancelled the working close and placed another stop)."""
    db = tmp_path / "pmgui.db"
    engine, _, _ = await _engine(server, db)
    pid, stop_cid = await _open_long(engine)
    placed = sorted(o.client_id for o in server.state.algo_orders.values())  # stop and TP
    await engine.shutdown()
    server.faults.held_children = 1
    await server.set_price(BTC, FILL)  # the stop fires; its market order stays NEW
    engine, _, _ = await _engine(server, db)
    try:
        (algo,) = [o for o in server.state.algo_orders.values() if o.client_id == stop_cid]
        stop = engine.ledger.get(stop_cid)
        assert stop is not None and stop.type is OrderType.STOP_MARKET
        assert stop.trigger_price == pytest.approx(49000.0)
        # nothing was placed or cancelled in its place: the working close is left to work
        assert sorted(o.client_id for o in server.state.algo_orders.values()) == placed
        assert server.state.orders[algo.actual_order_id].status == "NEW"
        await server.fill_held_children()
        await RecordingSink().wait_for(
            lambda: (p := engine.store.load_position(pid)) is not None and not p.is_open,
            timeout=15)
        pos = engine.store.load_position(pid)
        assert (pos.exit_reason, pos.exit_price) == ("stop_loss", pytest.approx(FILL))
        assert sum(f.qty for f in _stop_fills(engine, pid, stop_cid)) == pytest.approx(0.01)
    finally:
        await engine.shutdown()
