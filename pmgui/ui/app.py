"""GUI start-up: QApplication + qasync loop + main window.

The caller (the CLI) owns the engine: it starts it before `run_gui` and stops it after.
`exit_after` exists for smoke tests and documentation screenshots: after that many
seconds the window is grabbed to `screenshot` (if given) and the app quits with 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import qasync
from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication

from pmgui import identity
from pmgui.ui.about import apply_identity
from pmgui.ui.handle import EngineHandle
from pmgui.ui.main_window import MainWindow, UiSettings
from pmgui.ui.theme import THEMES

log = logging.getLogger(__name__)


def settings_store(path: Path | None = None) -> QSettings:
    """Where the window layout lives: `path`, else $PMGUI_UI_SETTINGS, else the per-user
    config location (an INI file, so it is readable and easy to reset)."""
    target = path or (Path(os.environ["PMGUI_UI_SETTINGS"])
                      if os.environ.get("PMGUI_UI_SETTINGS") else None)
    if target is not None:
        return QSettings(str(target), QSettings.Format.IniFormat)
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope,
                     identity.ORGANISATION, "ui")


def run_gui(engine: EngineHandle, *, exit_after: float | None = None,
            screenshot: Path | None = None, theme: str = "dark",
            confirm_drags: bool = False, settings_path: Path | None = None,
            on_window: Callable[[MainWindow], None] | None = None) -> int:
    """Run the GUI until the window closes (or `exit_after` seconds); return the exit code.

    The layout (window, docks, columns, sorting, palette options) is restored from and
    saved to `settings_store(settings_path)`.
    """
    if theme not in THEMES:
        raise ValueError(f"unknown theme {theme!r}: choose one of {', '.join(THEMES)}")
    if exit_after is not None and not (exit_after >= 0):
        raise ValueError(f"exit_after must be a non-negative number of seconds: {exit_after!r}")
    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    apply_identity(app)
    window = MainWindow(engine, settings=UiSettings(theme=theme, confirm_drags=confirm_drags),
                        qsettings=settings_store(settings_path))
    if on_window is not None:  # e.g. the remote engine's link indicator
        on_window(window)
    exit_code = 0

    def finish() -> None:
        nonlocal exit_code
        window.bridge.flush_now()
        if screenshot is not None:
            try:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                if not window.grab().save(str(screenshot)):
                    log.error("could not save the screenshot to %s", screenshot)
                    exit_code = 1
            except OSError as e:
                log.error("could not save the screenshot to %s: %s", screenshot, e)
                exit_code = 1
        window.ask_before_quit = False  # a timed exit (screenshots, demos) asks nobody
        window.close()

    loop = qasync.QEventLoop(app)
    previous = None
    try:
        previous = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        previous = None
    asyncio.set_event_loop(loop)
    closed = asyncio.Event()
    window.destroyed.connect(lambda *_: closed.set())
    app.lastWindowClosed.connect(closed.set)
    size = os.environ.get("PMGUI_WINDOW_SIZE", "")  # e.g. 1024x700 (screenshots, checks)
    if size:
        try:
            w, h = (int(v) for v in size.lower().split("x"))
            window.resize(w, h)
        except ValueError:
            log.warning("PMGUI_WINDOW_SIZE=%r is not WIDTHxHEIGHT; ignored", size)
    window.show()
    if exit_after is not None:
        QTimer.singleShot(int(exit_after * 1000), finish)
    restore_sigint = _close_on_sigint(window)
    try:
        with loop:
            loop.run_until_complete(closed.wait())
    finally:
        restore_sigint()
        asyncio.set_event_loop(previous if previous is not None and not previous.is_closed()
                               else None)
    return exit_code


def _close_on_sigint(window: MainWindow) -> Callable[[], None]:
    """Ctrl+C in the terminal closes the window (so the CLI stops the engine cleanly).

    Qt's event loop does not return to Python while idle, so a light timer gives the
    interpreter a chance to run the handler. Only possible from the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGINT)
    def interrupted(*_a: object) -> None:
        window.ask_before_quit = False  # Ctrl+C in the terminal is the trader's answer
        QTimer.singleShot(0, window.close)

    signal.signal(signal.SIGINT, interrupted)
    wake = QTimer(window)
    wake.setInterval(250)
    wake.timeout.connect(lambda: None)
    wake.start()

    def restore() -> None:
        signal.signal(signal.SIGINT, previous)

    return restore
