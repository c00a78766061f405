"""A fee the ledger estimates itself is tracked like one the venue told with an estimate.

When a report says an order filled but brings no record of the fill (a lookup by client id
finds the order filled: reconciliation's, a close's look at its stop; an answer that says
only the order's filled and average), the ledger books the delta with a record of its own
(`<client id>#<filled>`) and an estimated fee. That fact is persisted with the venue's
estimates (`ledger.fee_estimates`): should pmgui stop before the venue's records come, the
next start looks up the order's trades (bounded, beside the stream) and corrects the fee
once — on a closed position too, its P/L corrected and announced once. The venue's records
arriving while running replace the record of our own and drop the estimate (nothing looked
up after a restart); a fee paid in BNB keeps the estimate, and nothing is looked up again.

The real engine, adapter and ccxt over the local Binance emulator (its account charges less
than the market's listed taker rate; a limit fills as a maker), on a real SQLite journal; a
restart is a new engine over the same file. The order found filled without its records is
what a lookup by client id answers (a second adapter without a sink: nothing else told),
applied by the engine's own entry as reconciliation applies its lookups.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import pytest

from pmgui.domain.enums import OrderRole, Side
from pmgui.domain.models import Tick
from pmgui.engine import commands as cmd
from pmgui.engine.core import EngineCore
from pmgui.engine.events import PositionCorrected
from pmgui.engine.ledger import FEE_ESTIMATES_KEY
from pmgui.engine.outbox import Outbox
from tests.binance_rig import (
    BTC,
    TAKER_RATE,
    binance_engine,
    binance_exchange,
    rated_server,
    records,
    trade_listings,
    waiting_fees,
)
from tests.engine_support import SYMBOL, Harness
from tests.fakes.binance_server import MAKER_FEE, BinanceServer
from tests.venue_support import until

LIMIT = 49500.0
QTY = 0.01
ESTIMATE = LIMIT * QTY * 0.0005  # the ledger's estimate: the listed taker rate
MAKER = float(Decimal("49500") * Decimal("0.01") * MAKER_FEE)  # what the venue charged
CLOSE_FEE = float(Decimal("49500") * Decimal("0.01") * TAKER_RATE)  # a market close there


@pytest.fixture
async def server() -> AsyncIterator[BinanceServer]:
    async with rated_server() as srv:
        yield srv


async def _entry_booked_withoutrecords(server: BinanceServer, engine: EngineCore
                                        ) -> tuple[str, str]:
    """A limit long fills (as a maker) while the stream's reports are held; a lookup by
    client id finds it filled, without its records, and the engine applies that answer:
    booked at the venue's average with the ledger's estimate. (position id, client id)"""
    server.faults.hold_order_events = True
    res = await engine.handle(cmd.OpenPosition(BTC, Side.LONG, QTY, 10, sl=48000.0,
                                               tp=52000.0, order_type="limit", price=LIMIT))
    assert res.ok, res.message
    (entry,) = [o for o in engine.orders.values() if o.role is OrderRole.ENTRY]
    await server.set_price(BTC, LIMIT)
    lookup = binance_exchange(server)
    await lookup.connect()
    try:
        found = await lookup.fetch_order_by_client_id(entry.client_id, BTC)
    finally:
        await lookup.close()
    assert found is not None and found.filled == pytest.approx(QTY) and found.average
    await engine.apply_order(found, ())
    rt = engine.book.find(BTC, Side.LONG)
    assert rt is not None and rt.position.fees_paid == pytest.approx(ESTIMATE)
    (own,) = records(engine, entry.client_id)
    assert own.id.startswith(entry.client_id + "#") and own.fee == pytest.approx(ESTIMATE)
    return rt.id, entry.client_id


async def _booked_and_stopped(server: BinanceServer, db: Path) -> tuple[str, str]:
    """`_entry_booked_without_records` on an engine over `db`, which then stops before the
    venue's reports come (they never will: discarded). (position id, client id)"""
    engine = (await binance_engine(server, db))[0]
    try:
        pid, cid = await _entry_booked_withoutrecords(server, engine)
        assert len(waiting_fees(engine)) == 1  # the estimate's fact, journaled with its record
    finally:
        await engine.shutdown()
        server.faults.hold_order_events = False
        server.discard_held_events()  # the venue's reports never come
    return pid, cid


@asynccontextmanager
async def _restarted_again(server: BinanceServer, db: Path,
                           **kw: object) -> AsyncIterator[EngineCore]:
    """One more restart over `db`: the engine to check, and on the way out the proof that
    it looked no trade up (the venue's trade listings as before it started)."""
    listed = trade_listings(server)
    engine = (await binance_engine(server, db, **kw))[0]
    try:
        yield engine
        assert trade_listings(server) == listed
    finally:
        await engine.shutdown()


def _heard(events: list[PositionCorrected]) -> Outbox:
    """An outbox whose listener keeps the corrections published (from the start on)."""
    outbox = Outbox()
    outbox.add_listener(lambda ev: events.append(ev) if isinstance(ev, PositionCorrected)
                        else None)
    return outbox


def _fees(engine: EngineCore, pid: str, client_id: str) -> tuple[float, float]:
    """(the journal row's fees, the entry's records' fees)"""
    row = engine.store.load_position(pid)
    assert row is not None
    return row.fees_paid, sum(f.fee for f in records(engine, client_id))


async def test_a_restart_before_the_venue_s_records_looks_the_fee_up_once(
        server: BinanceServer, tmp_path: Path) -> None:
    db = tmp_path / "pmgui.db"
    pid, cid = await _booked_and_stopped(server, db)
    engine = (await binance_engine(server, db))[0]
    try:
        await until(lambda: engine.book.runtime(pid).position.fees_paid
                    == pytest.approx(MAKER), what="the venue's fee")
        await until(lambda: not waiting_fees(engine), what="settled")
        rt = engine.book.runtime(pid)
        assert rt.position.realized_pnl == pytest.approx(-MAKER)
        assert _fees(engine, pid, cid) == (pytest.approx(MAKER),) * 2
        assert sum(f.qty for f in records(engine, cid)) == pytest.approx(QTY)
    finally:
        await engine.shutdown()
    async with _restarted_again(server, db) as engine:  # nothing looked up, nor corrected
        assert engine.book.runtime(pid).position.fees_paid == pytest.approx(MAKER)
        assert not waiting_fees(engine)


async def test_a_closed_position_s_estimate_is_corrected_after_a_restart_and_announced_once(
        server: BinanceServer, tmp_path: Path) -> None:
    """The long booked with the ledger's estimate is closed (its close's fee the venue's);
    pmgui restarts before the entry's records come: the lookup corrects the closed row's
    fees and P/L once, and one PositionCorrected says so. Another restart changes nothing."""
    db = tmp_path / "pmgui.db"
    engine = (await binance_engine(server, db))[0]
    try:
        pid, cid = await _entry_booked_withoutrecords(server, engine)
        server.faults.hold_order_events = False
        server.discard_held_events()  # the entry's reports never come
        res = await engine.handle(cmd.ClosePosition(pid))
        assert res.ok, res.message
        # the close's fee: the venue's (its stream's report), the entry's still estimated
        await until(lambda: engine.store.load_position(pid).fees_paid
                    == pytest.approx(ESTIMATE + CLOSE_FEE), what="the close's fee")
        closed = engine.store.load_position(pid)
        assert closed is not None and not closed.is_open
        assert [e["client_id"] for e in waiting_fees(engine).values()] == [cid]
    finally:
        await engine.shutdown()
    close_fees = CLOSE_FEE
    events: list[PositionCorrected] = []
    engine = (await binance_engine(server, db, outbox=_heard(events)))[0]
    try:
        await until(lambda: not waiting_fees(engine), what="looked up and settled")
        await until(lambda: len(events) == 1, what="announced")
        row = engine.store.load_position(pid)
        assert row is not None and not row.is_open
        assert row.fees_paid == pytest.approx(close_fees + MAKER)
        assert row.realized_pnl == pytest.approx(closed.realized_pnl + ESTIMATE - MAKER)
        assert events[0].position.id == pid
        assert events[0].position.realized_pnl == pytest.approx(row.realized_pnl)
        assert _fees(engine, pid, cid)[1] == pytest.approx(MAKER)
    finally:
        await engine.shutdown()
    assert len(events) == 1
    async with _restarted_again(server, db, outbox=_heard(events)) as engine:
        row = engine.store.load_position(pid)
        assert row is not None and row.fees_paid == pytest.approx(close_fees + MAKER)
        assert not waiting_fees(engine)
    assert len(events) == 1


async def test_the_venue_s_records_while_running_replace_ours_and_nothing_is_looked_up(
        server: BinanceServer, tmp_path: Path) -> None:
    db = tmp_path / "pmgui.db"
    engine = (await binance_engine(server, db))[0]
    try:
        pid, cid = await _entry_booked_withoutrecords(server, engine)
        assert len(waiting_fees(engine)) == 1
        server.faults.hold_order_events = False
        await server.release_held_events()  # the stream's reports of the entry's trade
        await until(lambda: not waiting_fees(engine), what="the estimate dropped")
        await until(lambda: engine.book.runtime(pid).position.fees_paid
                    == pytest.approx(MAKER), what="the venue's fee")
        (record,) = records(engine, cid)
        assert "#" not in record.id and record.fee == pytest.approx(MAKER)
    finally:
        await engine.shutdown()
    async with _restarted_again(server, db) as engine:
        assert engine.book.runtime(pid).position.fees_paid == pytest.approx(MAKER)
        assert _fees(engine, pid, cid) == (pytest.approx(MAKER),) * 2
        assert not waiting_fees(engine)


async def test_a_fee_paid_in_bnb_keeps_the_estimate_and_is_not_looked_up_again(
        server: BinanceServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server.fee_asset, server.fee_asset_price = "BNB", Decimal("600")
    db = tmp_path / "pmgui.db"
    pid, cid = await _booked_and_stopped(server, db)
    caplog.set_level(logging.INFO)
    engine = (await binance_engine(server, db))[0]
    try:
        await until(lambda: not waiting_fees(engine), what="settled")
        assert engine.book.runtime(pid).position.fees_paid == pytest.approx(ESTIMATE)
        assert _fees(engine, pid, cid) == (pytest.approx(ESTIMATE),) * 2  # not BNB as USDT
        (line,) = [r.getMessage() for r in caplog.records if "in BNB" in r.getMessage()]
        assert "estimate" in line and "kept" in line
    finally:
        await engine.shutdown()
    async with _restarted_again(server, db) as engine:
        assert engine.book.runtime(pid).position.fees_paid == pytest.approx(ESTIMATE)


async def test_on_the_paper_venue_its_report_replaces_the_answer_s_estimate(
        tmp_path: Path) -> None:
    """The paper venue's create answer says the order filled (its filled and average), and
    its report with the fill record comes after: the entry and the close are booked with
    the ledger's estimate (the position's rate: 5 bp) and a record of its own, which the
    venue's record (4 bp) replaces — the open position's fees, then the closed row's P/L
    corrected once and announced. Nothing waits for a lookup (the venue says every fee)."""
    h = Harness(tmp_path / "pmgui.db", [])
    h.paper.taker_fee = 0.0004
    await h.engine.start()
    try:
        await h.paper.deliver(Tick(SYMBOL, 60_000.0, 1_700_000_000.0), h.engine)
        res = await h.engine.handle(cmd.OpenPosition(SYMBOL, Side.LONG, 0.01, 10))
        assert res.ok, res.message
        rt = h.engine.book.runtime(res.position_id)
        assert rt is not None and rt.position.fees_paid == pytest.approx(0.3)
        (own,) = h.store.fills()
        assert "#" in own.id and own.fee == pytest.approx(0.3)
        await h.paper.flush(h.engine)  # the venue's report of the entry's fill
        assert rt.position.fees_paid == pytest.approx(0.24)
        assert rt.position.realized_pnl == pytest.approx(-0.24)
        (venue,) = h.store.fills()
        assert "#" not in venue.id and venue.fee == pytest.approx(0.24)
        res = await h.engine.handle(cmd.ClosePosition(rt.id))
        assert res.ok, res.message
        row = h.store.load_position(rt.id)
        assert row is not None and not row.is_open
        assert row.fees_paid == pytest.approx(0.54)  # the close's estimate
        await h.paper.flush(h.engine)  # the venue's report of the close's fill
        row = h.store.load_position(rt.id)
        assert row is not None and row.fees_paid == pytest.approx(0.48)
        assert row.realized_pnl == pytest.approx(-0.48)
        assert sum(f.fee for f in h.store.fills(rt.id)) == pytest.approx(0.48)
        assert sum(f.qty for f in h.store.fills(rt.id)) == pytest.approx(0.02)
        (corrected,) = h.of(PositionCorrected)
        assert corrected.position.realized_pnl == pytest.approx(-0.48)
        assert not h.store.get_setting(FEE_ESTIMATES_KEY, {})
    finally:
        await h.engine.shutdown()
