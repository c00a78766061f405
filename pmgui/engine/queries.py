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

from pmgui.domain.errors import ExchangeError, ValidationError
from pmgui.domain.money import trade_r
from pmgui.domain.timeframes import seconds
from pmgui.engine import commands as cmd
from pmgui.engine.events import ActionTaken
from pmgui.store.db import Store
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


MAX_CANDLES = 1500


async def candles_snapshot(core: Any, req: cmd.GetCandles) -> cmd.CandlesSnapshot:
    """The engine's completed candles of the timeframe (the stream's own when it is that
    timeframe), with the venue's history (`fetch_ohlcv`) in front when they are fewer than
    asked. Awaited on the manager thread; the GUI waits for nothing."""
    sec = seconds(req.timeframe)
    if isinstance(req.limit, bool) or not isinstance(req.limit, int) \
            or not 1 <= req.limit <= MAX_CANDLES:
        raise ValidationError(f"limit must be a whole number from 1 to {MAX_CANDLES}",
                              field="limit")
    market = core.market
    if market.markets and req.symbol not in market.markets:
        raise ValidationError(f"unknown symbol {req.symbol!r}", field="symbol")
    stream = market.candles(req.symbol)
    interval = market._interval(req.symbol)
    own = stream if stream and abs(interval - sec) < 1e-6 \
        else market.candles(req.symbol, req.timeframe)
    if len(own) >= req.limit:
        return cmd.CandlesSnapshot(req.symbol, req.timeframe, tuple(own[-req.limit:]))
    try:
        # one more: the venue may count its forming candle among them
        fetched = await core.exchange.fetch_ohlcv(req.symbol, req.timeframe, req.limit + 1)
    except (ExchangeError, NotImplementedError) as exc:
        if own:
            return cmd.CandlesSnapshot(req.symbol, req.timeframe, tuple(own))
        raise ExchangeError(f"no {req.timeframe} candles for {req.symbol}: {exc}") from exc
    now = core.clock()
    first = own[0].ts if own else float("inf")
    older = sorted((c for c in fetched if c.ts + sec <= now and c.ts < first),
                   key=lambda c: c.ts)
    merged = (*older, *own)
    return cmd.CandlesSnapshot(req.symbol, req.timeframe, tuple(merged[-req.limit:]),
                               "exchange" if older else "engine")


async def indicator_history(core: Any, req: cmd.GetIndicatorLine) -> cmd.IndicatorHistory:
    """The past of the line the position's rules follow (engine candles, rules' functions)."""
    from pmgui.engine.indicator_line import history
    from pmgui.rules.policy import indicator_frames

    rt = core.book.runtime(req.position_id)
    if rt is None or not rt.is_open:
        raise ValidationError(f"no open position {req.position_id!r}", field="position_id")
    pos = rt.position
    params = core.params(pos)
    frames = indicator_frames(params)
    if frames:  # the venue's history of the rule's timeframe, once (as a tick would)
        await core.market.ensure_frames(core.exchange, pos.symbol, frames)
    ind = core.indicator_of(rt)
    return cmd.IndicatorHistory(pos.id, ind, history(core.market, rt.position, params, ind))


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
    if isinstance(req, cmd.GetCandles):
        return await candles_snapshot(core, req)
    if isinstance(req, cmd.GetIndicatorLine):
        return await indicator_history(core, req)
    raise ValidationError(f"unknown request {type(req).__name__}")
