"""A closed position's journal row corrected by the ledger (a fill re-booked at the venue's
price, a fee booked with an estimate replaced by the venue's) is announced with one
`PositionCorrected`, published only once the corrected row is committed: never for an open
position (its snapshots carry it), never for a correction that changed nothing, never for
one that rolled back, never twice for a report told again.

The real ledger on a real SQLite journal; each announcement is checked against the journal
read through a connection of its own (what another reader sees is what was committed)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from pmgui.domain.enums import OrderRole, OrderSide, OrderStatus, OrderType, PositionStatus, Side
from pmgui.domain.errors import StoreError
from pmgui.domain.models import Fill, Order, OrderRequest, Position, Tranche
from pmgui.engine.events import Event, PositionCorrected
from pmgui.engine.ledger import Correction, OrderLedger
from pmgui.engine.outbox import Outbox
from pmgui.store.db import Store

SYM = "BTC/USDT:USDT"
TRIGGER = 49500.0
RATE = 0.0005
NOW = 1_700_000_000.0


class Announced:
    """The ledger's outbox listener: every PositionCorrected, with the journal's row as a
    separate reader saw it at that moment."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.events: list[PositionCorrected] = []
        self.seen: list[Position | None] = []

    def __call__(self, ev: Event) -> None:
        if isinstance(ev, PositionCorrected):
            reader = Store.open(self.path, readonly=True)
            try:
                self.seen.append(reader.load_position(ev.position.id))
            finally:
                reader.close()
            self.events.append(ev)


def _ledger(path: Path, hook: list[Correction] | None = None
            ) -> tuple[OrderLedger, Announced]:
    outbox = Outbox(buffered=False)
    heard = Announced(path)
    outbox.add_listener(heard, types=(PositionCorrected,))
    led = OrderLedger(Store.open(path), outbox, lambda: NOW)
    led.load()
    if hook is not None:  # an engine holding the position open books it
        led.rebook = lambda c: hook.append(c) is None
    return led, heard


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "j.db"


def _closed_long(store: Store, exit_price: float, fees: float, realized: float) -> Position:
    pos = Position("P1", SYM, Side.LONG, 0.0, 50000.0, 10.0, 0.0, 1.0,
                   status=PositionStatus.CLOSED, exit_price=exit_price,
                   exit_reason="stop_loss", fees_paid=fees, realized_pnl=realized,
                   closed_at=NOW - 60)
    store.save_position(pos)
    return pos


def _sent(ledger: OrderLedger, request: OrderRequest) -> Order:
    order = ledger.journal(request)
    ledger.mark_sent(request.client_id)
    acked = replace(order, status=OrderStatus.OPEN, exchange_id="x1")
    ledger.apply(acked, ())
    return acked


def _stop() -> OrderRequest:
    return OrderRequest("pmg-s", SYM, OrderSide.SELL, OrderType.STOP_MARKET, 1.0,
                        trigger_price=TRIGGER, reduce_only=True, position_id="P1",
                        role=OrderRole.STOP_LOSS, reason="stop_loss")


def _filled(order: Order, average: float | None = None) -> Order:
    return replace(order, status=OrderStatus.FILLED, filled=1.0, average=average)


def _stopped_at_the_trigger(ledger: OrderLedger) -> tuple[Order, Position]:
    """The stop filled without a price: booked at its trigger, the long closed there (as the
    engine journaled it)."""
    order = _sent(ledger, _stop())
    ledger.apply(_filled(order), ())
    est = TRIGGER * RATE
    return order, _closed_long(ledger.store, TRIGGER, 25.0 + est,
                               (TRIGGER - 50000.0) - 25.0 - est)


def test_a_closed_positions_correction_is_announced_once_after_its_commit(db: Path) -> None:
    ledger, heard = _ledger(db)
    order, booked = _stopped_at_the_trigger(ledger)
    assert heard.events == []  # a booking at a reference is no correction
    venue = Fill("v:1", "pmg-s", SYM, OrderSide.SELL, 1.0, 49400.0, 19.76, NOW)
    ledger.apply(_filled(order, 49400.0), (venue,))
    (ev,) = heard.events
    row = ledger.store.load_position("P1")
    assert ev.position == row  # the corrected row, as journaled
    assert (row.exit_price, row.realized_pnl) == (pytest.approx(49400.0),
                                                  pytest.approx(-600.0 - 25.0 - 19.76))
    assert row.realized_pnl != booked.realized_pnl
    # a reader of its own saw the corrected row when it was announced: committed before
    assert heard.seen == [row]
    assert ev.ts == NOW and "re-booked at the venue's price 49400" in ev.what
    assert "realised P/L" in ev.what and "exit price 49500 → 49400" in ev.what
    # the venue tells it again (the REST resync, a reconciliation): nothing more
    for _ in range(2):
        ledger.apply(_filled(order, 49400.0), (venue,))
    assert len(heard.events) == 1
    ledger.store.close()


def test_an_open_positions_correction_is_not_announced(db: Path) -> None:
    """The engine's hook books it on the open position (its snapshots show it); and with no
    hook the journal's open row is not the ledger's to write: no announcement either way."""
    for hook in ([], None):
        path = db.with_name(f"j{hook is None}.db")
        ledger, heard = _ledger(path, hook)
        order = _sent(ledger, OrderRequest("pmg-e", SYM, OrderSide.BUY, OrderType.LIMIT, 1.0,
                                           price=50000.0, position_id="P1",
                                           role=OrderRole.ENTRY, reason="manual"))
        ledger.apply(_filled(order), ())
        ledger.store.save_position(Position("P1", SYM, Side.LONG, 1.0, 50000.0, 10.0, 0.0, 1.0,
                                            tranches=(Tranche("pmg-e", 1.0, 50000.0, 0.0),)))
        venue = Fill("v:1", "pmg-e", SYM, OrderSide.BUY, 1.0, 49990.0, 9.998, NOW)
        ledger.apply(_filled(order, 49990.0), (venue,))
        assert heard.events == []
        assert hook is None or len(hook) == 1  # (booked by the engine)
        ledger.store.close()


def test_a_correction_that_changes_nothing_is_not_announced(db: Path) -> None:
    """The venue's price is the trigger and its fee the estimate: the row stays as it was
    (not written again) and nothing is announced."""
    ledger, heard = _ledger(db)
    order, booked = _stopped_at_the_trigger(ledger)
    venue = Fill("v:1", "pmg-s", SYM, OrderSide.SELL, 1.0, TRIGGER, TRIGGER * RATE, NOW)
    ledger.apply(_filled(order, TRIGGER), (venue,))
    assert not ledger.corrects("pmg-s")  # done with: the venue priced it
    assert heard.events == []
    assert ledger.store.load_position("P1") == booked
    ledger.store.close()


def test_the_venues_fee_for_an_estimate_on_a_closed_position_is_announced(db: Path) -> None:
    ledger, heard = _ledger(db)
    req = OrderRequest("pmg-c", SYM, OrderSide.SELL, OrderType.MARKET, 1.0, reduce_only=True,
                       position_id="P1", role=OrderRole.REDUCE, reason="manual")
    order = ledger.journal(req)
    ledger.mark_sent("pmg-c")
    done = replace(order, status=OrderStatus.FILLED, filled=1.0, average=50000.0,
                   exchange_id="1")
    est = Fill("b:1", "pmg-c", SYM, OrderSide.SELL, 1.0, 50000.0, 25.0, NOW)
    ledger.apply(done, (est,))
    _closed_long(ledger.store, 50000.0, 50.0, -50.0)
    ledger.apply(done, (replace(est, fee=20.0),))  # the venue's commission, told later
    (ev,) = heard.events
    assert (ev.position.fees_paid, ev.position.realized_pnl) == (pytest.approx(45.0),
                                                                 pytest.approx(-45.0))
    assert "the venue's fee" in ev.what and heard.seen == [ev.position]
    ledger.apply(done, (replace(est, fee=20.0),))  # told again: the record says it already
    assert len(heard.events) == 1
    ledger.store.close()


def test_a_correction_the_callers_transaction_rolls_back_is_never_announced(db: Path) -> None:
    """The report applied inside the caller's transaction, which then fails: the row is
    as booked, and the next report's commit announces nothing of it."""
    ledger, heard = _ledger(db)
    order, booked = _stopped_at_the_trigger(ledger)
    venue = Fill("v:1", "pmg-s", SYM, OrderSide.SELL, 1.0, 49400.0, 19.76, NOW)
    with pytest.raises(StoreError), ledger.store.transaction():
        ledger.apply(_filled(order, 49400.0), (venue,))
        assert heard.events == []  # not committed yet
        raise StoreError("the caller's booking failed")
    assert ledger.store.load_position("P1") == booked
    other = _sent(ledger, replace(_stop(), client_id="pmg-t", position_id="P2"))
    ledger.apply(_filled(other, 49000.0), ())  # another report, committed
    assert heard.events == []
    ledger.store.close()


async def test_inside_the_callers_transaction_it_is_announced_after_that_commits(
        db: Path) -> None:
    """The engine books a fill's report with the close it completes in one commit of its
    own: the correction is announced on the loop's next turn, once that committed."""
    ledger, heard = _ledger(db)
    order, _booked = _stopped_at_the_trigger(ledger)
    venue = Fill("v:1", "pmg-s", SYM, OrderSide.SELL, 1.0, 49400.0, 19.76, NOW)
    loop = asyncio.get_running_loop()
    with ledger.store.transaction(whole=True):
        ledger.apply(_filled(order, 49400.0), (venue,))
        assert heard.events == []
    assert heard.events == []  # (its turn comes)
    turn = loop.create_future()
    loop.call_soon(turn.set_result, None)  # after the ledger's own callback
    await turn
    (ev,) = heard.events
    assert heard.seen == [ev.position] == [ledger.store.load_position("P1")]
    ledger.store.close()
