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


def test_a_tiny_storm_against_vnpys_monitor_counts_the_events_it_was_sent(qapp):
    """The baseline's CPU per tick is per tick it handled (`GuiResult.handled`): the events
    signalled to it are counted where they are sent, each delivered tick sends its symbol's
    positions' snapshots, and the ticks handled are never more than those delivered."""
    from pmgui.bench.gui import run_gui_storm

    res = run_gui_storm(20, 300.0, 1.0, baseline=True)
    assert res.events is not None and res.events >= res.delivered > 0
    assert 0 < res.updates and 0 < res.handled <= res.delivered
    assert res.cpu_per_tick == pytest.approx(res.gui_cpu / res.handled)
