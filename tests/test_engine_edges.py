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
