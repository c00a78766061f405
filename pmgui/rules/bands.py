"""Quiet bands (DESIGN §10): the prices and times at which a position's rules cannot act.

Why: a tick concerns a position only when it can change something. Every rule family reads
the price through a few monotone quantities (the price itself against SL/TP/tranche levels,
the ROI, the unleveraged move, R multiples, the distance to an EMA, the progress to TP) or
through levels that are fixed until the position, the parameters or a candle changes. So
after an evaluation the set of prices at which nothing can happen is known in advance: the
engine keeps `QuietBand(lo, hi, until)` per position and evaluates only a tick outside it.

Contract (`quiet_band`): computed right after an evaluation at `mkt` with the position as it
then is. For any price p and market time ts with `band.holds(p, ts)`, with the same `pos`
object, the same params and the same indicator values:

    observe(pos, p) is pos   and   evaluate(pos, replace(mkt, price=p, ts=ts), params) == []

The engine drops the band whenever the position object changes, the params change or a
candle of the symbol closes. `None` means "no band: evaluate every tick" — a closed or
unusable position, a price at which something acts, or a state no family can bound.

How it is computed: each family reports the **firing sets** — closed price intervals in
which it may act (a superset of where it does) — and timers (the market time at which an
age/wait threshold is reached). The band is the gap between the nearest firing sets around
the current price, and `until` the earliest timer. Anything computed (ROI, move, R, EMA
distance inverted to a price) is widened by a relative margin (`_REL`, far above float
error and far below a tick), so rounding never lets a band cover a price that acts. Prices
compared exactly by the rules (SL, TP, tranche levels, the best price) are used exactly.

Time: timers are set only for thresholds that become true as time passes (age, waits,
staleness). A rule that an age threshold *disables* (scaling's max age, dynamic TP's
extension once stale) is treated as enabled: the band then also holds for an earlier ts.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

from pmgui.domain import money
from pmgui.domain.enums import PositionStatus, Side
from pmgui.domain.models import MarketState, Position
from pmgui.domain.timeframes import seconds
from pmgui.rules import stops, targets
from pmgui.rules.adds import at_breakeven
from pmgui.rules.common import (
    FLAG_ADD_ON,
    FLAG_BOOKED_1,
    FLAG_BOOKED_2,
    FLAG_BREAKEVEN,
    FLAG_SCALED,
    FLAG_TP1,
    FLAG_TP2,
    FLAG_TP_EXTENDED,
    FLAG_TP_PULLED_IN,
    THRESHOLD_EPS,
    TRANCHE_CLOSED_PREFIX,
    Ctx,
    _timeframes,
    add_on_open_since,
    ge,
    gt,
    le,
    make_ctx,
    valid_price,
)
from pmgui.rules.params import Params
from pmgui.rules.sizing import add_size

__all__ = ["BandGate", "QuietBand", "quiet_band", "trend_lane"]

_LONG = Side.LONG  # a module constant: an enum member lookup costs ~0.1 µs
_SHORT = Side.SHORT
_EPS = THRESHOLD_EPS
_REL = 1e-9
"""Relative widening of every computed price edge (1e-9 of the price: about 1e7 times the
float error of the ROI/move formulas, 1e-7 of a 0.01 % tick)."""
_ROI_ABS = 1e-12
_TIME_MARGIN = 1e-3
"""Seconds a timer fires early (market time is float seconds since the epoch: 2e-7 ulp)."""
_INF = math.inf
_isfinite = math.isfinite
_OPEN = PositionStatus.OPEN


@dataclass(frozen=True, slots=True)
class QuietBand:
    """Prices strictly inside (lo, hi) before market time `until` cannot make the rules act."""

    lo: float  # exclusive: a price <= lo must be evaluated
    hi: float  # exclusive: a price >= hi must be evaluated
    until: float  # a tick with ts >= until must be evaluated; math.inf when no timer

    def holds(self, price: float, ts: float) -> bool:
        return self.lo < price < self.hi and ts < self.until


_QUIET_BAND = QuietBand
_new = object.__new__
_set_lo = QuietBand.lo.__set__  # type: ignore[attr-defined]
_set_hi = QuietBand.hi.__set__  # type: ignore[attr-defined]
_set_until = QuietBand.until.__set__  # type: ignore[attr-defined]


class _Unbounded(Exception):
    """A family acts at the current price, or cannot be bounded: no band."""


_NO_INDICATORS = object()  # no indicators are these


class _Fixed:
    """What a position's band reads that depends only on its side, entry, TP, leverage and
    fees (and the Params): the ROI → price conversion with its products taken once, and —
    filled when first needed — the emergency and smart-TP firing sets, the trailing
    ROI regions as price intervals and breakeven+'s level. A position's ticks bring a new
    Position object each time its peak, best price or stop moves, the same five values
    (the same objects: an evolved position shares them) — so they reuse one `_Fixed`
    (`_fixed`, kept per Params).
    """

    __slots__ = ("bp", "de", "dir", "dmf", "e", "entry", "f", "fe", "fee_rate", "lev",
                 "leverage", "regions", "roi_ok", "sets", "side", "t_dists", "t_falling", "t_ind",
                 "t_tind",
                 "tp")

    def __init__(self, pos: Position) -> None:
        # the key (the objects themselves: `is` on them is equality, and held here an id
        # is never another object's)
        self.side, self.entry, self.tp = pos.side, pos.entry, pos.tp
        self.leverage, self.fee_rate = pos.leverage, pos.fee_rate
        self.sets: list[tuple[float, float]] | None = None
        self.regions: tuple[tuple[float, float] | None, ...] | None = None
        self.t_ind: object = _NO_INDICATORS  # the indicators of `t_dists`
        self.t_tind: object = _NO_INDICATORS  # and tightening's (`_trailing_distances`)
        self.bp: tuple[float | None, float | None] | None = None  # `_breakeven_plus_fixed`
        self.t_dists: tuple[float, ...] = ()
        self.t_falling = False  # `t_dists` never rises from a region to the next
        d = self.dir = 1 if pos.side is _LONG else -1
        e = self.e = pos.entry
        lev, f = pos.leverage, pos.fee_rate
        if type(lev) is float and type(f) is float:  # the usual case: the test below
            ok = 0.0 < lev < _INF and -0.5 < f < 0.5
        else:
            ok = (isinstance(lev, (int, float)) and not isinstance(lev, bool)
                  and math.isfinite(lev) and lev > 0 and isinstance(f, (int, float))
                  and math.isfinite(f) and -0.5 < f < 0.5)
        self.roi_ok = ok
        if ok:
            lev, f = float(lev), float(f)
        else:
            lev, f = 1.0, 0.0
        self.lev = lev
        self.f = f
        self.de = d * e
        self.fe = f * e
        self.dmf = d - f

    def roi_interval(self, r1: float, r2: float) -> tuple[float, float] | None:
        """The prices at which the ROI is in [r1, r2], widened as `fire_approx` (None: no
        price); `_Builder.fire_roi`'s arithmetic."""
        if not self.roi_ok:
            raise _Unbounded
        if r1 > r2:
            return None
        d = self.dir
        if r1 == -_INF:
            a = -_INF * d
        else:
            r = r1 - _ROI_ABS * (1.0 + abs(r1))
            a = (r * self.e / self.lev + self.de + self.fe) / self.dmf
        if r2 == _INF:
            b = _INF * d
        else:
            r = r2 + _ROI_ABS * (1.0 + abs(r2))
            b = (r * self.e / self.lev + self.de + self.fe) / self.dmf
        if d < 0:
            a, b = b, a
        if a > b:
            return None
        return a - abs(a) * _REL, b + abs(b) * _REL


class _Builder:
    """The band being narrowed: the nearest firing edges below and above `p0` and the
    earliest timer; `fx` the position's fixed parts (`_Fixed`)."""

    __slots__ = ("fx", "hi", "lo", "p0", "until")

    def __init__(self, fx: _Fixed, p0: float) -> None:
        self.fx = fx
        self.p0 = p0
        self.lo = -_INF
        self.hi = _INF
        self.until = _INF

    # firing sets ------------------------------------------------------------------------
    def fire(self, x: float, y: float) -> None:
        """The rules may act at prices in the closed interval [x, y]."""
        p0 = self.p0
        if y < p0:
            if y > self.lo:
                self.lo = y
        elif x > p0:
            if x < self.hi:
                self.hi = x
        else:  # contains the current price, or NaN
            raise _Unbounded

    def fire_approx(self, x: float, y: float) -> None:
        """[x, y] computed with float error: widened by the relative margin."""
        if x > y:
            return
        x = x - abs(x) * _REL  # `self.fire(x, y)` of the widened interval, inlined
        y = y + abs(y) * _REL
        p0 = self.p0
        if y < p0:
            if y > self.lo:
                self.lo = y
        elif x > p0:
            if x < self.hi:
                self.hi = x
        else:
            raise _Unbounded

    def fire_roi(self, r1: float, r2: float) -> None:
        """The rules may act while the ROI is in [r1, r2] (ROI is monotone in the price)."""
        fx = self.fx
        if not fx.roi_ok:
            raise _Unbounded
        if r1 > r2:
            return
        d = fx.dir
        # the prices at r1 and r2: `(r * e / lev + d * e + f * e) / (d - f)`
        # (`money.price_at_roi`'s formula), widened as `fire_approx` (`_Fixed.roi_interval`
        # and `self.fire`, inlined)
        if r1 == -_INF:
            a = -_INF * d
        else:
            r = r1 - _ROI_ABS * (1.0 + abs(r1))
            a = (r * fx.e / fx.lev + fx.de + fx.fe) / fx.dmf
        if r2 == _INF:
            b = _INF * d
        else:
            r = r2 + _ROI_ABS * (1.0 + abs(r2))
            b = (r * fx.e / fx.lev + fx.de + fx.fe) / fx.dmf
        if d < 0:
            a, b = b, a
        if a > b:
            return
        x = a - abs(a) * _REL
        y = b + abs(b) * _REL
        p0 = self.p0
        if y < p0:
            if y > self.lo:
                self.lo = y
        elif x > p0:
            if x < self.hi:
                self.hi = x
        else:
            raise _Unbounded

    def at_ts(self, ts: float) -> None:
        """Evaluate again from market time `ts` on."""
        if ts < self.until:
            self.until = ts

    def band(self, now: float) -> QuietBand | None:
        lo, hi, until = self.lo, self.hi, self.until
        if not lo < self.p0 < hi or not until > now:
            return None
        if QuietBand is not _QUIET_BAND:
            return QuietBand(lo, hi, until)  # replaced (the tests' mutants)
        band = _new(_QUIET_BAND)  # `QuietBand(lo, hi, until)` without the frozen __init__
        _set_lo(band, lo)
        _set_hi(band, hi)
        _set_until(band, until)
        return band


def _age(pos: Position, ts: float) -> float:
    a = ts - pos.opened_at
    return max(a if math.isfinite(a) else 0.0, 0.0)


def _age_timer(b: _Builder, pos: Position, now: float, threshold_s: float) -> bool:
    """Whether the age (seconds) is already >= threshold_s (with the rules' tolerance);
    if not, a timer at the moment it will be."""
    if ge(_age(pos, now), threshold_s):
        return True
    if math.isfinite(pos.opened_at) and math.isfinite(threshold_s):
        at = pos.opened_at + threshold_s
        b.at_ts(at - _TIME_MARGIN - 4 * math.ulp(at))
    return False


def _hours_timer(b: _Builder, pos: Position, now: float, hours: float, strict: bool) -> bool:
    """`ge` (or `gt` when strict) of the age in hours against `hours`; timer if not yet."""
    h = _age(pos, now) / 3600.0
    if (gt(h, hours) if strict else ge(h, hours)):
        return True
    if math.isfinite(pos.opened_at) and math.isfinite(hours):
        at = pos.opened_at + 3600.0 * hours
        b.at_ts(at - _TIME_MARGIN - 4 * math.ulp(at))
    return False


def _price_level_stop(b: _Builder, side: Side, level: float | None) -> None:
    """A stop-like level: price <= level (long) / >= level (short) acts (exact compare)."""
    if level is None:
        return
    if side is _LONG:
        b.fire(-_INF, level)
    else:
        b.fire(level, _INF)


def _price_level_target(b: _Builder, side: Side, level: float | None) -> None:
    if level is None:
        return
    if side is _LONG:
        b.fire(level, _INF)
    else:
        b.fire(-_INF, level)


def _could_move_stop(pos: Position, level: float | None) -> bool:
    """Whether a stop rule with this level could act at some price: a move or a due close
    both need the level to tighten the current SL."""
    if level is None or not valid_price(level):
        return False
    sl = pos.sl
    if sl is None or not math.isfinite(sl):
        return True
    return level > sl if pos.side is _LONG else level < sl  # money.is_improvement


# families ----------------------------------------------------------------------------------

_Protection = tuple[bool, bool, bool, bool]  # stop, target, instant target, tranches


def _protection_params(params: Params) -> _Protection:
    return (params.enabled("stop_loss"), params.enabled("take_profit"),
            bool(params["take_profit.instant"]), params.enabled("tranches"))


def _protection(b: _Builder, pos: Position, protection: _Protection) -> None:
    side = pos.side
    sl_on, tp_on, instant, tranches = protection  # `_protection_params`
    if sl_on and (sl := pos.sl) is not None:  # `_price_level_stop(b, side, sl)`, inlined
        if side is _LONG:  # `b.fire(-_INF, sl)`
            if sl < b.p0:
                if sl > b.lo:
                    b.lo = sl
            else:
                raise _Unbounded
        elif sl > b.p0:  # `b.fire(sl, _INF)`
            if sl < b.hi:
                b.hi = sl
        else:
            raise _Unbounded
    if tranches and pos.tranches:
        closed = {f[len(TRANCHE_CLOSED_PREFIX):] for f in pos.flags
                  if f.startswith(TRANCHE_CLOSED_PREFIX)}
        for t in pos.tranches:
            if t.id in closed or not (math.isfinite(t.qty) and t.qty > 0):
                continue
            _price_level_stop(b, side, t.sl)
            if instant:  # `exits.tranche_targets`: the position's TP for one without its own
                _price_level_target(b, side, t.tp if t.tp is not None
                                    else pos.tp if tp_on else None)
    if tp_on and instant and not (tranches and pos.tranches):
        _price_level_target(b, side, pos.tp)


def _observe(b: _Builder, pos: Position) -> None:
    best, peak = pos.best_price, pos.peak_roi
    if not ((0.0 < best < _INF if type(best) is float else valid_price(best))
            and -_INF < peak < _INF):  # `valid_price(best)`, `math.isfinite(peak)`
        raise _Unbounded  # observe records a new value on every tick
    assert best is not None
    long = pos.side is _LONG
    p0 = b.p0  # `b.fire` of the prices beyond the best one, inlined
    if long:
        x = math.nextafter(best, _INF)
        if x > p0:
            if x < b.hi:
                b.hi = x
        else:
            raise _Unbounded
    else:
        y = math.nextafter(best, -_INF)
        if y < p0:
            if y > b.lo:
                b.lo = y
        else:
            raise _Unbounded
    lev, e, f = pos.leverage, pos.entry, pos.fee_rate
    # `_roi_monotone(pos, best)`, inlined
    if not (f >= 0 if not long else f <= 0 or (f <= 0.01 and best >= e / 2)):
        b.fire_roi(peak, _INF)  # a new peak ROI
        return
    if (0.0 < e < _INF if type(e) is float else valid_price(e)) and _isfinite(lev):
        if lev < 0.0:  # `position_roi(pos, best)`, inlined: `max(lev, 0.0)`
            lev = 0.0
        r = lev * ((1 if long else -1) * (best - e) - f * (e + best)) / e
        if not _isfinite(r):
            r = 0.0
    else:
        r = 0.0
    if not r <= peak:
        b.fire_roi(peak, _INF)  # a new peak ROI


def _roi_monotone(pos: Position, best: float) -> bool:
    """Whether the float ROI (`position_roi`) never decreases towards the best price, so a
    price no better than the best has an ROI no higher than the best's.

    Each float operation rounds monotonically. A short's ROI is fl(fl(-(p - e)) - fl(f·(e
    + p))): both terms fall as p rises, so it is monotone for f >= 0; a long's for f <= 0.
    A long with a fee has two terms rising with p; the difference is monotone while the
    fee term's rounding (a fraction f of the price's ulp) stays below the price term's
    step: small fees and a price term on the price's own scale (best >= entry / 2). Checked
    on 6e6 float-adjacent prices (entries 1e-4..1e5, fees to 1%, leverage 0.5..125)."""
    f = pos.fee_rate
    if pos.side is _SHORT:
        return f >= 0
    return f <= 0 or (f <= 0.01 and best >= pos.entry / 2)


def _emergency(b: _Builder, p: Params) -> None:
    thr = max(p.f("emergency.liquidation_roi"), p.f("emergency.severe_roi"),
              p.f("emergency.excessive_roi"))
    b.fire_roi(-_INF, thr + _EPS)


_Tier = tuple[float, float | None, float | None]


def _smart_tp_tiers(p: Params) -> tuple[_Tier, ...]:
    """Smart TP's tiers as `_smart_tp` reads them, once per Params: (move − tolerance, the
    long's and the short's TP divisors `1 + dist + tolerance` / `1 − dist − tolerance`;
    None for the tier without a TP distance) — the same floats, evaluated in the same
    order as the per-call expressions they replace."""
    tiers: list[tuple[float, float | None]] = [(p.f("smart_tp.always_move"), None)]
    for i in (1, 2, 3, 4):
        tiers.append((p.f(f"smart_tp.t{i}_move"), p.f(f"smart_tp.t{i}_tp_dist")))
    return tuple((move_min - _EPS,
                  None if dist_min is None else 1 + dist_min + _EPS,
                  None if dist_min is None else 1 - dist_min - _EPS)
                 for move_min, dist_min in tiers)


def _smart_tp(b: _Builder, pos: Position, p: Params) -> None:
    tp = pos.tp
    if tp is not None and not money.valid_price(tp):
        raise _Unbounded
    e, d = pos.entry, (1 if pos.side is _LONG else -1)
    for a, up, down in p.memo(_smart_tp_tiers, _smart_tp_tiers):
        if d > 0:
            x = e * (1 + a)
            y = _INF if (tp is None or up is None) else tp / up
        else:
            y = e * (1 - a)
            x = -_INF if (tp is None or down is None) else tp / down
        b.fire_approx(x, y)


def _momentum_params(p: Params) -> tuple[float, float, float, float, float]:
    return (p.f("momentum_loss.min_peak"), p.f("momentum_loss.giveback"),
            p.f("momentum_loss.band_low"), p.f("momentum_loss.band_high"),
            p.f("momentum_loss.band_giveback"))


def _momentum_edges(p: Params) -> tuple[float, float, float, float, float]:
    """`_momentum_params` with their tolerances applied (the same floats, once per Params)."""
    min_peak, full, lo, hi, band = _momentum_params(p)
    return min_peak - _EPS, 1 - full + _EPS, lo - _EPS, hi + _EPS, 1 - band + _EPS


def _momentum_loss(b: _Builder, ctx: Ctx, p: Params, now: float) -> None:
    _momentum_fire(b, ctx.pos.peak_roi, p)


def _momentum_fire(b: _Builder, peak: float, p: Params) -> None:
    """Momentum loss's firing sets for a position whose peak ROI is `peak` (within the band
    the ROI never exceeds it: the observe edge)."""
    try:  # `p.memo(_momentum_edges, …)` without the method call
        min_peak, full, lo, hi, band = p._memo[_momentum_edges]
    except KeyError:
        min_peak, full, lo, hi, band = p.memo(_momentum_edges, _momentum_edges)
    if peak < min_peak or peak <= 0:
        return
    b.fire_roi(-_INF, peak * full)
    top = peak * band
    b.fire_roi(lo, top if top < hi else hi)  # `min(hi, top)`


def _fire_r(b: _Builder, pos: Position, risk: float, r_min: float) -> None:
    """pnl_r >= r_min (with the rules' tolerance) acts."""
    x = pos.entry + (1 if pos.side is _LONG else -1) * risk * (r_min - _EPS)
    if pos.side is _LONG:
        b.fire_approx(x, _INF)
    else:
        b.fire_approx(-_INF, x)


def _r_targets(b: _Builder, ctx: Ctx, p: Params) -> None:
    pos = ctx.pos
    flags = pos.flags
    risk = money.risk_per_unit(pos.entry, pos.initial_sl)
    if risk is not None:
        if FLAG_TP1 not in flags:
            _fire_r(b, pos, risk, p.f("r_targets.tp1_r"))
        elif FLAG_TP2 not in flags:
            _fire_r(b, pos, risk, p.f("r_targets.tp2_r"))
    # breakeven_after_tp1
    if FLAG_TP1 in flags and FLAG_BREAKEVEN not in flags and _could_move_stop(
            pos, stops.breakeven_level(ctx)):
        raise _Unbounded


def _profit_booking(b: _Builder, pos: Position, p: Params, now: float) -> None:
    flags = pos.flags
    if FLAG_BOOKED_2 not in flags:
        b.fire_roi(p.f("profit_booking.level2_roi") - _EPS, _INF)
    if FLAG_BOOKED_1 not in flags and FLAG_BOOKED_2 not in flags and _age_timer(
            b, pos, now, p.f("profit_booking.level1_min_age")):
        b.fire_roi(p.f("profit_booking.level1_roi") - _EPS, _INF)


def _breakeven_plus(b: _Builder, ctx: Ctx, p: Params) -> None:
    fx = b.fx
    kept = fx.bp
    if kept is None:
        kept = fx.bp = _breakeven_plus_fixed(ctx, p)
    level, edge = kept
    if edge is not None and _could_move_stop(ctx.pos, level):
        b.fire_roi(edge, _INF)


def _breakeven_plus_fixed(ctx: Ctx, p: Params) -> tuple[float | None, float | None]:
    """(breakeven+'s level, the ROI from which it acts; None: never) — they depend only on
    the side, entry, leverage and fees and the Params, so they are kept in the position's
    `_Fixed`."""
    lev = ctx.pos.leverage
    if not (isinstance(lev, (int, float)) and lev > 0):
        return None, None
    return stops.breakeven_plus_level(ctx), p.f("breakeven_plus.min_roi") - _EPS


def _trailing_plan(p: Params) -> tuple[stops._TrailCfg,
                                       tuple[tuple[float, float, float], ...] | None,
                                       tuple[float, ...]]:
    """(`stops.trailing_config`, `_trailing_reps`): one memo for the band's trailing."""
    regions, reps = p.memo(_trailing_reps, _trailing_reps)
    return stops.trailing_config(p), regions, reps


def _region_prices(fx: _Fixed, regions: tuple[tuple[float, float, float], ...]
                   ) -> tuple[tuple[float, float] | None, ...]:
    """The price interval of each ROI region (`b.fire_roi`'s), for `fx.regions`."""
    return tuple(fx.roi_interval(lo, hi) for lo, hi, _ in regions)


def _trailing(b: _Builder, ctx: Ctx, p: Params, now: float) -> None:
    pos = ctx.pos
    try:  # `p.memo(_trailing_plan, …)` without the method call
        c, regions, reps = p._memo[_trailing_plan]
    except KeyError:
        c, regions, reps = p.memo(_trailing_plan, _trailing_plan)
    if c.after_breakeven and not stops.breakeven_reached(ctx):
        return
    mode = c.mode
    if mode == "chandelier":
        level = stops.trailing_stop_level(ctx)
        if level is not None and level > 0 and _could_move_stop(pos, level):
            raise _Unbounded  # the level is fixed: it acts at (nearly) any price
        return
    # fixed / adaptive: best · (1 ∓ distance), the best price fixed inside the band; the
    # distance depends on the price only through ROI thresholds (`gt`), and on time only
    # through tightening's hours beyond start (while roi > 0)
    timed = False
    if c.tightening:
        timed = _hours_timer(b, pos, now, c.t_start_hours, strict=True)
    roi = ctx.roi
    prices = None  # the regions' price intervals, when they are the Params' own
    dists: tuple[float, ...] = ()  # the regions' distances, when kept (no tightening)
    levels: list[float | None] = []
    if regions is None:
        regions, reps = ((-_INF, _INF, roi),), (roi,)
        levels = stops.trailing_stop_levels(ctx, reps)
    else:
        if timed:  # tightening's hours count: the distances change with the age
            levels = stops.trailing_stop_levels(ctx, reps)
        else:  # `trailing_stop_levels_at`: each level taken below only if looked at
            dists = _trailing_distances(b.fx, ctx.mkt, p, c, reps)
        prices = b.fx.regions
        if prices is None:
            prices = b.fx.regions = _region_prices(b.fx, regions)
    best, d_sign = ctx.best, ctx.dir
    if dists:  # the usual case: the kept distances and region prices
        _fire_regions(b, regions, prices, dists, roi, best, d_sign, pos.sl,  # type: ignore[arg-type]
                      b.fx.t_falling)
        return
    n = len(regions)
    here = 0  # the region of the current ROI
    while here < n - 1 and roi > regions[here][1]:
        here += 1
    sl = pos.sl
    any_sl = sl is None or not math.isfinite(sl)
    long = pos.side is _LONG
    # only the nearest firing range on each side of the current one can bound the band
    for order in (range(here, n), range(here - 1, -1, -1)):
        for k in order:
            level = levels[k]
            if level is None or level <= 0:
                continue
            if timed and gt(regions[k][2], 0.0) and not stops.tightening_floored(
                    ctx, regions[k][2]):
                pass  # tightens with every second: acts on every tick
            elif not ((0.0 < level < _INF if type(level) is float else valid_price(level))
                      and (any_sl or (level > sl if long else level < sl))):  # type: ignore[operator]
                continue  # `_could_move_stop`, inlined
            if prices is None:
                b.fire_roi(regions[k][0], regions[k][1])
            elif (xy := prices[k]) is not None:  # `b.fire_roi` of region k, kept
                x, y = xy
                p0 = b.p0
                if y < p0:
                    if y > b.lo:
                        b.lo = y
                elif x > p0:
                    if x < b.hi:
                        b.hi = x
                else:
                    raise _Unbounded
            break


def _trailing_distances(fx: _Fixed, mkt: MarketState, p: Params, c: stops._TrailCfg,
                        reps: tuple[float, ...]) -> tuple[float, ...]:
    """`stops.region_distances` of the Params' regions (before tightening's hours start),
    kept in the position's `_Fixed` (the Params, the side) with the indicators they were
    read from, the trail's and tightening's (the objects themselves: held there, checked
    with `is`) — a position's bands between two candle closes read the same ones."""
    if mkt.frames:  # `_indicator_parts`' indicators (`Ctx.frame`)
        tfs = p.memo(_timeframes, _timeframes)
        ind = mkt.indicators_for(tfs["trailing"])
        tind = mkt.indicators_for(tfs["tightening"]) if c.tightening else None
    else:
        ind = mkt.indicators
        tind = ind if c.tightening else None
    if fx.t_ind is ind and fx.t_tind is tind:
        return fx.t_dists
    dists = fx.t_dists = stops.region_distances(p, mkt, c, fx.dir, reps)
    fx.t_falling = all(a >= b for a, b in itertools.pairwise(dists))
    fx.t_ind, fx.t_tind = ind, tind
    return dists


def _fire_regions(b: _Builder, regions: tuple[tuple[float, float, float], ...],
                  prices: tuple[tuple[float, float] | None, ...], dists: tuple[float, ...],
                  roi: float, best: float, d_sign: int, sl: float | None,
                  falling: bool) -> None:
    """The trailing family of a fixed/adaptive trail whose distances do not change with
    time (`_trailing`'s usual case; a trend lane's bands, `_band_in_lane`): the ROI region
    nearest the current one on each side in which the level `best · (1 ∓ distance)` could
    move the stop (`_could_move_stop`) fires, as `b.fire_roi` of its kept prices.

    `falling`: no distance exceeds the one of the region below it (an adaptive trail's
    profit multipliers shrink as the ROI grows). Then a lower region's level is no tighter
    than the current one's (float products and differences round monotonically), so when
    the current one's is a finite positive level no tighter than a finite stop — the usual
    band right after a trailing move — no lower region fires and they are not walked."""
    n = len(regions)
    here = 0  # the region of the current ROI
    while here < n - 1 and roi > regions[here][1]:
        here += 1
    any_sl = sl is None or not _isfinite(sl)
    long = d_sign > 0
    lower = True  # the regions below the current one may fire
    # only the nearest firing range on each side of the current one can bound the band
    for order in (range(here, n), range(here - 1, -1, -1)):
        if not lower:
            break
        for k in order:
            level = best * (1 - d_sign * dists[k])
            if level <= 0 or not (
                    (0.0 < level < _INF if type(level) is float else valid_price(level))
                    and (any_sl or (level > sl if long else level < sl))):  # type: ignore[operator]
                if k == here and falling and not any_sl and 0.0 < level < _INF:
                    lower = False  # no lower region's level is tighter (see above)
                continue  # `_could_move_stop`, inlined
            if (xy := prices[k]) is not None:  # `b.fire_roi` of region k, kept
                x, y = xy
                p0 = b.p0
                if y < p0:
                    if y > b.lo:
                        b.lo = y
                elif x > p0:
                    if x < b.hi:
                        b.hi = x
                else:
                    raise _Unbounded
            break


def _trailing_reps(p: Params) -> tuple[tuple[tuple[float, float, float], ...] | None,
                                       tuple[float, ...]]:
    """`_trailing_regions` and their representative ROIs (one tuple object per Params: the
    trailing levels at them are cached for it, `stops.trailing_stop_levels_at`)."""
    regions = _trailing_regions(p)
    return regions, () if regions is None else tuple(rep for _, _, rep in regions)


def _trailing_regions(p: Params) -> tuple[tuple[float, float, float], ...] | None:
    """The ROI ranges inside which the fixed/adaptive trailing distance is the same (ROI
    range, a representative ROI inside it); None when it never depends on the ROI."""
    c = stops.trailing_config(p)
    cuts: set[float] = set()
    if c.mode == "adaptive":
        cuts.update(threshold + _EPS for threshold, _ in c.profit)
    if c.tightening:
        cuts.add(0.0 + _EPS)
    if not cuts:
        return None
    edges = sorted(cuts)
    regions = [(-_INF, edges[0], edges[0] - 1.0)]
    regions += [(lo, hi, (lo + hi) / 2) for lo, hi in itertools.pairwise(edges)]
    regions.append((edges[-1], _INF, edges[-1] + 1.0))
    return tuple(regions)


def _dynamic_tp_params(p: Params) -> tuple[float, float, float, float, float, float, float]:
    """(freeze_progress, strong_momentum, min_trend, fade_momentum, rsi_high, rsi_low,
    stale_hours), read once per Params."""
    return (p.f("dynamic_tp.freeze_progress"), p.f("dynamic_tp.strong_momentum"),
            p.f("dynamic_tp.min_trend"), p.f("dynamic_tp.fade_momentum"),
            p.f("dynamic_tp.rsi_high"), p.f("dynamic_tp.rsi_low"), p.f("dynamic_tp.stale_hours"))


def _dynamic_tp(b: _Builder, ctx: Ctx, p: Params, now: float) -> None:
    pos = ctx.pos
    tp, e, d = pos.tp, pos.entry, ctx.dir
    if tp is None or (tp - e) * d <= 0:
        return
    mkt = ctx.mkt
    ind = ctx.frame("dynamic_tp") if mkt.frames else mkt.indicators  # `ctx.frame`
    # the rule's own tests of the indicators, kept with them (`targets._gates`): the
    # extension's momentum and trend, the pull-in's last change, RSI stretched
    try:
        hot = p._memo[targets._dynamic_tp_hot]
    except KeyError:
        hot = p.memo(targets._dynamic_tp_hot, targets._dynamic_tp_hot)
    gates = hot[1]
    if gates[0] is not ind or gates[1] != d:
        gates = targets._gates(hot, ind, d)
    extend = gates[2] and FLAG_TP_EXTENDED not in pos.flags
    if not extend and not (gates[3] and FLAG_TP_PULLED_IN not in pos.flags):
        return  # neither change can act (the tests below, their indicator parts kept)
    try:
        limits = p._memo[_dynamic_tp_params]
    except KeyError:
        limits = p.memo(_dynamic_tp_params, _dynamic_tp_params)
    freeze, stale_hours = limits[0], limits[6]
    # progress = (p - e)/(tp - e) grows towards TP; frozen at progress >= freeze - eps
    p_freeze = e + (freeze - _EPS) * (tp - e)
    frozen_now = (ctx.price - e) / (tp - e) >= freeze - _EPS  # `ge`, written out
    if extend:  # `d * momentum >= strong - eps and d * trend >= min_trend - eps`
        if frozen_now:  # the whole unfrozen side may extend
            if d > 0:
                b.fire_approx(-_INF, p_freeze)
            else:
                b.fire_approx(p_freeze, _INF)
        else:
            if _extension_acts(ctx, p):
                raise _Unbounded
            # the barrier (nearest swing level beyond the price) is fixed between levels
            b.fire_approx(p_freeze, p_freeze)
            for s in (*ind.swing_highs, *ind.swing_lows):
                b.fire_approx(s, s)
    if not gates[3] or FLAG_TP_PULLED_IN in pos.flags:
        return  # no last change, or `le(d * last, fade)` false
    if gates[4] or _hours_timer(b, pos, now, stale_hours, strict=False):  # RSI stretched
        a = e + _EPS * (tp - e)  # progress > 0 (strictly, with tolerance) up to the freeze
        b.fire_approx(min(a, p_freeze), max(a, p_freeze))


def _extension_acts(ctx: Ctx, p: Params) -> bool:
    """Whether dynamic TP's extension acts at the current price (its staleness ignored)."""
    tp = ctx.pos.tp
    assert tp is not None
    level = targets.barrier(ctx.frame("dynamic_tp"), ctx.price, ctx.dir)
    return targets.extended_tp(ctx, tp, p.f("dynamic_tp.extend"), level) is not None


def _add_on(b: _Builder, ctx: Ctx, p: Params) -> None:
    pos = ctx.pos
    if FLAG_ADD_ON not in pos.flags:
        risk = money.risk_per_unit(pos.entry, pos.initial_sl)
        ema = ctx.frame("add_on").ema9
        if risk is not None and ema is not None and ema > 0:
            base = pos.initial_qty if pos.initial_qty > 0 else pos.qty
            qty = add_size(p.f("add_on.fraction") * base, ctx.market)
            if qty is not None and ctx.market.round_price(ema) > 0:
                band = p.f("add_on.ema_band") + _EPS
                x, y = ema * (1 - band), ema * (1 + band)
                d = 1 if pos.side is _LONG else -1
                r_edge = pos.entry + d * risk * (p.f("add_on.min_r") - _EPS)
                if pos.side is _LONG:
                    x = max(x, r_edge)
                else:
                    y = min(y, r_edge)
                b.fire_approx(x, y)
    since = add_on_open_since(pos.flags)
    if since is None:
        return
    if at_breakeven(ctx):
        raise _Unbounded
    ema = ctx.frame("add_on").ema9
    if ema is not None and ema > 0:
        cb = p.f("add_on.cancel_band") + _EPS
        b.fire_approx(-_INF, ema * (1 - cb))
        b.fire_approx(ema * (1 + cb), _INF)
    step = seconds(str(p["add_on.timeframe"]))
    max_wait = p.i("add_on.max_wait")
    waited = (ctx.mkt.ts - since) / step
    if math.isfinite(waited):
        if ge(waited, max_wait):
            raise _Unbounded
        at = since + (max_wait - _EPS) * step
        b.at_ts(at - _TIME_MARGIN - 4 * math.ulp(at))


def _scaling(b: _Builder, ctx: Ctx, p: Params) -> None:
    pos = ctx.pos
    if FLAG_SCALED in pos.flags:
        return
    ind = ctx.frame("scaling")
    mom, vol = ind.momentum, ind.volume
    if (mom is None or le(ctx.dir * mom, p.f("scaling.min_momentum")) or vol is None
            or le(vol, p.f("scaling.min_volume"))):
        return
    base = pos.initial_qty if pos.initial_qty > 0 else pos.qty
    room = p.f("scaling.max_size_mult") * base - pos.qty
    if add_size(min(p.f("scaling.fraction") * base, room), ctx.market) is None:
        return
    # age < max_age is ignored (conservative): only ever disables the rule
    b.fire_roi(p.f("scaling.min_roi") - _EPS, _INF)


class _Recorder(_Builder):
    """Records firing sets instead of narrowing a band (for `_static_sets`)."""

    __slots__ = ("sets",)

    def __init__(self, fx: _Fixed) -> None:
        super().__init__(fx, math.nan)
        self.sets: list[tuple[float, float]] = []

    def fire(self, x: float, y: float) -> None:
        self.sets.append((x, y))

    def fire_approx(self, x: float, y: float) -> None:
        """`_Builder.fire_approx`'s interval, recorded (its inlined `fire` would narrow)."""
        if x > y:
            return
        self.sets.append((x - abs(x) * _REL, y + abs(y) * _REL))

    def fire_roi(self, r1: float, r2: float) -> None:
        xy = self.fx.roi_interval(r1, r2)
        if xy is not None:
            self.sets.append(xy)


_UNBOUNDED: list[tuple[float, float]] = [(-_INF, _INF)]
# `_Fixed`s kept per Params: one Params (a preset without overrides) serves the whole book,
# each position with an entry of its own. At 1,024 a 2,000-position book emptied the cache
# over and over and built a `_Fixed` (and its emergency and ROI sets) for one band in two.
_CACHE_SIZE = 16384


def _fixed_of(holder: list, pos: Position) -> _Fixed:
    """The `_Fixed` of `pos`: the one last used while its objects are `pos`'s (`is`: the
    common case, a position evolved in its peaks or stop), else `_fixed`'s."""
    fx = holder[0]
    if fx.side is pos.side and fx.entry is pos.entry and fx.tp is pos.tp \
            and fx.leverage is pos.leverage and fx.fee_rate is pos.fee_rate:
        return fx
    return _fixed(holder, pos)


def _fixed(holder: list, pos: Position) -> _Fixed:
    """The `_Fixed` of `pos` (side, entry, TP, leverage, fees) among those kept for one
    Params: `holder` is [the one last used, {values: _Fixed}]. `_fixed_of` has checked the
    last one's objects with `is`; here by value and type (equal values of one type give
    equal results; a leverage of True equals 1.0 but is no leverage at all)."""
    cache = holder[1]
    entry, tp, lev, fee = pos.entry, pos.tp, pos.leverage, pos.fee_rate
    key = (pos.side, entry, tp, lev, fee, type(entry), type(tp), type(lev), type(fee))
    fx = cache.get(key)
    if fx is None:
        if len(cache) >= _CACHE_SIZE:
            cache.clear()
        fx = cache[key] = _Fixed(pos)
    holder[0] = fx
    return fx


def _static_sets(fx: _Fixed, pos: Position, params: Params) -> list[tuple[float, float]]:
    """Emergency tiers and smart TP: their firing sets depend only on the entry, TP, side,
    leverage and fees, so they are computed once per `_Fixed`."""
    rec = _Recorder(fx)
    try:
        if params.enabled("emergency"):
            _emergency(rec, params)
        if params.enabled("smart_tp"):
            _smart_tp(rec, pos, params)
        return rec.sets
    except _Unbounded:
        return _UNBOUNDED


Family = Callable[[_Builder, Ctx, Params, float], None]


HANDLED_RULES = frozenset({
    "stop_loss", "take_profit", "tranches", "emergency", "smart_tp", "momentum_loss",
    "r_targets", "profit_booking", "breakeven_plus", "trailing", "tightening", "dynamic_tp",
    "add_on", "scaling",
})
"""Rule ids whose band family is implemented here. A rule that is enabled but not listed
(a new rule without its family) gives no band at all: every tick is evaluated."""


def _unknown(b: _Builder, ctx: Ctx, p: Params, now: float) -> None:
    raise _Unbounded


_LANE_EXCLUDED = frozenset({"momentum_loss", "trailing"})
"""The families a trend lane leaves out (`trend_lane`): both run in the lane
(`policy.evaluate_trend`; momentum loss below the peak ROI only)."""


def _families(params: Params, lane: bool = False) -> tuple[Family, ...]:
    """The band families of the rules `params` enables (automation on), once per Params;
    `lane`: those of a trend lane (without `_LANE_EXCLUDED`)."""
    if any(on and rule not in HANDLED_RULES for rule, on in params._enabled.items()):
        return (_unknown,)
    table: tuple[tuple[str, Family], ...] = (
        ("momentum_loss", _momentum_loss),
        ("r_targets", lambda b, ctx, p, now: _r_targets(b, ctx, p)),
        ("profit_booking", lambda b, ctx, p, now: _profit_booking(b, ctx.pos, p, now)),
        ("breakeven_plus", lambda b, ctx, p, now: _breakeven_plus(b, ctx, p)),
        ("trailing", _trailing),
        ("dynamic_tp", _dynamic_tp),
        ("add_on", lambda b, ctx, p, now: _add_on(b, ctx, p)),
        ("scaling", lambda b, ctx, p, now: _scaling(b, ctx, p)),
    )
    return tuple(fn for rule, fn in table
                 if params.enabled(rule) and not (lane and rule in _LANE_EXCLUDED))


_LanePlan = tuple[tuple[Family, ...], _Protection, _Protection, tuple[Family, ...], bool,
                  tuple[bool, bool] | None]
_Plan = tuple[bool, tuple[Family, ...], _Protection, bool, list, _LanePlan | None]


def _plan(params: Params) -> _Plan:
    """Everything `quiet_band` and `trend_lane` read from the Params alone, in one memo: (an
    enabled rule without a family, the families, `_protection_params`, emergency or smart
    TP on, the `_Fixed` holder of `_fixed`, the trend lane's plan or None when the Params
    allow no lane: (its families, its protection (without the stop), the stop alone, the
    families it leaves out, whether its families read no stop))."""
    families = _families(params)
    lane: _LanePlan | None = None
    if _lane_allowed(params):
        sl_on, tp_on, instant, tranches = _protection_params(params)
        lane_families = _families(params, lane=True)
        rest = tuple(fn for fn in families if fn not in lane_families)
        lane = (lane_families, (False, tp_on, instant, tranches), (sl_on, False, False, False),
                rest, not (params.enabled("r_targets") or params.enabled("breakeven_plus")),
                _lane_rest_direct(params, rest))
    return (families == (_unknown,), families, _protection_params(params),
            params.enabled("emergency") or params.enabled("smart_tp"), [_NO_FIXED, {}], lane)


def _lane_rest_direct(params: Params, rest: tuple[Family, ...]) -> tuple[bool, bool] | None:
    """(momentum loss, trailing) when the families a lane leaves out are only those and
    trailing's are read without a context (`_band_in_lane`'s direct path: a fixed/adaptive
    trail with ROI regions, no breakeven gate, no tightening — `_trailing`'s usual case
    through `_fire_regions`); None otherwise (each family is called with a context)."""
    if not set(rest) <= {_momentum_loss, _trailing}:
        return None
    if _trailing in rest:
        c = stops.trailing_config(params)
        if (c.after_breakeven or c.mode not in ("fixed", "adaptive") or c.tightening
                or _trailing_regions(params) is None):
            return None
    return _momentum_loss in rest, _trailing in rest


def _lane_allowed(params: Params) -> bool:
    """Whether momentum loss stays silent at a zero give-back (a lane's ticks at the peak
    ROI, where `evaluate_trend` skips it), as its rule tests it (`ge(giveback, threshold)`
    of both tests)."""
    if not params.enabled("momentum_loss"):
        return True
    _, full, _, _, band = _momentum_params(params)
    return not 0.0 >= full - _EPS and not 0.0 >= band - _EPS


_NO_FIXED = _Fixed.__new__(_Fixed)  # matches no position (`side` is None)
_NO_FIXED.side = None  # type: ignore[assignment]


def quiet_band(pos: Position, mkt: MarketState, params: Params) -> QuietBand | None:
    """The band of prices/times inside which the rules cannot act (module docstring)."""
    b = _narrowed(pos, mkt, params, False)
    return None if b is None else b.band(mkt.ts)


def trend_lane(pos: Position, mkt: MarketState, params: Params) -> QuietBand | None:
    """The trend lane: the prices and times at which, of all the rules, only observe,
    trailing, momentum loss and the stop loss could act — computed like the band (the same
    moment, the same position), with every other family's firing sets around the price
    (None: no lane).

    Why: in a trend nearly every tick is a new best price, outside any band: observe records
    it and trailing moves the stop, while every other rule is as silent as inside the band.
    The lane lets such a tick — or a pull-back inside it, or one across the stop — run
    `policy.evaluate_trend` (trailing, momentum loss and the stop loss alone) instead of
    the whole policy. Contract, for a price p with `lane.holds(p, ts)`, the same params and
    indicators, and a position P that differs from `pos` at most in its stop (the same or
    tighter: `_lane_successor`), best price and peak ROI:

        evaluate(observe(P, p), mkt@(p, ts), params) == evaluate_trend(observe(P, p), …)

    Momentum loss is left out of the lane because it depends on the peak ROI: it runs in
    `evaluate_trend` below the peak (at the peak its give-back is zero: Params where that
    acts allow no lane, `_lane_allowed`, so it is skipped there); the stop's own level is
    left out because trailing moves it: the stop loss runs in `evaluate_trend` where it is
    crossed. A family that reads the stop (breakeven moves, an
    add-on's cancel at breakeven) reads it here as `pos` has it: a tighter stop can only
    silence the breakeven moves, and a resting add-on (whose cancel a tighter stop can
    start) allows no lane.
    """
    if not pos.automation or add_on_open_since(pos.flags) is not None:
        return None
    b = _narrowed(pos, mkt, params, True)
    return None if b is None else b.band(mkt.ts)


def _band_in_lane(lane: QuietBand, pos: Position, mkt: MarketState,
                  params: Params) -> QuietBand | None:
    """`quiet_band(pos, mkt, params)` for a successor `pos` (`_lane_successor`) of the
    position whose trend lane is `lane`, the price and time inside the lane, when the
    lane's families read no stop (`_LanePlan`'s fifth) or the stop is the lane position's:
    those families' firing sets are then the same, and none lies inside the lane, so the
    band is the lane narrowed by the rest alone — the stop, observe's edge, momentum loss
    and trailing of `pos` (the same sets `quiet_band` finds, the same band)."""
    price, now = float(mkt.price), mkt.ts
    plan = params._memo[_plan]
    lane_plan = plan[5]
    fx = _fixed_of(plan[4], pos)
    b = _Builder(fx, price)
    b.lo, b.hi, b.until = lane.lo, lane.hi, lane.until
    try:
        _protection(b, pos, lane_plan[2])  # the stop alone
        _observe(b, pos)
        rest = lane_plan[3]
        if not rest:
            pass
        elif (direct := lane_plan[5]) is not None:
            # momentum loss and trailing without a context: what they read of one is the
            # peak, the ROI and the best price at this price (`make_ctx`'s arithmetic)
            if direct[0]:
                _momentum_fire(b, pos.peak_roi, params)
            if direct[1]:
                _lane_trailing(b, fx, pos, mkt, params, price)
        else:
            ctx = make_ctx(pos, mkt, params)
            for family in rest:
                family(b, ctx, params, now)
    except _Unbounded:
        return None
    return b.band(now)


def _lane_trailing(b: _Builder, fx: _Fixed, pos: Position, mkt: MarketState, params: Params,
                   price: float) -> None:
    """`_trailing(b, make_ctx(pos, mkt, params), params, now)` for Params whose trail it
    decides by `_fire_regions` (`_lane_rest_direct`): the ROI and the best price at `price`
    as `make_ctx` computes them, the distances and region prices kept in `fx`."""
    try:  # `p.memo(_trailing_plan, …)` without the method call
        c, regions, reps = params._memo[_trailing_plan]
    except KeyError:
        c, regions, reps = params.memo(_trailing_plan, _trailing_plan)
    d = fx.dir
    entry = pos.entry
    if (0.0 < entry < _INF if type(entry) is float else valid_price(entry)) \
            and 0.0 < price < _INF:
        lev = pos.leverage
        if _isfinite(lev):  # `make_ctx`'s ROI (`position_roi`)
            if lev < 0.0:
                lev = 0.0
            roi = lev * (d * (price - entry) - pos.fee_rate * (entry + price)) / entry
            if not _isfinite(roi):
                roi = 0.0
        else:
            roi = 0.0
    else:
        roi = 0.0
    prev = pos.best_price
    if not (0.0 < prev < _INF if type(prev) is float else valid_price(prev)):
        prev = entry
    if d > 0:  # `make_ctx`'s best: `max(prev, price)` / `min(prev, price)`
        best = price if price > prev else prev
    else:
        best = price if price < prev else prev
    prices = fx.regions
    if prices is None:
        prices = fx.regions = _region_prices(fx, regions)
    dists = _trailing_distances(fx, mkt, params, c, reps)
    _fire_regions(b, regions, prices, dists, roi, best, d, pos.sl, fx.t_falling)


def _narrowed(pos: Position, mkt: MarketState, params: Params, lane: bool) -> _Builder | None:
    """The builder narrowed by every family of the band (`lane`: of the trend lane: no
    observe edge, the lane's families); None when there is no band."""
    if not isinstance(params, Params) or mkt.symbol != pos.symbol:
        return None
    price, now = mkt.price, mkt.ts
    qty, entry = pos.qty, pos.entry
    if type(price) is float and type(entry) is float and type(qty) is float \
            and type(now) is float:  # the usual case: the test below, without its calls
        if not (0.0 < price < _INF and pos.status is _OPEN and 0.0 < entry < _INF
                and 0 < qty < _INF and -_INF < now < _INF):
            return None
    elif not (valid_price(price) and pos.status is _OPEN and valid_price(entry)
              and isinstance(qty, (int, float)) and 0 < qty < _INF
              and isinstance(now, (int, float)) and -_INF < now < _INF):
        return None
    try:  # `params.memo(_plan, _plan)` without the method call
        unknown, families, protection, static, holder, lane_plan = params._memo[_plan]
    except KeyError:
        unknown, families, protection, static, holder, lane_plan = params.memo(_plan, _plan)
    if unknown:
        return None  # an enabled rule without a band family (protection included)
    if lane:
        if lane_plan is None:
            return None
        families, protection = lane_plan[0], lane_plan[1]
    fx = _fixed_of(holder, pos)
    b = _Builder(fx, float(price))
    try:
        _protection(b, pos, protection)
        automation = pos.automation
        if automation or static:  # paused, the loss caps still run (`policy._PIPELINE`)
            if not fx.roi_ok:
                return None
            if automation and not lane:
                _observe(b, pos)
            if static:  # the emergency and smart-TP sets (`_static_sets`), kept in `fx`;
                # paused, smart TP's only narrow the band (more evaluation, never less)
                sets = fx.sets
                if sets is None:
                    sets = fx.sets = _static_sets(fx, pos, params)
                p0, lo, hi = b.p0, b.lo, b.hi
                for x, y in sets:  # `b.fire(x, y)`, inlined
                    if y < p0:
                        if y > lo:
                            lo = y
                    elif x > p0:
                        if x < hi:
                            hi = x
                    else:
                        raise _Unbounded
                b.lo, b.hi = lo, hi
            if automation and families:
                ctx = make_ctx(pos, mkt, params)
                for family in families:
                    family(b, ctx, params, now)
    except _Unbounded:
        return None
    return b


def _lane_successor(of: tuple[Position, MarketState, Params], pos: Position,
                    mkt: MarketState, params: Params) -> bool:
    """Whether `trend_lane(*of)` is also `pos`'s lane at `mkt` (its contract's P): the same
    params, indicators and market, and a position that differs at most in its best price,
    peak ROI and a stop that is the same or tighter (trailing's moves and observe's
    records: every field a rule other than those reads is the same object)."""
    lp, lm, lparams = of
    if not (params is lparams and mkt.indicators is lm.indicators and mkt.frames is lm.frames
            and mkt.market is lm.market and pos.side is lp.side and pos.entry is lp.entry
            and pos.qty is lp.qty and pos.tp is lp.tp and pos.flags is lp.flags
            and pos.leverage is lp.leverage and pos.fee_rate is lp.fee_rate
            and pos.opened_at is lp.opened_at and pos.initial_qty is lp.initial_qty
            and pos.initial_sl is lp.initial_sl and pos.tranches is lp.tranches
            and pos.automation is lp.automation and pos.status is lp.status
            and pos.symbol is lp.symbol):
        return False
    was, sl = lp.sl, pos.sl
    if sl is was or was is None or not -_INF < was < _INF:
        return True  # the same stop, or none that a breakeven move had to beat
    return sl is not None and (sl >= was if pos.side is _LONG else sl <= was)


class BandGate:
    """One position's band, computed when it is first needed (for the engine's tick loop).

    `settle(pos, mkt, params)` after each evaluation (with the position as it now is);
    `quiet(price, ts)` on every tick: True when the tick is inside the band — the rules
    cannot act and observe records nothing, so the tick needs no evaluation. The band is
    exactly `quiet_band(pos, mkt, params)` of the last `settle`, only computed at the first
    tick that needs it: a tick beyond the recorded best price cannot be inside any band
    (its favourable edge is the best price while automation runs), so in a trend — every
    tick a new best, evaluated anyway — no band is computed just to be dropped. `clear()`
    when the position, its params or its indicators change outside an evaluation.

    `lane(price, ts)` for a tick that is not quiet: True when it is inside the trend lane
    (`trend_lane`) of the settled position — then `policy.evaluate_trend` decides it as
    `evaluate` would. The lane is computed at the first tick that asks (or band that needs
    it) and kept while the settled positions are its successors (`_lane_successor`: in a
    trend, each tick's trailing move), so a trend's ticks share one; their bands start
    from it (`_band_in_lane`: the same band, only the families it leaves out computed)."""

    __slots__ = ("_band", "_hi", "_lane", "_lane_hi", "_lane_lo", "_lane_of", "_lane_until",
                 "_last", "_lo", "_pending", "_stop_free", "_until")

    def __init__(self) -> None:
        self._band: QuietBand | None = None
        self._pending: tuple[Position, MarketState, Params] | None = None
        self._lo = self._hi = self._until = math.nan  # the band's edges (NaN: none)
        self._last: tuple[Position, MarketState, Params] | None = None  # the last settle
        self._lane_of: tuple[Position, MarketState, Params] | None = None  # lane computed
        self._lane: QuietBand | None = None  # the lane (`trend_lane`) of `_lane_of`
        self._stop_free = False  # its families read no stop (its bands: any stop)
        self._lane_lo = self._lane_hi = self._lane_until = math.nan  # its edges (NaN: none)

    def settle(self, pos: Position, mkt: MarketState, params: Params) -> None:
        self._band = None
        self._lo = self._hi = self._until = math.nan
        self._pending = self._last = (pos, mkt, params)
        of = self._lane_of
        if of is not None and not _lane_successor(of, pos, mkt, params):
            self._lane_of = self._lane = None
            self._lane_lo = self._lane_hi = self._lane_until = math.nan

    def clear(self) -> None:
        self._band = None
        self._lo = self._hi = self._until = math.nan
        self._pending = self._last = self._lane_of = self._lane = None
        self._lane_lo = self._lane_hi = self._lane_until = math.nan

    def _compute(self) -> None:
        pending = self._pending
        assert pending is not None
        self._pending = None
        if self._lane_of is None:
            self._compute_lane(pending)  # the trend's lane, and the part of its bands
        pos, mkt, params = pending
        lane = self._lane
        if lane is not None and lane.lo < mkt.price < lane.hi and mkt.ts < lane.until and (
                self._stop_free or pos.sl is self._lane_of[0].sl):  # type: ignore[index]
            band = _band_in_lane(lane, pos, mkt, params)
        else:
            band = quiet_band(pos, mkt, params)
        self._band = band
        if band is not None:
            self._lo, self._hi, self._until = band.lo, band.hi, band.until

    def quiet(self, price: float, ts: float) -> bool:
        pending = self._pending
        if pending is not None:
            pos = pending[0]
            best = pos.best_price
            if pos.automation and best is not None and (
                    price > best if pos.side is _LONG else price < best):
                return False  # a new best: outside any band of this position
            self._compute()
        return self._lo < price < self._hi and ts < self._until  # `band.holds`; NaN: none

    def quiet_run(self, first: float, ts: float, low: float, high: float,
                  last_ts: float) -> bool:
        """`quiet(p, t)` for every tick of a run (times from `ts` to `last_ts`, increasing;
        prices from `low` to `high`, `first` the first tick's): the first tick's own test
        (which computes a pending band), then the band's edges against the run's range."""
        return self.quiet(first, ts) and self._lo < low and high < self._hi \
            and last_ts < self._until

    def _compute_lane(self, last: tuple[Position, MarketState, Params]) -> None:
        self._lane_of = last
        lane = self._lane = trend_lane(*last)
        if lane is None:
            return  # NaN edges: no lane for these positions
        self._stop_free = last[2]._memo[_plan][5][4]  # type: ignore[index]
        self._lane_lo, self._lane_hi, self._lane_until = lane.lo, lane.hi, lane.until

    def lane(self, price: float, ts: float) -> bool:
        """Whether a tick that is not quiet is in the settled position's trend lane: inside
        the lane's prices and before its timer (the stop, crossed or not, is
        `evaluate_trend`'s)."""
        last = self._last
        if last is None:
            return False
        if self._lane_of is None:
            self._compute_lane(last)
        # NaN edges: no lane (and a price as `make_ctx` takes it)
        return (self._lane_lo < price < self._lane_hi and ts < self._lane_until
                and price > 0.0 and type(price) is float)

    @property
    def band(self) -> QuietBand | None:
        """The band (computed now if still pending)."""
        if self._pending is not None:
            self._compute()
        return self._band
