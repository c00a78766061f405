"""The engine at the edges (issue 8), through the real ccxt adapter over the local Binance
emulator with a real SQLite store: honest command results, start-up without a blind spot,
never closing what may not be ours, flatten."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pmgui.domain.enums import Protection
from pmgui.domain.models import Tick
from pmgui.engine import commands as cmd
from pmgui.engine.events import ActionTaken
from tests.fakes.binance_server import BinanceServer
from tests.test_engine_emulator_faults import BTC, Rig


@pytest.fixture
async def server() -> AsyncIterator[BinanceServer]:
    srv = BinanceServer()
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def rig(server: BinanceServer, tmp_path: Path) -> AsyncIterator[Rig]:
    r = Rig(server, tmp_path / "pmgui.db")
    yield r
    await r.stop()


async def test_set_targets_answers_local_only_with_the_venues_reason(server, rig):
    server.state.set_position("BTCUSDT", "0.02", "50000", leverage=10)
    await rig.start()
    pos = rig.position()
    await rig.engine.on_tick(Tick(BTC, 50_100.0, time.time()))
    ok = await rig.engine.handle(cmd.SetTargets(pos.id, sl=49_700.0))
    assert ok.outcome("sl") == cmd.ProtectionOutcome("sl", 49_700.0, "on_exchange")
    assert ok.outcome("tp").protection == "on_exchange"

    # the venue refuses the new stop (a rate-limit storm on order placement)
    server.faults.http_429 = 10_000
    server.faults.http_429_paths = ("algoOrder",)
    server.faults.http_429_methods = ("POST",)
    res = await rig.engine.handle(cmd.SetTargets(pos.id, sl=49_800.0))
    sl = res.outcome("sl")
    assert (sl.level, sl.protection) == (49_800.0, "local_only")
    assert "429" in sl.reason or "rate" in sl.reason.lower(), sl.reason
    assert "local only" in res.message and "49800" in res.message
    assert res.outcome("tp").protection == "on_exchange"  # the TP was not touched
    assert rig.engine.positions[pos.id].sl == 49_800.0  # guarded locally meanwhile
    # the manual move took the rules' path: one MOVE_SL action, journaled with the level
    moves = [a for a in rig.store.actions(pos.id) if a["type"] == "move_sl"]
    assert sorted(m["sl"] for m in moves) == [49_700.0, 49_800.0]
    assert [e.action.sl for e in rig.of(ActionTaken) if e.action.type.value == "move_sl"] \
        == [49_700.0, 49_800.0]

    server.faults.http_429 = 0
    await rig.engine.periodic()  # housekeeping finishes the move
    assert [float(o.stop_price) for o in rig.stops()] == [49_800.0]
    again = await rig.engine.handle(cmd.SetTargets(pos.id))  # nothing to change: just ask
    assert again.outcome("sl").protection == "on_exchange"
    assert rig.engine.protection(rig.position()) is Protection.ON_EXCHANGE
    rig.agree()


def closes_sent(server: BinanceServer) -> list[dict[str, str]]:
    """Every reduce-only market order pmgui asked the emulator for (accepted or not)."""
    return [p for m, path, p in server.requests
            if m == "POST" and path.endswith("/order") and p.get("type") == "MARKET"
            and p.get("reduceOnly", "false").lower() == "true"]


async def test_stop_filling_during_start_up_then_a_manual_reopen(server, tmp_path):
    """The issue's first defect: the exchange's stop fills after pmgui's first look at the
    exchange and its events never arrive; then the trader reopens the same symbol and side by
    hand. pmgui books the fired stop, sends no close, and leaves the new position alone."""
    server.state.set_position("BTCUSDT", "0.02", "50000", leverage=10)
    first = Rig(server, tmp_path / "pmgui.db")
    await first.start()
    old = first.position()
    (stop,) = [o for o in first.engine.orders.values() if o.role.value == "stop_loss"]
    await first.stop()  # the app is closed; the exchange keeps the stop

    server.faults.hold_order_events = True  # the stop's events never reach pmgui
    rig = Rig(server, tmp_path / "pmgui.db")
    looked = rig.exchange.fetch_positions

    async def first_look_then_the_stop_fires():
        snapshot = await looked()
        if server.state.positions["BTCUSDT"].amount:
            await server.set_price(BTC, 49_400)  # through the 49 500 stop: it fills now
        return snapshot

    rig.exchange.fetch_positions = first_look_then_the_stop_fires  # type: ignore[method-assign]
    try:
        await rig.start()
        assert server.state.positions["BTCUSDT"].amount == 0  # the stop did fire
        # the rules see the price through the stop: the stop's state is looked up first
        await rig.engine.on_tick(Tick(BTC, 49_400.0, time.time()))
        await rig.engine.periodic()
        if rig.engine.positions:  # its fill not known yet: the next pass settles it
            await rig.engine.reconcile()
        assert not rig.engine.positions
        assert closes_sent(server) == []

        # the trader opens the same symbol and side by hand
        server.state.set_position("BTCUSDT", "0.03", "49400", leverage=10)
        await rig.engine.reconcile()  # adopted as a new position
        (new,) = rig.engine.positions.values()
        assert new.id != old.id and new.qty == 0.03
        for price in (49_400.0, 49_300.0):  # below the old stop, above the new one
            await rig.engine.on_tick(Tick(BTC, price, time.time()))
        await rig.engine.periodic()
        await rig.engine.reconcile()
        assert float(server.state.positions["BTCUSDT"].amount) == 0.03  # untouched
        assert closes_sent(server) == []  # no close was ever sent
        # the stop that actually fired is in the journal, and closed the old position
        fired = rig.store.order(stop.client_id)
        assert fired is not None and fired.status.value == "filled" and fired.filled == 0.02
        (closed,) = rig.store.closed_positions()
        assert closed.id == old.id and closed.exit_reason == "stop_loss"
        assert closed.exit_price == pytest.approx(49_400.0, rel=0.01)
    finally:
        server.faults.hold_order_events = False
        await rig.stop()
