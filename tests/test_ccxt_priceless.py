"""A fill the venue reports without a price is booked at the price the venue's own trades
say, not at the order's trigger level.

A stop at 49,000 fires and its market order fills at 48,900; the order reports (the stream's
and REST's) say the quantity but no price (`faults.priceless_reports`: avgPrice, cumQuote,
ap, L all "0"). The adapter looks the fill up — the order's trades, boundedly — and the
ledger books 48,900 with the venue's fee. Only when the trades stay invisible after that
bounded lookup (`faults.hidden_trades`) is it booked at its trigger price, with a log line
and an action-log note that say exactly that. Booked once, whatever the venue tells again.

The real engine, adapter and ccxt over the local Binance emulator, on a real SQLite journal.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from pathlib import Path

import pytest

from pmgui.engine.core import EngineCore
from pmgui.exchange.ccxt_adapter import CcxtExchange
from tests.binance_rig import BTC, binance_engine, open_long
from tests.fakes.binance_server import TAKER_FEE, BinanceServer
from tests.fakes.recording_sink import RecordingSink

TRIGGER = 49000.0
FILL = 48900.0  # where the stop's market order fills
STOP_FEE = float(Decimal("48900") * Decimal("0.01") * TAKER_FEE)
LOOKUP_NOTE = "no fill price of it was visible after a bounded lookup; booked at its " \
    "trigger price 49000"


async def _engine(server: BinanceServer, db: Path, stream: bool = True
                  ) -> tuple[EngineCore, CcxtExchange]:
    engine, exchange, _ = await binance_engine(server, db, stream=stream)
    return engine, exchange


async def _open_long(engine: EngineCore) -> tuple[str, str]:
    return await open_long(engine, sl=TRIGGER)


def _closed(engine: EngineCore, pid: str) -> bool:
    pos = engine.store.load_position(pid)
    return pos is not None and not pos.is_open


def _notes(engine: EngineCore, pid: str) -> list[str]:
    return [str(a.get("inputs")) for a in engine.store.actions(pid)]


async def _settle(exchange: CcxtExchange, server: BinanceServer, stop_cid: str) -> None:
    """Until the stream has told everything it will: both the stop and its market order
    were seen final."""
    (algo,) = [o for o in server.state.algo_orders.values() if o.client_id == stop_cid]
    waiter = RecordingSink()
    await waiter.wait_for(
        lambda: exchange._raw_seen.get((BTC, str(algo.actual_order_id)), ("", ""))[1]
        == "closed" and exchange._raw_seen.get((BTC, str(algo.order_id)), ("", ""))[1]
        == "closed", timeout=15)


async def test_a_stop_reported_without_a_price_is_booked_at_its_trades_price(
        server: BinanceServer, tmp_path: Path) -> None:
    engine, exchange = await _engine(server, tmp_path / "pmgui.db")
    try:
        pid, stop_cid = await _open_long(engine)
        server.faults.priceless_reports = True
        await server.set_price(BTC, FILL)  # through the stop: its market order fills here
        await RecordingSink().wait_for(lambda: _closed(engine, pid), timeout=15)
        await _settle(exchange, server, stop_cid)
        pos = engine.store.load_position(pid)
        assert (pos.exit_reason, pos.exit_price) == ("stop_loss", pytest.approx(FILL))
        (fill,) = [f for f in engine.store.fills(pid) if f.order_client_id == stop_cid]
        assert (fill.qty, fill.price) == (pytest.approx(0.01), pytest.approx(FILL))
        assert fill.fee == pytest.approx(STOP_FEE)  # the venue's fee, not an estimate
        assert not [n for n in _notes(engine, pid) if "bounded lookup" in n]
        # told again (the REST resync, a reconciliation): booked once still
        await engine.reconcile()
        assert len([f for f in engine.store.fills(pid) if f.order_client_id == stop_cid]) == 1
        assert engine.store.load_position(pid).exit_price == pytest.approx(FILL)
    finally:
        await engine.shutdown()


async def test_a_priceless_stop_whose_trades_stay_invisible_is_booked_at_its_trigger_and_says_so(
        server: BinanceServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    engine, exchange = await _engine(server, tmp_path / "pmgui.db")
    try:
        pid, stop_cid = await _open_long(engine)
        server.faults.priceless_reports = True
        server.faults.hidden_trades = 10_000
        await server.set_price(BTC, FILL)
        await RecordingSink().wait_for(lambda: _closed(engine, pid), timeout=15)
        await _settle(exchange, server, stop_cid)
        pos = engine.store.load_position(pid)
        assert (pos.exit_reason, pos.exit_price) == ("stop_loss", pytest.approx(TRIGGER))
        notes = [n for n in _notes(engine, pid) if LOOKUP_NOTE in n]
        assert len(notes) == 1, _notes(engine, pid)  # said once, on the position
        assert any(LOOKUP_NOTE in r.getMessage() for r in caplog.records)
        fills = [f for f in engine.store.fills(pid) if f.order_client_id == stop_cid]
        assert sum(f.qty for f in fills) == pytest.approx(0.01)  # booked once
    finally:
        await engine.shutdown()


@pytest.mark.parametrize("stream", [True, False])
async def test_reconcile_after_a_restart_books_a_priceless_stop_at_its_trades_price(
        server: BinanceServer, tmp_path: Path, stream: bool) -> None:
    """pmgui was down while the stop fired, and the venue's order records carry no price:
    the lookup by client id at the restart follows the stop to its market order, and that
    order's trades give the price and the fee (`stream` False: restarted without the
    venue's streams, the same)."""
    db = tmp_path / "pmgui.db"
    engine, _ = await _engine(server, db)
    pid, stop_cid = await _open_long(engine)
    await engine.shutdown()
    server.faults.priceless_reports = True
    server.faults.hidden_trades = 1  # not visible at the first look
    await server.set_price(BTC, FILL)
    engine, _ = await _engine(server, db, stream)
    try:
        assert server.faults.hidden_trades == 0
        pos = engine.store.load_position(pid)
        assert pos is not None and not pos.is_open
        assert (pos.exit_reason, pos.exit_price) == ("stop_loss", pytest.approx(FILL))
        (fill,) = [f for f in engine.store.fills(pid) if f.order_client_id == stop_cid]
        assert (fill.qty, fill.price) == (pytest.approx(0.01), pytest.approx(FILL))
        assert fill.fee == pytest.approx(STOP_FEE)  # the venue's, not an estimate
        assert not [n for n in _notes(engine, pid) if "bounded lookup" in n
                    or "closed outside" in n]
    finally:
        await engine.shutdown()
