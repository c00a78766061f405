"""One piece of the window's periodic work per event-loop turn.

In a storm the window's periodic jobs — the table's flush, the action log's commit, the
account's sums, each a few milliseconds of GUI-thread CPU — come due on timers of their own
and often in the same pass of Qt's timer list, so they ran back to back, with the repaints
they caused, in one stretch of 15–25 ms of CPU. The engine's thread takes the interpreter
lock from a stretch held past the switch interval (5 ms) and the GUI thread waits to get it
back, so such a stretch held the window for 50–150 ms of wall time: no input, no other timer,
no repaint meanwhile (the GUI storm's stalls grew with the CPU of the stretch, not with the
number of calls in it).

`Turns` runs the jobs handed to it one per turn from a zero-interval timer, started again
when the job is done: a timer that came due during a job (the heartbeat, an input-driven one)
is earlier in Qt's timer list than the next job and runs first, and the repaint a job caused
runs before the next job too (posted events come before timers in a loop turn). A job is
keyed: handing on a key already waiting does not queue it twice (jobs read the newest state
when they run, so one run serves every request made before it). A job names the Qt object
it works on (`owner`): once that object is deleted — a window closed while its jobs waited —
the job is dropped, not run on deleted widgets, and a new object that got the old one's
`id()` for its key is not kept waiting behind it.

A job's repaint can be held for the next turn too (`paint_later`): Qt paints a change in the
posted event that processes it, run before the timers of the next pass, so a job and the
repaint it caused were one stretch (the chart's redraw and its paint, the log's commit and its
paint: 12–20 ms of GUI CPU in a storm, the longest). With the widget's updates off through the
job, the job's changes ask for no paint; the next turn turns them on again, which repaints the
whole widget once, with the new state: a timer that came due during the job runs between.
A repaint of every pixel of a large widget is itself a long stretch (the action log's, every
row on screen new at each commit in a storm: 2-3 ms of GUI CPU): `parts` splits it into
horizontal bands, one repainted per turn, top first.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtWidgets import QWidget
from shiboken6 import isValid

Job = tuple[Callable[[], None], QObject | None]


def _alive(job: Job) -> bool:
    owner = job[1]
    return owner is None or isValid(owner)


class Turns(QObject):
    """A queue of GUI-thread jobs, one run per event-loop turn (see the module)."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._jobs: dict[Hashable, Job] = {}  # waiting, in the order asked
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._run_one)
        self.runs = 0  # jobs run so far (tests and diagnostics)

    def later(self, key: Hashable, job: Callable[[], None], *, owner: QObject | None = None,
              first: bool = False) -> None:
        """Run `job` on a later turn, after the jobs already waiting — before them with
        `first` (the table's flush: its prices are what the trader reads, the others can
        wait a turn) — once: a key waiting already keeps its place and its job. `owner`:
        the Qt object the job works on; the job is dropped once it is deleted."""
        waiting = self._jobs.get(key)
        if waiting is not None and not _alive(waiting):
            del self._jobs[key]  # its owner is gone (and `key` may be a new object's id)
            waiting = None
        if waiting is None:
            if first and self._jobs:
                self._jobs = {key: (job, owner), **self._jobs}
            else:
                self._jobs[key] = (job, owner)
        if not self._timer.isActive():
            self._timer.start()

    def waiting(self, key: Hashable) -> bool:
        return key in self._jobs

    def cancel(self, key: Hashable) -> None:
        """Forget the job waiting under `key` (its caller has just done the work itself)."""
        self._jobs.pop(key, None)

    def paint_later(self, widget: QWidget, *, parts: int = 1) -> None:
        """Hold `widget`'s repaints until a later turn (see the module): call it before the
        job's changes. A widget hidden or already held is left as it is. With `parts` > 1
        the repaint comes in that many bands, one per turn."""
        if not widget.isVisible() or not widget.updatesEnabled():
            return
        widget.setUpdatesEnabled(False)
        if parts <= 1 or widget.findChild(QWidget):  # (bands: for a widget without children)
            # (turned on again, Qt updates the whole widget)
            self.later(("paint", id(widget)), lambda: widget.setUpdatesEnabled(True),
                       owner=widget)
        else:
            self.later(("paint", id(widget)), lambda: self._paint_part(widget, 0, parts),
                       owner=widget)

    def _paint_part(self, widget: QWidget, i: int, parts: int) -> None:
        """Band `i` of a held widget's repaint; the next on the next turn, ahead of the jobs
        waiting. The first turns the widget's updates on again without Qt's update of the
        whole of it. A widget held again meanwhile (a job after the last band) is turned on
        as `paint_later` does: one repaint of all of it."""
        if i == 0:
            widget.setAttribute(Qt.WidgetAttribute.WA_ForceUpdatesDisabled, False)
            widget.setAttribute(Qt.WidgetAttribute.WA_UpdatesDisabled, False)
        elif not widget.updatesEnabled():
            widget.setUpdatesEnabled(True)
            return
        w, h = widget.width(), widget.height()
        top, bottom = h * i // parts, h * (i + 1) // parts if i + 1 < parts else h
        widget.update(0, top, w, bottom - top)
        if i + 1 < parts:
            self.later(("paint", id(widget)), lambda: self._paint_part(widget, i + 1, parts),
                       owner=widget, first=True)

    def _run_one(self) -> None:
        while self._jobs:
            job = self._jobs.pop(next(iter(self._jobs)))
            if _alive(job):
                break
        else:
            return  # only jobs of deleted objects were waiting
        self.runs += 1
        try:
            job[0]()
        finally:
            # started after the job: a timer that came due meanwhile is ahead of it
            if self._jobs:
                self._timer.start()
