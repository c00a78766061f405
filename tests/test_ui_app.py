"""run_gui: a real QApplication + qasync loop, exits on its own with a screenshot."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QImage

from pmgui.ui.app import run_gui
from pmgui.ui.handle import EngineHandle
from tests.ui_doubles import BTC, EngineDouble, candles, candles_event, position, snapshot


def test_engine_double_satisfies_the_handle_protocol():
    assert isinstance(EngineDouble(), EngineHandle)


def test_run_gui_exits_after_and_saves_a_screenshot(qapp, tmp_path):
    eng = EngineDouble()
    eng.outbox.publish(snapshot(position(), 40_100.0))
    eng.outbox.publish(candles_event(BTC.symbol, candles(30)))
    shot = tmp_path / "shots" / "main.png"
    ini = tmp_path / "ui.ini"
    assert run_gui(eng, exit_after=0.2, screenshot=shot, theme="light",
                   confirm_drags=False, settings_path=ini) == 0
    assert "window" in ini.read_text()  # the layout was saved on exit
    img = QImage(str(shot))
    assert not img.isNull() and img.width() > 600
    assert eng.outbox.drain() == []  # the window consumed the events


@pytest.fixture(autouse=True)
def _private_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("PMGUI_UI_SETTINGS", str(tmp_path / "env-ui.ini"))


def test_run_gui_rejects_bad_arguments(qapp):
    with pytest.raises(ValueError, match="unknown theme 'neon'"):
        run_gui(EngineDouble(), exit_after=0, theme="neon")
    with pytest.raises(ValueError, match="exit_after"):
        run_gui(EngineDouble(), exit_after=float("nan"))


def test_ctrl_c_closes_the_window_and_returns(qapp, tmp_path):
    import os
    import signal

    from PySide6.QtCore import QTimer

    shot = tmp_path / "not-taken.png"
    before = signal.getsignal(signal.SIGINT)
    QTimer.singleShot(300, lambda: os.kill(os.getpid(), signal.SIGINT))
    # exit_after is only a safety net: had SIGINT not closed the window, it would save `shot`
    assert run_gui(EngineDouble(), exit_after=30, screenshot=shot,
                   settings_path=tmp_path / "ui.ini") == 0
    assert not shot.exists()
    assert signal.getsignal(signal.SIGINT) is before  # the caller's handler is back


def test_settings_location_follows_the_environment(qapp, tmp_path):
    from pmgui.ui.app import settings_store

    assert settings_store().fileName() == str(tmp_path / "env-ui.ini")
    assert settings_store(tmp_path / "x.ini").fileName() == str(tmp_path / "x.ini")
