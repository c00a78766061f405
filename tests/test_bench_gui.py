"""The GUI storm's own measurement stays out of what it measures."""

from __future__ import annotations

import sys

import pytest

from pmgui.bench.gui import cpu_wait
from tests.gil_support import times_let_go


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="schedstat is Linux's")
def test_the_heartbeats_cpu_wait_reading_keeps_the_interpreter_lock():
    """The heartbeat reads the GUI thread's CPU wait at every beat; a read that let the
    interpreter lock go handed it to the engine's busy thread inside the measurement, and
    the wait to get it back was counted in the next gap as the window's stall."""
    reads: list[float | None] = []
    cpu_wait()  # (the thread's file opened on its first read)

    def beats() -> None:
        for _ in range(200):
            reads.append(cpu_wait())

    assert times_let_go(beats) == 0
    assert all(r is not None for r in reads) and reads == sorted(reads)  # type: ignore[type-var]
