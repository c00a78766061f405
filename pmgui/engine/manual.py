"""Manual position actions that are not plain level changes (the UI's Add).

Kept beside the core so the core's command dispatch stays one line per command. An add
is an Action through the same executor path the rules use (journal first, then the order).
"""

from __future__ import annotations

from typing import Any

from pmgui.domain.enums import ActionType, Reason
from pmgui.domain.errors import ValidationError
from pmgui.domain.models import Action
from pmgui.domain.validation import validate_amount
from pmgui.engine import commands as cmd
from pmgui.engine.events import ActionTaken


async def add_to_position(core: Any, c: cmd.AddToPosition) -> cmd.CommandResult:
    rt = core._runtime(c.position_id)
    pos = rt.position
    qty = validate_amount(c.qty, "add quantity")
    market = core.market.market(pos.symbol)
    price = core.market.price(pos.symbol)
    if price is None:
        raise ValidationError(f"no current price for {pos.symbol}; try again in a moment")
    if market.min_amount and market.floor_amount(qty) < market.min_amount:
        raise ValidationError(f"add of {qty:g} is below the minimum {market.min_amount:g} "
                              f"for {pos.symbol}", field="qty")
    action = Action(ActionType.ADD, Reason.MANUAL, pos.id, price, qty=qty, rule="manual",
                    ts=core.clock())
    async with rt.lock:
        core._runtime(c.position_id)  # still open
        core.store.record_action(action, symbol=pos.symbol)
        await core._add(rt, action)
    core.outbox.publish(ActionTaken(action, pos.symbol))
    core.publish_position(rt)
    return cmd.CommandResult(True, f"{pos.symbol}: add {market.floor_amount(qty):g} sent",
                             pos.id)
