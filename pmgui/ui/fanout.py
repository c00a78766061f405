"""Fanout: a GUI-thread signal whose receivers are called in Python, for the bridge's lists.

A Qt signal emitted from Python to Python slots lets the interpreter lock go inside `emit`
and takes it back for each slot: k slots are k + 2 hand-overs of the lock (counted with a
probe on CPython's `take_gil`: 6,000 for 1,000 emits to 4 slots). While the engine's thread is
busy it takes the lock at one of them, and the window then waits up to a switch interval
(5 ms) to get it back. The bridge emits a list per pump to 2-4 slots each (~75 lists a second
in a storm): in the GUI storm the waits inside those emits were the largest share of the GUI
thread's waits for the lock (30 a second, 118 ms/s of 281; perf's `take_gil` waits matched to
the Python call they fell in).

`Fanout` calls its receivers in Python on the emitting thread, in the order connected — what
a Qt direct connection does when sender and receivers share the thread — and, as Qt: a
receiver that is a method of a deleted Qt object is dropped, not called, and an exception
in one receiver is reported (`sys.excepthook`, as PySide reports a slot's) without keeping
the value from the others. Only for senders and receivers on the GUI thread.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject
from shiboken6 import isValid

Slot = Callable[[Any], object]


def _gone(slot: Slot) -> bool:
    owner = getattr(slot, "__self__", None)
    return isinstance(owner, QObject) and not isValid(owner)


class Fanout:
    """`connect`, `disconnect` and `emit(value)` of a one-argument signal (see the module)."""

    def __init__(self) -> None:
        self._slots: tuple[Slot, ...] = ()  # replaced, never mutated (emit iterates it)

    def connect(self, slot: Slot) -> None:
        self._slots = (*self._slots, slot)

    def disconnect(self, slot: Slot) -> bool:
        """Remove every connection of `slot`; False when it was not connected."""
        kept = tuple(s for s in self._slots if s != slot)
        removed = len(kept) != len(self._slots)
        self._slots = kept
        return removed

    @property
    def receivers(self) -> int:
        return len(self._slots)

    def emit(self, value: object) -> None:
        for slot in self._slots:
            if _gone(slot):
                self.disconnect(slot)
                continue
            try:
                slot(value)
            except Exception:
                sys.excepthook(*sys.exc_info())
