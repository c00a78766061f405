"""A fill booked with an estimated fee keeps that fact across a restart: when pmgui stops
before the venue's report of the fee (Binance's create answer has no commission; its
stream's trade report, a moment later, has), the next start looks up the order's trades
beside the stream and corrects the booking once, as that report would have.

Bounded: a venue whose trades never show (or whose trade listing fails) holds up neither
the start nor anything else; the lookup gives up with a line in the log and the next start
looks again (for a day). A fee paid in BNB is not a USDT amount: the estimate is kept, and
the log says so.

The real engine, adapter and ccxt over the local Binance emulator (its account pays less
than the market's listed taker rate), on a real SQLite journal; a restart is a new engine
over the same file.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from pmgui.domain.enums import Side
from pmgui.engine import commands as cmd
from pmgui.engine.core import EngineCore
from tests.binance_rig import (
    ESTIMATE,
    VENUE_FEE,
    binance_engine,
    open_before_the_stream,
    rated_server,
    trade_listings,
    waiting_fees,
)
from tests.fakes.binance_server import BinanceServer
from tests.venue_support import until

ETH = "ETH/USDT:USDT"


@pytest.fixture
async def server() -> AsyncIterator[BinanceServer]:
    async with rated_server() as srv:
        yield srv


async def _open_before_its_fee_is_told(server: BinanceServer, db: Path) -> str:
    """A market long booked from the create answer (an estimated fee); pmgui stops before
    the stream's trade report, which never comes. The position id."""
    engine = (await binance_engine(server, db))[0]
    try:
        rt = await open_before_the_stream(engine, server)
        assert rt.position.fees_paid == pytest.approx(ESTIMATE)
        assert len(waiting_fees(engine)) == 1  # the estimate's fact, journaled with its fill
        return rt.id
    finally:
        await engine.shutdown()
        server.faults.hold_order_events = False
        server.discard_held_events()


def _fees(engine: EngineCore, pid: str) -> tuple[float, float, float]:
    """(the open position's fees, its journal row's, its fill records')"""
    rt = engine.book.runtime(pid)
    row = engine.store.load_position(pid)
    assert rt is not None and row is not None
    return rt.position.fees_paid, row.fees_paid, sum(f.fee for f in engine.store.fills(pid))


async def test_a_restart_before_the_fee_is_told_looks_it_up_and_corrects_once(
        server: BinanceServer, tmp_path: Path) -> None:
    db = tmp_path / "pmgui.db"
    pid = await _open_before_its_fee_is_told(server, db)
    engine = (await binance_engine(server, db))[0]
    try:
        await until(lambda: _fees(engine, pid)[0]
                                       == pytest.approx(VENUE_FEE), what="the venue's fee")
        rt = engine.book.runtime(pid)
        assert rt.position.realized_pnl == pytest.approx(-VENUE_FEE)
        await until(lambda: not waiting_fees(engine), what="settled")
        assert _fees(engine, pid) == (pytest.approx(VENUE_FEE),) * 3
    finally:
        await engine.shutdown()
    listed = trade_listings(server)
    for _ in range(2):  # more restarts: nothing looked up, nothing corrected again
        engine = (await binance_engine(server, db))[0]
        try:
            assert _fees(engine, pid) == (pytest.approx(VENUE_FEE),) * 3
            assert not waiting_fees(engine) and trade_listings(server) == listed
        finally:
            await engine.shutdown()


@pytest.mark.parametrize("venue", ["hidden", "refusing"])
async def test_trades_that_never_show_give_up_with_a_log_line_and_the_next_start_retries(
        server: BinanceServer, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        venue: str) -> None:
    db = tmp_path / "pmgui.db"
    pid = await _open_before_its_fee_is_told(server, db)
    if venue == "hidden":
        server.faults.hidden_trades = 10**9
    else:
        server.faults.refused_paths = ("userTrades",)
    caplog.set_level(logging.INFO)
    engine = (await binance_engine(server, db))[0]  # started: nothing waited for the lookup
    try:
        assert engine.started
        await until(
            lambda: any("its fee stays the estimate" in r.getMessage() for r in caplog.records),
            what="the lookup given up")
        assert _fees(engine, pid) == (pytest.approx(ESTIMATE),) * 3
        assert len(waiting_fees(engine)) == 1  # looked up again at the next start
    finally:
        await engine.shutdown()
    server.faults.hidden_trades = 0
    server.faults.refused_paths = ()
    engine = (await binance_engine(server, db))[0]
    try:
        await until(lambda: _fees(engine, pid)
                                       == (pytest.approx(VENUE_FEE),) * 3, what="corrected")
    finally:
        await engine.shutdown()


async def test_a_fee_paid_in_bnb_keeps_the_estimate_and_says_so(
        server: BinanceServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server.fee_asset, server.fee_asset_price = "BNB", Decimal("600")
    db = tmp_path / "pmgui.db"
    pid = await _open_before_its_fee_is_told(server, db)
    caplog.set_level(logging.INFO)
    engine = (await binance_engine(server, db))[0]
    try:
        await until(lambda: not waiting_fees(engine), what="settled")
        assert _fees(engine, pid) == (pytest.approx(ESTIMATE),) * 3  # never the BNB amount
        (line,) = [r.getMessage() for r in caplog.records if "in BNB" in r.getMessage()]
        assert "estimate" in line and "kept" in line
    finally:
        await engine.shutdown()
    listed = trade_listings(server)
    engine = (await binance_engine(server, db))[0]  # settled: not looked up again
    try:
        assert _fees(engine, pid) == (pytest.approx(ESTIMATE),) * 3
        assert trade_listings(server) == listed
    finally:
        await engine.shutdown()


async def test_a_bnb_fee_told_by_the_stream_is_not_booked_as_usdt(
        server: BinanceServer, tmp_path: Path) -> None:
    """In one session: the stream's trade report says the fee in BNB; the estimate stays
    (a BNB amount booked as USDT would be 600 times too small), and nothing waits on it."""
    server.fee_asset, server.fee_asset_price = "BNB", Decimal("600")
    engine = (await binance_engine(server, tmp_path / "pmgui.db"))[0]
    try:
        # a limit entry the stream tells first (its report: the fee in BNB)
        res = await engine.handle(cmd.OpenPosition(ETH, Side.SHORT, 0.01, 10, sl=3300.0,
                                                   tp=2800.0, order_type="limit",
                                                   price=3100.0))
        assert res.ok, res.message
        await server.set_price(ETH, 3100.0)  # it fills, as a maker
        await until(lambda: engine.book.find(ETH, Side.SHORT) is not None, what="opened")
        short = engine.book.find(ETH, Side.SHORT).id
        assert _fees(engine, short) == (pytest.approx(3100.0 * 0.01 * 0.0005),) * 3
        assert not waiting_fees(engine)
        # a market entry told first by its create answer, then by the stream
        pid = (await open_before_the_stream(engine, server)).id
        server.faults.hold_order_events = False
        await server.release_held_events()
        await until(lambda: not waiting_fees(engine), what="settled")
        assert _fees(engine, pid) == (pytest.approx(ESTIMATE),) * 3
    finally:
        await engine.shutdown()


async def test_an_estimate_the_stream_confirms_is_not_looked_up_after_a_restart(
        server: BinanceServer, tmp_path: Path) -> None:
    """The account pays the listed taker rate: the stream's report says the estimate was
    the venue's fee. Nothing is corrected, nothing waits, and a restart looks nothing up."""
    server.taker_fee = Decimal("0.0005")
    db = tmp_path / "pmgui.db"
    engine = (await binance_engine(server, db))[0]
    try:
        pid = (await open_before_the_stream(engine, server)).id
        assert len(waiting_fees(engine)) == 1
        server.faults.hold_order_events = False
        await server.release_held_events()
        await until(lambda: not waiting_fees(engine), what="settled by the stream's report")
    finally:
        await engine.shutdown()
    listed = trade_listings(server)
    engine = (await binance_engine(server, db))[0]
    try:
        assert _fees(engine, pid) == (pytest.approx(ESTIMATE),) * 3
        assert trade_listings(server) == listed
    finally:
        await engine.shutdown()
