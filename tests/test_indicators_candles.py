"""Candle building per timeframe and swing highs/lows (support/resistance)."""

from __future__ import annotations

import pytest

from pmgui.domain.errors import ValidationError
from pmgui.domain.models import Candle
from pmgui.domain.timeframes import TIMEFRAMES, describe, name_of, seconds
from pmgui.indicators import CandleBuilder, IndicatorSet, IndicatorSpec, Swings, aggregate


def test_timeframe_table():
    assert list(TIMEFRAMES) == ["1m", "5m", "15m", "1h", "4h", "1d"]
    assert seconds("4h") == 14400 and name_of(86400) == "1d" and name_of(7200) is None
    assert describe(7200) == "2h" and describe(90) == "90s"
    with pytest.raises(ValidationError, match="unknown timeframe '2h'"):
        seconds("2h")


def test_ticks_make_completed_candles_only():
    b = CandleBuilder(60)
    assert b.add_tick(10.0, 0.0, 1.0) == []
    assert b.add_tick(12.0, 30.0, 1.0) == []
    assert b.add_tick(9.0, 59.9, 1.0) == []
    assert b.forming == Candle(0.0, 10.0, 12.0, 9.0, 9.0, 3.0)
    [c] = b.add_tick(11.0, 61.0)  # a price of the next minute completes the first
    assert c == Candle(0.0, 10.0, 12.0, 9.0, 9.0, 3.0)
    assert b.add_tick(50.0, 30.0) == []  # late: never rewrites a completed candle
    assert b.forming == Candle(60.0, 11.0, 11.0, 11.0, 11.0, 0.0)
    assert b.close_until(119.0) == []
    [d] = b.close_until(120.0)  # the clock passed its end
    assert d.ts == 60.0 and b.forming is None


def test_shorter_candles_aggregate_when_the_bucket_is_complete():
    hours = [Candle(h * 3600.0, 10 + h, 11 + h, 9 + h, 10.5 + h, 2.0) for h in range(9)]
    b = CandleBuilder(14400)
    out = []
    for i, c in enumerate(hours):
        got = b.add_candle(c, 3600)
        out += got
        # the 4h candle appears with the hour that ends it, not one candle later
        assert [x.ts for x in got] == ([((i + 1) // 4 - 1) * 14400.0] if i % 4 == 3 else [])
    assert out == [Candle(0.0, 10, 14, 9, 13.5, 8.0), Candle(14400.0, 14, 18, 13, 17.5, 8.0)]
    assert b.forming == Candle(28800.0, 18, 19, 17, 18.5, 2.0)
    assert aggregate(hours, 3600, 14400) == out
    # a gap: the bucket missing its last hour completes when a later bucket starts
    gap = [hours[0], hours[1], hours[5]]
    assert [c.ts for c in aggregate(gap, 3600, 14400)] == [0.0]
    with pytest.raises(ValidationError, match="a 1d candle cannot build 1h candles"):
        CandleBuilder(3600).add_candle(hours[0], 86400)


def test_swings_confirmed_and_forgotten():
    s = Swings(strength=2, lookback=6, highest=True)
    for x in (1, 2, 5, 3, 2):
        s.update(x)
    assert s.value == (5.0,)  # confirmed two candles later
    s.update(4)
    assert s.value == (5.0,)
    for x in (6, 3, 2):  # 6 is a swing high; 5 drops out of the 6-candle lookback
        s.update(x)
    assert s.value == (6.0,)
    lows = Swings(strength=1, lookback=50, highest=False)
    for x in (5, 3, 4, 4, 2, 6):
        lows.update(x)
    assert lows.value == (3.0, 2.0)
    s2 = Swings(1, 10)
    for x in (1, 3, 3, 1):  # a flat top is not a strict swing
        s2.update(x)
    assert s2.value == ()


def test_indicator_set_reports_swings():
    spec = IndicatorSpec(swing_strength=1, swing_lookback=10)
    ind = IndicatorSet(spec)
    for i, (h, lo) in enumerate([(10, 8), (12, 9), (11, 7), (13, 10), (12, 9)]):
        ind.update(Candle(float(i), lo + 0.5, h, lo, lo + 0.5))
    snap = ind.snapshot()
    assert snap.swing_highs == (12.0, 13.0) and snap.swing_lows == (7.0,)
    with pytest.raises(ValidationError):
        IndicatorSpec(swing_strength=0)


def _swings_by_brute_force(xs: list[float], k: int, lookback: int, highest: bool
                           ) -> tuple[float, ...]:
    """The confirmed swings of the last `lookback` values, recomputed from all of them."""
    out = []
    for j in range(k, len(xs) - k):
        others = xs[j - k:j] + xs[j + 1:j + k + 1]
        if (xs[j] > max(others)) if highest else (xs[j] < min(others)):
            out.append((j, xs[j]))
    return tuple(v for j, v in out if j >= len(xs) - lookback)


@pytest.mark.parametrize("seed", range(6))
def test_swings_kept_between_updates_equal_a_recomputation(seed):
    """`Swings.value` is kept between updates (rebuilt only when a swing is confirmed or
    forgotten): after every value it equals the swings recomputed from the whole history,
    through both `update` and the unchecked `push` (short lookbacks: swings expire)."""
    import random
    rng = random.Random(seed)
    for k, lookback, highest in ((1, 3, True), (2, 7, False), (1, 1, False), (3, 40, True)):
        s, xs = Swings(k, lookback, highest=highest), []
        for i in range(300):
            x = float(rng.randint(1, 9))
            xs.append(x)
            if i % 2:
                s.push(x)
                got = s.value
            else:
                got = s.update(x)
            assert got == s.value == _swings_by_brute_force(xs, k, lookback, highest), i
