"""The order ledger: every order pmgui placed, its lifecycle state, and fill-delta accounting.

One owner for order state (DESIGN §2, §6). An order goes through

    intended → sent → acknowledged → partially_filled → filled | cancelled | rejected | unknown

* `intended`: journaled (SQLite) before anything is sent, so a crash can never lose it;
* `sent`: the create call is on its way;
* `acknowledged` / `partially_filled`: the venue has it (resting, or partly filled);
* `filled`, `cancelled`, `rejected`: final;
* `unknown`: the create got no answer (timeout, crash before the answer). Never re-sent: it
  is looked up by client id and resolved to what the venue says (or `rejected` when the
  venue never saw it).

Transitions the engine *asks for* (`mark_sent`, `mark_unknown`, `reject`, `transition`) are
checked against `ALLOWED`; an illegal one raises `IllegalOrderTransition` and changes nothing.
Updates the *venue reports* arrive out of order (a create's answer after the stream's fill, a
REST poll older than the stream): an update that would move an order backwards is *stale*:
its status is ignored, its fill quantity still counts if it is larger (fills only grow).

Accounting is driven by fill deltas, not by fill messages: the ledger remembers how much of
each order has been applied, so the same fill arriving twice (stream and REST, or before and
after a crash) is applied once. `apply()` returns the delta for the engine to book on the
position.

The journal (SQLite `orders`/`fills`/`order_links`) keeps the coarse `OrderStatus`
(pending/open/filled/canceled/rejected/expired); the finer state lives here and is derived
again from the journal on start-up (a stored `pending` order is `unknown`).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from enum import StrEnum

from pmgui.domain import money
from pmgui.domain.enums import ActionType, OrderRole, OrderStatus, Reason
from pmgui.domain.errors import PmguiError
from pmgui.domain.models import Action, Fill, Order, OrderRequest, Position, frozen_map
from pmgui.domain.numbers import plain_number as _n
from pmgui.domain.slots import slot_copier
from pmgui.engine.events import ActionTaken, Event, OrderSnapshot, PositionCorrected
from pmgui.engine.outbox import Outbox
from pmgui.store.db import Store

log = logging.getLogger("pmgui.engine.ledger")

EPS = 1e-12
FINAL_KEPT = 512  # orders that became final lately, kept in memory beside their journal rows
# the settings key under which the fills booked at a reference wait for their correction
REFERENCES_KEY = "ledger.references"
# how long reconciliation keeps looking up an order booked at a reference (every pass, ~1 a
# minute): a venue forgets old orders, and a priced report of one still corrects it after
REFERENCE_LOOKUP_AGE = 7 * 86400.0
# the settings key under which the fills booked with an estimated fee wait for the venue's
# fee — records the venue told with an estimate and the ledger's own (`<client id>#…`: a
# delta booked without records) alike: {fill id: {"client_id", "end" (the order's filled
# after it), "at"}}. A setting, not a column of `fills`: it holds a handful of entries for
# seconds (the stream's report corrects them), is written in the booking's commit like
# `REFERENCES_KEY`, and needs no migration
FEE_ESTIMATES_KEY = "ledger.fee_estimates"
# settings key: a rule's reduction in flight → the flags its action sets (`keep_reduce_flags`)
REDUCE_FLAGS_KEY = "ledger.reduce_flags"
# how long after its booking a fill's estimated fee is looked up at start-up: a venue lists
# an account's trades for days, and a fee true-up a day late is still one
FEE_LOOKUP_AGE = 86400.0
FEE_ESTIMATES_KEPT = 512  # the newest kept (each booking writes them all)
# a fee's difference that is no money: below any venue's precision (Binance says 8
# decimals), above float noise and the paper venue's rounding of its fees (10 decimals) — a
# record of our own replaced by the paper venue's at the same rate is not a correction
FEE_NOISE = 1e-9


# Copies of an order on the path of every venue report (a stop's fill among them, before
# its close is acknowledged): straight-line slot copies, ~10x cheaper than
# `dataclasses.replace` (Order has no __post_init__: the copy is the same object replace makes)
_merged = slot_copier(Order, ("position_id", "role", "reason", "created_at", "status", "error"))
_with_fill = slot_copier(Order, ("filled", "average"))
_unreferenced = slot_copier(Order, ("trigger_ref",))


class OrderState(StrEnum):
    INTENDED = "intended"
    SENT = "sent"
    ACKNOWLEDGED = "acknowledged"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    UNKNOWN = "unknown"

    @property
    def is_final(self) -> bool:
        return self in FINAL

    @property
    def is_live(self) -> bool:
        """Resting on the venue as far as we know (acknowledged, partly filled)."""
        return self in (OrderState.ACKNOWLEDGED, OrderState.PARTIALLY_FILLED)


S = OrderState
FINAL = frozenset({S.FILLED, S.CANCELLED, S.REJECTED})
_RESOLVED = frozenset({S.ACKNOWLEDGED, S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.REJECTED})
ALLOWED: dict[OrderState, frozenset[OrderState]] = {
    # never sent: refused before it left (validation, the adapter's own checks)
    S.INTENDED: frozenset({S.SENT, S.REJECTED}),
    S.SENT: _RESOLVED | {S.UNKNOWN},
    S.UNKNOWN: _RESOLVED,  # resolved by a lookup by client id
    S.ACKNOWLEDGED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED}),
    S.PARTIALLY_FILLED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED}),
    S.FILLED: frozenset(),
    S.CANCELLED: frozenset(),
    S.REJECTED: frozenset(),
}
# How far along an order is: a venue update ranked lower than the current state is stale.
_RANK = {S.INTENDED: 0, S.SENT: 1, S.UNKNOWN: 1, S.ACKNOWLEDGED: 2, S.PARTIALLY_FILLED: 3,
         S.FILLED: 4, S.CANCELLED: 4, S.REJECTED: 4}


class IllegalOrderTransition(PmguiError):
    """The engine asked for an order state change the lifecycle does not allow."""

    def __init__(self, client_id: str, old: OrderState, new: OrderState) -> None:
        super().__init__(f"order {client_id}: {old.value} → {new.value} is not an allowed "
                         "transition")
        self.client_id, self.old, self.new = client_id, old, new


def allowed(old: OrderState, new: OrderState) -> bool:
    return new in ALLOWED[old]


def state_of(order: Order) -> OrderState:
    """The lifecycle state a venue report (or a journal row) says an order is in."""
    st = order.status
    if st is OrderStatus.OPEN:
        return S.PARTIALLY_FILLED if order.filled > EPS else S.ACKNOWLEDGED
    if st is OrderStatus.FILLED:
        return S.FILLED
    if st in (OrderStatus.CANCELED, OrderStatus.EXPIRED):
        return S.CANCELLED
    if st is OrderStatus.REJECTED:
        return S.REJECTED
    return S.UNKNOWN  # PENDING: journaled, its fate not known


def status_of(state: OrderState, order: Order) -> OrderStatus:
    """The journal's coarse status for a lifecycle state (keeps EXPIRED as the venue said)."""
    if state in (S.INTENDED, S.SENT, S.UNKNOWN):
        return OrderStatus.PENDING
    if state.is_live:
        return OrderStatus.OPEN
    if state is S.FILLED:
        return OrderStatus.FILLED
    if state is S.CANCELLED:
        return OrderStatus.EXPIRED if order.status is OrderStatus.EXPIRED \
            else OrderStatus.CANCELED
    return OrderStatus.REJECTED


@dataclass(frozen=True, slots=True)
class Applied:
    """What one venue update changed: the merged order, the fill delta to book, and whether
    a protective order ended without filling (and without pmgui cancelling it)."""

    order: Order
    previous: Order
    delta: float
    price: float | None
    fee: float | None
    liquidation: bool
    lost_protection: bool


@dataclass(frozen=True, slots=True)
class Booked:
    """A fill booked at a reference, waiting for the venue's price (persisted under
    `REFERENCES_KEY` in the booking's commit, so a restart before its correction keeps it).

    `qty` was booked at `price` (the reference, named by `label`) with the estimated fee
    `fee`; the order's `base_qty` before it was booked at the venue's prices (`base_avg`).
    The position saw `booked_qty` at `booked_at` from that report (priced part and
    reference together): a close's exit price."""

    position_id: str
    qty: float
    price: float
    label: str
    fee: float
    fee_rate: float
    contract_size: float
    base_qty: float
    base_avg: float | None
    booked_qty: float
    booked_at: float

    def to_json(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_json(cls, raw: object) -> Booked | None:
        """None for a malformed entry (a newer or damaged settings value): it is dropped
        with a warning by the caller, never booked at a guess."""
        if not isinstance(raw, dict):
            return None
        try:
            booked = cls(**{name: raw[name] for name in cls.__slots__})
        except (KeyError, TypeError):
            return None
        numbers = (booked.qty, booked.price, booked.fee, booked.fee_rate, booked.contract_size,
                   booked.base_qty, booked.booked_qty, booked.booked_at)
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in numbers):
            return None
        return booked


@dataclass(frozen=True, slots=True)
class Correction:
    """What re-booking a fill booked at a reference at the venue's price changes on the
    position (`corrected`): `qty` moves from `booked_price` to `price`, the fee by
    `fee_delta`; a close's exit price from `booked_at` to `corrected_at`."""

    client_id: str
    position_id: str
    opening: bool  # the fill opened or added to the position (else it reduced it)
    qty: float
    booked_price: float
    price: float
    fee_delta: float
    booked_at: float
    corrected_at: float


def corrected(pos: Position, c: Correction) -> Position:
    """The position as if the fill had been booked at the venue's price from the start.

    A reduction: its realised P/L by `dir·(price − booked)·qty·contract size` less the fee's
    difference (exact), a close's exit price too. An open or add: the average entry (and
    its tranche's) moves by the fill's share of the difference — exact while nothing was
    reduced in between (the correction follows the booking by seconds: the lookup's), the
    fee's difference is taken from the realised P/L like every opening fee."""
    fees = pos.fees_paid + c.fee_delta
    if c.opening:
        entry = pos.entry + c.qty * (c.price - c.booked_price) / pos.qty \
            if pos.qty > EPS else pos.entry
        tranches = tuple(
            replace(t, entry=t.entry + c.qty * (c.price - c.booked_price) / t.qty)
            if t.id == c.client_id and t.qty + EPS >= c.qty else t for t in pos.tranches)
        if not money.valid_price(entry):
            return pos.evolve(fees_paid=fees, realized_pnl=pos.realized_pnl - c.fee_delta)
        return pos.evolve(entry=entry, tranches=tranches, fees_paid=fees,
                          realized_pnl=pos.realized_pnl - c.fee_delta)
    gross = pos.dir * (c.price - c.booked_price) * c.qty * pos.contract_size
    pos = pos.evolve(realized_pnl=pos.realized_pnl + gross - c.fee_delta, fees_paid=fees)
    if not pos.is_open and pos.exit_price is not None and \
            abs(pos.exit_price - c.booked_at) <= 1e-9 * max(1.0, abs(c.booked_at)):
        pos = pos.evolve(exit_price=c.corrected_at)
    return pos


class OrderLedger:
    """Orders by client id with their lifecycle state; the journal's only writer for orders
    and fills. `live` holds every order that is not final (pending or resting)."""

    def __init__(self, store: Store, outbox: Outbox, clock: Callable[[], float]) -> None:
        self.store = store
        self.outbox = outbox
        self.clock = clock
        self.live: dict[str, Order] = {}
        self._state: dict[str, OrderState] = {}
        self._by_position: dict[str, dict[str, Order]] = {}
        # the client ids of the orders in `live` whose journal status is pending, in the
        # order they became so (`unresolved`): a few at a time, among thousands of live orders
        self._pending: dict[str, None] = {}
        self.creating: set[str] = set()  # create call in flight
        self.cancelling: set[str] = set()  # pmgui's own cancel in flight
        self.reduce_flags: dict[str, frozenset[str]] = {}  # client id → the action's flags
        # the orders that became final lately, as journaled (the journal row says the same):
        # a late report of one (a cancel's echo, a fill after its stop fired) is merged
        # without reading it back from SQLite
        self._final: OrderedDict[str, Order] = OrderedDict()
        # the fills booked at a reference, by client id, until the venue's price corrects
        # them (`REFERENCES_KEY`: persisted in the booking's commit, read back by `load`)
        self._referenced: dict[str, Booked] = {}
        # the venue's word on whether a fill record it tells carries an estimated fee (the
        # adapter's `fee_estimated`; None: the venue says every fee it books)
        self.fee_estimated: Callable[[Fill], bool] | None = None
        # the fills recorded with an estimated fee, by fill id, until the venue's fee is
        # told (`FEE_ESTIMATES_KEY`: persisted in the booking's commit, read back by `load`)
        self._estimates: dict[str, dict[str, object]] = {}
        # the engine's hook for a correction of a position it holds open (its runtime state
        # is the truth, not the journal's row): True when it booked it. A closed position's
        # row is final, and corrected here (`_rebook`)
        self.rebook: Callable[[Correction], bool] | None = None
        # closed positions' rows corrected in a transaction not known to be committed yet:
        # announced (`PositionCorrected`) once it is (`_announce`), dropped if it rolled back
        self._corrected: list[PositionCorrected] = []

    # ---------------------------------------------------------------- queries

    def state(self, client_id: str) -> OrderState | None:
        s = self._state.get(client_id)
        if s is None:
            known = self._final.get(client_id) or self.store.order(client_id)
            return None if known is None else state_of(known)
        return s

    def get(self, client_id: str) -> Order | None:
        return self.live.get(client_id) or self._final.get(client_id) \
            or self.store.order(client_id)

    def of_position(self, pid: str) -> dict[str, Order]:
        """The live orders of one position (the same dict object for the position's lifetime:
        its `PositionRuntime` holds it as its pending orders)."""
        return self._by_position.setdefault(pid, {})

    def forget_position(self, pid: str) -> None:
        if not self._by_position.get(pid):
            self._by_position.pop(pid, None)

    def __iter__(self) -> Iterator[Order]:
        return iter(list(self.live.values()))

    def _superseded(self, order: Order) -> bool:
        """A newer live order of ours plays the same protective role on the same position:
        `order` was being replaced (the new one is placed first, then the old cancelled), so
        its end is pmgui's own doing even when the cancel in flight is not known any more
        (`cancelling` is not journaled: the engine died between the venue's cancel and its
        report)."""
        from pmgui.engine.protection import tranche_ids  # (it imports the runtime, this)

        pid = order.position_id
        if pid is None:
            return False
        covers = tranche_ids(order)  # a tranche's own order: replaced by one for it only
        return any(
            o.position_id == pid and o.role is order.role and o.client_id != order.client_id
            and o.created_at >= order.created_at and tranche_ids(o) == covers
            for o in self.live.values())

    def resting(self) -> list[Order]:
        """Orders the venue acknowledged and that are still open."""
        return [o for o in self.live.values() if o.status is OrderStatus.OPEN]

    def unresolved(self) -> list[Order]:
        """The live orders whose journal status is pending (journaled, their fate not yet
        known), from the index `_track` keeps: the housekeeping asks every second, and a
        scan of the live orders was ~2 ms of one loop step at 2,000 positions whenever an
        order was on its way (most of the time in a storm)."""
        live = self.live
        return [live[cid] for cid in self._pending]

    def owners(self) -> dict[str, int]:
        """{position id: how many live orders name it} for the positions with live orders:
        together they count every live order that names a position."""
        return {pid: len(orders) for pid, orders in self._by_position.items() if orders}

    # ---------------------------------------------------------------- bookkeeping

    def _track(self, order: Order, state: OrderState) -> None:
        cid = order.client_id
        self._state[cid] = state
        old = self.live.get(cid)
        if old is not None and old.status is OrderStatus.PENDING:
            del self._pending[cid]  # indexed again below if it stays live and pending
        if old is not None and old.position_id and old.position_id != order.position_id:
            self._by_position.get(old.position_id, {}).pop(cid, None)
        if state.is_final:  # final: the journal row says it from now on
            self._state.pop(cid, None)
            self.live.pop(cid, None)
            if order.position_id:
                self._by_position.get(order.position_id, {}).pop(cid, None)
            final = self._final
            final.pop(cid, None)
            # as just journaled (the venue's trigger reference is not journaled)
            final[cid] = order if order.trigger_ref is None else _unreferenced(order, None)
            if len(final) > FINAL_KEPT:
                final.popitem(last=False)
        else:
            self._final.pop(cid, None)
            self.live[cid] = order
            if order.status is OrderStatus.PENDING:
                self._pending[cid] = None
            if order.position_id:
                self._by_position.setdefault(order.position_id, {})[cid] = order

    def load(self) -> None:
        """Start-up: the journal's open and pending orders (pending = `unknown` now), the
        fills booked at a reference that wait for the venue's price, and the flags of the
        reductions still in flight."""
        for order in self.store.open_orders():
            self._track(order, state_of(order))
        raw = self.store.get_setting(REDUCE_FLAGS_KEY, {}) or {}
        kept = {cid: frozenset(str(f) for f in flags)
                for cid, flags in (raw.items() if isinstance(raw, dict) else ())
                if cid in self.live and isinstance(flags, list)}
        self.reduce_flags.update(kept)
        if len(kept) != len(raw if isinstance(raw, dict) else ()):
            self._save_reduce_flags()  # those booked (or never sent) before: forgotten
        raw = self.store.get_setting(REFERENCES_KEY, {}) or {}
        for cid, entry in (raw.items() if isinstance(raw, dict) else ()):
            booked = Booked.from_json(entry)
            if booked is None:
                log.warning("order %s: its reference booking's record is unreadable (%r); "
                            "it is not corrected", cid, entry)
                continue
            self._referenced[cid] = booked
        raw = self.store.get_setting(FEE_ESTIMATES_KEY, {}) or {}
        for fid, entry in (raw.items() if isinstance(raw, dict) else ()):
            if not isinstance(entry, dict) or not isinstance(entry.get("client_id"), str) \
                    or not all(isinstance(entry.get(k), (int, float))
                               and math.isfinite(entry[k]) for k in ("end", "at")):
                log.warning("fill %s: its estimated fee's record is unreadable (%r); its fee "
                            "is not looked up", fid, entry)
                continue
            self._estimates[fid] = entry

    def keep_reduce_flags(self, client_id: str, flags: frozenset[str]) -> None:
        """Before a rule's reduction is journaled: the flags its action sets (`tp1_done`…),
        applied when its fill is booked. Persisted (relaxed: the order's journal sync, before
        it is sent, covers it): killed between the venue's fill and its booking, the next
        start books the fill from the venue's word with them — without them TP1 would fire
        again and close the rest."""
        self.reduce_flags[client_id] = flags
        try:
            with self.store.relaxed():
                self._save_reduce_flags()
        except BaseException:
            self.reduce_flags.pop(client_id, None)
            raise

    def drop_reduce_flags(self, client_id: str) -> None:
        """The reduction is answered and booked: its flags are on the position."""
        if self.reduce_flags.pop(client_id, None) is None:
            return
        try:
            with self.store.relaxed():
                self._save_reduce_flags()
        except PmguiError as exc:  # left in the journal: forgotten at the next start
            log.warning("order %s: its flags stay journaled (%s)", client_id, exc)

    def _save_reduce_flags(self) -> None:
        self.store.set_setting(REDUCE_FLAGS_KEY, {cid: sorted(f) for cid, f
                                                  in self.reduce_flags.items()})

    def fee_estimates(self) -> list[tuple[Order, Fill, float]]:
        """The fills recorded with an estimated fee whose venue's fee was never told, for a
        lookup of their trades after a restart: (the order as journaled, the record, the
        order's filled before it). Those booked more than `FEE_LOOKUP_AGE` ago are given up
        (said in the log; their fee stays the estimate), those whose record is gone dropped."""
        out: list[tuple[Order, Fill, float]] = []
        since = self.clock() - FEE_LOOKUP_AGE
        changed = False
        for fid, entry in list(self._estimates.items()):
            cid = str(entry["client_id"])
            fill, order = self.store.fill(fid), self.get(cid)
            if fill is None or order is None:
                del self._estimates[fid]
                changed = True
                continue
            if float(entry["at"]) < since:  # type: ignore[arg-type]
                log.warning("order %s (%s): the fee of its fill %s is still the estimate %.6g "
                            "a day after it was booked; no longer looked up", cid,
                            fill.symbol, fid, fill.fee)
                del self._estimates[fid]
                changed = True
                continue
            out.append((order, fill, float(entry["end"]) - fill.qty))  # type: ignore[arg-type]
        if changed:
            self._save_estimates()
        return out

    def fee_settled(self, fill_id: str) -> None:
        """The venue says the fill recorded with an estimated fee needs no correction (its
        fee is the estimate, or is paid in another asset: the estimate kept, the adapter
        says so): no longer waited for. Its own commit, relaxed: lost in a crash, the fee is
        looked up once more at the next start."""
        if fill_id not in self._estimates:
            return
        with self.store.relaxed(), self.store.transaction(whole=True):
            self._settled(fill_id)

    def _save_estimates(self) -> None:
        """What waits for the venue's fee, persisted (inside the caller's transaction when
        one is open: the booking's, the correction's)."""
        while len(self._estimates) > FEE_ESTIMATES_KEPT:
            fid = next(iter(self._estimates))
            log.warning("fill %s: its estimated fee is no longer tracked (over %d waiting)",
                        fid, FEE_ESTIMATES_KEPT)
            del self._estimates[fid]
        self.store.set_setting(FEE_ESTIMATES_KEY, self._estimates)

    def corrects(self, client_id: str) -> bool:
        """A fill of this order was booked at a reference: a report of it that carries the
        venue's price corrects the position's booking (`rebook`)."""
        return client_id in self._referenced

    def referenced(self) -> list[Order]:
        """The orders a fill of which is booked at a reference, for reconciliation to look
        up by client id (their venue records may carry the price by now), for
        `REFERENCE_LOOKUP_AGE` after their last update."""
        since = self.clock() - REFERENCE_LOOKUP_AGE
        return [o for o in map(self.get, list(self._referenced))
                if o is not None and o.updated_at >= since]

    def _save_references(self) -> None:
        """Inside the caller's transaction: what waits for its correction, persisted."""
        self.store.set_setting(REFERENCES_KEY, {cid: b.to_json()
                                                for cid, b in self._referenced.items()})

    def adopt(self, order: Order) -> None:
        """Track an order found on the venue (a foreign close booked on one of ours)."""
        self.store.save_order(order, relink=True)  # its link takes the order's role
        self._track(order, state_of(order))

    def bind(self, order: Order, fee: float | None = None) -> Order:
        """An entry's answer, now tied to the position it opened. A state the stream already
        reported further along is kept. `fee`: what the caller booked on the position for
        all the answer says filled (an estimate at the position's rate): the part no record
        of the venue's says yet (the paper venue's report follows its answer) is recorded
        with its share of it, as the ledger's own estimate (`_synthesize`), so the venue's
        record replaces it — its fee corrected on the position — and it is not lost."""
        cur = self.state(order.client_id)
        new = state_of(order)
        if cur is not None and _RANK[cur] > _RANK[new]:
            new, order = cur, replace(order, status=status_of(cur, order))
        self.store.save_order(order, relink=True)  # its link takes the order's role
        if order.position_id:  # its fill, told with the answer, before the position: the
            with self.store.relaxed():  # venue's word (told again), not synced apart
                self.store.claim_fills(order.client_id, order.position_id)
                if fee is not None and order.filled > EPS and order.average is not None:
                    # what its reports booked has its records (the venue's, or ours): the
                    # order as the ledger holds it (in memory here: no lookup in the booking)
                    held = self.live.get(order.client_id) or self._final.get(order.client_id)
                    missing = order.filled - (held.filled if held is not None
                                              else self.store.fill_qty(order.client_id))
                    if missing > 1e-9 * max(1.0, order.filled) and math.isfinite(fee):
                        self._synthesize(order, missing, order.average,
                                         fee * missing / order.filled, estimate=True)
        self._track(order, new)
        return order

    def transition(self, client_id: str, new: OrderState, **changes: object) -> Order:
        """An explicit state change the engine makes (checked; journaled)."""
        order = self.get(client_id)
        if order is None:
            raise PmguiError(f"order {client_id} is not in the ledger")
        old = self.state(client_id) or state_of(order)
        if not allowed(old, new):
            raise IllegalOrderTransition(client_id, old, new)
        order = replace(order, status=status_of(new, order), updated_at=self.clock(),
                        **changes)  # type: ignore[arg-type]
        self.store.save_order(order)
        self._track(order, new)
        return order

    def journal(self, req: OrderRequest, *, sync: bool = True) -> Order:
        """`intended`: written to the journal (and linked to its position) before sending.
        With `sync=False` the caller syncs it (`Store.sync_wal`) before sending."""
        order = self.store.journal_order(req, self.clock(), sync=sync)  # links it
        self._track(order, S.INTENDED)
        return order

    async def journal_synced(self, req: OrderRequest) -> Order:
        """`intended`, journaled and synced before this returns — without holding up the
        loop: the commit is written at once and its fsync runs in a worker thread (ticks go
        on meanwhile; nothing may be sent before it is done). A store that cannot sync its
        WAL apart is synced in line. The order counts as `creating` meanwhile (not a
        forgotten create); a failed sync rejects it (never sent)."""
        if not self.store.can_sync_wal:
            return self.journal(req)
        order = self.journal(req, sync=False)
        self.creating.add(req.client_id)
        try:
            await self.store.wal_synced()  # the store's sync thread, group commit
        except BaseException as exc:
            self.creating.discard(req.client_id)
            self.reject(req.client_id, f"not sent: {exc}")
            raise
        return order

    def mark_sent(self, client_id: str) -> None:
        old = self.state(client_id)
        if old is None or not allowed(old, S.SENT):
            raise IllegalOrderTransition(client_id, old or S.UNKNOWN, S.SENT)
        self._state[client_id] = S.SENT  # the journal says pending either way
        self.creating.add(client_id)

    def create_answered(self, client_id: str) -> None:
        self.creating.discard(client_id)

    def mark_unknown(self, client_id: str) -> None:
        """The create got no answer: it stays pending in the journal, looked up later."""
        self.creating.discard(client_id)
        old = self.state(client_id)
        if old is S.SENT:
            self._state[client_id] = S.UNKNOWN
        elif old is None or old is S.INTENDED:
            raise IllegalOrderTransition(client_id, old or S.INTENDED, S.UNKNOWN)
        # else: already unknown, or the stream answered while the create timed out

    def reject(self, client_id: str, error: str) -> Order | None:
        """The venue refused it (or never saw it): final, journaled, published."""
        self.creating.discard(client_id)
        if self.state(client_id) is S.REJECTED:
            return self.get(client_id)
        order = self.transition(client_id, S.REJECTED, error=error)
        self.outbox.publish(OrderSnapshot(order))
        return order

    # ---------------------------------------------------------------- venue updates

    def apply(self, order: Order, fills: Iterable[Fill], *, fee_rate: float = 0.0005,
              contract_size: float = 1.0,
              announce: Callable[[Applied], Event | None] | None = None) -> Applied | None:
        """Merge a venue report of one of our orders; journal it and its fills.

        Returns None for an order the ledger does not know (not ours, or foreign). Fill
        records come with the stream; a delta booked without any (a lookup's, reconciliation
        sees a filled order but not its fills; an answer that says only the order's filled
        and average) gets a record of the ledger's own, its fee estimated and tracked until
        the venue's is known (`_synthesize`).

        `announce` is shown what the report changes before anything is written; an event it
        returns is published then, right after the order's snapshot (which is published
        before the journal write too, in that case). For the venue's own word, which it can
        tell again: a fill that closes a position is announced as soon as the venue reported
        it, and its booking commits after (`EngineCore.apply_order`).
        """
        fills = tuple(fills)
        known = self.get(order.client_id)
        if known is None:
            return None
        old = self._state.get(order.client_id) or state_of(known)
        # the report as far as it counts (a stale one must not undo fills); made whole below
        # in one copy with what the ledger keeps (position, role, reason, creation)
        said = _with_fill(order, known.filled, known.average) \
            if order.filled + EPS < known.filled else order
        reported = state_of(said)
        new = old if said.status is OrderStatus.PENDING else reported
        if new is S.FILLED and said.filled <= EPS < said.amount and not old.is_final:
            # "filled" without a filled quantity: a conditional order fired and its market
            # child's fill is still on its way. Not final until the quantity is known (else
            # the stop would look lost and the position look closed by someone else).
            new = old if old.is_live else S.ACKNOWLEDGED
        if new != old and not allowed(old, new):
            if _RANK[new] < _RANK[old]:
                new = old  # stale report (older than what we know): its status is ignored
            elif old.is_final:
                log.warning("order %s: the venue reports %s after %s; keeping %s",
                            order.client_id, new.value, old.value, old.value)
                new = old
            else:  # a jump the lifecycle does not foresee: the venue's word is the truth
                log.info("order %s: the venue reports %s after %s", order.client_id,
                         new.value, old.value)
        merged = _merged(said, known.position_id, known.role, known.reason,
                         known.created_at or said.created_at,
                         status_of(new, said if new is reported else known),
                         said.error or known.error)
        # The delta is booked as far as the venue said at what price (fill records, or an
        # average): never at a price of our own guessing. A quantity reported without one
        # is not counted as applied (the journal's `filled` stays at what was booked), so
        # the report that brings its price books it. A final report still without one was
        # looked up already (the adapter's bounded lookup of its fills found nothing): its
        # rest is booked at the best reference, and says so.
        delta, price = _priced_delta(known, merged, merged.filled - known.filled, fills)
        unpriced = merged.filled - known.filled - delta
        reference: tuple[str, float] | None = None
        priced_qty, priced_at = delta, price  # the part the venue priced
        booked = self._referenced.get(order.client_id)
        fix = _venue_price(booked, said, fills) \
            if booked is not None and unpriced <= EPS and delta <= EPS else None
        if fix is not None and booked is not None:  # the venue's average of all it booked
            merged = _with_fill(merged, merged.filled, _mean(
                booked.base_qty, booked.base_avg, booked.qty, fix[0]))
        if unpriced > EPS:
            reference = _reference(known, merged) if new.is_final else None
            if reference is not None:
                price = reference[1] if delta <= EPS else \
                    (delta * (price or 0.0) + unpriced * reference[1]) / (delta + unpriced)
                delta += unpriced
                if merged.average is None:
                    merged = _with_fill(merged, merged.filled, _mean(
                        known.filled, known.average, delta, price))
            else:
                if new.is_final and not old.is_final:  # no reference at all: kept open
                    log.warning("order %s: %s %s filled without a price, and no fill price "
                                "of it was visible after a bounded lookup; not booked until "
                                "the venue shows one (looked up by client id again)",
                                merged.client_id, merged.filled - known.filled,
                                merged.symbol)
                    new = S.PARTIALLY_FILLED  # (its journal row: open)
                    merged = replace(merged, status=status_of(new, merged))
                elif new.is_final:
                    log.warning("order %s: %s more filled reported after it was final, "
                                "without a price; not booked", merged.client_id, unpriced)
                merged = _with_fill(merged, known.filled + delta,
                                    _mean(known.filled, known.average, delta, price)
                                    if delta > EPS else known.average)
        if not fills and new is old and merged == known and fix is None:
            # The venue told again what the journal holds: the stream's report of the answer
            # the create or cancel call gave (the paper venue and the real ones both send
            # it). Nothing to write, track or publish — a commit fewer (~0.3 ms of the loop)
            # per order placed or cancelled, paid by whichever tick delivered the report.
            return Applied(known, known, 0.0, None, None, False, False)
        fee = sum(f.fee for f in fills) if fills else None
        if fee is not None and delta > EPS:
            q = sum(f.qty for f in fills)
            if q > delta + EPS and known.filled > EPS:  # records of more than the delta:
                fee = fee * delta / q  # its share of their fee (booked once, not again)
        lost = (new.is_final and not old.is_final and said.filled <= EPS
                and merged.role in (OrderRole.STOP_LOSS, OrderRole.TAKE_PROFIT)
                and merged.client_id not in self.cancelling
                and not self._superseded(merged))
        booked_fee = fee
        if delta > EPS and price is not None and fee is None:
            booked_fee = delta * price * contract_size * fee_rate
            log.info("order %s: the fee of its fill of %.12g %s is an estimate (%.6g at the "
                     "rate %g): the venue did not say it", order.client_id, delta,
                     order.symbol, booked_fee, fee_rate)
        elif reference is not None and fee is not None:  # the rest's fee: estimated too
            booked_fee = fee + unpriced * reference[1] * contract_size * fee_rate
        note = None
        if reference is not None:
            note = _reference_note(merged, unpriced, reference, self.clock())
        applied = Applied(merged, known, delta if delta > EPS else 0.0, price, booked_fee,
                          any(f.liquidation for f in fills), lost)
        early = announce(applied) if announce is not None else None
        if early is not None:  # the venue's word, told before it is journaled
            self.outbox.publish(OrderSnapshot(merged))
            self.outbox.publish(early)
        # A venue report: what the venue can tell again (looked up by client id), so it is
        # committed without a sync of its own (a killed process still loses nothing).
        with self._committing():
            if merged != known:
                # else the row holds it already (`known` is the order as journaled): the
                # stream's report of a market order the create call answered filled brings
                # its fills and nothing else, and its row was upserted whole again (every
                # column and index entry) in the commit of every entry and market close
                self.store.save_order(merged, journaled=known)
            stored = stored_fee = stored_value = 0.0  # fill records new to the journal
            kept: list[str] = []
            estimated = self.fee_estimated
            for f in fills:
                if self.store.record_fill(f, merged.position_id):
                    stored += f.qty
                    stored_fee += f.fee
                    stored_value += f.qty * f.price
                    kept.append(f.id)
                    if estimated is not None and estimated(f):  # kept until the venue's
                        self._estimated(f.id, merged.client_id, merged.filled)
                else:  # told again: with the venue's fee of a fill booked with an estimate?
                    self._correct_fee(merged, f)
            # what this report books anew from its records: the delta at its price, or the
            # quantity booked at a reference re-booked at the venue's price
            new_qty, new_value = delta, delta * (price or 0.0)
            if fix is not None and booked is not None:  # (no reference, so no note, here)
                note = self._rebook(merged, booked, fix, stored)
                new_qty, new_value = booked.qty, booked.qty * fix[0]
            # a quantity booked without records of it (a lookup's; an answer that says only
            # the order's filled and average, as the paper venue's create answer does before
            # its report), or what was booked at a reference: a record of our own, replaced
            # by the venue's records should they come. Its fee is an estimate, tracked like
            # the venue's until its fee is known (not a reference's: its re-booking says it)
            synth_qty, synth_price = (delta, price) if not fills else \
                (unpriced, reference[1]) if reference is not None else (0.0, None)
            if synth_qty > EPS and synth_price is not None:
                self._synthesize(merged, synth_qty, synth_price,
                                 synth_qty * synth_price * contract_size * fee_rate,
                                 estimate=reference is None)
            if stored > delta + EPS and (booked is None or fix is not None):
                # Records of more than this report books anew: they describe again quantity
                # recorded already (a record of all the order filled, told after a restart,
                # beside the records of its trades or of a lookup's): they take the earlier
                # records' place, so the order's records add up to what was booked, once.
                # (Not while a reference booking waits for a report that prices it all: its
                # record is the re-booking's to replace, `_rebook`.)
                self._absorb_redescribed(merged, kept, (stored, stored_fee, stored_value),
                                         new_qty, new_value)
            if reference is not None and unpriced > EPS and merged.position_id:
                self._referenced[merged.client_id] = Booked(
                    merged.position_id, unpriced, reference[1], reference[0],
                    unpriced * reference[1] * contract_size * fee_rate, fee_rate,
                    contract_size, known.filled + priced_qty,
                    _mean(known.filled, known.average, priced_qty, priced_at),
                    applied.delta, price or reference[1])
                self._save_references()
            if note is not None:
                self.store.record_action(note.action, symbol=merged.symbol)
        self._track(merged, new)
        if early is None:
            self.outbox.publish(OrderSnapshot(merged))
        if note is not None:
            self.outbox.publish(note)
        return applied

    @contextmanager
    def _committing(self) -> Iterator[None]:
        """A venue report's transaction (relaxed: the venue can tell it again). The closed
        positions' rows it corrects are announced once it has committed (`_announce`), never
        from inside it: a view shown a correction that then rolled back would be as wrong
        as one never shown it."""
        mark = len(self._corrected)
        try:
            with self.store.relaxed(), self.store.transaction(whole=True):
                yield
        except BaseException:
            del self._corrected[mark:]  # rolled back: nothing of it was corrected
            raise
        self._announce()

    def _announce(self) -> None:
        """`PositionCorrected` for the closed positions' rows corrected since the last
        announcement, once their commit is done. Inside the caller's transaction (the
        engine books a fill's report with the close it completes, in one commit) nothing is
        committed yet: they are announced on the event loop's next turn (nothing holds a
        transaction across an await); without a running loop, with the next report's
        commit."""
        if not self._corrected:
            return
        if not self.store.db.conn.in_transaction:
            self._announce_committed()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        loop.call_soon(self._announce_committed)

    def _announce_committed(self) -> None:
        """`_announce` outside any transaction: each position's corrections published if
        the journal's row holds the newest of them (committed; not if the caller's block
        rolled back)."""
        if not self._corrected or self.store.db.conn.in_transaction:
            return
        events, self._corrected = self._corrected, []
        newest = {ev.position.id: ev.position for ev in events}
        committed = set()
        for pid, pos in newest.items():
            row = self.store.load_position(pid)
            if row is not None and _same_booking(row, pos):
                committed.add(pid)
        for ev in events:
            if ev.position.id in committed:
                self.outbox.publish(ev)
            else:
                log.info("position %s: its correction (%s) was rolled back; not announced",
                         ev.position.id, ev.what)

    def _rebook(self, order: Order, booked: Booked, fix: tuple[float, float | None],
                stored: float) -> ActionTaken:
        """Inside the report's transaction, so all of it commits once or not at all: the
        fill booked at a reference re-booked at the venue's price (`fix`) on its position —
        an open one by the engine (`rebook`), a closed one's journal row here — the record
        of our own booked at the reference replaced by the venue's records (stored with this
        report), or by one of our own at the venue's price when only its average came; the
        reference booking done. Returns the note that says what was corrected."""
        correction = _correction(order, booked, fix)
        cid = order.client_id
        outcome = self._correct_position(correction)
        self._forget_estimates(
            self.store.absorb_synthesized_fills(cid, max(stored, booked.qty))[2])
        if stored + EPS < booked.qty:  # only the venue's average: a record of our own
            fee = fix[1] if fix[1] is not None else \
                booked.qty * correction.price * booked.contract_size * booked.fee_rate
            self._synthesize(order, booked.qty, correction.price, fee,
                             estimate=fix[1] is None)
        del self._referenced[cid]
        self._save_references()
        return _correction_note(order, booked, correction, fix[1] is not None, outcome,
                                self.clock())

    def _absorb_redescribed(self, order: Order, kept: list[str],
                            stored: tuple[float, float, float], new_qty: float,
                            new_value: float) -> None:
        """Inside the report's transaction: the report's records (`kept`; their quantity,
        fee and value `stored`) describe more than it booked anew (`new_qty` for
        `new_value`): when the order's records now add up to more than it filled, the
        earlier records of the excess are removed (`Store.absorb_fills`: a lookup's record
        of our own first) and the report's records — the venue's newest word — stand for it.

        Nothing is lost when the two descriptions differ: the records kept say the venue's
        figures, and the fee booked for that quantity (an estimate on our own record, or
        the venue's earlier trade reports') moves to the report's share of its fee on the
        position (the engine's hook for an open one, the journal's row for a closed one),
        once: the earlier records are gone, so a report told again finds nothing in excess.
        A price that differs is logged, the booking kept: both are the venue's figures
        (its trade reports, its record of the order), and the delta was booked at its own
        share of the venue's average, so the position's quantity times price is the
        venue's already."""
        qty, fee, value, ids = self.store.absorb_fills(order.client_id, order.filled, kept)
        if qty <= EPS:
            return
        self._forget_estimates(ids)
        s_qty, s_fee, s_value = stored
        ours = all("#" in i for i in ids)
        venue_fee = s_fee * qty / s_qty
        fee_delta = venue_fee - fee
        # replacing the ledger's own records (`#` ids) is the usual path of every market order
        # whose answer was booked before the venue's report (each paper open, a Binance
        # market order): a detail; replacing the venue's earlier records is worth a line
        log.log(logging.DEBUG if ours else logging.INFO,
                "order %s (%s): the venue's record(s) %s of %.12g describe again %.12g "
                "recorded already (%s): counted once, theirs kept", order.client_id,
                order.symbol, ", ".join(kept), s_qty, qty, ", ".join(ids))
        old_price = value / qty
        rest = s_qty - new_qty
        if not ours and abs(rest - qty) <= 1e-9 * max(1.0, s_qty):
            said = (s_value - new_value) / qty
            if abs(said - old_price) > 1e-9 * max(1.0, abs(old_price)):
                log.warning("order %s (%s): the venue's records of %.12g differ: %.12g at "
                            "%.12g before, %.12g at %.12g in its record of the order; its "
                            "record kept, the position's booking not re-priced",
                            order.client_id, order.symbol, qty, qty, old_price, qty, said)
        pid = order.position_id
        if not pid or abs(fee_delta) <= max(FEE_NOISE, 1e-12 * abs(venue_fee)) or \
                not math.isfinite(fee_delta) or not money.valid_price(old_price):
            return
        outcome = self._book_correction(_fee_only(order, qty, old_price, fee_delta))
        what = "booked with an estimate" if ours else "booked from its earlier records"
        log.log(logging.INFO if outcome else logging.WARNING,
                "order %s (%s): the venue's fee of %.12g %s differs by %+.6g (%.6g, was "
                "%.6g); %s", order.client_id, order.symbol, qty, what, fee_delta, venue_fee,
                fee, outcome or "the open position is NOT corrected")

    def _correct_fee(self, order: Order, fill: Fill) -> None:
        """Inside the report's transaction: a fill record told again under its id with
        another fee — the venue's, for a fill booked with an estimate (Binance's create answer
        has no commission; its stream's report of the trade has). The position's fees and
        realised P/L move by the difference (an open one by the engine's hook, a closed one's
        journal row here) and the record takes the venue's fee, in one commit: told again
        (a replay, after a restart too) it finds the venue's fee there and changes nothing.

        Logged, not filed in the action log: a fee's true-up follows nearly every market
        order on such a venue, and is no decision nor a change of the position's course (a
        price re-booked at a reference is: `_correction_note`)."""
        old = self.store.fill_fee_differs(fill)
        if old is None or not math.isfinite(fill.fee):
            rec = self.store.fill(fill.id) if fill.id in self._estimates else None
            if rec is not None and abs(rec.fee - fill.fee) <= 1e-12 * max(1.0, abs(rec.fee)) \
                    and abs(rec.qty - fill.qty) <= 1e-9 * max(1.0, rec.qty):
                # told again with the fee it was booked with: the venue's fee (or kept, the
                # venue's being in another asset: the adapter says so): settled
                self._settled(fill.id)
            return
        pid = order.position_id
        if not pid:
            self.store.set_fill_fee(fill.id, fill.fee)
            self._settled(fill.id)
            return
        outcome = self._book_correction(_fee_only(order, fill.qty, fill.price, fill.fee - old))
        if outcome is None:  # kept as booked: the record says what was booked
            log.warning("order %s: the venue's fee of its fill %s is %.6g, booked with the "
                        "estimate %.6g; the open position is NOT corrected",
                        order.client_id, fill.id, fill.fee, old)
            return
        self.store.set_fill_fee(fill.id, fill.fee)
        self._settled(fill.id)
        log.info("order %s (%s): the fee of its fill of %.12g is the venue's %.6g, booked "
                 "with the estimate %.6g (%+.6g); %s", order.client_id, order.symbol,
                 fill.qty, fill.fee, old, fill.fee - old, outcome)

    def _synthesize(self, order: Order, qty: float, price: float, fee: float, *,
                    estimate: bool) -> None:
        """Inside the report's transaction: a fill record of our own (`<client id>#<the
        order's filled>`) for `qty` of `order` booked at `price` with `fee`, where no record
        of the venue's says it. With an `estimate`d fee it waits for the venue's like one
        the venue told with an estimate (`_estimated`): replaced by the venue's records
        while running (`_absorb_redescribed`), looked up by the order's trades after a
        restart (`fee_estimates`)."""
        fill = Fill(f"{order.client_id}#{order.filled:.12g}", order.client_id, order.symbol,
                    order.side, qty, price, fee, self.clock(), order.exchange_id)
        if self.store.record_fill(fill, order.position_id) and estimate:
            self._estimated(fill.id, order.client_id, order.filled)

    def _estimated(self, fill_id: str, client_id: str, end: float) -> None:
        """Inside the booking's transaction: the fill record `fill_id` (of order `client_id`,
        whose filled was `end` after it) holds an estimated fee, persisted until the venue's
        is known. Not on a venue that neither tells a fee later nor looks one up (no
        `fee_estimated`: the paper venue, which says every fee in its own report)."""
        if self.fee_estimated is None:
            return
        self._estimates[fill_id] = {"client_id": client_id, "end": end, "at": self.clock()}
        self._save_estimates()

    def _forget_estimates(self, fill_ids: Iterable[str]) -> None:
        """Inside the report's transaction: the records `fill_ids` were replaced by the
        venue's records, which say their fee: those gone are no longer waited for, never
        looked up. One cut (partly kept: the venue's records described the order's earlier
        trades) still waits with the fee of the rest, an estimate — looked up as the part
        before the order's filled after it (`fee_estimates`: its own quantity now)."""
        gone = [i for i in fill_ids if i in self._estimates and self.store.fill(i) is None]
        for i in gone:
            del self._estimates[i]
        if gone:
            self._save_estimates()

    def _settled(self, fill_id: str) -> None:
        """Inside the report's transaction: the fill's record holds the venue's fee now."""
        if self._estimates.pop(fill_id, None) is not None:
            self._save_estimates()

    def _correct_position(self, c: Correction) -> str:
        """The correction booked on its position; what was corrected, in words."""
        return self._book_correction(c) or \
            "the open position is NOT corrected (its booking stays at the reference)"

    def _book_correction(self, c: Correction) -> str | None:
        """A correction booked on its position: an open one by the engine's hook (its
        runtime state is the truth, not written behind its back), a closed one's journal row
        here. What was corrected, in words; None: open, and no hook took it."""
        if self.rebook is not None and self.rebook(c):
            return "the open position corrected"
        return self._correct_row(c)

    def _correct_row(self, c: Correction) -> str | None:
        """A closed position's journal row corrected; what was, in words (None: the
        position is open, and not the ledger's to write)."""
        pos = self.store.load_position(c.position_id)
        if pos is None:
            return "its position is not in the journal: nothing corrected"
        if pos.is_open:
            return None
        after = corrected(pos, c)
        exit_moved = "" if after.exit_price == pos.exit_price else \
            f", exit price {_n(pos.exit_price)} → {_n(after.exit_price)}"
        change = f"realised P/L {after.realized_pnl - pos.realized_pnl:+.6g}{exit_moved}"
        if _same_booking(after, pos):  # a difference too small to change a number
            return f"the closed position unchanged ({change})"
        self.store.save_position(after)
        if self.outbox.wants(PositionCorrected):  # announced once this commits
            self._corrected.append(PositionCorrected(after, self.clock(),
                                                     f"{_cause(c)}: {change}"))
        return f"the closed position corrected: {change}"


def _venue_price(booked: Booked, said: Order, fills: tuple[Fill, ...]
                 ) -> tuple[float, float | None] | None:
    """The venue's price of the quantity booked at a reference, and its fee (None: the
    report does not say it), from a report that covers that quantity: fill records of just
    it, or of all the order executed, or the order's average over all of it. None: this
    report does not price it (a partial record, a stale report): it waits on."""
    whole = booked.base_qty + booked.qty
    tol = 1e-9 * max(1.0, whole)
    if said.filled + tol < whole:
        return None
    base = booked.base_qty * (booked.base_avg or 0.0)
    q = sum(f.qty for f in fills)
    found: tuple[float, float | None] | None = None
    if q > EPS:
        mean = sum(f.qty * f.price for f in fills) / q
        fee = sum(f.fee for f in fills)
        if abs(q - booked.qty) <= tol:
            found = mean, fee
        elif abs(q - whole) <= tol:  # all it executed: the rest's share, and of the fee
            found = (mean * whole - base) / booked.qty, fee * booked.qty / whole
    if found is None and said.average is not None and abs(said.filled - whole) <= tol:
        found = (said.average * whole - base) / booked.qty, None
    if found is None or not money.valid_price(found[0]) or \
            (found[1] is not None and not math.isfinite(found[1])):
        return None
    return found


def _correction(order: Order, booked: Booked, fix: tuple[float, float | None]) -> Correction:
    """The correction of a reference booking at the venue's price `fix` (and fee, else the
    estimate at that price)."""
    price, venue_fee = fix
    fee = venue_fee if venue_fee is not None else \
        booked.qty * price * booked.contract_size * booked.fee_rate
    corrected_at = booked.booked_at + booked.qty * (price - booked.price) / booked.booked_qty \
        if booked.booked_qty > EPS else price
    return Correction(order.client_id, booked.position_id, _opens(order), booked.qty,
                      booked.price, price, fee - booked.fee, booked.booked_at, corrected_at)


def _fee_only(order: Order, qty: float, price: float, fee_delta: float) -> Correction:
    """The correction of a fee booked with an estimate: `qty` stays at `price`."""
    return Correction(order.client_id, order.position_id or "", _opens(order), qty, price,
                      price, fee_delta, price, price)


def _cause(c: Correction) -> str:
    """What a correction re-booked, in words (a `PositionCorrected`'s `what`)."""
    if c.price != c.booked_price:
        return (f"{_n(c.qty)} of order {c.client_id} booked at {_n(c.booked_price)} "
                f"re-booked at the venue's price {_n(c.price)}")
    return f"the venue's fee of {_n(c.qty)} of order {c.client_id} (booked with an estimate)"


def _same_booking(a: Position, b: Position) -> bool:
    """The numbers a correction changes are the same in both (a no-op correction, or the
    journal's row as an announcement says it was written)."""
    return (a.realized_pnl, a.fees_paid, a.exit_price, a.entry) == \
        (b.realized_pnl, b.fees_paid, b.exit_price, b.entry)


def _opens(order: Order) -> bool:
    """The order's fill opened or added to its position (else it reduced it)."""
    return order.role in (OrderRole.ENTRY, OrderRole.ADD) and not order.reduce_only


def _correction_note(order: Order, booked: Booked, c: Correction, venue_fee: bool,
                     outcome: str, now: float) -> ActionTaken:
    """The log line and action-log note of a correction, filed as what the fill did."""
    said = "the venue's" if venue_fee else "an estimate"
    text = (f"order {order.client_id} ({order.symbol} {order.side.value}): {_n(c.qty)} "
            f"booked at {booked.label} {_n(c.booked_price)} is re-booked at the venue's price "
            f"{_n(c.price)}, fee {_n(booked.fee + c.fee_delta)} ({said}); {outcome}")
    log.warning("%s", text)
    return _note(order, c.qty, c.price, text, now)


def _priced_delta(known: Order, new: Order, delta: float, fills: tuple[Fill, ...]
                  ) -> tuple[float, float | None]:
    """How much of a report's fill delta the venue priced, and at what price: fill records
    that cover it (their mean price), else the order's average (the delta's own share of
    it), else the records' own quantity. (0, None): no price at all — nothing is guessed."""
    if delta <= EPS:
        return 0.0, None
    q = sum(f.qty for f in fills) if fills else 0.0
    share = _average_share(known, new, delta)
    if q > delta + EPS and share is not None:
        # records of more than the delta (a record of the order's whole cumulative fill,
        # told after a restart): the delta's own share of the average prices it
        return delta, share
    if q > 0 and q + EPS >= delta:
        return delta, sum(f.qty * f.price for f in fills) / q
    if new.average is not None and money.valid_price(new.average):
        return delta, new.average if share is None else share
    if q > EPS:  # records of part of it: that part is booked, the rest waits for its price
        p = sum(f.qty * f.price for f in fills) / q
        if money.valid_price(p):
            return q, p
    return 0.0, None


def _average_share(known: Order, new: Order, delta: float) -> float | None:
    """The price of the `delta` filled since `known`, read from the two averages (None:
    either is missing, or the result is no valid price)."""
    if new.average is None or known.average is None or known.filled <= 0:
        return None
    p = (new.average * new.filled - known.average * known.filled) / delta
    return p if money.valid_price(p) else None


def _mean(q1: float, p1: float | None, q2: float, p2: float | None) -> float | None:
    """The average price of q1 at p1 and q2 at p2 (either side may be missing)."""
    if p1 is None or q1 <= EPS:
        return p2
    if p2 is None or q2 <= EPS:
        return p1
    return (q1 * p1 + q2 * p2) / (q1 + q2)


def _reference(known: Order, new: Order) -> tuple[str, float] | None:
    """The best price there is for a fill the venue never priced: what the order's earlier
    fills averaged, else its limit price (it fills there or better), else its trigger."""
    for label, p in (("the average of its earlier fills",
                      known.average if known.filled > EPS else None),
                     ("its limit price", new.price), ("its trigger price", new.trigger_price),
                     ("its limit price", known.price),
                     ("its trigger price", known.trigger_price)):
        if p is not None and money.valid_price(p):
            return label, p
    return None


def _reference_note(order: Order, qty: float, reference: tuple[str, float],
                    now: float) -> ActionTaken:
    label, price = reference
    note = (f"order {order.client_id} ({order.symbol} {order.side.value}): {_n(qty)} filled "
            "without a price; no fill price of it was visible after a bounded lookup; booked "
            f"at {label} {_n(price)}")
    log.warning("%s", note)
    return _note(order, qty, price, note, now)


def _note(order: Order, qty: float, price: float, text: str, now: float) -> ActionTaken:
    """An action-log note of the ledger's, filed as what the fill did to the position (a
    stop-loss kind here would label the chart's SL line as moved by reconciliation, and the
    log would file it as a routine stop move)."""
    kind = {OrderRole.ENTRY: ActionType.OPEN, OrderRole.ADD: ActionType.ADD}.get(
        order.role, ActionType.REDUCE)
    action = Action(kind, Reason.RECONCILE, order.position_id or "", price,
                    qty=qty, rule="ledger", ts=now, inputs=frozen_map({"note": text}))
    return ActionTaken(action, order.symbol, True, text)
