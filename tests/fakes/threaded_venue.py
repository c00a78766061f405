"""Run a Bybit or OKX emulator on its own event loop in a background thread, for tests whose
pmgui runs in another process (crash loops)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any


class ThreadedVenue:
    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self.server: Any = None
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> Any:
        self._thread.start()
        self.server = self.call(self._make)
        return self.server

    async def _make(self) -> Any:
        srv = self._factory()
        await srv.start()
        return srv

    def call(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(fn(*args), self.loop).result(30)

    def run(self, fn: Callable[[], Any]) -> Any:
        """Call a plain function on the server's loop (state reads without races)."""
        async def wrap() -> Any:
            return fn()
        return self.call(wrap)

    def stop(self) -> None:
        if self.server is not None:
            self.call(self.server.stop)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
