"""How often a piece of code lets the interpreter lock go, counted without a clock.

While the engine's thread is busy it takes the lock wherever the GUI thread lets it go, and
the window then waits up to a switch interval to get it back. `times_let_go(work)` runs
`work` with another thread that can only run when the lock is let go (the switch interval is
made far longer than the test) and yields it back at once; the count is how many times that
thread ran meanwhile."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable


def times_let_go(work: Callable[[], None]) -> int:
    steps = [0]
    stop = threading.Event()
    started = threading.Event()

    def other() -> None:
        started.set()
        while not stop.is_set():
            steps[0] += 1
            time.sleep(0)  # lets the lock go: the waiting thread takes it back at once

    interval = sys.getswitchinterval()
    thread = threading.Thread(target=other, daemon=True)
    sys.setswitchinterval(30.0)
    try:
        thread.start()
        started.wait()  # (lets the lock go: the other thread runs until its sleep)
        before = steps[0]
        work()
        return steps[0] - before
    finally:
        stop.set()
        sys.setswitchinterval(interval)
        thread.join()
