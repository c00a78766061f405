"""The Settings dialog and alerts, driven as a user would (real widgets, real keyring API)."""

from __future__ import annotations

import json
import logging

import keyring
import keyring.backend
import pytest
from keyring.backends import fail
from PySide6.QtCore import QPoint, QSettings, Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication, QDialog, QLabel, QLineEdit, QPushButton

from pmgui.domain.enums import Side
from pmgui.engine.commands import SetSymbolRules
from pmgui.engine.events import PositionRemoved
from pmgui.exchange.credentials import (
    Credentials,
    KeyringUnavailable,
    credentials_stored,
    delete_credentials,
    load_credentials,
    store_credentials,
)
from pmgui.ui.main_window import MainWindow
from pmgui.ui.settings_dialog import SettingsDialog, format_overrides, parse_overrides
from tests.ui_doubles import BTC, ETH, SOL, T0, EngineDouble, position, snapshot

KEY, SECRET, PASSPHRASE = "AKIAkey-1234567890", "s3cr3t-value-never-shown", "pass-phrase-42"


class MemoryKeyring(keyring.backend.KeyringBackend):
    """An in-memory keyring backend (keyring's own plug-in interface)."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        from keyring.errors import PasswordDeleteError

        if (service, username) not in self.entries:
            raise PasswordDeleteError("not found")
        del self.entries[(service, username)]


@pytest.fixture
def memory_keyring():
    previous = keyring.get_keyring()
    mem = MemoryKeyring()
    keyring.set_keyring(mem)
    yield mem
    keyring.set_keyring(previous)


def make_window(qtbot, eng: EngineDouble, ini=None) -> MainWindow:
    qs = QSettings(str(ini), QSettings.Format.IniFormat) if ini is not None else None
    win = MainWindow(eng, start=False, qsettings=qs)
    qtbot.addWidget(win)
    win.show()
    return win


def open_settings(qtbot, win: MainWindow) -> SettingsDialog:
    win.activateWindow()
    qtbot.waitUntil(win.isActiveWindow, timeout=5000)  # shortcuts need the active window
    win.table.setFocus()
    qtbot.keyClick(win.table, Qt.Key.Key_Comma, Qt.KeyboardModifier.ControlModifier)
    dlg = win.findChild(QDialog, "settingsDialog")
    assert isinstance(dlg, SettingsDialog) and dlg.isVisible()
    settle(qtbot, dlg)
    return dlg


def settle(qtbot, dlg: SettingsDialog) -> None:
    """Keyring calls run on a worker thread: wait for their answers."""
    qtbot.waitUntil(lambda: not dlg.keyring_busy, timeout=10_000)


def click_box(qtbot, box) -> None:
    """Click a check box on its indicator (its label may be narrower than the widget)."""
    qtbot.mouseClick(box, Qt.MouseButton.LeftButton, pos=QPoint(8, box.height() // 2))


def texts_shown(dlg: QDialog) -> list[str]:
    return ([e.text() for e in dlg.findChildren(QLineEdit)]
            + [lab.text() for lab in dlg.findChildren(QLabel)])


# -- behaviour ---------------------------------------------------------------------------------
def test_theme_applies_live_and_persists_across_a_new_window(qtbot, tmp_path):
    ini = tmp_path / "ui.ini"
    eng = EngineDouble()
    win = make_window(qtbot, eng, ini)
    assert win.theme.name == "dark"
    dlg = open_settings(qtbot, win)
    dlg.tabs.setCurrentIndex(2)
    dlg.theme_combo.setFocus()
    qtbot.keyClick(dlg.theme_combo, Qt.Key.Key_Down)  # dark → light
    assert win.theme.name == "light" and win.settings.theme == "light"
    light_window = QApplication.palette().color(QPalette.ColorRole.Window).name()
    assert light_window == win.theme.window
    assert win.act_theme.text() == "Dark theme"
    click_box(qtbot, dlg.sound_box)
    click_box(qtbot, dlg.colour_blind_box)
    assert win.settings.sound_alerts and win.settings.colour_blind
    assert win.act_colour_blind.isChecked() and win.theme.colour_blind
    dlg.close()
    win.close()

    again = make_window(qtbot, EngineDouble(), ini)
    assert again.theme.name == "light" and again.theme.colour_blind
    assert again.settings.sound_alerts and not again.settings.red_up
    assert QApplication.palette().color(QPalette.ColorRole.Window).name() == again.theme.window


def test_drag_options_from_settings_reach_the_chart(qtbot):
    win = make_window(qtbot, EngineDouble())
    dlg = open_settings(qtbot, win)
    click_box(qtbot, dlg.drag_modifier_box)
    click_box(qtbot, dlg.confirm_drags_box)
    assert win.chart.drag_modifier == Qt.KeyboardModifier.ShiftModifier
    assert win.settings.confirm_drags and win.act_confirm_drags.isChecked()
    # and the other way round: the toolbar's theme switch shows in the open dialog
    win.act_theme.trigger()
    assert dlg.theme_combo.currentText() == "light" and win.theme.name == "light"
    win.act_red_up.trigger()
    assert dlg.red_up_box.isChecked()
    click_box(qtbot, dlg.sound_box)  # a change in the dialog keeps the toolbar's choices
    assert win.theme.name == "light" and win.settings.red_up and win.settings.sound_alerts


def test_settings_opens_from_the_options_menu_once(qtbot):
    win = make_window(qtbot, EngineDouble())
    assert win.act_settings in win.options_menu.actions()
    win.act_settings.trigger()
    first = win.settings_dialog
    win.act_settings.trigger()
    assert win.settings_dialog is first
    assert len(win.findChildren(SettingsDialog)) == 1


# -- credentials -------------------------------------------------------------------------------
def test_credentials_go_to_the_keyring_and_are_never_shown_back(qtbot, tmp_path, memory_keyring,
                                                                 monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    ini = tmp_path / "ui.ini"
    eng = EngineDouble(exchange_id="okx")
    win = make_window(qtbot, eng, ini)
    win.keyring_backend = memory_keyring
    dlg = open_settings(qtbot, win)
    assert dlg.exchange_label.text() == "okx"
    assert dlg.cred_state.text() == "API key: not stored"
    assert not dlg.delete_creds.isEnabled()
    for edit in (dlg.api_key_edit, dlg.secret_edit, dlg.password_edit):
        assert edit.echoMode() is QLineEdit.EchoMode.Password
    qtbot.keyClicks(dlg.api_key_edit, KEY)
    qtbot.keyClicks(dlg.secret_edit, SECRET)
    qtbot.keyClicks(dlg.password_edit, PASSPHRASE)
    qtbot.mouseClick(dlg.save_creds, Qt.MouseButton.LeftButton)
    settle(qtbot, dlg)

    stored = json.loads(memory_keyring.entries[("pmgui", "okx")])
    assert stored == {"apiKey": KEY, "secret": SECRET, "password": PASSPHRASE}
    assert dlg.cred_state.text() == "API key: stored in the OS keyring"
    assert "Restart" in dlg.cred_error.text()
    shown = "\n".join(texts_shown(dlg))
    for secret in (KEY, SECRET, PASSPHRASE):
        assert secret not in shown
        assert secret not in caplog.text
    win.close()
    assert SECRET not in ini.read_text() and KEY not in ini.read_text()

    # what was stored is what the engine reads at start-up (when the keyring is enabled)
    monkeypatch.setenv("PMGUI_NO_KEYRING", "0")
    creds = load_credentials("okx", environ={})
    assert creds is not None and creds.source == "keyring"
    assert creds.ccxt_config() == {"apiKey": KEY, "secret": SECRET, "password": PASSPHRASE}


def test_incomplete_credentials_are_refused_and_nothing_is_stored(qtbot, memory_keyring):
    win = make_window(qtbot, EngineDouble(exchange_id="bybit"))
    win.keyring_backend = memory_keyring
    dlg = open_settings(qtbot, win)
    qtbot.keyClicks(dlg.api_key_edit, KEY)
    qtbot.mouseClick(dlg.save_creds, Qt.MouseButton.LeftButton)
    assert "secret are required" in dlg.cred_error.text()
    assert memory_keyring.entries == {}


def test_removing_credentials(qtbot, memory_keyring):
    store_credentials("bybit", Credentials(KEY, SECRET), backend=memory_keyring)
    win = make_window(qtbot, EngineDouble(exchange_id="bybit"))
    win.keyring_backend = memory_keyring
    dlg = open_settings(qtbot, win)
    assert dlg.cred_state.text() == "API key: stored in the OS keyring"
    qtbot.mouseClick(dlg.delete_creds, Qt.MouseButton.LeftButton)
    settle(qtbot, dlg)
    assert memory_keyring.entries == {}
    assert dlg.cred_state.text() == "API key: not stored"
    assert delete_credentials("bybit", backend=memory_keyring) is False


def test_no_keyring_backend_is_a_clear_error(qtbot):
    win = make_window(qtbot, EngineDouble(exchange_id="binanceusdm"))
    win.keyring_backend = fail.Keyring()
    dlg = open_settings(qtbot, win)
    assert dlg.cred_state.text() == "API key: keyring unavailable"
    qtbot.keyClicks(dlg.api_key_edit, KEY)
    qtbot.keyClicks(dlg.secret_edit, SECRET)
    qtbot.mouseClick(dlg.save_creds, Qt.MouseButton.LeftButton)
    settle(qtbot, dlg)
    assert "no OS keyring is available" in dlg.cred_error.text()
    assert "PMGUI_API_KEY" in dlg.cred_error.text()
    # the typed fields are cleared (the secret left them); no message repeats it
    assert SECRET not in "\n".join(lab.text() for lab in dlg.findChildren(QLabel))


def test_keyring_disabled_by_environment_is_never_touched(memory_keyring):
    env = {"PMGUI_NO_KEYRING": "1"}
    with pytest.raises(KeyringUnavailable, match="disabled"):
        store_credentials("okx", Credentials(KEY, SECRET), environ=env)
    with pytest.raises(KeyringUnavailable, match="disabled"):
        credentials_stored("okx", environ=env)
    assert memory_keyring.entries == {}
    # without the variable the OS default (here: the injected one) is used
    store_credentials("okx", Credentials(KEY, SECRET), environ={})
    assert credentials_stored("okx", environ={})


# -- presets -----------------------------------------------------------------------------------
def test_overrides_text_round_trips_and_names_bad_items():
    assert parse_overrides("trailing.distance=0.015,\n stop_loss.pct = 0.01, ") == {
        "trailing.distance": 0.015, "stop_loss.pct": 0.01}
    assert parse_overrides(format_overrides({"add_on.enabled": False, "trailing.mode": "fixed",
                                             "trailing.distance": 0.02})) == {
        "add_on.enabled": False, "trailing.mode": "fixed", "trailing.distance": 0.02}
    with pytest.raises(Exception, match="trailing.distance is given twice"):
        parse_overrides("trailing.distance=0.01, trailing.distance=0.02")
    with pytest.raises(Exception, match="rule.param=value"):
        parse_overrides("trailing.distance 0.01")


def test_preset_change_sends_set_symbol_rules_and_shows_engine_errors(qtbot):
    eng = EngineDouble()
    eng.rules[ETH.symbol] = ("guardian", {"trailing.distance": 0.02})
    win = make_window(qtbot, eng)
    dlg = open_settings(qtbot, win)
    dlg.tabs.setCurrentIndex(1)
    assert dlg.rules_table.rowCount() == 3
    assert dlg.overrides_edit(ETH.symbol).text() == "trailing.distance=0.02"
    assert dlg.preset_combo(BTC.symbol).currentText() == "guardian"

    dlg.preset_combo(BTC.symbol).setCurrentText("breakout")
    eth = dlg.overrides_edit(ETH.symbol)
    eth.selectAll()
    qtbot.keyClicks(eth, "trailing.min=0.03, trailing.max=0.01")  # engine: min > max
    sol = dlg.overrides_edit(SOL.symbol)
    qtbot.keyClicks(sol, "trailng.distance=0.01")  # misspelt: refused before sending
    qtbot.mouseClick(dlg.apply_rules_button, Qt.MouseButton.LeftButton)

    sent = eng.of_type(SetSymbolRules)
    assert [c.symbol for c in sent] == [BTC.symbol, ETH.symbol]
    assert sent[0] == SetSymbolRules(BTC.symbol, "breakout", {})
    assert eng.rules[BTC.symbol] == ("breakout", {})
    assert dlg.row_status(BTC.symbol).text() == "✔ saved"
    err = dlg.row_status(ETH.symbol).text()
    assert err.startswith("✖") and "trailing.min" in err and "trailing.max" in err
    assert eng.rules[ETH.symbol] == ("guardian", {"trailing.distance": 0.02})  # unchanged
    assert "trailing" in dlg.row_status(SOL.symbol).text()  # did you mean …
    assert dlg.row_status(SOL.symbol).text().startswith("✖")

    # nothing changed since: Apply sends nothing new for the saved row
    eth.clear()
    qtbot.keyClicks(eth, "trailing.distance=0.02")
    sol.clear()
    before = len(eng.submitted)
    qtbot.mouseClick(dlg.apply_rules_button, Qt.MouseButton.LeftButton)
    assert len(eng.submitted) == before
    assert dlg.rules_state.text() == "Nothing changed"


def test_paper_mode_hides_credentials_and_never_touches_the_keyring(qtbot):
    win = make_window(qtbot, EngineDouble(exchange_id="paper"))
    win.keyring_backend = fail.Keyring()  # would show a red error if it were asked
    dlg = open_settings(qtbot, win)
    assert not dlg.credentials_box.isVisible() and dlg.paper_note.isVisible()
    assert dlg.cred_error.text() == ""
    assert "needs no API key" in dlg.paper_note.text()


def test_rules_query_failure_is_reported(qtbot):
    eng = EngineDouble(broken_requests="the engine is not running")
    win = make_window(qtbot, eng)
    dlg = open_settings(qtbot, win)
    assert "not running" in dlg.rules_state.text()
    assert not dlg.apply_rules_button.isEnabled()


# -- alerts ------------------------------------------------------------------------------------
@pytest.fixture
def beeps(monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(QApplication, "beep", staticmethod(lambda: calls.append(1)))
    return calls


def close_event(pid: str, symbol: str, reason: str) -> PositionRemoved:
    p = position(pid, symbol, Side.LONG)
    return PositionRemoved(p.evolve(exit_reason=reason, exit_price=39_000.0), T0 + 5)


def test_close_alerts_beep_only_with_the_sound_setting(qtbot, beeps):
    eng = EngineDouble()
    win = make_window(qtbot, eng)
    for p in (position("a"), position("b", ETH.symbol), position("c", SOL.symbol)):
        eng.outbox.publish(snapshot(p, p.entry))
    win.bridge.flush_now()
    eng.outbox.publish(close_event("a", BTC.symbol, "take_profit"))
    win.bridge.flush_now()
    assert "closed (take_profit)" in win.alerts[-1] and beeps == []
    assert not win.critical_alert

    dlg = open_settings(qtbot, win)
    click_box(qtbot, dlg.sound_box)
    eng.outbox.publish(close_event("b", ETH.symbol, "stop_loss"))
    win.bridge.flush_now()
    assert "closed (stop_loss)" in win.alerts[-1] and len(beeps) == 1

    click_box(qtbot, dlg.sound_box)  # off again
    eng.outbox.publish(close_event("c", SOL.symbol, "trailing_stop"))
    win.bridge.flush_now()
    assert len(win.alerts) == 3 and len(beeps) == 1


def test_emergency_stop_is_a_stronger_alert(qtbot, beeps):
    eng = EngineDouble()
    win = make_window(qtbot, eng)
    win.apply_settings(win.settings.__class__(sound_alerts=True))
    eng.outbox.publish(snapshot(position("a"), 36_000.0))
    win.bridge.flush_now()
    eng.outbox.publish(close_event("a", BTC.symbol, "emergency_stop_severe_loss"))
    win.bridge.flush_now()
    msg = win.statusBar().currentMessage()
    assert msg.startswith("⚠ EMERGENCY STOP") and "emergency_stop_severe_loss" in msg
    notice = win.findChild(QPushButton, "emergencyAlert")
    assert win.critical_alert and notice.isVisible() and "background" in notice.styleSheet()
    assert notice.text().startswith(msg)
    assert win.alerts[-1] == msg and len(beeps) == 2
    # a hover tip or the next message does not take the notice away; a click does
    win.notify("Close the selected position at market")
    win.statusBar().clearMessage()
    assert notice.isVisible()
    qtbot.mouseClick(notice, Qt.MouseButton.LeftButton)
    assert not win.critical_alert and not notice.isVisible()


# -- the real engine thread ---------------------------------------------------------------------
def test_presets_tab_against_the_real_engine_thread(qtbot, tmp_path):
    """Queries and commands cross to the manager thread and back; the choice is stored."""
    from pmgui.config import Config
    from pmgui.engine.build import build_engine
    from pmgui.engine.settings import EngineSettings

    engine = build_engine(Config(engine=EngineSettings(demo_positions=False)),
                          tmp_path / "pmgui.db")
    engine.start()
    try:
        win = MainWindow(engine, start=False)
        qtbot.addWidget(win)
        dlg = win.open_settings()
        # the answer crosses threads through a queued signal: it arrives in the GUI loop
        qtbot.waitUntil(lambda: dlg.rules_table.rowCount() > 0, timeout=10_000)
        assert dlg.demo_label.text() == "paper trading (simulated)"
        symbols = [dlg.rules_table.item(r, 0).text() for r in range(dlg.rules_table.rowCount())]
        assert BTC.symbol in symbols
        dlg.preset_combo(BTC.symbol).setCurrentText("monitor")
        dlg.overrides_edit(BTC.symbol).setText("stop_loss.pct=0.01, take_profit.pct=0.02")
        with qtbot.waitSignal(dlg.rulesApplied, timeout=10_000) as ok:
            assert dlg.apply_rules() == 1
        assert ok.args == [BTC.symbol, True]
        rules = engine.query(lambda core: core.symbol_rules()).result(10)
        assert rules[BTC.symbol][0] == "monitor"
        assert rules[BTC.symbol][1]["stop_loss.pct"] == 0.01
        dlg.overrides_edit(BTC.symbol).setText("trailing.min=0.05, trailing.max=0.01")
        with qtbot.waitSignal(dlg.rulesApplied, timeout=10_000) as bad:
            dlg.apply_rules()
        assert bad.args == [BTC.symbol, False]
        assert "trailing.min" in dlg.row_status(BTC.symbol).text()
        rules = engine.query(lambda core: core.symbol_rules()).result(10)
        assert "trailing.min" not in rules[BTC.symbol][1]  # nothing changed
    finally:
        engine.stop()

