"""Incremental indicators: each update is O(1) (amortised) and never replays history.

Why incremental: the engine feeds every completed candle of every watched symbol; recomputing
a 22-period ATR over the whole history on each candle would grow without bound in a long
session. Every class keeps only the state its formula needs.

Conventions (DESIGN §4, matching the `ta` library so values can be cross-checked):
- EMA: `ewm(span=n, adjust=False)`: alpha = 2/(n+1), seeded with the first value; reported
  once n values have been seen (ta's `min_periods=n`).
- ATR: true range TR = max(high-low, |high-prev close|, |low-prev close|), the first TR being
  high-low; Wilder smoothing ATR = (ATR·(n-1) + TR)/n seeded with the mean of the first n TRs
  (reported from the n-th candle on), as `ta.volatility.AverageTrueRange`.
- RSI: Wilder smoothing (alpha 1/n) of gains and losses, exactly as `ta.momentum.RSIIndicator`:
  both averages start at 0 on the first close (which has no change), RSI = 100 when the
  average loss is 0, reported once n closes have been seen.
- Rolling highest high / lowest low over the last n candles (including the newest).
- Volatility: mean over the window of the candle range (high-low)/close — the "intraday
  volatility" of seed 004 when candles are daily, the per-candle range otherwise.
- Momentum: close / close n candles ago - 1.
- Swings (support/resistance): a swing high is a candle whose high is strictly above the
  highs of the `strength` candles before and after it (confirmed `strength` candles later);
  a swing low likewise with lows. The swings of the last `lookback` candles are kept.
"""

from __future__ import annotations

import math
from collections import deque

from pmgui.domain.errors import ValidationError


def _check_period(period: object, what: str) -> int:
    if isinstance(period, bool) or not isinstance(period, int) or period < 1:
        raise ValidationError(f"{what} period must be a whole number >= 1 (got {period!r})",
                              field=what)
    return period


def _check_value(x: float, what: str) -> float:
    if type(x) is float and x - x == 0.0:  # the usual finite float: as it is
        return x
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise ValidationError(f"{what} must be a finite number (got {x!r})", field=what)
    return float(x)


class EMA:
    """Exponential moving average, `ewm(span=n, adjust=False)`."""

    __slots__ = ("_alpha", "_count", "_value", "period")

    def __init__(self, period: int) -> None:
        self.period = _check_period(period, "EMA")
        self._alpha = 2.0 / (period + 1.0)
        self._value: float | None = None
        self._count = 0

    def update(self, x: float) -> float | None:
        self.push(_check_value(x, "EMA input"))
        return self.value

    def push(self, x: float) -> None:
        """`update` of a value known to be a finite float (`IndicatorSet` checked it)."""
        if self._value is None:
            self._value = x
        else:
            self._value += self._alpha * (x - self._value)
        self._count += 1

    @property
    def value(self) -> float | None:
        return self._value if self._count >= self.period else None

    @property
    def raw(self) -> float | None:
        """The running average even before warm-up (for charts that want a line at once)."""
        return self._value


class ATR:
    """Average true range, Wilder-smoothed and seeded with the mean of the first n TRs."""

    __slots__ = ("_count", "_prev_close", "_sum", "_value", "period")

    def __init__(self, period: int) -> None:
        self.period = _check_period(period, "ATR")
        self._prev_close: float | None = None
        self._sum = 0.0
        self._count = 0
        self._value: float | None = None

    @staticmethod
    def true_range(high: float, low: float, prev_close: float | None) -> float:
        if prev_close is None:
            return high - low
        return max(high - low, abs(high - prev_close), abs(low - prev_close))

    def update(self, high: float, low: float, close: float) -> float | None:
        tr = self.true_range(high, low, self._prev_close)
        self._prev_close = close
        self._count += 1
        n = self.period
        if self._value is None:
            self._sum += tr
            if self._count == n:
                self._value = self._sum / n
        else:
            self._value = (self._value * (n - 1) + tr) / n
        return self._value

    @property
    def value(self) -> float | None:
        return self._value


class RSI:
    """Relative strength index with Wilder smoothing (alpha 1/n), as ta's RSIIndicator."""

    __slots__ = ("_alpha", "_count", "_down", "_prev", "_up", "period")

    def __init__(self, period: int) -> None:
        self.period = _check_period(period, "RSI")
        self._alpha = 1.0 / period
        self._prev: float | None = None
        self._up = 0.0
        self._down = 0.0
        self._count = 0

    def update(self, close: float) -> float | None:
        self.push(_check_value(close, "RSI input"))
        return self.value

    def push(self, close: float) -> None:
        """`update` of a value known to be a finite float (`IndicatorSet` checked it)."""
        if self._prev is not None:
            diff = close - self._prev
            a = self._alpha
            self._up += a * (max(diff, 0.0) - self._up)
            self._down += a * (max(-diff, 0.0) - self._down)
        self._prev = close
        self._count += 1

    @property
    def value(self) -> float | None:
        if self._count < self.period:
            return None
        if self._down == 0.0:
            return 100.0
        return 100.0 - 100.0 / (1.0 + self._up / self._down)


class RollingExtreme:
    """Highest (or lowest) of the last n values: a monotonic deque, amortised O(1)."""

    __slots__ = ("_highest", "_i", "_q", "period")

    def __init__(self, period: int, highest: bool = True) -> None:
        self.period = _check_period(period, "channel")
        self._highest = highest
        self._q: deque[tuple[int, float]] = deque()
        self._i = 0

    def update(self, x: float) -> float | None:
        self.push(_check_value(x, "channel input"))
        return self.value

    def push(self, x: float) -> None:
        """`update` of a value known to be a finite float (`IndicatorSet` checked it)."""
        q = self._q
        if self._highest:
            while q and q[-1][1] <= x:
                q.pop()
        else:
            while q and q[-1][1] >= x:
                q.pop()
        q.append((self._i, x))
        while q[0][0] <= self._i - self.period:
            q.popleft()
        self._i += 1

    @property
    def value(self) -> float | None:
        return self._q[0][1] if self._i >= self.period else None


class RollingMean:
    """Mean of the last n values with a running sum (re-summed now and then against drift)."""

    __slots__ = ("_buf", "_since_resum", "_sum", "period")

    def __init__(self, period: int) -> None:
        self.period = _check_period(period, "window")
        self._buf: deque[float] = deque(maxlen=period)
        self._sum = 0.0
        self._since_resum = 0

    def update(self, x: float) -> float | None:
        x = _check_value(x, "window input")
        if len(self._buf) == self.period:
            self._sum -= self._buf[0]
        self._buf.append(x)
        self._sum += x
        self._since_resum += 1
        if self._since_resum >= 64 * self.period:  # bound floating-point drift
            self._sum = math.fsum(self._buf)
            self._since_resum = 0
        return self.value

    @property
    def value(self) -> float | None:
        if len(self._buf) < self.period:
            return None
        return self._sum / self.period


class Change:
    """x / x[n updates ago] - 1 (momentum, trend); None until n+1 values or on a zero base."""

    __slots__ = ("_buf", "period")

    def __init__(self, period: int) -> None:
        self.period = _check_period(period, "momentum")
        self._buf: deque[float] = deque(maxlen=period + 1)

    def update(self, x: float) -> float | None:
        self._buf.append(_check_value(x, "momentum input"))
        return self.value

    def push(self, x: float) -> None:
        """`update` of a value known to be a finite float (`IndicatorSet` checked it)."""
        self._buf.append(x)

    @property
    def value(self) -> float | None:
        if len(self._buf) <= self.period or self._buf[0] == 0:
            return None
        v = self._buf[-1] / self._buf[0] - 1.0
        return v if math.isfinite(v) else None


class Swings:
    """Confirmed swing highs or lows of the last `lookback` candles (support/resistance)."""

    __slots__ = ("_found", "_highest", "_i", "_value", "_win", "lookback", "strength")

    def __init__(self, strength: int, lookback: int, highest: bool = True) -> None:
        self.strength = _check_period(strength, "swing strength")
        self.lookback = _check_period(lookback, "swing lookback")
        self._highest = highest
        self._win: deque[float] = deque(maxlen=2 * strength + 1)
        self._found: deque[tuple[int, float]] = deque()
        self._i = 0
        self._value: tuple[float, ...] = ()  # the swings' levels, oldest first

    def update(self, x: float) -> tuple[float, ...]:
        self.push(_check_value(x, "swing input"))
        return self._value

    def push(self, x: float) -> None:
        """`update` of a value known to be a finite float (`IndicatorSet` checked it)."""
        found = self._found
        changed = False
        self._win.append(x)
        self._i += 1
        k = self.strength
        win = self._win
        if len(win) == 2 * k + 1:
            mid = win[k]
            # strictly above (below) every other value of the window: the extreme, and no
            # other value equal to it (the window holds finite floats: no NaN)
            if (mid == max(win) if self._highest else mid == min(win)) and win.count(mid) == 1:
                found.append((self._i - 1 - k, mid))
                changed = True
        while found and found[0][0] < self._i - self.lookback:
            found.popleft()
            changed = True
        if changed:  # the value is kept between changes (a snapshot per candle reads it)
            self._value = tuple(v for _, v in found)

    @property
    def value(self) -> tuple[float, ...]:
        return self._value
