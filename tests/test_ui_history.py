"""History panel over a real SQLite store (written by the store, read back read-only)."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QTableWidget

from pmgui.domain.enums import ActionType, PositionStatus, Reason, Side, StopKind
from pmgui.domain.models import Action
from pmgui.store.db import Store
from pmgui.ui.history import HistoryPanel
from pmgui.ui.main_window import MainWindow
from pmgui.ui.runner import CommandRunner
from tests.ui_doubles import BTC, ETH, T0, EngineDouble, action, position, snapshot


def closed(pid: str, symbol: str, side: Side, entry: float, exit_: float, pnl: float,
           reason: str, **kw):
    p = position(pid, symbol, side, qty=1.0, entry=entry,
                 sl=entry * (0.98 if side is Side.LONG else 1.02), tp=None, **kw)
    return p.evolve(status=PositionStatus.CLOSED, closed_at=T0 + 3600, exit_price=exit_,
                    exit_reason=reason, realized_pnl=pnl, qty=0.0)


@pytest.fixture
def store_file(tmp_path):
    path = tmp_path / "pmgui.db"
    st = Store.open(path)
    try:
        st.save_position(closed("a", BTC.symbol, Side.LONG, 40_000.0, 41_600.0, 1_600.0,
                                "take_profit"))
        st.save_position(closed("b", ETH.symbol, Side.SHORT, 3_000.0, 3_060.0, -60.0,
                                "stop_loss", sl_kind=StopKind.TRAILING))
        st.save_position(position("open1"))  # open: not in the history
        for i, eq in enumerate((10_000.0, 10_400.0, 10_340.0)):
            st.record_equity(T0 + i * 60, eq, eq)
        st.record_action(Action(ActionType.MOVE_SL, Reason.TRAILING, "b", 3_010.0, sl=3_060.0,
                                ts=T0 + 100), symbol=ETH.symbol)
        st.record_action(Action(ActionType.CLOSE, Reason.TAKE_PROFIT, "a", 41_600.0, qty=1.0,
                                ts=T0 + 200), symbol=BTC.symbol)
    finally:
        st.close()
    return path


def test_history_shows_closed_trades_metrics_and_equity(qtbot, store_file):
    eng = EngineDouble(db=store_file)
    panel = HistoryPanel(CommandRunner(eng).request, eng.market)
    qtbot.addWidget(panel)
    with qtbot.waitSignal(panel.loaded, timeout=10_000):
        assert panel.refresh()
    table = panel.findChild(QTableWidget, "closedTrades")
    assert table.rowCount() == 2
    rows = {table.item(r, 1).text(): [table.item(r, c).text() for c in range(10)]
            for r in range(2)}
    btc = rows[BTC.symbol]
    assert btc[2] == "▲ LONG" and btc[4] == "40,000.0" and btc[5] == "41,600.0"
    assert btc[6] == "+$1,600.00" and btc[7] == "+2.00R" and btc[8] == "take_profit"
    assert rows[ETH.symbol][6] == "−$60.00" and rows[ETH.symbol][7] == "−1.00R"
    text = panel.metrics_label.text()
    assert "Trades 2 (1 won, 1 lost)" in text and "Win rate 50%" in text
    assert "Avg R +0.50R" in text and "Trailing 1" in text
    xs, ys = panel.equity_curve.getData()
    assert list(xs) == [T0, T0 + 60, T0 + 120]
    assert list(ys) == [10_000.0, 10_400.0, 10_340.0]


@pytest.mark.parametrize("equity", [(10_000.0,), (10_000.0, 10_000.0, 10_000.0)])
def test_a_new_accounts_equity_curve_is_framed_in_hours_and_a_band(qtbot, tmp_path, equity):
    """One equity point (a new account), or a few in the same minutes at one value: the
    view spans an hour up to the last point and ±0.5 % of the equity, not fractions of a
    second and tenths of a unit (what the auto range made of them)."""
    path = tmp_path / "pmgui.db"
    st = Store.open(path)
    try:
        for i, eq in enumerate(equity):
            st.record_equity(T0 + i * 60, eq, eq)
    finally:
        st.close()
    eng = EngineDouble(db=path)
    panel = HistoryPanel(CommandRunner(eng).request, eng.market)
    qtbot.addWidget(panel)
    with qtbot.waitSignal(panel.loaded, timeout=10_000):
        assert panel.refresh()
    (x0, x1), (y0, y1) = panel.equity_plot.getPlotItem().getViewBox().viewRange()
    last = T0 + (len(equity) - 1) * 60
    assert x1 >= last and x0 <= last - 3_600 and x1 - x0 < 2 * 3_600
    assert y0 <= 10_000 - 50 and y1 >= 10_000 + 50 and y1 - y0 < 200
    # one point draws no line: it is drawn as a dot
    assert panel.equity_curve.opts["symbol"] == ("o" if len(equity) == 1 else None)


def test_a_file_that_is_not_a_database_is_reported_and_left_alone(qtbot, tmp_path):
    bad = tmp_path / "notes.db"
    bad.write_bytes(b"this is not sqlite" * 10)
    before = bad.read_bytes()
    panel = HistoryPanel(CommandRunner(EngineDouble(db=bad)).request)
    qtbot.addWidget(panel)
    with qtbot.waitSignal(panel.failed, timeout=10_000) as blocker:
        panel.refresh()
    assert "⚠" in panel.metrics_label.text() and blocker.args[0]
    assert bad.read_bytes() == before


def test_no_store_means_no_history(qtbot):
    panel = HistoryPanel(CommandRunner(EngineDouble()).request)
    qtbot.addWidget(panel)
    with qtbot.waitSignal(panel.failed, timeout=10_000):
        panel.refresh()
    assert "no database" in panel.metrics_label.text()
    assert HistoryPanel(None).refresh() is False


def test_window_seeds_the_action_log_from_the_store_without_duplicates(qtbot, store_file):
    eng = EngineDouble(db=store_file)
    win = MainWindow(eng, start=False)
    qtbot.addWidget(win)
    eng.outbox.publish(snapshot(position("b", ETH.symbol, Side.SHORT, entry=3000.0, sl=3060.0,
                                         tp=2900.0), 3010.0))
    # the same trailing move arrives live too: it must appear once
    eng.outbox.publish(action("b", ETH.symbol, ActionType.MOVE_SL, Reason.TRAILING, 3_010.0,
                              T0 + 100, sl=3_060.0))
    win.bridge.flush_now()
    with qtbot.waitSignal(win.history.loaded, timeout=10_000):
        win.history.refresh()
    log = win.action_log
    reasons = [log.text(r, 2) for r in range(log.rowCount())]
    assert reasons == ["trailing", "take_profit"]
    assert [t.splitlines()[0] for _x, _y, t in win.chart.marker_points()] == [
        "trailing · move sl → 3,060.00"]


def test_sl_that_is_the_trailing_stop_is_drawn_once(qtbot):
    eng = EngineDouble()
    win = MainWindow(eng, start=False)
    qtbot.addWidget(win)
    eng.outbox.publish(snapshot(position(sl=39_600.0, trailing=39_600.0), 40_500.0))
    win.bridge.flush_now()
    assert win.chart.line("sl").isVisible()
    assert not win.chart.line("trailing").isVisible()
    eng.outbox.publish(snapshot(position(sl=39_600.0, trailing=39_800.0), 40_500.0, T0 + 1))
    win.bridge.flush_now()
    assert win.chart.line("trailing").isVisible()
