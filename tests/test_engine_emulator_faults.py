"""Faults a live venue inflicts, through the whole engine: EngineCore over the real ccxt
adapter over the local Binance emulator, with a real SQLite store.

Each test flips the emulator's fault switches (429 storms, creates whose answer never
arrives, margin refusals, crossed triggers, silent or dropped websockets, a stop cancelled
behind pmgui's back) and checks what the trader is told and that the store and the
emulator's book still agree: no duplicate orders, nothing lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from pmgui.domain.enums import OrderRole, OrderStatus, Protection, Side
from pmgui.domain.errors import InsufficientFunds
from pmgui.domain.models import Tick, frozen_map
from pmgui.engine import commands as cmd
from pmgui.engine.core import EngineCore
from pmgui.engine.events import (
    ActionTaken,
    ConnectionEvent,
    ErrorEvent,
    PositionSnapshot,
    TickEvent,
)
from pmgui.engine.ids import is_ours
from pmgui.engine.outbox import Outbox
from pmgui.engine.settings import EngineSettings, SymbolRules
from pmgui.store.db import Store
from tests.binance_rig import binance_exchange
from tests.fakes.binance_server import BinanceServer
from tests.venue_support import FAST  # short polls, quick bounded lookups

BTC = "BTC/USDT:USDT"
MONITOR = EngineSettings(default_preset="manual", protect_throttle=0.0,
                         symbols=frozen_map({BTC: SymbolRules("monitor")}))


class Rig:
    """One engine over the adapter over the emulator, recording every event."""

    def __init__(self, server: BinanceServer, db: Path,
                 settings: EngineSettings = MONITOR) -> None:
        self.server = server
        self.exchange = binance_exchange(server, FAST)
        self.store = Store.open(db)
        self.outbox = Outbox()
        self.events: list[object] = []
        self.outbox.add_listener(self.events.append)
        self.offset = 0.0  # seconds the engine's clock runs ahead of the wall clock
        self.engine = EngineCore(self.exchange, self.store, self.outbox, settings,
                                 clock=lambda: time.time() + self.offset)
        self.run: asyncio.Task[None] | None = None

    async def start(self, stream: bool = True) -> None:
        await self.engine.start(stream=stream)  # streams first, then snapshot + reconcile

    async def stop(self) -> None:
        if self.run is not None:
            self.run.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.run
        await self.engine.shutdown()

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]

    def position(self):
        (pos,) = [p for p in self.engine.positions.values() if p.is_open]
        return pos

    def stops(self, kind: str = "STOP_MARKET") -> list:
        return [o for o in self.server.state.algo_orders.values()
                if o.is_open and o.type == kind]

    def agree(self) -> None:
        """Store and emulator agree: one SL/TP per position, every open order known."""
        state = self.server.state
        remote = {s: p.amount for s, p in state.positions.items() if p.amount != 0}
        local = {p.symbol.replace("/", "").split(":")[0]: p.qty
                 for p in self.store.load_open_positions()}
        assert {s: float(abs(a)) for s, a in remote.items()} == local
        for o in [o for o in [*state.algo_orders.values(), *state.orders.values()]
                  if o.is_open and is_ours(o.client_id)]:
            known = self.store.order(o.client_id)
            assert known is not None and known.status is OrderStatus.OPEN, o
        for kind in ("STOP_MARKET", "TAKE_PROFIT_MARKET"):
            by_symbol: dict[str, int] = {}
            for o in self.stops(kind):
                by_symbol[o.symbol] = by_symbol.get(o.symbol, 0) + 1
            assert all(n == 1 for n in by_symbol.values()), (kind, by_symbol)
        algo_ids = [o.client_id for o in state.algo_orders.values()]
        assert len(algo_ids) == len(set(algo_ids))
        assert not self.store.pending_orders()


async def until(cond: Callable[[], object], timeout: float = 15.0) -> None:
    """Poll `cond` on the loop; the deadline only guards against a hang."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


@pytest.fixture(name="rig")
async def rig_fixture(server: BinanceServer, tmp_path: Path) -> AsyncIterator[Rig]:
    """A Rig over the emulator on a fresh database, stopped after the test (also the `rig`
    of test_engine_edges)."""
    r = Rig(server, tmp_path / "pmgui.db")
    yield r
    await r.stop()


async def test_429_storm_during_protection(server, rig):
    server.state.set_position("BTCUSDT", "0.02", "50000", leverage=10)
    # a short storm on order placement: retried inside the adapter, placed once
    server.faults.http_429 = 3
    server.faults.http_429_paths = ("algoOrder",)
    server.faults.http_429_methods = ("POST",)
    await rig.start()
    pos = rig.position()
    assert [float(o.stop_price) for o in rig.stops()] == [49_500.0]
    assert rig.engine.protection(pos) is Protection.ON_EXCHANGE
    rig.agree()

    # a long storm while the trader moves the stop: the old stop stays, the trader is told
    # once, and the move is retried until the storm passes (never two stops left behind)
    server.faults.http_429 = 10_000
    await rig.engine.on_tick(Tick(BTC, 50_100.0, time.time()))
    await rig.engine.handle(cmd.SetTargets(pos.id, sl=49_800.0))
    errors = [e for e in rig.of(ErrorEvent) if "stop_loss order not placed" in e.message]
    assert len(errors) == 1 and "retrying" in errors[0].message
    assert [float(o.stop_price) for o in rig.stops()] == [49_500.0]
    await rig.engine.periodic()  # still storming: retried, not re-announced
    assert len([e for e in rig.of(ErrorEvent) if "not placed" in e.message]) == 1
    server.faults.http_429 = 0
    await rig.engine.periodic()
    assert [float(o.stop_price) for o in rig.stops()] == [49_800.0]
    assert rig.engine.protection(rig.position()) is Protection.ON_EXCHANGE
    rig.agree()


async def test_create_timeout_when_the_order_was_placed(server, rig):
    server.faults.response_delay = 3.0  # longer than the client's 2 s timeout
    await rig.start()
    server.faults.create_timeouts = 1  # the entry is placed, its answer never arrives
    res = await rig.engine.handle(cmd.OpenPosition(BTC, Side.LONG, 0.01, 10))
    pos = rig.engine.positions[res.position_id]
    ours = [o for o in server.state.orders.values() if o.type == "MARKET"]
    assert len(ours) == 1 and float(server.state.positions["BTCUSDT"].amount) == 0.01
    assert pos.qty == 0.01
    entry = rig.store.order(ours[0].client_id)
    assert entry is not None and entry.status is OrderStatus.FILLED

    server.faults.create_timeouts = 1  # now the stop move: placed, unanswered
    await rig.engine.on_tick(Tick(BTC, 50_000.0, time.time()))
    await rig.engine.handle(cmd.SetTargets(pos.id, sl=49_700.0))
    assert [float(o.stop_price) for o in rig.stops()] == [49_700.0]
    rig.agree()

    # unanswered AND the lookup storms too: the journal keeps it pending, nothing is
    # re-sent, and housekeeping resolves it by client id once the venue answers again
    server.faults.create_timeouts = 1
    server.faults.user_stream_stalled = True  # (so the order stream cannot tell either)
    server.faults.http_429 = 10_000
    server.faults.http_429_paths = ("algoOrder", "order")
    server.faults.http_429_methods = ("GET",)
    await rig.engine.handle(cmd.SetTargets(pos.id, sl=49_600.0))
    told = [e.message for e in rig.of(ErrorEvent) if "did not confirm" in e.message]
    assert told, [e.message for e in rig.of(ErrorEvent)]
    (pending,) = rig.store.pending_orders()
    assert pending.role is OrderRole.STOP_LOSS and pending.trigger_price == 49_600.0
    rig.offset += 3.0
    await rig.engine.periodic()  # lookup still failing: stays pending, nothing sent
    # the 49 700 stop keeps protecting; the unanswered 49 600 one exists too
    assert sorted(float(o.stop_price) for o in rig.stops()) == [49_600.0, 49_700.0]
    assert len(server.state.algo_orders) == 4  # SL, TP and two moves: nothing re-sent
    server.faults.http_429 = 0
    rig.offset += 3.0  # the pending order is old enough to be looked up
    await rig.engine.periodic()
    assert rig.store.order(pending.client_id).status is OrderStatus.OPEN
    assert [float(o.stop_price) for o in rig.stops()] == [49_600.0]
    rig.agree()


async def test_insufficient_funds_on_open_changes_nothing(server, rig):
    await rig.start()
    server.faults.insufficient_margin = True
    with pytest.raises(InsufficientFunds, match="margin"):
        await rig.engine.handle(cmd.OpenPosition(BTC, Side.LONG, 0.01, 10))
    assert not rig.engine.positions and not rig.store.load_open_positions()
    assert not any(p.amount for p in server.state.positions.values())
    assert not server.state.algo_orders
    assert not [o for o in rig.engine.orders.values()]
    assert not rig.store.pending_orders()
    rig.agree()


async def test_stop_already_crossed_closes_at_market_with_the_stop_reason(server, rig):
    # opened elsewhere at 50 000; the market is already below the monitor stop (49 500)
    server.state.set_position("BTCUSDT", "0.02", "50000", leverage=10)
    server.state.prices["BTCUSDT"] = server.state.prices["BTCUSDT"].__class__("49400")
    await rig.start()
    assert not rig.engine.positions
    assert server.state.positions["BTCUSDT"].amount == 0
    (closed,) = [p for p in rig.store.closed_positions()]
    assert closed.exit_reason == "stop_loss"
    logged = rig.store.actions(closed.id)
    assert any(a["type"] == "close" and a["reason"] == "stop_loss" and a["rule"] == "protection"
               for a in logged)
    assert not rig.stops() and not rig.stops("TAKE_PROFIT_MARKET")
    rig.agree()


async def test_stalled_prices_are_shown_and_never_acted_on(server, tmp_path):
    settings = EngineSettings(default_preset="manual", protect_throttle=0.0,
                              protect_on_exchange=False,  # the stop lives only in pmgui
                              overrides=frozen_map({"price.max_age": 1.0,
                                                    "price.rest_retries": 1}))
    rig = Rig(server, tmp_path / "pmgui.db", settings)
    try:
        server.state.set_position("BTCUSDT", "0.02", "50000", leverage=10)
        await rig.start()
        pos = rig.position()
        await until(lambda: rig.of(TickEvent))
        await rig.engine.handle(cmd.SetTargets(pos.id, sl=49_000.0))
        assert rig.engine.protection(rig.position()) is Protection.LOCAL_ONLY
        # the market stream goes silent and the REST fallback is rate limited
        server.faults.market_data_stalled = True
        server.faults.http_429 = 10_000
        server.faults.http_429_paths = ("ticker",)
        await until(lambda: rig.engine.snapshot(rig.position()).stale)
        await rig.engine.periodic()
        conn = rig.of(ConnectionEvent)[-1]
        assert conn.last_tick_age is not None and conn.last_tick_age > 1.0
        assert any("no fresh price" in e.message for e in rig.of(ErrorEvent))
        snaps = [e for e in rig.of(PositionSnapshot) if e.stale]
        assert snaps and all(e.position.id == pos.id for e in snaps)
        # a late, old price through the stop: rules never act on it
        await rig.engine.on_tick(Tick(BTC, 48_000.0, time.time() - 30))
        await rig.engine.on_tick(Tick(BTC, 48_000.0, time.time() - 10))
        assert rig.position().is_open and server.state.positions["BTCUSDT"].amount != 0
        # prices come back: the first fresh one through the stop closes the position
        server.faults.market_data_stalled = False
        server.faults.http_429 = 0
        await server.set_price(BTC, 48_500)
        await until(lambda: not rig.engine.positions)
        (closed,) = rig.store.closed_positions()
        assert closed.exit_reason == "stop_loss"
        assert server.state.positions["BTCUSDT"].amount == 0
    finally:
        await rig.stop()


async def test_websocket_drop_stop_fill_is_not_missed(server, rig):
    server.state.set_position("BTCUSDT", "0.02", "50000", leverage=10)
    await rig.start()
    await until(lambda: server.user_stream_connected)
    assert await server.drop_websockets() >= 1
    await server.set_price(BTC, 49_400)  # the exchange stop fires while we reconnect
    await until(lambda: not rig.engine.positions)
    (closed,) = rig.store.closed_positions()
    assert closed.exit_reason == "stop_loss"
    await until(lambda: not rig.stops("TAKE_PROFIT_MARKET"))  # the TP is cancelled
    rig.agree()


async def test_stop_missing_on_the_exchange_is_reported_and_replaced(server, rig):
    server.state.set_position("BTCUSDT", "0.02", "50000", leverage=10)
    await rig.start()
    pid = rig.position().id
    (sl,) = rig.stops()
    # 1. it silently vanishes (its event lost): pmgui still believes in it until it checks
    sl.status = "CANCELED"
    await rig.engine.reconcile()
    lost = [e for e in rig.of(ErrorEvent) if "stop-loss order" in e.message]
    assert len(lost) == 1 and lost[0].position_id == pid
    assert "guarded locally only" in lost[0].message
    badges = [e.protection for e in rig.of(PositionSnapshot) if e.position.id == pid]
    assert Protection.LOCAL_ONLY in badges
    (again,) = rig.stops()
    assert again.client_id != sl.client_id and float(again.stop_price) == 49_500.0
    assert rig.engine.protection(rig.position()) is Protection.ON_EXCHANGE
    rig.agree()

    # 2. the trader cancels it on the exchange's website while pmgui runs
    seen = len(rig.events)
    await server._priv_cancel_algo({"algoId": str(again.order_id)})
    await until(lambda: len([e for e in rig.of(ErrorEvent) if "stop-loss order" in e.message])
                == 2)
    # the badge said so at once (a polled tick may already have re-placed it since)
    assert any(isinstance(e, PositionSnapshot) and e.protection is Protection.LOCAL_ONLY
               for e in rig.events[seen:])
    await rig.engine.periodic()  # the next housekeeping pass re-places it
    (third,) = rig.stops()
    assert third.client_id not in (sl.client_id, again.client_id)
    assert rig.engine.protection(rig.position()) is Protection.ON_EXCHANGE
    rig.agree()

    # 3. an SL smaller than the position (it grew elsewhere) is not full protection
    grown = rig.position().evolve(qty=0.03)
    assert rig.engine.protection(grown) is Protection.LOCAL_ONLY
    assert not [a for a in rig.of(ActionTaken) if not a.ok]


async def test_reconcile_during_a_slow_open_or_close_does_not_double_or_misclose(server, rig):
    """The minute's reconciliation can run while a command waits on the exchange: an entry
    placed but unanswered must not be adopted as a second position, and a market close in
    flight must not be taken for a close made outside pmgui."""
    server.faults.response_delay = 3.0
    await rig.start()
    server.faults.create_timeouts = 1
    opening = asyncio.create_task(rig.engine.handle(cmd.OpenPosition(BTC, Side.LONG, 0.01, 10)))
    await until(lambda: server.state.positions.get("BTCUSDT")
                and server.state.positions["BTCUSDT"].amount)
    await rig.engine.reconcile()  # while the entry's answer is still outstanding
    res = await opening
    assert [p.id for p in rig.engine.positions.values()] == [res.position_id]
    assert [p.id for p in rig.store.load_open_positions()] == [res.position_id]
    rig.agree()

    server.faults.create_timeouts = 1
    closing = asyncio.create_task(rig.engine.handle(cmd.ClosePosition(res.position_id)))
    await until(lambda: not server.state.positions["BTCUSDT"].amount)
    await rig.engine.reconcile()  # the close is ours, merely unanswered yet
    await closing
    closed = rig.store.load_position(res.position_id)
    assert closed is not None and closed.exit_reason == "manual"
    assert not any(a["reason"] == "reconcile" for a in rig.store.actions(res.position_id))
    rig.agree()
