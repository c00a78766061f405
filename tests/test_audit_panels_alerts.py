"""Audit of the window's close alerts: one alert (sound, desktop notice, alert list) per close,
whichever way the close came about (the trader's own close, a close-all, the engine's)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from pmgui.domain.enums import PositionStatus, Side
from pmgui.engine.commands import (
    ClosedTrade,
    ClosePosition,
    CommandResult,
    GetHistory,
    HistorySnapshot,
)
from pmgui.engine.events import PositionRemoved
from pmgui.store.metrics import TradeMetrics
from pmgui.ui.main_window import UiSettings
from tests.ui_doubles import BTC, ETH, T0, EngineDouble, position, shown_window, snapshot


@pytest.fixture
def beeps(monkeypatch) -> list[int]:
    calls: list[int] = []
    monkeypatch.setattr(QApplication, "beep", staticmethod(lambda: calls.append(1)))
    return calls


def _closed(pid: str, symbol: str, price: float) -> PositionRemoved:
    p = position(pid, symbol, Side.LONG)
    return PositionRemoved(p.evolve(exit_reason="manual", exit_price=price), T0 + 5)


def _confirm(qtbot, win) -> None:
    dlg = win.confirm_dialog
    assert dlg is not None and dlg.isVisible()
    qtbot.waitUntil(dlg.confirm_button.isEnabled, timeout=5000)
    qtbot.mouseClick(dlg.confirm_button, Qt.MouseButton.LeftButton)


def test_the_traders_emergency_close_alerts_once(qtbot, beeps):
    """The close's answer (its fill) and the position leaving the book are two reports of
    one close: the trader heard two beeps and got two desktop notices for it."""
    eng = EngineDouble(answer=lambda c: CommandResult(True, "closed", c.position_id))
    win = shown_window(qtbot, eng, settings=UiSettings(sound_alerts=True))
    eng.outbox.publish(snapshot(position("a"), 40_500.0))
    win.bridge.flush_now()
    win.select_position("a")
    win.activateWindow()
    qtbot.waitUntil(win.isActiveWindow, timeout=5000)
    win.table.setFocus()
    qtbot.keyClick(win.table, Qt.Key.Key_X, Qt.KeyboardModifier.ControlModifier
                   | Qt.KeyboardModifier.ShiftModifier)
    _confirm(qtbot, win)
    qtbot.waitUntil(lambda: len(eng.of_type(ClosePosition)) == 1, timeout=5000)
    qtbot.waitUntil(lambda: "closed" in win.statusBar().currentMessage(), timeout=5000)
    eng.outbox.publish(_closed("a", BTC.symbol, 40_490.0))
    win.bridge.flush_now()
    assert win.model.rowCount() == 0
    assert len(win.alerts) == 1, win.alerts
    assert "closed (manual)" in win.alerts[0] and "40,490.0" in win.alerts[0]
    assert len(beeps) == 1


def test_close_all_alerts_once_per_position_closed(qtbot, beeps):
    eng = EngineDouble(answer=lambda c: CommandResult(True, "all closed"))
    win = shown_window(qtbot, eng, settings=UiSettings(sound_alerts=True))
    eng.outbox.publish(snapshot(position("a"), 40_500.0))
    eng.outbox.publish(snapshot(position("b", ETH.symbol), 40_500.0))
    win.bridge.flush_now()
    win.send_close_all()
    qtbot.waitUntil(lambda: "All positions closed" in win.statusBar().currentMessage(),
                    timeout=5000)
    eng.outbox.publish(_closed("a", BTC.symbol, 40_490.0))
    eng.outbox.publish(_closed("b", ETH.symbol, 40_480.0))
    win.bridge.flush_now()
    assert len(win.alerts) == 2, win.alerts
    assert len(beeps) == 2


def test_a_failed_close_and_a_residual_position_still_alert(qtbot, beeps):
    """What needs the trader (a close refused, a position left open) keeps its alert."""
    eng = EngineDouble(answer=lambda c: CommandResult(True, "re-checked", residual=("b",)))
    win = shown_window(qtbot, eng, settings=UiSettings(sound_alerts=True))
    win.send_close_all()
    qtbot.waitUntil(lambda: len(win.alerts) == 1, timeout=5000)
    assert "still open" in win.alerts[0] and len(beeps) == 1


# -- the history follows the closes --------------------------------------------------------------
def _history(*pids: str) -> HistorySnapshot:
    closed = tuple(ClosedTrade(position(pid).evolve(status=PositionStatus.CLOSED,
                                                    closed_at=T0 + 5, exit_price=40_490.0,
                                                    exit_reason="manual",
                                                    realized_pnl=-5.0), -0.01)
                   for pid in pids)
    return HistorySnapshot(closed, TradeMetrics(count=len(pids), losses=len(pids)), ())


def test_a_close_while_the_history_is_being_read_is_shown_once_it_is_answered(qtbot):
    """Two closes in quick succession while the engine is slow to answer: the history read
    for the first was still on its way when the second closed, and the second's refresh was
    dropped (one request at a time), so the closed trades, the metrics and today's P/L left
    the second close out until some later close or a click on Refresh."""
    eng = EngineDouble(hold=True, hold_requests=True)
    win = shown_window(qtbot, eng)
    win._second.start()  # a live window (the test's is not started: no bridge timer)
    calls: list[bool] = []
    refresh = win.history.refresh

    def counted() -> bool:
        sent = refresh()
        calls.append(sent)
        return sent

    win.history.refresh = counted  # type: ignore[method-assign]
    for pid in ("a", "b"):
        eng.outbox.publish(snapshot(position(pid), 40_500.0))
    win.bridge.flush_now()
    eng.outbox.publish(_closed("a", BTC.symbol, 40_490.0))
    win.bridge.flush_now()
    qtbot.waitUntil(lambda: len(eng.of_type(GetHistory)) == 1, timeout=5000)
    eng.outbox.publish(_closed("b", BTC.symbol, 40_480.0))
    win.bridge.flush_now()
    qtbot.waitUntil(lambda: len(calls) == 2, timeout=5000)  # b's refresh, a's on its way
    assert calls == [True, False]
    eng.held[0].set_result(_history("a"))  # read before b's close was written
    qtbot.waitUntil(lambda: win.history.table.rowCount() == 1, timeout=5000)
    qtbot.waitUntil(lambda: len(eng.of_type(GetHistory)) == 2, timeout=5000)
    eng.held[1].set_result(_history("a", "b"))
    qtbot.waitUntil(lambda: win.history.table.rowCount() == 2, timeout=5000)
    assert win.history.metrics_label.text().startswith("Trades 2 (0 won, 2 lost)")
    win._second.stop()


def test_a_long_sessions_alerts_are_bounded_newest_kept(qtbot, beeps):
    """Every close's alert was kept for the whole session: a window running for weeks
    beside a busy book held every one of them."""
    from pmgui.ui.main_window import MAX_ALERTS

    eng = EngineDouble()
    win = shown_window(qtbot, eng)
    n = 3 * MAX_ALERTS + 7
    for i in range(n):
        eng.outbox.publish(snapshot(position(f"p{i}"), 40_500.0))
        eng.outbox.publish(PositionRemoved(position(f"p{i}").evolve(
            exit_reason="take_profit", exit_price=42_000.0 + i), T0 + 5))
        win.bridge.flush_now()
    assert len(win.alerts) <= 2 * MAX_ALERTS
    assert len(win.alerts) >= MAX_ALERTS
    assert f"{42_000 + n - 1:,}.0" in win.alerts[-1]


def test_a_close_learnt_without_its_reason_or_price_says_closed_plainly(qtbot):
    """A remote window that was away learns of a close from the engine's resync: the
    position's last open state, no exit reason or price. The alert read "closed (closed)
    at —"."""
    eng = EngineDouble()
    win = shown_window(qtbot, eng)
    eng.outbox.publish(snapshot(position("a"), 40_500.0))
    win.bridge.flush_now()
    eng.outbox.publish(PositionRemoved(position("a"), T0 + 5))  # as last seen: open
    win.bridge.flush_now()
    assert win.alerts == [f"{BTC.symbol} ▲ LONG closed"]
    assert "—" not in win.statusBar().currentMessage()


def test_an_emergency_storm_keeps_the_notice_readable_and_bounded(qtbot):
    """A crash stops out hundreds of positions by their emergency tier: the notice's hover
    listed every one (a tooltip taller than any screen, cut by it) and kept them all until
    the trader clicked."""
    from pmgui.ui.panels import AlertButton
    from pmgui.ui.theme import make_theme

    notice = AlertButton(make_theme("dark"))
    qtbot.addWidget(notice)
    for i in range(500):
        notice.add(f"⚠ EMERGENCY STOP: P{i} closed")
    assert notice.text().startswith("⚠ EMERGENCY STOP: P499 closed")
    assert "(+499 more)" in notice.text()
    tip = notice.toolTip().splitlines()
    assert len(tip) <= 30 and "⚠ EMERGENCY STOP: P499 closed" in tip
    assert any("480 earlier" in line for line in tip)
    assert len(notice.messages) <= 2 * AlertButton.SHOWN
    notice.dismiss()
    notice.add("⚠ EMERGENCY STOP: Q closed")
    assert "more" not in notice.text() and notice.toolTip().startswith("⚠ EMERGENCY STOP: Q")
