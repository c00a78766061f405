"""The Connect to engine dialog and the link indicator (real widgets)."""

from __future__ import annotations

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QMainWindow

from pmgui.ui.remote import attach_indicator
from pmgui.ui.remote_dialog import KEY, ConnectDialog


def test_connect_dialog_checks_the_url_and_remembers_endpoints(qtbot, tmp_path):
    settings = QSettings(str(tmp_path / "ui.ini"), QSettings.Format.IniFormat)
    settings.setValue(KEY, ["ws://10.0.0.2:8765"])
    dlg = ConnectDialog(settings)
    qtbot.addWidget(dlg)
    assert dlg.url.currentText() == "ws://10.0.0.2:8765"
    dlg.url.setEditText("http://example.org")
    dlg._accept()
    assert dlg.chosen is None and "ws:// or wss://" in dlg.error.text()
    dlg.url.setEditText("wss://engine.example:8765")
    dlg.remember.setChecked(False)  # no keyring in the test environment
    dlg.token.setText("pmgui_abc")
    dlg._accept()
    assert dlg.chosen == ("wss://engine.example:8765", "pmgui_abc")
    assert settings.value(KEY) == ["wss://engine.example:8765", "ws://10.0.0.2:8765"]


class Link:  # the attributes the indicator reads (RemoteEngine's link state)
    url = "ws://127.0.0.1:9"
    link = "connected"
    link_detail = ""
    scope = "read"


def test_link_indicator_shows_disconnects_clearly(qtbot):
    win = QMainWindow()
    win.setWindowTitle("pmgui — paper")
    qtbot.addWidget(win)
    link = Link()
    label = attach_indicator(win, link)
    assert label.text() == "● engine ws://127.0.0.1:9 (read-only)"
    assert win.windowTitle() == "pmgui — paper — remote"
    link.link, link.link_detail = "disconnected", "connection lost"
    qtbot.waitUntil(lambda: "DISCONNECTED" in label.text(), timeout=5000)
    assert label.toolTip() == "connection lost" and "b3261e" in label.styleSheet()
    assert win.windowTitle() == "pmgui — paper — DISCONNECTED"


def test_quit_question_offers_a_background_engine(qtbot):
    from pmgui.ui.remote import offer_background_engine
    from tests.test_ui_trading import POS, make
    from tests.ui_doubles import T0, snapshot

    eng, win = make(qtbot)
    asked: list[bool] = []
    offer_background_engine(win, lambda: asked.append(True))
    eng.outbox.publish(snapshot(POS, 40_500.0, T0 + 1))
    win.bridge.flush_now()
    win.ask_before_quit = True
    win.close()
    dlg = win.confirm_dialog
    assert win.isVisible() and dlg is not None
    assert "background pmgui engine" in dlg.label.text()
    qtbot.mouseClick(dlg.handoff_button, Qt.MouseButton.LeftButton)
    assert asked == [True]
    assert not win.isVisible()


def test_a_window_on_a_remote_engine_quits_without_asking(qtbot):
    from pmgui.ui.remote import attach_remote
    from tests.test_ui_trading import POS, make
    from tests.ui_doubles import T0, snapshot

    eng, win = make(qtbot)
    win.ask_before_quit = True
    attach_remote(win, Link())
    eng.outbox.publish(snapshot(POS, 40_500.0, T0 + 1))
    win.bridge.flush_now()
    win.close()
    assert not win.isVisible()  # the engine keeps running: nothing to ask
