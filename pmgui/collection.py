"""No cyclic collection inside the booking of a venue's report: it runs right after.

A stop's fill is booked in one synchronous stretch (the ledger's merge, the closed position,
its log line, one commit) and the close is acknowledged at its end. CPython starts a
collection on whichever allocation crosses the young generation's threshold, so about one
booking in three held a young collection (0.5-1.5 ms) and one in fifteen a middle one
(2-3.5 ms at 500 positions, more at 2,000): the tail of tick → close acknowledged. Inside
`collection_deferred()` the young threshold is out of reach; the allocation count goes on,
so the first allocation after the block starts the collection CPython would have run —
the same work, after the acknowledgement instead of before it.

Only the thresholds change, never whether collection is enabled: the window pins
collection to the GUI thread by disabling it (`pmgui.ui.collector`), and a block here must
not switch it back on. Blocks nest and may run on two engine threads at once: the first in
saves the thresholds, the last out restores them.

A block must not await a venue (another task would run with collection deferred for as long
as the venue takes to answer). The paper venue's block around a matched tick (`PaperExchange.
_matched`: its matching, its commit and its reports to the engine, which books them) is the
one that awaits: a report of the simulated venue is booked without suspending in the common
case (a stop's fill and its close); when it suspends (a resting entry's fill places its
protection), collection is put off for that long, not dropped. The module holds nothing but
the thresholds, so it belongs to no layer (DESIGN §1): the engine and the paper venue share
it without the exchange layer importing the engine.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

DEFERRED = 1 << 30  # young threshold inside a block: never reached by one booking

_lock = threading.Lock()
_depth = 0
_saved: tuple[int, int, int] = (0, 0, 0)


@contextmanager
def collection_deferred() -> Iterator[None]:
    """No cyclic collection starts inside the block; a due one starts right after it."""
    global _depth, _saved
    with _lock:
        if _depth == 0:
            _saved = gc.get_threshold()
            if _saved[0]:  # 0: collection is off altogether (nothing to defer)
                gc.set_threshold(DEFERRED, _saved[1], _saved[2])
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved[0]:
                gc.set_threshold(*_saved)
