"""The indicator a position's rules follow, as a line over its candles (no Qt).

Computed with the rules' own code (`trailing_level`, `indicator_spec`, `indicator_frames`,
`make_ctx`) on completed candles of each rule's own timeframe (`trailing.timeframe`,
`add_on.timeframe`, … — built here from the chart's base candles, a bucket counting once the
next one has begun), so the line is where the rule's level was:
- trailing `chandelier`: highest high (lowest low) − (+) mult·ATR of the last n candles of
  the trailing timeframe — a step line that changes when such a candle completes;
- trailing `fixed` / `adaptive`: the most favourable price since the position opened (or
  since the first candle looked at, entry included), less (plus) the distance the rule would
  use (adaptive: volatility, profit and momentum multipliers, tightening) — from the open on;
- otherwise, with the add-on rule enabled: its EMA (the pullback level), a step line.
Until the rule's timeframe has enough completed candles there is no line, only a `note`
(`Chandelier 22×3 on 4h candles: 3 of 22 so far`). Nothing when the preset follows no
indicator or its parameters are invalid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from pmgui.domain.enums import Side
from pmgui.domain.errors import PmguiError
from pmgui.domain.models import Candle, Indicators, Market, MarketState, Position
from pmgui.domain.timeframes import TIMEFRAMES
from pmgui.indicators.indicator_set import IndicatorSet, IndicatorSpec
from pmgui.rules.common import make_ctx
from pmgui.rules.params import Params, resolve_params
from pmgui.rules.policy import indicator_frames, indicator_spec
from pmgui.rules.stops import trailing_level


@dataclass(frozen=True, slots=True)
class IndicatorLine:
    name: str  # "Chandelier 22×3 · 4h", "Trail 2%", "EMA 9 · 1h"
    xs: tuple[float, ...]
    ys: tuple[float, ...]
    step: bool = False  # changes only when a candle of the rule's timeframe completes
    note: str = ""  # why there is no line yet

    @property
    def last(self) -> float | None:
        return self.ys[-1] if self.ys else None


MAX_CANDLES = 500  # levels evaluated per base candle on a fresh look back
MAX_FEED = 20_000  # base candles fed to the timeframes' indicators on a fresh look back


def rule_indicator(pos: Position, candles: Sequence[Candle], market: Market | None,
                   interval: float = 60.0) -> IndicatorLine | None:
    """The line for `pos` over `candles` (completed ones; a forming last candle is left out
    by the caller). Each value is placed at the close of the candle that produced it."""
    return IndicatorTracker().update(pos, candles, market, interval)


class IndicatorTracker:
    """`rule_indicator` kept up to date one candle at a time (the chart's GUI thread must not
    recompute thousands of candles on each new one). Starts over when the position's rules,
    its market or the candles' past change."""

    def __init__(self, max_candles: int = MAX_CANDLES) -> None:
        self.max_candles = max_candles
        self._key: tuple | None = None
        self._line: IndicatorLine | None = None
        self._state: _Run | None = None

    def update(self, pos: Position, candles: Sequence[Candle], market: Market | None,
               interval: float = 60.0) -> IndicatorLine | None:
        key = (pos.id, pos.preset, tuple(sorted(pos.overrides.items())), pos.side, pos.entry,
               pos.qty, pos.opened_at, market, interval)
        if key == self._key and self._state is None:
            return None  # these rules follow no indicator
        run = self._state
        first = candles[0].ts if candles else None
        if (key != self._key or run is None or run.last_ts is None
                or first is None or first > run.first_ts):
            self._key = key
            run = self._state = _Run.start(pos, market, interval)
            if run is None:
                self._line = None
                return None
            todo = candles[-MAX_FEED:]
            run.first_ts = todo[0].ts if todo else -math.inf
            run.eval_from = todo[-self.max_candles].ts if len(todo) >= self.max_candles \
                else -math.inf
        else:
            todo = [c for c in candles[-self.max_candles:] if c.ts > run.last_ts]
        if todo or self._line is None:
            for c in todo:
                run.add(c)
            self._line = run.line()
        return self._line


class _Frame:
    """Completed candles of one timeframe, built from the base candles."""

    __slots__ = ("bucket", "ind", "seconds")

    def __init__(self, seconds: float, ind: IndicatorSet) -> None:
        self.seconds = seconds
        self.ind = ind
        self.bucket: list[float] | None = None  # ts, open, high, low, close, volume

    def add(self, c: Candle, interval: float) -> bool:
        """Feed a base candle; True when a candle of this timeframe completed."""
        if self.seconds <= interval + 1e-9:
            return _feed(self.ind, c)
        start = c.ts - (c.ts % self.seconds)
        b = self.bucket
        if b is not None and start == b[0]:
            if c.high > b[2]:
                b[2] = c.high
            if c.low < b[3]:
                b[3] = c.low
            b[4] = c.close
            b[5] += c.volume
            return False
        self.bucket = [start, c.open, c.high, c.low, c.close, c.volume]
        return b is not None and _feed(self.ind, Candle(*b))


def _feed(ind: IndicatorSet, c: Candle) -> bool:
    try:
        ind.update(c)
    except PmguiError:
        return False
    return True


@dataclass
class _Run:
    pos: Position
    params: Params
    spec: IndicatorSpec
    market: Market
    interval: float
    mode: str  # "chandelier" | "fixed" | "adaptive" | "" (EMA of the add-on)
    line_tf: str  # the timeframe the drawn indicator is read on
    frames: dict[str, _Frame]
    best: float
    xs: list[float] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)
    steps: list[tuple[float, float]] = field(default_factory=list)  # (from, level)
    end: float = -math.inf
    last_ts: float | None = None
    first_ts: float = -math.inf
    eval_from: float = -math.inf

    @classmethod
    def start(cls, pos: Position, market: Market | None, interval: float) -> _Run | None:
        try:
            params = resolve_params(pos.preset, dict(pos.overrides))
        except PmguiError:
            return None
        trailing = params.enabled("trailing")
        if not trailing and not params.enabled("add_on"):
            return None
        spec = indicator_spec(params)
        mkt = market or Market(pos.symbol, tick_size=0.0, amount_step=0.0, min_amount=0.0)
        mode = str(params["trailing.mode"]) if trailing else ""
        line_tf = str(params["trailing.timeframe" if trailing else "add_on.timeframe"])
        names = set(indicator_frames(params)) | {line_tf}
        frames = {tf: _Frame(float(TIMEFRAMES[tf]), IndicatorSet(spec))
                  for tf in names if tf in TIMEFRAMES}
        if line_tf not in frames:
            return None
        return cls(pos, params, spec, mkt, interval, mode, line_tf, frames, pos.entry)

    @property
    def stepped(self) -> bool:
        return self.mode in ("", "chandelier")

    def add(self, c: Candle) -> None:
        if self.last_ts is not None and c.ts <= self.last_ts:
            return
        self.last_ts = c.ts
        completed = False
        for tf, fr in self.frames.items():
            done = fr.add(c, self.interval)
            completed = completed or (done and tf == self.line_tf)
        t = c.ts + self.interval
        if self.stepped:  # the level changes only when a candle of its timeframe completes
            self.end = t
            if completed:
                level = self._level(c.close, t)
                if level is not None and level > 0:
                    self.steps.append((t, level))
            return
        pos = self.pos
        if t <= pos.opened_at:
            return
        self.best = max(self.best, c.high) if pos.side is Side.LONG else min(self.best, c.low)
        if c.ts < self.eval_from:
            return
        level = self._level(c.close, t)
        if level is not None and level > 0:
            self.xs.append(t)
            self.ys.append(level)

    def _level(self, price: float, t: float) -> float | None:
        frames = {tf: fr.ind.snapshot() for tf, fr in self.frames.items()}
        if not self.mode:
            return frames[self.line_tf].ema9
        state = MarketState(self.pos.symbol, price, t, self.market, Indicators(), frames)
        level, _info = trailing_level(make_ctx(self.pos.evolve(best_price=self.best), state,
                                               self.params))
        return level

    def line(self) -> IndicatorLine | None:
        p = self.params
        tf = f" · {self.line_tf}"
        if not self.mode:
            name, need = f"EMA {self.spec.ema_period}{tf}", self.spec.ema_period
        elif self.mode == "chandelier":
            name = f"Chandelier {p.i('trailing.atr_period')}×{p.f('trailing.atr_mult'):g}{tf}"
            need = p.i("trailing.atr_period")
        elif self.mode == "adaptive":
            name, need = f"Adaptive trail{tf}", 0
        else:
            name, need = f"Trail {p.f('trailing.distance') * 100:g}%", 0
        xs, ys = self._points()
        if not xs:
            have = self.frames[self.line_tf].ind.count
            note = (f"{name.replace(' · ', ' on ')} candles: {have} of {need} so far"
                    if need else "")
            return IndicatorLine(name, (), (), self.stepped, note) if note else None
        return IndicatorLine(name, xs, ys, self.stepped)

    def _points(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        if not self.stepped:
            return tuple(self.xs), tuple(self.ys)
        xs: list[float] = []
        ys: list[float] = []
        for i, (t, level) in enumerate(self.steps):
            nxt = self.steps[i + 1][0] if i + 1 < len(self.steps) else max(self.end, t)
            xs += [t, nxt]
            ys += [level, level]
        return tuple(xs), tuple(ys)
