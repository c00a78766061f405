"""Audit of the Settings dialog's presets tab: a refusal is shown for the input refused,
and only while that input is there."""

from __future__ import annotations

from PySide6.QtCore import Qt

from pmgui.engine.commands import SetSymbolRules
from tests.test_ui_settings import make_window, open_settings
from tests.ui_doubles import ETH, SOL, EngineDouble


def test_a_refusal_goes_once_the_trader_puts_the_stored_rules_back(qtbot):
    """The trader types a bad override, Apply refuses it with the reason, the trader puts
    the stored text back and applies: nothing is sent (right) but the row kept saying
    "✖ unknown parameter …" beside a valid, unchanged input — a symbol that looks broken."""
    eng = EngineDouble()
    eng.rules[ETH.symbol] = ("guardian", {"trailing.distance": 0.02})
    win = make_window(qtbot, eng)
    dlg = open_settings(qtbot, win)
    dlg.tabs.setCurrentIndex(1)
    eth, sol = dlg.overrides_edit(ETH.symbol), dlg.overrides_edit(SOL.symbol)
    eth.selectAll()
    qtbot.keyClicks(eth, "trailing.distance=-1")  # out of range: refused before sending
    qtbot.keyClicks(sol, "trailng.distance=0.01")  # misspelt
    qtbot.mouseClick(dlg.apply_rules_button, Qt.MouseButton.LeftButton)
    assert eng.of_type(SetSymbolRules) == []
    assert dlg.row_status(ETH.symbol).text().startswith("✖")
    assert dlg.row_status(SOL.symbol).text().startswith("✖")

    eth.selectAll()
    qtbot.keyClicks(eth, "trailing.distance=0.02")  # what is stored
    sol.clear()
    qtbot.mouseClick(dlg.apply_rules_button, Qt.MouseButton.LeftButton)
    assert eng.of_type(SetSymbolRules) == []
    assert dlg.rules_state.text() == "Nothing changed"
    assert dlg.row_status(ETH.symbol).text() == ""
    assert dlg.row_status(SOL.symbol).text() == ""
    assert eng.rules[ETH.symbol] == ("guardian", {"trailing.distance": 0.02})


def test_a_saved_rows_confirmation_stays_through_a_later_apply(qtbot):
    eng = EngineDouble()
    win = make_window(qtbot, eng)
    dlg = open_settings(qtbot, win)
    dlg.tabs.setCurrentIndex(1)
    qtbot.keyClicks(dlg.overrides_edit(ETH.symbol), "trailing.distance=0.03")
    qtbot.mouseClick(dlg.apply_rules_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dlg.row_status(ETH.symbol).text() == "✔ saved", timeout=5000)
    qtbot.mouseClick(dlg.apply_rules_button, Qt.MouseButton.LeftButton)
    assert dlg.row_status(ETH.symbol).text() == "✔ saved"
    assert len(eng.of_type(SetSymbolRules)) == 1


def test_stored_overrides_are_shown_exactly_and_an_apply_elsewhere_leaves_them(qtbot):
    """Overrides were shown to 6 significant digits ("0.0123457", "2.50000e+06"): the text
    then parsed to another value than the stored one, so Apply — clicked to change another
    symbol's preset — also sent the rounded value for this symbol, silently changing its
    rule."""
    eng = EngineDouble()
    stored = {"trailing.distance": 0.0123456789, "scaling.min_volume": 2_500_000.5,
              "price.max_age": 2.0, "stop_loss.pct": 0.00001}
    eng.rules[ETH.symbol] = ("guardian", dict(stored))
    win = make_window(qtbot, eng)
    dlg = open_settings(qtbot, win)
    dlg.tabs.setCurrentIndex(1)
    text = dlg.overrides_edit(ETH.symbol).text()
    assert "trailing.distance=0.0123456789" in text and "scaling.min_volume=2500000.5" in text
    assert "stop_loss.pct=0.00001" in text and "e-" not in text and "e+" not in text
    dlg.preset_combo(SOL.symbol).setCurrentText("breakout")
    qtbot.mouseClick(dlg.apply_rules_button, Qt.MouseButton.LeftButton)
    assert [c.symbol for c in eng.of_type(SetSymbolRules)] == [SOL.symbol]
    assert eng.rules[ETH.symbol] == ("guardian", stored)
