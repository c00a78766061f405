"""The indicator a position's rules follow, as a line over its candles (no Qt).

Computed with the rules' own code (`trailing_level`, `indicator_spec`, `make_ctx`) from the
same completed candles the engine feeds its indicators, so the line is where the trailing
stop would be after each candle:
- trailing `chandelier`: highest high (lowest low) − (+) mult·ATR of the last n candles;
- trailing `fixed` / `adaptive`: the most favourable price since the position opened,
  less (plus) the distance the rule would use (adaptive: volatility, profit and momentum
  multipliers, tightening) — drawn from the open on;
- otherwise, with the add-on rule enabled: its EMA (the pullback level).
Nothing when the preset follows no indicator or its parameters are invalid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pmgui.domain.enums import Side
from pmgui.domain.errors import PmguiError
from pmgui.domain.models import Candle, Market, MarketState, Position
from pmgui.indicators.indicator_set import IndicatorSet
from pmgui.rules.common import make_ctx
from pmgui.rules.params import resolve_params
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


def rule_indicator(pos: Position, candles: Sequence[Candle], market: Market | None,
                   interval: float = 60.0) -> IndicatorLine | None:
    """The line for `pos` over `candles` (completed ones; a forming last candle is left out
    by the caller). Each value is placed at the close of the candle that produced it."""
    try:
        params = resolve_params(pos.preset, dict(pos.overrides))
    except PmguiError:
        return None
    spec = indicator_spec(params)
    ind = IndicatorSet(spec)
    xs: list[float] = []
    ys: list[float] = []
    trailing = params.enabled("trailing")
    mode = str(params["trailing.mode"]) if trailing else ""
    if not trailing and not params.enabled("add_on"):
        return None
    best = pos.entry
    mkt = market or Market(pos.symbol, tick_size=0.0, amount_step=0.0, min_amount=0.0)
    for c in candles:
        try:
            ind.update(c)
        except PmguiError:
            continue
        t = c.ts + interval
        snap = ind.snapshot()
        if not trailing:
            if snap.ema9 is not None:
                xs.append(t)
                ys.append(snap.ema9)
            continue
        if mode != "chandelier":
            if t <= pos.opened_at:
                continue
            best = max(best, c.high) if pos.side is Side.LONG else min(best, c.low)
        state = MarketState(pos.symbol, c.close, t, mkt, snap)
        level, _info = trailing_level(make_ctx(pos.evolve(best_price=best), state, params))
        if level is not None and level > 0:
            xs.append(t)
            ys.append(level)
    if not xs:
        return None
    if not trailing:
        name = f"EMA {spec.ema_period}"
    elif mode == "chandelier":
        name = f"Chandelier {params.i('trailing.atr_period')}×{params.f('trailing.atr_mult'):g}"
    elif mode == "adaptive":
        name = "Adaptive trail"
    else:
        name = f"Trail {params.f('trailing.distance') * 100:g}%"
    return IndicatorLine(name, tuple(xs), tuple(ys))
