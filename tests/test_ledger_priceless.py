"""A venue report whose filled quantity grew but that says at no price is not booked at a
guess: the quantity waits for a report that carries the venue's price (fills or an average)
and is booked then, once. A final report that never carries one — after the adapter's bounded
lookup of its fills found nothing — is booked at the best reference there is, and says so.

The real ledger on a real SQLite journal (the venue side, with real ccxt against the local
emulator, is in tests/test_ccxt_priceless.py)."""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmgui.domain.enums import OrderRole, OrderSide, OrderStatus, OrderType
from pmgui.domain.models import Fill, Order, OrderRequest
from pmgui.engine.ledger import OrderLedger, OrderState
from pmgui.engine.outbox import Outbox
from pmgui.store.db import Store

S = OrderState
SYM = "BTC/USDT:USDT"


def _ledger(path: Path) -> OrderLedger:
    return OrderLedger(Store.open(path), Outbox(), lambda: 1_700_000_000.0)


@pytest.fixture
def ledger(tmp_path: Path):
    led = _ledger(tmp_path / "j.db")
    yield led
    led.store.close()


def stop_req(cid: str = "pmg-s", amount: float = 1.0) -> OrderRequest:
    return OrderRequest(cid, SYM, OrderSide.SELL, OrderType.STOP_MARKET, amount,
                        trigger_price=49500.0, reduce_only=True, position_id="P1",
                        role=OrderRole.STOP_LOSS, reason="stop_loss")


def sent(ledger: OrderLedger, request: OrderRequest) -> Order:
    order = ledger.journal(request)
    ledger.mark_sent(request.client_id)
    acked = replace(order, status=OrderStatus.OPEN, exchange_id="x1")
    ledger.apply(acked, ())
    return acked


def report(order: Order, status: OrderStatus, filled: float,
           average: float | None = None) -> Order:
    return replace(order, status=status, filled=filled, average=average)


def test_a_priceless_partial_waits_for_the_priced_report_and_is_booked_once(
        ledger: OrderLedger) -> None:
    order = sent(ledger, stop_req())
    a = ledger.apply(report(order, OrderStatus.OPEN, 0.4), ())
    assert a.delta == 0.0 and a.price is None  # not booked at the trigger level
    assert ledger.state("pmg-s") is S.PARTIALLY_FILLED
    assert ledger.get("pmg-s").filled == 0.0  # nothing booked: nothing counted as applied
    assert ledger.store.order("pmg-s").filled == 0.0
    a = ledger.apply(report(order, OrderStatus.FILLED, 1.0, 49400.0), ())
    assert a.delta == pytest.approx(1.0)  # the whole fill, at the venue's price
    assert a.price == pytest.approx(49400.0)
    assert ledger.state("pmg-s") is S.FILLED
    assert ledger.store.order("pmg-s").filled == pytest.approx(1.0)
    again = ledger.apply(report(order, OrderStatus.FILLED, 1.0, 49400.0), ())
    assert again.delta == 0.0


def test_priced_fill_records_book_their_own_quantity_the_rest_waits(
        ledger: OrderLedger) -> None:
    order = sent(ledger, stop_req())
    assert ledger.apply(report(order, OrderStatus.OPEN, 0.3), ()).delta == 0.0
    fill = Fill("v2", "pmg-s", SYM, OrderSide.SELL, 0.2, 49450.0, 0.5, 2.0)
    a = ledger.apply(report(order, OrderStatus.OPEN, 0.5), (fill,))
    # the record prices 0.2 of the 0.5: that much is booked at its price, the rest waits
    assert (a.delta, a.price) == (pytest.approx(0.2), pytest.approx(49450.0))
    a = ledger.apply(report(order, OrderStatus.FILLED, 1.0, 49420.0), ())
    assert a.delta == pytest.approx(0.8)
    assert a.price == pytest.approx((49420.0 * 1.0 - 49450.0 * 0.2) / 0.8)


def test_repeated_priceless_reports_then_duplicate_priced_ones_book_once(
        ledger: OrderLedger) -> None:
    order = sent(ledger, stop_req())
    booked = 0.0
    for filled in (0.2, 0.2, 0.5, 0.2, 0.5):  # priceless, repeated and out of order
        booked += ledger.apply(report(order, OrderStatus.OPEN, filled), ()).delta
    assert booked == 0.0
    fill = Fill("v1", "pmg-s", SYM, OrderSide.SELL, 0.5, 49400.0, 1.0, 1.0)
    for _ in range(3):  # the stream's report, then the REST resync's, then again
        booked += ledger.apply(report(order, OrderStatus.OPEN, 0.5, 49400.0), (fill,)).delta
    assert booked == pytest.approx(0.5)
    for _ in range(2):
        booked += ledger.apply(report(order, OrderStatus.FILLED, 1.0, 49400.0), ()).delta
    assert booked == pytest.approx(1.0)
    fills = ledger.store.fills("P1")
    assert [f.qty for f in fills if f.id == "v1"] == [pytest.approx(0.5)]  # v1 once
    # the rest, booked from the order's average, by a record of the ledger's own
    assert sum(f.qty for f in fills) == pytest.approx(1.0)


def test_a_final_report_without_any_price_is_booked_at_its_reference_and_says_so(
        ledger: OrderLedger, caplog: pytest.LogCaptureFixture) -> None:
    """What reaches the ledger final and priceless was looked up already (the adapter's
    bounded lookup of its fills found nothing): booked at the trigger, never silently."""
    order = sent(ledger, stop_req())
    caplog.set_level(logging.WARNING, logger="pmgui.engine.ledger")
    a = ledger.apply(report(order, OrderStatus.FILLED, 1.0), ())
    assert (a.delta, a.price) == (pytest.approx(1.0), 49500.0)
    assert ledger.state("pmg-s") is S.FILLED
    lines = [r.getMessage() for r in caplog.records]
    assert any("no fill price of it was visible after a bounded lookup; booked at its "
               "trigger price 49500" in line for line in lines), lines
    # the trader's action log says it too, on the position
    assert any("bounded lookup" in str(n) for n in ledger.store.actions("P1"))
    # filed as what the stop's fill did (a reduction), not as a stop move: the chart would
    # label the SL line as moved by reconciliation and the log file it as routine
    (note,) = [n for n in ledger.store.actions("P1") if "bounded lookup" in str(n)]
    assert note["type"] == "reduce", note
    assert ledger.apply(report(order, OrderStatus.FILLED, 1.0), ()).delta == 0.0


def test_a_final_priceless_report_uses_the_orders_earlier_fills_first(
        ledger: OrderLedger, caplog: pytest.LogCaptureFixture) -> None:
    order = sent(ledger, stop_req())
    fill = Fill("v1", "pmg-s", SYM, OrderSide.SELL, 0.5, 49400.0, 1.0, 1.0)
    ledger.apply(report(order, OrderStatus.OPEN, 0.5, 49400.0), (fill,))
    caplog.set_level(logging.WARNING, logger="pmgui.engine.ledger")
    a = ledger.apply(report(order, OrderStatus.CANCELED, 0.8), ())
    assert (a.delta, a.price) == (pytest.approx(0.3), pytest.approx(49400.0))
    assert any("the average of its earlier fills" in r.getMessage() for r in caplog.records)
    assert ledger.state("pmg-s") is S.CANCELLED and not a.lost_protection


def test_a_final_market_order_without_any_price_or_reference_is_not_booked_at_a_guess(
        ledger: OrderLedger) -> None:
    """No price, no reference at all: kept open (its fill unbooked) for reconciliation's
    lookup by client id, never booked at zero."""
    close = OrderRequest("pmg-c", SYM, OrderSide.SELL, OrderType.MARKET, 1.0,
                         reduce_only=True, position_id="P1", role=OrderRole.REDUCE,
                         reason="manual")
    order = sent(ledger, close)
    a = ledger.apply(report(order, OrderStatus.FILLED, 1.0), ())
    assert a.delta == 0.0 and a.price is None
    assert ledger.state("pmg-c") is S.PARTIALLY_FILLED and "pmg-c" in ledger.live
    assert ledger.apply(report(order, OrderStatus.FILLED, 1.0, 100.0), ()).delta == 1.0
    assert ledger.state("pmg-c") is S.FILLED


def test_the_paper_venue_s_priced_reports_book_as_before(ledger: OrderLedger) -> None:
    order = sent(ledger, stop_req())
    fill = Fill("p1", "pmg-s", SYM, OrderSide.SELL, 1.0, 49480.0, 24.74, 1.0)
    a = ledger.apply(report(order, OrderStatus.FILLED, 1.0, 49480.0), (fill,))
    assert (a.delta, a.price, a.fee) == (1.0, 49480.0, 24.74)


def test_a_record_of_the_whole_cumulative_fill_books_the_delta_s_share_once(
        ledger: OrderLedger) -> None:
    """After a restart the adapter tells an order's fill as one record of all it executed
    (its progress is new): what the ledger booked before is not booked again, neither its
    quantity nor its price nor its fee."""
    order = sent(ledger, stop_req())
    first = Fill("v:0.4", "pmg-s", SYM, OrderSide.SELL, 0.4, 100.0, 0.02, 1.0)
    ledger.apply(report(order, OrderStatus.OPEN, 0.4, 100.0), (first,))
    whole = Fill("w:1", "pmg-s", SYM, OrderSide.SELL, 1.0, 99.4, 0.05, 2.0)
    a = ledger.apply(report(order, OrderStatus.FILLED, 1.0, 99.4), (whole,))
    assert a.delta == pytest.approx(0.6)
    assert a.price == pytest.approx((99.4 - 0.4 * 100.0) / 0.6)
    assert a.fee == pytest.approx(0.05 * 0.6)


_report = st.tuples(
    st.integers(min_value=0, max_value=10),  # filled, in tenths of the amount
    st.sampled_from(["none", "average", "fill"]),  # what price the report carries
    st.booleans(),  # a duplicate of it follows
)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reports=st.lists(_report, max_size=8), last=st.sampled_from(
    ["none", "average", "fill"]), status=st.sampled_from(
    [OrderStatus.FILLED, OrderStatus.CANCELED]))
def test_any_sequence_books_the_largest_filled_once_never_more_never_nan(
        reports: list[tuple[int, str, bool]], last: str, status: OrderStatus) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ledger = _ledger(Path(tmp) / "j.db")
        try:
            order = sent(ledger, stop_req(amount=1.0))
            booked = cost = 0.0
            most = 0.0
            n = 0
            seq = [(tenths, kind, OrderStatus.OPEN) for tenths, kind, dup in reports
                   for _ in range(2 if dup else 1)]
            final_filled = max([t for t, _, _ in seq] + [0]) / 10 if status is \
                OrderStatus.CANCELED else 1.0
            seq.append((round(final_filled * 10), last, status))
            for tenths, kind, st_ in seq:
                filled = tenths / 10
                n += 1
                fills: tuple[Fill, ...] = ()
                average = None
                price = 49000.0 + tenths  # the venue's average at that quantity
                if kind == "average" and filled > 0:
                    average = price
                elif kind == "fill" and filled > 0:
                    fills = (Fill(f"f{tenths}", "pmg-s", SYM, OrderSide.SELL, filled,
                                  price, 0.1, float(n)),)
                    average = price
                a = ledger.apply(report(order, st_, filled, average), fills)
                assert a is not None
                most = max(most, filled)
                assert a.delta >= 0.0
                if kind == "none" and not st_.is_final:
                    assert a.delta == 0.0  # never booked at a guess
                if a.delta > 0:
                    assert a.price is not None and math.isfinite(a.price) and a.price > 0
                    assert a.fee is None or math.isfinite(a.fee)
                    cost += a.delta * a.price
                booked += a.delta
                assert booked <= most + 1e-9 <= 1.0 + 1e-9  # never past what was reported
                assert math.isfinite(cost)
            assert booked == pytest.approx(most)  # the final report: all of it, once
            assert ledger.state("pmg-s").is_final
        finally:
            ledger.store.close()


def test_a_fee_the_venue_did_not_say_is_estimated_and_the_log_says_so(
        ledger: OrderLedger, caplog: pytest.LogCaptureFixture) -> None:
    """A lookup's fill without a record of its own (no fee said): booked with the fee at the
    position's rate, and the log says plainly that this fee is an estimate."""
    order = sent(ledger, stop_req())
    caplog.set_level(logging.INFO, logger="pmgui.engine.ledger")
    a = ledger.apply(report(order, OrderStatus.FILLED, 1.0, 49400.0), ())
    assert a.fee == pytest.approx(49400.0 * 0.0005)
    assert any("is an estimate" in r.getMessage() for r in caplog.records)
    caplog.clear()
    venue = sent(ledger, replace(stop_req(), client_id="pmg-v"))
    fill = Fill("v1", "pmg-v", SYM, OrderSide.SELL, 1.0, 49400.0, 19.0, 1.0)
    ledger.apply(report(venue, OrderStatus.FILLED, 1.0, 49400.0), (fill,))
    assert not any("is an estimate" in r.getMessage() for r in caplog.records)
