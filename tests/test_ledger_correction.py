"""A fill booked at a reference (the venue said no price, and a bounded lookup found none) is
corrected when the venue's priced record comes later: once, at the venue's price and fee,
across a restart in between, with a note that says so, filed as what the fill did.

The real ledger on a real SQLite journal. A closed position's journal row is corrected by
the ledger; an open one by the engine's hook (`OrderLedger.rebook`, recorded here). The
correction itself (`ledger.corrected`) is property-tested against booking at the true price
from the start."""

from __future__ import annotations

import math
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmgui.domain.enums import OrderRole, OrderSide, OrderStatus, OrderType, PositionStatus, Side
from pmgui.domain.models import Fill, Order, OrderRequest, Position, Tranche
from pmgui.engine.ledger import REFERENCES_KEY, Correction, OrderLedger, corrected
from pmgui.engine.outbox import Outbox
from pmgui.store.db import Store

SYM = "BTC/USDT:USDT"
TRIGGER = 49500.0
RATE = 0.0005


def _ledger(path: Path, hook: list[Correction] | None = None) -> OrderLedger:
    """A started ledger; with `hook`, an engine that holds the position open and books each
    correction it is given (recorded in `hook`)."""
    led = OrderLedger(Store.open(path), Outbox(), lambda: 1_700_000_000.0)
    led.load()
    if hook is not None:
        led.rebook = lambda c: hook.append(c) is None
    return led


def _closed_long(store: Store, exit_price: float, fees: float, realized: float) -> Position:
    """The position P1 as the engine journaled it when the stop's fill closed it."""
    pos = Position("P1", SYM, Side.LONG, 0.0, 50000.0, 10.0, 0.0, 1.0, status=PositionStatus.CLOSED,
                   exit_price=exit_price, exit_reason="stop_loss", fees_paid=fees,
                   realized_pnl=realized, closed_at=1.0)
    store.save_position(pos)
    return pos


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "j.db"


def stop_req(amount: float = 1.0) -> OrderRequest:
    return OrderRequest("pmg-s", SYM, OrderSide.SELL, OrderType.STOP_MARKET, amount,
                        trigger_price=TRIGGER, reduce_only=True, position_id="P1",
                        role=OrderRole.STOP_LOSS, reason="stop_loss")


def entry_req() -> OrderRequest:
    return OrderRequest("pmg-e", SYM, OrderSide.BUY, OrderType.LIMIT, 1.0, price=50000.0,
                        position_id="P1", role=OrderRole.ENTRY, reason="manual")


def sent(ledger: OrderLedger, request: OrderRequest) -> Order:
    order = ledger.journal(request)
    ledger.mark_sent(request.client_id)
    acked = replace(order, status=OrderStatus.OPEN, exchange_id="x1")
    ledger.apply(acked, ())
    return acked


def report(order: Order, status: OrderStatus, filled: float,
           average: float | None = None) -> Order:
    return replace(order, status=status, filled=filled, average=average)


def _notes(ledger: OrderLedger) -> list[dict]:
    return [a for a in ledger.store.actions("P1") if "re-booked" in str(a.get("inputs"))]


def test_a_stop_booked_at_its_trigger_is_corrected_once_by_the_venues_record(db: Path) -> None:
    ledger = _ledger(db)
    order = sent(ledger, stop_req())
    booked = ledger.apply(report(order, OrderStatus.FILLED, 1.0), ())
    assert (booked.delta, booked.price) == (1.0, TRIGGER)
    assert ledger.corrects("pmg-s")
    # what the engine journaled: the long closed at the trigger, the fee estimated
    est = TRIGGER * RATE
    _closed_long(ledger.store, TRIGGER, 25.0 + est, (TRIGGER - 50000.0) - 25.0 - est)
    venue = Fill("v:1", "pmg-s", SYM, OrderSide.SELL, 1.0, 49400.0, 19.76, 2.0)
    a = ledger.apply(report(order, OrderStatus.FILLED, 1.0, 49400.0), (venue,))
    assert a.delta == 0.0  # nothing booked again
    # the closed position as if booked at the venue's price and fee from the start
    pos = ledger.store.load_position("P1")
    assert pos.exit_price == pytest.approx(49400.0)
    assert pos.fees_paid == pytest.approx(25.0 + 19.76)
    assert pos.realized_pnl == pytest.approx((49400.0 - 50000.0) - 25.0 - 19.76)
    # the venue's record replaces ours: the order's records add up to what it executed
    fills = ledger.store.fills("P1")
    assert [(f.id, f.price) for f in fills] == [("v:1", 49400.0)]
    (note,) = _notes(ledger)
    assert note["type"] == "reduce"  # what the fill did, not a stop move
    assert "the venue's" in note["inputs"]["note"]
    assert "the closed position corrected" in note["inputs"]["note"]
    assert ledger.store.order("pmg-s").average == pytest.approx(49400.0)
    # told again (the REST resync, a reconciliation): never corrected twice
    for _ in range(2):
        again = ledger.apply(report(order, OrderStatus.FILLED, 1.0, 49400.0), (venue,))
        assert again.delta == 0.0
    assert not ledger.corrects("pmg-s") and len(_notes(ledger)) == 1
    assert ledger.store.load_position("P1") == pos
    ledger.store.close()


def test_the_reference_booking_survives_a_restart_and_is_corrected_once_after_it(
        db: Path) -> None:
    ledger = _ledger(db)
    order = sent(ledger, stop_req())
    ledger.apply(report(order, OrderStatus.FILLED, 1.0), ())
    ledger.store.close()
    fixes: list[Correction] = []
    ledger = _ledger(db, fixes)  # restarted before the venue's price came
    assert ledger.corrects("pmg-s")
    assert [o.client_id for o in ledger.referenced()] == ["pmg-s"]
    # the lookup by client id at reconciliation: the order's average, no records of it
    ledger.apply(report(order, OrderStatus.FILLED, 1.0, 49300.0), ())
    (c,) = fixes
    assert c.price == pytest.approx(49300.0) and not c.opening
    # no fee said: the estimate at the venue's price, and the note says it is one
    assert c.fee_delta == pytest.approx((49300.0 - TRIGGER) * RATE)
    assert "an estimate" in _notes(ledger)[0]["inputs"]["note"]
    (fill,) = ledger.store.fills("P1")  # ours, at the venue's price now
    assert (fill.qty, fill.price) == (1.0, pytest.approx(49300.0))
    ledger.store.close()
    ledger = _ledger(db, fixes)  # and again: nothing left to correct
    assert not ledger.corrects("pmg-s") and ledger.referenced() == []
    ledger.apply(report(order, OrderStatus.FILLED, 1.0, 49300.0), ())
    assert len(fixes) == 1
    assert ledger.store.get_setting(REFERENCES_KEY) == {}
    ledger.store.close()


def test_a_partial_or_stale_report_does_not_correct(db: Path) -> None:
    fixes: list[Correction] = []
    ledger = _ledger(db, fixes)
    order = sent(ledger, stop_req())
    ledger.apply(report(order, OrderStatus.FILLED, 1.0), ())
    part = Fill("v:0.4", "pmg-s", SYM, OrderSide.SELL, 0.4, 49400.0, 1.0, 2.0)
    ledger.apply(report(order, OrderStatus.FILLED, 1.0), (part,))
    ledger.apply(report(order, OrderStatus.OPEN, 0.5, 49400.0), ())
    assert fixes == [] and ledger.corrects("pmg-s")
    ledger.store.close()


def test_an_entry_booked_at_its_limit_is_corrected_as_an_open(db: Path) -> None:
    fixes: list[Correction] = []
    ledger = _ledger(db, fixes)
    order = sent(ledger, entry_req())
    assert ledger.apply(report(order, OrderStatus.FILLED, 1.0), ()).price == 50000.0
    venue = Fill("v:1", "pmg-e", SYM, OrderSide.BUY, 1.0, 49990.0, 9.998, 2.0)
    ledger.apply(report(order, OrderStatus.FILLED, 1.0, 49990.0), (venue,))
    (c,) = fixes  # the engine's, for the position it holds open
    assert c.opening and c.price == pytest.approx(49990.0)
    (note,) = _notes(ledger)
    assert note["type"] == "open" and "the open position corrected" in note["inputs"]["note"]
    ledger.store.close()


def test_an_open_position_the_engine_cannot_correct_is_said_not_corrected(db: Path) -> None:
    """No engine hook, the journal's position open: its row is the engine's to write (never
    behind its back); the note says plainly that the booking stays at the reference."""
    ledger = _ledger(db)
    order = sent(ledger, entry_req())
    ledger.apply(report(order, OrderStatus.FILLED, 1.0), ())
    ledger.store.save_position(_long())
    venue = Fill("v:1", "pmg-e", SYM, OrderSide.BUY, 1.0, 49990.0, 9.998, 2.0)
    ledger.apply(report(order, OrderStatus.FILLED, 1.0, 49990.0), (venue,))
    assert ledger.store.load_position("P1") == _long()
    (note,) = _notes(ledger)
    assert "NOT corrected" in note["inputs"]["note"]
    ledger.store.close()


def test_the_rest_of_a_partly_priced_order_is_corrected_by_the_whole_orders_average(
        db: Path) -> None:
    """0.4 priced by the venue, the last 0.6 booked at the average of the earlier fills; the
    whole order's average later prices the 0.6 (not the whole 1.0) at its own share."""
    fixes: list[Correction] = []
    ledger = _ledger(db, fixes)
    order = sent(ledger, stop_req())
    first = Fill("v:0.4", "pmg-s", SYM, OrderSide.SELL, 0.4, 49450.0, 0.9, 2.0)
    ledger.apply(report(order, OrderStatus.OPEN, 0.4, 49450.0), (first,))
    a = ledger.apply(report(order, OrderStatus.FILLED, 1.0), ())
    assert (a.delta, a.price) == (pytest.approx(0.6), pytest.approx(49450.0))
    ledger.apply(report(order, OrderStatus.FILLED, 1.0, 49410.0), ())
    (c,) = fixes
    assert c.qty == pytest.approx(0.6)
    assert c.price == pytest.approx((49410.0 - 0.4 * 49450.0) / 0.6)
    assert sum(f.qty for f in ledger.store.fills("P1")) == pytest.approx(1.0)
    ledger.store.close()


# ------------------------------------------------------------------ the position's side


def _long(qty: float = 1.0, entry: float = 50000.0, cs: float = 1.0) -> Position:
    return Position("P1", SYM, Side.LONG, qty, entry, 10.0, 0.0, qty, contract_size=cs,
                    tranches=(Tranche("pmg-e", qty, entry, 0.0),))


_side = st.sampled_from([Side.LONG, Side.SHORT])
_price = st.floats(min_value=1.0, max_value=1e6, allow_nan=False, allow_infinity=False)
_frac = st.floats(min_value=0.05, max_value=1.0)


@settings(max_examples=200, deadline=None)
@given(side=_side, entry=_price, booked=_price, true=_price, frac=_frac,
       cs=st.sampled_from([1.0, 0.01, 10.0]), fee_true=st.floats(-5.0, 50.0))
def test_a_corrected_reduction_is_booked_as_at_the_true_price_from_the_start(
        side: Side, entry: float, booked: float, true: float, frac: float, cs: float,
        fee_true: float) -> None:
    qty = 2.0
    q = qty * frac
    fee_est = q * booked * cs * RATE
    pos = Position("P1", SYM, side, qty, entry, 10.0, 0.0, qty, contract_size=cs)

    def reduced(price: float, fee: float) -> Position:  # DESIGN §3: dir·(p − entry)·q·cs − fee
        left = qty - q
        return pos.evolve(qty=left, realized_pnl=side.dir * (price - entry) * q * cs - fee,
                          fees_paid=fee, exit_price=price if left <= 1e-12 else None)

    fix = Correction("pmg-s", "P1", False, q, booked, true, fee_true - fee_est, booked, true)
    got = corrected(reduced(booked, fee_est), fix)
    want = reduced(true, fee_true)
    assert math.isfinite(got.realized_pnl)
    assert got.realized_pnl == pytest.approx(want.realized_pnl, rel=1e-9, abs=1e-6)
    assert got.fees_paid == pytest.approx(fee_true, abs=1e-9)
    assert got.qty == want.qty  # nothing booked again


@settings(max_examples=200, deadline=None)
@given(e0=_price, q0=st.floats(0.0, 5.0), booked=_price, true=_price, q=_frac)
def test_a_corrected_open_or_add_averages_as_at_the_true_price(
        e0: float, q0: float, booked: float, true: float, q: float) -> None:
    from pmgui.domain.money import average_entry

    def added(price: float) -> Position:
        base = Position("P1", SYM, Side.LONG, q0, e0, 10.0, 0.0, q0)
        return base.evolve(qty=q0 + q, entry=average_entry(q0, e0, q, price),
                           tranches=(Tranche("pmg-a", q, price, 0.0),))

    fix = Correction("pmg-a", "P1", True, q, booked, true, 0.0, booked, true)
    got = corrected(added(booked), fix)
    assert got.entry == pytest.approx(added(true).entry, rel=1e-9)
    assert got.tranches[0].entry == pytest.approx(true, rel=1e-9)
    assert got.qty == pytest.approx(q0 + q)


# ------------------------------------------------------------------ any sequence


_kind = st.sampled_from(["part", "whole", "average"])


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(priced_tenths=st.integers(0, 9), true=st.floats(40000.0, 60000.0),
       kind=_kind, restart=st.booleans(), repeats=st.integers(1, 3),
       priceless_first=st.integers(0, 3))
def test_any_sequence_corrects_once_and_books_no_more_than_the_order(
        priced_tenths: int, true: float, kind: str, restart: bool, repeats: int,
        priceless_first: int) -> None:
    """Some of the order priced by the venue, the rest booked at a reference; priceless
    repeats, a restart, then the venue's record of the rest (its own, the whole order's, or
    the average) told `repeats` times: one correction, at the true price; the records add up
    to the order; nothing NaN."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "j.db"
        fixes: list[Correction] = []
        ledger = _ledger(db, fixes)
        try:
            order = sent(ledger, stop_req())
            base = priced_tenths / 10
            early = 49450.0
            booked = 0.0
            if base > 0:
                first = Fill("v:base", "pmg-s", SYM, OrderSide.SELL, base, early, 0.1, 1.0)
                booked += ledger.apply(report(order, OrderStatus.OPEN, base, early),
                                       (first,)).delta
            for _ in range(priceless_first + 1):
                booked += ledger.apply(report(order, OrderStatus.FILLED, 1.0), ()).delta
            assert booked == pytest.approx(1.0)
            if restart:
                ledger.store.close()
                ledger = _ledger(db, fixes)
            rest = 1.0 - base
            whole_avg = base * early + rest * true
            for _ in range(repeats):
                if kind == "part":
                    fills = (Fill("v:rest", "pmg-s", SYM, OrderSide.SELL, rest, true, 0.3, 3.0),)
                elif kind == "whole":
                    fills = (Fill("v:all", "pmg-s", SYM, OrderSide.SELL, 1.0, whole_avg,
                                  0.5, 3.0),)
                else:
                    fills = ()
                booked += ledger.apply(report(order, OrderStatus.FILLED, 1.0, whole_avg),
                                       fills).delta
            assert booked == pytest.approx(1.0)  # never more than the order
            (fix,) = [c for c in fixes if c.price != c.booked_price]  # exactly once
            assert fix.qty == pytest.approx(rest)
            assert fix.price == pytest.approx(true, rel=1e-9)
            assert all(math.isfinite(v) for v in (fix.price, fix.fee_delta, fix.corrected_at))
            # a record of all it executed takes the earlier record's place: the fee booked for
            # that part becomes its share of the record's fee (once, when they differ)
            fee_fixes = [c for c in fixes if c is not fix]
            differs = kind == "whole" and base > 0 and abs(0.5 * base - 0.1) > 1e-12
            assert [(c.qty, c.fee_delta) for c in fee_fixes] == \
                ([(pytest.approx(base), pytest.approx(0.5 * base - 0.1))] if differs else [])
            records = ledger.store.fills("P1")
            assert sum(f.qty for f in records) == pytest.approx(1.0)
            # no placeholder left: a record of our own is at the venue's price
            assert all(f.price == pytest.approx(true) for f in records if "#" in f.id)
            assert kind != "average" or any("#" in f.id for f in records)
            assert not ledger.corrects("pmg-s")
        finally:
            ledger.store.close()


def test_an_unreadable_reference_record_is_dropped_with_a_warning_never_guessed(
        db: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = Store.open(db)
    store.set_setting(REFERENCES_KEY, {"pmg-x": {"qty": "lots"}, "pmg-y": 3})
    store.close()
    ledger = _ledger(db)
    assert ledger.referenced() == [] and not ledger.corrects("pmg-x")
    assert any("unreadable" in r.getMessage() for r in caplog.records)
    ledger.store.close()


def test_reconciliation_stops_looking_up_a_reference_booking_after_a_week(db: Path) -> None:
    """Looked up by client id at every reconciliation for a week (a venue forgets old
    orders); a priced report of it still corrects it after that."""
    ledger = _ledger(db)
    order = sent(ledger, stop_req())
    ledger.apply(report(order, OrderStatus.FILLED, 1.0), ())
    assert [o.client_id for o in ledger.referenced()] == ["pmg-s"]
    ledger.clock = lambda: 1_700_000_000.0 + 8 * 86400.0
    assert ledger.referenced() == [] and ledger.corrects("pmg-s")
    ledger.store.close()
