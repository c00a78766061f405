"""Issue 11 in the engine: candles per symbol and rule timeframe (history from the venue per
timeframe, live closes aggregated from the stream's candles), the add-on cancelled by the
engine, and replay of tick and candle files deciding alike at several timeframes."""

from __future__ import annotations

import asyncio

import pytest

from pmgui.domain.enums import ActionType, OrderRole, OrderStatus, Reason, Side
from pmgui.domain.models import Candle, Tick
from pmgui.engine import commands as cmd
from pmgui.engine.events import ActionTaken
from pmgui.engine.replay import ReplayRequest, run_replay
from pmgui.engine.settings import EngineSettings
from pmgui.exchange.csvdata import PriceData, candle_path_ticks, load_price_csv
from pmgui.exchange.feeds import CandleClosed
from pmgui.indicators import IndicatorSet, aggregate
from pmgui.resources import resource_path
from pmgui.rules.params import resolve_params
from pmgui.rules.policy import indicator_spec
from tests.engine_support import SYMBOL, Harness
from tests.paper_support import RecordingSink

H = 3600.0
T0 = 1_700_006_400.0  # a multiple of 4 h


def _minutes(start: float, n: int, base: float = 100.0) -> list[Candle]:
    out = []
    for i in range(n):
        o = base + (i % 7) * 0.3 + i * 0.01
        c = o + (0.2 if i % 3 else -0.25)
        out.append(Candle(start + 60.0 * i, o, max(o, c) + 0.15, min(o, c) - 0.1, c, 10.0))
    return out


async def test_rule_timeframe_history_from_the_venue_then_live_closes(db_path):
    h = Harness(db_path, [], EngineSettings(default_preset="manual", protect_throttle=0.0))
    await h.paper.connect()
    rec = RecordingSink()
    history = _minutes(T0 - 10 * H, 10 * 60 + 30)  # ten hours and half an hour of minutes
    for c in history:
        await h.paper.deliver(CandleClosed(SYMBOL, c), rec)
    await h.engine.start()
    now = T0 + 30 * 60.0 + 1
    await h.paper.deliver(Tick(SYMBOL, 100.5, now), h.engine)
    over = {"trailing.enabled": True, "trailing.mode": "chandelier", "trailing.timeframe": "1h",
            "trailing.atr_period": 3}
    res = await h.engine.handle(cmd.OpenPosition(SYMBOL, Side.LONG, 0.1, 5, sl=90.0,
                                                 preset="manual", overrides=over))
    assert res.ok
    await h.paper.deliver(Tick(SYMBOL, 100.6, now + 1), h.engine)
    hours = aggregate(history, 60.0, H)
    # the venue's hourly history, completed candles only (the half hour in progress is not)
    assert h.engine.market.candles(SYMBOL, "1h") == tuple(hours)
    assert hours[-1].ts == T0 - H
    # the stream's minutes complete the hour in progress: one more hourly candle, built from
    # the venue's partial hour and the live minutes
    live = _minutes(T0 + 30 * 60.0, 31)[:30]
    for c in live:
        await h.paper.deliver(CandleClosed(SYMBOL, c), h.engine)
        assert len(h.engine.market.candles(SYMBOL, "1h")) == len(hours) + (c is live[-1])
    [built] = h.engine.market.candles(SYMBOL, "1h")[-1:]
    whole = aggregate([*history, *live], 60.0, H)[-1]
    assert built.ts == T0 and (built.open, built.high, built.low, built.close) == \
        (whole.open, whole.high, whole.low, whole.close)
    # the rules read exactly the completed hourly candles
    await h.paper.deliver(Tick(SYMBOL, 101.9, T0 + H + 1), h.engine)
    spec = indicator_spec(resolve_params("manual", over))
    hourly = h.engine.market.candles(SYMBOL, "1h")
    assert h.engine.market.frames(SYMBOL, spec, ["1h"])["1h"] == \
        IndicatorSet.from_candles(spec, hourly).snapshot()
    moves = [e.action for e in h.of(ActionTaken) if e.action.rule == "trailing"]
    assert moves
    for m in moves:
        done = [c for c in hourly if c.ts + H <= m.ts]
        ind = IndicatorSet.from_candles(spec, done).snapshot()
        assert m.inputs["atr"] == pytest.approx(ind.atr) and m.inputs["timeframe"] == "1h"
        assert m.inputs["highest_high"] == ind.highest_high
    await h.engine.shutdown()


async def test_engine_cancels_a_stale_add_on_and_logs_why(db_path):
    h = Harness(db_path, [], EngineSettings(default_preset="manual", protect_throttle=0.0))
    await h.engine.start()
    rec = h.engine
    # 5-minute EMA(9) warmed on minutes at ~100.8 (the venue's history)
    t = T0
    for c in _minutes(t - 3 * H, 180, base=100.6):
        await h.paper.deliver(CandleClosed(SYMBOL, c), rec)
    await h.paper.deliver(Tick(SYMBOL, 100.0, t), rec)
    over = {"add_on.enabled": True, "add_on.timeframe": "5m", "r_targets.enabled": False,
            "trailing.enabled": False}
    res = await h.engine.handle(cmd.OpenPosition(SYMBOL, Side.LONG, 0.1, 5, sl=98.0,
                                                 preset="breakout", overrides=over))
    assert res.ok
    pid = res.position_id
    await h.paper.deliver(Tick(SYMBOL, 100.0, t + 0.5), rec)  # loads the 5m history
    # +0.5R near the EMA: the add-on rests as a limit at the EMA
    ema = h.engine.market.frames(SYMBOL, indicator_spec(h.engine.params(
        h.engine.positions[pid])), ["5m"])["5m"].ema9
    assert ema is not None
    await h.paper.deliver(Tick(SYMBOL, round(ema * 1.003, 1), t + 1), rec)
    adds = [o for o in h.engine.ledger.live.values() if o.role is OrderRole.ADD]
    assert len(adds) == 1 and adds[0].status is OrderStatus.OPEN and adds[0].price < ema * 1.003
    assert any(f.startswith("add_on_open:") for f in h.engine.positions[pid].flags)
    # the price runs away from the EMA (> 1.5 %): the engine cancels it and says why
    await h.paper.deliver(Tick(SYMBOL, round(ema * 1.02, 1), t + 2), rec)
    assert [o for o in await h.paper.fetch_open_orders(SYMBOL) if not o.reduce_only] == []
    cancel = [e for e in h.of(ActionTaken) if e.action.type is ActionType.CANCEL]
    assert len(cancel) == 1 and cancel[0].ok
    assert cancel[0].action.reason is Reason.ADD_ON_CANCEL
    assert cancel[0].action.inputs["why"] == "price_away"
    assert cancel[0].detail == "add-on order cancelled (price_away)"
    assert not any(f.startswith("add_on_open:") for f in h.engine.positions[pid].flags)
    logged = [a for a in h.store.actions(pid) if a["reason"] == "add_on_cancel"]
    assert len(logged) == 1
    # once: the add-on is not placed again
    await h.paper.deliver(Tick(SYMBOL, round(ema * 1.003, 1), t + 3), rec)
    assert not [o for o in await h.paper.fetch_open_orders(SYMBOL) if not o.reduce_only]
    assert h.engine.positions[pid].qty == pytest.approx(0.1)
    await h.engine.shutdown()


def _ticks_of(candles: list[Candle], interval: float) -> PriceData:
    """The ticks a candle file replays as (ReplayFeed's offsets and path), as a tick file."""
    close_at = interval - min(1.0, interval / 100.0)
    offsets = (0.0, interval / 3.0, 2.0 * interval / 3.0, close_at)
    ticks = tuple(Tick(SYMBOL, p, c.ts + off, c.volume / 4.0)
                  for c in candles for off, p in zip(offsets, candle_path_ticks(c), strict=True))
    return PriceData("ticks", SYMBOL, ticks=ticks)


@pytest.mark.parametrize(("preset", "over"), [
    ("guardian", {"dynamic_tp.timeframe": "1h"}),
    ("guardian", {"trailing.timeframe": "1d", "dynamic_tp.timeframe": "4h"}),
    ("breakout", {"trailing.timeframe": "4h", "trailing.after_breakeven": False}),
    ("manual", {"trailing.enabled": True, "trailing.mode": "chandelier",
                "trailing.timeframe": "1h"}),
])
def test_tick_and_candle_files_decide_alike_at_several_timeframes(preset, over):
    data = load_price_csv(resource_path("data", "BTCUSD-1h-coinbase-2019.csv"), SYMBOL)
    candles = list(data.candles[:1500])
    as_candles = PriceData("candles", SYMBOL, candles=tuple(candles), source="c.csv")
    as_ticks = _ticks_of(candles, 3600.0)
    entry = candles[0].open
    req = ReplayRequest(Side.LONG, entry, 1.0, 3.0, sl=entry * 0.9, tp=entry * 1.25,
                        preset=preset, overrides=over, fee=0.0, symbol=SYMBOL)
    a = asyncio.run(run_replay(as_candles, req))
    b = asyncio.run(run_replay(as_ticks, req))

    def decisions(res) -> list[tuple]:
        # the rules' own decisions (what the exchange filled by itself may fill at its level
        # inside a candle but at the next tick in a tick file)
        return [(r["ts"], r["type"], r["reason"], r["price"], r["qty"], r["sl"], r["tp"],
                 r.get("inputs", {}).get("timeframe")) for r in res.actions
                if r["rule"] not in ("exchange", "protection")]

    da, db = decisions(a), decisions(b)
    assert (len(da) >= 2 and da[-1][1] == "close") or len(da) > 3
    assert da == db
    assert a.summary["timeframes"] == b.summary["timeframes"]


async def test_stream_candle_length_is_learned_from_the_stream(db_path):
    # a paper venue streaming a recorded file's hours while the settings say minutes: the
    # 4h candles still complete with the hour that ends them
    h = Harness(db_path, [], EngineSettings(default_preset="manual", protect_throttle=0.0))
    await h.engine.start()
    md = h.engine.market
    md.want(SYMBOL, "4h")
    hours = [Candle(T0 + H * i, 100 + i, 101 + i, 99 + i, 100.5 + i, 1.0) for i in range(9)]
    for i, c in enumerate(hours):
        await h.paper.deliver(CandleClosed(SYMBOL, c), h.engine)
        if i >= 1:
            assert len(md.candles(SYMBOL, "4h")) == (i + 1) // 4
    assert md.candles(SYMBOL, "4h") == tuple(aggregate(hours, H, 4 * H))
    await h.engine.shutdown()
