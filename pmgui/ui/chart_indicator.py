"""The indicator a position's rules follow, as a line over its candles (no Qt).

Computed with the rules' own code (`trailing_level`, `indicator_spec`, `make_ctx`) from the
same completed candles the engine feeds its indicators, so the line is where the trailing
stop would be after each candle:
- trailing `chandelier`: highest high (lowest low) − (+) mult·ATR of the last n candles;
- trailing `fixed` / `adaptive`: the most favourable price since the position opened (or
  since the first candle looked at, entry included), less (plus) the distance the rule would
  use (adaptive: volatility, profit and momentum multipliers, tightening) — from the open on;
- otherwise, with the add-on rule enabled: its EMA (the pullback level).
Nothing when the preset follows no indicator or its parameters are invalid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pmgui.domain.enums import Side
from pmgui.domain.errors import PmguiError
from pmgui.domain.models import Candle, Market, MarketState, Position
from pmgui.indicators.indicator_set import IndicatorSet, IndicatorSpec
from pmgui.rules.common import make_ctx
from pmgui.rules.params import Params, resolve_params
from pmgui.rules.policy import indicator_spec
from pmgui.rules.stops import trailing_level


@dataclass(frozen=True, slots=True)
class IndicatorLine:
    name: str  # "Chandelier 22×3", "Trail 2.0%", "EMA 9"
    xs: tuple[float, ...]
    ys: tuple[float, ...]

    @property
    def last(self) -> float | None:
        return self.ys[-1] if self.ys else None


MAX_CANDLES = 1000  # a fresh computation looks back this far (about 35 ms); then 1 candle each


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
            todo = candles[-self.max_candles:]
            run.first_ts = todo[0].ts if todo else -math.inf
        else:
            todo = [c for c in candles[-self.max_candles:] if c.ts > run.last_ts]
        if todo or self._line is None:
            for c in todo:
                run.add(c)
            self._line = run.line()
        return self._line


@dataclass
class _Run:
    pos: Position
    params: Params
    spec: IndicatorSpec
    ind: IndicatorSet
    market: Market
    interval: float
    mode: str  # "chandelier" | "fixed" | "adaptive" | "" (EMA of the add-on)
    best: float
    xs: list[float]
    ys: list[float]
    last_ts: float | None = None
    first_ts: float = -math.inf

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
        return cls(pos, params, spec, IndicatorSet(spec), mkt, interval, mode, pos.entry, [], [])

    def add(self, c: Candle) -> None:
        try:
            self.ind.update(c)
        except PmguiError:
            return
        self.last_ts = c.ts
        t = c.ts + self.interval
        snap = self.ind.snapshot()
        if not self.mode:
            if snap.ema9 is not None:
                self.xs.append(t)
                self.ys.append(snap.ema9)
            return
        pos = self.pos
        if self.mode != "chandelier":
            if t <= pos.opened_at:
                return
            self.best = (max(self.best, c.high) if pos.side is Side.LONG
                         else min(self.best, c.low))
        state = MarketState(pos.symbol, c.close, t, self.market, snap)
        level, _info = trailing_level(make_ctx(pos.evolve(best_price=self.best), state,
                                               self.params))
        if level is not None and level > 0:
            self.xs.append(t)
            self.ys.append(level)

    def line(self) -> IndicatorLine | None:
        if not self.xs:
            return None
        p = self.params
        if not self.mode:
            name = f"EMA {self.spec.ema_period}"
        elif self.mode == "chandelier":
            name = f"Chandelier {p.i('trailing.atr_period')}×{p.f('trailing.atr_mult'):g}"
        elif self.mode == "adaptive":
            name = "Adaptive trail"
        else:
            name = f"Trail {p.f('trailing.distance') * 100:g}%"
        return IndicatorLine(name, tuple(self.xs), tuple(self.ys))
