"""The indicator a position's rules follow, as the chart draws it (DESIGN §7).

Computed here, on the manager thread, from the engine's own candles of the rule's timeframe
(warmed with the venue's history, see `marketdata`), with the rules' own functions — so the
thin line on the chart is the one the stop follows and the GUI computes nothing:
- trailing `chandelier`: highest high (lowest low) ∓ mult·ATR on `trailing.timeframe`, a step
  per completed candle;
- trailing `fixed` / `adaptive`: the trailing level this tick (best price less the distance);
- otherwise, with the add-on enabled: its EMA on `add_on.timeframe`, a step per candle.
`current` rides on each PositionSnapshot; `history` answers GetIndicatorLine. The engine
keeps `prepare`'s part between ticks (it changes with a candle, the Params or the fields
`reads` names) and computes `line_at` on each: a trail's level at the tick's price.
"""

from __future__ import annotations

from dataclasses import dataclass
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
from pmgui.rules.stops import TrailPrep, trailing_line_at, trailing_prep

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


def _prep_level(mode: str, pos: Position, mkt: MarketState, params: Params,
                tf: str) -> TrailPrep:
    """What the line's level reads besides the tick: the EMA's (value, None), a chandelier's
    (level, None), or a fixed/adaptive trail's `stops.trailing_prep`."""
    if mode == "ema":
        return mkt.indicators_for(tf).ema9, None
    return trailing_prep(pos, mkt, params)


def _level(mode: str, pos: Position, mkt: MarketState, params: Params,
           tf: str) -> tuple[float | None, float | None]:
    """The line's (level, distance) on the tick of `mkt` (`trailing_level`'s level and
    distance for a trail)."""
    return trailing_line_at(_prep_level(mode, pos, mkt, params, tf), pos.best_price,
                            mkt.price, mkt.ts)


@dataclass(frozen=True, slots=True)
class LinePrep:
    """The line between two candle closes of a position under one Params object
    (`prepare`): a line that only a candle changes (chandelier, EMA) is `line` itself; a
    fixed/adaptive trail is `level` (`stops.trailing_prep`), its value at a tick's price
    and time and the position's best price (`line_at`). The same values `current` gives on
    that tick, without the market's series and indicators and the Params' tables read
    again for each tick of the position."""

    line: RuleIndicator | None  # a line no tick changes
    level: TrailPrep | None = None  # else: its level (and distance) at the tick
    name: str = ""
    timeframe: str = ""
    step: bool = False
    have: int = 0
    need: int = 0


_NO_LINE = LinePrep(None)


def prepare(market: MarketData, pos: Position, mkt: MarketState, params: Params,
            spec: IndicatorSpec | None = None) -> LinePrep:
    """What `current` computes from all but the tick's price and time and the position's
    best price, for the position (`reads`), the Params and the candles of `mkt` (its
    indicators): `line_at(prepare(…), best_price, price, ts)` is `current` on a tick at that
    price and time while those are the same."""
    try:
        desc = params.memo(describe, describe)  # from the values alone: once per Params
        if desc is None:
            return _NO_LINE
        mode, tf, name, need = desc
        step = mode in ("chandelier", "ema")
        have = 0
        since = None  # the tick's time
        if tf:
            series = market.series(pos.symbol, tf)
            have = series.indicator_set(spec or indicator_spec(params)).count
            if step:
                since = series.window[-1].ts + seconds(tf) if series.window else 0.0
        level = _prep_level(mode, pos, mkt, params, tf)
    except PmguiError:
        return _NO_LINE
    if since is None:
        return LinePrep(None, level, name, tf, step, have, need)
    value = level[0] if valid_price(level[0]) else None
    return LinePrep(_new_line(name, tf, value, since, step, have, need, level[1]))


def reads(pos: Position) -> tuple:
    """The fields of `pos` that `prepare` reads (`stops.trailing_prep`; the best price is
    `line_at`'s): while they, the Params and the candles are the same, so is `prepare`."""
    return pos.side, pos.entry, pos.leverage, pos.fee_rate, pos.opened_at


def line_at(prep: LinePrep, best_price: float | None, price: float, ts: float
            ) -> RuleIndicator | None:
    """The line of `prep` (`prepare`) for a position with best price `best_price` so far,
    on a tick at `price` and `ts`."""
    level = prep.level
    if level is None:
        return prep.line
    value, distance = trailing_line_at(level, best_price, price, ts)
    if not valid_price(value):
        value = None
    return _new_line(prep.name, prep.timeframe, value, ts, prep.step, prep.have, prep.need,
                     distance)


def current(market: MarketData, pos: Position, mkt: MarketState, params: Params,
            spec: IndicatorSpec | None = None) -> RuleIndicator | None:
    """The line's value on this tick (`mkt`: the state the rules were given; `spec`:
    `indicator_spec(params)` when the caller has it)."""
    return line_at(prepare(market, pos, mkt, params, spec), pos.best_price, mkt.price,
                   mkt.ts)


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
