"""The fee of a fired Binance stop that pmgui booked itself, with an estimate, is corrected
after a restart.

Binance USDⓈ-M serves stops as algo orders: the journal holds the stop's algo id, and the
trades of its fill are under the market order the trigger created (`actualOrderId`). When a
lookup found the stop fired and filled, but no record of the venue's told its fill (its
stream's report did not come before pmgui stopped), the ledger booked the quantity with a
record of its own (`<client id>#<filled>`) and an estimated fee. The next start reads the
market order's id off the stop's algo order, looks up that order's trades (the same bounded
rounds, with the backoff, as any recalled estimate) and corrects the fee once: the closed
position's fees and realised P/L, its fill record, one PositionCorrected. A stop that names
no market order yet, or whose lookup fails, counts as not found in that round; after the
last round the estimate stays (the log says so) and the next start looks again. A fee paid
in BNB keeps the estimate, as for any order.

The real engine, adapter and ccxt over the local Binance emulator (its account pays less
than the market's listed taker rate), on a real SQLite journal; a restart is a new engine
over the same file. The stop is found fired by a lookup by client id (a second adapter that
recalled the stop, without a sink: nothing else told), applied by the engine's own entry as
reconciliation applies its lookups — on an engine without streams, so that nothing but
that lookup tells it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from pmgui.domain.enums import OrderType
from pmgui.engine.core import EngineCore
from pmgui.engine.events import PositionCorrected
from pmgui.engine.outbox import Outbox
from tests.binance_rig import (
    BTC,
    FAST,
    TAKER_RATE,
    VENUE_FEE,
    binance_engine,
    binance_exchange,
    open_long,
    rated_server,
    records,
    trade_listings,
    waiting_fees,
)
from tests.binance_rig import ESTIMATE as ENTRY_ESTIMATE
from tests.fakes.binance_server import BinanceServer
from tests.venue_support import until

FILL = 48900.0  # where the stop's market order fills
ESTIMATE = FILL * 0.01 * 0.0005  # the ledger's estimate: the market's listed taker rate
STOP_FEE = float(Decimal("48900") * Decimal("0.01") * TAKER_RATE)  # what the venue charged


@pytest.fixture
async def server() -> AsyncIterator[BinanceServer]:
    async with rated_server() as srv:
        yield srv


def _algo_lookups(server: BinanceServer, stop_cid: str) -> int:
    """How often the emulator was asked for the stop's algo order by its algo id."""
    (algo,) = [o for o in server.state.algo_orders.values() if o.client_id == stop_cid]
    return sum(1 for method, path, params in server.requests
               if method == "GET" and path.endswith("/algoOrder")
               and params.get("algoId") == str(algo.order_id))


def _heard(events: list[PositionCorrected]) -> Outbox:
    """An outbox whose listener keeps the corrections published (from the start on)."""
    outbox = Outbox()
    outbox.add_listener(lambda ev: events.append(ev) if isinstance(ev, PositionCorrected)
                        else None)
    return outbox


async def _stop_booked_by_pmgui_then_stopped(server: BinanceServer, db: Path,
                                             entry_fee: float = VENUE_FEE, hold: bool = False
                                             ) -> tuple[str, str, float]:
    """A long of 0.01 BTC at 50,000 (its entry's fee the venue's, told by the stream) with
    its stop (49,000) on the exchange. On an engine without streams the stop fires (its
    market order fills at FILL); a lookup by client id finds it filled, without records,
    and the engine books that answer: the position closed, the stop's fill a record of the
    ledger's own with an estimated fee. pmgui stops. (position id, the stop's client id,
    the closed position's realised P/L as booked). `hold`: the market order's reports are
    held back (`hold_order_events`, left on), for the caller to release."""
    engine = (await binance_engine(server, db))[0]
    try:
        pid, stop_cid = await open_long(engine, sl=49000)
        await until(lambda: not waiting_fees(engine), what="the entry's fee told")
    finally:
        await engine.shutdown()
    engine = (await binance_engine(server, db, stream=False))[0]
    try:
        stop = engine.ledger.get(stop_cid)
        assert stop is not None and stop.type is OrderType.STOP_MARKET
        server.faults.hold_order_events = hold
        await server.set_price(BTC, FILL)  # the stop fires, its market order fills
        await server.set_price(BTC, 48000.0)
        lookup = binance_exchange(server)
        await lookup.connect()
        try:
            lookup.recall_orders([stop])  # as the journal tells a restarted adapter
            found = await lookup.fetch_order_by_client_id(stop_cid, BTC)
        finally:
            await lookup.close()
        assert found is not None and found.type is OrderType.STOP_MARKET
        assert (found.filled, found.average) == (pytest.approx(0.01), pytest.approx(FILL))
        await engine.apply_order(found, ())
        (own,) = records(engine, stop_cid)
        assert own.id.startswith(stop_cid + "#") and own.fee == pytest.approx(ESTIMATE)
        assert own.exchange_order_id == stop.exchange_id  # the algo id, not its child's
        assert [e["client_id"] for e in waiting_fees(engine).values()] == [stop_cid]
        pos = engine.store.load_position(pid)
        assert pos is not None and not pos.is_open and pos.exit_reason == "stop_loss"
        assert pos.fees_paid == pytest.approx(entry_fee + ESTIMATE)
        return pid, stop_cid, pos.realized_pnl
    finally:
        await engine.shutdown()


def _corrected(engine: EngineCore, pid: str, stop_cid: str, booked_pnl: float) -> bool:
    """The closed position and the stop's record hold the venue's fee of the stop's fill."""
    row = engine.store.load_position(pid)
    kept = records(engine, stop_cid)
    return row is not None and len(kept) == 1 and \
        kept[0].fee == pytest.approx(STOP_FEE) and \
        row.fees_paid == pytest.approx(VENUE_FEE + STOP_FEE) and \
        row.realized_pnl == pytest.approx(booked_pnl + ESTIMATE - STOP_FEE)


async def test_a_fired_stop_s_estimated_fee_is_corrected_once_after_a_restart(
        server: BinanceServer, tmp_path: Path) -> None:
    db = tmp_path / "pmgui.db"
    pid, stop_cid, booked = await _stop_booked_by_pmgui_then_stopped(server, db)
    events: list[PositionCorrected] = []
    engine = (await binance_engine(server, db, outbox=_heard(events)))[0]
    try:
        await until(lambda: not waiting_fees(engine), what="looked up and settled")
        assert _corrected(engine, pid, stop_cid, booked)
        (record,) = records(engine, stop_cid)
        assert record.id.startswith(stop_cid + "#")  # the record corrected, not replaced
        await until(lambda: len(events) == 1, what="announced")
        assert events[0].position.realized_pnl == pytest.approx(booked + ESTIMATE - STOP_FEE)
    finally:
        await engine.shutdown()
    assert _algo_lookups(server, stop_cid) >= 1
    looked, listed = _algo_lookups(server, stop_cid), trade_listings(server)
    for _ in range(2):  # more restarts: nothing looked up, nothing corrected again
        engine = (await binance_engine(server, db, outbox=_heard(events)))[0]
        try:
            assert _corrected(engine, pid, stop_cid, booked) and not waiting_fees(engine)
        finally:
            await engine.shutdown()
        assert (_algo_lookups(server, stop_cid), trade_listings(server)) == (looked, listed)
    assert len(events) == 1


async def test_a_fee_the_stream_tells_meanwhile_is_corrected_once_not_again_by_the_lookup(
        server: BinanceServer, tmp_path: Path) -> None:
    """The market order's report comes after the restart while the lookup still waits for
    the stop to name that order: the venue's record replaces pmgui's own (its fee corrected
    once); the lookup that finds the fee afterwards changes nothing."""
    db = tmp_path / "pmgui.db"
    pid, stop_cid, booked = await _stop_booked_by_pmgui_then_stopped(server, db, hold=True)
    server.faults.unnamed_children = 10**9
    events: list[PositionCorrected] = []
    patient = replace(FAST, fee_lookups=10**6)  # looks until the stop names its order
    engine, exchange, _ = await binance_engine(server, db, patient, outbox=_heard(events))
    try:
        await until(lambda: _algo_lookups(server, stop_cid) >= 2, what="looking")
        server.faults.hold_order_events = False
        await server.release_held_events()  # the stream's report of the market order
        await until(lambda: not waiting_fees(engine), what="the venue's record taken")
        await until(lambda: len(events) == 1, what="announced")
        assert _corrected(engine, pid, stop_cid, booked)
        (record,) = records(engine, stop_cid)
        assert "#" not in record.id
        server.faults.unnamed_children = 0  # the lookup finds the same fee now
        await until(lambda: not exchange._fee_lookups, what="the lookup done")
        assert _corrected(engine, pid, stop_cid, booked)
        assert records(engine, stop_cid) == [record] and len(events) == 1
    finally:
        await engine.shutdown()


@pytest.mark.parametrize("unseen", ["child unnamed", "trades hidden"])
async def test_a_market_order_or_trades_not_visible_for_some_rounds_are_looked_up_again(
        server: BinanceServer, tmp_path: Path, unseen: str) -> None:
    """The stop's algo order names no market order yet (TRIGGERING) in the first lookups,
    or that order's trades are not listed yet: not found in those rounds, found later."""
    db = tmp_path / "pmgui.db"
    pid, stop_cid, booked = await _stop_booked_by_pmgui_then_stopped(server, db)
    if unseen == "child unnamed":
        server.faults.unnamed_children = 3
    else:
        server.faults.hidden_trades = 3
    engine = (await binance_engine(server, db))[0]
    try:
        await until(lambda: not waiting_fees(engine), what="looked up and settled")
        assert _corrected(engine, pid, stop_cid, booked)
        assert (server.faults.unnamed_children, server.faults.hidden_trades) == (0, 0)
        assert _algo_lookups(server, stop_cid) == (4 if unseen == "child unnamed" else 1)
    finally:
        await engine.shutdown()


@pytest.mark.parametrize("venue", ["child never named", "algo lookup refused"])
async def test_a_market_order_never_seen_leaves_the_estimate_and_the_next_start_retries(
        server: BinanceServer, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        venue: str) -> None:
    """Bounded: after the last round the estimate stays, the log says so, nothing crashes
    and nothing else is attributed to the stop's fill; the next start looks again."""
    db = tmp_path / "pmgui.db"
    pid, stop_cid, booked = await _stop_booked_by_pmgui_then_stopped(server, db)
    if venue == "child never named":
        server.faults.unnamed_children = 10**9
    else:
        server.faults.refused_paths = ("algoOrder",)
    caplog.set_level(logging.INFO)
    listed = trade_listings(server)
    engine = (await binance_engine(server, db))[0]  # started: nothing waited for the lookup
    try:
        assert engine.started
        await until(lambda: any("its fee stays the estimate" in r.getMessage()
                                for r in caplog.records), what="the lookup given up")
        (record,) = records(engine, stop_cid)
        assert record.fee == pytest.approx(ESTIMATE)
        row = engine.store.load_position(pid)
        assert row is not None and row.fees_paid == pytest.approx(VENUE_FEE + ESTIMATE)
        assert row.realized_pnl == pytest.approx(booked)
        assert [e["client_id"] for e in waiting_fees(engine).values()] == [stop_cid]
        assert trade_listings(server) == listed  # no trades of another order looked at
    finally:
        await engine.shutdown()
    server.faults.unnamed_children = 0
    server.faults.refused_paths = ()
    engine = (await binance_engine(server, db))[0]
    try:
        await until(lambda: not waiting_fees(engine), what="looked up again and settled")
        assert _corrected(engine, pid, stop_cid, booked)
    finally:
        await engine.shutdown()


async def test_a_fired_stop_s_fee_paid_in_bnb_keeps_the_estimate_and_says_so(
        server: BinanceServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server.fee_asset, server.fee_asset_price = "BNB", Decimal("600")
    db = tmp_path / "pmgui.db"  # (the entry's fee too: paid in BNB, its estimate kept)
    pid, stop_cid, booked = await _stop_booked_by_pmgui_then_stopped(server, db,
                                                                     ENTRY_ESTIMATE)
    caplog.set_level(logging.INFO)
    engine = (await binance_engine(server, db))[0]
    try:
        await until(lambda: not waiting_fees(engine), what="settled")
        (record,) = records(engine, stop_cid)
        assert record.fee == pytest.approx(ESTIMATE)  # never the BNB amount as USDT
        row = engine.store.load_position(pid)
        assert row is not None and row.realized_pnl == pytest.approx(booked)
        (line,) = [r.getMessage() for r in caplog.records
                   if "in BNB" in r.getMessage() and record.id in r.getMessage()]
        assert "estimate" in line and "kept" in line
    finally:
        await engine.shutdown()
    looked, listed = _algo_lookups(server, stop_cid), trade_listings(server)
    engine = (await binance_engine(server, db))[0]  # settled: not looked up again
    try:
        assert not waiting_fees(engine)
    finally:
        await engine.shutdown()
    assert (_algo_lookups(server, stop_cid), trade_listings(server)) == (looked, listed)
