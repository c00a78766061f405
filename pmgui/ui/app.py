"""GUI start-up: QApplication + qasync loop + main window.

The caller (the CLI) owns the engine and stops it after `run_gui`. The window comes first:
nothing heavy runs between the QApplication and the window's first frame. Right after that
frame, an engine that still has to start (pmgui.launch.EngineLauncher: it has
`start_in_background`) is started on its own thread, and the chart (pyqtgraph, imported on
a helper thread) is built into the window. A start that fails closes the window; the
caller reports the error.
While the window runs, the cyclic garbage collector runs on the GUI thread only
(`pmgui.ui.collector`): a collection on the engine's or the start-up thread could delete a
Qt object of the window from the wrong thread. `on_close` (the caller's engine stop) runs
before that ends, so no other thread is left allocating when CPython's own collector is back.
`exit_after` exists for smoke tests and documentation screenshots: after that many
seconds the window is grabbed to `screenshot` (if given) and the app quits with 0.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QEventLoop, QObject, QSettings, QTimer, Signal
from PySide6.QtWidgets import QApplication

from pmgui import identity
from pmgui.ui.about import apply_identity
from pmgui.ui.collector import pinned_to_gui_thread
from pmgui.ui.gil import short_switch_interval
from pmgui.ui.handle import EngineHandle
from pmgui.ui.main_window import MainWindow, UiSettings
from pmgui.ui.theme import THEMES

if TYPE_CHECKING:
    import asyncio

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
            on_window: Callable[[MainWindow], None] | None = None,
            on_close: Callable[[], None] | None = None) -> int:
    """Run the GUI until the window closes (or `exit_after` seconds); return the exit code.

    The layout (window, docks, columns, sorting, palette options) is restored from and
    saved to `settings_store(settings_path)`. `on_close` runs once the window has closed,
    still under the GUI-thread collector (see the module's docstring), even if the window
    failed.
    """
    if theme not in THEMES:
        raise ValueError(f"unknown theme {theme!r}: choose one of {', '.join(THEMES)}")
    if exit_after is not None and not (exit_after >= 0):
        raise ValueError(f"exit_after must be a non-negative number of seconds: {exit_after!r}")
    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    # before the window: its helper threads start after the first frame. The switch
    # interval short while the window runs (pmgui.ui.gil)
    with pinned_to_gui_thread(app), short_switch_interval():
        try:
            return _run_window(app, engine, exit_after=exit_after, screenshot=screenshot,
                               theme=theme, confirm_drags=confirm_drags,
                               settings_path=settings_path, on_window=on_window)
        finally:
            if on_close is not None:
                on_close()


def _run_window(app: QApplication, engine: EngineHandle, *, exit_after: float | None,
                screenshot: Path | None, theme: str, confirm_drags: bool,
                settings_path: Path | None,
                on_window: Callable[[MainWindow], None] | None) -> int:
    apply_identity(app)
    window = MainWindow(engine, settings=UiSettings(theme=theme, confirm_drags=confirm_drags),
                        qsettings=settings_store(settings_path), defer_chart=True)
    if on_window is not None:  # e.g. the remote engine's link indicator
        on_window(window)
    exit_code = 0

    def finish() -> None:
        window.bridge.flush_now()
        if screenshot is None:
            close()
        elif window.build_chart() is not None:  # the whole window, chart included
            QTimer.singleShot(0, window, shoot)  # once its queued show and layouts ran

    def shoot() -> None:
        nonlocal exit_code
        try:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            if not window.grab().save(str(screenshot)):
                log.error("could not save the screenshot to %s", screenshot)
                exit_code = 1
        except OSError as e:
            log.error("could not save the screenshot to %s: %s", screenshot, e)
            exit_code = 1
        close()

    def close() -> None:
        window.ask_before_quit = False  # a timed exit (screenshots, demos) asks nobody
        window.close()

    size = os.environ.get("PMGUI_WINDOW_SIZE", "")  # e.g. 1024x700 (screenshots, checks)
    if size:
        try:
            w, h = (int(v) for v in size.lower().split("x"))
            window.resize(w, h)
        except ValueError:
            log.warning("PMGUI_WINDOW_SIZE=%r is not WIDTHxHEIGHT; ignored", size)
    # the window is shown and painted before anything else: a plain Qt loop runs until its
    # first frame; only then are the engine started, the chart built and the qasync loop
    # (asyncio) imported
    first_loop = QEventLoop()
    closed = _Closed(window, first_loop)

    helpers: list[_ChartImport] = []

    def after_first_frame() -> None:
        first_loop.quit()
        helpers.append(_after_first_frame(window, engine))

    first_frame = _FirstFrame(window, after_first_frame)
    window.installEventFilter(first_frame)
    if exit_after is not None:
        QTimer.singleShot(int(exit_after * 1000), finish)
    restore_sigint = _close_on_sigint(window)
    try:
        window.show()
        if not closed.is_set:
            first_loop.exec()
        if not closed.is_set:
            _run_qasync(app, closed)
    finally:
        first_frame.cancel()
        closed.detach()
        restore_sigint()
        for helper in helpers:  # (an import: it ends) — the window outlives its signal
            helper.cancel()
            helper.join()
    return exit_code


class _Closed(QObject):
    """Whether the window has closed (or was destroyed); ends the first-frame loop then, and
    later the qasync loop's wait (`event`).

    It watches the window's own `closed` signal, not QApplication.lastWindowClosed: Qt 6
    emits that one only from inside QApplication.exec(), and the first-frame loop is a plain
    QEventLoop — a window closed before its first frame (a timed exit on a busy machine,
    the trader's close) left the run waiting in the qasync loop for ever."""

    def __init__(self, window: MainWindow, first_loop: QEventLoop) -> None:
        super().__init__()
        self.is_set = False
        self.event: asyncio.Event | None = None
        self._first_loop = first_loop
        self._window: MainWindow | None = window
        window.destroyed.connect(self.set)
        window.closed.connect(self.set)

    def detach(self) -> None:
        """The run is over: the window (a test may keep it and close it again) must not
        reach this run's first-frame loop, which is gone with it."""
        if self._window is not None:
            self._window.closed.disconnect(self.set)
            self._window = None

    def set(self, *_a: object) -> None:
        self.is_set = True
        self._first_loop.quit()
        if self.event is not None:
            self.event.set()


def _run_qasync(app: QApplication, closed: _Closed) -> None:
    """Run the qasync loop (Qt's loop under asyncio) until the window closes."""
    import asyncio

    import qasync

    loop = qasync.QEventLoop(app)
    try:
        previous = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        previous = None
    asyncio.set_event_loop(loop)
    closed.event = asyncio.Event()
    try:
        with loop:
            loop.run_until_complete(closed.event.wait())
    finally:
        closed.event = None
        asyncio.set_event_loop(previous if previous is not None and not previous.is_closed()
                               else None)


class _FirstFrame(QObject):
    """Runs `then` once, right after the window's first frame is painted (queued behind
    that paint, so the frame is complete and on screen first). A window that is never
    painted (started minimised, a platform that paints nothing) runs it after FALLBACK_MS."""

    FALLBACK_MS = 1000

    def __init__(self, window: MainWindow, then: Callable[[], None]) -> None:
        super().__init__(window)
        self._then: Callable[[], None] | None = then
        QTimer.singleShot(self.FALLBACK_MS, self, self._run)

    def eventFilter(self, obj: QObject, ev: QEvent) -> bool:
        if ev.type() == QEvent.Type.Paint and self._then is not None:
            obj.removeEventFilter(self)
            QTimer.singleShot(0, self, self._run)
        return False

    def cancel(self) -> None:
        """The run is over (the window may have closed before its first frame): nothing is
        to run any more, and the filter leaves the window. Its `then` holds the window, and
        the window (as Qt parent) holds this filter: left in place, that cycle kept the
        window alive to the interpreter's exit, where tearing down its filter segfaulted."""
        self._then = None
        self.parent().removeEventFilter(self)

    def _run(self) -> None:
        then, self._then = self._then, None
        if then is not None:
            then()


class _StartFailed(QObject):
    """Closes the window when the engine's background start fails (emitted on the helper
    thread, delivered on the GUI thread)."""

    failed = Signal(str)

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self._window = window
        self.failed.connect(self._close)

    def _close(self, message: str) -> None:
        self._window.notify(f"⚠ the engine did not start: {message}")
        self._window.ask_before_quit = False
        self._window.close()


class _ChartLoaded(QObject):
    """Builds the chart on the GUI thread once its module (pyqtgraph) is imported."""

    loaded = Signal()

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.loaded.connect(window.build_chart)


# attribute reads per event-loop turn while the Qt classes are made (a new class ~0.3 ms)
QT_CLASSES_SLICE = 16


class _ChartImport(QObject):
    """The chart module's import on a helper thread, started once PySide6's Qt classes exist.

    PySide6 makes a module's Python classes lazily, at the first read of each name, and
    pyqtgraph's import reads every name of QtCore, QtGui and QtWidgets
    (`pyqtgraph.Qt._copy_attrs`, 721 names): on the helper thread it made them while the GUI
    thread ran Qt, and a spawned window died with SIGSEGV there (faulthandler: the helper
    in `_copy_attrs`, the GUI thread in the event loop; one spawn in ~10 on a loaded
    machine). The GUI thread reads those names first, `QT_CLASSES_SLICE` per turn of its
    event loop (a heartbeat is never held for long), so the helper only finds classes that
    already exist; the chart comes ~0.3 s later, the first frame no later."""

    def __init__(self, window: MainWindow, load: Callable[[], None]) -> None:
        super().__init__(window)
        from PySide6 import QtCore, QtGui, QtWidgets

        self._names = [(m, n) for m in (QtCore, QtGui, QtWidgets) for n in dir(m)]
        self._next = 0
        self.import_thread = threading.Thread(target=load, name="pmgui-chart-import", daemon=True)
        self._timer = QTimer(self)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._step)
        self._timer.start()

    def _step(self) -> None:
        end = min(self._next + QT_CLASSES_SLICE, len(self._names))
        for module, name in self._names[self._next:end]:
            try:
                getattr(module, name)
            except Exception:  # a name PySide6 lists but cannot make
                log.debug("Qt name %s.%s", module.__name__, name, exc_info=True)
        self._next = end
        if end == len(self._names):
            self._timer.stop()
            self.import_thread.start()

    def cancel(self) -> None:
        """The run ends: an import not started yet is not started."""
        self._timer.stop()

    def join(self) -> None:
        if self.import_thread.ident is not None:
            self.import_thread.join()


def _after_first_frame(window: MainWindow, engine: EngineHandle) -> _ChartImport:
    """Start an engine that waits for the window, and build the chart: its module
    (pyqtgraph, a few hundred ms) is imported on a helper thread, so the window that has
    just appeared stays responsive; the widget is then built on the GUI thread (anything
    needing the chart sooner builds it at once, waiting for that import)."""
    start = getattr(engine, "start_in_background", None)
    if start is not None:
        closer = _StartFailed(window)
        start(on_failed=lambda exc: closer.failed.emit(str(exc)))
    chart_loaded = _ChartLoaded(window)

    def load() -> None:
        try:
            import_module("pmgui.ui.chart")
        except BaseException:  # build_chart raises it again, on the GUI thread
            log.debug("importing the chart failed", exc_info=True)
        try:
            chart_loaded.loaded.emit()
        except RuntimeError:  # the window is gone
            pass

    return _ChartImport(window, load)


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
