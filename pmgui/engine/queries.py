"""Answers to the UI's read-only requests (pmgui.engine.commands.GetHistory and friends).

They run on the manager thread, which owns the store and the engine state, and return
frozen snapshots: the UI never opens the SQLite file nor reaches into the core. Reading a
few hundred rows takes milliseconds, so answering in the loop is cheaper than a second
connection.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pmgui.domain.errors import ValidationError
from pmgui.engine import commands as cmd
from pmgui.engine.events import ActionTaken
from pmgui.store.db import Store
from pmgui.store.metrics import trade_r
from pmgui.store.serialize import action_from_record


def preset_names() -> tuple[str, ...]:
    from pmgui.rules.presets import PRESETS

    return tuple(PRESETS)


def local_midnight(now: float) -> float:
    t = time.localtime(now)
    return time.mktime((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0, 0, 0, -1))


def history_from_store(store: Store, req: cmd.GetHistory,
                       now: Callable[[], float] = time.time) -> cmd.HistorySnapshot:
    """What the history view shows, read from `store` (the engine's own, or a read-only one)."""
    if req.closed_limit <= 0 or req.actions_limit <= 0:
        raise ValidationError("history limits must be positive")
    closed = tuple(store.closed_positions(req.closed_limit))
    actions = []
    for rec in store.actions(limit=req.actions_limit):
        try:
            action = action_from_record(rec)
        except (KeyError, ValueError, TypeError):
            continue
        actions.append(ActionTaken(action, str(rec.get("symbol", "")), bool(rec.get("ok", True)),
                                   str(rec.get("detail", "") or "")))
    midnight = local_midnight(now())
    today = sum(p.realized_pnl for p in closed
                if p.closed_at is not None and p.closed_at >= midnight)
    return cmd.HistorySnapshot(tuple(cmd.ClosedTrade(p, trade_r(p)) for p in closed),
                               store.trade_metrics(), tuple(store.equity_curve()),
                               tuple(actions), float(today))


async def answer(core: Any, req: cmd.Request) -> object:
    """The snapshot answering `req`, read where the engine's state lives."""
    if isinstance(req, cmd.GetHistory):
        return history_from_store(core.store, req, core.clock)
    if isinstance(req, cmd.GetSymbolRules):
        rules = {s: (p, dict(o)) for s, (p, o) in core.symbol_rules().items()}
        return cmd.SymbolRulesSnapshot(rules, preset_names())
    if isinstance(req, cmd.GetEngineInfo):
        demo = getattr(core.exchange, "demo", None)
        return cmd.EngineInfo(str(getattr(core.exchange, "id", "")),
                              demo if isinstance(demo, bool) else None, preset_names())
    raise ValidationError(f"unknown request {type(req).__name__}")
