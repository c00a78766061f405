"""A stop booked at its trigger (its fill was reported without a price, and no trade of it
showed within the bounded lookup) is re-booked at the venue's price when its trades show
later (the adapter looks again, further apart) — once, with the venue's fee, and the
position's realised P/L and exit price become what booking at that price from the start
gives.

The real engine, adapter and ccxt over the local Binance emulator, on a real SQLite journal.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from pmgui.domain.enums import Side
from pmgui.domain.models import Position
from pmgui.engine import commands as cmd
from pmgui.engine.core import EngineCore
from tests.binance_rig import BTC, FAST, binance_engine, open_long
from tests.fakes.binance_server import MAKER_FEE, TAKER_FEE, BinanceServer
from tests.fakes.recording_sink import RecordingSink

TRIGGER = 49000.0
FILL = 48900.0  # where the stop's market order fills
STOP_FEE = float(Decimal("48900") * Decimal("0.01") * TAKER_FEE)
LIMIT = 49500.0
MAKER_ENTRY_FEE = float(Decimal("49500") * Decimal("0.01") * MAKER_FEE)
REBOOKED = "booked at its trigger price 49000 is re-booked at the venue's price 48900"


def _stored(engine: EngineCore, pid: str) -> Position:
    pos = engine.store.load_position(pid)
    assert pos is not None
    return pos


def _notes(engine: EngineCore, pid: str, text: str) -> list[dict]:
    return [a for a in engine.store.actions(pid) if text in str(a.get("inputs"))]


def _as_if_booked_at_the_fill(pos: Position, entry_fees: float) -> None:
    """The closed long as booking 0.01 at 48,900 with the venue's fee from the start gives."""
    assert not pos.is_open and pos.exit_price == pytest.approx(FILL)
    assert pos.fees_paid == pytest.approx(entry_fees + STOP_FEE)
    assert pos.realized_pnl == pytest.approx(
        (FILL - pos.entry) * 0.01 * pos.contract_size - entry_fees - STOP_FEE)


async def _fire_unseen(engine: EngineCore, server: BinanceServer) -> tuple[str, str, float]:
    """A long whose stop fires while its reports say no price and its trades stay hidden:
    booked at the trigger. (position id, the stop's client id, the entry's fees)"""
    pid, stop_cid = await open_long(engine, sl=TRIGGER)
    entry_fees = engine.book.runtime(pid).position.fees_paid
    server.faults.priceless_reports = True
    server.faults.hidden_trades = 10**9
    await server.set_price(BTC, FILL)
    await RecordingSink().wait_for(lambda: _notes(engine, pid, "bounded lookup"), timeout=15)
    pos = _stored(engine, pid)
    assert not pos.is_open and pos.exit_price == pytest.approx(TRIGGER)
    return pid, stop_cid, entry_fees


async def test_a_stop_booked_at_its_trigger_is_rebooked_when_its_trades_show(
        server: BinanceServer, tmp_path: Path) -> None:
    engine, _, _ = await binance_engine(server, tmp_path / "pmgui.db")
    try:
        pid, stop_cid, entry_fees = await _fire_unseen(engine, server)
        server.faults.hidden_trades = 0  # the trades show: the adapter's next look finds them
        await RecordingSink().wait_for(lambda: _notes(engine, pid, REBOOKED), timeout=15)
        _as_if_booked_at_the_fill(_stored(engine, pid), entry_fees)
        (note,) = _notes(engine, pid, REBOOKED)
        assert note["type"] == "reduce"
        fills = [f for f in engine.store.fills(pid) if f.order_client_id == stop_cid]
        assert sum(f.qty for f in fills) == pytest.approx(0.01)
        assert all(f.price == pytest.approx(FILL) for f in fills)
        await engine.reconcile()  # told again: corrected once
        assert len(_notes(engine, pid, REBOOKED)) == 1
        _as_if_booked_at_the_fill(_stored(engine, pid), entry_fees)
    finally:
        await engine.shutdown()


async def test_a_restart_between_the_reference_booking_and_the_trades_keeps_it_and_rebooks(
        server: BinanceServer, tmp_path: Path) -> None:
    db = tmp_path / "pmgui.db"
    settings = replace(FAST, price_relooks=0)  # nothing looked at again before the restart
    engine, _, _ = await binance_engine(server, db, settings)
    pid, stop_cid, entry_fees = await _fire_unseen(engine, server)
    await engine.shutdown()
    server.faults.hidden_trades = 0
    engine, _, _ = await binance_engine(server, db, settings)  # reconciles at start
    try:
        _as_if_booked_at_the_fill(_stored(engine, pid), entry_fees)
        assert len(_notes(engine, pid, REBOOKED)) == 1
    finally:
        await engine.shutdown()
    engine, _, _ = await binance_engine(server, db, settings)  # and again: nothing more
    try:
        _as_if_booked_at_the_fill(_stored(engine, pid), entry_fees)
        assert len(_notes(engine, pid, REBOOKED)) == 1
        fills = [f for f in engine.store.fills(pid) if f.order_client_id == stop_cid]
        assert sum(f.qty for f in fills) == pytest.approx(0.01)
    finally:
        await engine.shutdown()


async def test_an_entry_booked_at_its_limit_is_rebooked_on_the_open_position(
        server: BinanceServer, tmp_path: Path) -> None:
    """A limit entry's fill reported without a price, its trades hidden at first: the long
    opens at its limit price with an estimated fee (and says so); once its trades show, the
    engine re-books the open position with the venue's maker fee — once."""
    engine, _, _ = await binance_engine(server, tmp_path / "pmgui.db")
    try:
        res = await engine.handle(cmd.OpenPosition(BTC, Side.LONG, 0.01, 10, sl=48000.0,
                                                   tp=52000.0, order_type="limit",
                                                   price=LIMIT))
        assert res.ok, res.message
        server.faults.priceless_reports = True
        server.faults.hidden_trades = 10**9
        await server.set_price(BTC, LIMIT)  # the limit fills, as a maker
        waiter = RecordingSink()
        await waiter.wait_for(lambda: engine.book.find(BTC, Side.LONG) is not None, timeout=15)
        rt = engine.book.find(BTC, Side.LONG)
        await waiter.wait_for(lambda: _notes(engine, rt.id, "bounded lookup"), timeout=15)
        assert rt.position.fees_paid != pytest.approx(MAKER_ENTRY_FEE)  # estimated so far
        server.faults.hidden_trades = 0
        rebooked = "is re-booked at the venue's price 49500"
        await waiter.wait_for(lambda: _notes(engine, rt.id, rebooked), timeout=15)
        pos = engine.book.runtime(rt.id).position
        assert pos.is_open and pos.entry == pytest.approx(LIMIT)
        assert pos.fees_paid == pytest.approx(MAKER_ENTRY_FEE)  # the venue's, once
        assert pos.realized_pnl == pytest.approx(-MAKER_ENTRY_FEE)
        (note,) = _notes(engine, rt.id, rebooked)
        assert note["type"] == "open" and "the open position corrected" in str(note["inputs"])
    finally:
        await engine.shutdown()
