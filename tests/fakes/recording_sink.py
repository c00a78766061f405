"""An ExchangeSink that records what a running exchange delivers, for tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from pmgui.domain.models import Candle, Tick
from pmgui.exchange.base import ConnectionState, OrderUpdate


@dataclass
class RecordingSink:
    ticks: list[Tick] = field(default_factory=list)
    candles: list[tuple[str, Candle, bool]] = field(default_factory=list)
    updates: list[OrderUpdate] = field(default_factory=list)
    connections: list[ConnectionState] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_tick(self, tick: Tick) -> None:
        self.ticks.append(tick)
        self._changed.set()

    async def on_candle(self, symbol: str, candle: Candle, closed: bool) -> None:
        self.candles.append((symbol, candle, closed))
        self._changed.set()

    async def on_order_update(self, update: OrderUpdate) -> None:
        self.updates.append(update)
        self._changed.set()

    async def on_connection(self, state: ConnectionState) -> None:
        self.connections.append(state)
        self._changed.set()

    async def wait_for(self, condition: Callable[[], object], timeout: float = 10.0) -> None:
        """Wait until `condition()` is true; the timeout only guards against a hang."""
        async def loop() -> None:
            while not condition():
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), 0.1)
                except TimeoutError:
                    pass

        await asyncio.wait_for(loop(), timeout)

    def fills(self, client_id: str | None = None) -> list:
        return [f for u in self.updates for f in u.fills
                if client_id is None or f.order_client_id == client_id]
