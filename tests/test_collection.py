"""The booking of a venue's report, and the paper venue's matching that makes it, hold no
cyclic collection: a due one runs right after the close is acknowledged
(`pmgui.collection`)."""

from __future__ import annotations

import gc
import threading
from pathlib import Path

from pmgui.collection import DEFERRED, collection_deferred
from pmgui.domain.enums import ActionType, PositionStatus
from pmgui.domain.models import Tick
from pmgui.engine.events import ActionTaken, Event
from pmgui.store.db import Store
from tests.engine_support import SYMBOL, one_long_open

T0 = 1_700_000_000.0
# a young collection on every allocation of a tracked object, never an older one
EVERY_ALLOCATION = (1, 10**6, 10**6)


async def _cross_the_stop_with_a_collection_always_due(h, seen: list[str]) -> tuple[int, ...]:
    """Deliver the tick through the position's stop with a young collection due on every
    allocation, recording into `seen` each collection started on this thread and the close
    acknowledged (beside what the caller's own spies record); returns the thresholds in
    force right after the delivery."""

    def listen(ev: Event) -> None:
        if isinstance(ev, ActionTaken) and ev.action.type is ActionType.CLOSE:
            seen.append("acknowledged")

    def on_collection(phase: str, _info: dict) -> None:
        if phase == "start" and threading.current_thread() is threading.main_thread():
            seen.append("collection")

    h.engine.outbox.add_listener(listen)
    thresholds = gc.get_threshold()
    gc.callbacks.append(on_collection)
    gc.set_threshold(*EVERY_ALLOCATION)
    try:
        await h.paper.deliver(Tick(SYMBOL, 58_000.0, T0 + 1), h.engine)  # through its stop
        return gc.get_threshold()
    finally:
        gc.set_threshold(*thresholds)
        gc.callbacks.remove(on_collection)


async def _closed_on_disk(h, rt, path: Path) -> None:
    assert rt.id not in h.engine.book
    await h.engine.shutdown()
    with Store.open(path, readonly=True) as reader:
        assert reader.load_position(rt.id).status is PositionStatus.CLOSED


async def test_a_stop_fill_is_booked_and_acknowledged_without_a_collection(
        tmp_path: Path, monkeypatch) -> None:
    """With a collection due on every allocation, none starts between the ledger taking the
    stop fill's report and the close acknowledged; one starts right after (put off, not
    dropped), and the close is on disk."""
    h, rt = await one_long_open(tmp_path / "x.db")
    seen: list[str] = []
    real_apply = h.engine.ledger.apply

    def apply(*a, **k):
        seen.append("report")
        return real_apply(*a, **k)

    monkeypatch.setattr(h.engine.ledger, "apply", apply)
    after = await _cross_the_stop_with_a_collection_always_due(h, seen)
    ack = seen.index("acknowledged")
    report = max(i for i, e in enumerate(seen[:ack]) if e == "report")
    assert "collection" in seen[:report]  # collections were due all along
    assert "collection" not in seen[report:ack]
    assert "collection" in seen[ack:]
    assert after == EVERY_ALLOCATION  # the thresholds in force again
    await _closed_on_disk(h, rt, tmp_path / "x.db")


async def test_a_stop_crossing_is_matched_reported_and_acknowledged_without_a_collection(
        tmp_path: Path, monkeypatch) -> None:
    """With a collection due on every allocation, none starts from the paper venue matching
    the tick through the stop (its fill, its commit, its report) to the close acknowledged;
    one starts right after, and the close is on disk."""
    h, rt = await one_long_open(tmp_path / "x.db")
    seen: list[str] = []
    real_match = h.paper._match

    def match(*a, **k):
        seen.append("match")
        return real_match(*a, **k)

    monkeypatch.setattr(h.paper, "_match", match)
    after = await _cross_the_stop_with_a_collection_always_due(h, seen)
    start, ack = seen.index("match"), seen.index("acknowledged")
    assert "collection" not in seen[start:ack]
    assert "collection" in seen[ack:]
    assert after == EVERY_ALLOCATION
    await _closed_on_disk(h, rt, tmp_path / "x.db")


def test_blocks_nest_and_leave_the_thresholds_and_the_switch_as_found() -> None:
    """The outermost block restores the thresholds; collection switched off (the window's
    GUI-thread collector) stays off, and thresholds of 0 (collection off) are left alone."""
    thresholds, enabled = gc.get_threshold(), gc.isenabled()
    try:
        gc.set_threshold(100, 5, 1400)
        with collection_deferred():
            with collection_deferred():
                assert gc.get_threshold() == (DEFERRED, 5, 1400)
            assert gc.get_threshold() == (DEFERRED, 5, 1400)
        assert gc.get_threshold() == (100, 5, 1400)
        gc.disable()
        with collection_deferred():
            assert not gc.isenabled()
        assert not gc.isenabled() and gc.get_threshold() == (100, 5, 1400)
        gc.set_threshold(0, 5, 1400)
        with collection_deferred():
            assert gc.get_threshold() == (0, 5, 1400)
        assert gc.get_threshold() == (0, 5, 1400)
    finally:
        gc.set_threshold(*thresholds)
        if enabled:
            gc.enable()
