"""The cyclic collector pinned to the GUI thread (pmgui.ui.collector, run_gui).

A collection on another thread deletes the GUI thread's Qt objects found in garbage cycles
on that thread; Qt says "Timers cannot be stopped from another thread" for a QTimer, and a
widget deleted under a paint crashes the window. These tests build exactly that cycle. (Not
shown here without the collector: the GUI thread's timer list would keep the deleted timer,
and a later test in this process could crash on it.)
"""

from __future__ import annotations

import gc
import threading
import weakref

import pytest
from PySide6.QtCore import QTimer, qInstallMessageHandler

from pmgui.ui.collector import GuiThreadCollector, due_generation


class _Holder:
    """A plain object in a cycle with a running QTimer (the shape of a dialog and its
    lambdas): only the cyclic collector frees it."""


def _qt_cycle() -> weakref.ref:
    h = _Holder()
    t = QTimer()
    t.setInterval(60_000)
    t.start()
    h.timer, h.me, t.holder = t, h, h
    return weakref.ref(h)


@pytest.fixture
def qt_messages():
    seen: list[str] = []
    previous = qInstallMessageHandler(lambda _mode, _ctx, msg: seen.append(msg))
    yield seen
    qInstallMessageHandler(previous)


@pytest.fixture
def collections_by_thread():
    threads: list[int] = []

    def on_gc(phase: str, _info: dict) -> None:
        if phase == "start":
            threads.append(threading.get_ident())

    gc.callbacks.append(on_gc)
    yield threads
    gc.callbacks.remove(on_gc)


@pytest.fixture
def gc_state():
    enabled, thresholds = gc.isenabled(), gc.get_threshold()
    yield
    gc.set_threshold(*thresholds)
    (gc.enable if enabled else gc.disable)()


def _allocate_on_another_thread() -> list:
    """What the engine thread does in a storm: allocate tracked objects far past every
    generation's threshold. They are kept (returned): CPython counts allocations net of
    frees, so objects freed at once would leave nothing due for the GUI's next check."""
    kept: list = []

    def work() -> None:
        kept.extend([i] for i in range(200_000))

    t = threading.Thread(target=work)
    t.start()
    t.join()
    return kept


def test_due_generation_is_the_oldest_over_its_threshold():
    assert due_generation((0, 0, 0), (700, 10, 10)) is None
    assert due_generation((701, 0, 0), (700, 10, 10)) == 0
    assert due_generation((701, 11, 0), (700, 10, 10)) == 1
    assert due_generation((701, 11, 11), (700, 10, 10)) == 2
    assert due_generation((5, 0, 11), (700, 10, 10)) == 2
    assert due_generation((10**6, 99, 99), (0, 10, 10)) is None  # threshold 0: collection off


def test_collections_run_on_the_gui_thread_only(qapp, qtbot, gc_state, qt_messages,
                                                collections_by_thread):
    gc.enable()
    gc.set_threshold(700, 10, 10)
    collector = GuiThreadCollector(interval_ms=5)
    collector.start()
    try:
        assert not gc.isenabled()
        cycle = _qt_cycle()
        kept = _allocate_on_another_thread()
        assert cycle() is not None  # nothing collected it off the GUI thread
        qtbot.waitUntil(lambda: cycle() is None, timeout=5000)  # the GUI's timer did
        del kept
    finally:
        collector.stop()
    assert gc.isenabled()  # back as it was
    gui = threading.get_ident()
    assert collections_by_thread and set(collections_by_thread) == {gui}
    assert collector.collections >= 1
    assert not [m for m in qt_messages if "another thread" in m]


def test_stop_restores_a_disabled_collector_and_start_stop_are_idempotent(qapp, gc_state):
    gc.disable()
    collector = GuiThreadCollector()
    collector.stop()  # never started: changes nothing
    assert not gc.isenabled()
    collector.start()
    collector.start()
    assert collector.running and not gc.isenabled()
    collector.stop()
    collector.stop()
    assert not collector.running and not gc.isenabled()


def test_run_gui_pins_collection_while_the_window_runs_and_stops_the_engine_under_it(
        qapp, tmp_path, gc_state, monkeypatch):
    from pmgui.ui.app import run_gui
    from tests.ui_doubles import EngineDouble

    monkeypatch.setenv("PMGUI_UI_SETTINGS", str(tmp_path / "ui.ini"))
    gc.enable()
    seen: dict[str, bool] = {}
    assert run_gui(EngineDouble(), exit_after=0.1,
                   on_window=lambda _w: seen.__setitem__("window", gc.isenabled()),
                   on_close=lambda: seen.__setitem__("close", gc.isenabled())) == 0
    assert seen == {"window": False, "close": False}  # pinned to the GUI thread meanwhile
    assert gc.isenabled()  # CPython's own collector is back afterwards
