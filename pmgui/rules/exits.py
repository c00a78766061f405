"""Full and protective exits: emergency stops, SL/TP (with instant TP), per-tranche SL/TP,
smart profit taking, momentum loss (priorities 1-5 of DESIGN §4).

Why they close everything (except tranche hits): each of these says the trade as a whole is
over — a loss cap, the stop or target the trader set, or a profit that must be protected now.

Interpretations:
- Emergency tiers compare the ROI on margin including fees; the deepest tier breached is
  reported (seed 000 §2 checks -40% first).
- Smart TP uses the unleveraged price move m (seed 000 says "price movement") and the TP
  distance d = dir·(tp - p)/p, infinite without a TP, so m >= 5% alone closes a position
  that has no TP. m >= threshold is inclusive, d > threshold strict, as in the seed.
- Momentum loss: give-back = (peak - roi)/peak with peak the best ROI since open; the
  50% test applies at any ROI, the 30% test only while the current ROI is inside
  [band_low, band_high] (DESIGN: "roi in [.03, .15]").
- Tranches (seed 002): with tranches, the position's TP does not close them all: each
  tranche's own TP does (the exchange holds one TP per tranche group). A tranche whose own
  SL (or TP) is crossed is reduced by its quantity;
  all tranches crossed on the same tick go in one reduction (one closing action per tick),
  flagged `tranche_closed:<id>` so the engine drops them. A reduction that reaches the
  position size becomes a full close.
"""

from __future__ import annotations

import math

from pmgui.domain import money
from pmgui.domain.enums import ActionType, Priority, Reason, StopKind
from pmgui.domain.models import Action
from pmgui.rules.common import (
    THRESHOLD_EPS,
    TRANCHE_CLOSED_PREFIX,
    Ctx,
    action,
    close_all,
    ge,
    gt,
    le,
)
from pmgui.rules.params import Params
from pmgui.rules.sizing import scale_out


def _emergency_tiers(p: Params) -> tuple[tuple[float, Reason, str], ...]:
    tiers = (
        ("emergency.liquidation_roi", Reason.EMERGENCY_STOP_LIQUIDATION_RISK),
        ("emergency.severe_roi", Reason.EMERGENCY_STOP_SEVERE_LOSS),
        ("emergency.excessive_roi", Reason.EMERGENCY_STOP_EXCESSIVE_LOSS),
    )
    return tuple((p.f(key), reason, key.split(".")[1]) for key, reason in tiers)


def _emergency_above(p: Params) -> float:
    """The ROI above which no tier is breached: `le(roi, threshold)` is `roi <= threshold +
    THRESHOLD_EPS`, false for every tier exactly when roi exceeds the largest such sum."""
    return max(threshold + THRESHOLD_EPS for threshold, _, _ in _emergency_tiers(p))


def emergency(ctx: Ctx) -> list[Action]:
    roi = ctx.roi
    params = ctx.params
    try:  # `params.memo(_emergency_above, …)` without the method call (read on every tick)
        above = params._memo[_emergency_above]
    except KeyError:
        above = params.memo(_emergency_above, _emergency_above)
    if roi > above:
        return []  # no tier breached (the loop below finds none)
    for threshold, reason, tier in ctx.params.memo(_emergency_tiers, _emergency_tiers):
        if le(roi, threshold):
            return [close_all(ctx, reason, "emergency", Priority.EMERGENCY,
                              {"threshold": threshold, "tier": tier})]
    return []


_STOP_REASON = {
    StopKind.TRAILING: Reason.TRAILING_STOP,
    StopKind.BREAKEVEN: Reason.BREAKEVEN_STOP,
}


def stop_loss(ctx: Ctx) -> list[Action]:
    pos = ctx.pos
    sl = pos.sl
    if sl is None or not (ctx.price <= sl if ctx.dir > 0 else ctx.price >= sl):
        return []  # not crossed (the test below, without its call)
    if not money.stop_hit(pos.side, pos.sl, ctx.price):
        return []
    reason = _STOP_REASON.get(pos.sl_kind, Reason.STOP_LOSS)
    return [close_all(ctx, reason, "stop_loss", Priority.STOP_LOSS,
                      {"sl": pos.sl, "sl_kind": pos.sl_kind.value,
                       "initial_sl": pos.initial_sl})]


def take_profit(ctx: Ctx) -> list[Action]:
    """Instant TP (seed 002): the price passed TP, close at market now (the engine cancels the
    protective orders first) instead of waiting for the exchange order to fill."""
    pos = ctx.pos
    tp = pos.tp
    if tp is None or not (ctx.price >= tp if ctx.dir > 0 else ctx.price <= tp):
        return []  # not reached (the test below, without its calls)
    if not ctx.params["take_profit.instant"] or not money.target_hit(pos.side, pos.tp,
                                                                     ctx.price):
        return []
    if ctx.params.enabled("tranches") and pos.tranches:
        return []  # each tranche's own TP decides (`tranche_targets`), as on the exchange
    return [close_all(ctx, Reason.TAKE_PROFIT, "take_profit", Priority.TAKE_PROFIT,
                      {"tp": pos.tp, "instant": True})]


def _tranche_exit(ctx: Ctx, kind: str, default_tp: float | None = None) -> list[Action]:
    """`default_tp`: the TP of a tranche without one of its own (the position's, as the
    exchange's TP order for it: `tranches.effective_tranches`)."""
    pos = ctx.pos
    hit = []
    already = {f[len(TRANCHE_CLOSED_PREFIX):] for f in pos.flags
               if f.startswith(TRANCHE_CLOSED_PREFIX)}
    for t in pos.tranches:
        if t.id in already:  # closed by an earlier tick's reduction still being applied
            continue
        level = t.sl if kind == "sl" else (t.tp if t.tp is not None else default_tp)
        crossed = (money.stop_hit(pos.side, level, ctx.price) if kind == "sl"
                   else money.target_hit(pos.side, level, ctx.price))
        if crossed and math.isfinite(t.qty) and t.qty > 0:
            hit.append(t)
    if not hit:
        return []
    reason = Reason.STOP_LOSS if kind == "sl" else Reason.TAKE_PROFIT
    priority = Priority.STOP_LOSS if kind == "sl" else Priority.TAKE_PROFIT
    requested = min(sum(t.qty for t in hit), pos.qty)
    qty, everything = scale_out(requested, pos.qty, ctx.market)
    flags = [TRANCHE_CLOSED_PREFIX + t.id for t in hit]
    first = hit[0]
    inputs = {"tranches": ",".join(t.id for t in hit), "level_kind": kind,
              "level": (first.sl if kind == "sl" else
                        first.tp if first.tp is not None else default_tp),
              "requested_qty": requested}
    if everything:
        return [close_all(ctx, reason, "tranches", priority, inputs, flags)]
    return [action(ctx, ActionType.REDUCE, reason, "tranches", priority, qty=qty,
                   inputs=inputs, flags=flags)]


def tranche_stops(ctx: Ctx) -> list[Action]:
    return _tranche_exit(ctx, "sl")


def tranche_targets(ctx: Ctx) -> list[Action]:
    """Each tranche's own TP; a tranche without one (opened before the preset gave the
    position its TP) exits at the position's TP while `take_profit` is on — the TP its
    exchange order holds — since `take_profit` leaves tranches to this rule."""
    params = ctx.params
    if not params["take_profit.instant"]:
        return []
    return _tranche_exit(ctx, "tp",
                         ctx.pos.tp if params.enabled("take_profit") else None)


def _smart_min_move(p: Params) -> float:
    """The smallest tier move less the tolerance: `ge(m, min move)` is `m >= this`."""
    return min(move for _, move, _ in _smart_tiers(p)) - THRESHOLD_EPS


def _smart_tiers(p: Params) -> tuple[tuple[str, float, float], ...]:
    return (
        ("always", p.f("smart_tp.always_move"), -math.inf),
        ("t1", p.f("smart_tp.t1_move"), p.f("smart_tp.t1_tp_dist")),
        ("t2", p.f("smart_tp.t2_move"), p.f("smart_tp.t2_tp_dist")),
        ("t3", p.f("smart_tp.t3_move"), p.f("smart_tp.t3_tp_dist")),
        ("t4", p.f("smart_tp.t4_move"), p.f("smart_tp.t4_tp_dist")),
    )


def smart_tp(ctx: Ctx) -> list[Action]:
    m = ctx.move
    params = ctx.params
    try:  # `params.memo(_smart_min_move, …)` without the method call
        least = params._memo[_smart_min_move]
    except KeyError:
        least = params.memo(_smart_min_move, _smart_min_move)
    if not m >= least:
        return []  # below every tier's move: the TP distance cannot matter
    tiers = ctx.params.memo(_smart_tiers, _smart_tiers)
    pos = ctx.pos
    d = (ctx.dir * (pos.tp - ctx.price) / ctx.price) if pos.tp is not None else math.inf
    for name, move_min, dist_min in tiers:
        if ge(m, move_min) and gt(d, dist_min):
            return [close_all(ctx, Reason.SMART_TAKE_PROFIT, "smart_tp", Priority.SMART_TP, {
                "tier": name, "move_threshold": move_min,
                "tp_distance": d if math.isfinite(d) else None,
                "tp_distance_threshold": dist_min if math.isfinite(dist_min) else None,
                "tp": pos.tp})]
    return []


def _momentum_params(p: Params) -> tuple[float, float, float, float, float]:
    return (p.f("momentum_loss.min_peak"), p.f("momentum_loss.giveback"),
            p.f("momentum_loss.band_low"), p.f("momentum_loss.band_high"),
            p.f("momentum_loss.band_giveback"))


def _momentum_floor(p: Params) -> float:
    """`lt(peak, min_peak)` is `peak < this`."""
    return p.f("momentum_loss.min_peak") - THRESHOLD_EPS


def _momentum_plan(p: Params) -> tuple[float, float, float, float, float, float, float,
                                        float, float, float]:
    """`_momentum_floor`, `_momentum_params` and the tolerances of their tests applied (the
    same floats: `ge(x, t)` is `x >= t - THRESHOLD_EPS`, `le(x, t)` is `x <= t +
    THRESHOLD_EPS`), once per Params."""
    min_peak, full, lo, hi, band = _momentum_params(p)
    eps = THRESHOLD_EPS
    return (_momentum_floor(p), min_peak, full, lo, hi, band, full - eps, lo - eps, hi + eps,
            band - eps)


def momentum_loss(ctx: Ctx) -> list[Action]:
    peak = ctx.peak
    params = ctx.params
    try:  # `params.memo(_momentum_plan, …)` without the method call (read on every tick)
        plan = params._memo[_momentum_plan]
    except KeyError:
        plan = params.memo(_momentum_plan, _momentum_plan)
    if peak < plan[0] or peak <= 0:
        return []  # `lt(peak, min_peak)`, written out
    _, min_peak, full, lo, hi, band, full_at, lo_at, hi_at, band_at = plan
    roi = ctx.roi
    giveback = (peak - roi) / peak
    if giveback >= full_at:  # `ge(giveback, full)`
        test = "giveback"
    elif roi >= lo_at and roi <= hi_at and giveback >= band_at:  # `ge`, `le`, `ge`
        test = "band"
    else:
        return []
    inputs = {"giveback": giveback, "min_peak": min_peak, "giveback_threshold": full,
              "band_low": lo, "band_high": hi, "band_giveback": band}
    return [close_all(ctx, Reason.MOMENTUM_LOSS, "momentum_loss", Priority.MOMENTUM_LOSS,
                      {**inputs, "test": test})]
