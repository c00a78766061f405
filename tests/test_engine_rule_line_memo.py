"""The chart's rule line is kept between ticks (`EngineCore._rule_line`): what it reads
besides the tick and the best price (`indicator_line.prepare`) is reused while the position
fields it reads, the Params object and the symbol's candle version are the same. Each line
the engine computes must be exactly the one computed afresh at that moment, as before — for
each kind of line (chandelier and EMA, stepped by candles; adaptive and fixed trails, which
follow the tick and the best price, the latter with time tightening), across candle closes,
stop moves, new best prices and a preset change.
"""

from __future__ import annotations

import random
from dataclasses import replace

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
from pmgui.rules.params import resolve_params
from pmgui.store.db import Store
from tests.engine_support import one_long_open

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


async def test_each_line_is_the_line_computed_afresh(tmp_path, monkeypatch):
    kept = EngineCore._rule_line
    computed: list[object] = []
    misses = [0]

    def checked(self, rt, params, info, price, ts, given=None):
        """The engine's line, checked against the line read afresh at the same moment."""
        memo = rt.line_memo
        got = kept(self, rt, params, info, price, ts, given)
        misses[0] += rt.line_memo is not memo
        want = _fresh_line(self, rt, params, info, price, ts, given)
        assert got == want and type(got) is type(want), (rt.id, got, want)
        computed.append(got)
        return got

    monkeypatch.setattr(EngineCore, "_rule_line", checked)
    published, held = await _run(tmp_path / "lines.db", 7)
    # the session showed every kind of line, with values, and lines that change
    for kind in LINES:
        vals = [ind for pid, _ts, ind in published if held[pid] == kind and ind is not None]
        assert len(vals) > 200 and all(type(v) is RuleIndicator for v in vals), kind
        values = {v.value for v in vals if v.value is not None}
        assert len(values) > 3, (kind, values)
        if kind in ("chandelier", "ema"):
            assert all(v.step for v in vals)
            assert len({v.since for v in vals}) > 1  # its candles closed along the session
        else:
            assert not any(v.step for v in vals)
    fixed = [ind.distance for pid, _ts, ind in published if held[pid] == "fixed" and ind]
    assert min(fixed) < max(fixed)  # tightening over time, and the preset change
    # and the memo did its job: the line was read afresh far less often than computed
    # (a new best price, peak or stop does not read it again; a candle close does)
    assert len(computed) > 3000  # every tick of a position: the line at its price
    assert 0 < misses[0] < len(computed) / 8, (misses[0], len(computed))


async def test_a_change_of_what_the_line_reads_reads_it_again(tmp_path):
    """A new best price, peak or stop keeps what `prepare` read; a change of a field it
    reads (an add-on's new entry, another leverage, fee rate, open time or side), of the
    Params or of the candles reads it again — and the line is the one computed afresh."""
    h, rt = await one_long_open(tmp_path / "one.db", EngineSettings(default_preset="active"))
    engine = h.engine
    params = engine.params(rt.position)
    at = engine.market.last[rt.symbol]
    line = engine._rule_line(rt, params, None, at.price + 5.0, at.ts + 1.0)
    memo = rt.line_memo
    assert memo is not None and type(line) is RuleIndicator and line.value is not None

    def again(pos, price: float) -> object:
        rt.position = pos
        got = engine._rule_line(rt, params, None, price, at.ts + 2.0)
        assert got == _fresh_line(engine, rt, params, None, price, at.ts + 2.0)
        return got

    pos = rt.position
    again(replace(pos, best_price=pos.entry * 1.01, peak_roi=0.2, sl=pos.entry), at.price)
    assert rt.line_memo is memo  # the best price is line_at's: nothing read again
    for field, value in (("entry", pos.entry * 0.99), ("leverage", 3.0),
                         ("fee_rate", 0.002), ("opened_at", pos.opened_at - 9000.0),
                         ("side", Side.SHORT)):
        pos = replace(pos, **{field: value})  # one more field changed each time
        again(pos, at.price)
        assert rt.line_memo is not memo, field
        memo = rt.line_memo
    other = resolve_params("active", {"trailing.distance": 0.02})
    assert engine._rule_line(rt, other, None, at.price, at.ts + 2.0) == \
        _fresh_line(engine, rt, other, None, at.price, at.ts + 2.0)
    assert rt.line_memo is not memo
    memo = rt.line_memo
    engine.market._changed(rt.symbol)  # a candle of the symbol closed
    engine._rule_line(rt, other, None, at.price, at.ts + 2.0)
    assert rt.line_memo is not memo
    await engine.shutdown()
