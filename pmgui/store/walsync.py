"""One thread that fsyncs the store's WAL for the event loop, with group commit.

An intended order is journaled (committed, not fsynced) on the loop's thread and must be on
disk before it is sent (`OrderLedger.journal_synced`). Its fsync runs here, not on the loop
and not on the default executor (there a storm's syncs spread over four workers, each one
contending for the GIL with the loop thread). The rule that makes one fsync serve many
journals: a sync that STARTED after a journal's commit covers it. A waiter asks after its
commit (`synced`), so every waiter queued when a sync begins is covered by it; waiters that
ask while it runs share the next one. One thread, one fsync per batch, one wake-up of each
waiting loop per batch (`call_soon_threadsafe`), whatever the number of waiters.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from pmgui.domain.errors import StoreError

log = logging.getLogger(__name__)


class WalSyncer:
    """Group-committed fsyncs of one store's WAL on a thread of their own (started on the
    first request). `sync` is looked up on every call through `get_sync` (tests and
    audits may wrap the store's `sync_wal`)."""

    def __init__(self, get_sync: Callable[[], Callable[[], None]],
                 name: str = "pmgui-wal-sync") -> None:
        self._get_sync = get_sync
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._waiting: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.syncs = 0  # fsyncs done (each covers a batch of waiters)
        self.waiters = 0  # waiters served

    def synced(self) -> asyncio.Future[None]:
        """A future (of the running loop) that completes once a sync that started after this
        call is done: every commit made before the call is then on disk. It fails with
        `StoreError` if that sync fails, or if the syncer is stopped."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._cond:
            if self._stopping:
                raise StoreError("the journal cannot be synced: the store is closed")
            self._waiting.append((loop, fut))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            elif len(self._waiting) == 1:
                self._cond.notify()
        return fut

    def stop(self) -> None:
        """Serve the waiters already queued, then end the thread (idempotent)."""
        with self._cond:
            self._stopping = True
            thread = self._thread
            self._cond.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while not self._waiting and not self._stopping:
                    cond.wait()
                if not self._waiting:
                    return
                batch, self._waiting = self._waiting, []
            # every waiter of the batch asked after its commit: this sync, started now,
            # covers them all
            error: BaseException | None = None
            try:
                self._get_sync()()
            except BaseException as exc:  # handed to the waiters, who reject their orders
                error = exc
            self.syncs += 1
            self.waiters += len(batch)
            by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
            for loop, fut in batch:
                by_loop.setdefault(loop, []).append(fut)
            for loop, futs in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_settle, futs, error)
                except RuntimeError:  # that loop is closed: nobody waits any more
                    log.debug("a WAL sync finished after its loop closed")


def _settle(futs: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for fut in futs:
        if fut.done():  # cancelled meanwhile
            continue
        if error is None:
            fut.set_result(None)
        elif isinstance(error, StoreError):
            fut.set_exception(StoreError(str(error)))
        else:
            err = StoreError(f"the journal could not be synced to disk: {error}")
            err.__cause__ = error
            fut.set_exception(err)
