"""Reconciliation: the journal and the engine's state brought in line with the exchange.

1. Journaled orders the exchange never acknowledged are looked up by client id.
2. Orders we believe open are refreshed (fills that happened while we were away).
3. Positions are compared: adopt unknown ones, close vanished ones, fix quantities.
4. Orphaned protective orders of ours are cancelled; missing ones re-created.

Every fix is journaled with reason `reconcile`. A snapshot is never judged when it may be
outdated: a change counter, bumped by every fill/open/close and remembered per (symbol,
side), tells which positions changed after the snapshot was requested; those (and positions
with an order in flight, and entries awaiting their answer) wait for the next pass.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from pmgui.domain import money
from pmgui.domain.enums import ActionType, OrderRole, OrderStatus, PositionStatus, Reason, Side
from pmgui.domain.errors import ExchangeError
from pmgui.domain.models import Action, Order, Position, Scalar, Tranche, frozen_map
from pmgui.domain.numbers import plain_price, plain_qty
from pmgui.engine.events import ActionTaken, ErrorEvent
from pmgui.engine.ids import is_ours, new_position_id
from pmgui.engine.ledger import OrderState
from pmgui.engine.protection import PROTECTIVE
from pmgui.engine.runtime import PositionRuntime
from pmgui.exchange.base import ExchangePosition
from pmgui.rules.tranches import reduce_tranches

if TYPE_CHECKING:
    from pmgui.engine.core import EngineCore

log = logging.getLogger("pmgui.engine.reconcile")

# a journaled order that never reached the exchange (`Reconciler.never_sent`): what it was,
# the log line's type, and for a trade the trader expects done, what that means
_UNSENT = {OrderRole.ENTRY: "entry", OrderRole.REDUCE: "close", OrderRole.ADD: "add"}
_UNSENT_TYPE = {OrderRole.ENTRY: ActionType.OPEN, OrderRole.REDUCE: ActionType.REDUCE,
                OrderRole.ADD: ActionType.ADD}
_UNSENT_OUTCOME = {OrderRole.ENTRY: "no position was opened",
                   OrderRole.REDUCE: "the position was not closed or reduced by it",
                   OrderRole.ADD: "nothing was added"}
S_REJECTED = OrderState.REJECTED

# settings key: a market entry's client id → the position the trader asked it to open
# (`Reconciler.remember_entry`)
ENTRY_INTENTS = "entry_intents"
# passes a position that differs from the venue waits while an order of it cannot be looked
# up (then it is aligned anyway: a lookup that never succeeds must not freeze it)
UNCHECKED_PASSES = 3


class Reconciler:
    def __init__(self, core: EngineCore) -> None:
        self.core = core
        self.opening: set[tuple[str, Side]] = set()  # entries in flight (not positions yet)
        self._changes = 0
        self._touched: dict[tuple[str, Side], int] = {}
        # position id → the protective order of it the venue says fired, no fill of which
        # its lookup saw (this pass's `_refresh_orders`): said so if it is closed outside
        self._fired_unseen: dict[str, str] = {}
        self._entry_intents: dict[str, dict] | None = None  # `_intents`
        # positions with an order of ours whose lookup failed in this pass (`_positions`
        # does not judge them against the venue), and how many passes each waited so
        self._unchecked: set[str] = set()
        self._deferred: dict[str, int] = {}
        self._taken_over: set[str] = set()  # entries `_take_over_entries` looked for

    def touch(self, symbol: str, side: Side) -> None:
        """A fill, open or close changed (symbol, side): older snapshots do not judge it."""
        self._changes += 1
        self._touched[(symbol, side)] = self._changes

    @property
    def mark(self) -> int:
        """The change counter now: take it just before requesting a snapshot."""
        return self._changes

    def changed_since(self, key: tuple[str, Side], mark: int) -> bool:
        return self._touched.get(key, 0) > mark

    def _busy(self, key: tuple[str, Side], mark: int | None) -> bool:
        return key in self.opening or (mark is not None and self._touched.get(key, 0) > mark)

    # ---------------------------------------------------------------- market entries

    def remember_entry(self, client_id: str, intent: Mapping[str, object]) -> None:
        """Before a market entry is journaled: the position it is to open (`position_id`,
        `side`, `leverage`, `sl`, `tp`, `preset`, `overrides`). The entry is booked from the
        venue's answer; when that answer is lost (the engine killed after sending, a create
        that timed out) the position is found on the venue and adopted — with this, as the
        trader asked (its stop and target protecting it on the venue), not bare. Committed
        relaxed: the entry's journal sync, before it is sent, covers it."""
        intents = self._intents()
        intents[client_id] = dict(intent)
        try:
            with self.core.store.relaxed():
                self.core.store.set_setting(ENTRY_INTENTS, intents)
        except BaseException:
            intents.pop(client_id, None)  # not stored: the entry is not sent either
            raise

    def forget_entry(self, client_id: str) -> None:
        """The entry's position is booked (inside the caller's transaction when one is open)."""
        intents = self._intents()
        if client_id in intents:
            rest = {k: v for k, v in intents.items() if k != client_id}
            self.core.store.set_setting(ENTRY_INTENTS, rest)
            del intents[client_id]  # once stored (a rolled-back write would keep it there)

    def _intents(self) -> dict[str, dict]:
        """The stored intents (read once; this object is the one every change saves)."""
        if self._entry_intents is None:
            raw = self.core.store.get_setting(ENTRY_INTENTS, {}) or {}
            self._entry_intents = {k: v for k, v in raw.items() if isinstance(v, dict)} \
                if isinstance(raw, dict) else {}
        return self._entry_intents

    def _intended(self, r: ExchangePosition) -> tuple[Order, dict] | None:
        """A filled market entry of ours not booked on any position whose intent names this
        venue position's symbol and side (the newest)."""
        for cid, intent in reversed(list(self._intents().items())):
            order = self.core.ledger.get(cid) or self.core.store.order(cid)
            if order is not None and order.role is OrderRole.ENTRY \
                    and order.position_id is None and order.filled > 0 \
                    and order.symbol == r.symbol and intent.get("side") == r.side.value:
                return order, intent
        return None

    def _prune_intents(self) -> None:
        """Forget the intents of entries that will open nothing more: unknown, bound to their
        position, or final without a fill."""
        intents = self._intents()
        keep = {}
        for cid, intent in intents.items():
            order = self.core.ledger.get(cid) or self.core.store.order(cid)
            if order is None or order.position_id is not None \
                    or (order.status.is_final and order.filled <= 0):
                continue
            keep[cid] = intent
        if len(keep) != len(intents):
            self.core.store.set_setting(ENTRY_INTENTS, keep)
            self._entry_intents = keep

    def _adopt_intended(self, r: ExchangePosition, entry: Order, intent: dict) -> Position:
        """The position of our own market entry, booked as the trader asked: its id, stop,
        target, preset and overrides; the entry order, its fills and their fees on it."""
        core = self.core
        overrides = intent.get("overrides")
        pid = intent.get("position_id")
        if not isinstance(pid, str) or not pid or core.store.load_position(pid) is not None:
            pid = None
        with core.store.transaction():
            pos = self.adopt(r, sl=_level(intent.get("sl")), tp=_level(intent.get("tp")),
                             preset=intent.get("preset") if isinstance(intent.get("preset"),
                                                                       str) else None,
                             overrides=overrides if isinstance(overrides, dict) else None,
                             reason=Reason.MANUAL, position_id=pid, entry=entry.client_id)
            core.ledger.bind(replace(entry, position_id=pos.id, role=OrderRole.ENTRY))
            fee = sum(f.fee for f in core.store.fills(pos.id)
                      if f.order_client_id == entry.client_id)
            if fee:
                pos = pos.evolve(fees_paid=pos.fees_paid + fee,
                                 realized_pnl=pos.realized_pnl - fee)
                core.set_position(pos)
            self.forget_entry(entry.client_id)
        return pos

    # ---------------------------------------------------------------- orders

    async def resolve_pending(self, min_age: float = 2.0) -> None:
        """Look up, by client id, orders whose create got no answer (OrderStatusUnknown).

        Without this a pending protective order would only be resolved by the next full
        reconciliation (a minute later), and while it is pending it is neither trusted as
        protection nor re-sent. Orders whose create call is still in flight are left alone.
        """
        core, ledger = self.core, self.core.ledger
        now = core.clock()
        for order in [o for o in ledger.unresolved()
                      if o.client_id not in ledger.creating and now - o.created_at >= min_age]:
            try:
                found = await core.exchange.fetch_order_by_client_id(order.client_id,
                                                                      order.symbol)
            except ExchangeError as exc:
                log.info("pending order %s still unresolved: %s", order.client_id, exc)
                continue
            if order.client_id not in ledger.live:
                continue  # resolved meanwhile (the order stream)
            rt = core.book.runtime(order.position_id)
            if found is None:
                ledger.reject(order.client_id, "never reached the exchange")
                self.never_sent(order)
                if rt is not None:
                    core.protector.mark_dirty(rt, urgent=True)
            else:
                await core.apply_order(found, ())
            if rt is not None:
                rt.protect_failing.pop(order.role, None)
                rt.protect_dirty = True
        if self._entries_unbooked():
            await self._take_over_entries()

    def _entries_unbooked(self) -> bool:
        """A market entry of ours filled (its lookup, or the venue's report of it) whose
        answer never came back to book its position: its create timed out."""
        ledger = self.core.ledger
        for cid, intent in self._intents().items():
            order = ledger.get(cid)
            if order is None or order.position_id is not None or order.filled <= 0 \
                    or cid in ledger.creating or cid in self._taken_over:
                continue
            if not any((order.symbol, side) in self.opening for side in Side
                       if side.value == intent.get("side")):
                self._taken_over.add(cid)  # looked for once; later, by the full passes
                return True
        return False

    async def _take_over_entries(self) -> None:
        """A market entry whose answer was lost turned out filled: its position, on the
        venue, is taken over now (`_positions`: as the trader asked, `remember_entry`) and
        protected — not at the next full reconciliation, unguarded until then."""
        core = self.core
        mark = self._changes
        try:
            remote = await core.exchange.fetch_positions()
        except ExchangeError as exc:
            log.info("positions unavailable for a filled entry (%s); the next "
                     "reconciliation takes it over", exc)
            return
        known = {rt.id for rt in core.book.runtimes()}
        await self._positions(remote, mark)
        for rt in [rt for rt in core.book.runtimes() if rt.id not in known]:
            async with rt.lock:
                await core.protector.sync(rt, force=True)
            core.publish_position(rt)

    async def _refresh_orders(self, notes: list[str]) -> None:
        core, ledger = self.core, self.core.ledger
        # (and the final orders a fill of which is booked at a reference: their records
        # may carry the venue's price by now, which corrects the booking)
        for order in list(core.store.pending_orders()) + ledger.resting() + \
                ledger.referenced():
            if order.client_id in ledger.creating:
                continue  # its create call is still waiting for the answer: not ours to judge
            try:
                found = await core.exchange.fetch_order_by_client_id(order.client_id, order.symbol)
            except ExchangeError as exc:
                notes.append(f"could not check order {order.client_id}: {exc}")
                if order.position_id:
                    self._unchecked.add(order.position_id)
                continue
            if found is None:
                state = ledger.state(order.client_id)
                if order.status is OrderStatus.PENDING:
                    if state is S_REJECTED:
                        continue  # told already (listed twice: the journal and the ledger)
                    ledger.reject(order.client_id, "never reached the exchange")
                    self.never_sent(order)
                elif order.status is OrderStatus.OPEN and state is not None \
                        and not state.is_final:
                    gone = ledger.transition(order.client_id, OrderState.CANCELLED)
                    notes.append(f"order {order.client_id} no longer on the exchange")
                    if gone.role in PROTECTIVE:
                        core.protector.lost(gone, "missing")
                continue
            await core.apply_order(found, ())
            if found.status is OrderStatus.FILLED and found.filled <= 0 \
                    and order.role in PROTECTIVE and order.position_id:
                # it fired, and the adapter's bounded look at its market order saw no fill
                self._fired_unseen[order.position_id] = order.role.value

    def _recall_fee_estimates(self) -> None:
        """At start-up: the fills the journal holds with an estimated fee (the venue's report
        of it did not come before pmgui stopped) are handed to the venue, which looks up
        their trades beside the stream and tells each again with the venue's fee — the
        ledger corrects the booking once, as the stream's report would have. Reconciliation
        does not look up filled orders, so without this the estimate stayed for good."""
        recall = getattr(self.core.exchange, "recall_fee_estimates", None)
        if recall is None:
            return
        estimates = self.core.ledger.fee_estimates()
        if estimates:
            log.info("reconcile: %d fill(s) booked with an estimated fee before the restart; "
                     "their trades are looked up", len(estimates))
            recall(estimates)

    # ---------------------------------------------------------------- the pass

    async def reconcile(self, startup: bool = False) -> list[str]:
        """Bring the store in line with the exchange; every fix is logged as `reconcile`."""
        core = self.core
        notes: list[str] = []
        self._fired_unseen.clear()
        self._unchecked.clear()
        await self._refresh_orders(notes)
        if startup:
            self._recall_fee_estimates()
        mark = self._changes
        try:
            remote = await core.exchange.fetch_positions()
        except ExchangeError as exc:
            notes.append(f"positions unavailable: {exc}")
            remote = None
        position_notes = await self._positions(remote, mark) if remote is not None else []
        try:
            open_remote = await core.exchange.fetch_open_orders()
        except ExchangeError:
            open_remote = []
        await self.cancel_orphans(open_remote, notes)
        if startup:
            self._prune_intents()
        for note in notes:
            self.log(note)
        notes += position_notes
        if not startup:  # (start() protects every position itself once reconciled)
            for rt in core.book.runtimes():
                # under the position's lock: a tick handler may be moving this very stop,
                # and two syncs at once would both place an order
                async with rt.lock:
                    await core.protector.sync(rt, force=True)
        return notes

    async def cancel_orphans(self, open_remote: list[Order], notes: list[str]) -> None:
        """Reduce-only orders of ours on the exchange whose position is not open: cancelled."""
        core = self.core
        for o in open_remote:
            if not is_ours(o.client_id) or not o.reduce_only:
                continue
            known = core.ledger.get(o.client_id)
            owner = core.book.runtime(known.position_id if known else None)
            if owner is not None and owner.is_open:
                continue
            try:
                await core.exchange.cancel_order(o)
            except ExchangeError as exc:
                notes.append(f"orphaned order {o.client_id} not cancelled: {exc}")
                continue
            notes.append(f"cancelled orphaned {o.type.value} order {o.client_id}")
            state = core.ledger.state(o.client_id)
            if known and state is not None and not state.is_final:
                core.ledger.transition(o.client_id, OrderState.CANCELLED)

    async def _positions(self, remote: list[ExchangePosition],
                         mark: int | None = None) -> list[str]:
        """Notes returned here are journaled already (on their position).

        `remote` is a snapshot requested when the change counter stood at `mark`: a
        position filled, opened or closed since then, or with an order in flight (its lock
        held), or an entry still waiting for its answer, is left to the next pass instead
        of being "fixed" against an outdated picture (a second, adopted copy of a position
        being opened; a close of ours taken for one made outside pmgui).
        """
        core = self.core
        notes: list[str] = []
        by_key = {(r.symbol, r.side): r for r in remote if r.qty > 0}
        for rt in core.book.runtimes():
            pos = rt.position
            key = (pos.symbol, pos.side)
            r = by_key.pop(key, None)
            if self._busy(key, mark) or rt.lock.locked() or not pos.is_open:
                continue
            if pos.id in self._unchecked and (r is None or abs(r.qty - pos.qty) > core.market
                                               .market(pos.symbol).amount_step / 2):
                # an order of ours on it could not be looked up: it may be what changed
                # the position (our close, our stop that fired while pmgui was down), to
                # be booked from its fill — not "closed outside pmgui" without its P/L
                waited = self._deferred.get(pos.id, 0)
                if waited < UNCHECKED_PASSES:
                    self._deferred[pos.id] = waited + 1
                    log.info("reconcile: %s %s differs on the exchange, but an order of "
                             "it could not be looked up; judged at the next pass",
                             pos.symbol, pos.side.value)
                    continue
            self._deferred.pop(pos.id, None)
            note = await self.align(rt, r)
            if note:
                notes.append(note)
        for r in by_key.values():
            if self._busy((r.symbol, r.side), mark) or self._entry_fill(r):
                continue
            intended = self._intended(r)
            # journals its own OPEN action
            pos = self.adopt(r) if intended is None else self._adopt_intended(r, *intended)
            rt = core.book.runtime(pos.id)
            if core.started and rt is not None:  # at start-up: warmed after protection
                core.schedule_warm_up(rt)
            market = self.core.market.market(r.symbol)
            log.info("reconcile: adopted %s %s %s @ %s (preset %s)", r.symbol, r.side.value,
                     plain_qty(r.qty, market), plain_price(r.entry, market), pos.preset)
        return notes

    def _entry_fill(self, r: ExchangePosition) -> bool:
        """A position that may be the fill of a resting entry of ours not booked yet: left to
        the order lookup of the next pass (which books it on its own position), not adopted."""
        working = sum(o.amount - o.filled for o in self.core.ledger
                      if o.role is OrderRole.ENTRY and o.symbol == r.symbol
                      and o.side is r.side.open_side)
        return working > 0 and r.qty <= working * (1 + 1e-9)

    async def align(self, rt: PositionRuntime, r: ExchangePosition | None) -> str:
        """One position brought in line with what the exchange holds for its symbol and side
        (`r`, None: nothing): closed or resized outside pmgui, journaled; returns the note."""
        core = self.core
        pos = rt.position
        if r is None or r.qty <= 0:
            price = core.market.price(pos.symbol) or pos.entry
            closed = pos.evolve(status=PositionStatus.CLOSED, qty=0.0,
                                closed_at=core.clock(), exit_price=price,
                                exit_reason=Reason.RECONCILE.value)
            core.set_position(closed)
            note = f"{pos.symbol} {pos.side.value} was closed outside pmgui"
            fired = self._fired_unseen.pop(pos.id, None)
            if fired is not None:
                note += (f": its {fired} order fired on the exchange, but no fill of it was "
                         "visible after a bounded lookup; booked at the last price "
                         f"{plain_price(price, core.market.market(pos.symbol))}")
            self.journal(ActionType.CLOSE, pos, note, price, pos.qty)
            await core.finish_close(closed)
            return note
        note = ""
        market = core.market.market(pos.symbol)
        if abs(r.qty - pos.qty) > market.amount_step / 2:
            note = (f"{pos.symbol} {pos.side.value} quantity {plain_qty(pos.qty, market)} → "
                    f"{plain_qty(r.qty, market)} "
                    "(changed outside pmgui)")
            if r.qty < pos.qty:  # the tranches shrink with it, oldest first
                tranches = reduce_tranches(pos.tranches, pos.qty - r.qty)
            else:
                tranches = (*pos.tranches, Tranche(
                    f"reconcile-{int(core.clock() * 1000):x}", r.qty - pos.qty,
                    r.entry or pos.entry, core.clock(), pos.sl, pos.tp, "adopted"))
            self.journal(
                ActionType.REDUCE if r.qty < pos.qty else ActionType.ADD, pos, note,
                core.market.price(pos.symbol) or pos.entry, abs(pos.qty - r.qty))
            core.set_position(pos.evolve(qty=r.qty, entry=r.entry or pos.entry,
                                         tranches=tranches))
            # the protective orders are re-sized by the next protection sync
            rt.protect_dirty = True
        if r.liquidation and r.liquidation != rt.position.liquidation:
            core.set_position(rt.position.evolve(liquidation=r.liquidation))
        if (r.margin_mode, r.hedged) != (rt.position.margin_mode, rt.position.hedge):
            core.set_position(rt.position.evolve(margin_mode=r.margin_mode, hedge=r.hedged))
        return note

    # ---------------------------------------------------------------- adoption

    def adopt(self, r: ExchangePosition, *, sl: float | None = None, tp: float | None = None,
              preset: str | None = None, overrides: Mapping[str, Scalar] | None = None,
              reason: Reason = Reason.RECONCILE, fee_rate: float | None = None,
              position_id: str | None = None, entry: str | None = None) -> Position:
        """Take over a position found on the exchange; journals its OPEN action.
        `position_id`: the id to give it (a new one without); `entry`: the client id of our
        own entry order that opened it (its tranche's id, as for an entry booked at once)."""
        core = self.core
        now = core.clock()
        preset = preset or core.settings.preset_for(r.symbol)
        # a TP/SL the venue keeps on the position itself (Bybit) is the position's level
        sl = r.sl if sl is None else sl
        tp = r.tp if tp is None else tp
        pos = Position(
            fee_rate=0.0005 if fee_rate is None else fee_rate,
            overrides=frozen_map(overrides or {}),
            id=position_id or new_position_id(r.symbol, r.side.value, now),
            symbol=r.symbol, side=r.side,
            qty=r.qty, entry=r.entry, leverage=r.leverage or 1.0,
            opened_at=r.opened_at or now, initial_qty=r.qty, sl=sl, tp=tp, initial_sl=sl,
            liquidation=r.liquidation, preset=preset, exchange=core.exchange.id,
            margin_mode=r.margin_mode, hedge=r.hedged,
            contract_size=core.market.market(r.symbol).contract_size,
            tranches=(Tranche(entry or "adopted", r.qty, r.entry, r.opened_at or now, sl, tp,
                              "entry" if entry else "adopted"),),
        )
        if pos.liquidation is None and core.exchange.id == "paper":
            pos = pos.evolve(liquidation=money.liquidation_price(
                pos.side, pos.entry, pos.leverage, core.market.market(pos.symbol).mmr))
        pos = core.with_default_targets(pos)
        pos = pos.evolve(tranches=tuple(
            replace(t, sl=pos.sl if t.sl is None else t.sl, tp=pos.tp if t.tp is None else t.tp)
            for t in pos.tranches))
        core.set_position(pos)
        action = Action(ActionType.OPEN, reason, pos.id, r.entry, qty=r.qty, sl=pos.sl, tp=pos.tp,
                        rule="reconcile" if reason is Reason.RECONCILE else "manual", ts=now)
        core.store.record_action(action, symbol=pos.symbol)
        core.outbox.publish(ActionTaken(action, pos.symbol, True, "adopted"))
        return pos

    # ---------------------------------------------------------------- journal

    def journal(self, kind: ActionType, pos: Position, note: str, price: float,
                qty: float) -> None:
        """A discrepancy with the exchange that changed a position: journaled on that
        position (the history shows why its quantity changed or why it closed)."""
        core = self.core
        log.warning("reconcile: %s", note)
        action = Action(kind, Reason.RECONCILE, pos.id, price, qty=qty, rule="reconcile",
                        ts=core.clock(), inputs=frozen_map({"note": note}))
        core.store.record_action(action, symbol=pos.symbol)
        core.outbox.publish(ActionTaken(action, pos.symbol, True, note))

    def never_sent(self, order: Order) -> None:
        """A journaled order the exchange never received (the engine stopped between its
        journal and its send). A trade the trader expects done (a close, an entry, an add:
        the log already says it was decided) is logged on its position as NOT carried out
        and told as an error; a protective order is noted (the sync re-places it)."""
        core = self.core
        if order.role not in _UNSENT_OUTCOME:  # a protective order: re-placed by the sync
            self.log(f"order {order.client_id} never reached the exchange")
            return
        what = _UNSENT[order.role]
        market = core.market.market(order.symbol)
        rt = core.book.runtime(order.position_id)
        where = f"{order.symbol} {rt.position.side.value}" if rt is not None else order.symbol
        outcome = _UNSENT_OUTCOME[order.role]
        note = (f"{where}: the {what} order {order.client_id} "
                f"({order.side.value} {plain_qty(order.amount, market)}) journaled before "
                f"pmgui stopped never reached the exchange; {outcome}")
        log.warning("reconcile: %s", note)
        action = Action(_UNSENT_TYPE[order.role], Reason.RECONCILE,
                        order.position_id or "", core.market.price(order.symbol) or 0.0,
                        qty=order.amount, rule="reconcile", ts=core.clock(),
                        inputs=frozen_map({"order": order.client_id}))
        core.store.record_action(action, symbol=order.symbol, ok=False, detail=note)
        core.outbox.publish(ActionTaken(action, order.symbol, False, note))
        core.outbox.publish(ErrorEvent(note, core.clock(), order.position_id))

    def log(self, note: str) -> None:
        core = self.core
        log.info("reconcile: %s", note)
        action = Action(ActionType.CLOSE if "closed outside" in note else ActionType.MOVE_SL,
                        Reason.RECONCILE, "", 0.0, rule="reconcile", ts=core.clock(),
                        inputs=frozen_map({"note": note}))
        core.store.record_action(action, symbol="")
        core.outbox.publish(ActionTaken(action, "", True, note))


def _level(value: object) -> float | None:
    """A stored intent's stop or target (None: none, or not a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)
