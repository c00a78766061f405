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


def test_a_window_closed_before_its_first_frame_ends_the_run(qapp, tmp_path, monkeypatch):
    """A timed exit on a busy machine can come before the first frame: the window closes
    while the first-frame loop (a plain QEventLoop, not QApplication.exec) runs. Qt 6 emits
    lastWindowClosed only inside exec, so the run used to go on to the qasync loop and wait
    there for ever (seen as a hang of a run_gui test under load)."""
    from pmgui.ui import app as app_module

    # no first frame ever comes: the paint is not noticed and the fallback is out of reach
    monkeypatch.setattr(app_module._FirstFrame, "eventFilter", lambda self, obj, ev: False)
    monkeypatch.setattr(app_module._FirstFrame, "FALLBACK_MS", 3_600_000)
    started: list[bool] = []
    eng = EngineDouble()
    monkeypatch.setattr(eng, "start_in_background",
                        lambda *a, **k: started.append(True), raising=False)
    assert run_gui(eng, exit_after=0, settings_path=tmp_path / "ui.ini") == 0
    assert started == []  # it ended in the first-frame loop, before anything was started


def test_the_closed_watcher_sees_a_close_outside_qapplication_exec(qapp, tmp_path):
    from PySide6.QtCore import QEventLoop, QSettings

    from pmgui.ui.app import _Closed
    from pmgui.ui.main_window import MainWindow

    window = MainWindow(EngineDouble(),
                        qsettings=QSettings(str(tmp_path / "ui.ini"), QSettings.Format.IniFormat))
    closed = _Closed(window, QEventLoop())
    window.show()
    window.close()  # no event loop runs: what a close during the first-frame loop looks like
    assert closed.is_set
    closed.detach()
    window.deleteLater()


def test_the_chart_import_starts_only_after_the_gui_thread_read_every_qt_name(qapp, qtbot):
    """PySide6 makes its classes at the first read of each name, and pyqtgraph's import reads
    every name of QtCore/QtGui/QtWidgets: the helper thread must find them made (on the GUI
    thread, a slice per turn), not make them while the GUI thread runs Qt (a SIGSEGV)."""
    import threading

    from PySide6.QtCore import QObject

    from pmgui.ui.app import QT_CLASSES_SLICE, _ChartImport

    seen: list[tuple[int, int, bool]] = []
    parent = QObject()
    holder: list[_ChartImport] = []

    def load() -> None:
        imp = holder[0]
        seen.append((imp._next, len(imp._names),
                     threading.current_thread() is not threading.main_thread()))

    imp = _ChartImport(parent, load)  # type: ignore[arg-type]
    holder.append(imp)
    assert len(imp._names) > 10 * QT_CLASSES_SLICE  # QtCore + QtGui + QtWidgets
    assert imp.import_thread.ident is None  # nothing started before the GUI thread's first turn
    qtbot.waitUntil(lambda: bool(seen), timeout=30_000)
    imp.join()
    done, total, on_helper = seen[0]
    assert done == total and on_helper


def test_a_cancelled_chart_import_never_starts(qapp, qtbot):
    from PySide6.QtCore import QObject

    from pmgui.ui.app import _ChartImport

    ran: list[bool] = []
    parent = QObject()
    imp = _ChartImport(parent, lambda: ran.append(True))  # type: ignore[arg-type]
    imp.cancel()
    qtbot.wait(50)  # turns of the event loop: a running timer would have read a slice
    assert imp._next == 0 and imp.import_thread.ident is None and not ran
    imp.join()  # a thread never started is not joined


def test_the_window_runs_with_a_short_switch_interval_and_puts_it_back(qapp, tmp_path):
    """While the window runs, the GUI thread waits at most 1 ms for the interpreter lock the
    engine's thread holds (pmgui.ui.gil); afterwards the interval is as it was."""
    import sys

    from pmgui.ui.gil import SWITCH_INTERVAL_S, short_switch_interval

    was = sys.getswitchinterval()
    seen: list[float] = []
    assert run_gui(EngineDouble(), exit_after=0, settings_path=tmp_path / "ui.ini",
                   on_window=lambda _w: seen.append(sys.getswitchinterval())) == 0
    assert seen == [pytest.approx(min(was, SWITCH_INTERVAL_S))]
    assert sys.getswitchinterval() == was
    sys.setswitchinterval(0.0005)  # a shorter one set before is kept
    try:
        with short_switch_interval() as inside:
            assert inside == pytest.approx(0.0005)
    finally:
        sys.setswitchinterval(was)
