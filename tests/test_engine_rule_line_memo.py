"""The chart's rule line is kept between ticks (`EngineCore._rule_line`): what it reads
besides the tick and the best price (`indicator_line.prepare`) is reused while the position
fields it reads, the Params object and the symbol's candle version are the same. The
published lines must be exactly those computed afresh on every tick, as before — for each
kind of line (chandelier and EMA, stepped by candles; adaptive and fixed trails, which
follow the tick and the best price, the latter with time tightening), across candle closes,
stop moves, new best prices and a preset change.
"""

from __future__ import annotations

import random

from pmgui.domain.enums import Side
from pmgui.domain.models import Candle, Market, MarketState, Tick
from pmgui.engine import commands as cmd
from pmgui.engine import indicator_line
from pmgui.engine.core import EngineCore
from pmgui.engine.events import PositionSnapshot, RuleIndicator
from pmgui.engine.outbox import Outbox
from pmgui.engine.settings import EngineSettings
from pmgui.exchange.feeds import CandleClosed
from pmgui.exchange.paper import PaperExchange
from pmgui.store.db import Store

T0 = 1_700_006_400.0  # a multiple of 4 h
SYMBOLS = {"chandelier": "BTC/USDT:USDT", "ema": "ETH/USDT:USDT", "adaptive": "SOL/USDT:USDT",
           "fixed": "XRP/USDT:USDT"}
LINES = {  # preset, overrides: one of each kind of line
    "chandelier": ("breakout", {"trailing.after_breakeven": False, "trailing.atr_period": 3,
                                "trailing.timeframe": "15m",
                                "r_targets.enabled": False, "add_on.enabled": False}),
    "ema": ("breakout", {"trailing.enabled": False, "r_targets.enabled": False,
                         "add_on.timeframe": "5m"}),
    "adaptive": ("guardian", {"trailing.timeframe": "15m", "smart_tp.enabled": False,
                              "momentum_loss.enabled": False, "dynamic_tp.enabled": False,
                              "emergency.enabled": False}),
    "fixed": ("active", {"tightening.start_hours": 0.2, "profit_booking.enabled": False,
                         "scaling.enabled": False, "breakeven_plus.enabled": False}),
}


def _fresh_line(self: EngineCore, rt, params, info, price, ts, given=None):
    """The line as the engine computed it before the memo: `indicator_line.current` on
    every tick, from the market state read for that tick."""
    info = info or self.rule_info(params)
    if given is None:
        ind, frames = self.market.state(rt.symbol, info.spec, info.timeframes)
        mkt = MarketState(rt.symbol, price, ts, self.market.market(rt.symbol), ind, frames)
    else:
        mkt = given[0]
    return indicator_line.current(self.market, rt.position, mkt, params, info.spec)


async def _run(db_path, seed: int) -> tuple[list[tuple[str, float, object]], dict[str, str]]:
    """A session of minutes and ticks over the four lines, one symbol each (a long and a
    short): every published snapshot's (position, time, line), and each position's line."""
    store = Store.open(db_path)
    paper = PaperExchange({s: Market(s, tick_size=0.01, amount_step=0.001, min_amount=0.001)
                           for s in SYMBOLS.values()}, None, realtime=False, db=store.db)
    outbox = Outbox()
    events: list = []
    outbox.add_listener(events.append)
    engine = EngineCore(paper, store, outbox, EngineSettings(default_preset="manual",
                                                             protect_throttle=0.0),
                        clock=paper.now)
    rng = random.Random(seed)
    price = dict.fromkeys(SYMBOLS.values(), 100.0)
    minute: dict[str, list[float]] = {s: [] for s in SYMBOLS.values()}
    t = T0 - 3 * 3600.0

    async def minute_closes(at: float) -> None:
        nonlocal t
        while t + 60.0 <= at:  # the stream's minute candles, closed in order
            for s, ps in minute.items():
                ps = ps or [price[s]]
                await paper.deliver(CandleClosed(s, Candle(t, ps[0], max(ps), min(ps),
                                                           ps[-1], 10.0)), engine)
                minute[s] = []
            t += 60.0

    def step(s: str, drift: float, vol: float) -> float:
        price[s] = round(price[s] * (1 + rng.gauss(drift, vol)), 2)
        minute[s].append(price[s])
        return price[s]

    while t < T0:  # three hours of history: every timeframe's indicators are warm
        for s in SYMBOLS.values():
            step(s, 0.0, 0.002)
        await minute_closes(t + 60.0)
    await engine.start()
    now = T0 + 1.0
    for s in SYMBOLS.values():
        await paper.deliver(Tick(s, price[s], now), engine)
    held: dict[str, str] = {}
    for kind, (preset, over) in LINES.items():
        s = SYMBOLS[kind]
        for side in (Side.LONG, Side.SHORT):
            sl = price[s] * (0.9 if side is Side.LONG else 1.1)
            res = await engine.handle(cmd.OpenPosition(s, side, 0.1, 5, sl=sl, preset=preset,
                                                       overrides=over))
            assert res.ok, res.message
            held[res.position_id] = kind
    for i in range(4000):  # about an hour of ticks, a few a second
        now += rng.choice((0.2, 0.5, 1.0, 2.0))
        s = rng.choice(list(SYMBOLS.values()))
        await minute_closes(now)
        await paper.deliver(Tick(s, step(s, 0.0002, 0.0015), now), engine)
        if i == 2500:  # a preset change: new Params for a position
            pid = next(p for p, k in held.items() if k == "fixed")
            res = await engine.handle(cmd.SetPreset(pid, "active", {
                **LINES["fixed"][1], "trailing.distance": 0.01}))
            assert res.ok, res.message
    await engine.shutdown()
    store.close()
    lines = [(e.position.id, e.ts, e.indicator) for e in events
             if isinstance(e, PositionSnapshot) and e.position.id in held]
    return lines, held


async def test_published_lines_are_the_lines_computed_afresh(tmp_path, monkeypatch):
    calls = {"prepare": 0}
    prepare = indicator_line.prepare

    def counted(*a, **k):
        calls["prepare"] += 1
        return prepare(*a, **k)

    monkeypatch.setattr(indicator_line, "prepare", counted)
    kept, held = await _run(tmp_path / "kept.db", 7)
    prepared = calls["prepare"]
    monkeypatch.setattr(EngineCore, "_rule_line", _fresh_line)
    fresh, held_again = await _run(tmp_path / "fresh.db", 7)
    assert list(held.values()) == list(held_again.values())
    # the same session: the same snapshots in the same order, each with the same line
    assert len(kept) == len(fresh)
    assert [(held[a[0]], a[1], a[2]) for a in kept] == \
        [(held_again[b[0]], b[1], b[2]) for b in fresh]
    # the session shows every kind of line, with values, and lines that change
    for kind in LINES:
        vals = [ind for pid, _ts, ind in kept if held[pid] == kind and ind is not None]
        assert len(vals) > 200 and all(type(v) is RuleIndicator for v in vals), kind
        values = {v.value for v in vals if v.value is not None}
        assert len(values) > 3, (kind, values)
        if kind in ("chandelier", "ema"):
            assert all(v.step for v in vals)
            assert len({v.since for v in vals}) > 1  # its candles closed along the session
        else:
            assert not any(v.step for v in vals)
    fixed = [ind.distance for pid, _ts, ind in kept if held[pid] == "fixed" and ind]
    assert min(fixed) < max(fixed)  # tightening over time, and the preset change
    # and the memo did its job: the line was read afresh far less often than published
    # (a new best price, peak or stop does not read it again; a candle close does)
    assert 0 < prepared < len(kept) / 8, (prepared, len(kept))
