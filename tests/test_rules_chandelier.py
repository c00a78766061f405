"""Chandelier trailing on real data vs an independent computation (ta's ATR + pandas rolling)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from ta.volatility import AverageTrueRange

from pmgui.domain.enums import ActionType, Reason, Side
from pmgui.domain.models import Candle, Market, MarketState
from pmgui.indicators import IndicatorSet
from pmgui.rules.params import resolve_params
from pmgui.rules.policy import evaluate, indicator_spec, observe
from tests.rules_support import apply, pos

DATA = Path(__file__).parent / "data"


def _reference(df: pd.DataFrame, n: int, mult: float) -> tuple[pd.Series, pd.Series]:
    atr = AverageTrueRange(df.high, df.low, df.close, window=n).average_true_range()
    atr[: n - 1] = float("nan")  # ta fills the warm-up with zeros
    long_level = df.high.rolling(n).max() - mult * atr
    short_level = df.low.rolling(n).min() + mult * atr
    return long_level, short_level


@pytest.mark.parametrize("name", ["BTCUSD-1h-coinbase-2019-first1000.csv",
                                  "ETHUSD-1d-bitstamp.csv"])
@pytest.mark.parametrize("side", [Side.LONG, Side.SHORT])
@pytest.mark.parametrize("mult", [3.0, 2.0])
def test_chandelier_matches_reference_and_ratchets(name, side, mult):
    df = pd.read_csv(DATA / name)
    params = resolve_params("breakout", {"trailing.after_breakeven": False,
                                         "trailing.atr_mult": mult, "r_targets.enabled": False,
                                         "add_on.enabled": False, "take_profit.enabled": False,
                                         "stop_loss.enabled": False})
    spec = indicator_spec(params)
    assert spec.atr_period == 22 and spec.channel_period == 22
    tick = 0.01
    market = Market(symbol="BTC/USDT:USDT", tick_size=tick, amount_step=0.001)
    ref_long, ref_short = _reference(df, 22, mult)
    ref = ref_long if side is Side.LONG else ref_short
    ind = IndicatorSet(spec)
    p = pos(side, entry=float(df.close.iloc[0]), opened_at=float(df.timestamp.iloc[0]))
    expected_sl: float | None = None
    checked = moved = due = 0
    for i, r in enumerate(df.itertuples()):
        ind.update(Candle(ts=float(r.timestamp), open=r.open, high=r.high, low=r.low,
                          close=r.close, volume=r.volume))
        snap = ind.snapshot()
        price = float(r.close)
        state = MarketState(symbol=market.symbol, price=price, ts=float(r.timestamp),
                            market=market, indicators=snap)
        p = observe(p, price)
        acts = evaluate(p, state, params)
        level = ref.iloc[i]
        if math.isnan(level):
            assert acts == []
            continue
        checked += 1
        # the reference's level, placed only when it ratchets and sits at least one tick on
        # the safe side of the price
        d = side.dir
        safe = (level <= price - tick) if d > 0 else (level >= price + tick)
        better = expected_sl is None or (level - expected_sl) * d > 1e-9
        crossed = (price <= level) if d > 0 else (price >= level)
        if safe and better:
            [a] = acts
            assert a.type is ActionType.MOVE_SL
            assert a.sl == pytest.approx(level, rel=1e-9)
            expected_sl = a.sl
            moved += 1
        elif crossed and better:
            # the new level is already through the price: the stop is due, close at market
            [a] = acts
            assert a.type is ActionType.CLOSE and a.reason is Reason.TRAILING_STOP
            assert a.inputs["level"] == pytest.approx(level, rel=1e-9) and a.inputs["due"]
            due += 1
            continue  # keep checking the levels on the still-open copy
        else:
            assert acts == [], (i, level, price, expected_sl)
        p = apply(p, acts)
        assert p.sl == expected_sl
    assert checked > 700 and moved > 10
