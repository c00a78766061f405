"""Sending commands to the engine without ever blocking the GUI thread.

`engine.submit` returns a concurrent.futures.Future completed on the manager thread. We
never call `.result()` on the GUI thread: a done-callback emits a Qt signal, which Qt
queues into the GUI thread, where the caller's callback runs. This works with or without
a running qasync loop (tests drive the window with plain Qt), and `submit_async` offers
the awaitable form for coroutine code under qasync.

In-flight keys make commands idempotent where it matters: a second emergency close of the
same position while the first is still on its way is not sent at all.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
from collections.abc import Callable, Hashable

from PySide6.QtCore import QObject, Signal

from pmgui.domain.errors import PmguiError
from pmgui.engine.commands import Command, CommandResult
from pmgui.ui.handle import EngineHandle

log = logging.getLogger(__name__)

Done = Callable[[CommandResult | None, str | None], None]
Answer = Callable[[object, str | None], None]  # (snapshot or None, error message or None)


class CommandRunner(QObject):
    """Submits commands; calls `on_done(result, error_message)` in the GUI thread."""

    finished = Signal(object, object, object)  # command, CommandResult | None, error | None
    _resolved = Signal(int, object, object)  # token, result, error message (cross-thread)

    def __init__(self, engine: EngineHandle, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._engine = engine
        self._tokens = itertools.count(1)
        self._waiting: dict[int, tuple[Command, Done | None, Hashable | None]] = {}
        self._raw: set[int] = set()  # tokens of requests: their answer is passed as it is
        self._in_flight: set[Hashable] = set()
        self._resolved.connect(self._on_resolved)

    def busy(self, key: Hashable) -> bool:
        return key in self._in_flight

    def in_flight(self) -> int:
        return len(self._waiting)

    def submit(self, cmd: Command, on_done: Done | None = None, *,
               key: Hashable | None = None) -> bool:
        """Send `cmd`. False (and nothing sent) if a command with the same `key` is pending."""
        return self._submit_token(next(self._tokens), cmd, on_done, key)

    def _submit_token(self, token: int, cmd: Command, on_done: Done | None,
                      key: Hashable | None) -> bool:
        if key is not None and key in self._in_flight:
            return False
        self._waiting[token] = (cmd, on_done, key)
        if key is not None:
            self._in_flight.add(key)
        try:
            fut = self._engine.submit(cmd)
        except PmguiError as e:
            self._on_resolved(token, None, str(e))
            return True
        except Exception as e:  # the engine is gone or broken: say so, do not crash the GUI
            log.exception("submit failed")
            self._on_resolved(token, None, f"the engine did not accept the command: {e}")
            return True
        fut.add_done_callback(lambda f, t=token: self._complete(t, f))
        return True

    def request(self, req: Command, on_answer: Answer, *, key: Hashable | None = None
                ) -> bool:
        """Ask a read-only question (GetHistory, GetSymbolRules, GetEngineInfo); the engine's
        snapshot (or the error) reaches `on_answer` in the GUI thread."""
        token = next(self._tokens)
        self._raw.add(token)
        ok = self._submit_token(token, req, on_answer, key)  # type: ignore[arg-type]
        if not ok:
            self._raw.discard(token)
        return ok

    def _complete(self, token: int, fut: concurrent.futures.Future) -> None:
        """Runs on whatever thread completed the future: only emits a (queued) signal."""
        result: object = None
        try:
            result = fut.result()
            error = (result.message or "the engine refused"
                     if isinstance(result, CommandResult) and not result.ok else None)
        except concurrent.futures.CancelledError:
            error = "the command was cancelled"
        except PmguiError as e:
            error = str(e) or type(e).__name__
        except Exception as e:
            log.error("command failed: %r", e)
            error = f"internal error: {e}"
        try:
            self._resolved.emit(token, result, error)
        except RuntimeError:  # the window is gone (closing): nobody is waiting any more
            log.debug("command %d finished after the UI closed", token)

    def _on_resolved(self, token: int, result: object, error: object) -> None:
        entry = self._waiting.pop(token, None)
        if entry is None:
            return
        cmd, on_done, key = entry
        if key is not None:
            self._in_flight.discard(key)
        err = str(error) if error is not None else None
        if token in self._raw:
            self._raw.discard(token)
            if on_done is not None:
                on_done(result if err is None else None, err)  # type: ignore[arg-type]
            return
        res = result if isinstance(result, CommandResult) else None
        if on_done is not None:
            on_done(res, err)
        self.finished.emit(cmd, res, err)


async def submit_async(engine: EngineHandle, cmd: Command) -> CommandResult:
    """Await a command under qasync (raises the engine's PmguiError on failure)."""
    import asyncio  # (only coroutine code under qasync awaits; asyncio loads after paint)

    return await asyncio.wrap_future(engine.submit(cmd))
