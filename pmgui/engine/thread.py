"""The manager thread: runs `EngineCore` on its own asyncio loop (DESIGN §2).

Everything that touches the exchange, the store or trading state happens on this thread.
Other threads talk to it only through `submit()` (commands in) and the `Outbox` (events out).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pmgui.domain.errors import PmguiError
from pmgui.domain.models import Market
from pmgui.engine.commands import Command, CommandResult
from pmgui.engine.core import EngineCore
from pmgui.engine.events import ErrorEvent
from pmgui.engine.outbox import Outbox

log = logging.getLogger("pmgui.engine")
T = TypeVar("T")

# A full collection still walks everything the storm made that lives on (each position's
# candle series, indicators, bands and snapshots, the outbox's events): 40-90 ms at 2,000
# positions, a stall every tick behind it waits out. CPython runs one every 10 collections
# of the middle generation (about every 5 s in a storm); here one every
# FULL_COLLECTION_EVERY (about a minute). The engine's state is frozen dataclasses without
# cycles: what a full collection finds (a task's exception and its traceback) waits longer
# to be freed, nothing more.
#
# The young generations: CPython counts *net* allocations of tracked objects (a free takes
# one off the count), and in a storm each evaluated tick replaces its position's state (the
# market state, band, rule line, position) and frees the one before. The count grows only
# with what grows (the write-behind queue, a pass's lists), while the young generation holds
# every state made since the last collection: 1-6 k objects when the count reached 700 at
# 2,000 positions, a young pause of 1-8 ms for "700 objects", and every 10th of them a
# middle one over all they promoted (10-16 ms). Collected 7x as often (100) and the middle
# one every 5th, each walks a fraction of it: at 2,000 positions young pauses <= 1.6 ms and
# middle ones <= 3.5 ms of CPU instead of 8 and 16 (8 s storms), for ~5 us of CPU per tick
# (each state that lives a while is still walked once per generation; fewer die unwalked).
# Full collections stay as rare per allocation as before: FULL_COLLECTION_EVERY scales.
YOUNG_COLLECTION_EVERY = 100
MIDDLE_COLLECTION_EVERY = 5
FULL_COLLECTION_EVERY = 1400  # middle collections: 100 x 5 x 1400 = 700 x 10 x 100 allocations


def freeze_startup_objects() -> None:
    """Started: what exists now lives as long as the engine (modules, classes, the restored
    book, resolved parameters, markets, the book's candles and indicator sets — `start`
    warms them up before it returns). `gc.freeze()` takes it out of the collector's
    generations, so a full collection during a storm traverses only what the storm made —
    tens of thousands of objects fewer, a pause of milliseconds instead of tens of them in
    the middle of a tick. Frozen objects are still freed by reference counting. Full
    collections become rarer (`FULL_COLLECTION_EVERY`); the young generations are collected
    more often, each collection walking less (`YOUNG_COLLECTION_EVERY`, above)."""
    gc.freeze()
    young, middle, oldest = gc.get_threshold()
    gc.set_threshold(min(young, YOUNG_COLLECTION_EVERY), min(middle, MIDDLE_COLLECTION_EVERY),
                     max(oldest, FULL_COLLECTION_EVERY))


class EngineThread:
    """Owns the manager thread. Build the core inside the thread with `factory`.

    The exchange client and the SQLite connection must be created on the thread that uses
    them (ccxt's aiohttp session belongs to one loop; sqlite3 connections to one thread), so
    the caller passes a factory rather than ready objects.
    """

    def __init__(self, factory: Callable[[Outbox], EngineCore], outbox: Outbox | None = None,
                 db_path: Path | None = None, exchange_id: str = "paper") -> None:
        self.outbox = outbox or Outbox()
        self.exchange_id = exchange_id
        self._factory = factory
        self._db_path = db_path
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._core: EngineCore | None = None
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._startup_error: BaseException | None = None
        self.error: BaseException | None = None  # what stopped a started engine (e.g. the
        # final save failing on a full disk); the caller turns it into a non-zero exit
        self._stop_event: asyncio.Event | None = None
        self._markets: dict[str, Market] = {}

    # EngineHandle ---------------------------------------------------------------------------

    def submit(self, command: Command) -> concurrent.futures.Future[CommandResult]:
        if self._loop is None or self._core is None or self._stopped.is_set():
            fut: concurrent.futures.Future[CommandResult] = concurrent.futures.Future()
            fut.set_exception(PmguiError("the engine is not running"))
            return fut
        return asyncio.run_coroutine_threadsafe(self._core.handle(command), self._loop)

    def query(self, fn: Callable[[EngineCore], T]) -> concurrent.futures.Future[T]:
        """Run a read-only `fn(core)` on the manager thread (state is only read there)."""
        if self._loop is None or self._core is None or self._stopped.is_set():
            fut: concurrent.futures.Future = concurrent.futures.Future()
            fut.set_exception(PmguiError("the engine is not running"))
            return fut
        core = self._core

        async def run() -> T:
            return fn(core)

        return asyncio.run_coroutine_threadsafe(run(), self._loop)

    def market(self, symbol: str) -> Market | None:
        return self._markets.get(symbol)

    def store_path(self) -> Path | None:
        return self._db_path

    # lifecycle -------------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> None:
        """Start the thread and wait until the engine is connected and reconciled."""
        self._thread = threading.Thread(target=self._run, name="pmgui-manager", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise PmguiError("the engine did not start in time")
        if self._startup_error is not None:
            raise self._startup_error

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the engine to finish: stop streams, persist, close the exchange and the store."""
        loop, ev = self._loop, self._stop_event
        if loop is not None and ev is not None and not self._stopped.is_set():
            loop.call_soon_threadsafe(ev.set)
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # startup failures are reported through start()
            if not self._ready.is_set():
                self._startup_error = exc
                self._ready.set()
            else:
                self.error = exc
                log.debug("engine stopped with an error", exc_info=True)
        finally:
            self._stopped.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _main(self) -> None:
        self._stop_event = asyncio.Event()
        core = self._factory(self.outbox)
        try:
            await core.start(stream=True)  # streams first, then snapshot + reconcile
        except BaseException:
            try:
                await core.shutdown()
            except Exception:
                log.exception("shutdown after failed start")
            raise
        self._core = core
        self._markets = dict(core.exchange.markets())
        freeze_startup_objects()
        self._ready.set()
        stream = core.stream_task or asyncio.create_task(core.exchange.run(core),
                                                         name="exchange-stream")
        housekeeping = asyncio.create_task(self._housekeeping(core), name="housekeeping")
        stopper = asyncio.create_task(self._stop_event.wait())
        done, _ = await asyncio.wait({stream, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if stream in done and stream.exception() is not None:
            exc = stream.exception()
            log.error("exchange stream failed: %s", exc)
            self.outbox.publish(ErrorEvent(f"market stream stopped: {exc}", core.clock()))
            await self._stop_event.wait()
        for task in (stream, housekeeping, stopper):
            task.cancel()
        await asyncio.gather(stream, housekeeping, stopper, return_exceptions=True)
        await core.shutdown()

    async def _housekeeping(self, core: EngineCore) -> None:
        s = core.settings
        ticks = 0
        while True:
            await asyncio.sleep(1.0)
            ticks += 1
            try:
                await core.periodic()
                if ticks % max(1, int(s.equity_interval)) == 0:
                    await core.refresh_account()
                if ticks % max(1, int(s.reconcile_interval)) == 0:
                    await core.reconcile()
            except PmguiError as exc:
                core.outbox.publish(ErrorEvent(str(exc), core.clock()))
            except Exception:
                log.exception("housekeeping failed")
