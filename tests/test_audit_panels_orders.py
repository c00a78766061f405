"""Audit of the Orders panel: every resting order pmgui placed that is not a position's
SL/TP (those are on its protection badge) is listed with its role, and only what the
engine would cancel offers Cancel."""

from __future__ import annotations

from PySide6.QtCore import Qt

from pmgui.domain.enums import OrderRole, OrderSide, OrderStatus, OrderType
from pmgui.domain.models import Order
from pmgui.engine.commands import CancelOrder
from pmgui.engine.events import OrderSnapshot
from tests.ui_doubles import BTC, ETH, T0, EngineDouble, shown_window


def _order(cid: str, role: OrderRole, status: OrderStatus = OrderStatus.OPEN,
           symbol: str = BTC.symbol, price: float = 39_500.0) -> Order:
    return Order(cid, symbol, OrderSide.BUY, OrderType.LIMIT, 0.25, status, price=price,
                 position_id="p1" if role is OrderRole.ADD else None, role=role,
                 reason="add_on" if role is OrderRole.ADD else None, created_at=T0)


def _click_row(qtbot, table, row: int) -> None:
    rect = table.visualItemRect(table.item(row, 0))
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def test_a_resting_add_on_limit_order_is_listed_with_its_role(qtbot):
    """The add-on rule's limit order rests on the exchange (at the EMA) for minutes: it
    was shown nowhere in the window — the Orders panel said "No working orders" while the
    exchange listed one of pmgui's orders."""
    eng = EngineDouble()
    win = shown_window(qtbot, eng)
    win.orders_dock.raise_()
    panel, t = win.orders, win.orders.table
    eng.outbox.publish(OrderSnapshot(_order("add-1", OrderRole.ADD)))
    eng.outbox.publish(OrderSnapshot(_order("ent-1", OrderRole.ENTRY, symbol=ETH.symbol,
                                            price=2_950.0)))
    win.bridge.flush_now()
    assert t.rowCount() == 2 and panel.status.text() == "2 working orders"
    headers = [t.horizontalHeaderItem(c).text() for c in range(t.columnCount())]
    role = headers.index("Role")
    rows = {t.item(r, 0).text(): r for r in range(2)}
    assert t.item(rows[BTC.symbol], role).text() == "Add-on"
    assert t.item(rows[ETH.symbol], role).text() == "Entry"
    assert "39,500.0" in t.item(rows[BTC.symbol], 3).text()
    # the add-on is the rule's (the engine cancels entries only): no Cancel for it
    _click_row(qtbot, t, rows[BTC.symbol])
    assert panel.selected_id() == "add-1" and not panel.cancel_button.isEnabled()
    _click_row(qtbot, t, rows[ETH.symbol])
    assert panel.selected_id() == "ent-1" and panel.cancel_button.isEnabled()
    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    assert [c.client_id for c in eng.of_type(CancelOrder)] == ["ent-1"]
    # filled: gone
    eng.outbox.publish(OrderSnapshot(_order("add-1", OrderRole.ADD, OrderStatus.FILLED)))
    win.bridge.flush_now()
    assert t.rowCount() == 1 and t.item(0, 0).text() == ETH.symbol


def test_protective_and_market_orders_stay_off_the_orders_panel(qtbot):
    eng = EngineDouble()
    win = shown_window(qtbot, eng)
    sl = Order("sl-1", BTC.symbol, OrderSide.SELL, OrderType.STOP_MARKET, 0.5,
               OrderStatus.OPEN, trigger_price=39_000.0, reduce_only=True, position_id="p1",
               role=OrderRole.STOP_LOSS)
    add = Order("add-2", BTC.symbol, OrderSide.BUY, OrderType.MARKET, 0.25,
                OrderStatus.PENDING, position_id="p1", role=OrderRole.ADD)
    eng.outbox.publish(OrderSnapshot(sl))
    eng.outbox.publish(OrderSnapshot(add))
    win.bridge.flush_now()
    assert win.orders.table.rowCount() == 0
    assert win.orders.status.text() == "No working orders"


def test_a_closed_positions_cancelled_stops_leave_nothing_behind(qtbot):
    """A close cancels the position's SL/TP; those cancels reach the window after the
    position left it (removals are handed on at once, orders at the table's rate), and
    each closed position left an entry in the panel's order book and its protection text
    in the model: a window running for weeks kept one of each for every trade closed."""
    from pmgui.engine.events import PositionRemoved
    from tests.ui_doubles import position, snapshot

    eng = EngineDouble()
    win = shown_window(qtbot, eng)

    def stop(pid: str, status: OrderStatus) -> Order:
        return Order(f"sl-{pid}", BTC.symbol, OrderSide.SELL, OrderType.STOP_MARKET, 0.5,
                     status, trigger_price=39_000.0, reduce_only=True, position_id=pid,
                     role=OrderRole.STOP_LOSS)

    for i in range(50):
        pid = f"p{i}"
        eng.outbox.publish(snapshot(position(pid), 40_500.0))
        eng.outbox.publish(OrderSnapshot(stop(pid, OrderStatus.OPEN)))
        win.bridge.flush_now()
        assert "on exchange" in win.model.protection_detail(pid)
        p = position(pid).evolve(exit_reason="stop_loss", exit_price=39_000.0)
        eng.outbox.publish(OrderSnapshot(stop(pid, OrderStatus.CANCELED)))
        eng.outbox.publish(PositionRemoved(p, T0 + 5))
        win.bridge.flush_now()
    assert win.model.rowCount() == 0
    assert win.positions._orders == {}
    assert all(win.model.protection_detail(f"p{i}") == "" for i in range(50))
