"""Edit TP/SL and order dialogs, automation/preset commands, shortcuts, layout, alerts."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QTableWidget

from pmgui.domain.enums import Side
from pmgui.domain.errors import ExchangeError
from pmgui.engine.commands import (
    KEEP,
    CommandResult,
    OpenPosition,
    ProtectionOutcome,
    SetAutomation,
    SetPreset,
    SetTargets,
)
from pmgui.engine.events import PositionRemoved
from pmgui.ui.dialogs import EditTargetsDialog, OrderDialog, preset_names
from pmgui.ui.main_window import MainWindow, UiSettings
from pmgui.ui.positions_model import COLUMNS, column_index
from tests.ui_doubles import BTC, ETH, T0, EngineDouble, position, shown_window, snapshot, tick

POS = position(liquidation=36_500.0)  # long 0.5 BTC @ 40,000, SL 39,000, TP 42,000


@pytest.fixture
def env(qtbot):
    eng = EngineDouble()
    win = shown_window(qtbot, eng, exposed=False)
    eng.outbox.publish(snapshot(POS, 40_500.0))
    eng.outbox.publish(tick(BTC.symbol, 40_500.0, T0))
    win.bridge.flush_now()
    return eng, win


def open_editor(win) -> EditTargetsDialog:
    win.act_edit.trigger()
    dlg = win.dialog
    assert isinstance(dlg, EditTargetsDialog) and dlg.isVisible()
    return dlg


def test_double_click_on_a_row_opens_the_editor(env, qtbot):
    _eng, win = env
    rect = win.table.visualRect(win.proxy.index(0, column_index("sl")))
    vp = win.table.viewport()
    qtbot.mousePress(vp, Qt.MouseButton.LeftButton, pos=rect.center())  # a real double click
    qtbot.mouseRelease(vp, Qt.MouseButton.LeftButton, pos=rect.center())  # starts with a press
    qtbot.mouseDClick(vp, Qt.MouseButton.LeftButton, pos=rect.center())
    assert isinstance(win.dialog, EditTargetsDialog) and win.dialog.isVisible()


def test_shortcut_opens_the_editor(env, qtbot):
    _eng, win = env
    win.activateWindow()
    win.table.setFocus()
    qtbot.keyClick(win.table, Qt.Key.Key_E, Qt.KeyboardModifier.ControlModifier)
    assert isinstance(win.dialog, EditTargetsDialog)


def test_context_menu_has_edit_automation_preset_and_emergency_close(env):
    _eng, win = env
    menu = win.build_context_menu()
    names = [a.objectName() for a in menu.actions()]
    assert {"editTargets", "toggleAutomation", "emergencyClose"} <= set(names)
    presets = menu.findChild(type(menu), "presetMenu")
    assert [a.text() for a in presets.actions()] == list(preset_names())


@pytest.mark.parametrize("field,text,message", [
    ("sl", "abc", "SL must be a number"),
    ("sl", "nan", "SL is not a number (NaN)"),
    ("sl", "inf", "SL must be finite"),
    ("sl", "0", "SL cannot be zero"),
    ("sl", "-5", "SL cannot be negative"),
    ("sl", "40,600", "must be below the current price"),  # wrong side for a long
    ("sl", "36,000", "beyond the liquidation price"),
    ("tp", "40,400", "must be above the current price"),
])
def test_bad_inputs_get_specific_messages_and_block_ok(env, field, text, message):
    eng, win = env
    dlg = open_editor(win)
    dlg.inputs[field].setText(text)
    assert message in dlg.error.text()
    assert message in dlg.previews[field].text()
    assert not dlg.ok_button.isEnabled()
    dlg.submit()  # even forced, nothing is sent
    assert eng.commands() == []


def test_price_percent_and_r_inputs_with_live_preview(env, qtbot):
    eng, win = env
    dlg = open_editor(win)
    assert dlg.previews["sl"].text() == "→ SL 39,000.0 · −2.5% · −$520 · −1.0R"
    dlg.modes["sl"].setCurrentText("% from entry")
    assert dlg.inputs["sl"].text() == "-2.500"  # the unit switch converts the value
    dlg.inputs["sl"].setText("-1.5")
    assert dlg.previews["sl"].text().startswith("→ SL 39,400.0 · −1.5%")
    dlg.modes["tp"].setCurrentText("R")
    dlg.inputs["tp"].setText("3")
    assert dlg.previews["tp"].text().startswith("→ TP 43,000.0 · +7.5%")
    assert dlg.ok_button.isEnabled()
    qtbot.mouseClick(dlg.ok_button, Qt.MouseButton.LeftButton)
    assert eng.of_type(SetTargets) == [SetTargets("p1", sl=39_400.0, tp=43_000.0)]
    assert not dlg.isVisible()
    # the double's answer carries no protection outcome: no success is claimed
    msg = win.statusBar().currentMessage()
    assert "✔" not in msg and "⚠ SL / TP sent; the engine did not confirm" in msg


def test_success_is_shown_only_for_levels_the_exchange_confirmed(env, qtbot):
    eng, win = env
    eng.answer = lambda cmd: CommandResult(True, "ok", "p1", outcomes=(
        ProtectionOutcome("sl", 39_400.0, "on_exchange"),
        ProtectionOutcome("tp", 43_000.0, "local_only", "venue refused: price too far")))
    dlg = open_editor(win)
    dlg.inputs["sl"].setText("39,400")
    dlg.inputs["tp"].setText("43,000")
    qtbot.mouseClick(dlg.ok_button, Qt.MouseButton.LeftButton)
    msg = win.statusBar().currentMessage()
    assert "✔ SL 39,400.0 on the exchange" in msg
    assert "⚠ TP 43,000.0 guarded by pmgui only: venue refused: price too far" in msg


def test_unchanged_level_is_kept_and_empty_removes(env):
    eng, win = env
    dlg = open_editor(win)
    dlg.inputs["tp"].setText("")
    assert dlg.previews["tp"].text() == "no TP"
    dlg.submit()
    assert eng.of_type(SetTargets) == [SetTargets("p1", sl=KEEP, tp=None)]


def test_r_is_refused_without_an_initial_stop(qtbot):
    eng = EngineDouble()
    snap = snapshot(position(sl=None, tp=None), 40_500.0)
    dlg = EditTargetsDialog(snap, BTC, 40_500.0, lambda cmd, done: eng.submit(cmd) and True)
    qtbot.addWidget(dlg)
    dlg.modes["sl"].setCurrentText("R")
    dlg.inputs["sl"].setText("-1")
    assert "R is undefined" in dlg.error.text()


def test_engine_rejection_keeps_the_dialog_open_with_the_reason(env):
    eng, win = env

    def refuse(cmd):
        raise ExchangeError("Binance: order would immediately trigger")
    eng.answer = refuse
    dlg = open_editor(win)
    dlg.inputs["sl"].setText("39500")
    dlg.submit()
    assert dlg.isVisible()
    assert "Rejected: Binance: order would immediately trigger" in dlg.error.text()
    assert dlg.ok_button.isEnabled()


def test_enter_repeats_send_one_set_targets(env, qtbot):
    eng, win = env
    eng.hold = True
    dlg = open_editor(win)
    dlg.inputs["sl"].setText("39500")
    for _ in range(3):
        qtbot.keyClick(dlg.inputs["sl"], Qt.Key.Key_Return)
    assert len(eng.of_type(SetTargets)) == 1
    eng.held[0].set_result(CommandResult(True))
    assert not dlg.isVisible()


def test_automation_toggle_and_preset_choice_send_commands(env):
    eng, win = env
    assert win.act_automation.isChecked()
    win.act_automation.trigger()
    assert eng.of_type(SetAutomation) == [SetAutomation("p1", False)]
    eng.outbox.publish(snapshot(POS.evolve(automation=False), 40_500.0, T0 + 1))
    win.bridge.flush_now()
    assert not win.act_automation.isChecked()
    assert "paused" in win.proxy.index(0, column_index("preset")).data()
    menu = win.build_context_menu()
    presets = menu.findChild(type(menu), "presetMenu")
    target = next(a for a in presets.actions() if a.text() == "guardian")
    target.trigger()
    assert eng.of_type(SetPreset) == [SetPreset("p1", "guardian")]


def test_order_dialog_validates_and_sends_open_position(env, qtbot):
    eng, win = env
    win.act_order.trigger()
    dlg = win.dialog
    assert isinstance(dlg, OrderDialog)
    dlg.symbol.setCurrentText(BTC.symbol)
    dlg.qty.setText("0.1")
    assert "already open" in dlg.error.text()  # one position per symbol and side
    assert not dlg.ok_button.isEnabled()
    dlg.side.setCurrentIndex(1)  # short BTC is allowed
    dlg.leverage.setText("200")
    assert "leverage must be between 1x and 125x" in dlg.error.text()
    dlg.leverage.setText("10")
    dlg.sl.setText("40,000")  # below the price for a short
    assert "SL 40000 must be above the current price" in dlg.error.text()
    dlg.sl.setText("41,000")
    dlg.tp.setText("38,000")
    dlg.qty.setText("0")
    assert "Size cannot be zero" in dlg.error.text()
    dlg.qty.setText("0.1234")
    dlg.preset.setCurrentText("breakout")
    assert dlg.ok_button.isEnabled(), dlg.error.text()
    qtbot.mouseClick(dlg.ok_button, Qt.MouseButton.LeftButton)
    (cmd,) = eng.of_type(OpenPosition)
    assert cmd == OpenPosition(BTC.symbol, Side.SHORT, 0.123, 10.0, 41_000.0, 38_000.0,
                               "breakout")
    assert not dlg.isVisible()


def test_shortcuts_help_lists_the_shortcuts(env):
    _eng, win = env
    win.act_help.trigger()
    table = win.dialog.findChild(QTableWidget, "shortcutsTable")
    rows = {table.item(r, 0).text(): table.item(r, 1).text() for r in range(table.rowCount())}
    assert rows["Emergency close"] == "Ctrl+Shift+X"
    assert rows["Edit TP/SL…"] == "Ctrl+E"
    assert "F1" in rows.values()


def test_layout_is_saved_and_restored(qtbot, tmp_path):
    ini = str(tmp_path / "layout.ini")
    eng = EngineDouble()
    win = MainWindow(eng, start=False, qsettings=QSettings(ini, QSettings.Format.IniFormat))
    qtbot.addWidget(win)
    eng.outbox.publish(snapshot(POS, 40_500.0))
    eng.outbox.publish(snapshot(position("p2", ETH.symbol, entry=3000.0, sl=2900.0,
                                         tp=3300.0), 3100.0))
    win.bridge.flush_now()
    win.table.setColumnWidth(column_index("pnl"), 177)
    win.table.sortByColumn(column_index("pnl"), Qt.SortOrder.DescendingOrder)
    win.act_colour_blind.trigger()
    win.close()  # saves
    win2 = MainWindow(eng, start=False, qsettings=QSettings(ini, QSettings.Format.IniFormat))
    qtbot.addWidget(win2)
    hdr = win2.table.horizontalHeader()
    assert win2.table.columnWidth(column_index("pnl")) == 177
    assert hdr.sortIndicatorSection() == column_index("pnl")
    assert hdr.sortIndicatorOrder() == Qt.SortOrder.DescendingOrder
    assert win2.settings.colour_blind and win2.theme.colour_blind


def test_damaged_layout_is_ignored(qtbot, tmp_path):
    ini = tmp_path / "bad.ini"
    ini.write_text("[window]\ngeometry=garbage\nstate=@ByteArray(xx)\n[table]\nheader=1\n")
    win = MainWindow(EngineDouble(), start=False,
                     qsettings=QSettings(str(ini), QSettings.Format.IniFormat))
    qtbot.addWidget(win)
    assert win.model.columnCount() == len(COLUMNS)


def test_close_raises_an_alert(env):
    eng, win = env
    eng.outbox.publish(PositionRemoved(POS.evolve(exit_reason="take_profit",
                                                  exit_price=42_000.0), T0 + 5))
    win.bridge.flush_now()
    assert win.alerts and "take_profit" in win.alerts[-1] and "42,000.0" in win.alerts[-1]
    assert "closed (take_profit)" in win.statusBar().currentMessage()
    assert win.model.rowCount() == 0 and win.chart.position_id is None


def _editor_on(qtbot, pos, mark):
    eng = EngineDouble()
    win = shown_window(qtbot, eng, exposed=False)
    eng.outbox.publish(snapshot(pos, mark))
    eng.outbox.publish(tick(pos.symbol, mark, T0))
    win.bridge.flush_now()
    return eng, win, open_editor(win)


def test_switching_units_back_and_forth_keeps_the_levels_exactly(qtbot):
    # levels a 3-decimal % or R does not carry to the tick: read back, they would move
    pos = position(entry=87_534.1, sl=86_203.9, tp=90_794.1, liquidation=79_130.8)
    eng, _win, dlg = _editor_on(qtbot, pos, 87_400.0)
    for mode in ("% from entry", "R", "Price"):
        for kind in ("sl", "tp"):
            dlg.modes[kind].setCurrentText(mode)
            assert dlg.previews[kind].text().startswith(
                f"→ {kind.upper()} {'86,203.9' if kind == 'sl' else '90,794.1'} ·"), mode
    assert (dlg.inputs["sl"].text(), dlg.inputs["tp"].text()) == ("86203.9", "90794.1")
    assert dlg.parsed() == (KEEP, KEEP)  # nothing changed: nothing is sent
    # in % the SL is left as it was while the TP is changed: only the TP is sent
    dlg.modes["sl"].setCurrentText("% from entry")
    dlg.inputs["tp"].setText("91,000")
    dlg.submit()
    assert eng.of_type(SetTargets) == [SetTargets("p1", sl=KEEP, tp=91_000.0)]


def test_switching_to_r_without_an_initial_stop_does_not_remove_the_level(qtbot):
    pos = position(sl=None, tp=42_000.0, liquidation=36_500.0)
    eng, _win, dlg = _editor_on(qtbot, pos, 40_500.0)
    dlg.modes["tp"].setCurrentText("R")
    assert dlg.inputs["tp"].text() != ""  # an empty field would mean "no TP"
    assert "R is undefined" in dlg.error.text()
    assert not dlg.ok_button.isEnabled()
    dlg.submit()
    assert eng.of_type(SetTargets) == []
    dlg.modes["tp"].setCurrentText("Price")  # back: the level is still there
    assert dlg.parsed() == (KEEP, KEEP)


def test_the_engines_refusal_stays_shown_through_new_ticks(env):
    eng, win = env

    def refuse(cmd):
        raise ExchangeError("Binance: order would immediately trigger")
    eng.answer = refuse
    dlg = open_editor(win)
    dlg.inputs["sl"].setText("39500")
    dlg.submit()
    for i in range(1, 4):  # the price goes on while the trader reads the reason
        eng.outbox.publish(tick(BTC.symbol, 40_500.0 + i, T0 + i))
        win.bridge.flush_now()
    assert "Rejected: Binance: order would immediately trigger" in dlg.error.text()
    dlg.inputs["sl"].setText("39400")  # the trader's next try: the old reason goes
    assert dlg.error.text() == ""


def test_the_editor_of_a_position_that_closes_meanwhile_sends_nothing(env, qtbot):
    eng, win = env
    dlg = open_editor(win)
    dlg.inputs["sl"].setText("39500")
    assert dlg.ok_button.isEnabled()
    eng.outbox.publish(PositionRemoved(POS.evolve(exit_reason="stop_loss",
                                                  exit_price=39_000.0), T0 + 5))
    win.bridge.flush_now()
    assert dlg.isVisible()  # the trader reads why, and closes it
    assert "has closed (stop_loss) at 39,000.0" in dlg.error.text()
    assert not dlg.ok_button.isEnabled() and not dlg.inputs["sl"].isEnabled()
    qtbot.keyClick(dlg.inputs["sl"], Qt.Key.Key_Return)
    dlg.submit()
    eng.outbox.publish(tick(BTC.symbol, 39_000.0, T0 + 6))  # a tick re-validates: still void
    win.bridge.flush_now()
    assert not dlg.ok_button.isEnabled() and "has closed" in dlg.error.text()
    assert eng.of_type(SetTargets) == []


@pytest.mark.parametrize("on", [True, False])
def test_one_click_trading_is_restored_as_the_trader_left_it(qtbot, tmp_path, on):
    ini = str(tmp_path / "layout.ini")
    eng = EngineDouble()
    win = MainWindow(eng, start=False, settings=UiSettings(one_click=not on),
                     qsettings=QSettings(ini, QSettings.Format.IniFormat))
    qtbot.addWidget(win)
    win.act_one_click.trigger()  # Options → One-click trading (saved at once)
    assert win.settings.one_click is on
    win.close()
    win2 = MainWindow(eng, start=False, qsettings=QSettings(ini, QSettings.Format.IniFormat))
    qtbot.addWidget(win2)
    assert win2.settings.one_click is on and win2.act_one_click.isChecked() is on


def test_a_closed_side_panel_comes_back_from_the_view_menu_also_after_a_restart(
        qtbot, tmp_path):
    ini = str(tmp_path / "layout.ini")
    eng = EngineDouble()
    win = MainWindow(eng, start=False, qsettings=QSettings(ini, QSettings.Format.IniFormat))
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    for dock in (win.log_dock, win.history_dock, win.orders_dock):
        dock.close()  # the ✕ in the panel's title bar
        assert not dock.isVisible()
    win.close()  # saves the layout: the panels are closed in it
    win2 = MainWindow(eng, start=False, qsettings=QSettings(ini, QSettings.Format.IniFormat))
    qtbot.addWidget(win2)
    win2.show()
    qtbot.waitExposed(win2)
    menus = {m.title().replace("&", ""): m for m in (a.menu() for a in win2.menuBar().actions())
             if m is not None}
    assert list(menus) == ["View", "Help"]
    shown = {a.text(): a for a in menus["View"].actions()}
    assert set(shown) == {"Action log", "History", "Orders"}
    for name, dock in (("Action log", win2.log_dock), ("History", win2.history_dock),
                       ("Orders", win2.orders_dock)):
        assert not dock.isVisible() and not shown[name].isChecked()
        shown[name].trigger()
        assert dock.isVisible() and shown[name].isChecked()
    # and the shortcuts are found from the Help menu too
    assert win2.act_help in menus["Help"].actions()


def test_the_editor_follows_the_engines_moves_of_a_level_the_trader_has_not_touched(env):
    """A trailing stop moves while the dialog is open: the field shows the new stop (a
    trader "tightening" from the old one would loosen it); a field the trader has already
    changed stays theirs, with the engine's new level said beside it."""
    eng, win = env
    dlg = open_editor(win)
    dlg.modes["tp"].setCurrentText("% from entry")
    eng.outbox.publish(snapshot(POS.evolve(sl=39_300.0, tp=42_400.0), 40_600.0, T0 + 1))
    win.bridge.flush_now()
    assert dlg.inputs["sl"].text() == "39,300.0"
    assert dlg.previews["sl"].text().startswith("→ SL 39,300.0 ·")
    assert dlg.inputs["tp"].text() == "6.000"  # 42,400 in the unit the trader chose
    assert dlg.parsed() == (KEEP, KEEP)  # nothing changed by the trader: nothing sent
    dlg.inputs["sl"].setText("39,200")  # the trader's own value…
    eng.outbox.publish(snapshot(POS.evolve(sl=39_450.0, tp=42_400.0), 40_700.0, T0 + 2))
    win.bridge.flush_now()
    assert dlg.inputs["sl"].text() == "39,200"  # …stays theirs
    assert "The engine has moved SL to 39,450.0" in dlg.error.text()
    assert dlg.previews["sl"].text().startswith("→ SL 39,200.0 ·")
    dlg.submit()
    assert eng.of_type(SetTargets) == [SetTargets("p1", sl=39_200.0, tp=KEEP)]


def _luminance(hex_colour: str) -> float:
    def lin(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_a_dialog_error_is_readable_on_either_theme(env, qtbot, theme):
    """The editor's error line was #ff6b6b on both themes: on the light theme's white that is
    a contrast of 2.5:1, under WCAG's 4.5:1 for text (a refusal the trader could miss)."""
    from PySide6.QtGui import QPalette
    from PySide6.QtWidgets import QApplication

    from pmgui.ui.theme import make_theme

    _eng, win = env
    before = QApplication.palette()
    try:
        win.apply_theme(make_theme(theme))
        dlg = open_editor(win)
        colour = dlg.error.styleSheet().split("color:")[1].strip(" ;")
        window = dlg.palette().color(QPalette.ColorRole.Window).name()
        hi, lo = sorted((_luminance(colour), _luminance(window)), reverse=True)
        assert (hi + 0.05) / (lo + 0.05) >= 4.5, (theme, colour, window)
        dlg.close()
    finally:
        QApplication.setPalette(before)
