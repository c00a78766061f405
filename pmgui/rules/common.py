"""What every rule shares: the evaluation context, action builders and tick arithmetic.

Why a context object: each rule needs the same derived numbers (ROI with fees, peak ROI,
price move, best price, age); computing them once per tick keeps the rules short and makes
sure two rules never disagree about "the ROI" on the same tick.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from pmgui.domain import money
from pmgui.domain.enums import ActionType, Priority, Reason, Side, StopKind
from pmgui.domain.errors import ValidationError
from pmgui.domain.models import (
    Action,
    Indicators,
    Market,
    MarketState,
    Position,
    Scalar,
)
from pmgui.domain.slots import slot_constructor
from pmgui.rules.params import Params

_LONG = Side.LONG  # a module constant: an enum member lookup costs ~0.1 µs
FLAG_TP1 = "tp1_done"
FLAG_TP2 = "tp2_done"
FLAG_BREAKEVEN = "breakeven_set"
FLAG_ADD_ON = "add_on_executed"
ADD_ON_OPEN_PREFIX = "add_on_open:"
"""`add_on_open:<ts>`: an add-on limit order placed at market time <ts> is resting. Set by
the ADD action; the engine removes it when the order fills or is cancelled (a CANCEL action
or any other reason)."""
FLAG_BOOKED_1 = "booked_50"
FLAG_BOOKED_2 = "booked_75"
FLAG_SCALED = "scaled"
FLAG_TP_EXTENDED = "tp_extended"
FLAG_TP_PULLED_IN = "tp_pulled_in"
TRANCHE_CLOSED_PREFIX = "tranche_closed:"

_EPS = 1e-9

THRESHOLD_EPS = 1e-10
"""Tolerance of every threshold comparison: a value that equals a threshold on paper (a 15%
ROI computed from prices) must count as equal even when float arithmetic lands it 1e-16
short, so "≥ 15%" fires and "> 2%" does not."""


def ge(value: float, threshold: float) -> bool:
    return value >= threshold - THRESHOLD_EPS


def le(value: float, threshold: float) -> bool:
    return value <= threshold + THRESHOLD_EPS


def gt(value: float, threshold: float) -> bool:
    return value > threshold + THRESHOLD_EPS


def lt(value: float, threshold: float) -> bool:
    return value < threshold - THRESHOLD_EPS


def valid_price(p: object) -> bool:
    """`money.valid_price` with a fast path for the usual float."""
    if type(p) is float:
        return 0.0 < p < _INF  # NaN fails both comparisons
    return money.valid_price(p)  # type: ignore[arg-type]


_INF = math.inf


@dataclass(slots=True, eq=False)
class Ctx:
    """One position on one tick, with the numbers every rule reads (built once per
    evaluation by `make_ctx`; never changed afterwards)."""

    pos: Position
    mkt: MarketState
    params: Params
    price: float
    roi: float  # ROI on margin, fees included (DESIGN §3)
    peak: float  # best ROI since open, including this tick
    move: float  # unleveraged favourable price move
    best: float  # most favourable price since open, including this tick
    age: float  # seconds since open (market time)
    side: Side = Side.LONG
    dir: int = 1  # +1 long, -1 short
    tick: float = 0.0  # the market's tick size (0.0 when unusable)

    @property
    def ind(self) -> Indicators:
        """The single-timeframe indicators (`MarketState.indicators`); rules read `frame`."""
        return self.mkt.indicators

    def frame(self, rule: str) -> Indicators:
        """The indicators of `rule`'s own timeframe (`rule.timeframe`)."""
        mkt = self.mkt
        if not mkt.frames:  # one set for every timeframe (`indicators_for`'s fallback)
            return mkt.indicators
        return mkt.indicators_for(self.params.memo(_timeframes, _timeframes)[rule])

    @property
    def market(self) -> Market:
        return self.mkt.market


def _timeframes(params: Params) -> dict[str, str]:
    return {k[:-10]: str(v) for k, v in params.items() if k.endswith(".timeframe")}


def best_price(pos: Position, price: float) -> float:
    """Most favourable of the recorded best price (the entry if none) and `price`."""
    prev = pos.best_price if valid_price(pos.best_price) else pos.entry
    return max(prev, price) if pos.side is _LONG else min(prev, price)


def position_roi(pos: Position, price: float) -> float:
    """`money.position_roi`, the same arithmetic, without re-checking what is known."""
    entry, lev = pos.entry, pos.leverage
    if not (valid_price(entry) and valid_price(price)) or not math.isfinite(lev):
        return 0.0
    lev = max(lev, 0.0)
    d = 1 if pos.side is _LONG else -1
    v = lev * (d * (price - entry) - pos.fee_rate * (entry + price)) / entry
    return v if math.isfinite(v) else 0.0


def make_ctx(pos: Position, mkt: MarketState, params: Params) -> Ctx:
    price = mkt.price
    if type(price) is not float:
        price = float(price)
    side = pos.side
    d = 1 if side is _LONG else -1
    entry = pos.entry
    # `valid_price(entry) and valid_price(price)`, the usual floats tested inline
    if (0.0 < entry < _INF if type(entry) is float else valid_price(entry)) \
            and 0.0 < price < _INF:
        lev = pos.leverage
        if _isfinite(lev):  # `position_roi`, inlined (the same arithmetic)
            if lev < 0.0:  # `max(lev, 0.0)`
                lev = 0.0
            r = lev * (d * (price - entry) - pos.fee_rate * (entry + price)) / entry
            if not _isfinite(r):
                r = 0.0
        else:
            r = 0.0
        mv = d * (price - entry) / entry
        if not _isfinite(mv):
            mv = 0.0
    else:
        r = mv = 0.0
    peak = pos.peak_roi
    if not _isfinite(peak):
        peak = 0.0
    age = mkt.ts - pos.opened_at
    if not _isfinite(age):
        age = 0.0
    prev = pos.best_price
    if not (0.0 < prev < _INF if type(prev) is float else valid_price(prev)):
        prev = entry
    if d > 0:  # `max(prev, price)` / `min(prev, price)`: the first of equals
        best = price if price > prev else prev
    else:
        best = price if price < prev else prev
    t = mkt.market.tick_size
    # `Ctx(pos, mkt, params, price, …)`, its slots stored here: the class call and its
    # generated __init__ cost more than the stores (one context per evaluation and band)
    ctx = _new(Ctx)
    ctx.pos = pos
    ctx.mkt = mkt
    ctx.params = params
    ctx.price = price
    ctx.roi = r
    ctx.peak = r if r > peak else peak
    ctx.move = mv
    ctx.best = best
    ctx.age = 0.0 if age < 0.0 else age
    ctx.side = side
    ctx.dir = d
    ctx.tick = t if _isfinite(t) and t > 0 else 0.0
    return ctx


_new = object.__new__


_isfinite = math.isfinite


_PLAIN = frozenset({str, int, bool, type(None)})


def clean(value: object) -> Scalar:
    """A value safe for `Action.inputs`: finite numbers, strings, bools or None."""
    t = type(value)
    if t is float:
        return value if math.isfinite(value) else None  # type: ignore[arg-type, return-value]
    if t is str or t is int or t is bool or value is None:
        return value  # type: ignore[return-value]
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)


def action(ctx: Ctx, type_: ActionType, reason: Reason, rule: str, priority: Priority, *,
           qty: float | None = None, sl: float | None = None, tp: float | None = None,
           price: float | None = None, inputs: Mapping[str, object] | None = None,
           flags: Iterable[str] = (), stop_kind: StopKind | None = None,
           limit: bool = False) -> Action:
    """An Action with the common inputs (price, roi, peak, move) and every number finite."""
    base: dict[str, object] = {"price": ctx.price, "roi": ctx.roi, "peak": ctx.peak,
                               "move": ctx.move}
    if inputs:
        base.update(inputs)
    # `clean` of every value: a pass that only looks, the usual finite floats and plain
    # scalars kept as they are; anything else (rare) replaced in a second pass
    for v in base.values():
        t = type(v)
        if t is float:
            if v - v != 0.0:  # type: ignore[operator]
                break  # inf or NaN
        elif t is not str and t is not int and t is not bool and v is not None:
            break
    else:
        v = None
    if v is not None:
        base = {k: v if (type(v) is float and v - v == 0.0) or type(v) in _PLAIN
                else clean(v) for k, v in base.items()}
    if not ((qty is None or 0 < qty < _INF) and (sl is None or 0 < sl < _INF)
            and (tp is None or 0 < tp < _INF) and (price is None or 0 < price < _INF)):
        for name, v in (("qty", qty), ("sl", sl), ("tp", tp), ("price", price)):
            if v is not None and not (math.isfinite(v) and v > 0):
                raise ValidationError(f"rule {rule} produced an invalid {name}: {v!r}",
                                      field=name)
    ts = ctx.mkt.ts
    return _new_action(
        type_, reason, ctx.pos.id, ctx.price if price is None else price, qty, sl, tp, rule,
        _INT_PRIORITY.get(priority) or int(priority), ts if math.isfinite(ts) else 0.0,
        MappingProxyType(base),  # `frozen_map` without its copy: `base` is this call's own
        _NO_FLAGS if flags == () else frozenset(flags), stop_kind, limit)


_INT_PRIORITY = {p: int(p) for p in Priority}
_NO_FLAGS: frozenset[str] = frozenset()


_new_action = slot_constructor(Action)  # an action is built on most ticks out of the band


def close_all(ctx: Ctx, reason: Reason, rule: str, priority: Priority,
              inputs: Mapping[str, object] | None = None,
              flags: Iterable[str] = ()) -> Action:
    return action(ctx, ActionType.CLOSE, reason, rule, priority, qty=ctx.pos.qty,
                  inputs=inputs, flags=flags)


# Tick arithmetic -------------------------------------------------------------------------

def _decimals(step: float) -> int:
    if step <= 0:
        return 12
    return max(0, min(12, -math.floor(math.log10(step) + 1e-12) + 2))



def ceil_to(value: float, step: float) -> float:
    if step <= 0:
        return value
    return round(math.ceil(value / step - _EPS) * step, _decimals(step))


def add_on_open_since(flags: frozenset[str]) -> float | None:
    """Market time the resting add-on order was placed, or None when none is resting."""
    for f in flags:
        if f.startswith(ADD_ON_OPEN_PREFIX):
            try:
                ts = float(f[len(ADD_ON_OPEN_PREFIX):])
            except ValueError:
                return 0.0
            return ts if math.isfinite(ts) else 0.0
    return None


def stop_due(ctx: Ctx, candidate: float) -> bool:
    """`candidate` is tighter than the current SL but the price has already crossed it: a
    stop moved there would trigger at once, so the position closes at market instead."""
    price = ctx.price
    if type(candidate) is float and not (price <= candidate if ctx.dir > 0
                                         else price >= candidate):
        return False  # not crossed (`money.stop_hit` below is false), without the calls
    if not valid_price(candidate) or not money.stop_hit(ctx.side, candidate, ctx.price):
        return False
    sl = ctx.pos.sl
    return sl is None or not math.isfinite(sl) or money.is_improvement(ctx.side, sl, candidate)


def stop_improves(ctx: Ctx, candidate: float, min_step: float = 0.0) -> bool:
    """`candidate` is strictly tighter than the current SL (by more than `min_step`, a price
    fraction) and still on the safe side of the price by at least one tick (a stop that would
    trigger at once is never placed).

    Why levels are not rounded here: the local stop is exact, so it ratchets exactly as the
    formula says (freqtrade's best·(1 - d)); the engine rounds the exchange order's trigger
    to the tick when it mirrors the level (`Market.round_price`).
    """
    if not (0.0 < candidate < _INF if type(candidate) is float else valid_price(candidate)):
        return False
    tick, price = ctx.tick, ctx.price
    if ctx.side is _LONG:
        if candidate > price - tick or candidate >= price:
            return False
    elif candidate < price + tick or candidate <= price:
        return False
    sl = ctx.pos.sl
    if sl is None or not _isfinite(sl):
        return True
    if not (candidate > sl if ctx.dir > 0 else candidate < sl):  # money.is_improvement
        return False
    gain = abs(candidate - sl)
    return gain > 1e-12 * max(abs(sl), 1.0) and gain >= min_step * ctx.price

