"""One engine over a venue adapter over a local venue emulator (Bybit / OKX), with a real
SQLite store: what the per-venue engine tests drive."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pmgui.domain.models import frozen_map
from pmgui.engine.core import EngineCore
from pmgui.engine.outbox import Outbox
from pmgui.engine.settings import EngineSettings, SymbolRules
from pmgui.exchange.ccxt_adapter import AdapterSettings, CcxtExchange
from pmgui.exchange.credentials import Credentials
from pmgui.exchange.retry import Backoff
from pmgui.store.db import Store

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
FAST = AdapterSettings(stale_after=1.0, poll_interval=0.3, resubscribe_after=5.0,
                       order_poll_interval=0.5, supervisor_interval=0.05,
                       order_stream_check=0.1, lookup_grace=0.2,
                       backoff=Backoff(0.05, 2.0, 0.3, 0.0))


def monitor(trigger: str | None = None) -> EngineSettings:
    """Every symbol on the `monitor` preset (SL 1 %, TP 2 % from entry)."""
    over = frozen_map({"protection.trigger": trigger}) if trigger else frozen_map({})
    rules = SymbolRules("monitor", over) if trigger else SymbolRules("monitor")
    return EngineSettings(default_preset="monitor", protect_throttle=0.0,
                          symbols=frozen_map({BTC: rules, ETH: rules}))


class VenueRig:
    def __init__(self, exchange_id: str, server: Any, db: Path,
                 settings: EngineSettings | None = None) -> None:
        self.server = server
        self.exchange = CcxtExchange(exchange_id, options=server.ccxt_config(),
                                     credentials=Credentials("test-key", "s", "pass"),
                                     settings=FAST)
        self.store = Store.open(db)
        self.outbox = Outbox()
        self.events: list[object] = []
        self.outbox.add_listener(self.events.append)
        self.engine = EngineCore(self.exchange, self.store, self.outbox,
                                 settings or monitor(), clock=time.time)
        self.run: asyncio.Task[None] | None = None

    async def start(self, stream: bool = True) -> None:
        await self.engine.start(stream=stream)  # streams first, then snapshot + reconcile

    async def stop(self) -> None:
        if self.run is not None:
            self.run.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.run
            self.run = None
        await self.engine.shutdown()

    def open_positions(self) -> list[Any]:
        return [p for p in self.engine.positions.values() if p.is_open]

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


async def until(cond: Callable[[], object], timeout: float = 20.0, what: str = "") -> None:
    """Poll `cond` on the loop; the deadline only guards against a hang."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached in time: {what}")
        await asyncio.sleep(0.05)
