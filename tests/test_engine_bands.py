"""Quiet bands in the engine (DESIGN §10): a tick inside a position's band skips the rules,
and the engine decides exactly as one that evaluates every tick.

Two engines, each over its own paper venue and SQLite file, see the same seeded random walk
on several symbols, with positions of every preset (long and short, re-opened when closed)
and the trader's own commands in between. One skips ticks inside the band, the other
(`quiet_bands=False`) evaluates every tick. Journaled actions, journaled orders, the venue's
fills and the final positions must be identical (ids aside: they are random per run).
"""

from __future__ import annotations

import re
from itertools import islice
from pathlib import Path

import pytest

from pmgui.domain.enums import Side
from pmgui.domain.models import Market
from pmgui.engine import commands as cmd
from pmgui.engine.core import EngineCore
from pmgui.engine.outbox import Outbox
from pmgui.engine.settings import EngineSettings
from pmgui.exchange.feeds import RandomWalkFeed
from pmgui.exchange.paper import PaperExchange
from pmgui.store.db import Store

T0 = 1_700_000_000.0
START = {"AAA/USDT:USDT": 100.0, "BBB/USDT:USDT": 2500.0, "CCC/USDT:USDT": 0.5,
         "DDD/USDT:USDT": 40.0, "EEE/USDT:USDT": 7.0}
MARKETS = {s: Market(s, tick_size=p / 10_000, amount_step=0.001, min_amount=0.001,
                     min_notional=0.0) for s, p in START.items()}
# (preset, overrides): every rule family, each on long and short
BOOKS = [
    ("guardian", {}),
    ("active", {}),
    ("breakout", {"trailing.timeframe": "5m", "add_on.timeframe": "1m"}),
    ("monitor", {}),
    ("manual", {"trailing.enabled": True, "trailing.mode": "fixed"}),
    ("active", {"scaling.enabled": True, "profit_booking.enabled": True,
                "breakeven_plus.enabled": True, "tranches.enabled": True}),
    ("guardian", {"trailing.mode": "chandelier", "trailing.timeframe": "1m"}),
    ("breakout", {"r_targets.tp1_r": 0.5, "trailing.timeframe": "1m"}),
]

_IDS = re.compile(r"pmg[0-9a-f]{23}|[A-Z]+-(?:long|short)-[0-9a-f]+")


def _norm(v: object) -> object:
    if isinstance(v, str):
        return _IDS.sub("<id>", v)
    if isinstance(v, dict):
        return tuple(sorted((k, _norm(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple, set, frozenset)):
        return tuple(sorted(str(_norm(x)) for x in v))
    return v


def _row(d: dict, skip: tuple[str, ...] = ()) -> tuple:
    return tuple((k, _norm(v)) for k, v in sorted(d.items()) if k not in skip)


# The warm-up candles a walk hands the engine, by (seed, symbol, length, timeframe, start
# price): deterministic for a seed, so the two engines of a case get the same list; walking it
# once instead of twice saves a third of a case's CPU (RandomWalkFeed.history under cProfile).
_HISTORY: dict[tuple, list] = {}


def _history_once(walk: RandomWalkFeed, seed: int) -> None:
    real = walk.history

    def history(symbol: str, n_candles: int, timeframe: float | None = None) -> list:
        key = (seed, symbol, n_candles, timeframe, walk.start_price(symbol))
        if key not in _HISTORY:
            _HISTORY[key] = real(symbol, n_candles, timeframe)
        return list(_HISTORY[key])

    walk.history = history  # type: ignore[method-assign]


async def _run(db: Path, seed: int, steps: int, quiet: bool,
               exchange_stops: bool) -> tuple[dict, int]:
    walk = RandomWalkFeed(START, seed, tick_interval=9.0, start_ts=T0, markets=MARKETS,
                          volatility_scale=6.0)
    _history_once(walk, seed)
    store = Store.open(db)
    paper = PaperExchange(MARKETS, walk, realtime=False, db=store.db, slippage=0.0,
                          balance=1e9)
    settings = EngineSettings(default_preset="manual", protect_throttle=0.0,
                              protect_on_exchange=exchange_stops, quiet_bands=quiet)
    engine = EngineCore(paper, store, Outbox(), settings, clock=paper.now)
    await engine.start()
    events = walk.events()
    for ev in islice(events, 2 * len(START)):  # every symbol has a price
        await paper.deliver(ev, engine)
    opened = 0
    symbols = list(START)

    async def top_up() -> None:
        nonlocal opened
        for i, sym in enumerate(symbols):
            for side in (Side.LONG, Side.SHORT):
                if engine.book.find(sym, side) is not None:
                    continue
                preset, overrides = BOOKS[(opened + seed) % len(BOOKS)]
                price = engine.market.price(sym)
                d = side.dir
                wide = 0.02 + 0.01 * ((opened + i) % 4)
                sl = MARKETS[sym].round_price(price * (1 - d * wide))
                tp = None if preset == "breakout" else \
                    MARKETS[sym].round_price(price * (1 + d * 2 * wide))
                await engine.handle(cmd.OpenPosition(sym, side, 1.0, 5.0, sl=sl, tp=tp,
                                                     preset=preset, overrides=overrides))
                opened += 1

    await top_up()
    for n, ev in enumerate(islice(events, steps * len(START))):
        await paper.deliver(ev, engine)
        if n % 700 == 350:  # the trader moves a stop, closes part of a position
            rts = sorted(engine.book.runtimes(), key=lambda rt: (rt.symbol, rt.side.value))
            if rts:
                rt = rts[n % len(rts)]
                pos, price = rt.position, engine.market.price(rt.symbol)
                if n % 1400 == 350:
                    await engine.handle(cmd.SetTargets(pos.id, sl=MARKETS[pos.symbol].round_price(
                        price * (1 - pos.side.dir * 0.015))))
                else:
                    await engine.handle(cmd.ClosePosition(pos.id, 0.5))
        if n % 400 == 0:
            await top_up()
    quiet_ticks = engine.quiet_ticks
    out = {
        "actions": sorted(_row(a, ("id", "position_id")) for a in store.actions(limit=100_000)),
        "orders": [tuple(_norm(v) for v in r) for r in store.db.conn.execute(
            "SELECT symbol, side, type, amount, status, price, trigger_price, filled, average, "
            "reduce_only, role, reason, created_at, updated_at, error FROM orders "
            "ORDER BY created_at, rowid")],
        "fills": [(f.symbol, f.side.value, f.qty, f.price, f.fee, f.ts, f.liquidation)
                  for f in paper.fills()],
        "open": sorted((p.symbol, p.side.value, p.qty, p.entry, p.sl, p.tp, p.trailing,
                        p.best_price, p.peak_roi, p.realized_pnl, tuple(sorted(p.flags)))
                       for p in engine.positions.values()),
        "closed": sorted((p.symbol, p.side.value, p.exit_reason, p.exit_price, p.realized_pnl,
                          p.closed_at) for p in store.closed_positions()),
    }
    await engine.shutdown()
    return out, quiet_ticks


@pytest.mark.parametrize("seed,exchange_stops", [(1, True), (2, False), (3, True)])
async def test_band_skipping_engine_decides_exactly_as_full_evaluation(tmp_path, seed,
                                                                       exchange_stops):
    steps = 800
    banded, skipped = await _run(tmp_path / "banded.db", seed, steps, True, exchange_stops)
    full, none = await _run(tmp_path / "full.db", seed, steps, False, exchange_stops)
    assert none == 0
    # the workload: bands were used, and the rules acted (moves, closes, re-opens)
    assert skipped > steps * len(START) // 4
    kinds = {a[[k for k, _ in a].index("type")][1] for a in banded["actions"]}
    assert {"open", "move_sl", "close"} <= kinds
    assert len(banded["closed"]) >= 3
    for key in ("actions", "orders", "fills", "open", "closed"):
        assert banded[key] == full[key], key
