"""Per-tranche TP/SL helpers (seed 002) for the engine: levels, shared orders, reductions.

Why helpers and not engine code: what a tranche's levels are, which tranches can share one
pair of exchange orders, and which tranche a `tranches` rule reduction removes are rule
semantics; the engine should not have to re-derive them.

- `tranche_levels`: a new tranche's own SL/TP from `stop_loss.pct` / `take_profit.pct`
  measured from *its* entry (not the average entry), rounded to the tick.
- `order_groups`: tranches whose SL and TP both coincide within one tick share orders
  (one reduce-only SL and one TP for their summed quantity).
- `protective_orders`: the reduce-only SL/TP orders the exchange must hold so that every
  tranche exits on its own levels while pmgui is closed: one SL and one TP per order group,
  sized to the group. A tranche's effective SL is the tighter of its own and the position's
  (a trailing or breakeven move protects every tranche); its TP defaults to the position's.
  Without tranches (or when they do not add up to the position) one SL and one TP cover the
  whole position at the position's levels.
- `reduce_tranches`: apply a reduction: the tranches named by `tranche_closed:<id>` flags
  (a `tranches` rule exit) go first and whole, any remainder is taken first-in, first-out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pmgui.domain import money
from pmgui.domain.enums import Side
from pmgui.domain.errors import ValidationError
from pmgui.domain.models import Market, Position, Tranche
from pmgui.rules.common import TRANCHE_CLOSED_PREFIX
from pmgui.rules.params import Params

_EPS = 1e-12


def tranche_levels(side: Side, entry: float, params: Params,
                   market: Market) -> tuple[float | None, float | None]:
    """(SL, TP) of a tranche opened at `entry`; (None, None) when the rule is off."""
    if not money.valid_price(entry):
        raise ValidationError(f"tranche entry must be a finite positive price (got {entry!r})",
                              field="entry")
    if not params.enabled("tranches"):
        return None, None
    d = side.dir
    tick = market.tick_size if market.tick_size > 0 else 0.0
    sl = tp = None
    if params.enabled("stop_loss"):
        sl = market.round_price(entry * (1 - d * params.f("stop_loss.pct")))
        if tick and (entry - sl) * d < tick:
            sl = market.round_price(entry - d * tick)
        sl = sl if sl > 0 else None
    if params.enabled("take_profit"):
        raw = entry * (1 + d * params.f("take_profit.pct"))
        if raw > 0:
            tp = market.round_price(raw)
            if tick and (tp - entry) * d < tick:
                tp = market.round_price(entry + d * tick)
    return sl, tp


@dataclass(frozen=True, slots=True)
class OrderGroup:
    """Tranches protected by one SL order and one TP order."""

    sl: float | None
    tp: float | None
    qty: float
    tranche_ids: tuple[str, ...]


def _same(a: float | None, b: float | None, tick: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= max(tick, 0.0) + _EPS


def order_groups(tranches: tuple[Tranche, ...], tick: float) -> tuple[OrderGroup, ...]:
    """Group tranches whose SL and TP coincide within one tick (oldest tranche's levels)."""
    groups: list[list[Tranche]] = []
    for t in tranches:
        if t.qty <= 0:
            continue
        for g in groups:
            if _same(g[0].sl, t.sl, tick) and _same(g[0].tp, t.tp, tick):
                g.append(t)
                break
        else:
            groups.append([t])
    return tuple(OrderGroup(sl=g[0].sl, tp=g[0].tp, qty=sum(t.qty for t in g),
                            tranche_ids=tuple(t.id for t in g)) for g in groups)


def closed_tranche_ids(flags: frozenset[str]) -> frozenset[str]:
    return frozenset(f[len(TRANCHE_CLOSED_PREFIX):] for f in flags
                     if f.startswith(TRANCHE_CLOSED_PREFIX))


def reduce_tranches(tranches: tuple[Tranche, ...], qty: float,
                    flags: frozenset[str] = frozenset()) -> tuple[Tranche, ...]:
    """The tranches left after closing `qty`: flagged tranches first, then oldest first."""
    if qty < 0:
        raise ValidationError(f"cannot reduce tranches by a negative quantity ({qty:g})")
    named = closed_tranche_ids(flags)
    left = qty
    kept: list[Tranche] = []
    for t in tranches:
        if t.id in named and left > _EPS:
            take = min(t.qty, left)
            left -= take
            if t.qty - take > _EPS:
                kept.append(replace(t, qty=t.qty - take))
        else:
            kept.append(t)
    out: list[Tranche] = []
    for t in kept:
        if left <= _EPS:
            out.append(t)
            continue
        take = min(t.qty, left)
        left -= take
        if t.qty - take > _EPS:
            out.append(replace(t, qty=t.qty - take))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class ProtectiveOrder:
    """One reduce-only order the exchange should hold: `role` is "sl" or "tp"."""

    role: str
    trigger: float
    qty: float
    tranche_ids: tuple[str, ...] = ()


def effective_tranches(pos: Position) -> tuple[Tranche, ...]:
    """The open tranches with the levels that apply to them: SL tightened by the position's
    SL, TP defaulting to the position's."""
    out = []
    for t in pos.tranches:
        if not (t.qty > 0):
            continue
        sl = money.tighter_stop(pos.side, t.sl, pos.sl)
        tp = t.tp if t.tp is not None else pos.tp
        out.append(replace(t, sl=sl, tp=tp))
    return tuple(out)


def protective_orders(pos: Position, market: Market,
                      per_tranche: bool = True) -> tuple[ProtectiveOrder, ...]:
    """The reduce-only SL/TP orders that protect `pos` (see the module docstring); triggers
    rounded to the tick, quantities to the amount step, never more than the position."""
    tick = market.tick_size if market.tick_size > 0 else 0.0
    tranches = effective_tranches(pos) if per_tranche else ()
    total = sum(t.qty for t in tranches)
    half_step = market.amount_step / 2 if market.amount_step > 0 else 1e-12
    if not tranches or abs(total - pos.qty) > half_step:
        out = []
        if pos.sl is not None:
            out.append(ProtectiveOrder("sl", market.round_price(pos.sl), pos.qty))
        if pos.tp is not None:
            out.append(ProtectiveOrder("tp", market.round_price(pos.tp), pos.qty))
        return tuple(out)
    orders: list[ProtectiveOrder] = []
    groups = order_groups(tranches, tick)
    left = pos.qty
    for i, g in enumerate(groups):
        qty = left if i == len(groups) - 1 else min(market.round_amount(g.qty), left)
        left -= qty
        if qty <= 0:
            continue
        if g.sl is not None:
            orders.append(ProtectiveOrder("sl", market.round_price(g.sl), qty, g.tranche_ids))
        if g.tp is not None:
            orders.append(ProtectiveOrder("tp", market.round_price(g.tp), qty, g.tranche_ids))
    return tuple(orders)
