"""The cyclic garbage collector pinned to the GUI thread.

CPython runs a collection in whichever thread's allocation crosses a generation's threshold:
in the window's process that is usually the engine's thread (it allocates the most), the
engine's start-up thread, or the remote link's client. A collection frees every unreachable
cycle it finds, including cycles the GUI thread made that hold a Qt object (a closed dialog
and its lambdas, a chart item and its parent's references). PySide6 then deletes that C++
object on the collecting thread: Qt warns "Timers cannot be stopped from another thread"
for a QTimer, and a widget or graphics item deleted while the GUI thread paints it takes the
window down with a segfault (seen once, at start-up, while the start-up thread imported the
engine). pyqtgraph and calibre solve it the same way: the automatic collector is off while
the window runs, and a GUI-thread timer collects whenever CPython itself would have — the
oldest generation whose count is over its threshold, with the thresholds in force (the
engine sets its own when it starts, see `pmgui.engine.thread`). Reference counting still
frees everything without a cycle at once, on any thread; only cycles wait for the timer.

A headless engine keeps CPython's automatic collector: there is no GUI thread to pin to.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

from PySide6.QtCore import QObject, QTimer

# ms between two checks. Measured in the GUI storm (500 rows, 2,000 ticks/s, 10 s): at 20 ms
# the GUI thread ran ~430 young collections (0.5 ms each) and ~65 middle ones (3 ms each), as
# much collector CPU in all as CPython's own spread over both threads (~0.45 s against
# ~0.41 s); half the interval halves each pause. An idle window's check is three integer reads.
CHECK_EVERY_MS = 10


def due_generation(counts: tuple[int, int, int], thresholds: tuple[int, int, int]) -> int | None:
    """The generation CPython would collect now (the oldest one over its threshold), or None.
    A threshold of 0 for the youngest generation means collection is off altogether."""
    if thresholds[0] == 0:
        return None
    for gen in (2, 1, 0):
        if counts[gen] > thresholds[gen]:
            return gen
    return None


class GuiThreadCollector(QObject):
    """Runs the cyclic collector on the thread it lives on (the GUI thread), on a timer.

    `start` switches CPython's automatic collection off (remembering whether it was on);
    `stop` runs a full collection here, so that no cycle of the window's is left for another
    thread to find, and puts automatic collection back as it found it. A collector that is
    stopped or was never started changes nothing."""

    def __init__(self, parent: QObject | None = None, *, interval_ms: int = CHECK_EVERY_MS
                 ) -> None:
        super().__init__(parent)
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.check)
        self._was_enabled: bool | None = None  # None: not running
        self.collections = 0  # collections this collector ran (for tests and the bench)

    @property
    def running(self) -> bool:
        return self._was_enabled is not None

    def start(self) -> None:
        if self.running:
            return
        self._was_enabled = gc.isenabled()
        gc.disable()
        self._timer.start()

    def stop(self) -> None:
        if not self.running:
            return
        self._timer.stop()
        gc.collect()
        self.collections += 1
        was_enabled, self._was_enabled = self._was_enabled, None
        if was_enabled:
            gc.enable()

    def check(self) -> None:
        """Collect the generation that is due, if one is (what CPython does on allocation)."""
        gen = due_generation(gc.get_count(), gc.get_threshold())
        if gen is not None:
            gc.collect(gen)
            self.collections += 1


@contextmanager
def pinned_to_gui_thread(parent: QObject) -> Iterator[GuiThreadCollector]:
    """Collections on this (the GUI) thread only, for the block: a window's run, with the
    engine's stop inside it so that no other thread is left allocating when CPython's own
    collector is back."""
    collector = GuiThreadCollector(parent)
    collector.start()
    try:
        yield collector
    finally:
        collector.stop()
        collector.deleteLater()
