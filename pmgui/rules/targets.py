"""Partial exits (priority 6: R targets TP1/TP2, profit booking) and TP adjustment
(priority 8: dynamic TP).

Why fractions of the *original* quantity: seed 001 closes "50% of the position" at TP1 and
"25%" at TP2 and means the size at entry; using the current size would make TP2 close 25% of
what is left. `Position.initial_qty` is that size.

Interpretations:
- R targets need R = |entry - initial_sl|; without an initial SL they stay silent. TP1 at
  pnl_r ≥ tp1_r closes tp1_fraction·initial_qty (flag `tp1_done`); TP2 at pnl_r ≥ tp2_r,
  only after TP1, closes tp2_fraction·initial_qty (flag `tp2_done`). The breakeven move is
  in `pmgui.rules.stops`; it rides with the TP1 reduction (a MOVE_SL after it in the same
  evaluation, `inputs["follows"] = "tp1"`), so a price that falls straight back after TP1
  meets the breakeven stop, not the original one.
- Profit booking (seed 004) books a *cumulative* fraction of the original quantity: level 1
  (roi ≥ 15% and open ≥ 30 min) brings the booked share to 50% (flag `booked_50`); level 2
  (roi ≥ 25%, any age) brings it to 75% (flag `booked_75`), i.e. 25% more after level 1, or
  75% at once if level 1 never fired (then both flags are set). Each level fires once.
- Dynamic TP (seed 000 §7) reads momentum, trend, RSI and support/resistance on
  `dynamic_tp.timeframe`, and the time in position. It is frozen while progress =
  (p - entry)/(tp - entry) ≥ 0.70 (the anti-moving-away fix). Below that: on strong
  favourable momentum (≥ dynamic_tp.strong_momentum) with a favourable EMA trend
  (≥ dynamic_tp.min_trend), and while the position is younger than `dynamic_tp.stale_hours`,
  TP is extended once by `dynamic_tp.extend` × |tp - entry| (flag `tp_extended`) but never
  through the nearest resistance (long: lowest recent swing high above the price) or support
  (short: highest swing low below it): at most to that level, and not at all when the level
  is already at or inside the TP. When the move has faded (the last completed candle's
  favourable close-to-close change ≤ dynamic_tp.fade_momentum: 10-candle momentum ≤ 0 and
  RSI > 70 practically never hold together — measured 0% on every bundled file) while in
  profit and either RSI is stretched (> 70 long, < 30
  short) or the position is stale (open ≥ stale_hours), TP is pulled in once to
  p + (tp - p)·(1 - pull_in), or to the resistance/support lying between the price and that
  point (flag `tp_pulled_in`). A new TP is always at least one tick beyond the price. The
  action's inputs name `resistance`, `support`, `age_hours` and `stale_hours`.
"""

from __future__ import annotations

from pmgui.domain import money
from pmgui.domain.enums import ActionType, Priority, Reason
from pmgui.domain.models import Action, Indicators
from pmgui.rules.common import (
    FLAG_BOOKED_1,
    FLAG_BOOKED_2,
    FLAG_BREAKEVEN,
    FLAG_TP1,
    FLAG_TP2,
    FLAG_TP_EXTENDED,
    FLAG_TP_PULLED_IN,
    THRESHOLD_EPS,
    Ctx,
    action,
    close_all,
    ge,
    gt,
    le,
    lt,
)
from pmgui.rules.params import Params
from pmgui.rules.sizing import scale_out
from pmgui.rules.stops import breakeven_move


def _partial(ctx: Ctx, requested: float, reason: Reason, rule: str,
             inputs: dict[str, object], flags: tuple[str, ...]) -> list[Action]:
    requested = min(requested, ctx.pos.qty)
    if requested <= 0:
        return []
    qty, everything = scale_out(requested, ctx.pos.qty, ctx.market)
    inputs = {**inputs, "requested_qty": requested, "initial_qty": ctx.pos.initial_qty}
    if everything:
        return [close_all(ctx, reason, rule, Priority.PARTIAL, inputs, flags)]
    return [action(ctx, ActionType.REDUCE, reason, rule, Priority.PARTIAL, qty=qty,
                   inputs=inputs, flags=flags)]


def r_targets(ctx: Ctx) -> list[Action]:
    pos, p = ctx.pos, ctx.params
    flags = pos.flags
    if FLAG_TP1 in flags and FLAG_TP2 in flags:
        return []  # both targets taken: nothing below can act, whatever R is
    r = money.position_r(pos, ctx.price)
    if r is None:
        return []
    base = pos.initial_qty if pos.initial_qty > 0 else pos.qty
    if FLAG_TP1 not in pos.flags:
        tp1_r = p.f("r_targets.tp1_r")
        if ge(r, tp1_r):
            risk = money.risk_per_unit(pos.entry, pos.initial_sl)
            frac = p.f("r_targets.tp1_fraction")
            out = _partial(ctx, frac * base, Reason.TP1, "r_targets",
                           {"r": r, "tp1_r": tp1_r, "fraction": frac, "risk": risk,
                            "target": pos.entry + ctx.dir * tp1_r * (risk or 0.0)},
                           (FLAG_TP1,))
            if out and out[0].type is ActionType.REDUCE and FLAG_BREAKEVEN not in pos.flags:
                # breakeven in the same evaluation as the TP1 fill (DESIGN §4), not a tick
                # later when the price may already be back through it
                out += breakeven_move(ctx, follows=Reason.TP1.value)
            return out
        return []
    if FLAG_TP2 not in pos.flags:
        tp2_r = p.f("r_targets.tp2_r")
        if ge(r, tp2_r):
            risk = money.risk_per_unit(pos.entry, pos.initial_sl)
            frac = p.f("r_targets.tp2_fraction")
            return _partial(ctx, frac * base, Reason.TP2, "r_targets",
                            {"r": r, "tp2_r": tp2_r, "fraction": frac, "risk": risk,
                             "target": pos.entry + ctx.dir * tp2_r * (risk or 0.0)},
                            (FLAG_TP2,))
    return []


def profit_booking(ctx: Ctx) -> list[Action]:
    pos, p = ctx.pos, ctx.params
    base = pos.initial_qty if pos.initial_qty > 0 else pos.qty
    f1 = p.f("profit_booking.level1_fraction")
    f2 = p.f("profit_booking.level2_fraction")
    roi2 = p.f("profit_booking.level2_roi")
    if FLAG_BOOKED_2 not in pos.flags and ge(ctx.roi, roi2):
        already = f1 if FLAG_BOOKED_1 in pos.flags else 0.0
        return _partial(ctx, (f2 - already) * base, Reason.PROFIT_BOOKING, "profit_booking",
                        {"level": 2, "roi_threshold": roi2, "booked_fraction": f2,
                         "already_booked": already, "age": ctx.age},
                        (FLAG_BOOKED_1, FLAG_BOOKED_2))
    roi1 = p.f("profit_booking.level1_roi")
    min_age = p.f("profit_booking.level1_min_age")
    if (FLAG_BOOKED_1 not in pos.flags and FLAG_BOOKED_2 not in pos.flags
            and ge(ctx.roi, roi1) and ge(ctx.age, min_age)):
        return _partial(ctx, f1 * base, Reason.PROFIT_BOOKING, "profit_booking",
                        {"level": 1, "roi_threshold": roi1, "booked_fraction": f1,
                         "min_age": min_age, "age": ctx.age},
                        (FLAG_BOOKED_1,))
    return []


def _sr_levels(ctx: Ctx, highs: tuple[float, ...], lows: tuple[float, ...]
               ) -> tuple[float | None, float | None]:
    """(resistance, support) nearest the price: the lowest swing high above it and the highest
    swing low below it (None where there is none)."""
    above = [h for h in highs if h > ctx.price]
    below = [x for x in lows if x < ctx.price]
    return (min(above) if above else None), (max(below) if below else None)


def barrier(ind: Indicators, price: float, d: int) -> float | None:
    """The level in the trade's way at `price`: `_sr_levels`' resistance above a long
    (d > 0), its support below a short — the one level the extension is capped by."""
    if d > 0:
        above = [h for h in ind.swing_highs if h > price]
        return min(above) if above else None
    below = [x for x in ind.swing_lows if x < price]
    return max(below) if below else None


def extended_tp(ctx: Ctx, tp: float, ext: float, level: float | None
                ) -> tuple[float, bool] | None:
    """The extension's new TP (`tp` moved by `ext` × |tp − entry|, capped at the barrier
    `level`) and whether the level capped it; None when it is not at least a tick beyond
    `tp` (a level at or inside the TP: no extension). One definition for the rule, its
    skip and the quiet band."""
    d = ctx.dir
    new_tp = ctx.market.round_price(tp + d * ext * abs(tp - ctx.pos.entry))
    capped = False
    if level is not None and (new_tp - level) * d > 0:
        # never extend through support/resistance: at most up to the level itself
        new_tp, capped = ctx.market.round_price(level), True
    if (new_tp - tp) * d >= max(ctx.tick, 1e-12) and new_tp > 0:
        return new_tp, capped
    return None


def _extension_idle(ctx: Ctx, tp: float, ind: Indicators) -> bool:
    """Whether the extension, its indicator gates passed, still cannot act at this price
    (`extended_tp` None): 336 of guardian's 402 slow-path entries on the bench path (a
    swing high between the price and the TP). Only the barrier on the trade's side and
    the target are computed — what the slow path would find after gathering both levels
    and every threshold."""
    return extended_tp(ctx, tp, ctx.params.f("dynamic_tp.extend"),
                       barrier(ind, ctx.price, ctx.dir)) is None


_TOL = THRESHOLD_EPS


def _dynamic_tp_params(p: Params) -> tuple[float, float, float, float, float, float, float]:
    """(freeze_progress, stale_hours, strong_momentum, min_trend, fade_momentum, rsi_high,
    rsi_low), read once per Params."""
    return (p.f("dynamic_tp.freeze_progress"), p.f("dynamic_tp.stale_hours"),
            p.f("dynamic_tp.strong_momentum"), p.f("dynamic_tp.min_trend"),
            p.f("dynamic_tp.fade_momentum"), p.f("dynamic_tp.rsi_high"),
            p.f("dynamic_tp.rsi_low"))


_DynHot = list  # [the thresholds, the gates last used, {(id(indicators), dir): gates}]
_Gates = tuple[object, int, bool, bool, bool]


def _dynamic_tp_hot(p: Params) -> _DynHot:
    """`dynamic_tp`'s per-Params holder: its thresholds and the indicator gates kept."""
    return [_dynamic_tp_params(p), (None, 0, False, False, False), {}]


def _gates(hot: _DynHot, ind: Indicators, d: int) -> _Gates:
    """(indicators, dir, the extension's indicator test, the pull-in's last-change test,
    RSI stretched) for `ind` and direction `d` — `dynamic_tp`'s tests of the indicators,
    which do not change between candle closes. Kept per Params (the entry holds `ind`: an
    id is never another object's while kept)."""
    cache = hot[2]
    gates = cache.get((id(ind), d))
    if gates is None or gates[0] is not ind:
        _, _, strong, min_trend, fade, rsi_high, rsi_low = hot[0]
        mom, trend, last, rsi = ind.momentum, ind.trend, ind.last_change, ind.rsi
        gates = (ind, d,
                 mom is not None and trend is not None and d * mom >= strong - _TOL
                 and d * trend >= min_trend - _TOL,
                 last is not None and d * last <= fade + _TOL,
                 rsi is not None and (rsi > rsi_high + _TOL if d > 0 else rsi < rsi_low - _TOL))
        if len(cache) >= 4096:
            cache.clear()
        cache[(id(ind), d)] = gates
    hot[1] = gates
    return gates


def _base_inputs(ind: Indicators, tp: float, progress: float, freeze: float,
                 levels: tuple[float | None, float | None], age_hours: float,
                 stale_hours: float, p: Params) -> dict[str, object]:
    """What every dynamic TP change records; gathered only for a change that acts (the
    extension is often capped by a level and does not)."""
    return {"tp": tp, "progress": progress, "freeze_progress": freeze,
            "momentum": ind.momentum, "trend": ind.trend, "rsi": ind.rsi,
            "timeframe": str(p["dynamic_tp.timeframe"]), "resistance": levels[0],
            "support": levels[1], "age_hours": age_hours, "stale_hours": stale_hours}


def dynamic_tp(ctx: Ctx) -> list[Action]:
    pos = ctx.pos
    tp = pos.tp
    if tp is None or (tp - pos.entry) * ctx.dir <= 0:
        return []  # no TP, or one on the loss side of the entry: nothing to extend or pull
    p = ctx.params
    progress = (ctx.price - pos.entry) / (tp - pos.entry)
    try:  # `p.memo(_dynamic_tp_hot, …)` without the method call (read on every tick)
        hot = p._memo[_dynamic_tp_hot]
    except KeyError:
        hot = p.memo(_dynamic_tp_hot, _dynamic_tp_hot)
    limits = hot[0]  # `_dynamic_tp_params`
    freeze, stale_hours = limits[0], limits[1]
    if progress >= freeze - _TOL:  # ge(progress, freeze)
        return []  # anti-moving-away: let it close at the target
    mkt = ctx.mkt
    ind = ctx.frame("dynamic_tp") if mkt.frames else mkt.indicators  # `ctx.frame`
    # The price-independent gates of the two changes below (the same tests; `ge`, `gt`,
    # `le` and `lt` written out: this runs on every evaluated tick). Neither can act: no
    # inputs to gather. What they read of the indicators is kept with them (`_gates`).
    d, flags = ctx.dir, pos.flags
    gates = hot[1]
    if gates[0] is not ind or gates[1] != d:
        gates = _gates(hot, ind, d)
    stale = ctx.age / 3600.0 >= stale_hours - _TOL
    pull = (gates[3] and FLAG_TP_PULLED_IN not in flags and progress > _TOL
            and (stale or gates[4]))
    if not (gates[2] and FLAG_TP_EXTENDED not in flags and not stale):
        if not pull:
            return []  # neither the extension nor the pull-in
    elif not pull and _extension_idle(ctx, tp, ind):
        return []  # only the extension could act, and a level stops it at this price
    tick = ctx.tick
    gap = max(tick, 1e-12)
    resistance, support = _sr_levels(ctx, ind.swing_highs, ind.swing_lows)
    # the level in the trade's way: resistance above a long, support below a short
    level = resistance if ctx.dir > 0 else support
    age_hours = ctx.age / 3600.0
    stale_hours = p.f("dynamic_tp.stale_hours")
    stale = ge(age_hours, stale_hours)

    mom = None if ind.momentum is None else ctx.dir * ind.momentum
    trend = None if ind.trend is None else ctx.dir * ind.trend
    strong = p.f("dynamic_tp.strong_momentum")
    min_trend = p.f("dynamic_tp.min_trend")
    if (FLAG_TP_EXTENDED not in pos.flags and not stale and mom is not None
            and trend is not None and ge(mom, strong) and ge(trend, min_trend)):
        ext = p.f("dynamic_tp.extend")
        extended = extended_tp(ctx, tp, ext, level)
        if extended is not None:
            new_tp, capped = extended
            return [action(ctx, ActionType.MOVE_TP, Reason.DYNAMIC_TP, "dynamic_tp",
                           Priority.TP_ADJUST, tp=new_tp, flags=(FLAG_TP_EXTENDED,),
                           inputs={**_base_inputs(ind, tp, progress, freeze, (resistance, support),
                                                   age_hours, stale_hours, p),
                                   "change": "extend", "extend": ext,
                                   "capped_by_level": capped,
                                   "strong_momentum": strong, "min_trend": min_trend})]
    rsi = ind.rsi
    fade = p.f("dynamic_tp.fade_momentum")
    last = None if ind.last_change is None else ctx.dir * ind.last_change
    hi, lo = p.f("dynamic_tp.rsi_high"), p.f("dynamic_tp.rsi_low")
    stretched = rsi is not None and (gt(rsi, hi) if ctx.dir > 0 else lt(rsi, lo))
    if (FLAG_TP_PULLED_IN not in pos.flags and gt(progress, 0.0) and last is not None
            and le(last, fade) and (stretched or stale)):
        cut = p.f("dynamic_tp.pull_in")
        new_tp = ctx.market.round_price(ctx.price + (tp - ctx.price) * (1 - cut))
        at_level = False
        if level is not None and (tp - level) * ctx.dir > 0 \
                and (new_tp - level) * ctx.dir > 0 and (level - ctx.price) * ctx.dir >= gap:
            # a level between the price and the target: take profit there
            new_tp, at_level = ctx.market.round_price(level), True
        beyond_price = (new_tp - ctx.price) * ctx.dir >= gap
        closer = (tp - new_tp) * ctx.dir >= gap
        if beyond_price and closer:
            return [action(ctx, ActionType.MOVE_TP, Reason.DYNAMIC_TP, "dynamic_tp",
                           Priority.TP_ADJUST, tp=new_tp, flags=(FLAG_TP_PULLED_IN,),
                           inputs={**_base_inputs(ind, tp, progress, freeze, (resistance, support),
                                                   age_hours, stale_hours, p),
                                   "change": "pull_in", "pull_in": cut,
                                   "at_level": at_level, "stretched": stretched,
                                   "last_change": ind.last_change,
                                   "stale": stale, "fade_momentum": fade, "rsi_high": hi,
                                   "rsi_low": lo})]
    return []
