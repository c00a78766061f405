"""Main window driven by real events through a real Outbox and Bridge."""

from __future__ import annotations

import sys

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication, QLabel, QPushButton, QToolButton

from pmgui.domain.enums import ActionType, Reason, Side
from pmgui.domain.errors import ExchangeError
from pmgui.domain.models import Fill
from pmgui.engine.commands import CloseAll, ClosePosition, CommandResult
from pmgui.engine.events import AccountEvent, ConnectionEvent, PositionRemoved
from pmgui.ui.main_window import MainWindow, UiSettings
from pmgui.ui.positions_model import column_index
from tests.ui_doubles import (
    BTC,
    ETH,
    T0,
    EngineDouble,
    action,
    candles,
    candles_event,
    position,
    shown_window,
    snapshot,
    tick,
)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def env(qtbot):
    eng = EngineDouble()
    clock = Clock()
    win = shown_window(qtbot, eng, clock=clock, exposed=False, settings=UiSettings())
    return eng, win, clock


def publish(eng, win, *events) -> None:
    for ev in events:
        eng.outbox.publish(ev)
    win.bridge.flush_now()


BTC_POS = position()
ETH_POS = position("p2", ETH.symbol, Side.SHORT, qty=3.0, entry=3000.0, sl=3100.0, tp=2800.0,
                   leverage=5.0, trailing=3050.0, liquidation=3570.0)


def cell(win, row: int, key: str) -> str:
    return win.proxy.index(row, column_index(key)).data()


def test_table_shows_positions_and_follows_new_snapshots(env):
    eng, win, _ = env
    publish(eng, win, snapshot(BTC_POS, 40_100.0), snapshot(ETH_POS, 2990.0))
    assert win.proxy.rowCount() == 2
    assert cell(win, 0, "mark") == "40,100.0"
    publish(eng, win, snapshot(BTC_POS, 40_250.5, T0 + 1))
    assert cell(win, 0, "mark") == "40,250.5"
    assert win.findChild(type(win.table), "positionsTable") is win.table


def test_first_position_is_selected_and_charted(env):
    eng, win, _ = env
    publish(eng, win, snapshot(BTC_POS, 40_100.0), snapshot(ETH_POS, 2990.0))
    assert win.selected_position_id() == "p1"
    chart = win.chart
    assert chart.position_id == "p1"
    assert chart.line("sl").value() == pytest.approx(39_000.0)
    assert chart.line("tp").value() == pytest.approx(42_000.0)
    assert chart.line("entry").value() == pytest.approx(40_000.0)
    assert not chart.line("trailing").isVisible()  # BTC position has no trailing stop
    assert chart.line("sl").objectName() == "slLine" and chart.line("tp").objectName() == "tpLine"


def test_chart_follows_selection_ticks_and_candles(env):
    eng, win, _ = env
    btc_c, eth_c = candles(20), candles(20, start=3000.0, step=2.0)
    publish(eng, win, snapshot(BTC_POS, 40_100.0), snapshot(ETH_POS, 2990.0),
            candles_event(BTC.symbol, btc_c), candles_event(ETH.symbol, eth_c))
    chart = win.chart
    assert chart.candle_item.candles == btc_c
    publish(eng, win, tick(BTC.symbol, 40_321.0, T0 + 5), tick(ETH.symbol, 2980.0, T0 + 5))
    assert chart.line("last").value() == pytest.approx(40_321.0)
    # an older tick arriving later never replaces a newer price
    publish(eng, win, tick(BTC.symbol, 40_000.0, T0 + 1))
    assert chart.line("last").value() == pytest.approx(40_321.0)
    # select ETH: chart switches position, candles, lines and last price
    assert win.select_position("p2")
    assert chart.position_id == "p2"
    assert chart.candle_item.candles == eth_c
    assert chart.line("sl").value() == pytest.approx(3100.0)
    assert chart.line("tp").value() == pytest.approx(2800.0)
    assert chart.line("trailing").isVisible()
    assert chart.line("trailing").value() == pytest.approx(3050.0)
    assert chart.line("liquidation").value() == pytest.approx(3570.0)
    assert chart.line("last").value() == pytest.approx(2980.0)
    # a new snapshot with a moved SL moves the line in place
    publish(eng, win, snapshot(ETH_POS.evolve(sl=3075.0), 2985.0, T0 + 6))
    assert chart.line("sl").value() == pytest.approx(3075.0)


def test_closed_position_leaves_the_table_and_the_selection_does_not_jump(env, qtbot):
    eng, win, _ = env
    publish(eng, win, snapshot(BTC_POS, 40_100.0), snapshot(ETH_POS, 2990.0))
    assert win.selected_position_id() == "p1"
    closed = BTC_POS.evolve(exit_reason="stop_loss", exit_price=39_000.0)
    publish(eng, win, PositionRemoved(closed, T0 + 2))
    assert win.model.position_ids() == ["p2"]
    # nothing is selected: a repeated shortcut cannot hit another position
    assert win.selected_position_id() is None and win.chart.position_id is None
    assert not win.act_emergency.isEnabled()
    assert "closed (stop_loss)" in win.statusBar().currentMessage()
    # a new position does not take the selection either; a click does
    publish(eng, win, snapshot(BTC_POS.evolve(id="p3"), 40_100.0, T0 + 3))
    assert win.selected_position_id() is None
    row = win.proxy.mapFromSource(win.model.index(win.model.row_of("p2"), 0))
    rect = win.table.visualRect(row)
    qtbot.mouseClick(win.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert win.selected_position_id() == "p2" and win.chart.position_id == "p2"


def test_status_bar_shows_connections_tick_age_and_staleness(env):
    eng, win, clock = env
    md, od = win.findChild(QLabel, "marketDataStatus"), win.findChild(QLabel, "ordersStatus")
    age = win.findChild(QLabel, "tickAge")
    assert "unknown" in md.text()
    publish(eng, win, ConnectionEvent("paper", market_data=True, orders=False,
                                      last_tick_age=1.0))
    assert "connected" in md.text() and "DISCONNECTED" in od.text()
    assert age.text() == "Last tick 1s ago"
    clock.t += 10  # no ticks for 10 s
    win.refresh_status()
    assert "STALE" in age.text() and "11s" in age.text()
    assert win.is_stale()
    publish(eng, win, tick(BTC.symbol, 40_000.0, T0 + 20))
    win.refresh_status()
    assert age.text() == "Last tick 0s ago"
    assert not win.is_stale()


def test_account_panel_moves_with_the_positions_not_with_the_account_timer(env):
    eng, win, _ = env
    publish(eng, win, AccountEvent(10_000.0, 10_000.0, "USDT", T0))
    acct = win.account
    assert acct.text("equity") == "Equity 10,000.00 USDT"
    assert acct.text("wallet") == "Wallet 10,000.00"
    # long 0.5 BTC from 40,000 at 10×: +100 gross − 10 entry fee − 10.05 exit fee
    publish(eng, win, snapshot(BTC_POS, 40_200.0))
    assert win.findChild(QLabel, "account_equity").text() == "Equity 10,079.95 USDT"
    assert acct.text("upnl") == "Unrealized +$79.95"
    assert acct.text("margin") == "Margin 2,000.00"
    assert acct.text("available") == "Available 8,000.00"
    assert acct.text("ratio") == "Margin ratio 0.8%"  # 0.4 % × 20,100 / 10,079.95
    publish(eng, win, snapshot(BTC_POS, 39_800.0, T0 + 1))  # no account event needed
    assert acct.text("upnl") == "Unrealized −$119.95"
    assert acct.text("equity") == "Equity 9,880.05 USDT"
    # the table's P/L and the panel's unrealized P/L are the same number
    assert cell(win, 0, "pnl") == "−$119.95"


def test_action_log_is_newest_first_and_marks_the_chart(env):
    eng, win, _ = env
    publish(eng, win, snapshot(BTC_POS, 40_100.0))
    publish(eng, win,
            action("p1", BTC.symbol, ActionType.MOVE_SL, Reason.TRAILING, 40_500.0, T0,
                   sl=39_600.0),
            action("p1", BTC.symbol, ActionType.REDUCE, Reason.TP1, 41_000.0, T0 + 60,
                   qty=0.25))
    log = win.action_log
    assert log.rowCount() == 2
    assert log.text(0, 2) == "tp1" and log.text(1, 2) == "trailing"
    assert "SL → 39,600.0" in log.text(1, 3)
    tips = [t.splitlines()[0] for _x, _y, t in win.chart.marker_points()]
    assert tips == ["trailing · move sl → 39,600.0", "tp1 · reduce 0.250"]
    # an automated SL move is annotated on the SL line with its reason
    assert "trailing" in win.chart.line("sl").label.toPlainText()


def toolbar_button(win, name: str) -> QToolButton:
    btn = win.toolbar.findChild(QToolButton, name)
    assert btn is not None, name
    return btn


def test_emergency_close_states_what_happens_and_sends_one_close(env, qtbot):
    eng, win, _ = env
    eng.hold = True  # the close stays in flight: repeats must not send another
    publish(eng, win, snapshot(BTC_POS, 40_100.0))
    qtbot.mouseClick(toolbar_button(win, "emergencyClose"), Qt.MouseButton.LeftButton)
    dlg = win.confirm_dialog
    assert dlg is not None and dlg.isVisible()
    text = dlg.label.text()
    assert "BTC/USDT:USDT" in text and "0.500" in text and "MARKET" in text
    confirm = dlg.findChild(QPushButton, "confirmButton")
    qtbot.mouseClick(confirm, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(confirm, Qt.MouseButton.LeftButton)  # double click
    win.emergency_close()  # and the shortcut again while in flight
    assert eng.of_type(ClosePosition) == [ClosePosition("p1", 1.0, "manual")]
    eng.held[0].set_result(CommandResult(True, "closed", "p1", fills=(
        Fill("f1", "c1", BTC.symbol, BTC_POS.side.close_side, 0.5, 40_090.0, 10.0, T0),)))
    assert "filled 0.500 @ 40,090.0" in win.statusBar().currentMessage()
    win.emergency_close()  # already closed: still nothing new sent
    assert len(eng.of_type(ClosePosition)) == 1


def test_emergency_close_enter_cancels_and_failure_is_reported(env, qtbot):
    eng, win, _ = env
    publish(eng, win, snapshot(BTC_POS, 40_100.0))
    win.act_emergency.trigger()
    dlg = win.confirm_dialog
    qtbot.keyClick(dlg, Qt.Key.Key_Return)  # the default is Cancel
    assert not dlg.isVisible()
    assert eng.commands() == []

    def refuse(cmd):
        raise ExchangeError("exchange rejected the order: reduce-only would increase")
    eng.answer = refuse
    win.act_emergency.trigger()
    win.confirm_dialog.confirm_button.click()
    assert "Close BTC/USDT:USDT failed: exchange rejected" in win.statusBar().currentMessage()
    win.act_emergency.trigger()  # after a failure the trader can try again
    win.confirm_dialog.confirm_button.click()
    assert len(eng.of_type(ClosePosition)) == 2


def test_emergency_close_works_while_automation_is_paused(env, qtbot):
    eng, win, _ = env
    publish(eng, win, snapshot(BTC_POS.evolve(automation=False), 40_100.0))
    qtbot.mouseClick(toolbar_button(win, "emergencyClose"), Qt.MouseButton.LeftButton)
    win.confirm_dialog.confirm_button.click()
    assert eng.of_type(ClosePosition) == [ClosePosition("p1", 1.0, "manual")]


def test_close_all_confirms_then_flattens_once_and_reports_residuals(env, qtbot):
    eng, win, _ = env
    eng.answer = lambda cmd: CommandResult(True, "", residual=("p2",))
    publish(eng, win, snapshot(BTC_POS, 40_100.0), snapshot(ETH_POS, 2990.0))
    qtbot.mouseClick(toolbar_button(win, "closeAll"), Qt.MouseButton.LeftButton)
    dlg = win.confirm_dialog
    assert "all 2 open positions" in dlg.label.text()
    dlg.confirm_button.click()
    dlg.confirm_button.click()
    assert eng.of_type(CloseAll) == [CloseAll("manual")]
    assert "still open after re-check: p2" in win.statusBar().currentMessage()


def test_theme_switch_and_screenshot(env, tmp_path):
    eng, win, _ = env
    publish(eng, win, snapshot(BTC_POS, 40_100.0), candles_event(BTC.symbol, candles(30)))
    dark_bg = QApplication.palette().window().color().name()
    win.toggle_theme()
    assert not win.theme.dark
    assert QApplication.palette().window().color().name() != dark_bg
    path = tmp_path / "ui.png"
    assert win.grab().save(str(path))
    img = QImage(str(path))
    assert img.width() > 800 and img.height() > 500


@pytest.mark.skipif(sys.version_info >= (3, 12), reason=(
    "None is immortal from Python 3.12 (PEP 683): its count starts at 2**32 - 1 and "
    "stable-ABI extensions such as shiboken6 move it while CPython's own code leaves it, so "
    "a drop is no leak there, and billions of lost references would not bring it to zero"))
def test_qt_binding_does_not_leak_references_to_none(env):
    """PySide6 6.12.0 drops a reference to None on every invalid QVariant it returns (pyqtgraph
    hits that path on every line move): on Python 3.11 the GUI then dies with
    "deallocating None" after a while. This guards the installed binding."""
    eng, win, _ = env
    publish(eng, win, snapshot(BTC_POS, 40_100.0), candles_event(BTC.symbol, candles(30)))
    before = sys.getrefcount(None)
    for i in range(100):
        publish(eng, win, snapshot(BTC_POS, 40_100.0 + i, T0 + i), tick(BTC.symbol,
                                                                       40_100.0 + i, T0 + i))
    win.chart.line("sl").setValue(39_100.0)
    win.proxy.index(0, 0).data(Qt.ItemDataRole.DecorationRole)  # an invalid QVariant
    assert sys.getrefcount(None) >= before - 10


def test_engine_errors_reach_status_bar_and_log(env):
    from pmgui.engine.events import ErrorEvent

    eng, win, _ = env
    publish(eng, win, snapshot(BTC_POS, 40_100.0))
    publish(eng, win, ErrorEvent("SL order rejected by the exchange: -2021", T0, "p1"))
    assert "SL order rejected" in win.statusBar().currentMessage()
    log = win.action_log
    assert log.text(0, 1) == BTC.symbol and log.text(0, 2) == "⚠ error"


def test_market_learned_after_the_first_snapshot_is_used(env):
    eng, win, _ = env
    eng.markets.pop(BTC.symbol)
    publish(eng, win, snapshot(BTC_POS, 40_100.0))
    assert win.chart.market is None
    eng.markets[BTC.symbol] = BTC
    publish(eng, win, snapshot(BTC_POS, 40_123.47, T0 + 1))
    assert win.chart.market is BTC
    assert win.chart.snap_level(39_123.456) == 39_123.5
    assert cell(win, 0, "mark") == "40,123.5"  # now to the 0.1 tick


def test_protection_badge_lists_the_live_protective_orders(env):
    from pmgui.domain.enums import OrderRole, OrderSide, OrderStatus, OrderType
    from pmgui.domain.models import Order
    from pmgui.engine.events import OrderSnapshot

    eng, win, _ = env
    publish(eng, win, snapshot(BTC_POS, 40_100.0))
    sl = Order("sl1", BTC.symbol, OrderSide.SELL, OrderType.STOP_MARKET, 0.5, OrderStatus.OPEN,
               trigger_price=39_000.0, reduce_only=True, position_id="p1",
               role=OrderRole.STOP_LOSS, trigger_ref="mark")
    tp = Order("tp1", BTC.symbol, OrderSide.SELL, OrderType.TAKE_PROFIT_MARKET, 0.5,
               OrderStatus.OPEN, trigger_price=42_000.0, reduce_only=True, position_id="p1",
               role=OrderRole.TAKE_PROFIT)
    publish(eng, win, OrderSnapshot(sl), OrderSnapshot(tp))
    tip = win.proxy.index(0, column_index("protection")).data(Qt.ItemDataRole.ToolTipRole)
    assert "SL stop_market 0.500 @ 39,000.0 · on exchange · triggers on mark price" in tip
    assert "TP take_profit_market 0.500 @ 42,000.0 · on exchange" in tip
    from dataclasses import replace
    publish(eng, win, OrderSnapshot(replace(sl, status=OrderStatus.CANCELED)))
    tip = win.proxy.index(0, column_index("protection")).data(Qt.ItemDataRole.ToolTipRole)
    assert "SL" not in tip.split("\n", 1)[1] and "TP take_profit_market" in tip


def test_protection_tooltip_names_the_tranches_each_order_protects(env):
    from pmgui.domain.enums import OrderRole, OrderSide, OrderStatus, OrderType
    from pmgui.domain.models import Order
    from pmgui.engine.events import OrderSnapshot

    eng, win, _clock = env
    publish(eng, win, snapshot(BTC_POS, 60_000.0))

    def order(cid, role, otype, trigger, amount, reason, status=OrderStatus.OPEN):
        return OrderSnapshot(Order(cid, BTC.symbol, OrderSide.SELL, otype, amount, status,
                                   trigger_price=trigger, reduce_only=True,
                                   position_id=BTC_POS.id, role=role, reason=reason))

    publish(eng, win,
            order("a", OrderRole.STOP_LOSS, OrderType.STOP_MARKET, 59_400.0, 0.1,
                  "stop_loss tranches=t1,t2"),
            order("b", OrderRole.TAKE_PROFIT, OrderType.TAKE_PROFIT_MARKET, 61_812.0, 0.05,
                  "take_profit tranches=t3", OrderStatus.PENDING))
    tip = win.model.protection_detail(BTC_POS.id)
    assert "on exchange · tranches t1, t2" in tip
    assert "pending · tranches t3" in tip


def test_the_positions_view_repaints_only_the_columns_a_price_changes(env, qtbot):
    """A storm's snapshots (new mark, new rule memory) name only the columns that follow the
    mark, and the view repaints only those (painting is most of the GUI's work in a storm,
    when every row changes at each flush)."""
    from PySide6.QtWidgets import QStyledItemDelegate

    from pmgui.ui.positions_model import column_index

    eng, win, _ = env
    ps = [position(f"q{i}") for i in range(500)]  # a storm's book: far more than shown
    publish(eng, win, *[snapshot(p, 40_100.0) for p in ps])
    painted: list[int] = []

    class Counting(QStyledItemDelegate):
        def initStyleOption(self, option, index) -> None:
            painted.append(index.column())
            super().initStyleOption(option, index)

    table = win.positions.table
    table.setItemDelegate(Counting(table))
    qtbot.waitUntil(lambda: column_index("symbol") in painted)  # everything once
    QApplication.processEvents()
    painted.clear()
    publish(eng, win, *[snapshot(p, 40_200.0, T0 + 1) for p in ps])
    qtbot.waitUntil(lambda: bool(painted))
    follows = {column_index(k) for k in ("mark", "pnl", "roi", "r", "liq_dist", "notional")}
    assert set(painted) <= follows
    assert cell(win, 0, "mark") == "40,200.0"


def test_the_columns_stay_put_and_fit_when_the_book_grows_past_a_screenful(qtbot):
    """The columns are fitted to the viewport with the scroll bar's room kept, so a book that
    grows past a screenful moves no column and never needs scrolling sideways (before, the
    scroll bar then came and took 14 px of the width the columns had been fitted to: a bar
    to scroll sideways by 2 px appeared and the last column shrank, a repaint of its own)."""
    eng = EngineDouble()
    win = shown_window(qtbot, eng, settings=UiSettings())
    table = win.positions.table
    hdr = table.horizontalHeader()
    publish(eng, win, snapshot(position("g0"), 40_100.0))
    QApplication.processEvents()

    def layout() -> list[tuple[int, int]]:
        return [(c, hdr.sectionSize(c)) for c in range(hdr.count()) if not hdr.isSectionHidden(c)]

    before = layout()
    publish(eng, win, *[snapshot(position(f"g{i}"), 40_100.0) for i in range(500)])
    qtbot.waitUntil(lambda: table.verticalScrollBar().maximum() > 0)  # (laid out)
    QApplication.processEvents()
    assert layout() == before
    assert not table.horizontalScrollBar().isVisible()
    right = max(hdr.sectionViewportPosition(c) + size for c, size in before)
    assert right <= table.viewport().width()


def test_the_positions_view_repaints_only_the_cells_whose_text_changed(env, qtbot):
    """Of the rows on screen, only those whose snapshot changed what they show are
    repainted, and of those only the changed cells; the repainted cell shows the new text."""
    from PySide6.QtWidgets import QStyledItemDelegate

    eng, win, _ = env
    ps = [position(f"c{i}") for i in range(6)]
    publish(eng, win, *[snapshot(p, 40_100.0) for p in ps])
    painted: dict[tuple[int, int], str] = {}

    class Recording(QStyledItemDelegate):
        def initStyleOption(self, option, index) -> None:
            super().initStyleOption(option, index)
            painted[(index.row(), index.column())] = option.text

    table = win.positions.table
    table.setItemDelegate(Recording(table))
    qtbot.waitUntil(lambda: (5, column_index("symbol")) in painted)  # everything once
    QApplication.processEvents()
    painted.clear()
    publish(eng, win, snapshot(ps[1], 40_250.0, T0 + 1), snapshot(ps[4], 40_260.0, T0 + 1))
    mark = column_index("mark")
    qtbot.waitUntil(lambda: (1, mark) in painted and (4, mark) in painted)
    QApplication.processEvents()
    assert painted[(1, mark)] == "40,250.0" and painted[(4, mark)] == "40,260.0"
    assert {r for r, _c in painted} == {1, 4}  # the unchanged rows are not repainted
    assert (1, column_index("pnl")) in painted
    assert column_index("qty") not in {c for _r, c in painted}
    assert cell(win, 1, "mark") == "40,250.0" and cell(win, 2, "mark") == "40,100.0"


def _painted_text(win, proxy_row: int, key: str) -> str:
    """What the view paints in a cell: the cell's data as the (C++) delegate reads it."""
    return win.proxy.index(proxy_row, column_index(key)).data()


def test_a_changed_cell_is_shown_on_screen_and_off_screen_rows_when_scrolled_to(env, qtbot):
    """Rows on screen are written at each update; rows off screen when they come into view:
    a new mark changes the P/L text and flips its colour with the sign wherever it shows."""
    eng, win, _ = env
    ps = [position(f"s{i}") for i in range(80)]  # more rows than the view shows
    publish(eng, win, *[snapshot(p, 40_100.0) for p in ps])
    t = win.table
    qtbot.waitUntil(lambda: t.rowAt(0) == 0)
    fg = Qt.ItemDataRole.ForegroundRole
    up = win.proxy.index(0, column_index("pnl")).data(fg)
    assert _painted_text(win, 0, "pnl").startswith("+")
    publish(eng, win, *[snapshot(p, 39_000.0, T0 + 1) for p in ps])  # all now losing
    assert _painted_text(win, 0, "mark") == "39,000.0"
    assert _painted_text(win, 0, "pnl").startswith("−")
    down = win.proxy.index(0, column_index("pnl")).data(fg)
    assert down is not None and up is not None and down.color() != up.color()
    t.scrollToBottom()
    last = win.proxy.rowCount() - 1
    qtbot.waitUntil(lambda: t.rowAt(t.viewport().height() - 1) == last)
    assert _painted_text(win, last, "pnl").startswith("−")  # written as it came into view
    assert win.proxy.index(last, column_index("pnl")).data(fg).color() == down.color()
    assert _painted_text(win, last, "roi").startswith("−")


def test_sorting_and_the_selection_survive_live_updates(env, qtbot):
    eng, win, _ = env
    ps = [position(f"v{i}", qty=0.1 * (i + 1)) for i in range(40)]
    publish(eng, win, *[snapshot(p, 40_100.0) for p in ps])
    win.table.sortByColumn(column_index("pnl"), Qt.SortOrder.DescendingOrder)
    assert win.proxy.index(0, 0).data(Qt.ItemDataRole.UserRole + 2) == "v39"  # largest
    assert win.select_position("v5")
    # the market turns: the biggest position now loses most; the rows re-sort live
    publish(eng, win, *[snapshot(p, 39_500.0, T0 + 1) for p in ps])
    ids = [win.proxy.index(r, 0).data(Qt.ItemDataRole.UserRole + 2)
           for r in range(win.proxy.rowCount())]
    assert ids[0] == "v0" and ids[-1] == "v39"
    pnls = [win.proxy.index(r, column_index("pnl")).data(Qt.ItemDataRole.UserRole + 5)
            for r in range(win.proxy.rowCount())]
    assert pnls == sorted(pnls, reverse=True)
    assert win.selected_position_id() == "v5"  # the selection follows its row
    row = win.table.currentIndex().row()
    assert _painted_text(win, row, "pnl").startswith("−")
    assert win.chart.position_id == "v5"


def test_candles_sent_before_the_chart_is_built_are_shown_by_it(qtbot):
    """The chart is built after the first frame; the engine sends a symbol's candle window
    once, possibly before that: the window keeps it for the chart."""
    eng = EngineDouble()
    win = shown_window(qtbot, eng, clock=Clock(), exposed=False, settings=UiSettings(),
                       defer_chart=True)
    publish(eng, win, snapshot(BTC_POS, 40_100.0), candles_event(BTC.symbol, candles(30)))
    chart = win.build_chart()
    win.select_position(BTC_POS.id)
    win.positions.currentChanged.emit(BTC_POS.id)
    assert chart.symbol == BTC.symbol
    assert len(chart.candles()) >= 30


def test_building_the_chart_takes_the_long_lived_objects_out_of_the_collector(qtbot):
    """A full collection during a storm must not walk pyqtgraph's and the window's objects
    (it held the interpreter lock for 50 ms, the window's longest stall): once the chart is
    built they are frozen."""
    import gc

    eng = EngineDouble()
    win = MainWindow(eng, clock=Clock(), wall_clock=lambda: T0, start=False,
                     settings=UiSettings(), defer_chart=True)
    qtbot.addWidget(win)
    probe = [object()]  # a tracked object made before the chart, alive throughout
    gc.unfreeze()
    assert any(o is probe for o in gc.get_objects())
    before = gc.get_freeze_count()
    win.build_chart()
    assert gc.get_freeze_count() > before
    assert not any(o is probe for o in gc.get_objects())
    gc.unfreeze()  # other tests start from an unfrozen heap


def test_close_all_shows_each_fill_by_symbol_at_its_markets_precision(env, qtbot):
    eng, win, _ = env
    fills = (Fill("f1", "c1", BTC.symbol, BTC_POS.side.close_side, 0.5, 40_090.0, 10.0, T0),
             Fill("f2", "c2", ETH.symbol, ETH_POS.side.close_side, 3.0, 2_990.0, 4.5, T0))
    eng.answer = lambda cmd: CommandResult(True, "closed 2 position(s)", fills=fills,
                                           realized_pnl=-12.3)
    said: list[str] = []
    win.statusMessage.connect(said.append)
    publish(eng, win, snapshot(BTC_POS, 40_100.0), snapshot(ETH_POS, 2990.0))
    win.act_close_all.trigger()
    win.confirm_dialog.confirm_button.click()
    (done,) = [m for m in said if m.startswith("✔ All positions closed")]
    assert done == ("✔ All positions closed: filled BTC/USDT:USDT 0.500 @ 40,090.0, "
                    "ETH/USDT:USDT 3.00 @ 2,990.00 · realized −$12.30")
