"""The status bar shows the venue's health from the ConnectionEvent: clock offset, request
budget left and, in the tooltip, every stream's state (real Outbox → Bridge → MainWindow)."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel

from pmgui.engine.events import ConnectionEvent
from pmgui.ui.main_window import UiSettings
from tests.ui_doubles import EngineDouble, shown_window

BTC = "BTC/USDT:USDT"


def test_status_bar_shows_clock_offset_headroom_and_stream_states(qtbot) -> None:
    eng = EngineDouble()
    win = shown_window(qtbot, eng, clock=lambda: 1000.0, exposed=False, settings=UiSettings())
    orders = win.findChild(QLabel, "ordersStatus")

    eng.outbox.publish(ConnectionEvent(
        "binanceusdm", market_data=True, orders=False, last_tick_age=0.5,
        detail="order stream down: listen key expired, recreating", clock_offset=20.04,
        streams=((f"price {BTC}", "up"), ("orders", "down: listen key expired, recreating")),
        rate_limit_headroom=0.93))
    win.bridge.flush_now()
    assert orders.text() == "✖ Orders: DISCONNECTED · clock +20.0 s · API 93% free"
    tip = orders.toolTip()
    assert "listen key expired" in tip and "+20.04 s" in tip
    assert f"price {BTC}: up" in tip and "orders: down: listen key expired" in tip

    eng.outbox.publish(ConnectionEvent(
        "binanceusdm", market_data=True, orders=True, last_tick_age=0.5, clock_offset=-0.02,
        streams=((f"price {BTC}", "up"), ("orders", "up")), rate_limit_headroom=0.0))
    win.bridge.flush_now()
    assert orders.text() == "● Orders: connected · clock -0.0 s · ⚠ API rate-limited"
    assert "orders: up" in orders.toolTip()

    # a venue that reports none of it (paper) keeps the plain label
    eng.outbox.publish(ConnectionEvent("paper", market_data=True, orders=True,
                                       last_tick_age=0.5))
    win.bridge.flush_now()
    assert orders.text() == "● Orders: connected"
