"""`IndicatorSet`: every indicator a position's rules need, fed one completed candle at a time.

Why a set: the engine keeps one per (symbol, spec) and hands `snapshot()` to the rules in a
`MarketState`; the rules never see candles. Only completed candles go in (a forming candle
would make ATR and the channel jump back and forth within a bar).

Definitions of the derived values (see `pmgui.indicators.core` for the formulas):
- `ema9`: EMA(spec.ema_period) of closes (the add-on's pullback level).
- `atr`, `highest_high`, `lowest_low`: ATR(spec.atr_period), highest high and lowest low of
  the last spec.channel_period candles (chandelier exit).
- `rsi`: RSI(spec.rsi_period) of closes.
- `volatility`: mean of (high-low)/close over spec.volatility_window candles.
- `momentum`: close / close[spec.momentum_window] - 1.
- `volume`: mean quote volume (volume·close) per candle over spec.volume_window candles.
- `last_change`: the last candle's close / the previous close - 1 (a fading move).
- `trend`: EMA slope, ema / ema[spec.momentum_window candles ago] - 1, once the EMA is warm.
- `swing_highs`, `swing_lows`: confirmed swing highs/lows (spec.swing_strength candles on each
  side) of the last spec.swing_lookback candles: resistance and support.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from pmgui.domain.errors import ValidationError
from pmgui.domain.models import Candle, Indicators
from pmgui.domain.slots import slot_constructor
from pmgui.indicators.core import ATR, EMA, RSI, Change, RollingExtreme, RollingMean, Swings


@dataclass(frozen=True, slots=True)
class IndicatorSpec:
    """Which periods and windows a set computes. Hashable: the engine keys sets by it."""

    ema_period: int = 9
    atr_period: int = 22
    channel_period: int = 22
    rsi_period: int = 14
    volatility_window: int = 20
    momentum_window: int = 10
    volume_window: int = 20
    swing_strength: int = 2
    swing_lookback: int = 50

    def __post_init__(self) -> None:
        for name in ("ema_period", "atr_period", "channel_period", "rsi_period",
                     "volatility_window", "momentum_window", "volume_window",
                     "swing_strength", "swing_lookback"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 10_000:
                raise ValidationError(
                    f"indicator {name} must be a whole number from 1 to 10000 (got {v!r})",
                    field=name)

    @property
    def warmup(self) -> int:
        """Candles needed before every indicator has a value."""
        return max(self.ema_period + self.momentum_window, self.atr_period, self.channel_period,
                   self.rsi_period, self.volatility_window, self.momentum_window + 1,
                   self.volume_window)


def _check_candle(c: Candle) -> None:
    o, h, low, close, vol, ts = c.open, c.high, c.low, c.close, c.volume, c.ts
    if (type(o) is float and type(h) is float and type(low) is float
            and type(close) is float and type(vol) is float and type(ts) is float
            and 0.0 < low <= o <= h < _INF and low <= close <= h and low <= h
            and 0.0 <= vol < _INF and -_INF < ts < _INF):
        return  # the usual candle of floats, sound: what the checks below pass, at once
    _check_candle_fully(c)


_INF = math.inf


def _check_candle_fully(c: Candle) -> None:
    """`_check_candle` for any candle: ValidationError naming what is wrong."""
    fields = (("open", c.open), ("high", c.high), ("low", c.low), ("close", c.close))
    for name, v in fields:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                or v <= 0:
            raise ValidationError(f"candle {name} must be a finite positive price (got {v!r})",
                                  field=name)
    if c.high < max(c.open, c.close, c.low) or c.low > min(c.open, c.close):
        raise ValidationError(
            f"candle at {c.ts:g} is inconsistent: high {c.high:g} / low {c.low:g} do not "
            f"contain open {c.open:g} and close {c.close:g}", field="high")
    vol = c.volume
    if isinstance(vol, bool) or not isinstance(vol, (int, float)) or not math.isfinite(vol) \
            or vol < 0:
        raise ValidationError(f"candle volume must be a finite number >= 0 (got {vol!r})",
                              field="volume")
    if not isinstance(c.ts, (int, float)) or not math.isfinite(c.ts):
        raise ValidationError(f"candle time must be a finite number (got {c.ts!r})", field="ts")


class IndicatorSet:
    """Incremental indicators over completed candles; `snapshot()` for the rules."""

    def __init__(self, spec: IndicatorSpec | None = None) -> None:
        self.spec = spec or IndicatorSpec()
        self._count = 0
        self._last_ts: float | None = None
        self._last_close: float | None = None
        self._built = False  # the indicators themselves are made with the first candle

    def _build(self) -> None:
        """The indicators of the spec (a set that never sees a candle — a symbol whose
        timeframe has no history yet — needs none: its snapshot is all None)."""
        s = self.spec
        self._ema = EMA(s.ema_period)
        self._atr = ATR(s.atr_period)
        self._hh = RollingExtreme(s.channel_period, highest=True)
        self._ll = RollingExtreme(s.channel_period, highest=False)
        self._rsi = RSI(s.rsi_period)
        self._vol = RollingMean(s.volatility_window)
        self._mom = Change(s.momentum_window)
        self._volume = RollingMean(s.volume_window)
        self._trend = Change(s.momentum_window)
        self._last_change = Change(1)
        self._swing_hi = Swings(s.swing_strength, s.swing_lookback, highest=True)
        self._swing_lo = Swings(s.swing_strength, s.swing_lookback, highest=False)
        self._built = True

    @classmethod
    def from_candles(cls, spec: IndicatorSpec | None, candles: Iterable[Candle]) -> IndicatorSet:
        """A set warmed up on history (oldest first)."""
        s = cls(spec)
        for c in candles:
            s.update(c)
        return s

    @property
    def count(self) -> int:
        """Completed candles seen."""
        return self._count

    @property
    def last_ts(self) -> float | None:
        return self._last_ts

    @property
    def last_close(self) -> float | None:
        return self._last_close

    def update(self, candle: Candle) -> None:
        """Add one completed candle (strictly newer than the last). Bad candle → ValidationError,
        nothing changed."""
        _check_candle(candle)
        if self._last_ts is not None and candle.ts <= self._last_ts:
            raise ValidationError(
                f"candle at {candle.ts:g} is not newer than the last one ({self._last_ts:g})",
                field="ts")
        if not self._built:
            self._build()
        h, low, c = float(candle.high), float(candle.low), float(candle.close)
        # `update` of each indicator in this order; `push` where the value is one the
        # candle check has proven a finite float (the derived ones are still checked)
        e = self._ema
        e.push(c)
        if e._count >= e.period:  # `e.value is not None`
            self._trend.update(e._value)  # type: ignore[arg-type]
        self._atr.update(h, low, c)
        self._hh.push(h)
        self._ll.push(low)
        self._rsi.push(c)
        self._vol.update((h - low) / c)
        self._mom.push(c)
        self._last_change.push(c)
        self._volume.update(float(candle.volume) * c)
        self._swing_hi.push(h)
        self._swing_lo.push(low)
        self._count += 1
        self._last_ts = float(candle.ts)
        self._last_close = c

    def snapshot(self) -> Indicators:
        """Current values; None for anything not warmed up yet. Never NaN or inf."""
        if not self._built:
            return _NOTHING_YET  # what the indicators give before their first value
        # `Indicators(ema9=_finite(self._ema.value), …)`, made through its slots (a frozen
        # dataclass's __init__ sets each field through object.__setattr__)
        return _new_indicators(
            _finite(self._ema.value), _finite(self._atr.value), _finite(self._hh.value),
            _finite(self._ll.value), _finite(self._rsi.value), _finite(self._vol.value),
            _finite(self._mom.value), _finite(self._volume.value),
            _finite(self._trend.value), _finite(self._last_change.value),
            self._swing_hi.value, self._swing_lo.value)


_new_indicators = slot_constructor(Indicators)
_NOTHING_YET = Indicators()
"""The snapshot of a set without candles (immutable: one object serves them all)."""


def _finite(v: float | None) -> float | None:
    if type(v) is float:
        return v if v - v == 0.0 else None  # `math.isfinite(v)`: inf - inf and NaN are NaN
    return v if v is not None and math.isfinite(v) else None
