"""The real engine over the live ccxt adapter and the local Binance emulator.

Not the engine's own test suite: this checks that the adapter plugs into EngineCore as the
protocol promises (start/reconcile, protective orders on the exchange, fills from the
order stream) with the same code path a live venue takes.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from pmgui.domain.enums import Side
from pmgui.engine import commands as cmd
from pmgui.engine.core import EngineCore
from pmgui.engine.outbox import Outbox
from pmgui.engine.settings import EngineSettings
from pmgui.exchange.ccxt_adapter import AdapterSettings
from pmgui.exchange.retry import Backoff
from pmgui.store.db import Store
from tests.binance_rig import binance_exchange
from tests.fakes.binance_server import BinanceServer
from tests.fakes.recording_sink import RecordingSink

BTC = "BTC/USDT:USDT"
FAST = AdapterSettings(stale_after=1.0, poll_interval=0.3, resubscribe_after=5.0,
                       order_poll_interval=0.5, supervisor_interval=0.05,
                       order_stream_check=0.1, backoff=Backoff(0.05, 2.0, 0.3, 0.0))


def _engine(server: BinanceServer, db: Path) -> EngineCore:
    """The engine (`manual` preset) over the adapter over the emulator, on `db`; not started."""
    return EngineCore(binance_exchange(server, FAST), Store.open(db), Outbox(),
                      EngineSettings(default_preset="manual", protect_throttle=0.0))


async def test_engine_opens_protects_and_sees_the_stop_fill(server: BinanceServer,
                                                            tmp_path: Path) -> None:
    engine = _engine(server, tmp_path / "pmgui.db")
    await engine.start()
    run = asyncio.create_task(engine.exchange.run(engine))
    waiter = RecordingSink()
    try:
        await engine.handle(cmd.OpenPosition(BTC, Side.LONG, 0.01, 10, sl=49000, tp=52000))
        assert server.state.positions["BTCUSDT"].amount > 0
        algo = server.state.open_orders(algo=True)
        assert sorted(o.type for o in algo) == ["STOP_MARKET", "TAKE_PROFIT_MARKET"]
        assert all(o.reduce_only for o in algo)
        await server.set_price(BTC, 48900)

        def closed() -> bool:
            return not any(p.is_open for p in engine.positions.values())

        await waiter.wait_for(closed, timeout=15)
        assert server.state.positions["BTCUSDT"].amount == 0
        # the take-profit left behind is cancelled, not orphaned on the exchange
        await waiter.wait_for(lambda: not server.state.open_orders(algo=True), timeout=15)
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
        await engine.shutdown()


async def test_engine_adopts_a_position_opened_elsewhere(server: BinanceServer,
                                                         tmp_path: Path) -> None:
    server.state.set_position("BTCUSDT", "-0.02", "50500", leverage=5)
    engine = _engine(server, tmp_path / "pmgui.db")
    try:
        await engine.start()
        (pos,) = [p for p in engine.positions.values() if p.is_open]
        assert (pos.symbol, pos.side, pos.qty, pos.entry, pos.leverage) == \
            (BTC, Side.SHORT, 0.02, 50500.0, 5.0)
    finally:
        await engine.shutdown()
