"""Order sizing under the market's limits: scale-out (seed 000 §9) and add sizes.

Why here and not in the engine: a rule decides "close 50% of the original", but what can be
sent is bounded by the amount step and the minimum amount; the rule must know whether that
becomes a full close so the action it reports is the one that is carried out.
"""

from __future__ import annotations

import math

from pmgui.domain.errors import ValidationError
from pmgui.domain.models import Market
from pmgui.rules.common import ceil_to


def _check_qty(value: float, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
            value):
        raise ValidationError(f"{field} must be a finite number (got {value!r})", field=field)
    if value <= 0:
        raise ValidationError(f"{field} must be positive (got {value:g})", field=field)
    return float(value)


def scale_out(requested_qty: float, pos_qty: float, market: Market) -> tuple[float, bool]:
    """(qty, close_all) for a partial close of `requested_qty` out of `pos_qty`.

    Seed 000 §9: the amount is floored to the amount step; below the market minimum it is
    raised to the minimum (instead of skipping); when that reaches the position size the
    whole position is closed (`close_all=True`, qty = pos_qty). An amount below one step
    with no minimum is raised to one step, the smallest order the market accepts.
    """
    req = _check_qty(requested_qty, "quantity to close")
    size = _check_qty(pos_qty, "position size")
    step = market.amount_step if math.isfinite(market.amount_step) else 0.0
    qty = market.floor_amount(req) if step > 0 else req
    minimum = market.min_amount if math.isfinite(market.min_amount) else 0.0
    if qty < minimum:
        qty = ceil_to(minimum, step) if step > 0 else minimum
    if qty <= 0 and step > 0:
        qty = step
    if qty >= size * (1 - 1e-9):
        return size, True
    return qty, False


def add_size(requested_qty: float, market: Market) -> float | None:
    """An add's quantity floored to the step; None when it falls below the market minimum
    (adding more than asked is never done on the trader's behalf)."""
    if not math.isfinite(requested_qty) or requested_qty <= 0:
        return None
    qty = market.floor_amount(requested_qty) if market.amount_step > 0 else requested_qty
    if qty <= 0 or qty < market.min_amount:
        return None
    return qty
