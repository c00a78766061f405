"""The real engine announces the correction of a closed position, and only of a closed one.

Binance's create answer has no commission: a market order's fill is booked with an estimate,
and the stream's report of each trade says the venue's fee later. The entry's correction is
the open position's (its snapshots carry it: no `PositionCorrected`); the close's comes
after the position left the book and rewrites its journal row: one `PositionCorrected`,
after the `PositionRemoved`, carrying the row as committed.

The real engine, ccxt adapter and ccxt over the local Binance emulator (its account pays
less than the market's listed taker rate), on a real SQLite journal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pmgui.engine import commands as cmd
from pmgui.engine.events import Event, PositionCorrected, PositionRemoved
from tests.binance_rig import (
    VENUE_FEE,
    binance_engine,
    open_before_the_stream,
    rated_server,
)
from tests.fakes.binance_server import BinanceServer
from tests.venue_support import until


@pytest.fixture
async def server() -> AsyncIterator[BinanceServer]:
    async with rated_server() as srv:
        yield srv


async def test_only_the_closed_positions_fee_correction_is_announced(
        server: BinanceServer, tmp_path: Path) -> None:
    engine, _exchange, outbox = await binance_engine(server, tmp_path / "pmgui.db")
    seen: list[Event] = []
    outbox.add_listener(lambda ev: seen.append(ev)
                        if isinstance(ev, PositionCorrected | PositionRemoved) else None)
    try:
        rt = await open_before_the_stream(engine, server)  # trades' reports after answers
        pid = rt.id
        server.faults.hold_order_events = False
        await server.release_held_events()
        await until(lambda: rt.position.fees_paid == pytest.approx(VENUE_FEE),
                    what="the entry's fee corrected")
        assert seen == []  # the open position's: its snapshots show it

        server.faults.hold_order_events = True
        res = await engine.handle(cmd.ClosePosition(pid))
        assert res.ok, res.message
        booked = engine.store.load_position(pid)
        assert not booked.is_open
        server.faults.hold_order_events = False
        await server.release_held_events()
        await until(lambda: any(isinstance(e, PositionCorrected) for e in seen),
                    what="the close's fee corrected and announced")
        removed, corrected = seen
        assert isinstance(removed, PositionRemoved) and removed.position.id == pid
        assert isinstance(corrected, PositionCorrected)
        row = engine.store.load_position(pid)
        assert corrected.position == row
        assert row.fees_paid == pytest.approx(2 * VENUE_FEE)
        assert row.realized_pnl - booked.realized_pnl == pytest.approx(
            booked.fees_paid - row.fees_paid)
        assert "the venue's fee" in corrected.what
        # a reconciliation pass (it looks the orders up again): nothing more
        await engine.reconcile()
        assert [type(e) for e in seen] == [PositionRemoved, PositionCorrected]
    finally:
        await engine.shutdown()
