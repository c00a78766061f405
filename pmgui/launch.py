"""The window's embedded engine, started once the window is on screen.

`pmgui` shows its window first: building the engine imports the store, the rules and the
venue (SQLite, numpy, sqlite-utils; ccxt for a live venue) and starting it opens the
database, connects and reconciles. None of that is needed to paint the window, so
`EngineLauncher` stands for the engine from the window's first frame: it owns the outbox
the window listens to and the exchange id it shows, and builds and starts the real engine
on a helper thread when asked (`start_in_background`, called after the first paint).

Commands submitted while the engine is starting wait for it (they are sent, in order, the
moment it is connected and reconciled), so nothing the trader does in the first instant is
lost or refused; if the start fails they fail with the same error and the caller closes the
window and reports it, exactly as a failed start did before the window existed.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pmgui.domain.errors import PmguiError
from pmgui.engine.outbox import Outbox

log = logging.getLogger("pmgui")

Build = Callable[[Outbox], Any]  # outbox → an unstarted EngineThread (pmgui.engine.build)


def _chain(source: concurrent.futures.Future, target: concurrent.futures.Future) -> None:
    def copy(f: concurrent.futures.Future) -> None:
        if target.done():
            return
        if f.cancelled():
            target.cancel()
        elif (exc := f.exception()) is not None:
            target.set_exception(exc)
        else:
            target.set_result(f.result())

    source.add_done_callback(copy)


class EngineLauncher:
    """An EngineHandle (pmgui.ui.handle) for an engine that starts after the window shows.

    `build(outbox)` returns the unstarted engine (an EngineThread); `start(engine)` starts
    it and returns once it is connected and reconciled (or raises). Both run on the helper
    thread; `started` (if given) runs there right after a successful start.
    """

    def __init__(self, exchange_id: str, db_path: Path | None, build: Build,
                 start: Callable[[Any], None] | None = None,
                 started: Callable[[Any], None] | None = None) -> None:
        self.outbox = Outbox()
        self.exchange_id = exchange_id
        self._db_path = db_path
        self._build = build
        self._start = start or (lambda engine: engine.start())
        self._started = started
        self._lock = threading.Lock()
        self._engine: Any = None  # set once started: commands go straight to it
        self._built: Any = None  # the engine being started (to stop it on the way out)
        self._pending: list[tuple[Callable[[Any], concurrent.futures.Future],
                                  concurrent.futures.Future]] = []
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self.startup_error: BaseException | None = None
        self._closed: BaseException | None = None  # stopped before it was ever started

    # -- start -----------------------------------------------------------------------------
    def start_in_background(self, on_failed: Callable[[BaseException], None] | None = None
                            ) -> None:
        """Build and start the engine on a helper thread; `on_failed(exc)` (called on that
        thread) if it cannot start. A second call does nothing."""
        if self._thread is not None:
            return

        def run() -> None:
            try:
                engine = self._build(self.outbox)
                with self._lock:
                    self._built = engine
                self._start(engine)
                if self._started is not None:
                    self._started(engine)
            except BaseException as exc:  # reported to the caller, who closes the window
                log.debug("the engine did not start", exc_info=True)
                self._fail(exc)
                self._done.set()
                if on_failed is not None:
                    on_failed(exc)
                return
            with self._lock:  # in order, before any later command can overtake them
                self._engine = engine
                pending, self._pending = self._pending, []
                for send, target in pending:
                    _chain(self._send(send, engine), target)
            self._done.set()

        self._thread = threading.Thread(target=run, name="pmgui-engine-start", daemon=True)
        self._thread.start()

    def wait_started(self, timeout: float | None = None) -> bool:
        """Block until the start finished (either way); False on timeout or if never begun."""
        return self._thread is not None and self._done.wait(timeout)

    def _fail(self, exc: BaseException, *, started: bool = True) -> None:
        with self._lock:
            if started:
                self.startup_error = exc
            else:
                self._closed = exc
            pending, self._pending = self._pending, []
        for _send, target in pending:
            if not target.done():
                target.set_exception(exc if isinstance(exc, PmguiError)
                                     else PmguiError(f"the engine did not start: {exc}"))

    @staticmethod
    def _send(send: Callable[[Any], concurrent.futures.Future], engine: Any
              ) -> concurrent.futures.Future:
        try:
            return send(engine)
        except BaseException as exc:  # as the engine itself would answer: a failed future
            fut: concurrent.futures.Future = concurrent.futures.Future()
            fut.set_exception(exc)
            return fut

    def _call(self, send: Callable[[Any], concurrent.futures.Future]
              ) -> concurrent.futures.Future:
        with self._lock:
            engine = self._engine
            if engine is None:
                fut: concurrent.futures.Future = concurrent.futures.Future()
                exc = self.startup_error or self._closed
                if exc is not None:
                    fut.set_exception(exc if isinstance(exc, PmguiError)
                                      else PmguiError(f"the engine did not start: {exc}"))
                else:
                    self._pending.append((send, fut))
                return fut
        return self._send(send, engine)

    # -- EngineHandle ------------------------------------------------------------------------
    def submit(self, cmd: Any) -> concurrent.futures.Future:
        return self._call(lambda engine: engine.submit(cmd))

    def query(self, fn: Callable[[Any], Any]) -> concurrent.futures.Future:
        return self._call(lambda engine: engine.query(fn))

    def market(self, symbol: str) -> Any:
        engine = self._engine
        return engine.market(symbol) if engine is not None else None

    def store_path(self) -> Path | None:
        return self._db_path

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def engine(self) -> Any:
        """The started engine (None until then)."""
        return self._engine

    @property
    def running(self) -> bool:
        engine = self._engine
        return engine is not None and engine.running

    @property
    def error(self) -> BaseException | None:
        """What stopped the started engine (see EngineThread.error)."""
        engine = self._engine
        return getattr(engine, "error", None) if engine is not None else None

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the engine; one still starting is stopped once its start has finished, and
        one never started refuses what was waiting for it."""
        if self._thread is not None:
            self._thread.join()
        else:
            self._fail(PmguiError("the engine is not running"), started=False)
        with self._lock:
            engine = self._engine or self._built
        if engine is not None:
            engine.stop(timeout)
