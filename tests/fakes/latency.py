"""A venue with network latency: every request to the wrapped exchange (the paper exchange)
takes `latency` seconds on the way, like a REST round trip. It records when each request
started and ended and how many were in flight at once, so a test can tell concurrent work
from one-at-a-time work without timing anything itself."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pmgui.domain.models import Order, OrderRequest

GATE_PATIENCE = 30.0
"""How long held requests wait for the rest of their group before going on anyway (then the
gate stays open): a one-at-a-time caller makes the test fail, it never hangs it."""

_REQUESTS = ("fetch_positions", "fetch_balance", "fetch_open_orders",
             "fetch_order_by_client_id", "cancel_order", "set_leverage", "fetch_ohlcv",
             "fetch_price")


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    detail: str  # symbol (and what the order does)
    started: float
    ended: float


class LatentExchange:
    """Delegates to `inner`; each request awaits `latency` s before it reaches it."""

    def __init__(self, inner: Any, latency: float = 0.05) -> None:
        self.inner = inner
        self.latency = latency
        self.calls: list[Call] = []
        self.in_flight = 0
        self.max_in_flight: dict[str, int] = {}
        self._inflight_by: dict[str, int] = {}
        self._gates: dict[str, tuple[int, asyncio.Event]] = {}

    def hold(self, name: str, count: int) -> None:
        """Requests `name` wait (after their latency) until `count` of them are in flight
        together, so "were they sent concurrently?" does not depend on how fast this machine
        journals each one before sending it (a busy machine made a 50 ms latency too short)."""
        self._gates[name] = (count, asyncio.Event())

    def __getattr__(self, name: str) -> Any:
        if name in _REQUESTS:
            fn = getattr(self.inner, name)

            async def request(*args: Any, **kwargs: Any) -> Any:
                first = args[0] if args else ""
                return await self._timed(name, str(getattr(first, "symbol", first)),
                                         fn(*args, **kwargs))

            return request
        return getattr(self.inner, name)

    async def create_order(self, req: OrderRequest) -> Order:
        what = f"{req.symbol} {req.type.value}{' reduce' if req.reduce_only else ''}"
        return await self._timed("create_order", what, self.inner.create_order(req))

    def subscribe(self, symbols: Sequence[str]) -> None:
        self.inner.subscribe(symbols)

    async def _timed(self, name: str, detail: str, call: Any) -> Any:
        started = time.monotonic()
        self._inflight_by[name] = self._inflight_by.get(name, 0) + 1
        self.max_in_flight[name] = max(self.max_in_flight.get(name, 0),
                                       self._inflight_by[name])
        try:
            if self.latency:
                await asyncio.sleep(self.latency)  # the way there (the venue's network)
            await self._gate(name)
            return await call
        finally:
            self._inflight_by[name] -= 1
            self.calls.append(Call(name, detail, started, time.monotonic()))

    async def _gate(self, name: str) -> None:
        gate = self._gates.get(name)
        if gate is None:
            return
        count, opened = gate
        if self._inflight_by[name] >= count:
            opened.set()
        if not opened.is_set():
            try:
                await asyncio.wait_for(opened.wait(), GATE_PATIENCE)
            except TimeoutError:
                opened.set()  # the group never formed: let everything through
