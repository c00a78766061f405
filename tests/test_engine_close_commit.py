"""A stop's fill and the close it completes reach the journal in one commit."""

from __future__ import annotations

from pmgui.domain.enums import ActionType, OrderRole, OrderStatus, Side
from pmgui.domain.models import Tick
from pmgui.engine import commands as cmd
from pmgui.engine.events import ActionTaken, OrderSnapshot
from tests.engine_support import SYMBOL, one_long_open


def _transactions(statements: list[str]) -> list[list[str]]:
    """The statements grouped by top-level transaction (BEGIN … COMMIT)."""
    out: list[list[str]] = []
    for s in statements:
        if s == "BEGIN":
            out.append([])
        elif out and s != "COMMIT":
            out[-1].append(s)
    return out


async def test_the_stops_close_is_acknowledged_on_the_venues_fill_then_booked_in_one_commit(
        db_path):
    """The close the venue's stop carried out is acknowledged as soon as the venue reported
    it: the venue's commit of the fill is done, the engine's booking is not (it comes right
    after; a crash in between is booked again from the venue's word at the next start:
    tests/test_engine_close_crash.py). The booking is then one commit: the order's report
    (its status, its fill) and the closed position with its log line, committed whole — its
    writes open no savepoints of their own. The order's snapshot is published before the
    close's log line, as when both came after the commit."""
    h, rt = await one_long_open(db_path)
    stop = next(o for o in rt.pending() if o.role is OrderRole.STOP_LOSS)
    statements: list[str] = []
    at_ack: list[int] = []
    snapshot_first: list[bool] = []

    def listen(ev: object) -> None:
        if isinstance(ev, OrderSnapshot) and ev.order.client_id == stop.client_id \
                and ev.order.status is OrderStatus.FILLED:
            snapshot_first.append(not at_ack)
        if isinstance(ev, ActionTaken) and ev.action.type is ActionType.CLOSE:
            at_ack.append(len(statements))

    h.outbox.add_listener(listen)
    h.store.db.conn.set_trace_callback(statements.append)
    try:
        await h.paper.deliver(Tick(SYMBOL, 58_400.0, 1_700_000_060.0), h.engine)
    finally:
        h.store.db.conn.set_trace_callback(None)
    assert at_ack, "the stop's close was not published"
    assert snapshot_first == [True]
    before = statements[:at_ack[0]]
    # the venue's fill committed before the close was acknowledged ...
    venue = [t for t in _transactions(before)
             if any(s.startswith("INSERT INTO paper_fills") for s in t)]
    assert len(venue) == 1
    assert "COMMIT" in before[before.index(venue[0][0]):]
    # ... and nothing of the engine's booking written yet
    assert not [s for s in before if stop.client_id in s and (
        s.startswith("INSERT INTO fills") or s.startswith("UPDATE orders"))]
    assert not [s for s in before if s.startswith("INSERT INTO actions")]
    engine = [t for t in _transactions(statements)
              if any(s.startswith("INSERT INTO fills") and stop.client_id in s for s in t)]
    assert len(engine) == 1
    (booked,) = engine
    assert any(s.startswith("UPDATE orders SET status = ") and stop.client_id in s for s in booked)
    assert any(s.startswith("UPDATE positions") and "'closed'" in s for s in booked)
    assert any(s.startswith("INSERT INTO actions") for s in booked)
    # parts that mean nothing apart, booked whole: no savepoint per write (`whole=True`)
    assert not [s for s in booked if "SAVEPOINT" in s]
    assert h.store.order(stop.client_id).status is OrderStatus.FILLED
    assert not h.store.load_position(rt.id).is_open
    await h.engine.shutdown()


async def test_an_opens_booking_is_one_block_without_savepoints_or_lookups(db_path):
    """The entry's answer is booked in one commit: the position, its entry bound to it (the
    link with the entry's role) and its log line, committed whole (no savepoint per write)
    and the entry linked in the same write as its report, not looked up again to link it."""
    statements: list[str] = []
    h, _ = await one_long_open(db_path)
    h.store.db.conn.set_trace_callback(statements.append)
    try:
        await h.paper.deliver(Tick(SYMBOL, 60_000.0, 1_700_000_001.0), h.engine)
        res = await h.engine.handle(cmd.OpenPosition(SYMBOL, Side.SHORT, 0.01, 10,
                                                     sl=61_500.0, tp=59_000.0))
    finally:
        h.store.db.conn.set_trace_callback(None)
    booking = [t for t in _transactions(statements)
               if any(s.startswith("INSERT INTO actions") for s in t)]
    assert len(booking) == 1
    (booked,) = booking
    assert any(s.startswith("INSERT INTO order_links") and "'entry'" in s for s in booked)
    assert any(res.position_id in s for s in booked if s.startswith("INSERT INTO positions"))
    assert not [s for s in booked if "SAVEPOINT" in s or s.startswith("SELECT")]
    entry = next(o for o in h.store.linked_orders(res.position_id) if o.role is OrderRole.ENTRY)
    assert entry.status is OrderStatus.FILLED
    await h.engine.shutdown()
