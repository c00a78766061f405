"""The trader's commands: open, close, add, flatten, move levels, automation, presets.

Each handler validates first (bad input: a clear error, nothing changed), then acts through
the engine's own paths: level changes are actions through `EngineCore.execute`, closes go
through the verified reduce path, opens through the journal. Results tell the truth
(`CommandResult.outcomes`, the command's own fills and realized P/L).
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import replace
from typing import TYPE_CHECKING

from pmgui.domain import money
from pmgui.domain.enums import (
    ActionType,
    OrderRole,
    OrderType,
    Protection,
    Reason,
    Side,
    StopKind,
)
from pmgui.domain.errors import ExchangeError, PmguiError, PositionNotFound, ValidationError
from pmgui.domain.models import (
    Action,
    Fill,
    Order,
    OrderRequest,
    Position,
    Tranche,
    frozen_map,
)
from pmgui.domain.numbers import plain_price, plain_qty
from pmgui.domain.validation import validate_amount, validate_new_position, validate_targets
from pmgui.engine import commands as cmd
from pmgui.engine.events import ActionTaken, ErrorEvent
from pmgui.engine.ids import new_position_id
from pmgui.engine.ledger import EPS
from pmgui.engine.loop import let_due_work_first
from pmgui.engine.protection import PROTECTIVE
from pmgui.engine.runtime import PositionRuntime
from pmgui.exchange.base import ExchangePosition
from pmgui.exchange.retry import OrderStatusUnknown
from pmgui.rules.params import resolve_params

if TYPE_CHECKING:
    from pmgui.engine.core import EngineCore

log = logging.getLogger("pmgui.engine.manual")


class ManualCommands:
    def __init__(self, core: EngineCore) -> None:
        self.core = core

    def runtime(self, pid: str) -> PositionRuntime:
        rt = self.core.book.runtime(pid)
        if rt is None or not rt.is_open:
            raise PositionNotFound(f"position {pid} is not open")
        return rt

    async def set_targets(self, c: cmd.SetTargets) -> cmd.CommandResult:
        """The trader's level change: MOVE_SL/MOVE_TP actions through `execute`, then the
        protection sync; the result says per level what the venue confirmed."""
        rt = self.runtime(c.position_id)
        pos = rt.position
        market = self.core.market.market(pos.symbol)
        sl = pos.sl if c.sl == cmd.KEEP else (None if c.sl is None else market.round_price(
            _number(c.sl, "SL")))
        tp = pos.tp if c.tp == cmd.KEEP else (None if c.tp is None else market.round_price(
            _number(c.tp, "TP")))
        price = self.core.market.price(pos.symbol)
        if price is None:
            raise ValidationError(f"no current price for {pos.symbol}; try again in a moment")
        validate_targets(pos.side, price, sl if c.sl != cmd.KEEP else None,
                         tp if c.tp != cmd.KEEP else None, pos.liquidation)
        async with rt.lock:
            pos = self.runtime(c.position_id).position
            now = self.core.clock()
            if sl != pos.sl:
                await self.core.execute(Action(
                    ActionType.MOVE_SL, Reason.MANUAL, pos.id, price, sl=sl, rule="manual",
                    ts=now, stop_kind=StopKind.MANUAL,
                    inputs=frozen_map({"old_sl": pos.sl, "new_sl": sl})))
            if tp != pos.tp:
                await self.core.execute(Action(
                    ActionType.MOVE_TP, Reason.MANUAL, pos.id, price, tp=tp, rule="manual",
                    ts=now, inputs=frozen_map({"old_tp": pos.tp, "new_tp": tp})))
            await self.core.protector.sync(rt, force=True)
        self.core.publish_position(rt)
        cur = rt.position
        if not cur.is_open:  # the level was already through the market: closed at once
            return cmd.CommandResult(True, f"{cur.symbol}: closed at once "
                                           f"({cur.exit_reason}) — the level was already "
                                           "crossed", cur.id,
                                     realized_pnl=cur.realized_pnl)
        outcomes = tuple(self.core.protector.outcome(rt, role) for role in PROTECTIVE)
        market = self.core.market.market(cur.symbol)
        parts = []
        for o in outcomes:
            text = f"{o.role.upper()} {plain_price(o.level, market)}"
            if o.level is not None and o.protection != Protection.ON_EXCHANGE.value:
                text += f" (local only: {o.reason})"
            parts.append(text)
        return cmd.CommandResult(True, f"{cur.symbol}: " + " · ".join(parts), cur.id,
                                 outcomes=outcomes)

    async def close(self, c: cmd.ClosePosition,
                    remote: list[ExchangePosition] | None = None,
                    mark: int = 0) -> cmd.CommandResult:
        if not 0 < c.fraction <= 1:
            raise ValidationError(f"close fraction must be in (0, 1], got {c.fraction:g}")
        rt = self.core.book.runtime(c.position_id)
        if rt is not None and rt.closing is not None and c.fraction >= 1:
            return await asyncio.shield(rt.closing)  # idempotent: one close per position
        if rt is None or not rt.is_open:
            done = self._already_closed(c.position_id)
            if done is not None:
                return done
        rt = self.runtime(c.position_id)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        if c.fraction >= 1:
            rt.closing = fut
        try:
            async with rt.lock:
                if not rt.is_open or self.core.book.runtime(rt.id) is not rt:
                    # closed while this close waited for the position (its stop filled, a
                    # close before it): that close is the answer, nothing is sent
                    done = self._already_closed(c.position_id)
                    if done is not None:
                        if not fut.done():
                            fut.set_result(done)
                        return done
                pos = self.runtime(c.position_id).position
                before = {f.id for f in self.core.store.fills(pos.id)}
                price = self.core.market.price(pos.symbol) or pos.entry
                qty = pos.qty if c.fraction >= 1 else pos.qty * c.fraction
                action = Action(ActionType.CLOSE if c.fraction >= 1 else ActionType.REDUCE,
                                Reason(c.reason) if c.reason in Reason._value2member_map_
                                else Reason.MANUAL, pos.id, price, qty=qty, rule="manual",
                                ts=self.core.clock())
                self.core.store.record_action(action, symbol=pos.symbol)
                order = await self.core.reduce(rt, qty, action.reason, remote=remote,
                                               mark=mark)
                self.core.outbox.publish(ActionTaken(action, pos.symbol))
            result = self._close_result(pos, before, order)
            if not fut.done():
                fut.set_result(result)
            return result
        except BaseException as exc:
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # mark retrieved
            raise
        finally:
            if rt.closing is fut:
                rt.closing = None

    def _already_closed(self, pid: str) -> cmd.CommandResult | None:
        """A close asked of a position that is closed already (a second click of the
        emergency close, a flatten racing the position's own stop): the truth about the
        close that happened, nothing sent. None: no such closed position."""
        pos = self.core.store.load_position(pid)
        if pos is None or pos.is_open:
            return None
        how = f" ({pos.exit_reason})" if pos.exit_reason else ""
        return cmd.CommandResult(True, f"{pos.symbol}: already closed{how}; nothing was sent",
                                 pos.id, realized_pnl=0.0)

    def _close_result(self, pos: Position, before: set[str],
                      order: Order | None) -> cmd.CommandResult:
        """Only this close's own fills (the closing ones, never the opening fill) and the P/L
        they realized (net of their fees)."""
        fills = tuple(f for f in self.core.store.fills(pos.id) if f.id not in before)
        if not fills and order is not None and order.filled > EPS and order.average:
            # the venue's fill records follow on the stream: the order's own fill says it
            fills = (Fill(f"{order.client_id}#{order.filled:.12g}", order.client_id,
                          order.symbol, order.side, order.filled, order.average,
                          order.filled * order.average * pos.contract_size * pos.fee_rate,
                          order.updated_at or self.core.clock(), order.exchange_id),)
        now = self.core.book.get(pos.id) or self.core.store.load_position(pos.id) or pos
        qty = sum(f.qty for f in fills)
        avg = sum(f.qty * f.price for f in fills) / qty if qty > 0 else None
        pnl = now.realized_pnl - pos.realized_pnl
        how = ""
        if not fills and now.is_open and order is not None:
            # sent, but no priced fill yet (the venue reported none, or a fill without its
            # price): what the venue said, not "nothing sent"
            market = self.core.market.market(pos.symbol)
            if order.filled > EPS:
                return cmd.CommandResult(
                    True, f"{pos.symbol}: close sent, {plain_qty(order.filled, market)} filled; "
                          "its price is not reported yet — booked as the exchange reports it",
                    pos.id, realized_pnl=0.0)
            return cmd.CommandResult(
                False, f"{pos.symbol}: close sent; its fill is not reported (with its price) "
                       "yet — the position updates as the exchange reports it", pos.id,
                realized_pnl=0.0)
        if not fills and now.is_open:
            return cmd.CommandResult(False, f"{pos.symbol}: nothing sent — its stop/TP order on "
                                            "the exchange has fired; its fill is on its way",
                                     pos.id, realized_pnl=0.0)
        if not fills and not now.is_open:
            how = f" ({now.exit_reason})" if now.exit_reason else ""
            msg = f"{pos.symbol}: already closed{how}; nothing was sent"
        else:
            if not now.is_open and now.exit_reason and now.exit_reason != Reason.MANUAL.value:
                how = f" by its {now.exit_reason.replace('_', ' ')}"
            market = self.core.market.market(pos.symbol)
            msg = (f"{pos.symbol}: closed {plain_qty(qty, market)} @ {plain_price(avg, market)}"
                   f"{how}; realized "
                   f"{pnl:+,.2f}")
        return cmd.CommandResult(True, msg, pos.id, fills=fills, realized_pnl=pnl)

    async def close_all(self, c: cmd.CloseAll) -> cmd.CommandResult:
        """Flatten (DESIGN §5): the working entries withdrawn, then every position closed at
        once with reduce-only market orders while its protective orders still stand; then
        the protective orders left are cancelled, the exchange re-checked and residuals
        reported."""
        errors: list[str] = []
        # The working entries first: a flatten leaves nothing that opens a position later,
        # and an entry the closing market runs through would fill while the closes are out
        # (one that filled already is a position by now, closed below with the others).
        entries = [o for o in self.core.entries.working() if o.status.value == "open"]
        cancels = await asyncio.gather(*(self.core.cancel(o) for o in entries),
                                       return_exceptions=True)
        for o, res in zip(entries, cancels, strict=True):
            if isinstance(res, ExchangeError):
                errors.append(f"cancel {o.symbol} {o.role.value}: {res}")
        rts = [rt for rt in self.core.book.runtimes() if rt.is_open]
        remote: list[ExchangePosition] | None = None
        mark = self.core.reconciler.mark
        if rts:
            try:
                remote = await self.core.exchange.fetch_positions()  # one look for all of them
            except ExchangeError as exc:
                # not a reason to close nothing: each close then looks for itself (and
                # refuses alone, with its reason, if the venue still cannot tell)
                log.warning("flatten: positions unavailable (%s); each close looks itself",
                            exc)
        results = await asyncio.gather(
            *(self.close(cmd.ClosePosition(rt.id, 1.0, c.reason), remote, mark)
              for rt in rts), return_exceptions=True)
        closed, realized, fills = 0, 0.0, []
        for rt, res in zip(rts, results, strict=False):
            if isinstance(res, cmd.CommandResult):
                closed += 1
                realized += res.realized_pnl or 0.0
                fills += res.fills
            elif isinstance(res, PmguiError):
                errors.append(f"{rt.symbol}: {res}")
            elif isinstance(res, BaseException):
                raise res
        def orphaned(o: Order) -> bool:
            owner = self.core.book.runtime(o.position_id)
            return owner is None or not owner.is_open

        # a position that could not be closed keeps its protection
        leftovers = [o for o in self.core.ledger.resting() if o.role in PROTECTIVE and orphaned(o)]
        cancels = await asyncio.gather(*(self.core.cancel(o) for o in leftovers),
                                       return_exceptions=True)
        for o, res in zip(leftovers, cancels, strict=True):
            if isinstance(res, ExchangeError):
                errors.append(f"cancel {o.symbol} {o.role.value}: {res}")
        residual: list[str] = []
        try:
            for r in await self.core.exchange.fetch_positions():
                if r.qty > 0:
                    residual.append(f"{r.symbol} {r.side.value} "
                                    f"{plain_qty(r.qty, self.core.market.market(r.symbol))}")
            notes: list[str] = []
            open_remote = await self.core.exchange.fetch_open_orders()
            await self.core.reconciler.cancel_orphans(open_remote, notes)
            errors += [n for n in notes if "not cancelled" in n]
        except ExchangeError as exc:
            errors.append(f"re-check failed: {exc}")
        msg = f"closed {closed} position(s); realized {realized:+,.2f}"
        if residual:
            msg += "; STILL OPEN: " + ", ".join(residual)
            self.core.outbox.publish(ErrorEvent(
                "Flatten left positions open: " + ", ".join(residual), self.core.clock()))
        if errors:
            msg += "; errors: " + "; ".join(errors)
        return cmd.CommandResult(not residual and not errors, msg, residual=tuple(residual),
                                 fills=tuple(fills), realized_pnl=realized)

    def set_automation(self, c: cmd.SetAutomation) -> cmd.CommandResult:
        targets = [self.runtime(c.position_id)] if c.position_id else self.core.book.runtimes()
        for rt in targets:
            self.core.set_position(rt.position.evolve(automation=c.enabled))
            self.core.publish_position(rt)
        state = "on" if c.enabled else "paused"
        return cmd.CommandResult(True, f"automation {state} for {len(targets)} position(s)")

    def set_preset(self, c: cmd.SetPreset) -> cmd.CommandResult:
        rt = self.runtime(c.position_id)
        pos = rt.position
        overrides = self.core.settings.overrides_for(pos.symbol)
        overrides.update(c.overrides)
        resolve_params(c.preset, overrides)  # validates; raises ValidationError
        rt.params = None
        self.core.set_position(pos.evolve(preset=c.preset, overrides=frozen_map(c.overrides)))
        # The rules decide which orders the exchange holds (per tranche or one for the whole
        # position, the trigger type): what rests was placed for the old preset, so it is
        # re-aligned on the next pass, not left as it is for good.
        self.core.protector.mark_dirty(rt, urgent=True)
        self.core.publish_position(rt)
        return cmd.CommandResult(True, f"{pos.symbol}: preset {c.preset}", pos.id)

    def set_symbol_rules(self, c: cmd.SetSymbolRules) -> cmd.CommandResult:
        if not c.symbol:
            raise ValidationError("symbol must not be empty")
        merged = dict(self.core.settings.overrides)
        merged.update(c.overrides)
        resolve_params(c.preset or self.core.settings.default_preset, merged)  # validates
        stored = dict(self.core.store.get_setting("symbol_rules", {}) or {})
        if c.preset is None and not c.overrides:
            stored.pop(c.symbol, None)
        else:
            stored[c.symbol] = {"preset": c.preset, "overrides": dict(c.overrides)}
        self.core.store.set_setting("symbol_rules", stored)
        self.core.apply_symbol_rules(stored)
        return cmd.CommandResult(True, f"{c.symbol}: new positions use preset "
                                       f"{self.core.settings.preset_for(c.symbol)}")

    async def open(self, c: cmd.OpenPosition) -> cmd.CommandResult:
        if c.order_type != "market":  # a resting limit/stop entry (pmgui/engine/entries.py)
            return await self.core.entries.place(c)
        market = self.core.market.markets.get(c.symbol)
        if market is None:
            raise ValidationError(f"unknown symbol {c.symbol}")
        price = self.core.market.price(c.symbol)
        if price is None:
            tick = await self.core.exchange.fetch_price(c.symbol)
            if tick is None:
                raise ValidationError(f"no price for {c.symbol} yet")
            self.core.market.last[c.symbol] = tick
            price = tick.price
        validate_new_position(c.symbol, c.side, c.qty, c.leverage,
                              [rt.position for rt in self.core.book.for_symbol(c.symbol)],
                              market, price)
        check_position_mode(self.core, c.symbol, c.side)
        check_leverage(self.core, c.symbol, c.leverage)
        preset = c.preset or self.core.settings.preset_for(c.symbol)
        overrides = self.core.settings.overrides_for(c.symbol)
        overrides.update(c.overrides)
        resolve_params(preset, overrides)
        validate_targets(c.side, price, c.sl, c.tp,
                         money.liquidation_price(c.side, price, c.leverage, market.mmr))
        qty = market.floor_amount(c.qty)
        await self.core.exchange.set_leverage(c.symbol, c.leverage)
        self.core.exchange.subscribe([c.symbol])
        now = self.core.clock()
        pid = new_position_id(c.symbol, c.side.value, now)
        req = OrderRequest(self.core.new_client_id(), c.symbol, c.side.open_side,
                           OrderType.MARKET, qty, position_id=None, role=OrderRole.ENTRY,
                           reason="open")
        self.core.reconciler.opening.add((c.symbol, c.side))
        try:
            # what it opens, with it: an answer lost (a crash, a timeout) is adopted so
            self.core.reconciler.remember_entry(req.client_id, {
                "position_id": pid, "side": c.side.value, "leverage": c.leverage,
                "sl": None if c.sl is None else market.round_price(c.sl),
                "tp": None if c.tp is None else market.round_price(c.tp),
                "preset": preset, "overrides": dict(c.overrides)})
            await self.core.ledger.journal_synced(req)  # synced off the loop, then sent
        except BaseException:
            self.core.reconciler.opening.discard((c.symbol, c.side))
            raise
        self.core.ledger.mark_sent(req.client_id)
        try:
            result = await self.core.exchange.create_order(req)
        except OrderStatusUnknown:
            # stays pending: reconciliation adopts the position if it was opened
            self.core.ledger.mark_unknown(req.client_id)
            raise
        except ExchangeError as exc:
            self.core.ledger.reject(req.client_id, str(exc))
            raise
        finally:
            self.core.ledger.create_answered(req.client_id)
            self.core.reconciler.opening.discard((c.symbol, c.side))
            self.core.reconciler.touch(c.symbol, c.side)
        if result.filled <= 0 or result.average is None:
            self.core.ledger.apply(result, ())
            raise ExchangeError(f"{c.symbol}: entry order not filled ({result.status.value})")
        pos = Position(
            id=pid, symbol=c.symbol, side=c.side, qty=result.filled, entry=result.average,
            leverage=c.leverage, opened_at=now, initial_qty=result.filled,
            sl=None if c.sl is None else market.round_price(c.sl),
            tp=None if c.tp is None else market.round_price(c.tp),
            initial_sl=None if c.sl is None else market.round_price(c.sl),
            preset=preset, overrides=frozen_map(c.overrides), exchange=self.core.exchange.id,
            contract_size=market.contract_size, best_price=result.average,
            liquidation=money.liquidation_price(c.side, result.average, c.leverage, market.mmr)
            if self.core.exchange.id == "paper" else None,
            tranches=(Tranche(req.client_id, result.filled, result.average, now,
                              c.sl, c.tp, "entry"),),
        )
        fee = result.filled * result.average * market.contract_size * pos.fee_rate
        pos = pos.evolve(fees_paid=fee, realized_pnl=-fee)
        pos = self.core.with_default_targets(pos)
        # Booked from the venue's answer (it can tell it again: reconciliation), so committed
        # without an fsync on the loop; a killed process loses nothing, and the protective
        # orders journaled next are synced before they are sent, this with them. Its parts
        # mean nothing apart (a position without its entry, an entry bound to no position):
        # committed whole, without a savepoint per write (the entry's step of the loop).
        with self.core.store.relaxed(), self.core.store.transaction(whole=True):
            rt = self.core.set_position(pos)
            self.core.ledger.bind(replace(result, position_id=pid, role=OrderRole.ENTRY,
                                          reason="open"), fee=fee)
            action = Action(ActionType.OPEN, Reason.MANUAL, pid, result.average,
                            qty=result.filled, sl=pos.sl, tp=pos.tp, rule="manual", ts=now)
            self.core.store.record_action(action, symbol=c.symbol)
        self.core.outbox.publish(ActionTaken(action, c.symbol))
        with self.core.store.relaxed():  # after the booking (a lost write: pruned at start)
            self.core.reconciler.forget_entry(req.client_id)
        # Booked: the ticks due meanwhile go first. The entry's answer, its booking and the
        # stop's journal were one step of the loop (2-4 ms of CPU at 500 positions), and any
        # symbol's tick — a stop's crossing on its way to being booked — waited it out. Only
        # after the booking: the position is in the book, its entry bound to it, before
        # anything else runs with the venue's answer in flight. Meanwhile its ticks are
        # evaluated as for any open position (the local stop guards, as during the stop's
        # journal fsync that follows).
        await let_due_work_first()
        async with rt.lock:  # ticks may already be evaluating the new position
            await self.core.protector.sync(rt, force=True)
        self.core.publish_position(rt)
        # protected: now its rules' candles and indicators, beside it (not on its first tick)
        self.core.schedule_warm_up(rt)
        outcomes = tuple(self.core.protector.outcome(rt, role) for role in PROTECTIVE) \
            if rt.is_open else ()
        market = self.core.market.market(c.symbol)
        opened = (f"opened {c.side.value} {plain_qty(result.filled, market)} {c.symbol} @ "
                  f"{plain_price(result.average, market)}")
        if not rt.is_open:
            # its level was through the market when the venue got it (the price moved while
            # the entry was on its way): closed at once (DESIGN §4), not "opened"
            cur = rt.position
            how = f" ({cur.exit_reason})" if cur.exit_reason else ""
            at = f" @ {plain_price(cur.exit_price, market)}" if cur.exit_price else ""
            return cmd.CommandResult(True, f"{opened}, then closed at once{how}{at} — its "
                                           "level was already crossed; realized "
                                           f"{cur.realized_pnl:+,.2f}", pid,
                                     realized_pnl=cur.realized_pnl)
        return cmd.CommandResult(True, opened, pid, outcomes=outcomes)

    async def add(self, c: cmd.AddToPosition) -> cmd.CommandResult:
        """The UI's Add: an ADD action through the same executor path the rules use
        (journal first, then the order)."""
        core = self.core
        rt = self.runtime(c.position_id)
        pos = rt.position
        qty = validate_amount(c.qty, "add quantity")
        market = core.market.market(pos.symbol)
        price = core.market.price(pos.symbol)
        if price is None:
            raise ValidationError(f"no current price for {pos.symbol}; try again in a moment")
        if market.min_amount and market.floor_amount(qty) < market.min_amount:
            raise ValidationError(f"add of {plain_qty(qty, market)} is below the minimum "
                                  f"{plain_qty(market.min_amount, market)} "
                                  f"for {pos.symbol}", field="qty")
        action = Action(ActionType.ADD, Reason.MANUAL, pos.id, price, qty=qty, rule="manual",
                        ts=core.clock())
        async with rt.lock:
            self.runtime(c.position_id)  # still open
            core.store.record_action(action, symbol=pos.symbol)
            await core._add(rt, action)
            if rt.is_open and rt.protect_dirty:
                # the trader's own change, like an open or a level move: the stop on the
                # exchange covers the grown position now, not at a later tick or pass
                await core.protector.sync(rt, force=True)
        core.outbox.publish(ActionTaken(action, pos.symbol))
        core.publish_position(rt)
        return cmd.CommandResult(True, f"{pos.symbol}: add "
                                       f"{plain_qty(market.floor_amount(qty), market)} sent",
                                 pos.id)


async def add_to_position(core: EngineCore, c: cmd.AddToPosition) -> cmd.CommandResult:
    return await core.commands.add(c)


def check_position_mode(core: EngineCore, symbol: str, side: Side) -> None:
    """A one-way account nets a symbol's orders: an open of one side while the other side
    is open would only reduce (or flip) that position, never open a second one beside it.
    Refused with the reason, nothing sent. A venue that keeps both sides apart (the paper
    exchange, a hedge-mode account) has no such limit."""
    hedged = getattr(core.exchange, "is_hedged", None)
    if hedged is None or hedged(symbol):
        return
    opposite = Side.SHORT if side is Side.LONG else Side.LONG
    if core.book.find(symbol, opposite) is not None:
        raise ValidationError(
            f"{symbol}: the account is in one-way position mode, so a {side.value} would "
            f"reduce the open {opposite.value} instead of opening a {side.value}; close "
            f"the {opposite.value} first (or switch the account to hedge mode)",
            field="side")
    # a resting entry of the other side nets the same way once it fills: this open's
    # position would then be reduced (or flipped) by it behind the trader's back
    other = opposite.open_side
    if any(o.symbol == symbol and o.side is other and not o.status.is_final
           for o in core.entries.working()):
        raise ValidationError(
            f"{symbol}: the account is in one-way position mode and a {opposite.value} entry "
            f"order is working: once filled it would reduce this {side.value} instead of "
            f"opening beside it; cancel that entry first (or switch the account to hedge mode)",
            field="side")


def check_leverage(core: EngineCore, symbol: str, leverage: object) -> None:
    """A venue's leverage is per symbol: setting it for a new open re-levers the symbol's
    open positions on the exchange (Binance, the paper venue) while pmgui goes on computing
    their ROI, emergency tiers and liquidation at their own leverage. An open at another
    leverage than an open position of the symbol is refused, nothing changed."""
    if isinstance(leverage, bool) or not isinstance(leverage, (int, float)):
        return  # the validation that follows names it
    for rt in core.book.for_symbol(symbol):
        lev = rt.position.leverage
        if rt.is_open and isinstance(lev, (int, float)) and math.isfinite(lev) \
                and abs(lev - float(leverage)) > 1e-9:
            raise ValidationError(
                f"{symbol}: the open {rt.position.side.value} runs at {lev:g}x and the "
                f"exchange's leverage is per symbol; open at {lev:g}x (or close it first)",
                field="leverage")


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"{name} must be a number")
    return float(value)


