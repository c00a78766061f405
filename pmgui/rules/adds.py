"""Adding to winners (priority 9): the EMA add-on (seed 001) and momentum scaling (seed 004).

Why lowest priority: adding risk is the least urgent thing a tick can decide and must never
accompany a close or a stop adjustment that outranks it.

Interpretations:
- Add-on: pnl_r ≥ 0.5, |p - EMA|/EMA ≤ 0.5% → a limit order at the EMA (rounded to the tick)
  for add_on.fraction (50%) of the original quantity, once (flag `add_on_executed`). No R
  (no initial SL) → no add-on; none either once the stop is at breakeven or better (what
  withdraws a resting one, below).
- Scaling: roi ≥ 5%, favourable momentum > 2%, mean quote volume per candle > 100k, age <
  15 min → a market add of scaling.fraction (25%) of the original quantity, once (flag
  `scaled`), capped so the position never exceeds scaling.max_size_mult × the original
  quantity (seed 004's "maximum position size"). The engine recomputes the average entry
  (`pmgui.domain.money.average_entry`) on the fill.
- An add below the market minimum after flooring to the step is skipped, never enlarged.
- Indicators come from each rule's timeframe: the EMA from `add_on.timeframe`, momentum and
  volume from `scaling.timeframe`.
- Add-on lifecycle: the ADD action also sets `add_on_open:<ts>` (the limit order is resting;
  the engine clears it when the order fills or is cancelled). While it rests, `add_on_cancel`
  withdraws it (a CANCEL action, reason `add_on_cancel`, `inputs["why"]` says why) when the
  conditions no longer hold: the price is farther than `add_on.cancel_band` from the EMA
  (`price_away`), the stop is at breakeven or better (`breakeven`), or it has rested
  `add_on.max_wait` candles of `add_on.timeframe` (`expired`). The policy adds the same
  cancel (`closing`) to any evaluation that closes or reduces the position.
"""

from __future__ import annotations

import math

from pmgui.domain import money
from pmgui.domain.enums import ActionType, Priority, Reason
from pmgui.domain.models import Action
from pmgui.domain.timeframes import seconds
from pmgui.rules.common import (
    ADD_ON_OPEN_PREFIX,
    FLAG_ADD_ON,
    FLAG_BREAKEVEN,
    FLAG_SCALED,
    Ctx,
    action,
    add_on_open_since,
    ge,
    gt,
    le,
    lt,
)
from pmgui.rules.sizing import add_size


def add_on(ctx: Ctx) -> list[Action]:
    pos, p = ctx.pos, ctx.params
    if FLAG_ADD_ON in pos.flags:
        return []
    r = money.position_r(pos, ctx.price)
    min_r = p.f("add_on.min_r")
    ema = ctx.frame("add_on").ema9
    if r is None or lt(r, min_r) or ema is None or ema <= 0:
        return []
    band = p.f("add_on.ema_band")
    dist = abs(ctx.price - ema) / ema
    if gt(dist, band):
        return []
    if at_breakeven(ctx):
        # what withdraws a resting add-on (`add_on_cancel`) also keeps one from being sent:
        # added at the EMA beyond the entry, the average entry would pass a breakeven stop
        return []
    base = pos.initial_qty if pos.initial_qty > 0 else pos.qty
    frac = p.f("add_on.fraction")
    qty = add_size(frac * base, ctx.market)
    limit = ctx.market.round_price(ema)
    if qty is None or limit <= 0:
        return []
    ts = ctx.mkt.ts if math.isfinite(ctx.mkt.ts) else 0.0
    return [action(ctx, ActionType.ADD, Reason.ADD_ON, "add_on", Priority.ADD, qty=qty,
                   price=limit, limit=True, flags=(FLAG_ADD_ON, f"{ADD_ON_OPEN_PREFIX}{ts!r}"),
                   inputs={"r": r, "min_r": min_r, "ema": ema, "ema_distance": dist,
                           "ema_band": band, "fraction": frac, "trigger_price": ctx.price,
                           "timeframe": str(p["add_on.timeframe"])})]


def at_breakeven(ctx: Ctx) -> bool:
    """The stop protects the entry: moved to breakeven, or at/beyond the entry price."""
    pos = ctx.pos
    if FLAG_BREAKEVEN in pos.flags:
        return True
    return pos.sl is not None and math.isfinite(pos.sl) and (pos.sl - pos.entry) * ctx.dir >= 0


def cancel_add_on(ctx: Ctx, why: str, **inputs: object) -> Action:
    since = add_on_open_since(ctx.pos.flags)
    return action(ctx, ActionType.CANCEL, Reason.ADD_ON_CANCEL, "add_on", Priority.ADD,
                  inputs={"why": why, "placed_at": since, **inputs})


def add_on_cancel(ctx: Ctx) -> list[Action]:
    """Withdraw a resting add-on whose reason to exist is gone (module docstring)."""
    since = add_on_open_since(ctx.pos.flags)
    if since is None:
        return []
    p = ctx.params
    if at_breakeven(ctx):
        return [cancel_add_on(ctx, "breakeven", sl=ctx.pos.sl, entry=ctx.pos.entry)]
    ema = ctx.frame("add_on").ema9
    band = p.f("add_on.cancel_band")
    if ema is not None and ema > 0:
        dist = abs(ctx.price - ema) / ema
        if gt(dist, band):
            return [cancel_add_on(ctx, "price_away", ema=ema, ema_distance=dist,
                                  cancel_band=band)]
    tf = str(p["add_on.timeframe"])
    waited = (ctx.mkt.ts - since) / seconds(tf)
    max_wait = p.i("add_on.max_wait")
    if math.isfinite(waited) and ge(waited, max_wait):
        return [cancel_add_on(ctx, "expired", candles_waited=waited, max_wait=max_wait,
                              timeframe=tf)]
    return []


def scaling(ctx: Ctx) -> list[Action]:
    pos, p = ctx.pos, ctx.params
    if FLAG_SCALED in pos.flags:
        return []
    min_roi = p.f("scaling.min_roi")
    min_mom = p.f("scaling.min_momentum")
    min_vol = p.f("scaling.min_volume")
    max_age = p.f("scaling.max_age")
    ind = ctx.frame("scaling")
    mom, vol = ind.momentum, ind.volume
    if (lt(ctx.roi, min_roi) or mom is None or le(ctx.dir * mom, min_mom) or vol is None
            or le(vol, min_vol) or ge(ctx.age, max_age)):
        return []
    base = pos.initial_qty if pos.initial_qty > 0 else pos.qty
    frac = p.f("scaling.fraction")
    room = p.f("scaling.max_size_mult") * base - pos.qty
    qty = add_size(min(frac * base, room), ctx.market)
    if qty is None:
        return []
    return [action(ctx, ActionType.ADD, Reason.SCALING, "scaling", Priority.ADD, qty=qty,
                   flags=(FLAG_SCALED,),
                   inputs={"min_roi": min_roi, "momentum": mom, "min_momentum": min_mom,
                           "volume": vol, "min_volume": min_vol, "age": ctx.age,
                           "max_age": max_age, "fraction": frac, "room": room,
                           "timeframe": str(p["scaling.timeframe"])})]
