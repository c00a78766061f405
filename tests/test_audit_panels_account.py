"""Audit of the account bar as a trader reads it through a long session."""

from __future__ import annotations

from pmgui.engine.commands import GetHistory, HistorySnapshot
from pmgui.store.metrics import TradeMetrics
from pmgui.ui.history import local_midnight
from tests.ui_doubles import T0, EngineDouble, shown_window


def test_today_starts_again_at_local_midnight_in_a_window_left_running(qtbot):
    """"Today" is the P/L realized since local midnight; it came only with the history's
    answers (asked when a trade closes), so a window left running overnight still showed
    yesterday's P/L as today's the next morning until some trade closed."""
    wall = [T0]
    eng = EngineDouble(hold_requests=True, hold=True)
    win = shown_window(qtbot, eng, wall_clock=lambda: wall[0])
    win.history.refresh()
    qtbot.waitUntil(lambda: len(eng.held) == 1, timeout=5000)
    eng.held[0].set_result(HistorySnapshot((), TradeMetrics(), (), (), 123.45))
    today = win.account.labels["today"]
    qtbot.waitUntil(lambda: today.text() == "Today +$123.45", timeout=5000)
    win.refresh_status()  # the window's second: still the same day, nothing asked
    assert len(eng.of_type(GetHistory)) == 1
    wall[0] = local_midnight(T0) + 86_400 + 30  # half a minute into the next day
    win.refresh_status()
    qtbot.waitUntil(lambda: len(eng.of_type(GetHistory)) == 2, timeout=5000)
    eng.held[1].set_result(HistorySnapshot((), TradeMetrics(), (), (), 0.0))
    qtbot.waitUntil(lambda: today.text() == "Today $0.00", timeout=5000)
    win.refresh_status()
    assert len(eng.of_type(GetHistory)) == 2  # once a day
