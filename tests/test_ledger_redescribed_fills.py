"""A fill is stored once however the venue re-describes it: an order's fill records in the
journal add up to what it filled, after any number of restarts.

Before a restart the ledger records an order's fills one by one (the stream's trade reports,
or a record of its own for a quantity a lookup saw without records); after it, a report of
the same order can describe it as a whole — one record of all it filled, under another id.
That record takes the place of the earlier ones (the venue's figures kept; a fee that differs
from what was booked is corrected on the position once), so the fills table — the trade
history, fees paid, exports — never counts a fill twice, and the position's booking stays
what the venue executed.

The real engine, adapter and ccxt over the local Binance emulator on a real SQLite journal
(a restart is a new engine over the same file); the ledger's part on a real journal.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from pmgui.domain.enums import OrderRole, OrderSide, OrderStatus, OrderType, PositionStatus, Side
from pmgui.domain.models import Fill, OrderRequest, Position
from pmgui.engine import commands as cmd
from pmgui.engine.core import EngineCore
from pmgui.engine.ledger import Correction, OrderLedger
from pmgui.engine.outbox import Outbox
from pmgui.store.db import Store
from tests.binance_rig import BTC, FAST, binance_engine
from tests.fakes.binance_server import MAKER_FEE, BinanceServer
from tests.fakes.recording_sink import RecordingSink

LIMIT = 49500.0
FIRST, REST, REST_AT = 0.004, 0.006, 49400.0  # the entry's two fills
VENUE_FEES = float(Decimal("49500") * Decimal("0.004") * MAKER_FEE
                   + Decimal("49400") * Decimal("0.006") * MAKER_FEE)
ENTRY = (FIRST * LIMIT + REST * REST_AT) / (FIRST + REST)


def _entry_fills(engine: EngineCore, client_id: str) -> list[Fill]:
    return [f for f in engine.store.fills() if f.order_client_id == client_id]


def _told_once(engine: EngineCore, client_id: str) -> None:
    """The entry's records add up to what it executed, at the venue's prices and fees, and
    the open long is booked the same."""
    fills = _entry_fills(engine, client_id)
    assert sum(f.qty for f in fills) == pytest.approx(FIRST + REST)
    assert sum(f.qty * f.price for f in fills) == pytest.approx(ENTRY * (FIRST + REST))
    assert sum(f.fee for f in fills) == pytest.approx(VENUE_FEES)
    rt = engine.book.find(BTC, Side.LONG)
    assert rt is not None and rt.position.qty == pytest.approx(FIRST + REST)
    assert rt.position.entry == pytest.approx(ENTRY)
    assert rt.position.fees_paid == pytest.approx(VENUE_FEES)
    stored = engine.store.load_position(rt.id)
    assert stored is not None and stored.fees_paid == pytest.approx(VENUE_FEES)


async def test_a_whole_order_record_after_a_restart_replaces_its_earlier_records(
        server: BinanceServer, tmp_path: Path) -> None:
    """A limit entry fills 0.004 (the stream's priced report: a record of its own), then the
    rest at a better price in a report without a price whose trades stay hidden: booked at
    its reference (a record of the ledger's). pmgui restarts; the trades show: the lookup's
    record of the whole order (another id) re-books the rest — and takes the place of both
    earlier records, not beside them. Restarts after that change nothing."""
    db = tmp_path / "pmgui.db"
    settings = replace(FAST, price_relooks=0)  # nothing looked at again before the restart
    engine, _, _ = await binance_engine(server, db, settings)
    res = await engine.handle(cmd.OpenPosition(BTC, Side.LONG, FIRST + REST, 10, sl=48000.0,
                                               tp=52000.0, order_type="limit", price=LIMIT))
    assert res.ok, res.message
    (entry,) = [o for o in engine.orders.values() if o.role is OrderRole.ENTRY]
    cid = entry.client_id
    waiter = RecordingSink()
    try:
        await server.fill_part(cid, FIRST)
        await waiter.wait_for(lambda: engine.book.find(BTC, Side.LONG) is not None, timeout=15)
        server.faults.priceless_reports = True
        server.faults.hidden_trades = 10**9
        await server.fill_part(cid, REST, REST_AT)
        rt = engine.book.find(BTC, Side.LONG)
        await waiter.wait_for(lambda: rt.position.qty == pytest.approx(FIRST + REST),
                              timeout=15)
        assert rt.position.entry == pytest.approx(LIMIT)  # the rest at its reference
        assert sum(f.qty for f in _entry_fills(engine, cid)) == pytest.approx(FIRST + REST)
    finally:
        await engine.shutdown()
    server.faults.priceless_reports = False
    server.faults.hidden_trades = 0
    for _ in range(3):  # the first restart re-books; the others find nothing to do
        engine, _, _ = await binance_engine(server, db, settings)
        try:
            _told_once(engine, cid)
        finally:
            await engine.shutdown()


# ------------------------------------------------------------------ the ledger alone

PRICE = 50000.0
ESTIMATE = PRICE * 0.01 * 0.0005  # a lookup's record: the fee at the position's rate
VENUE_FEE = PRICE * 0.01 * 0.0004


def _ledger(path: Path, hook: list[Correction], closed: bool) -> OrderLedger:
    ledger = OrderLedger(Store.open(path), Outbox(), lambda: 1_700_000_000.0)
    ledger.load()
    ledger.rebook = None if closed else (lambda c: hook.append(c) is None)
    return ledger


def _close_order(ledger: OrderLedger, amount: float = 0.01) -> OrderRequest:
    req = OrderRequest("pmg-c", BTC, OrderSide.SELL, OrderType.LIMIT, amount, price=PRICE,
                       reduce_only=True, position_id="P1", role=OrderRole.REDUCE,
                       reason="manual")
    ledger.journal(req)
    ledger.mark_sent("pmg-c")
    return req


def _long(store: Store, fees: float, closed: bool) -> Position:
    pos = Position("P1", BTC, Side.LONG, 0.0 if closed else 0.02, PRICE, 10.0, 0.0, 1.0,
                   status=PositionStatus.CLOSED if closed else PositionStatus.OPEN,
                   exit_price=PRICE if closed else None, fees_paid=fees, realized_pnl=-fees,
                   closed_at=1.0 if closed else None)
    store.save_position(pos)
    return pos


@pytest.mark.parametrize("closed", [False, True])
def test_a_lookup_s_record_is_replaced_by_the_venue_s_after_a_restart(
        tmp_path: Path, closed: bool, caplog: pytest.LogCaptureFixture) -> None:
    """A lookup saw the order filled without its records (the ledger's record, an estimated
    fee); pmgui restarts before the venue's records come: they replace it all the same,
    and the fee booked becomes the venue's — once, however often they are told again."""
    caplog.set_level(logging.DEBUG, logger="pmgui.engine.ledger")
    path = tmp_path / "j.db"
    hook: list[Correction] = []
    ledger = _ledger(path, hook, closed)
    order = ledger.get(_close_order(ledger).client_id)
    assert order is not None
    done = replace(order, status=OrderStatus.FILLED, filled=0.01, average=PRICE,
                   exchange_id="1")
    booked = ledger.apply(done, (), fee_rate=0.0005)
    assert booked is not None and booked.fee == pytest.approx(ESTIMATE)
    base = _long(ledger.store, 1.0 + ESTIMATE, closed)
    ledger.store.close()
    venue = Fill("b:o:1:0.01", "pmg-c", BTC, OrderSide.SELL, 0.01, PRICE, VENUE_FEE, 2.0, "1")
    for _ in range(3):  # a restart, the venue's record told; and again
        ledger = _ledger(path, hook, closed)
        again = ledger.apply(done, (venue,))
        assert again is not None and again.delta == 0.0
        (record,) = ledger.store.fills("P1")
        assert (record.id, record.qty, record.fee) == (venue.id, 0.01,
                                                       pytest.approx(VENUE_FEE))
        if closed:
            pos = ledger.store.load_position("P1")
            assert pos.fees_paid == pytest.approx(base.fees_paid + VENUE_FEE - ESTIMATE)
            assert pos.realized_pnl == pytest.approx(base.realized_pnl - VENUE_FEE + ESTIMATE)
        ledger.store.close()
    assert [c.fee_delta for c in hook] == ([] if closed
                                          else [pytest.approx(VENUE_FEE - ESTIMATE)])
    # the venue's records taking the place of the ledger's own: the usual path of every
    # market order booked from its answer, a detail of the log, not a line at INFO
    assert _redescribed(caplog) == [logging.DEBUG]


def _redescribed(caplog: pytest.LogCaptureFixture) -> list[int]:
    """The levels of the ledger's lines that venue records replaced earlier ones."""
    return [r.levelno for r in caplog.records if "describe again" in r.getMessage()]


def test_a_record_of_all_the_order_filled_replaces_the_trades_recorded_before_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The stream told the order's first trade (a record of it); after a restart, a report
    describes all the order filled in one record (another id): it takes the first record's
    place, the delta is booked at its own share, and the fees add up to the venue's."""
    caplog.set_level(logging.DEBUG, logger="pmgui.engine.ledger")
    path = tmp_path / "j.db"
    hook: list[Correction] = []
    ledger = _ledger(path, hook, closed=False)
    order = ledger.get(_close_order(ledger, 0.02).client_id)
    assert order is not None
    part = replace(order, status=OrderStatus.OPEN, filled=0.01, average=PRICE,
                   exchange_id="1")
    first = Fill("b:o:1:0.01", "pmg-c", BTC, OrderSide.SELL, 0.01, PRICE, VENUE_FEE, 1.0, "1")
    assert ledger.apply(part, (first,)).delta == pytest.approx(0.01)
    ledger.store.close()
    whole = Fill("b:o:1:0.02", "pmg-c", BTC, OrderSide.SELL, 0.02, PRICE + 50.0,
                 2 * VENUE_FEE + 0.01, 2.0, "1")
    done = replace(part, status=OrderStatus.FILLED, filled=0.02, average=PRICE + 50.0)
    for i in range(3):
        ledger = _ledger(path, hook, closed=False)
        applied = ledger.apply(done, (whole,))
        assert applied is not None
        if i == 0:  # the delta at its own share of the average, and of the fee
            assert applied.delta == pytest.approx(0.01)
            assert applied.price == pytest.approx(PRICE + 100.0)
            assert applied.fee == pytest.approx(VENUE_FEE + 0.005)
        else:
            assert applied.delta == 0.0
        (record,) = ledger.store.fills("P1")
        assert (record.id, record.qty, record.fee) == (whole.id, 0.02,
                                                       pytest.approx(whole.fee))
        ledger.store.close()
    # booked: the first trade's fee, the delta's share; the whole record's fee of the first
    # part differs from its trade's by 0.005: booked once, on the open position
    assert [c.fee_delta for c in hook] == [pytest.approx(0.005)]
    assert _redescribed(caplog) == [logging.INFO]  # the venue's own records replaced: said
