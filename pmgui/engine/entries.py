"""Resting entries: limit and stop orders that open (or add to) a position when they fill.

The trader's `OpenPosition(order_type="limit" | "stop", price=…)`:

* validated before anything is sent: a limit buys below the market (a long) or sells above
  it (a short), a stop the other way; the bracket SL/TP is checked against the entry price;
* what the position will be (leverage, SL, TP, preset, overrides) is stored in the settings
  table under the entry's client id *before* the order is journaled, and the order itself
  goes through the engine's one path (`EngineCore.place`: journaled and synced → sent →
  acknowledged …) with role ENTRY and the id of the position it will open;
* while it rests it is an `OrderSnapshot` like any other order (the UI lists it as a working
  order; `CancelOrder` withdraws it);
* its fills are booked by fill delta (the ledger applies the same fill once, whether it came
  from the stream, a REST lookup, or reconciliation at start-up after it filled while pmgui
  was down): the first delta creates the position for the filled part with its bracket and
  protects it on the exchange; later deltas (partial fills) add to it. When a position of
  that symbol and side is already open, the fill adds to that one instead (one position per
  symbol and side).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from pmgui.domain import money
from pmgui.domain.enums import ActionType, OrderRole, OrderType, Reason, Side
from pmgui.domain.errors import ValidationError
from pmgui.domain.models import Action, Order, OrderRequest, Position, Tranche, frozen_map
from pmgui.domain.numbers import plain_price, plain_qty
from pmgui.domain.validation import (
    check_entry_price,
    validate_amount,
    validate_leverage,
    validate_targets,
)
from pmgui.engine import commands as cmd
from pmgui.engine.events import ActionTaken, OrderSnapshot
from pmgui.engine.ids import new_position_id
from pmgui.engine.manual import check_leverage, check_position_mode
from pmgui.engine.protection import PROTECTIVE
from pmgui.engine.runtime import PositionRuntime
from pmgui.rules.params import resolve_params

if TYPE_CHECKING:
    from pmgui.engine.core import EngineCore

log = logging.getLogger("pmgui.engine.entries")

SETTING = "resting_entries"  # settings key: client id → what the position will be
ENTRY_TYPES = {"limit": OrderType.LIMIT, "stop": OrderType.STOP_MARKET}


class RestingEntries:
    def __init__(self, core: EngineCore) -> None:
        self.core = core

    # ---------------------------------------------------------------- the stored intent

    def specs(self) -> dict[str, dict]:
        return dict(self.core.store.get_setting(SETTING, {}) or {})

    def _save(self, specs: dict[str, dict]) -> None:
        self.core.store.set_setting(SETTING, specs)

    def working(self) -> list[Order]:
        """Entry orders still working (journaled, sent, resting or partly filled)."""
        return [o for o in self.core.ledger if o.role is OrderRole.ENTRY
                and o.type in (OrderType.LIMIT, OrderType.STOP_MARKET)]

    def publish(self) -> None:
        for o in self.working():
            self.core.outbox.publish(OrderSnapshot(o))

    def prune(self) -> None:
        """Forget the intent of entries that are no longer working."""
        specs = self.specs()
        live = set(self.core.ledger.live)
        gone = [cid for cid in specs if cid not in live]
        if gone:
            for cid in gone:
                specs.pop(cid)
            self._save(specs)

    # ---------------------------------------------------------------- commands

    async def place(self, c: cmd.OpenPosition) -> cmd.CommandResult:
        core = self.core
        kind = c.order_type
        if kind not in ENTRY_TYPES:
            raise ValidationError(f"order type must be market, limit or stop (got {kind!r})",
                                  field="order_type")
        market = core.market.markets.get(c.symbol)
        if market is None:
            raise ValidationError(f"unknown symbol {c.symbol}", field="symbol")
        if isinstance(c.price, bool) or not isinstance(c.price, (int, float)) \
                or not money.valid_price(float(c.price)):
            raise ValidationError(f"a {kind} entry needs a positive price (got {c.price!r})",
                                  field="price")
        price = market.round_price(float(c.price))
        if price <= 0:
            raise ValidationError(f"price {c.price:g} rounds to zero", field="price")
        now_price = core.market.price(c.symbol)
        if now_price is None:
            tick = await core.exchange.fetch_price(c.symbol)
            if tick is None:
                raise ValidationError(f"no price for {c.symbol} yet")
            core.market.last[c.symbol] = tick
            now_price = tick.price
        check_entry_price(kind, c.side, price, now_price)
        check_position_mode(core, c.symbol, c.side)
        check_leverage(core, c.symbol, c.leverage)
        qty = validate_amount(c.qty)
        validate_leverage(c.leverage, market.max_leverage or 125)
        qty = market.floor_amount(qty)
        if market.min_amount and qty < market.min_amount:
            raise ValidationError(f"amount {plain_qty(qty, market)} is below the minimum "
                                  f"{plain_qty(market.min_amount, market)} "
                                  f"for {c.symbol}", field="amount")
        if market.min_notional and qty * price * market.contract_size < market.min_notional:
            raise ValidationError(
                f"order value {qty * price * market.contract_size:.2f} is below the minimum "
                f"{market.min_notional:g} {market.quote} for {c.symbol}", field="amount")
        sl = None if c.sl is None else market.round_price(c.sl)
        tp = None if c.tp is None else market.round_price(c.tp)
        validate_targets(c.side, price, sl, tp,
                         money.liquidation_price(c.side, price, c.leverage, market.mmr))
        preset = c.preset or core.settings.preset_for(c.symbol)
        overrides = core.settings.overrides_for(c.symbol)
        overrides.update(c.overrides)
        resolve_params(preset, overrides)
        await core.exchange.set_leverage(c.symbol, c.leverage)
        core.exchange.subscribe([c.symbol])
        pid = new_position_id(c.symbol, c.side.value, core.clock())
        otype = ENTRY_TYPES[kind]
        req = OrderRequest(core.new_client_id(), c.symbol, c.side.open_side, otype, qty,
                           price=price if otype is OrderType.LIMIT else None,
                           trigger_price=price if otype is OrderType.STOP_MARKET else None,
                           position_id=pid, role=OrderRole.ENTRY, reason=f"open {kind}")
        specs = self.specs()
        specs[req.client_id] = {"position_id": pid, "side": c.side.value,
                                "leverage": c.leverage, "sl": sl, "tp": tp, "preset": preset,
                                "overrides": dict(c.overrides), "kind": kind}
        self._save(specs)  # the intent first: a fill is always attributable
        order = await core.place(req)  # journaled (synced) → sent → acknowledged | filled
        order = core.ledger.get(req.client_id) or order
        rt = core.book.runtime(pid) or core.book.find(c.symbol, c.side)
        outcomes = tuple(core.protector.outcome(rt, role) for role in PROTECTIVE) \
            if rt is not None and rt.is_open and order.filled > 0 else ()
        state = ("filled at once" if order.status.is_final and order.filled > 0
                 else order.status.value if order.status.is_final else "working")
        return cmd.CommandResult(
            order.status.value != "rejected",
            f"{kind} {c.side.open_side.value} {plain_qty(qty, market)} {c.symbol} @ "
            f"{plain_price(price, market)}: {state}",
            pid if rt is None else rt.id, outcomes=outcomes)

    async def cancel(self, c: cmd.CancelOrder) -> cmd.CommandResult:
        core = self.core
        order = core.ledger.live.get(c.client_id)
        if order is None or order.role is not OrderRole.ENTRY:
            known = core.ledger.get(c.client_id)
            if known is not None and known.role is OrderRole.ENTRY:
                return cmd.CommandResult(False, f"{known.symbol}: the entry order is already "
                                                f"{known.status.value}; nothing was sent")
            raise ValidationError(f"no working entry order {c.client_id}")
        if c.client_id in core.ledger.creating:
            raise ValidationError(f"{order.symbol}: the entry order is still being sent; "
                                  "cancel it in a moment")
        await core.cancel(order)
        after = core.ledger.get(c.client_id) or order
        self.prune()
        filled = f"; {after.filled:g} had filled" if after.filled > 0 else ""
        return cmd.CommandResult(True, f"{order.symbol}: entry order {after.status.value}"
                                 f"{filled}", order.position_id)

    # ---------------------------------------------------------------- fills

    async def filled(self, order: Order, qty: float, price: float,
                     fee: float) -> PositionRuntime | None:
        """The first fill of a resting entry whose position is not open: create it (returns
        None: booked here) or, when that symbol and side is already open, rebind the entry to
        that position and return its runtime for the caller to book the fill as an add."""
        core = self.core
        spec = self.specs().get(order.client_id, {})
        side = Side(spec.get("side") or ("long" if order.side.value == "buy" else "short"))
        existing = core.book.find(order.symbol, side)
        if existing is not None:
            core.ledger.bind(replace(core.ledger.get(order.client_id) or order,
                                     position_id=existing.id))
            return existing
        pid = spec.get("position_id") or order.position_id
        stored = core.store.load_position(pid) if pid else None
        if pid is None or stored is not None:  # that id is taken (closed): a new one
            pid = new_position_id(order.symbol, side.value, core.clock())
        market = core.market.market(order.symbol)
        lev = float(spec.get("leverage") or 1.0)
        sl, tp = spec.get("sl"), spec.get("tp")
        now = core.clock()
        pos = Position(
            id=pid, symbol=order.symbol, side=side, qty=qty, entry=price, leverage=lev,
            opened_at=now, initial_qty=qty, sl=sl, tp=tp, initial_sl=sl,
            preset=spec.get("preset") or core.settings.preset_for(order.symbol),
            overrides=frozen_map(spec.get("overrides") or {}), exchange=core.exchange.id,
            contract_size=market.contract_size, best_price=price,
            liquidation=money.liquidation_price(side, price, lev, market.mmr)
            if core.exchange.id == "paper" else None,
            tranches=(Tranche(order.client_id, qty, price, now, sl, tp, "entry"),))
        pos = pos.evolve(fees_paid=fee, realized_pnl=-fee)
        pos = core.with_default_targets(pos)
        with core.store.transaction():
            rt = core.set_position(pos)
            cur = core.ledger.get(order.client_id) or order
            if cur.position_id != pid:
                core.ledger.bind(replace(cur, position_id=pid))
            else:
                core.store.link_order(pid, order.client_id, OrderRole.ENTRY)
            action = Action(ActionType.OPEN, Reason.MANUAL, pid, price, qty=qty, sl=pos.sl,
                            tp=pos.tp, rule="manual", ts=now,
                            inputs=frozen_map({"order": order.client_id,
                                               "entry": spec.get("kind", order.type.value)}))
            core.store.record_action(action, symbol=order.symbol)
        core.reconciler.touch(order.symbol, side)
        core.outbox.publish(ActionTaken(action, order.symbol, True,
                                        f"{spec.get('kind', 'entry')} entry filled "
                                        f"{plain_qty(qty, market)} @ "
                                        f"{plain_price(price, market)}"))
        async with rt.lock:
            await core.protector.sync(rt, force=True)
        core.publish_position(rt)
        log.info("%s %s opened by its resting entry %s: %s @ %s", order.symbol, side.value,
                 order.client_id, plain_qty(qty, market), plain_price(price, market))
        return None
