"""Incremental indicators vs the `ta` library (and plain pandas) on real OHLC data."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ta.momentum import RSIIndicator
from ta.trend import EMAIndicator
from ta.volatility import AverageTrueRange

from pmgui.domain.errors import ValidationError
from pmgui.domain.models import Candle, Indicators
from pmgui.indicators import (
    ATR,
    EMA,
    RSI,
    Change,
    IndicatorSet,
    IndicatorSpec,
    RollingExtreme,
    RollingMean,
)
from pmgui.indicators.indicator_set import _check_candle, _check_candle_fully

DATA = Path(__file__).parent / "data"
FILES = ["BTCUSD-1h-coinbase-2019-first1000.csv", "ETHUSD-1d-bitstamp.csv"]


def load(name: str) -> pd.DataFrame:
    return pd.read_csv(DATA / name)


def candles(df: pd.DataFrame) -> list[Candle]:
    return [Candle(ts=float(r.timestamp), open=float(r.open), high=float(r.high),
                   low=float(r.low), close=float(r.close), volume=float(r.volume))
            for r in df.itertuples()]


def _series(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _assert_matches(ours: np.ndarray, ref: np.ndarray, first_valid: int, rel: float = 1e-9):
    assert np.all(np.isnan(ours[:first_valid])), "value reported before warm-up"
    np.testing.assert_allclose(ours[first_valid:], ref[first_valid:], rtol=rel, atol=1e-9)


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("n", [9, 21])
def test_ema_matches_ta(name, n):
    df = load(name)
    ema = EMA(n)
    ours = _series([ema.update(c) for c in df.close])
    ref = EMAIndicator(df.close, window=n).ema_indicator().to_numpy()
    _assert_matches(ours, ref, n - 1)
    ref2 = df.close.ewm(span=n, adjust=False).mean().to_numpy()
    np.testing.assert_allclose(ours[n - 1:], ref2[n - 1:], rtol=1e-12)


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("n", [14, 22])
def test_atr_matches_ta(name, n):
    df = load(name)
    atr = ATR(n)
    ours = _series([atr.update(h, lo, c) for h, lo, c in zip(df.high, df.low, df.close,
                                                             strict=True)])
    ref = AverageTrueRange(df.high, df.low, df.close, window=n).average_true_range().to_numpy()
    _assert_matches(ours, ref, n - 1)


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("n", [14, 6])
def test_rsi_matches_ta(name, n):
    df = load(name)
    rsi = RSI(n)
    ours = _series([rsi.update(c) for c in df.close])
    ref = RSIIndicator(df.close, window=n).rsi().to_numpy()
    _assert_matches(ours, ref, n - 1, rel=1e-8)
    assert np.nanmin(ours) >= 0 and np.nanmax(ours) <= 100


@pytest.mark.parametrize("name", FILES)
def test_channel_volatility_momentum_match_pandas(name):
    df = load(name)
    spec = IndicatorSpec(channel_period=22, volatility_window=20, momentum_window=10,
                         volume_window=24)
    s = IndicatorSet(spec)
    snaps = []
    for c in candles(df):
        s.update(c)
        snaps.append(s.snapshot())
    hh = _series([x.highest_high for x in snaps])
    ll = _series([x.lowest_low for x in snaps])
    vol = _series([x.volatility for x in snaps])
    mom = _series([x.momentum for x in snaps])
    volume = _series([x.volume for x in snaps])
    trend = _series([x.trend for x in snaps])
    _assert_matches(hh, df.high.rolling(22).max().to_numpy(), 21)
    _assert_matches(ll, df.low.rolling(22).min().to_numpy(), 21)
    _assert_matches(vol, ((df.high - df.low) / df.close).rolling(20).mean().to_numpy(), 19)
    _assert_matches(mom, (df.close / df.close.shift(10) - 1).to_numpy(), 10)
    _assert_matches(volume, (df.volume * df.close).rolling(24).mean().to_numpy(), 23,
                    rel=1e-7)
    ema = df.close.ewm(span=9, adjust=False).mean()
    ref_trend = (ema / ema.shift(10) - 1).to_numpy()
    _assert_matches(trend, ref_trend, 8 + 10)


def test_snapshot_matches_ta_and_from_candles():
    df = load(FILES[0])
    spec = IndicatorSpec()
    s = IndicatorSet.from_candles(spec, candles(df))
    snap = s.snapshot()
    assert s.count == len(df) and s.last_close == df.close.iloc[-1]
    assert snap.ema9 == pytest.approx(EMAIndicator(df.close, 9).ema_indicator().iloc[-1])
    assert snap.atr == pytest.approx(
        AverageTrueRange(df.high, df.low, df.close, 22).average_true_range().iloc[-1])
    assert snap.rsi == pytest.approx(RSIIndicator(df.close, 14).rsi().iloc[-1])
    for v in (snap.ema9, snap.atr, snap.highest_high, snap.lowest_low, snap.rsi,
              snap.volatility, snap.momentum, snap.volume, snap.trend):
        assert v is not None and math.isfinite(v)


def test_warmup_reports_none():
    s = IndicatorSet(IndicatorSpec(ema_period=3, atr_period=3, channel_period=3, rsi_period=3,
                                   volatility_window=3, momentum_window=2, volume_window=3))
    c = [Candle(ts=float(i), open=10 + i, high=11 + i, low=9 + i, close=10.5 + i, volume=1.0)
         for i in range(6)]
    s.update(c[0])
    s.update(c[1])
    snap = s.snapshot()
    assert snap.ema9 is None and snap.atr is None and snap.rsi is None
    assert snap.highest_high is None and snap.volatility is None and snap.momentum is None
    s.update(c[2])
    snap = s.snapshot()
    assert snap.ema9 is not None and snap.atr is not None and snap.highest_high == 13
    assert snap.lowest_low == 9 and snap.momentum == pytest.approx(12.5 / 10.5 - 1)
    assert snap.trend is None  # needs 2 more EMA values
    s.update(c[3])
    s.update(c[4])
    assert s.snapshot().trend is not None
    assert s.spec.warmup == 5


def test_rsi_all_gains_is_100_and_all_losses_is_0():
    up, down = RSI(3), RSI(3)
    for i in range(10):
        up.update(100.0 + i)
        down.update(100.0 - i)
    assert up.value == 100.0
    assert down.value == pytest.approx(0.0)


@pytest.mark.parametrize("bad", [
    Candle(ts=1.0, open=10, high=9, low=8, close=10),   # high below open
    Candle(ts=1.0, open=10, high=12, low=11, close=11.5),  # low above open
    Candle(ts=1.0, open=10, high=12, low=8, close=float("nan")),
    Candle(ts=1.0, open=10, high=12, low=0, close=10),
    Candle(ts=1.0, open=10, high=12, low=8, close=10, volume=-1),
    Candle(ts=1.0, open=10, high=float("inf"), low=8, close=10),
])
def test_bad_candles_rejected_and_nothing_changes(bad):
    s = IndicatorSet(IndicatorSpec(ema_period=1, atr_period=1, channel_period=1, rsi_period=2,
                                   volatility_window=1, momentum_window=1, volume_window=1))
    s.update(Candle(ts=0.0, open=10, high=11, low=9, close=10, volume=2))
    before = s.snapshot()
    with pytest.raises(ValidationError):
        s.update(bad)
    assert s.snapshot() == before and s.count == 1


def test_candles_must_be_newer():
    s = IndicatorSet()
    s.update(Candle(ts=10.0, open=10, high=11, low=9, close=10))
    with pytest.raises(ValidationError, match="not newer"):
        s.update(Candle(ts=10.0, open=10, high=11, low=9, close=10))
    assert s.count == 1


def test_bad_periods():
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValidationError):
            EMA(bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        IndicatorSpec(atr_period=0)
    with pytest.raises(ValidationError):
        EMA(3).update(float("nan"))


def test_rolling_primitives():
    mx, mn, mean, ch = RollingExtreme(3), RollingExtreme(3, highest=False), RollingMean(3), \
        Change(2)
    seq = [5.0, 1.0, 4.0, 3.0, 2.0, 6.0, 0.5]
    for i, x in enumerate(seq):
        mx.update(x)
        mn.update(x)
        mean.update(x)
        ch.update(x)
        window = seq[max(0, i - 2):i + 1]
        if i >= 2:
            assert mx.value == max(window) and mn.value == min(window)
            assert mean.value == pytest.approx(sum(window) / 3)
            assert ch.value == pytest.approx(x / seq[i - 2] - 1)
        else:
            assert mx.value is None and mean.value is None and ch.value is None


def _eager(spec: IndicatorSpec) -> IndicatorSet:
    s = IndicatorSet(spec)
    s._build()  # the indicators made at once, as before they waited for the first candle
    return s


@pytest.mark.parametrize("spec", [IndicatorSpec(), IndicatorSpec(
    ema_period=3, atr_period=2, channel_period=4, rsi_period=2, volatility_window=3,
    momentum_window=1, volume_window=2, swing_strength=1, swing_lookback=5)])
def test_a_set_makes_its_indicators_with_the_first_candle_and_gives_the_same_values(spec):
    """A set without candles (a timeframe with no history yet) has made no indicators; its
    snapshot is what made ones give before any candle, and from the first candle on every
    snapshot equals that of a set whose indicators were made at once."""
    lazy, eager = IndicatorSet(spec), _eager(spec)
    assert lazy.snapshot() == eager.snapshot() == Indicators()
    assert lazy.count == 0 and lazy.last_ts is None and lazy.last_close is None
    bad = Candle(ts=1.0, open=10.0, high=9.0, low=8.0, close=9.5)  # high below the open
    with pytest.raises(ValidationError):
        lazy.update(bad)
    assert lazy.snapshot() == Indicators() and lazy.count == 0
    for c in candles(load(FILES[0]))[:60]:
        lazy.update(c)
        eager.update(c)
        assert lazy.snapshot() == eager.snapshot()
        assert (lazy.count, lazy.last_ts, lazy.last_close) == (
            eager.count, eager.last_ts, eager.last_close)


_ODD = st.one_of(st.sampled_from([0.0, -1.0, math.nan, math.inf, -math.inf, 2, True, 1e-300]),
                 st.floats(allow_nan=True, allow_infinity=True))


@st.composite
def _candles(draw: st.DrawFn) -> tuple:
    """A sound candle of floats, then maybe one field replaced by an odd value (wrong type,
    not finite, not positive, or a price outside high/low)."""
    prices = sorted(draw(st.lists(st.floats(1e-6, 1e6), min_size=4, max_size=4)))
    low, high = prices[0], prices[3]
    o, c = draw(st.permutations([prices[1], prices[2]]))
    v = [draw(st.floats(-1e9, 1e9)), o, high, low, c, draw(st.floats(0.0, 1e9))]
    which = draw(st.none() | st.integers(0, 5))
    if which is not None:
        v[which] = draw(_ODD)
    return tuple(v)


@given(_candles())
@settings(max_examples=500, deadline=None)
def test_the_quick_candle_check_accepts_exactly_what_the_full_one_accepts(v):
    """`_check_candle` passes a candle of floats by one chained comparison; every candle —
    floats, ints, bools, NaN, inf, negative, inconsistent high/low — is accepted by it
    exactly when the full field-by-field check accepts it."""
    c = Candle(*v)
    try:
        _check_candle_fully(c)
        full = True
    except ValidationError:
        full = False
    try:
        _check_candle(c)
        quick = True
    except ValidationError:
        quick = False
    assert quick == full


def _swings_by_definition(seq: list[float], strength: int, lookback: int,
                          highest: bool) -> tuple[float, ...]:
    """Swings' value after `seq`, written as its definition: the middle of each full window
    of 2·strength+1 values strictly above (below) all the others, kept for `lookback`."""
    found = []
    w = 2 * strength + 1
    for end in range(w, len(seq) + 1):
        win = seq[end - w:end]
        mid, others = win[strength], win[:strength] + win[strength + 1:]
        if (mid > max(others)) if highest else (mid < min(others)):
            found.append((end - 1 - strength, mid))
    return tuple(v for i, v in found if i >= len(seq) - lookback)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 4).map(float) | st.floats(-3.0, 3.0), min_size=1, max_size=40),
       st.integers(1, 3), st.integers(1, 12), st.booleans())
def test_swings_are_the_strict_extremes_of_their_windows(seq, strength, lookback, highest):
    """Ties (a window's extreme met twice) are no swing: few distinct values make many."""
    from pmgui.indicators.core import Swings

    s = Swings(strength, lookback, highest=highest)
    for x in seq:
        s.push(x)
    assert s.value == _swings_by_definition(seq, strength, lookback, highest)
