"""Order entry and position actions as a trader does them: real keys and clicks on the real
window, real Outbox and Bridge; the engine double records what would be sent."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QApplication, QHeaderView, QLabel, QWidget

from pmgui.domain.enums import Side
from pmgui.engine.commands import (
    AddToPosition,
    ClosePosition,
    OpenPosition,
    SetAutomation,
)
from pmgui.engine.events import AccountEvent, PositionRemoved
from pmgui.ui.confirm import ConfirmDialog
from pmgui.ui.dialogs import AmountDialog, OrderDialog
from pmgui.ui.main_window import MainWindow, UiSettings
from pmgui.ui.positions_model import ESSENTIAL, column_index
from tests.ui_doubles import (
    BTC,
    ETH,
    SOL,
    T0,
    EngineDouble,
    paper_engine,
    position,
    shown_window,
    snapshot,
    tick,
)

POS = position(liquidation=36_500.0)  # long 0.5 BTC @ 40,000 at 10×, SL 39,000, TP 42,000
ETH_POS = position("p2", ETH.symbol, Side.SHORT, qty=3.0, entry=3000.0, sl=3100.0, tp=2800.0,
                   leverage=5.0)


def make(qtbot, *, one_click: bool = False, size: tuple[int, int] | None = None):
    eng = EngineDouble()
    win = shown_window(qtbot, eng, size=size, settings=UiSettings(one_click=one_click))
    for ev in (AccountEvent(10_000.0, 10_000.0, "USDT", T0), snapshot(POS, 40_500.0),
               tick(BTC.symbol, 40_500.0, T0), tick(ETH.symbol, 3_000.0, T0),
               tick(SOL.symbol, 150.0, T0)):
        eng.outbox.publish(ev)
    win.bridge.flush_now()
    win.activateWindow()
    qtbot.waitUntil(win.isActiveWindow, timeout=5000)
    win.table.setFocus()
    return eng, win


def key(qtbot, win, k, mod=Qt.KeyboardModifier.NoModifier) -> None:
    qtbot.keyClick(win.table, k, mod)


def confirm(qtbot, win) -> None:
    dlg = win.confirm_dialog
    assert isinstance(dlg, ConfirmDialog) and dlg.isVisible()
    qtbot.mouseClick(dlg.confirm_button, Qt.MouseButton.LeftButton)


# -- order ticket ---------------------------------------------------------------------------------
def open_ticket(qtbot, win) -> OrderDialog:
    key(qtbot, win, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    dlg = win.dialog
    assert isinstance(dlg, OrderDialog) and dlg.isVisible()
    return dlg


def test_size_in_quote_percent_of_balance_and_by_risk_with_a_live_preview(qtbot):
    eng, win = make(qtbot)
    dlg = open_ticket(qtbot, win)
    dlg.symbol.setCurrentText(ETH.symbol)  # ETH last 3,000
    dlg.leverage.clear()
    qtbot.keyClicks(dlg.leverage, "10")
    qtbot.keyClicks(dlg.sl, "2,940")
    qtbot.keyClicks(dlg.tp, "3,120")
    dlg.size_unit.setCurrentText("quote")
    qtbot.keyClicks(dlg.qty, "6000")  # 6,000 USDT of ETH = 2 ETH
    assert dlg.command().qty == pytest.approx(2.0)
    text = dlg.preview.text()
    assert "Size 2.00 ETH · notional 6,000.00 USDT" in text
    assert "Margin 600.00 USDT" in text and "Fees ≈ 6.00 USDT" in text
    assert "liquidation 2,712.00" in text  # 3,000 × (1 − 1/10 + 0.004)
    assert "Risk to SL −126.00 USDT (1.26 % of balance) = 1R" in text  # 2×60 + 6 fees
    assert "Reward at TP +234.00 USDT = +1.86R" in text
    dlg.size_unit.setCurrentText("% of balance")  # 10 % of 10,000 as margin, 10× → 1,000… ETH
    dlg.qty.clear()
    qtbot.keyClicks(dlg.qty, "10")
    assert dlg.command().qty == pytest.approx(3.33)  # 10,000 notional / 3,000, floored
    dlg.size_unit.setCurrentText("risk % of balance")  # lose 1 % (100 USDT) at the stop
    dlg.qty.clear()
    qtbot.keyClicks(dlg.qty, "1")
    qty = dlg.command().qty
    assert qty == pytest.approx(100 / (60 + 0.0005 * (3000 + 2940)), abs=0.01)
    qtbot.mouseClick(dlg.ok_button, Qt.MouseButton.LeftButton)
    (cmd,) = eng.of_type(OpenPosition)
    assert cmd.symbol == ETH.symbol and cmd.side is Side.LONG and cmd.qty == qty
    assert (cmd.sl, cmd.tp, cmd.leverage) == (2_940.0, 3_120.0, 10.0)


def test_bad_values_are_refused_beside_their_field_without_moving_anything(qtbot):
    eng, win = make(qtbot)
    dlg = open_ticket(qtbot, win)
    dlg.symbol.setCurrentText(SOL.symbol)
    geometry = {w.objectName(): w.geometry() for w in dlg.findChildren(QWidget)
                if w.objectName()}
    qtbot.keyClicks(dlg.qty, "1000000000")  # 1e9 SOL: refused before sending
    err = dlg.field_errors["qty"].text()
    assert err.startswith("✖ needs") and "available" in err
    qtbot.keyClicks(dlg.sl, "151")  # above the price for a long
    assert "must be below the current price" in dlg.field_errors["sl"].text()
    dlg.leverage.clear()
    qtbot.keyClicks(dlg.leverage, "500")
    assert "leverage" in dlg.field_errors["leverage"].text()
    assert not dlg.ok_button.isEnabled()
    # no reflow: every named widget is where it was before the errors appeared
    after = {w.objectName(): w.geometry() for w in dlg.findChildren(QWidget)
             if w.objectName() in geometry}
    assert after == geometry
    # the SL field is still where the trader aims
    qtbot.mouseClick(dlg.ok_button, Qt.MouseButton.LeftButton)
    assert eng.of_type(OpenPosition) == []


def test_new_position_from_the_chart_preselects_symbol_and_side(qtbot):
    _eng, win = make(qtbot)
    dlg = win.new_order(ETH.symbol, Side.SHORT)
    assert dlg.symbol.currentText() == ETH.symbol and dlg.side.currentIndex() == 1


# -- partial close, add, reverse -----------------------------------------------------------------
def test_partial_close_from_the_keyboard_asks_then_sends_the_fraction(qtbot):
    eng, win = make(qtbot)
    key(qtbot, win, Qt.Key.Key_2, Qt.KeyboardModifier.AltModifier)  # 50 %
    assert "0.250 of 0.500" in win.confirm_dialog.label.text()
    assert eng.of_type(ClosePosition) == []
    confirm(qtbot, win)
    assert eng.of_type(ClosePosition) == [ClosePosition("p1", 0.5, "manual")]
    assert "50 % closed" in win.statusBar().currentMessage()


def test_one_click_trading_is_off_by_default_and_acts_at_once_when_on(qtbot):
    assert UiSettings().one_click is False
    eng, win = make(qtbot, one_click=True)
    key(qtbot, win, Qt.Key.Key_1, Qt.KeyboardModifier.AltModifier)  # 25 %, no question
    assert eng.of_type(ClosePosition) == [ClosePosition("p1", 0.25, "manual")]
    assert win.confirm_dialog is None


def test_custom_partial_close_from_the_context_menu(qtbot):
    eng, win = make(qtbot)
    menu = win.build_context_menu()
    part = menu.findChild(type(menu), "closePartMenu")
    custom = next(a for a in part.actions() if a.objectName() == "closeCustom")
    custom.trigger()
    dlg = win.dialog
    assert isinstance(dlg, AmountDialog) and dlg.isVisible()
    qtbot.keyClicks(dlg.input, "150")
    assert "at most 100" in dlg.error.text() and not dlg.ok_button.isEnabled()
    dlg.input.clear()
    qtbot.keyClicks(dlg.input, "0.1")  # 0.0005 BTC: below the 0.001 minimum
    assert "below the minimum" in dlg.error.text()
    dlg.input.clear()
    qtbot.keyClicks(dlg.input, "40")
    assert dlg.preview.text() == "closes 0.200 of 0.500"
    qtbot.keyClick(dlg.input, Qt.Key.Key_Return)
    assert eng.of_type(ClosePosition) == [ClosePosition("p1", 0.4, "manual")]


def test_add_to_position_shows_the_new_average_and_sends_an_add(qtbot):
    eng, win = make(qtbot)
    key(qtbot, win, Qt.Key.Key_A,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    dlg = win.dialog
    assert isinstance(dlg, AmountDialog)
    qtbot.keyClicks(dlg.input, "0.5")
    assert "new size 1.000 BTC · average entry ≈ 40,250.0" in dlg.preview.text()
    qtbot.mouseClick(dlg.ok_button, Qt.MouseButton.LeftButton)
    assert eng.of_type(AddToPosition) == [AddToPosition("p1", 0.5)]


def test_reverse_closes_then_opens_the_other_way(qtbot):
    eng, win = make(qtbot)
    key(qtbot, win, Qt.Key.Key_R,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert "then open ▼ SHORT 0.500" in win.confirm_dialog.label.text()
    confirm(qtbot, win)
    assert eng.of_type(ClosePosition) == [ClosePosition("p1", 1.0, "manual")]
    (opened,) = eng.of_type(OpenPosition)
    assert (opened.symbol, opened.side, opened.qty, opened.leverage) == (
        BTC.symbol, Side.SHORT, 0.5, 10.0)


# -- safety and calm ------------------------------------------------------------------------------
def test_quitting_with_open_positions_asks_and_says_what_stays_and_what_stops(qtbot):
    eng, win = make(qtbot)
    eng.outbox.publish(snapshot(POS.evolve(trailing=39_500.0), 40_500.0, T0 + 1))
    win.bridge.flush_now()
    win.ask_before_quit = True
    win.close()
    assert win.isVisible()  # not closed yet
    dlg = win.confirm_dialog
    text = dlg.label.text()
    assert "1 position stay open on paper" in text
    assert "SL 39,000.0 · TP 42,000.0 stay on the exchange" in text
    assert "the rules stop" in text and "trailing stops stop following the price" in text
    confirm(qtbot, win)
    assert not win.isVisible()


def test_the_automation_switch_follows_the_selection_at_each_flush(qtbot):
    """The actions are set at each table flush only when what they show changed: a pause
    by the engine (another window, the rules) still reaches the switch, and so does a new
    selection."""
    from dataclasses import replace

    eng, win = make(qtbot)
    assert win.act_automation.text() == "Automation BTC: on" and win.act_automation.isChecked()
    eng.outbox.publish(snapshot(POS, 40_600.0, T0 + 1))  # same state: nothing to set
    win.bridge.flush_now()
    assert win.act_automation.text() == "Automation BTC: on"
    eng.outbox.publish(snapshot(replace(POS, automation=False), 40_700.0, T0 + 2))
    win.bridge.flush_now()
    assert win.act_automation.text() == "Automation BTC: paused"
    assert not win.act_automation.isChecked()
    eng.outbox.publish(snapshot(ETH_POS, 3_000.0, T0 + 2))
    win.bridge.flush_now()
    assert win.select_position(ETH_POS.id)
    eng.outbox.publish(snapshot(ETH_POS, 3_001.0, T0 + 3))
    win.bridge.flush_now()
    assert win.act_automation.text() == "Automation ETH: on" and win.act_automation.isChecked()


def test_live_resorting_can_be_held(qtbot):
    eng, win = make(qtbot)
    eng.outbox.publish(snapshot(ETH_POS, 3_000.0))
    win.bridge.flush_now()
    win.table.sortByColumn(column_index("pnl"), Qt.SortOrder.DescendingOrder)

    def order() -> list[str]:
        return [win.proxy.index(r, 0).data() for r in range(win.proxy.rowCount())]

    assert order() == [BTC.symbol, ETH.symbol]  # BTC +$229.75, ETH −$9
    qtbot.mouseClick(win.positions.hold_button, Qt.MouseButton.LeftButton)
    assert win.positions.order_held
    eng.outbox.publish(snapshot(ETH_POS, 2_800.0, T0 + 1))  # ETH now far ahead
    win.bridge.flush_now()
    assert order() == [BTC.symbol, ETH.symbol]  # held still
    assert win.proxy.index(1, column_index("pnl")).data().startswith("+$")  # values live
    qtbot.mouseClick(win.positions.hold_button, Qt.MouseButton.LeftButton)
    assert order() == [ETH.symbol, BTC.symbol]


def test_automation_control_says_it_acts_on_one_position_and_all_is_separate(qtbot):
    eng, win = make(qtbot)
    assert win.act_automation.text() == "Automation BTC: on"
    assert "only" in win.act_automation.toolTip()
    win.act_pause_all.trigger()
    assert eng.of_type(SetAutomation) == [SetAutomation(None, False)]
    closed = POS.evolve(exit_reason="manual", exit_price=40_500.0)
    eng.outbox.publish(PositionRemoved(closed, T0 + 5))
    win.bridge.flush_now()
    assert win.act_automation.text() == "Automation (select a position)"
    assert not win.act_automation.isEnabled()


# -- any size -------------------------------------------------------------------------------------
def visible_sections(win) -> list[int]:
    hdr = win.table.horizontalHeader()
    return [c for c in range(hdr.count()) if not hdr.isSectionHidden(c)]


@pytest.mark.parametrize("size", [(1024, 700), (1920, 1080)])
def test_no_column_header_is_cut_and_no_labels_overlap(qtbot, size):
    eng, win = make(qtbot, size=size)
    eng.outbox.publish(snapshot(ETH_POS, 3_010.0))
    win.bridge.flush_now()
    qtbot.waitUntil(lambda: win.width() == size[0], timeout=5000)
    QApplication.processEvents()
    hdr: QHeaderView = win.table.horizontalHeader()
    shown = [win.model.columns[c].key for c in visible_sections(win)]
    assert set(ESSENTIAL) <= set(shown)
    right = 0
    for c in visible_sections(win):
        # every shown header fits whole in its section, and inside the table's viewport
        assert hdr.sectionSize(c) >= win.positions.header_need(c) - 18, shown[c:c + 1]
        right = max(right, hdr.sectionViewportPosition(c) + hdr.sectionSize(c))
    assert right <= win.table.viewport().width() + 1  # no sideways scrolling
    # and every cell's text fits (no "…")
    for r in range(win.proxy.rowCount()):
        for c in visible_sections(win):
            text = str(win.proxy.index(r, c).data() or "")
            width = win.table.fontMetrics().horizontalAdvance(text)
            assert width <= hdr.sectionSize(c), (win.model.columns[c].key, text)
    # labels of the account strip and the status bar never overlap
    for parent in (win.account, win.statusBar()):
        labels = [lab for lab in parent.findChildren(QLabel) if lab.isVisible() and lab.text()]
        rects = [(lab.mapTo(win, QPoint(0, 0)), lab.size()) for lab in labels]
        for i, (p1, s1) in enumerate(rects):
            for p2, s2 in rects[i + 1:]:
                apart = (p1.x() + s1.width() <= p2.x() or p2.x() + s2.width() <= p1.x()
                         or p1.y() + s1.height() <= p2.y() or p2.y() + s2.height() <= p1.y())
                assert apart, (labels[rects.index((p1, s1))].text(), )
        for lab in labels:  # and none is cut
            assert lab.width() >= lab.fontMetrics().horizontalAdvance(lab.text()), lab.text()


def test_column_chooser_hides_and_shows_columns(qtbot):
    _eng, win = make(qtbot, size=(1920, 1080))
    c = column_index("notional")
    assert not win.table.isColumnHidden(c)
    win.positions._fill_columns_menu()
    action = next(a for a in win.positions.columns_menu.actions()
                  if a.objectName() == "column_notional")
    action.trigger()
    assert win.table.isColumnHidden(c)
    win.resize(1900, 1080)  # a resize does not undo the trader's choice
    QApplication.processEvents()
    assert win.table.isColumnHidden(c)


def test_the_edit_dialog_validates_against_the_newest_price(qtbot):
    eng, win = make(qtbot)
    key(qtbot, win, Qt.Key.Key_E, Qt.KeyboardModifier.ControlModifier)
    dlg = win.dialog
    sl = dlg.inputs["sl"]
    sl.clear()
    qtbot.keyClicks(sl, "40,300")  # below the 40,500 the dialog opened with: fine
    assert dlg.ok_button.isEnabled()
    eng.outbox.publish(tick(BTC.symbol, 40_200.0, T0 + 30))  # the market falls meanwhile
    win.bridge.flush_now()
    assert "price 40,200.0" in dlg.header.text()
    assert "must be below the current price" in dlg.error.text()
    assert not dlg.ok_button.isEnabled()


def test_account_panel_shows_funding_from_the_venue(qtbot):
    eng, win = make(qtbot)
    eng.outbox.publish(AccountEvent(10_000.0, 9_998.7, "USDT", T0 + 1, funding=-1.3))
    win.bridge.flush_now()
    assert win.account.text("funding") == "Funding −$1.30"
    assert win.account.text("wallet") == "Wallet 9,998.70"


# -- over the real engine thread and paper exchange -------------------------------------------
def test_a_trader_opens_adds_and_partly_closes_through_the_real_engine(qtbot, tmp_path):
    with paper_engine(tmp_path / "pmgui.db", seed=3, demo_positions=False) as engine:
        win = MainWindow(engine)  # live: bridge, timers, history asked of the engine
        qtbot.addWidget(win)
        win.show()
        qtbot.waitExposed(win)
        with qtbot.waitSignal(win.history.loaded, timeout=20_000):
            win.history.refresh()  # GetHistory answered by the engine thread
        qtbot.waitUntil(lambda: win.chart.price_of(ETH.symbol) is not None, timeout=20_000)
        win.activateWindow()
        qtbot.waitUntil(win.isActiveWindow, timeout=5000)
        dlg = open_ticket(qtbot, win)
        dlg.symbol.setCurrentText(ETH.symbol)
        qtbot.keyClicks(dlg.qty, "0.5")
        assert dlg.ok_button.isEnabled(), dlg.error.text()
        qtbot.mouseClick(dlg.ok_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: win.model.rowCount() == 1, timeout=20_000)
        win.select_position(win.model.position_ids()[0])
        pid = win.selected_position_id()
        # the ticket closes on the engine's answer to the command, which may reach the
        # window after the position's first snapshot (two paths through the bridge)
        qtbot.waitUntil(lambda: not dlg.isVisible(), timeout=20_000)
        win.activateWindow()
        qtbot.waitUntil(win.isActiveWindow, timeout=5000)
        win.table.setFocus()
        key(qtbot, win, Qt.Key.Key_A,
            Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
        qtbot.keyClicks(win.dialog.input, "0.25")
        qtbot.keyClick(win.dialog.input, Qt.Key.Key_Return)
        qtbot.waitUntil(lambda: win.model.snapshot(pid).position.qty == pytest.approx(0.75),
                        timeout=20_000)
        win.activateWindow()  # the add dialog had the focus
        qtbot.waitUntil(win.isActiveWindow, timeout=5000)
        win.table.setFocus()
        key(qtbot, win, Qt.Key.Key_3, Qt.KeyboardModifier.AltModifier)  # close 75 %
        confirm(qtbot, win)
        qtbot.waitUntil(lambda: win.model.snapshot(pid) is not None
                        and win.model.snapshot(pid).position.qty < 0.75 - 1e-9,
                        timeout=20_000)
        assert win.model.snapshot(pid).position.qty == pytest.approx(0.19, abs=0.011)
        qtbot.waitUntil(lambda: "75 % closed" in " ".join(win.alerts[-3:])
                        or "75 % closed" in win.statusBar().currentMessage(), timeout=20_000)
        win.ask_before_quit = False


def test_edit_dialog_errors_never_move_or_widen_the_form(qtbot):
    _eng, win = make(qtbot)
    key(qtbot, win, Qt.Key.Key_E, Qt.KeyboardModifier.ControlModifier)
    dlg = win.dialog
    before = {w.objectName(): w.geometry() for w in dlg.findChildren(QWidget)
              if w.objectName()}
    size = dlg.size()
    sl = dlg.inputs["sl"]
    sl.clear()
    qtbot.keyClicks(sl, "99999999999")  # a long, wrong value: a long message
    assert "must be below the current price" in dlg.previews["sl"].text()
    assert dlg.previews["sl"].toolTip() == dlg.previews["sl"].text()
    QApplication.processEvents()
    assert dlg.size() == size
    after = {n: w.geometry() for n, w in ((w.objectName(), w) for w in
                                          dlg.findChildren(QWidget)) if n in before}
    assert after == before


def test_funding_column_tooltip_and_account_strip_per_position(qtbot):
    eng, win = make(qtbot)
    eng.outbox.publish(AccountEvent(10_000.0, 9_998.7, "USDT", T0 + 1, funding=-1.3))
    eng.outbox.publish(snapshot(position("p2", funding=-1.25), 40_500.0))
    eng.outbox.publish(snapshot(position("p3", ETH.symbol, entry=3000.0, sl=2900.0, tp=3300.0,
                                         funding=0.4), 3100.0))
    eng.outbox.publish(snapshot(position("p4", SOL.symbol, entry=150.0, sl=140.0, tp=170.0),
                                155.0))  # a venue that does not report it per position
    win.bridge.flush_now()
    col = column_index("funding")
    assert not win.table.isColumnHidden(col)
    def cell(pid: str, key: str, role=Qt.ItemDataRole.DisplayRole):
        return win.model.data(win.model.index(win.model.row_of(pid), column_index(key)), role)

    assert cell("p2", "funding") == "−$1.25" and cell("p3", "funding") == "+$0.40"
    assert cell("p4", "funding") == "—"
    assert "Funding −$1.25" in cell("p2", "pnl", Qt.ItemDataRole.ToolTipRole)
    assert "Funding —" in cell("p4", "pnl", Qt.ItemDataRole.ToolTipRole)
    # the account's own figure, and the open positions' share of it
    assert win.account.text("funding") == "Funding −$1.30 · open −$0.85"


@pytest.mark.parametrize("open_question", ["emergency", "partial", "reverse", "custom", "add"])
def test_a_question_about_a_position_that_closes_meanwhile_can_no_longer_send(
        qtbot, open_question):
    eng, win = make(qtbot)
    if open_question == "emergency":
        win.act_emergency.trigger()
    elif open_question == "partial":
        key(qtbot, win, Qt.Key.Key_2, Qt.KeyboardModifier.AltModifier)  # close 50 %
    elif open_question == "reverse":
        win.act_reverse.trigger()
    elif open_question == "custom":
        win.act_close_custom.trigger()
        win.dialog.input.setText("30")
    else:
        win.act_add.trigger()
        win.dialog.input.setText("0.1")
    dlg = win.dialog if open_question in ("custom", "add") else win.confirm_dialog
    assert dlg is not None and dlg.isVisible()
    ok = dlg.ok_button if isinstance(dlg, AmountDialog) else dlg.confirm_button
    assert ok.isEnabled()
    eng.outbox.publish(PositionRemoved(POS.evolve(exit_reason="stop_loss",
                                                  exit_price=39_000.0), T0 + 5))
    win.bridge.flush_now()
    assert dlg.isVisible() and not ok.isEnabled()
    said = (dlg.error if isinstance(dlg, AmountDialog) else dlg.label).text()
    assert "has closed (stop_loss)" in said
    qtbot.mouseClick(ok, Qt.MouseButton.LeftButton)
    if isinstance(dlg, AmountDialog):
        dlg.submit()
    assert eng.commands() == []


def test_a_huge_price_with_a_fine_tick_and_a_tiny_price_are_never_cut_in_the_table(qtbot):
    """100,000.12345 (tick 0.00001) shown as "100,000.1…", a quantity of 123,456,789 as
    "123,456…": a number cut at its end reads as another number. The column grows instead."""
    from PySide6.QtGui import QFontMetrics

    from pmgui.domain.models import Market

    big = Market("BIG/USDT:USDT", tick_size=0.00001, amount_step=0.001, min_amount=0.001,
                 base="BIG", quote="USDT")
    tiny = Market("TINY/USDT:USDT", tick_size=1e-10, amount_step=1, min_amount=1,
                  base="TINY", quote="USDT")
    eng = EngineDouble()
    eng.markets.update({big.symbol: big, tiny.symbol: tiny})
    win = shown_window(qtbot, eng, size=(1500, 900))
    p1 = position("b1", big.symbol, entry=100_000.12345, sl=98_765.43211, tp=123_456.78901,
                  qty=12.345, leverage=3.0, liquidation=66_789.12345)
    p2 = position("t1", tiny.symbol, Side.SHORT, entry=0.0000123456, sl=0.0000130001,
                  tp=0.0000110009, qty=123_456_789, leverage=20.0, liquidation=0.0000135)
    for ev in (snapshot(p1, 101_234.56789), snapshot(p2, 0.0000122222),
               tick(big.symbol, 101_234.56789, T0), tick(tiny.symbol, 0.0000122222, T0)):
        eng.outbox.publish(ev)
    win.bridge.flush_now()
    QApplication.processEvents()

    def cut() -> list[tuple[str, str]]:
        out = []
        for r in range(win.model.rowCount()):
            for c in visible_sections(win):
                it = win.model.item(r, c)
                width = QFontMetrics(it.font()).horizontalAdvance(it.text())
                if width + 8 > win.table.columnWidth(c):
                    out.append((win.model.columns[c].key, it.text()))
        return out

    assert cut() == []
    assert "123,456,789" in {win.model.item(r, column_index("qty")).text() for r in range(2)}
    # a value that grows later (the P/L of a big position) is fitted within a second
    eng.outbox.publish(snapshot(p1, 181_234.56789, T0 + 1))
    win.bridge.flush_now()
    win.refresh_status()  # the window's once-a-second refresh
    QApplication.processEvents()
    assert cut() == []


def test_after_a_squeeze_a_larger_window_gives_the_panels_and_columns_back(qtbot):
    """Made small (a quarter of the screen) and large again: the table shows its rows and
    all its columns, and the action log its width, as before — Qt alone gave all the room
    back to the chart, and the columns put in the chooser for lack of room stayed there."""
    eng, win = make(qtbot, size=(1500, 900))
    eng.outbox.publish(snapshot(ETH_POS, 3_010.0))
    win.bridge.flush_now()

    def settle(size):
        win.resize(*size)
        qtbot.waitUntil(lambda: win.size().width() == size[0], timeout=5000)
        QApplication.processEvents()

    settle((1500, 900))
    before = (win.table_dock.height(), win.log_dock.width(), win.positions.visible_columns())
    assert "notional" in before[2] and "margin" in before[2]
    settle((640, 420))
    assert win.table_dock.height() < before[0] and "notional" not in \
        win.positions.visible_columns()
    settle((1500, 900))
    assert (win.table_dock.height(), win.log_dock.width(),
            win.positions.visible_columns()) == before
    # a size the trader chose (the splitter under the table moved down) is given back
    win.resizeDocks([win.table_dock], [320], Qt.Orientation.Vertical)
    QApplication.processEvents()
    chosen = win.table_dock.height()
    assert chosen > before[0] + 40
    settle((700, 450))
    settle((1500, 900))
    assert win.table_dock.height() == chosen


def test_the_ticket_shows_a_bad_size_beside_its_field_with_the_other_fields_problems(qtbot):
    eng, win = make(qtbot)
    dlg = open_ticket(qtbot, win)
    dlg.symbol.setCurrentText(ETH.symbol)
    qtbot.keyClicks(dlg.qty, "-1")
    qtbot.keyClicks(dlg.sl, "abc")
    assert dlg.field_errors["qty"].text() == "✖ Size must be positive"
    assert dlg.field_errors["sl"].text() == "✖ SL must be a number (got 'abc')"
    assert dlg.error.text().startswith("2 problems")
    assert not dlg.ok_button.isEnabled()
    dlg.submit()
    assert eng.of_type(OpenPosition) == []
