"""The interpreter's switch interval while the window runs: 1 ms, not CPython's 5 ms.

The window's GUI thread and the engine's manager thread share one interpreter lock. When
the GUI thread needs it (a timer, a paint calling into Python, a job of `Turns`) while the
engine's thread runs Python, it waits for the switch interval before CPython makes the other
thread let go — and a stretch of GUI work that lets the lock go inside (a Qt call) can wait
again each time the engine takes it meanwhile. In the GUI storm (500 rows, 2,000 ticks/s)
the waits for the lock were most of the window's own share of its stalls. Measured paired
against the same code at 5 ms (the bench's GUI storm, 10 s, the interval set for the whole
process): the longest stall less the GUI thread's waits for a CPU 11.7 ms median [11.2-12.5]
against 13.4 [10.2-30.8] (5 pairs, quiet host), 28 against 43-44 (3 pairs, loaded host); GUI
CPU per tick and the displayed price's lag unchanged within their spreads.

Only while the window runs (`run_gui`); a headless engine keeps CPython's interval (one
thread wants the lock there, and no switch is ever forced). An interval set shorter before
is kept.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

SWITCH_INTERVAL_S = 0.001


@contextmanager
def short_switch_interval(seconds: float = SWITCH_INTERVAL_S) -> Iterator[float]:
    """The switch interval at most `seconds` for the block; as it was afterwards."""
    was = sys.getswitchinterval()
    sys.setswitchinterval(min(was, seconds))
    try:
        yield sys.getswitchinterval()
    finally:
        sys.setswitchinterval(was)
