"""The policy: runs a position's enabled rules in DESIGN §4 priority order, one decision per tick.

Why one function: the engine, `pmgui replay` and the tests all call `evaluate` the same way,
so what a replay shows is what the live engine does.

Per call (one position, one tick):
1. Nothing for a closed position or an unusable price (not finite/positive: seed 000 §4-5).
   Staleness needs the wall clock, which rules do not read: the engine calls
   `price_is_usable(price, price_ts, now, params["price.max_age"])` before `evaluate`.
2. With automation paused (`pos.automation == False`) only protection runs: the position's
   SL and TP (and the tranches' SL/TP) and the emergency loss caps, which DESIGN §4 says
   override everything (a trader who paused the rules to manage a position by hand is still
   not left without the last line before liquidation). Protection is never paused.
3. Candidates from every enabled rule are sorted by priority (1 emergency … 9 add). The
   first closing action (CLOSE/REDUCE) is the one close of this tick; non-closing actions
   (MOVE_SL, MOVE_TP, ADD) survive only if their priority is strictly before it. Stop moves
   come loosest first and each strictly tighter than the last (see `select`); at most one
   MOVE_TP and one ADD are returned.
4. Two exceptions keep money safe: the breakeven move that rides with a TP1 reduction
   (`inputs["follows"] == "tp1"`) comes right after that reduction in the same evaluation,
   and a CANCEL of a resting add-on is always kept (before the close); an evaluation that
   closes or reduces the position while an add-on rests cancels it (`why = closing`).

Every action carries its rule id, reason, priority, the triggering price and its inputs
(price, roi, peak, move, indicator values, thresholds), all finite.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace

from pmgui.domain import money
from pmgui.domain.enums import ActionType, PositionStatus, Priority, Side
from pmgui.domain.errors import ValidationError
from pmgui.domain.models import Action, Market, MarketState, Position, evolver
from pmgui.indicators.indicator_set import IndicatorSpec
from pmgui.rules import adds, exits, stops, targets
from pmgui.rules.bands import QuietBand, quiet_band
from pmgui.rules.common import (
    Ctx,
    add_on_open_since,
    best_price,
    make_ctx,
    valid_price,
)
from pmgui.rules.params import Params, resolve_params
from pmgui.rules.sizing import add_size, scale_out

__all__ = [
    "QuietBand", "add_size", "evaluate", "evaluate_trend", "indicator_frames", "indicator_spec",
    "initial_targets", "observe", "params_for", "price_is_usable", "quiet_band", "scale_out",
]

_MOVE_SL, _MOVE_TP, _CLOSE, _REDUCE, _CANCEL, _ADD = (
    ActionType.MOVE_SL, ActionType.MOVE_TP, ActionType.CLOSE, ActionType.REDUCE,
    ActionType.CANCEL, ActionType.ADD)
_LONG = Side.LONG  # a module constant: an enum member lookup costs ~0.1 µs
RuleFn = Callable[[Ctx], list[Action]]
_OPEN = PositionStatus.OPEN
_INF = math.inf
_isfinite = math.isfinite
_evolve_peak_best = evolver("peak_roi", "best_price")

# (rule id whose `enabled` gates it, function, protection?) in priority order.
_PIPELINE: tuple[tuple[str, RuleFn, bool], ...] = (
    ("emergency", exits.emergency, True),  # DESIGN §4: overrides everything (paused too)
    ("stop_loss", exits.stop_loss, True),
    ("tranches", exits.tranche_stops, True),
    ("take_profit", exits.take_profit, True),
    ("tranches", exits.tranche_targets, True),
    ("smart_tp", exits.smart_tp, False),
    ("momentum_loss", exits.momentum_loss, False),
    ("r_targets", targets.r_targets, False),
    ("profit_booking", targets.profit_booking, False),
    ("r_targets", stops.breakeven_after_tp1, False),
    ("breakeven_plus", stops.breakeven_plus, False),
    ("trailing", stops.trailing, False),
    ("dynamic_tp", targets.dynamic_tp, False),
    ("add_on", adds.add_on, False),
    ("add_on", adds.add_on_cancel, False),
    ("scaling", adds.scaling, False),
)


def observe(pos: Position, price: float) -> Position:
    """Bookkeeping before evaluation: peak ROI and best price since open.

    Returns `pos` itself when nothing changes, the price is unusable or the position is closed.
    While automation is paused nothing is tracked: a stop that is due closes at once
    (`pmgui.rules.stops`), so a trailing level or momentum-loss peak taken from prices the
    rules never acted on would close the position the moment automation resumes.
    """
    if pos.status is not _OPEN or not pos.automation:
        return pos
    entry = pos.entry
    if type(price) is float and type(entry) is float:  # `valid_price` of both, inline
        if not (0.0 < price < _INF and 0.0 < entry < _INF):
            return pos
    elif not valid_price(price) or not valid_price(entry):
        return pos
    lev = pos.leverage
    long = pos.side is _LONG
    if _isfinite(lev):  # `position_roi`, inlined (the same arithmetic)
        if lev < 0.0:  # `max(lev, 0.0)`
            lev = 0.0
        r = lev * ((1 if long else -1) * (price - entry)
                   - pos.fee_rate * (entry + price)) / entry
        if not _isfinite(r):
            r = 0.0
    else:
        r = 0.0
    prev_peak = pos.peak_roi
    peak = prev_peak if _isfinite(prev_peak) else 0.0
    if r > peak:  # `max(peak, r)`: the first of equals
        peak = r
    prev_best = pos.best_price
    if 0.0 < prev_best < _INF if type(prev_best) is float else valid_price(prev_best):
        # `best_price`, inlined: `max(prev_best, price)` / `min(...)`, the first of equals
        if long:
            best = price if price > prev_best else prev_best
        else:
            best = price if price < prev_best else prev_best
    else:
        best = best_price(pos, price)
    if peak == prev_peak and best == prev_best:
        return pos
    return _evolve_peak_best(pos, peak, best)  # pos.evolve(peak_roi=…, best_price=…)


def _usable_position(pos: Position) -> bool:
    """Open, with a valid entry and a size. A missing or odd leverage (an adopted position)
    does not disable protection: the ROI math treats it as no ROI at all."""
    return (pos.is_open and money.valid_price(pos.entry) and math.isfinite(pos.qty)
            and pos.qty > 0)


def _pipelines(params: Params) -> tuple[tuple[RuleFn, ...], tuple[RuleFn, ...]]:
    """The enabled rules of `params` in priority order: (automation on, protection only)."""
    on = tuple(fn for rule, fn, _ in _PIPELINE if params.enabled(rule))
    protect = tuple(fn for rule, fn, protection in _PIPELINE
                    if protection and params.enabled(rule))
    return on, protect


def evaluate(pos: Position, mkt: MarketState, params: Params) -> list[Action]:
    """The actions for this position on this tick (see the module docstring)."""
    if not isinstance(params, Params):
        raise ValidationError("evaluate needs Params from resolve_params()")
    if mkt.symbol != pos.symbol:
        raise ValidationError(
            f"market state for {mkt.symbol} given to a {pos.symbol} position", field="symbol")
    qty, entry, price = pos.qty, pos.entry, mkt.price
    if not (pos.status is _OPEN and type(entry) is float and 0.0 < entry < _INF
            and 0.0 < qty < _INF and type(price) is float and 0.0 < price < _INF) and (
            pos.status is not _OPEN or not valid_price(entry) or not 0.0 < qty < _INF
            or not valid_price(price)) and not (
                _usable_position(pos) and money.valid_price(price)):
        return []  # the usual open position and float price pass the first test alone
    ctx = make_ctx(pos, mkt, params)
    try:  # `params.memo(_pipelines, …)` without the method call
        on, protect = params._memo[_pipelines]
    except KeyError:
        on, protect = params.memo(_pipelines, _pipelines)
    candidates: list[Action] = []
    for fn in (on if pos.automation else protect):
        found = fn(ctx)
        if found:
            candidates.extend(found)
    if not candidates:
        return []
    return _decided(candidates, ctx)


def _decided(candidates: list[Action], ctx: Ctx) -> list[Action]:
    """The arbitration of a tick's candidates (`select`), and the cancel of a resting
    add-on that a closing decision withdraws. A lone stop move (the usual decision: a trail's
    step) is what `select` keeps as it is, so it is returned without select's calls."""
    if len(candidates) == 1:
        a = candidates[0]
        if a.type is _MOVE_SL and a.sl is not None and "follows" not in a.inputs:
            return candidates
    pos = ctx.pos
    out = select(candidates, pos.side)
    if (pos.flags and add_on_open_since(pos.flags) is not None
            and any(a.is_closing for a in out)
            and not any(a.type is _CANCEL for a in out)):
        closing = next(a for a in out if a.is_closing)
        cancel = adds.cancel_add_on(ctx, "closing", closing_reason=closing.reason.value)
        out.insert(out.index(closing), cancel)
    return out


_TrendRules = tuple[tuple[RuleFn, ...], tuple[RuleFn, ...], tuple[RuleFn, ...],
                    tuple[RuleFn, ...]]


def _trend_rules(params: Params) -> _TrendRules:
    """The rules `evaluate_trend` runs, in pipeline order, indexed by (the stop crossed,
    the ROI below its peak): of the automation pipeline those a trend lane leaves to act —
    trailing; the stop loss where the stop is crossed (the lane leaves the stop to the
    tick: trailing moves it); momentum loss below the peak ROI (at it the give-back is
    zero, and Params that allow a lane keep momentum loss silent there:
    `bands._lane_allowed`)."""
    on = params.memo(_pipelines, _pipelines)[0]
    lane = (stops.trailing, exits.stop_loss, exits.momentum_loss)
    return tuple(tuple(fn for fn in on if fn in lane
                       and (crossed or fn is not exits.stop_loss)
                       and (below or fn is not exits.momentum_loss))
                 for crossed in (False, True) for below in (False, True))  # type: ignore[return-value]


def evaluate_trend(pos: Position, mkt: MarketState, params: Params) -> list[Action]:
    """`evaluate` of a tick in the position's trend lane (`pmgui.rules.bands.trend_lane`,
    asked through `BandGate.lane`), after `observe`: there every rule but trailing, the
    stop loss and momentum loss is silent, so those alone run (the stop loss where the
    stop is crossed, momentum loss below the peak ROI: a pull-back inside the lane) and
    their candidates are arbitrated as `evaluate` does. Only for such a tick: the lane is
    what makes the two equal."""
    try:  # `params.memo(_trend_rules, …)` without the method call
        rules = params._memo[_trend_rules]
    except KeyError:
        rules = params.memo(_trend_rules, _trend_rules)
    sl, price = pos.sl, mkt.price
    # the stop loss's own test of a crossing (`exits.stop_loss`: it decides; here only
    # whether it is to run)
    crossed = 2 if sl is not None and not (
        price > sl if pos.side is _LONG else price < sl) else 0
    if not rules[crossed + 1]:
        return []  # none of them (manual, monitor before their stop): nothing to decide
    ctx = make_ctx(pos, mkt, params)
    candidates: list[Action] = []
    for fn in rules[crossed + (ctx.roi < ctx.peak)]:
        found = fn(ctx)
        if found:
            candidates.extend(found)
    if not candidates:
        return []
    return _decided(candidates, ctx)


def select(candidates: list[Action], side: Side) -> list[Action]:
    """DESIGN §4 arbitration: one close (the highest priority), only earlier adjustments.

    Stop moves are all kept (each is a decision with its own reason: breakeven and trailing
    may both move the stop on one tick) but ordered from the loosest to the tightest, and a
    move that is not strictly tighter than the one before it is dropped (its flags go to the
    kept move at the same level), so applying them in order only ever tightens the stop.
    """
    if len(candidates) == 1:
        a = candidates[0]
        t = a.type
        if "follows" not in a.inputs and (
                (t is _MOVE_SL and a.sl is not None) or t is _CLOSE
                or t is _REDUCE or t is _CANCEL
                or t is _MOVE_TP or t is _ADD):
            return [a]  # what the arbitration below keeps of a lone candidate
    ordered = sorted(candidates, key=_priority)  # stable: pipeline order in ties
    closing = next((a for a in ordered if a.is_closing), None)
    limit = closing.priority if closing is not None else math.inf
    stops: list[Action] = []
    move_tp: Action | None = None
    add: Action | None = None
    cancel: Action | None = None
    follow: list[Action] = []
    for a in ordered:
        if a.type is _CANCEL:
            cancel = cancel or a
            continue
        if "follows" in a.inputs:
            if (closing is not None and closing.type is _REDUCE
                    and a.inputs["follows"] == closing.reason.value and a.rule == closing.rule
                    and a.type is _MOVE_SL and not follow):
                follow.append(a)
            continue
        if a.is_closing or a.priority >= limit:
            continue
        if a.type is _MOVE_SL and a.sl is not None:
            stops.append(a)
        elif a.type is _MOVE_TP and move_tp is None:
            move_tp = a
        elif a.type is _ADD and add is None:
            add = a
    out: list[Action] = []
    # loosest first: ascending for a long, descending for a short (stable for equal levels)
    stops.sort(key=lambda a: side.dir * (a.sl or 0.0))
    for a in stops:
        if out and a.sl == out[-1].sl:
            out[-1] = replace(out[-1], flags=out[-1].flags | a.flags)
            continue
        if out and not money.is_improvement(side, out[-1].sl, a.sl or 0.0):
            continue
        out.append(a)
    if move_tp is not None:
        out.append(move_tp)
    if add is not None:
        out.append(add)
    if cancel is not None:
        out.append(cancel)
    out.sort(key=lambda a: a.priority)  # stable: the stop order above is kept
    if closing is not None:
        if cancel is not None:  # withdraw the resting add before closing
            out.remove(cancel)
            out.append(cancel)
        out.append(closing)
        last = out_last_sl(out)
        if follow and (last is None or money.is_improvement(side, last, follow[0].sl or 0.0)):
            out.extend(follow)
    return out


def _priority(a: Action) -> int:
    return a.priority


def out_last_sl(actions: list[Action]) -> float | None:
    """The last stop level set by `actions` (None when none moves it)."""
    for a in reversed(actions):
        if a.type is _MOVE_SL:
            return a.sl
    return None


def initial_targets(side: Side, entry: float, params: Params,
                    market: Market) -> tuple[float | None, float | None]:
    """(SL, TP) from `stop_loss.pct` / `take_profit.pct` for presets that set them (`auto`),
    rounded to the tick and kept at least one tick off the entry. None where not set."""
    if not money.valid_price(entry):
        raise ValidationError(f"entry price must be a finite positive number (got {entry!r})",
                              field="entry")
    tick = market.tick_size if market.tick_size > 0 else 0.0
    d = side.dir
    sl = tp = None
    if params.enabled("stop_loss") and params["stop_loss.auto"]:
        sl = market.round_price(entry * (1 - d * params.f("stop_loss.pct")))
        if tick and (entry - sl) * d < tick:
            sl = market.round_price(entry - d * tick)
        if sl <= 0:
            raise ValidationError("the stop-loss distance leaves no valid stop price",
                                  field="stop_loss.pct")
    if params.enabled("take_profit") and params["take_profit.auto"]:
        pct = params.f("take_profit.pct")
        raw = entry * (1 + d * pct)
        if raw <= 0:
            raise ValidationError(
                f"take_profit.pct {pct:.2%} is impossible for a short (the price cannot fall "
                "below zero)", field="take_profit.pct")
        tp = market.round_price(raw)
        if tick and (tp - entry) * d < tick:
            tp = market.round_price(entry + d * tick)
        if tp <= 0:
            raise ValidationError("the take-profit distance leaves no valid price",
                                  field="take_profit.pct")
    return sl, tp


def indicator_spec(params: Params) -> IndicatorSpec:
    """The indicator periods this position's rules read (the same on every timeframe)."""
    n = params.i("trailing.atr_period")
    return IndicatorSpec(
        ema_period=params.i("add_on.ema_period"),
        atr_period=n,
        channel_period=n,
        rsi_period=params.i("dynamic_tp.rsi_period"),
        volatility_window=params.i("indicators.volatility_window"),
        momentum_window=params.i("indicators.momentum_window"),
        volume_window=params.i("indicators.volume_window"),
        swing_strength=params.i("dynamic_tp.swing_strength"),
        swing_lookback=params.i("dynamic_tp.swing_lookback"),
    )


def indicator_frames(params: Params) -> dict[str, tuple[str, ...]]:
    """Timeframe → the enabled rules that read indicators on it (in their current mode).

    Only these timeframes need candles: a fixed trailing stop without tightening, for one,
    reads no indicator, so no timeframe constrains it (replay of a coarse file stays valid).
    """
    users: list[str] = []
    trailing = params.enabled("trailing")
    mode = str(params["trailing.mode"])
    if trailing and mode in ("adaptive", "chandelier"):
        users.append("trailing")
    if trailing and mode != "chandelier" and params.enabled("tightening"):
        users.append("tightening")
    for rule in ("dynamic_tp", "add_on", "scaling"):
        if params.enabled(rule):
            users.append(rule)
    out: dict[str, list[str]] = {}
    for rule in users:
        out.setdefault(str(params[f"{rule}.timeframe"]), []).append(rule)
    return {tf: tuple(rules) for tf, rules in out.items()}


def price_is_usable(price: float | None, price_ts: float | None, now: float,
                    max_age: float) -> bool:
    """Seed 000 §4: finite, positive and not older than `max_age` seconds. A timestamp from
    the future (clock skew) counts as fresh."""
    if not money.valid_price(price):
        return False
    if isinstance(price_ts, bool) or not isinstance(price_ts, (int, float)):
        return False
    if not (math.isfinite(price_ts) and math.isfinite(now) and math.isfinite(max_age)):
        return False
    return now - price_ts <= max_age


def params_for(pos: Position, base_overrides: Mapping[str, object] | None = None) -> Params:
    """The parameters of one position: its preset, then the symbol/config overrides, then the
    position's own overrides (the last word)."""
    merged: dict[str, object] = dict(base_overrides or {})
    merged.update(pos.overrides)
    return resolve_params(pos.preset, merged)


def priority_of(rule: str) -> Priority:
    """The DESIGN §4 priority a rule's closing action carries (for the UI's explanations)."""
    table = {
        "emergency": Priority.EMERGENCY, "stop_loss": Priority.STOP_LOSS,
        "tranches": Priority.STOP_LOSS, "take_profit": Priority.TAKE_PROFIT,
        "smart_tp": Priority.SMART_TP, "momentum_loss": Priority.MOMENTUM_LOSS,
        "r_targets": Priority.PARTIAL, "profit_booking": Priority.PARTIAL,
        "trailing": Priority.STOP_ADJUST, "breakeven_plus": Priority.STOP_ADJUST,
        "tightening": Priority.STOP_ADJUST, "dynamic_tp": Priority.TP_ADJUST,
        "add_on": Priority.ADD, "scaling": Priority.ADD,
    }
    try:
        return table[rule]
    except KeyError:
        raise ValidationError(f"unknown rule '{rule}'", field="rule") from None
