"""Stop adjustments (priority 7): trailing (fixed, adaptive, chandelier) with volatility/time
tightening, the breakeven move after TP1, and breakeven+.

Why every stop goes through `stop_improves`: a stop only ever ratchets — strictly up for a
long, down for a short — and never to a level within one tick of the price or beyond it (it
would trigger at once; the exchange would reject it). So a stop can never loosen by itself.

Trailing levels:
- fixed: long best·(1 - d), short best·(1 + d), best = most favourable price since open
  (the entry until the price improves), d = `trailing.distance`, as freqtrade's trailing stop.
- adaptive (seed 000, DESIGN §4): d = distance × volatility mult (high ≥ trailing.high_volatility
  → ×1.3 wider, low ≤ trailing.low_volatility → ×0.7) × profit mult (roi > .10 → ×0.5,
  > .05 → ×0.7, > .03 → ×0.85) × momentum mult (favourable momentum ≥ strong → ×1.2,
  ≤ weak → ×0.8), clamped to [trailing.min, trailing.max]. A missing indicator counts as 1.
- chandelier (seed 001): long HH(n) - mult·ATR(n), short LL(n) + mult·ATR(n), n =
  `trailing.atr_period`, from completed candles; nothing until the indicators are warm.
- tightening (seed 004), for fixed and adaptive: volatility > tightening.high_volatility →
  d - 0.005; age beyond tightening.start_hours while profitable (roi > 0) → d - 0.002 per
  hour beyond (continuous); never below tightening.min_distance (or d itself if d is already
  smaller).
- `trailing.after_breakeven` (breakout) gates trailing until the stop is at breakeven: the
  `breakeven_set` flag, or TP1 done with the current SL already at or beyond the breakeven
  level.
Levels are exact (not rounded: the engine rounds the exchange order); a trailing move is
sent on any strict improvement, or only beyond `trailing.min_step` × price when set.

Indicators come from each rule's own timeframe: the adaptive volatility/momentum and the
chandelier ATR/channel from `trailing.timeframe`, the tightening volatility from
`tightening.timeframe` (`Ctx.frame`).

Stops that are due act at once (DESIGN §4): when a rule's new level is tighter than the
current SL but the price has already crossed it (a gap after TP1, a chandelier level that
jumped above the price on a new candle), the position closes at market with that stop's
reason — `trailing_stop` for trailing, `breakeven_stop` for breakeven and breakeven+ —
instead of the move being refused and the old, looser stop kept. A level merely within one
tick of the price (not crossed) is still refused.

Breakeven+ (seed 004, DESIGN §4): at roi >= `breakeven_plus.min_roi` the stop goes to the
price where the ROI, fees included, is `breakeven_plus.buffer` (+2%), if that is tighter.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from pmgui.domain import money
from pmgui.domain.enums import ActionType, Priority, Reason, Side, StopKind
from pmgui.domain.models import Action, MarketState, Position
from pmgui.rules.common import (
    _NO_FLAGS,
    FLAG_BREAKEVEN,
    FLAG_TP1,
    THRESHOLD_EPS,
    Ctx,
    _new_action,
    _timeframes,
    action,
    clean,
    close_all,
    ge,
    gt,
    le,
    lt,
    make_ctx,
    stop_due,
    stop_improves,
    valid_price,
)
from pmgui.rules.params import Params

_LONG = Side.LONG  # a module constant: an enum member lookup costs ~0.1 µs
_INF = math.inf
_MOVE_SL, _TRAILING_REASON, _STOP_ADJUST, _TRAILING_KIND = (
    ActionType.MOVE_SL, Reason.TRAILING, Priority.STOP_ADJUST, StopKind.TRAILING)
_STOP_ADJUST_INT = int(Priority.STOP_ADJUST)
_DUE_REASON = {StopKind.TRAILING: Reason.TRAILING_STOP, StopKind.BREAKEVEN: Reason.BREAKEVEN_STOP}


def move_or_close(ctx: Ctx, level: float, reason: Reason, rule: str, kind: StopKind,
                  inputs: Mapping[str, object], flags: Iterable[str] = (),
                  min_step: float = 0.0) -> list[Action]:
    """MOVE_SL to `level` when it tightens the stop on the safe side of the price; a market
    CLOSE with the stop's reason when the price has already crossed it; else nothing."""
    if stop_improves(ctx, level, min_step):
        return [action(ctx, ActionType.MOVE_SL, reason, rule, Priority.STOP_ADJUST, sl=level,
                       inputs=inputs, stop_kind=kind, flags=flags)]
    if stop_due(ctx, level):
        return [close_all(ctx, _DUE_REASON[kind], rule, Priority.STOP_LOSS,
                          {**inputs, "due": True, "sl": ctx.pos.sl, "level": level}, flags)]
    return []


def breakeven_level(ctx: Ctx) -> float:
    """Seed 001: entry·(1 + dir·offset) — breakeven plus the fees of the round trip."""
    return ctx.pos.entry * (1 + ctx.dir * ctx.params.f("r_targets.breakeven_offset"))


def breakeven_reached(ctx: Ctx) -> bool:
    flags = ctx.pos.flags
    if FLAG_BREAKEVEN in flags:
        return True
    sl = ctx.pos.sl
    if sl is None:
        return False
    level = breakeven_level(ctx)
    at_or_beyond = sl >= level - 1e-12 if ctx.side is _LONG else sl <= level + 1e-12
    return at_or_beyond and (FLAG_TP1 in flags or ctx.pos.sl_kind is StopKind.BREAKEVEN)


def trailing_level(ctx: Ctx) -> tuple[float | None, dict[str, object]]:
    """The trailing stop this tick (before ratcheting) and the inputs that produced it
    (the arithmetic of `trailing_stop_levels`, step by step, with each input recorded)."""
    c = trailing_config(ctx.params)
    mode = c.mode
    if mode == "chandelier":
        info: dict[str, object] = {"mode": mode, "timeframe": c.timeframe}
        ind = ctx.frame("trailing")
        mult = c.atr_mult
        info.update({"atr": ind.atr, "atr_mult": mult, "atr_period": c.atr_period,
                     "highest_high": ind.highest_high, "lowest_low": ind.lowest_low})
        if ind.atr is None:
            return None, info
        if ctx.side is _LONG:
            if ind.highest_high is None:
                return None, info
            return ind.highest_high - mult * ind.atr, info
        if ind.lowest_low is None:
            return None, info
        return ind.lowest_low + mult * ind.atr, info
    parts = _indicator_parts(ctx.params, ctx.mkt, c, ctx.dir)
    terms = _distance_terms(ctx, c, parts)
    return ctx.best * (1 - ctx.dir * terms[0]), _info_of(ctx, c, parts, terms)


_Terms = tuple[float, float, float, float, float | None]


def _distance_terms(ctx: Ctx, c: _TrailCfg, parts: _Parts) -> _Terms:
    """The fixed/adaptive distance at the tick's ROI and the terms that made it: (distance,
    profit multiplier, raw distance, tightening floor, hours beyond tightening's start or
    None). The arithmetic of `trailing_stop_levels`."""
    return _terms_at(c, parts, ctx.roi, ctx.age)


def _terms_at(c: _TrailCfg, parts: _Parts, roi: float, age: float) -> _Terms:
    """`_distance_terms` at ROI `roi` and age `age` (seconds)."""
    profit_mult = 1.0
    if c.mode == "adaptive":
        for above, mult in c.profit_above:  # `gt(roi, threshold)`, the tolerance added
            if roi > above:
                profit_mult = mult
                break
    beyond = None
    if c.tightening:
        hours = age / 3600.0
        if gt(hours, c.t_start_hours) and gt(roi, 0.0):
            beyond = hours - c.t_start_hours
    return _terms_of(c, parts, profit_mult, beyond)


def _terms_of(c: _TrailCfg, parts: _Parts, profit_mult: float,
              beyond: float | None) -> _Terms:
    """The distance's terms for a profit multiplier (adaptive; fixed: ignored) and the hours
    beyond tightening's start (None: not aged, or not profitable). The arithmetic of
    `trailing_stop_levels`; the fast path's table is made of it for each profit region of
    a position not yet aged (`_trail_table`)."""
    raw = floor = 0.0
    if c.mode == "adaptive":
        raw = c.distance * parts[1] * profit_mult * parts[3]
        d = min(max(raw, c.min), c.max)
    else:
        profit_mult = 0.0
        d = c.distance
    if c.tightening:
        d, floor = _tightened(c, d, parts[5], beyond)
    return d, profit_mult, raw, floor, beyond


def _tightened(c: _TrailCfg, d: float, high_vol: bool,
               beyond: float | None) -> tuple[float, float]:
    """(distance, floor) of tightening (`c.tightening`) applied to the distance `d`: the
    volatility step when `high_vol`, the hours `beyond` its start (None: none), never
    below the floor."""
    floor = min(c.t_min_distance, d)
    out = d
    if high_vol:
        out -= c.t_volatility_step
    if beyond is not None:
        out -= c.t_per_hour * beyond
    return max(out, floor), floor


def trailing_line(pos: Position, mkt: MarketState, params: Params
                  ) -> tuple[float | None, float | None]:
    """(level, distance) of `trailing_level(make_ctx(pos, mkt, params))` — its level and
    its "distance" input (None for chandelier) — without the context or the inputs: the
    chart's line asks for it on every tick of the position."""
    return trailing_line_at(trailing_prep(pos, mkt, params), pos.best_price, mkt.price,
                            mkt.ts)


# `trailing_prep`'s answer: a chandelier's (level, None), which no tick changes; else what a
# fixed/adaptive level reads besides the tick and the best price (config, indicator parts,
# direction, entry and whether it is a price, leverage (None: not finite), fee rate, open
# time)
TrailPrep = tuple


def trailing_prep(pos: Position, mkt: MarketState, params: Params) -> TrailPrep:
    """What `trailing_line` reads from the position (its side, entry, leverage, fee rate and
    open time; not its best price), the Params and the indicators of `mkt` (not its price
    or time): while they are the same, `trailing_line_at(prep, best_price, price, ts)` is
    `trailing_line` for a position with that best price at that price and time. The
    chart's line keeps it between ticks (`EngineCore._rule_line`)."""
    c = trailing_config(params)
    if c.mode == "chandelier":  # the indicators and the side only
        return trailing_level(make_ctx(pos, mkt, params))[0], None
    d = 1 if pos.side is _LONG else -1
    entry = pos.entry
    lev: float | None = pos.leverage
    if math.isfinite(lev):  # type: ignore[arg-type]
        lev = max(lev, 0.0)  # type: ignore[type-var]
    else:
        lev = None
    return (c, _indicator_parts(params, mkt, c, d), d, entry, valid_price(entry), lev,
            pos.fee_rate, pos.opened_at)


def trailing_line_at(prep: TrailPrep, best_price: float | None, price: float, ts: float
                     ) -> tuple[float | None, float | None]:
    """`trailing_line` from its `trailing_prep`, for a position whose best price so far is
    `best_price`, at `price` and `ts` (make_ctx's ROI, age and best price: the same
    arithmetic)."""
    if len(prep) == 2:
        return prep  # type: ignore[return-value]
    c, parts, d, entry, entry_ok, lev, fee_rate, opened_at = prep
    price = float(price)
    r = 0.0
    if entry_ok and lev is not None and valid_price(price):
        r = lev * (d * (price - entry) - fee_rate * (entry + price)) / entry
        if not math.isfinite(r):
            r = 0.0
    age = 0.0
    if c.tightening:
        age = ts - opened_at
        if not math.isfinite(age) or age < 0.0:
            age = 0.0
    prev = best_price if valid_price(best_price) else entry
    best = max(prev, price) if d > 0 else min(prev, price)
    dist = _terms_at(c, parts, r, age)[0]
    return best * (1 - d * dist), dist


def _info_of(ctx: Ctx, c: _TrailCfg, parts: _Parts, terms: _Terms) -> dict[str, object]:
    """The inputs of a fixed/adaptive trailing level (`trailing_level`'s record)."""
    info = _record_head(c, parts, terms)
    info["distance"] = terms[0]
    info["best_price"] = ctx.best
    return info


def _record_head(c: _TrailCfg, parts: _Parts, terms: _Terms) -> dict[str, object]:
    """The start of a fixed/adaptive trailing level's record: what comes from the Params,
    the indicators and the distance's terms (`_info_of` adds the distance and the best
    price; `_inputs_prefix` keeps it cleaned)."""
    vol, vol_mult, mom, mom_mult, tvol, tight_vol = parts
    _, profit_mult, raw, floor, beyond = terms
    info: dict[str, object]
    if c.mode == "adaptive":
        info = {"mode": "adaptive", "timeframe": c.timeframe, "base_distance": c.distance,
                "volatility": vol, "volatility_mult": vol_mult, "profit_mult": profit_mult,
                "momentum": mom, "momentum_mult": mom_mult, "raw_distance": raw,
                "min_distance": c.min, "max_distance": c.max}
    else:
        info = {"mode": c.mode}
    if c.tightening:
        if tight_vol:
            info["tightening_volatility"] = tvol
            info["tightening_volatility_threshold"] = c.t_high_volatility
        if beyond is not None:
            info["tightening_hours_beyond"] = beyond
        info["tightening_floor"] = floor
    return info


@dataclass(frozen=True, slots=True)
class _TrailCfg:
    """The trailing and tightening parameters as floats, read once per Params."""

    mode: str
    timeframe: str
    atr_period: int
    after_breakeven: bool
    min_step: float
    distance: float
    high_volatility: float
    low_volatility: float
    high_vol_mult: float
    low_vol_mult: float
    profit: tuple[tuple[float, float], ...]
    profit_above: tuple[tuple[float, float], ...]  # (threshold + THRESHOLD_EPS, multiplier)
    strong_momentum: float
    weak_momentum: float
    strong_mult: float
    weak_mult: float
    min: float
    max: float
    atr_mult: float
    tightening: bool
    t_min_distance: float
    t_high_volatility: float
    t_volatility_step: float
    t_start_hours: float
    t_per_hour: float


def _trail_cfg(p: Params) -> _TrailCfg:
    f = p.f
    profit = tuple((f(f"trailing.profit_roi_{i}"), f(f"trailing.profit_mult_{i}"))
                   for i in (1, 2, 3))
    return _TrailCfg(
        str(p["trailing.mode"]), str(p["trailing.timeframe"]), p.i("trailing.atr_period"),
        bool(p["trailing.after_breakeven"]), f("trailing.min_step"),
        f("trailing.distance"), f("trailing.high_volatility"), f("trailing.low_volatility"),
        f("trailing.high_vol_mult"), f("trailing.low_vol_mult"),
        profit, tuple((threshold + THRESHOLD_EPS, mult) for threshold, mult in profit),
        f("trailing.strong_momentum"), f("trailing.weak_momentum"), f("trailing.strong_mult"),
        f("trailing.weak_mult"), f("trailing.min"), f("trailing.max"), f("trailing.atr_mult"),
        p.enabled("tightening"), f("tightening.min_distance"), f("tightening.high_volatility"),
        f("tightening.volatility_step"), f("tightening.start_hours"), f("tightening.per_hour"))


def trailing_config(p: Params) -> _TrailCfg:
    return p.memo(_trail_cfg, _trail_cfg)


_Parts = tuple[float | None, float, float | None, float, float | None, bool]
_CACHE_SIZE = 4096
"""Entries of each per-Params cache keyed by indicator objects (cleared when full): one
per symbol, direction and candle in force is plenty for a book of thousands."""


_PartsEntry = tuple[object, object, int, _Parts]
_NO_PARTS: _PartsEntry = (None, None, 0, (None, 1.0, None, 1.0, None, False))


def _parts_cache(p: Params) -> list:
    """[the entry last used (one tuple, replaced whole), {(ids, side): entry}]."""
    return [_NO_PARTS, {}]


def indicator_parts(ctx: Ctx, c: _TrailCfg) -> _Parts:
    """What the fixed/adaptive trailing distance reads from the indicators, which do not
    change between candle closes: (volatility, its multiplier, momentum, its multiplier,
    the tightening volatility, whether it is high)."""
    return _indicator_parts(ctx.params, ctx.mkt, c, ctx.dir)


def _indicator_parts(params: Params, mkt: MarketState, c: _TrailCfg, d: int) -> _Parts:
    """`indicator_parts` for the indicators of `mkt` and direction `d`. Kept per Params and
    indicator objects (immutable: the same objects give the same parts; the entry holds
    them, so an id is never taken for another object's while it is kept): the positions of
    a book share one Params while each symbol has its own indicators."""
    if mkt.frames:  # `Ctx.frame` of "trailing" / "tightening"
        tfs = params.memo(_timeframes, _timeframes)
        frames, default = mkt.frames, mkt.indicators
        ind = frames.get(tfs["trailing"], default) if c.mode == "adaptive" else None
        tind = frames.get(tfs["tightening"], default) if c.tightening else None
    else:
        ind = mkt.indicators if c.mode == "adaptive" else None
        tind = mkt.indicators if c.tightening else None
    holder = params.memo(_parts_cache, _parts_cache)
    hit = holder[0]  # a single position's ticks: the same entry again
    if hit[0] is ind and hit[1] is tind and hit[2] == d:
        return hit[3]
    cache = holder[1]
    key = (id(ind), id(tind), d)
    hit = cache.get(key)
    if hit is not None and hit[0] is ind and hit[1] is tind:
        holder[0] = hit
        return hit[3]
    vol = mom = tvol = None
    vol_mult = mom_mult = 1.0
    if ind is not None:
        vol = ind.volatility
        if vol is not None:
            if ge(vol, c.high_volatility):
                vol_mult = c.high_vol_mult
            elif le(vol, c.low_volatility):
                vol_mult = c.low_vol_mult
        mom = ind.momentum
        if mom is not None:
            fav = d * mom
            if ge(fav, c.strong_momentum):
                mom_mult = c.strong_mult
            elif le(fav, c.weak_momentum):
                mom_mult = c.weak_mult
    tight_vol = False
    if tind is not None:
        tvol = tind.volatility
        tight_vol = tvol is not None and gt(tvol, c.t_high_volatility)
    out: _Parts = (vol, vol_mult, mom, mom_mult, tvol, tight_vol)
    if len(cache) >= _CACHE_SIZE:
        cache.clear()
    cache[key] = holder[0] = (ind, tind, d, out)
    return out


def trailing_stop_level(ctx: Ctx, roi: float | None = None) -> float | None:
    """`trailing_level(ctx)[0]` — the same arithmetic, without the inputs — at ROI `roi`
    (default: the tick's)."""
    c = trailing_config(ctx.params)
    if c.mode == "fixed" and not c.tightening:
        return ctx.best * (1 - ctx.dir * c.distance)
    return trailing_stop_levels(ctx, (ctx.roi if roi is None else roi,))[0]


def trailing_stop_levels(ctx: Ctx, rois: tuple[float, ...]) -> list[float | None]:
    """`trailing_stop_level` at each ROI of `rois` (the quiet bands ask for the ROI ranges
    of a price band): what does not depend on the ROI is read once."""
    c = trailing_config(ctx.params)
    mode = c.mode
    if mode == "chandelier":
        ind = ctx.frame("trailing")
        level: float | None
        if ind.atr is None:
            level = None
        elif ctx.side is _LONG:
            level = None if ind.highest_high is None else ind.highest_high - c.atr_mult * ind.atr
        else:
            level = None if ind.lowest_low is None else ind.lowest_low + c.atr_mult * ind.atr
        return [level] * len(rois)
    adaptive = mode == "adaptive"
    _, vol_mult, _, mom_mult, _, tight_vol = _indicator_parts(ctx.params, ctx.mkt, c, ctx.dir)
    if c.tightening:
        hours = ctx.age / 3600.0
        aged = gt(hours, c.t_start_hours)
    best, d_sign = ctx.best, ctx.dir
    out: list[float | None] = []
    for roi in rois:
        d = _distance_at(c, adaptive, roi, vol_mult, mom_mult)
        if c.tightening:
            d = _tightened(c, d, tight_vol, hours - c.t_start_hours
                           if aged and gt(roi, 0.0) else None)[0]
        out.append(best * (1 - d_sign * d))
    return out


def _distance_at(c: _TrailCfg, adaptive: bool, roi: float, vol_mult: float,
                 mom_mult: float) -> float:
    """The fixed/adaptive trailing distance at `roi` before tightening (one definition for
    `trailing_stop_levels` and `region_distances`)."""
    if not adaptive:
        return c.distance
    profit_mult = 1.0
    for above, mult in c.profit_above:  # `gt(roi, threshold)`
        if roi > above:
            profit_mult = mult
            break
    return min(max(c.distance * vol_mult * profit_mult * mom_mult, c.min), c.max)


def trailing_stop_levels_at(ctx: Ctx, rois: tuple[float, ...]) -> list[float | None]:
    """`trailing_stop_levels(ctx, rois)` for a `rois` object that is asked for again and
    again (the quiet bands' ROI regions of a Params): without tightening the distance at
    each ROI depends only on the indicators, so it is kept with them (the level is the
    same product of the best price and the same distance)."""
    c = trailing_config(ctx.params)
    if c.tightening or c.mode == "chandelier":  # tightening: its hours may count
        return trailing_stop_levels(ctx, rois)
    dists = region_distances(ctx.params, ctx.mkt, c, ctx.dir, rois)
    best, d_sign = ctx.best, ctx.dir
    return [best * (1 - d_sign * d) for d in dists]


def region_distances(params: Params, mkt: MarketState, c: _TrailCfg, d: int,
                     rois: tuple[float, ...]) -> tuple[float, ...]:
    """The fixed/adaptive trailing distance before tightening's hours start (none with
    `c.tightening` false) at each ROI of `rois` for the indicators of `mkt` and direction
    `d` — the distances of `trailing_stop_levels_at`, whose level at each is
    `best * (1 - d * distance)`. Kept per Params by all they depend on besides: the
    indicators' multipliers (volatility, momentum, tightening's high volatility) and the
    `rois` object (the entry holds it) — a candle close that leaves the multipliers as
    they were finds its distances kept."""
    parts = _indicator_parts(params, mkt, c, d)
    vol_mult, mom_mult, high_vol = parts[1], parts[3], parts[5]
    holder = params.memo(_distances_cache, _distances_cache)
    hit = holder[0]
    if hit[0] is rois and hit[1] == vol_mult and hit[2] == mom_mult and hit[3] is high_vol:
        return hit[4]
    key = (id(rois), vol_mult, mom_mult, high_vol)
    if (hit := holder[1].get(key)) is not None and hit[0] is rois:
        holder[0] = hit
        return hit[4]
    adaptive = c.mode == "adaptive"
    dists = tuple(_distance_at(c, adaptive, roi, vol_mult, mom_mult) for roi in rois)
    if c.tightening:
        dists = tuple(_tightened(c, x, high_vol, None)[0] for x in dists)
    cache = holder[1]
    if len(cache) >= _CACHE_SIZE:
        cache.clear()
    cache[key] = holder[0] = (rois, vol_mult, mom_mult, high_vol, dists)
    return dists


def _distances_cache(p: Params) -> list:
    """[the entry last used, {(id of the ROIs, the multipliers): entry}]; an entry is
    (ROIs, volatility multiplier, momentum multiplier, tightening's high volatility, the
    distances at those ROIs) and holds the ROIs."""
    return [(None, None, None, None, ()), {}]


def tightening_floored(ctx: Ctx, roi: float) -> bool:
    """Whether time tightening has reached its floor at ROI `roi` (then the distance no
    longer changes with time)."""
    c = trailing_config(ctx.params)
    _, info = trailing_level(_at_roi(ctx, roi))
    return bool(c.tightening) and info.get("distance") == info.get("tightening_floor")


def _at_roi(ctx: Ctx, roi: float) -> Ctx:
    return Ctx(ctx.pos, ctx.mkt, ctx.params, ctx.price, roi, ctx.peak, ctx.move, ctx.best,
               ctx.age, ctx.side, ctx.dir, ctx.tick)


def trailing(ctx: Ctx) -> list[Action]:
    """The trailing stop's move (or its due close) this tick.

    Why two paths: on a trending market nearly every evaluated tick moves the stop, so the
    usual case — a fixed or adaptive trail without a breakeven gate, plain finite floats,
    and with tightening only while its hours have not started (`_terms_at`'s hours beyond
    its start: none before, nor at a loss) — is decided from a table kept per Params and
    indicator objects (`_TrailTable`: each profit region's distance and inputs record);
    anything else takes `_trailing` (the general path, the same arithmetic step by step)."""
    params = ctx.params
    try:
        hot = params._memo[_trail_hot]
    except KeyError:
        hot = params.memo(_trail_hot, _trail_hot)
    if hot is None:
        return _trailing(ctx)
    mkt = ctx.mkt
    frames = mkt.frames
    ind = frames.get(hot[1], mkt.indicators) if frames else mkt.indicators
    roi = ctx.roi
    tf = hot[3]  # tightening's timeframe (None: no tightening)
    if tf is None:
        tind = None
    else:
        if ctx.age / 3600.0 > hot[4] and roi > _ROI_ABOVE_ZERO:  # `_terms_at`'s aged test
            return _trailing(ctx)  # tightening's hours have started: the general path
        tind = frames.get(tf, mkt.indicators) if frames else mkt.indicators
    d = ctx.dir
    table = hot[0]  # the table last used (a single position's ticks: the same again)
    if table.ind is not ind or table.tind is not tind or table.d != d:
        table = _trail_table(hot, params, mkt, ind, tind, d)
    for row in table.regions:  # `gt(roi, threshold)`: the first passed (the last: -inf)
        if roi > row[0]:
            break
    dist, template = row[1], row[2]
    if template is None:  # the region's first move with these indicators
        template = row[2] = _inputs_template(_inputs_prefix(params, table.cfg, table.parts,
                                                            row[3]))
    best, price, sl = ctx.best, ctx.price, ctx.pos.sl
    if not (type(best) is float and type(roi) is float and (sl is None or type(sl) is float)):
        return _trailing(ctx)
    level = best * (1 - d * dist)
    if d > 0:
        if sl is not None and level <= sl < _INF and price > level:
            return []  # not tighter than a finite SL and not crossed: neither a move nor due
        # `stop_improves(ctx, level, min_step)`, written out for the usual floats
        improves = 0.0 < level < _INF and not (level > price - ctx.tick or level >= price)
        better = sl is None or not (-_INF < sl < _INF) or level > sl
    else:
        if sl is not None and -_INF < sl <= level and price < level:
            return []
        improves = 0.0 < level < _INF and not (level < price + ctx.tick or level <= price)
        better = sl is None or not (-_INF < sl < _INF) or level < sl
    if improves and better and sl is not None and -_INF < sl < _INF:
        gain = abs(level - sl)
        improves = gain > 1e-12 * max(abs(sl), 1.0) and gain >= table.min_step * price
    if not (improves and better):
        if price > level if d > 0 else price < level:
            return []  # no move, and not crossed: not due either (`stop_due`)
        return _trailing(ctx)  # a due close: the general path decides
    peak, move = ctx.peak, ctx.move
    if not (type(price) is float and type(peak) is float and type(move) is float):
        return _trailing(ctx)
    total = price + roi + peak + move + dist + best + level + (0.0 if sl is None else sl)
    if total - total != 0.0:  # an inf or NaN among them: `action` cleans it
        return _trailing(ctx)
    # `_trailing_move`'s action, its record from the region's template
    return [_trailing_action(template, ctx.pos.id, price, roi, peak, move, dist, best, level,
                             sl, mkt.ts)]


class _TrailTable:
    """A fixed/adaptive trail's per-tick lookup for one indicator object (and tightening's,
    None without tightening) and direction: `regions` = [ROI threshold + tolerance,
    distance, inputs template (made at the region's first move: None until then), the
    distance's terms] in `profit_above` order, the last one for "no threshold passed"
    (threshold −inf); `cfg` and `parts` what the templates are made from. With
    tightening, the distances are those before its hours start (`_terms_of` without
    them): `trailing` takes the table only then."""

    __slots__ = ("cfg", "d", "ind", "min_step", "parts", "regions", "tind")

    def __init__(self, ind: object, tind: object, d: int, cfg: _TrailCfg | None,
                 parts: _Parts | None, regions: tuple[list, ...]) -> None:
        self.ind, self.tind, self.d, self.cfg, self.parts = ind, tind, d, cfg, parts
        self.regions = regions
        self.min_step = 0.0 if cfg is None else cfg.min_step


_TrailHot = list
"""[the table last used, the trailing timeframe, {(id(ind), id(tind), d): table},
tightening's timeframe (None: no tightening), its start in hours + the tolerance]"""
_ROI_ABOVE_ZERO = 0.0 + THRESHOLD_EPS  # `gt(roi, 0.0)`'s threshold


def _trail_hot(p: Params) -> _TrailHot | None:
    """The fast path's holder for `p`, or None when `p`'s trail takes the general path
    (chandelier or a breakeven gate)."""
    c = trailing_config(p)
    if c.mode not in ("fixed", "adaptive") or c.after_breakeven:
        return None
    tfs = p.memo(_timeframes, _timeframes)
    return [_TrailTable(_NO_TABLE_IND, None, 0, None, None, ()), tfs.get("trailing"), {},
            tfs.get("tightening") if c.tightening else None,
            c.t_start_hours + THRESHOLD_EPS]  # `gt(hours, c.t_start_hours)`'s threshold


_NO_TABLE_IND = object()


def _trail_table(hot: _TrailHot, p: Params, mkt: MarketState, ind: object, tind: object,
                 d: int) -> _TrailTable:
    """The table of `ind`, `tind` and `d` (kept per Params; the entry holds both, so an id
    is never another object's while kept): each region's terms are `_terms_at`'s before
    tightening's hours start (`_terms_of` without them), its template `_trailing_move`'s,
    from the same indicator parts (`_indicator_parts`)."""
    cache = hot[2]
    key = (id(ind), id(tind), d)
    table = cache.get(key)
    if table is None or table.ind is not ind or table.tind is not tind:
        c = trailing_config(p)
        parts = _indicator_parts(p, mkt, c, d)
        rows = []
        terms: _Terms
        if c.mode == "adaptive":  # `trailing`'s terms at each profit multiplier
            for above, profit_mult in (*c.profit_above, (-_INF, 1.0)):
                terms = _terms_of(c, parts, profit_mult, None)
                rows.append([above, terms[0], None, terms])
        else:  # fixed: one distance
            terms = _terms_of(c, parts, 1.0, None)
            rows.append([-_INF, terms[0], None, terms])
        table = _TrailTable(ind, tind, d, c, parts, tuple(rows))
        if len(cache) >= _CACHE_SIZE:
            cache.clear()
        cache[key] = table
    hot[0] = table
    return table


def _trailing(ctx: Ctx) -> list[Action]:
    """`trailing`'s general path (every mode and case)."""
    c = trailing_config(ctx.params)
    if c.after_breakeven and not breakeven_reached(ctx):
        return []
    if c.mode == "chandelier":
        level = trailing_stop_level(ctx)
        parts = terms = None
    else:  # `trailing_level`'s arithmetic, its inputs gathered only if the stop moves
        parts = _indicator_parts(ctx.params, ctx.mkt, c, ctx.dir)
        if c.tightening or c.mode != "adaptive":
            terms = _terms_at(c, parts, ctx.roi, ctx.age)  # `_distance_terms`
        else:  # `_terms_at` of adaptive without tightening, inlined
            roi, profit_mult = ctx.roi, 1.0
            for above, mult in c.profit_above:  # `gt(roi, threshold)`, the tolerance added
                if roi > above:
                    profit_mult = mult
                    break
            raw = c.distance * parts[1] * profit_mult * parts[3]
            terms = (min(max(raw, c.min), c.max), profit_mult, raw, 0.0, None)
        level = ctx.best * (1 - ctx.dir * terms[0])
    if level is None or level <= 0:
        return []
    sl = ctx.pos.sl
    if sl is not None and ((level <= sl < _INF and ctx.price > level) if ctx.dir > 0
                           else (-_INF < sl <= level and ctx.price < level)):
        return []  # not tighter than a finite SL and not crossed: neither a move nor due
    improves = stop_improves(ctx, level, c.min_step)
    if not (improves or stop_due(ctx, level)):
        return []  # the stop stays: no inputs to gather
    if parts is None or terms is None:
        _, info = trailing_level(ctx)  # its inputs; the level acted on is the one tested
    else:
        if improves and not c.tightening:
            move = _trailing_move(ctx, c, parts, terms, level)
            if move is not None:
                return [move]
        info = _info_of(ctx, c, parts, terms)
    info["level"] = level
    info["previous_sl"] = ctx.pos.sl
    if improves:  # `move_or_close`'s move, its test already made
        return [action(ctx, ActionType.MOVE_SL, Reason.TRAILING, "trailing",
                       Priority.STOP_ADJUST, sl=level, inputs=info,
                       stop_kind=StopKind.TRAILING)]
    return move_or_close(ctx, level, Reason.TRAILING, "trailing", StopKind.TRAILING, info,
                         min_step=c.min_step)


def _trailing_move(ctx: Ctx, c: _TrailCfg, parts: _Parts, terms: _Terms,
                   level: float) -> Action | None:
    """The MOVE_SL of a fixed/adaptive trail without tightening, as `trailing` builds it
    through `action` (the same inputs in the same order), from the inputs that depend only
    on the Params and the indicators, kept cleaned with them. None when a value of this
    tick is not a finite float (`action` cleans it: the caller takes that path)."""
    sl = ctx.pos.sl
    price, roi, peak, move, best = ctx.price, ctx.roi, ctx.peak, ctx.move, ctx.best
    d = terms[0]
    if not (type(price) is float and type(roi) is float and type(peak) is float
            and type(move) is float and type(d) is float and type(best) is float
            and type(level) is float and (sl is None or type(sl) is float)):
        return None
    total = price + roi + peak + move + d + best + level + (0.0 if sl is None else sl)
    if total - total != 0.0:  # an inf or NaN among them (or a sum beyond floats: rare)
        return None
    # the Action `action(ctx, MOVE_SL, TRAILING, "trailing", STOP_ADJUST, sl=level,
    # inputs=…, stop_kind=TRAILING)` builds: its checks are made above
    ts = ctx.mkt.ts
    params = ctx.params
    prefix = _inputs_prefix(params, c, parts, terms)
    kept = params.memo(_template_cache, _template_cache)
    hit = kept.get(id(prefix))
    if hit is None or hit[0] is not prefix:
        if len(kept) >= _CACHE_SIZE:
            kept.clear()
        hit = kept[id(prefix)] = (prefix, _inputs_template(prefix))
    # `{"price": price, …, **prefix, "distance": d, …}`
    return _trailing_action(hit[1], ctx.pos.id, price, roi, peak, move, d, best, level, sl, ts)


def _trailing_action(template: dict[str, object], pos_id: str, price: float, roi: float,
                     peak: float, move: float, distance: float, best: float, level: float,
                     sl: float | None, ts: float) -> Action:
    """A trailing stop move: its record a copy of `template` (its keys in the record's
    order), the tick's values stored over the placeholders — the general path and the
    fast path build it alike."""
    inputs = template.copy()
    inputs["price"] = price
    inputs["roi"] = roi
    inputs["peak"] = peak
    inputs["move"] = move
    inputs["distance"] = distance
    inputs["best_price"] = best
    inputs["level"] = level
    inputs["previous_sl"] = sl
    return _new_action(
        _MOVE_SL, _TRAILING_REASON, pos_id, price, None, level, None, "trailing",
        _STOP_ADJUST_INT, ts if -_INF < ts < _INF else 0.0, MappingProxyType(inputs),
        _NO_FLAGS, _TRAILING_KIND, False)


def _inputs_template(prefix: dict[str, object]) -> dict[str, object]:
    """A trailing move's inputs record with `prefix` in place and None where the tick's
    values go: copying it keeps the key order, storing into it keeps it too."""
    return {"price": None, "roi": None, "peak": None, "move": None, **prefix,
            "distance": None, "best_price": None, "level": None, "previous_sl": None}


def _template_cache(p: Params) -> dict[int, tuple[dict[str, object], dict[str, object]]]:
    """{id(prefix): (the prefix, its `_inputs_template`)}: the entry holds the prefix."""
    return {}


def _inputs_prefix(params: Params, c: _TrailCfg, parts: _Parts,
                   terms: _Terms) -> dict[str, object]:
    """The start of `_info_of`'s record (`_record_head`: what comes from the Params, the
    indicators and the ROI region) with each value as `action` cleans it, kept per (parts,
    profit multiplier): the raw distance and the tightening floor follow from them. For
    terms without tightening's hours (`terms[4]` None: the only ones asked for)."""
    cache = params.memo(_prefix_cache, _prefix_cache)
    if c.mode != "adaptive" and not c.tightening:  # one record per mode (kept: the caller
        kept = cache.get(c.mode)  # type: ignore[call-overload]  # keys on its identity)
        if kept is None:
            kept = cache[c.mode] = (None, {"mode": clean(c.mode)})  # type: ignore[index]
        return kept[1]
    key = (id(parts), terms[1])
    hit = cache.get(key)
    if hit is not None and hit[0] is parts:
        return hit[1]
    prefix = _record_head(c, parts, terms)  # a new dict: cleaned in place if need be
    for v in prefix.values():  # `clean` keeps finite floats and plain scalars as they are
        t = type(v)
        if not ((t is float and v - v == 0.0) or t is str or t is bool or t is int
                or v is None):
            prefix = {k: clean(v) for k, v in prefix.items()}
            break
    if len(cache) >= _CACHE_SIZE:
        cache.clear()
    cache[key] = (parts, prefix)
    return prefix


def _prefix_cache(p: Params) -> dict[tuple[int, float] | str,
                                     tuple[object, dict[str, object]]]:
    """{(id(parts), profit multiplier) or a non-adaptive mode: (parts, the prefix)}."""
    return {}


def breakeven_move(ctx: Ctx, follows: str | None = None) -> list[Action]:
    """The seed 001 breakeven move (or, when already crossed, the breakeven close).
    `follows="tp1"` marks the move that accompanies the TP1 reduction itself."""
    level = breakeven_level(ctx)
    inputs: dict[str, object] = {"entry": ctx.pos.entry, "level": level,
                                 "offset": ctx.params.f("r_targets.breakeven_offset"),
                                 "previous_sl": ctx.pos.sl}
    if follows is not None:
        inputs["follows"] = follows
        if not stop_improves(ctx, level):
            return []  # crossed already: `breakeven_after_tp1` closes on the next evaluation
    return move_or_close(ctx, level, Reason.BREAKEVEN, "r_targets", StopKind.BREAKEVEN, inputs,
                         flags=(FLAG_BREAKEVEN,))


def breakeven_after_tp1(ctx: Ctx) -> list[Action]:
    """Seed 001: once TP1 has been taken, the stop goes to breakeven (+ fees). Normally the
    move rides with the TP1 reduction (`pmgui.rules.targets.r_targets`); this catches a TP1
    taken without it (the level was within a tick of the price, or an older journal)."""
    flags = ctx.pos.flags
    if FLAG_TP1 not in flags or FLAG_BREAKEVEN in flags:
        return []
    return breakeven_move(ctx)


def breakeven_plus_level(ctx: Ctx) -> float | None:
    """The price at which the position's ROI after fees is `breakeven_plus.buffer`."""
    pos = ctx.pos
    return money.price_at_roi(pos.side, pos.entry, ctx.params.f("breakeven_plus.buffer"),
                              pos.leverage, pos.fee_rate)


def breakeven_plus(ctx: Ctx) -> list[Action]:
    """Seed 004: at roi >= 10% the stop goes to the price where roi = +2% after fees, if that
    is tighter. Without a usable leverage there is no ROI and nothing moves."""
    p = ctx.params
    min_roi = p.f("breakeven_plus.min_roi")
    lev = ctx.pos.leverage
    if not (isinstance(lev, (int, float)) and lev > 0) or lt(ctx.roi, min_roi):
        return []
    buffer = p.f("breakeven_plus.buffer")
    level = breakeven_plus_level(ctx)
    if level is None:
        return []
    return move_or_close(ctx, level, Reason.BREAKEVEN, "breakeven_plus", StopKind.BREAKEVEN,
                         {"entry": ctx.pos.entry, "level": level, "buffer_roi": buffer,
                          "min_roi": min_roi, "leverage": lev, "fee_rate": ctx.pos.fee_rate,
                          "previous_sl": ctx.pos.sl},
                         flags=(FLAG_BREAKEVEN,))
