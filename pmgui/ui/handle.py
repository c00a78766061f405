"""The engine as the UI sees it.

The UI never imports the engine: it codes against this protocol, so the lead's Engine, a
test double and a future remote engine are interchangeable. Every method is safe to call
from the GUI thread: `submit` only enqueues, `market`/`store_path` are thread-safe reads.
"""

from __future__ import annotations

import concurrent.futures
from pathlib import Path
from typing import Protocol, runtime_checkable

from pmgui.domain.models import Market
from pmgui.engine.commands import Command
from pmgui.engine.outbox import Outbox


@runtime_checkable
class EngineHandle(Protocol):
    outbox: Outbox
    exchange_id: str

    def submit(self, cmd: Command) -> concurrent.futures.Future:
        """Enqueue `cmd`; the future resolves to a CommandResult (a request: its snapshot,
        see pmgui.engine.commands.GetHistory) or raises a PmguiError."""
        ...

    def market(self, symbol: str) -> Market | None:
        """Tick size, amount step etc. of `symbol`, or None while unknown."""
        ...

    def store_path(self) -> Path | None:
        """The SQLite file for read-only history queries (None: no store)."""
        ...
