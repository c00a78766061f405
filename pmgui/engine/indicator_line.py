"""The indicator a position's rules follow, as the chart draws it (DESIGN §7).

Computed here, on the manager thread, from the engine's own candles of the rule's timeframe
(warmed with the venue's history, see `marketdata`), with the rules' own functions — so the
thin line on the chart is the one the stop follows and the GUI computes nothing:
- trailing `chandelier`: highest high (lowest low) ∓ mult·ATR on `trailing.timeframe`, a step
  per completed candle;
- trailing `fixed` / `adaptive`: the trailing level this tick (best price less the distance);
- otherwise, with the add-on enabled: its EMA on `add_on.timeframe`, a step per candle.
`current` rides on each PositionSnapshot; `history` answers GetIndicatorLine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pmgui.domain import money
from pmgui.domain.errors import PmguiError
from pmgui.domain.models import Indicators, MarketState, Position
from pmgui.domain.slots import slot_constructor
from pmgui.domain.timeframes import seconds
from pmgui.engine.events import RuleIndicator
from pmgui.indicators import IndicatorSet, IndicatorSpec
from pmgui.rules.common import valid_price
from pmgui.rules.params import Params
from pmgui.rules.policy import indicator_spec
from pmgui.rules.stops import trailing_line

if TYPE_CHECKING:
    from pmgui.engine.marketdata import MarketData


def describe(params: Params) -> tuple[str, str, str, int] | None:
    """(mode, timeframe, name, candles needed) of the line, None without one. `mode` is
    "chandelier" | "adaptive" | "fixed" | "ema"."""
    if params.enabled("trailing"):
        mode = str(params["trailing.mode"])
        tf = str(params["trailing.timeframe"])
        if mode == "chandelier":
            n = params.i("trailing.atr_period")
            return mode, tf, f"Chandelier {n}×{params.f('trailing.atr_mult'):g} · {tf}", n
        if mode == "adaptive":
            return mode, tf, f"Adaptive trail · {tf}", 0
        return "fixed", "", f"Trail {params.f('trailing.distance') * 100:g}%", 0
    if params.enabled("add_on"):
        tf = str(params["add_on.timeframe"])
        n = params.i("add_on.ema_period")
        return "ema", tf, f"EMA {n} · {tf}", n
    return None


def _level(mode: str, pos: Position, mkt: MarketState, params: Params,
           tf: str) -> tuple[float | None, float | None]:
    if mode == "ema":
        return mkt.indicators_for(tf).ema9, None
    return trailing_line(pos, mkt, params)  # `trailing_level`'s level and distance


def current(market: MarketData, pos: Position, mkt: MarketState, params: Params,
            spec: IndicatorSpec | None = None) -> RuleIndicator | None:
    """The line's value on this tick (`mkt`: the state the rules were given; `spec`:
    `indicator_spec(params)` when the caller has it)."""
    try:
        desc = params.memo(describe, describe)  # from the values alone: once per Params
        if desc is None:
            return None
        mode, tf, name, need = desc
        step = mode in ("chandelier", "ema")
        have = 0
        since = mkt.ts
        if tf:
            series = market.series(pos.symbol, tf)
            have = series.indicator_set(spec or indicator_spec(params)).count
            if step:
                since = series.window[-1].ts + seconds(tf) if series.window else 0.0
        level, distance = _level(mode, pos, mkt, params, tf)
    except PmguiError:
        return None
    value = level if valid_price(level) else None
    return _new_line(name, tf, value, since, step, have, need, distance)


_new_line = slot_constructor(RuleIndicator)  # made on every published tick of a position


def history(market: MarketData, pos: Position, params: Params,
            ind: RuleIndicator | None) -> tuple[tuple[float, float], ...]:
    """Past values: for a stepped line one per completed candle of its timeframe (the
    engine's window, the rules' functions); a trail has no past beyond its current value
    (it depends on each tick's best price)."""
    desc = describe(params)
    if desc is None:
        return ()
    mode, tf, _name, _need = desc
    points: list[tuple[float, float]] = []
    if mode in ("chandelier", "ema"):
        spec = indicator_spec(params)
        sec = seconds(tf)
        ind_set = IndicatorSet(spec)
        m = market.market(pos.symbol)
        for c in market.series(pos.symbol, tf).window:
            try:
                ind_set.update(c)
            except PmguiError:
                continue
            t = c.ts + sec
            snap = ind_set.snapshot()
            mkt = MarketState(pos.symbol, c.close, t, m, Indicators(), {tf: snap})
            try:
                level, _d = _level(mode, pos, mkt, params, tf)
            except PmguiError:
                continue
            if money.valid_price(level):
                points.append((t, float(level)))  # type: ignore[arg-type]
    if ind is not None and ind.value is not None:
        if points and points[-1][0] >= ind.since:
            points = [p for p in points if p[0] < ind.since]
        points.append((ind.since, ind.value))
    return tuple(points)
