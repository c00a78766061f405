"""Resting limit/stop entries end to end: the real engine, the real paper exchange, real SQLite."""

from __future__ import annotations

import pytest

from pmgui.domain.enums import OrderRole, OrderStatus, OrderType, Protection, Side
from pmgui.domain.errors import ValidationError
from pmgui.domain.models import Order, Tick
from pmgui.engine import commands as cmd
from pmgui.engine.entries import SETTING
from pmgui.engine.events import OrderSnapshot
from pmgui.exchange.base import OrderUpdate
from tests.engine_support import SYMBOL, Harness
from tests.paper_support import RecordingSink

T0 = 1_700_000_000.0


async def _tick(h: Harness, price: float, i: int, sink=None) -> None:
    await h.paper.deliver(Tick(SYMBOL, price, T0 + i), sink or h.engine)


async def _started(db_path) -> Harness:
    h = Harness(db_path, [])
    await h.engine.start()
    await _tick(h, 60_000.0, 0)
    return h


def _entry(kind: str, price: float, side=Side.LONG, qty=0.01, sl=None, tp=None):
    return cmd.OpenPosition(SYMBOL, side, qty, 10, sl=sl, tp=tp, order_type=kind, price=price)


async def _protective(h: Harness) -> list[tuple]:
    return sorted((o.type.value, o.trigger_price, o.amount)
                  for o in await h.paper.fetch_open_orders(SYMBOL) if o.reduce_only)


async def test_limit_entry_rests_then_fills_and_opens_with_its_bracket(db_path):
    h = await _started(db_path)
    res = await h.engine.handle(_entry("limit", 59_500.0, sl=58_500.0, tp=61_000.0))
    assert res.ok and "working" in res.message
    assert not h.engine.positions  # nothing open until it fills
    [o] = [o for o in await h.paper.fetch_open_orders(SYMBOL)]
    assert (o.type, o.price, o.reduce_only) == (OrderType.LIMIT, 59_500.0, False)
    journaled = h.store.order(o.client_id)
    assert journaled.role is OrderRole.ENTRY and journaled.status is OrderStatus.OPEN
    snaps = [e.order for e in h.of(OrderSnapshot) if e.order.client_id == o.client_id]
    assert snaps and snaps[-1].status is OrderStatus.OPEN

    await _tick(h, 59_800.0, 1)
    assert not h.engine.positions
    await _tick(h, 59_400.0, 2)  # through the limit: fills at the limit
    [pos] = h.engine.positions.values()
    assert pos.id == res.position_id
    assert pos.qty == pytest.approx(0.01) and pos.entry == 59_500.0
    assert (pos.sl, pos.tp) == (58_500.0, 61_000.0)
    assert await _protective(h) == [("stop_market", 58_500.0, 0.01),
                                    ("take_profit_market", 61_000.0, 0.01)]
    assert h.engine.protection(pos) is Protection.ON_EXCHANGE
    assert h.store.order(o.client_id).status is OrderStatus.FILLED
    # the same fill reported again (a REST lookup) books nothing twice
    await h.engine.apply_order(h.paper._orders[o.client_id], ())
    assert h.engine.positions[pos.id].qty == pytest.approx(0.01)
    assert len(h.engine.positions) == 1
    await h.engine.periodic()
    assert not (h.store.get_setting(SETTING, {}) or {})  # the intent is forgotten once filled
    await h.engine.shutdown()


async def test_stop_entry_triggers_a_short_on_the_breakdown(db_path):
    h = await _started(db_path)
    res = await h.engine.handle(_entry("stop", 59_000.0, side=Side.SHORT, sl=60_500.0))
    assert res.ok
    [o] = await h.paper.fetch_open_orders(SYMBOL)
    assert (o.type, o.trigger_price) == (OrderType.STOP_MARKET, 59_000.0)
    await _tick(h, 59_200.0, 1)
    assert not h.engine.positions
    await _tick(h, 58_990.0, 2)
    [pos] = h.engine.positions.values()
    assert pos.side is Side.SHORT and pos.qty == pytest.approx(0.01)
    assert pos.entry == pytest.approx(58_990.0)
    assert await _protective(h) == [("stop_market", 60_500.0, 0.01)]
    await h.engine.shutdown()


@pytest.mark.parametrize(("kind", "side", "price", "words"), [
    ("limit", Side.LONG, 60_500.0, "below the market"),
    ("limit", Side.SHORT, 59_500.0, "above the market"),
    ("stop", Side.LONG, 59_500.0, "above the market"),
    ("stop", Side.SHORT, 60_500.0, "below the market"),
    ("limit", Side.LONG, -1.0, "positive price"),
    ("limit", Side.LONG, None, "positive price"),
    ("iceberg", Side.LONG, 59_000.0, "market, limit or stop"),
])
async def test_bad_entry_prices_are_refused_and_nothing_is_sent(db_path, kind, side, price,
                                                                 words):
    h = await _started(db_path)
    with pytest.raises(ValidationError, match=words):
        await h.engine.handle(_entry(kind, price, side=side))
    assert await h.paper.fetch_open_orders(SYMBOL) == []
    assert not h.store.open_orders() and not (h.store.get_setting(SETTING, {}) or {})
    await h.engine.shutdown()


async def test_bracket_is_checked_against_the_entry_price(db_path):
    h = await _started(db_path)
    # SL 59 600 is below the market but above the 59 500 entry: a long's stop must be below it
    with pytest.raises(ValidationError):
        await h.engine.handle(_entry("limit", 59_500.0, sl=59_600.0))
    assert await h.paper.fetch_open_orders(SYMBOL) == []
    await h.engine.shutdown()


async def test_cancel_withdraws_the_working_entry(db_path):
    h = await _started(db_path)
    await h.engine.handle(_entry("limit", 59_000.0))
    [o] = await h.paper.fetch_open_orders(SYMBOL)
    res = await h.engine.handle(cmd.CancelOrder(o.client_id))
    assert res.ok and "canceled" in res.message
    assert await h.paper.fetch_open_orders(SYMBOL) == []
    assert h.store.order(o.client_id).status is OrderStatus.CANCELED
    snaps = [e.order for e in h.of(OrderSnapshot) if e.order.client_id == o.client_id]
    assert snaps[-1].status is OrderStatus.CANCELED
    await _tick(h, 58_000.0, 1)  # the price goes through: nothing opens
    assert not h.engine.positions
    again = await h.engine.handle(cmd.CancelOrder(o.client_id))
    assert not again.ok and "already" in again.message
    with pytest.raises(ValidationError):
        await h.engine.handle(cmd.CancelOrder("pmg-not-an-order"))
    await h.engine.shutdown()


async def test_restart_keeps_tracking_the_entry_and_books_a_fill_made_while_down(db_path):
    h = await _started(db_path)
    await h.engine.handle(_entry("limit", 59_500.0, sl=58_500.0, tp=61_000.0))
    [o] = await h.paper.fetch_open_orders(SYMBOL)
    await h.engine.shutdown()

    # restart while it still rests: tracked again, no second order, published as working
    h2 = Harness(db_path, [])
    await h2.engine.start()
    assert [x.client_id for x in await h2.paper.fetch_open_orders(SYMBOL)] == [o.client_id]
    assert o.client_id in h2.engine.orders
    assert any(e.order.client_id == o.client_id for e in h2.of(OrderSnapshot))
    await h2.engine.shutdown()

    # pmgui is down: the venue alone sees the price go through the limit
    down = Harness(db_path, [])
    await down.paper.connect()
    await _tick(down, 59_400.0, 1, sink=RecordingSink())
    assert down.paper._orders[o.client_id].status is OrderStatus.FILLED
    await down.paper.close()
    down.store.close()

    h3 = Harness(db_path, [])
    await h3.engine.start()  # reconciliation by client id books the fill on its position
    [pos] = h3.engine.positions.values()
    assert pos.qty == pytest.approx(0.01) and pos.entry == 59_500.0
    assert (pos.sl, pos.tp) == (58_500.0, 61_000.0)
    assert await _protective(h3) == [("stop_market", 58_500.0, 0.01),
                                     ("take_profit_market", 61_000.0, 0.01)]
    await h3.engine.reconcile()  # a second pass adopts nothing and duplicates nothing
    assert len(h3.engine.positions) == 1
    assert len(await h3.paper.fetch_positions()) == 1
    await h3.engine.shutdown()


async def test_partial_fills_open_the_filled_part_then_add(db_path):
    h = await _started(db_path)
    await h.engine.handle(_entry("limit", 59_500.0, qty=0.03, sl=58_500.0))
    [o] = await h.paper.fetch_open_orders(SYMBOL)

    def report(filled: float) -> Order:
        return Order(o.client_id, SYMBOL, o.side, o.type, o.amount, OrderStatus.OPEN,
                     o.exchange_id, o.price, filled=filled, average=59_500.0,
                     updated_at=T0 + filled)

    await h.engine.on_order_update(OrderUpdate(report(0.01)))
    [pos] = h.engine.positions.values()
    assert pos.qty == pytest.approx(0.01)
    await h.engine.on_order_update(OrderUpdate(report(0.01)))  # the same report again
    assert h.engine.positions[pos.id].qty == pytest.approx(0.01)
    await h.engine.on_order_update(OrderUpdate(report(0.02)))
    assert h.engine.positions[pos.id].qty == pytest.approx(0.02)
    assert len(h.engine.positions) == 1
    await h.engine.shutdown()


async def test_entry_filling_while_a_position_is_open_adds_to_it(db_path):
    h = await _started(db_path)
    first = await h.engine.handle(cmd.OpenPosition(SYMBOL, Side.LONG, 0.01, 10, sl=58_000.0))
    await h.engine.handle(_entry("limit", 59_500.0, qty=0.02))
    await _tick(h, 59_400.0, 1)
    [pos] = h.engine.positions.values()
    assert pos.id == first.position_id and pos.qty == pytest.approx(0.03)
    await h.engine.shutdown()


async def test_flatten_also_cancels_working_entries(db_path):
    h = await _started(db_path)
    await h.engine.handle(cmd.OpenPosition(SYMBOL, Side.LONG, 0.01, 10, sl=58_000.0))
    await h.engine.handle(_entry("stop", 61_000.0, side=Side.LONG, qty=0.01))
    res = await h.engine.handle(cmd.CloseAll())
    assert res.ok, res.message
    assert await h.paper.fetch_open_orders(SYMBOL) == []
    await _tick(h, 61_500.0, 1)  # through the stop entry's trigger: nothing opens
    assert not h.engine.positions
    await h.engine.shutdown()
