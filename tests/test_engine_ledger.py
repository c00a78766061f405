"""The order ledger's state machine and fill-delta accounting, on a real SQLite journal."""

from __future__ import annotations

import re
from dataclasses import replace
from itertools import product
from pathlib import Path

import pytest

from pmgui.domain.enums import OrderRole, OrderSide, OrderStatus, OrderType
from pmgui.domain.models import Fill, Order, OrderRequest
from pmgui.engine.events import OrderSnapshot
from pmgui.engine.ledger import (
    ALLOWED,
    IllegalOrderTransition,
    OrderLedger,
    OrderState,
    allowed,
    state_of,
)
from pmgui.engine.outbox import Outbox
from pmgui.store.db import Store

S = OrderState
SYM = "BTC/USDT:USDT"

# The lifecycle, written out edge by edge (DESIGN §2): anything else is refused.
LEGAL = {
    (S.INTENDED, S.SENT), (S.INTENDED, S.REJECTED),
    *((S.SENT, s) for s in (S.ACKNOWLEDGED, S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED,
                            S.REJECTED, S.UNKNOWN)),
    *((S.UNKNOWN, s) for s in (S.ACKNOWLEDGED, S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED,
                               S.REJECTED)),
    (S.ACKNOWLEDGED, S.PARTIALLY_FILLED), (S.ACKNOWLEDGED, S.FILLED),
    (S.ACKNOWLEDGED, S.CANCELLED),
    (S.PARTIALLY_FILLED, S.PARTIALLY_FILLED), (S.PARTIALLY_FILLED, S.FILLED),
    (S.PARTIALLY_FILLED, S.CANCELLED),
}


@pytest.fixture
def ledger(tmp_path: Path):
    store = Store.open(tmp_path / "j.db")
    outbox = Outbox()
    led = OrderLedger(store, outbox, lambda: 1_700_000_000.0)
    led.seen = []  # type: ignore[attr-defined]
    outbox.add_listener(led.seen.append)  # type: ignore[attr-defined]
    yield led
    store.close()


def req(cid: str = "pmg-1", amount: float = 1.0) -> OrderRequest:
    return OrderRequest(cid, SYM, OrderSide.SELL, OrderType.MARKET, amount, reduce_only=True,
                        position_id="P1", role=OrderRole.REDUCE, reason="manual")


def venue(order: Order, status: OrderStatus, filled: float = 0.0,
          average: float | None = None) -> Order:
    return replace(order, status=status, filled=filled, average=average, exchange_id="x1")


def test_the_transition_table_is_exactly_the_lifecycle() -> None:
    for a, b in product(OrderState, OrderState):
        assert allowed(a, b) == ((a, b) in LEGAL), (a, b)
    assert all(not ALLOWED[s] for s in (S.FILLED, S.CANCELLED, S.REJECTED))


def test_a_fill_walks_the_lifecycle_and_is_booked_once(ledger: OrderLedger) -> None:
    order = ledger.journal(req())
    assert ledger.state("pmg-1") is S.INTENDED
    assert ledger.store.order("pmg-1").status is OrderStatus.PENDING  # journaled first
    ledger.mark_sent("pmg-1")
    assert ledger.state("pmg-1") is S.SENT and "pmg-1" in ledger.creating
    a = ledger.apply(venue(order, OrderStatus.OPEN), ())
    assert ledger.state("pmg-1") is S.ACKNOWLEDGED and a.delta == 0
    fill = Fill("f1", "pmg-1", SYM, OrderSide.SELL, 0.4, 100.0, 0.02, 1.0)
    a = ledger.apply(venue(order, OrderStatus.OPEN, 0.4, 100.0), (fill,))
    assert ledger.state("pmg-1") is S.PARTIALLY_FILLED
    assert (a.delta, a.price, a.fee) == (pytest.approx(0.4), 100.0, 0.02)
    again = ledger.apply(venue(order, OrderStatus.OPEN, 0.4, 100.0), (fill,))
    assert again.delta == 0  # the same fill twice (stream + REST) counts once
    a = ledger.apply(venue(order, OrderStatus.FILLED, 1.0, 102.0), ())
    assert ledger.state("pmg-1") is S.FILLED
    assert a.delta == pytest.approx(0.6)
    assert a.price == pytest.approx((102.0 * 1.0 - 100.0 * 0.4) / 0.6)  # the delta's own price
    assert "pmg-1" not in ledger.live and not ledger.of_position("P1")
    assert ledger.store.order("pmg-1").status is OrderStatus.FILLED
    assert [e.order.status for e in ledger.seen if isinstance(e, OrderSnapshot)] == \
        [OrderStatus.OPEN, OrderStatus.OPEN, OrderStatus.OPEN, OrderStatus.FILLED]


def test_a_report_that_changes_nothing_is_not_written_again(ledger: OrderLedger) -> None:
    """The stream's report of what the create call answered (the same order again) writes
    no row, publishes nothing and changes no state; a report that differs in anything is
    journaled as before."""
    order = ledger.journal(req())
    ledger.mark_sent("pmg-1")
    acked = venue(order, OrderStatus.OPEN)
    ledger.apply(acked, ())
    statements: list[str] = []
    ledger.store.db.conn.set_trace_callback(statements.append)
    told = len(ledger.seen)  # type: ignore[attr-defined]
    again = ledger.apply(acked, ())
    assert statements == [] and len(ledger.seen) == told  # type: ignore[attr-defined]
    assert again.delta == 0 and again.order == ledger.get("pmg-1")
    assert not again.lost_protection
    assert ledger.state("pmg-1") is S.ACKNOWLEDGED and "pmg-1" in ledger.live
    moved = replace(acked, updated_at=(acked.updated_at or 0.0) + 1.0)  # newer, same state
    ledger.apply(moved, ())
    ledger.store.db.conn.set_trace_callback(None)
    assert any(s.startswith("UPDATE orders SET updated_at = ") and s.count(" = ") == 2
               for s in statements)  # that column alone
    assert ledger.store.order("pmg-1").updated_at == moved.updated_at


def test_a_report_writes_only_the_columns_it_changed(ledger: OrderLedger) -> None:
    """A venue's report of a journaled order updates the columns that differ from the
    journal's row (not an upsert of every column, which rewrote the entries of all the
    table's indexes); the row read back is the report, and an order whose row is gone is
    written whole."""
    order = ledger.journal(req())
    ledger.mark_sent("pmg-1")
    statements: list[str] = []
    ledger.store.db.conn.set_trace_callback(statements.append)
    acked = venue(order, OrderStatus.OPEN)
    ledger.apply(acked, ())
    fill = Fill("f1", "pmg-1", SYM, OrderSide.SELL, 1.0, 100.0, 0.05, 1.0)
    filled = ledger.apply(venue(order, OrderStatus.FILLED, 1.0, 100.0), (fill,)).order
    ledger.store.db.conn.set_trace_callback(None)
    writes = [(s.split()[0], re.findall(r"(\w+) = ", s.split(" WHERE ")[0]))
              for s in statements if s.startswith(("INSERT INTO orders", "UPDATE orders"))]
    assert writes == [("UPDATE", ["status", "exchange_id"]),
                      ("UPDATE", ["status", "filled", "average"])]
    assert ledger.store.order("pmg-1") == filled
    gone = ledger.journal(req("pmg-2"))
    ledger.mark_sent("pmg-2")
    ledger.store.db.conn.execute("DELETE FROM order_links WHERE client_id = 'pmg-2'")
    ledger.store.db.conn.execute("DELETE FROM orders WHERE client_id = 'pmg-2'")
    ledger.store.db.conn.commit()
    ledger.apply(venue(gone, OrderStatus.OPEN), ())
    assert ledger.store.order("pmg-2") == venue(gone, OrderStatus.OPEN)


def test_the_report_of_an_answered_fill_writes_its_fills_not_the_order_again(
        ledger: OrderLedger) -> None:
    """A market order the create call answered filled: the stream's report of it (the same
    order, with its fills) records the fills and leaves the order's row as it is (it holds
    that order already); the fills are booked once, the delta was the answer's."""
    order = ledger.journal(req())
    ledger.mark_sent("pmg-1")
    answer = venue(order, OrderStatus.FILLED, 1.0, 100.0)
    assert ledger.apply(answer, ()).delta == pytest.approx(1.0)
    statements: list[str] = []
    ledger.store.db.conn.set_trace_callback(statements.append)
    fill = Fill("f1", "pmg-1", SYM, OrderSide.SELL, 1.0, 100.0, 0.05, 1.0)
    report = ledger.apply(answer, (fill,))
    ledger.store.db.conn.set_trace_callback(None)
    assert report.delta == 0
    assert not [s for s in statements if s.startswith(("INSERT INTO orders", "UPDATE orders"))]
    assert [f.id for f in ledger.store.fills("P1")] == ["f1"]
    assert ledger.store.order("pmg-1") == ledger.get("pmg-1") == report.order


def test_a_stale_venue_report_never_moves_an_order_back(ledger: OrderLedger) -> None:
    order = ledger.journal(req())
    ledger.mark_sent("pmg-1")
    ledger.apply(venue(order, OrderStatus.FILLED, 1.0, 100.0), ())  # the stream was first
    late = ledger.apply(venue(order, OrderStatus.OPEN), ())  # then the create's own answer
    assert late.delta == 0 and late.order.status is OrderStatus.FILLED
    assert ledger.state("pmg-1") is S.FILLED and "pmg-1" not in ledger.live
    assert ledger.store.order("pmg-1").status is OrderStatus.FILLED
    assert ledger.store.order("pmg-1").filled == 1.0


@pytest.mark.parametrize("first, then", [
    (S.FILLED, S.SENT), (S.FILLED, S.CANCELLED), (S.CANCELLED, S.ACKNOWLEDGED),
    (S.REJECTED, S.SENT), (S.ACKNOWLEDGED, S.SENT), (S.ACKNOWLEDGED, S.REJECTED),
    (S.INTENDED, S.FILLED), (S.INTENDED, S.UNKNOWN),
])
def test_an_illegal_transition_is_a_clear_error_and_changes_nothing(
        ledger: OrderLedger, first: OrderState, then: OrderState) -> None:
    order = ledger.journal(req())
    path = {S.INTENDED: [], S.ACKNOWLEDGED: [S.SENT, S.ACKNOWLEDGED],
            S.FILLED: [S.SENT, S.FILLED], S.CANCELLED: [S.SENT, S.CANCELLED],
            S.REJECTED: [S.SENT, S.REJECTED]}[first]
    for step in path:
        ledger.transition("pmg-1", step)
    assert ledger.state("pmg-1") is first
    before = ledger.store.order("pmg-1")
    with pytest.raises(IllegalOrderTransition) as err:
        if then is S.UNKNOWN:
            ledger.mark_unknown("pmg-1")
        elif then is S.SENT:
            ledger.mark_sent("pmg-1")
        else:
            ledger.transition("pmg-1", then)
    assert str(err.value) == (f"order pmg-1: {first.value} → {then.value} is not an allowed "
                              "transition")
    assert ledger.state("pmg-1") is first
    assert ledger.store.order("pmg-1") == before
    del order


def test_an_unanswered_create_is_unknown_until_looked_up(ledger: OrderLedger,
                                                         tmp_path: Path) -> None:
    order = ledger.journal(req())
    ledger.mark_sent("pmg-1")
    ledger.mark_unknown("pmg-1")
    assert ledger.state("pmg-1") is S.UNKNOWN and "pmg-1" not in ledger.creating
    assert [o.client_id for o in ledger.unresolved()] == ["pmg-1"]
    # after a restart the journal's pending order is unknown again
    fresh = OrderLedger(ledger.store, Outbox(), ledger.clock)
    fresh.load()
    assert fresh.state("pmg-1") is S.UNKNOWN
    a = fresh.apply(venue(order, OrderStatus.FILLED, 1.0, 99.0), ())
    assert fresh.state("pmg-1") is S.FILLED and a.delta == 1.0
    (fill,) = fresh.store.fills("P1")  # reconciliation books a fill it never saw
    assert (fill.qty, fill.price, fill.order_client_id) == (1.0, 99.0, "pmg-1")


def test_the_venues_own_fill_records_replace_a_lookups_synthesized_one(
        ledger: OrderLedger) -> None:
    """A lookup books a filled order whose fill records it never saw (a synthesized record,
    `<client id>#<filled>`); the stream's report with the venue's own records comes after:
    the position is booked once and the order's records add up to its quantity once (the
    real ones, a synthesized remainder only for what they do not cover yet)."""
    order = ledger.journal(req())
    ledger.mark_sent("pmg-1")
    a = ledger.apply(venue(order, OrderStatus.OPEN, 0.4, 100.0), ())
    assert a.delta == 0.4
    a = ledger.apply(venue(order, OrderStatus.FILLED, 1.0, 99.4), ())
    assert a.delta == pytest.approx(0.6)
    assert sorted(f.qty for f in ledger.store.fills("P1")) == pytest.approx([0.4, 0.6])
    first = Fill("v1", "pmg-1", SYM, OrderSide.SELL, 0.5, 100.0, 0.025, 1.0)
    a = ledger.apply(venue(order, OrderStatus.FILLED, 1.0, 99.4), (first,))
    assert a.delta == 0.0  # booked once
    fills = ledger.store.fills("P1")
    assert sum(f.qty for f in fills) == pytest.approx(1.0)
    assert {f.id: round(f.qty, 9) for f in fills} == {"v1": 0.5, "pmg-1#1": 0.5}
    synth = next(f for f in fills if f.id == "pmg-1#1")
    assert synth.fee == pytest.approx(0.6 * 99.0 * 0.0005 * 0.5 / 0.6)  # in proportion
    second = Fill("v2", "pmg-1", SYM, OrderSide.SELL, 0.5, 98.8, 0.025, 2.0)
    ledger.apply(venue(order, OrderStatus.FILLED, 1.0, 99.4), (first, second))  # again v1
    assert sorted(f.id for f in ledger.store.fills("P1")) == ["v1", "v2"]


def test_fill_records_of_new_quantity_leave_no_record_out(ledger: OrderLedger) -> None:
    """Without a lookup before them, the venue's records are stored as they come (the
    usual stream), also when the create's answer said filled first."""
    order = ledger.journal(req())
    ledger.mark_sent("pmg-1")
    a = ledger.apply(venue(order, OrderStatus.FILLED, 1.0, 100.0), ())  # the create's answer
    assert a.delta == 1.0
    fill = Fill("v1", "pmg-1", SYM, OrderSide.SELL, 1.0, 100.0, 0.05, 1.0)
    ledger.apply(venue(order, OrderStatus.FILLED, 1.0, 100.0), (fill,))
    assert [f.id for f in ledger.store.fills("P1")] == ["v1"]


def test_never_reached_the_exchange_is_rejected_and_final(ledger: OrderLedger) -> None:
    ledger.journal(req())
    ledger.mark_sent("pmg-1")
    ledger.mark_unknown("pmg-1")
    ledger.reject("pmg-1", "never reached the exchange")
    assert ledger.state("pmg-1") is S.REJECTED
    stored = ledger.store.order("pmg-1")
    assert (stored.status, stored.error) == (OrderStatus.REJECTED, "never reached the exchange")
    with pytest.raises(IllegalOrderTransition):
        ledger.transition("pmg-1", S.ACKNOWLEDGED)


def test_a_protective_order_ending_unfilled_is_lost_unless_we_cancelled_it(
        ledger: OrderLedger) -> None:
    stop = replace(req("pmg-s"), type=OrderType.STOP_MARKET, trigger_price=90.0,
                   role=OrderRole.STOP_LOSS)
    order = ledger.journal(stop)
    ledger.mark_sent("pmg-s")
    ledger.apply(venue(order, OrderStatus.OPEN), ())
    assert state_of(ledger.live["pmg-s"]) is S.ACKNOWLEDGED
    assert ledger.of_position("P1")["pmg-s"].status is OrderStatus.OPEN
    assert ledger.apply(venue(order, OrderStatus.CANCELED), ()).lost_protection
    ours = ledger.journal(replace(stop, client_id="pmg-t"))
    ledger.mark_sent("pmg-t")
    ledger.apply(venue(ours, OrderStatus.OPEN), ())
    ledger.cancelling.add("pmg-t")
    assert not ledger.apply(venue(ours, OrderStatus.CANCELED), ()).lost_protection


def test_orders_final_lately_are_kept_as_journaled(ledger: OrderLedger) -> None:
    """The ledger keeps the orders that became final lately in memory (a late report is
    merged without reading SQLite): what it keeps is exactly the journal row, through
    every later report, and a report that would undo a fill finds it there too."""
    order = ledger.journal(req("pmg-7"))
    ledger.mark_sent("pmg-7")
    acked = replace(venue(order, OrderStatus.OPEN), trigger_ref="mark")
    ledger.apply(acked, ())
    ledger.apply(replace(venue(order, OrderStatus.FILLED, 1.0, 101.0), trigger_ref="mark"), ())
    assert "pmg-7" not in ledger.live
    assert ledger.get("pmg-7") == ledger.store.order("pmg-7")  # trigger_ref not journaled
    assert ledger.state("pmg-7") is S.FILLED
    # a late echo of the acknowledgement, then a partial report: neither undoes the fill
    for late in (venue(order, OrderStatus.OPEN), venue(order, OrderStatus.OPEN, 0.3, 100.0)):
        a = ledger.apply(late, ())
        assert a.delta == 0 and a.order.filled == 1.0
        assert ledger.get("pmg-7") == ledger.store.order("pmg-7")
    # a fresh ledger over the same journal (a restart) reads the same order
    fresh = OrderLedger(ledger.store, Outbox(), ledger.clock)
    assert fresh.get("pmg-7") == ledger.get("pmg-7")


def test_the_orders_kept_final_are_bounded(ledger: OrderLedger,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import pmgui.engine.ledger as ledger_module

    monkeypatch.setattr(ledger_module, "FINAL_KEPT", 3)
    for i in range(6):
        cid = f"pmg-b{i}"
        order = ledger.journal(req(cid))
        ledger.mark_sent(cid)
        ledger.apply(venue(order, OrderStatus.FILLED, 1.0, 100.0), ())
    assert list(ledger._final) == ["pmg-b3", "pmg-b4", "pmg-b5"]
    assert ledger.get("pmg-b0") == ledger.store.order("pmg-b0")  # from the journal
