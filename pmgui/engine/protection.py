"""Protection: the exchange's reduce-only SL/TP orders mirror each position's local levels.

New order first, then cancel the old one: the position is never without an order on the
exchange during a move (reduce-only guarantees two cannot over-close). A create whose answer
never came stays pending and is not re-sent; what protected the position until then stays.

`sync()` answers per level with a `ProtectionOutcome`: `on_exchange` only when the venue
acknowledged an order at that level covering the position, `local_only` with the venue's
reason otherwise.

Tranches (seed 002, issue 11): with the `tranches` rule on and tranches whose levels differ,
each order group (`pmgui.rules.tranches.protective_orders`: tranches whose SL and TP coincide
within a tick) gets its own reduce-only SL and TP sized to it, so each tranche exits on its
own levels while pmgui is closed. Such orders carry `tranches=<ids>` in their reason: a fill
removes exactly those tranches, and the badge's tooltip names them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from pmgui.domain.enums import ActionType, OrderRole, OrderStatus, OrderType, Protection, Reason
from pmgui.domain.errors import ExchangeError, OrderWouldTriggerImmediately, PmguiError
from pmgui.domain.models import Action, Order, OrderRequest, Position, frozen_map
from pmgui.engine.commands import ProtectionOutcome
from pmgui.engine.events import ErrorEvent
from pmgui.engine.loop import TurnShare, let_due_work_first
from pmgui.engine.runtime import PositionRuntime
from pmgui.exchange.retry import OrderStatusUnknown
from pmgui.rules.tranches import ProtectiveOrder, protective_orders

if TYPE_CHECKING:
    from pmgui.domain.models import Market
    from pmgui.engine.core import EngineCore
    from pmgui.engine.settings import EngineSettings

log = logging.getLogger("pmgui.engine.protection")

EPS = 1e-12
_OPEN = OrderStatus.OPEN
ROLE_KEY = {OrderRole.STOP_LOSS: "sl", OrderRole.TAKE_PROFIT: "tp"}
TRANCHES_TAG = " tranches="


def tranche_ids(order: Order) -> tuple[str, ...]:
    """The tranches a per-tranche protective order protects (none for a whole-position one)."""
    reason = order.reason or ""
    if TRANCHES_TAG not in reason:
        return ()
    return tuple(x for x in reason.split(TRANCHES_TAG, 1)[1].split(",") if x)
PROTECTIVE = (OrderRole.STOP_LOSS, OrderRole.TAKE_PROFIT)


def _min_step(settings: EngineSettings, market: Market, price: float) -> float:
    """The smallest level move worth re-placing an exchange order for at `price`."""
    return max(settings.protect_min_step * price, market.tick_size / 2)


def _not_worth_kept(rt: PositionRuntime, market: Market, settings: EngineSettings,
                    price: float) -> bool:
    """Whether the kept "not worth replacing" answer (`rt.not_worth`, `_worth_replacing`)
    is still the answer at `price`: the same position, market, settings and live orders,
    and the farthest distance from a live order to its level under the step at `price`
    (a higher price, a larger step: it then holds at any price above as well)."""
    memo = rt.not_worth
    return memo is not None and memo[0] is rt.position and memo[1] is market \
        and memo[2] is settings and memo[4] < _min_step(settings, market, price) \
        and _same(memo[3], rt.orders)


def _same(orders: tuple[Order, ...], live: dict[str, Order]) -> bool:
    """`live` holds exactly the order objects `orders` lists, in that order (a changed order
    is a new object: orders are immutable)."""
    return len(orders) == len(live) and all(a is b for a, b in zip(orders, live.values(),
                                                                   strict=False))


class Protector:
    def __init__(self, core: EngineCore) -> None:
        self.core = core
        # re-placement budget for automated moves (token bucket over all positions)
        self._tokens = float(core.settings.protect_budget)
        self._refilled = core.clock()
        # Until this time the budget has no token for a rule move's re-placement (set when
        # `_token_ready` finds it spent): the tick path tests it before asking `wants_sync`,
        # the housekeeping pass before asking `due`. With thousands of positions trailing,
        # most of them wait dirty while the budget is spent, and each of their quiet ticks
        # (and each of them in every pass) asked — three calls, a refill — to hear no.
        self.budget_spent_until = float("-inf")
        self._beside: set[asyncio.Task[None]] = set()  # re-placements beside the stream
        # their steps, one per loop round (a burst of them no longer lands in one round)
        self._turns = TurnShare()

    # ---------------------------------------------------------------- state

    def covering(self, rt: PositionRuntime, role: OrderRole,
                 pos: Position | None = None) -> Order | None:
        """The acknowledged order of `role` covering the whole quantity of `pos` (default:
        the runtime's position), if any. Per-tranche orders cover it together: the first of
        them stands for the set when every group has its acknowledged order."""
        pos = pos or rt.position
        half_step = self.core.market.market(pos.symbol).amount_step / 2
        qty = pos.qty
        for o in rt.orders.values():  # `rt.resting(role)` without its two lists (every
            # published snapshot asks, for its stop)
            if o.role is role and o.status is _OPEN and o.amount + half_step + EPS >= qty:
                return o
        wanted = self.tranche_orders(rt, pos, role)
        if wanted:
            matched = self._match(rt.resting(role), wanted, pos)[0]
            if all(m is not None for m in matched):
                return matched[0]
        return None

    def tranche_orders(self, rt: PositionRuntime, pos: Position | None = None,
                       role: OrderRole | None = None) -> list[ProtectiveOrder]:
        """The per-tranche orders `pos` needs (empty when one SL/TP covers it all)."""
        pos = pos or rt.position
        try:
            per_tranche = self.core.params(pos).enabled("tranches")
        except PmguiError:
            return []
        if not per_tranche or not pos.tranches:
            return []
        market = self.core.market.market(pos.symbol)
        orders = protective_orders(pos, market)
        whole = protective_orders(pos, market, per_tranche=False)
        if [(o.role, o.trigger, o.qty) for o in orders] == \
                [(o.role, o.trigger, o.qty) for o in whole]:
            return []  # one group at the position's levels: the whole-position orders
        return [o for o in orders if role is None or o.role == ROLE_KEY[role]]

    def _match(self, current: list[Order], wanted: list[ProtectiveOrder],
               pos: Position) -> tuple[list[Order | None], list[Order]]:
        """Pair each wanted order with a live one at its trigger and size for the same
        tranches; the rest are unmatched (to cancel)."""
        market = self.core.market.market(pos.symbol)
        half_tick, half_step = market.tick_size / 2, market.amount_step / 2
        left = sorted(current, key=lambda o: o.status is not OrderStatus.OPEN)
        out: list[Order | None] = []
        for w in wanted:
            m = next((o for o in left if o.trigger_price is not None
                      and abs(o.trigger_price - w.trigger) < half_tick + EPS
                      and abs(o.amount - w.qty) <= half_step + EPS
                      and tranche_ids(o) == w.tranche_ids), None)
            if m is not None:
                left.remove(m)
            out.append(m)
        return out, left

    def protection(self, rt: PositionRuntime, pos: Position | None = None) -> Protection:
        """ON_EXCHANGE only while an SL order the exchange acknowledged (OPEN, not merely
        journaled) covers the whole current quantity; a smaller one (the position grew) or
        none at all leaves the stop guarded locally only."""
        pos = pos or rt.position
        if pos.sl is None:
            return Protection.UNPROTECTED
        if self.covering(rt, OrderRole.STOP_LOSS, pos) is not None:
            return Protection.ON_EXCHANGE
        return Protection.LOCAL_ONLY

    def outcome(self, rt: PositionRuntime, role: OrderRole) -> ProtectionOutcome:
        """What protects one level right now, in the command-result contract's terms."""
        pos = rt.position
        level = pos.sl if role is OrderRole.STOP_LOSS else pos.tp
        key = ROLE_KEY[role]
        if level is None:
            return ProtectionOutcome(key, None, Protection.UNPROTECTED.value)
        wanted = self.tranche_orders(rt, role=role)
        if wanted and all(m is not None for m in self._match(rt.resting(role), wanted, pos)[0]):
            return ProtectionOutcome(key, level, Protection.ON_EXCHANGE.value)
        o = self.covering(rt, role)
        market = self.core.market.market(pos.symbol)
        if not wanted and o is not None and o.trigger_price is not None \
                and abs(o.trigger_price - market.round_price(level)) < market.tick_size / 2:
            return ProtectionOutcome(key, level, Protection.ON_EXCHANGE.value)
        reason = rt.protect_failing.get(role, "")
        if not reason:
            if not self.core.settings.protect_on_exchange:
                reason = "exchange-side protection is off"
            elif not self._supported(role):
                reason = f"{self.core.exchange.id} has no {role.value} orders"
            elif any(o.status is OrderStatus.PENDING for o in rt.pending(role)):
                reason = "the exchange has not confirmed the order yet"
            else:
                reason = "no confirmed order on the exchange"
        return ProtectionOutcome(key, level, Protection.LOCAL_ONLY.value, reason)

    def trigger_ref(self, pos: Position) -> str:
        """The price the exchange's SL/TP trigger on (`protection.trigger`: mark | last)."""
        return str(self.core.params(pos)["protection.trigger"])

    def _supported(self, role: OrderRole) -> bool:
        caps = self.core.exchange.capabilities
        return caps.stop_orders and (role is OrderRole.STOP_LOSS or caps.take_profit_orders)

    def mark_dirty(self, rt: PositionRuntime, urgent: bool = False) -> None:
        rt.protect_dirty = True
        if urgent:
            rt.protect_last = float("-inf")  # not throttled: protection is missing

    # ---------------------------------------------------------------- sync

    def due(self, rt: PositionRuntime, now: float) -> bool:
        """Whether `sync(rt)` without `force` (a rule's move, or the housekeeping's `settle`)
        could do anything now: False while the position's throttle or the shared budget
        holds it back — then sync would only leave it dirty, so a tick need not take the
        position's lock for it."""
        core = self.core
        if not core.settings.protect_on_exchange or not core.exchange.capabilities.stop_orders:
            return True  # sync clears the flag
        if now - rt.protect_last < core.settings.protect_throttle:
            return False
        return self._token_ready(now)

    def wants_sync(self, rt: PositionRuntime, now: float) -> bool:
        """Whether the tick path's `sync(rt)` (a rule's move: neither `force` nor `settle`)
        could do anything now: `due`, and not the kept "not worth replacing" answer
        (`_worth_replacing`). A trailing position whose move is under `protect_min_step`
        stays dirty until the housekeeping pass settles it (`sync(settle=True)`, which asks
        `due`); meanwhile each of its ticks took the position's lock and ran `sync` only to
        be told "not worth" again (a replay has no housekeeping pass: every tick)."""
        if not self.due(rt, now):
            return False
        core = self.core
        if not core.settings.protect_on_exchange or not core.exchange.capabilities.stop_orders:
            return True  # sync clears the flag
        return self._worth_replacing(rt)

    def quiet_through(self, rt: PositionRuntime, now: float, low: float) -> bool:
        """Whether the quiet tick's protection test (`EngineCore._screen_tick`: dirty, past
        the budget's time and `wants_sync`) is False at every tick of a run of `rt`'s symbol
        — market times up to `now`, increasing, prices from `low` up — and `through(rt,
        now)` is then all those tests change (`EngineCore.on_tick_run`).

        Each of those is monotone: once past `budget_spent_until` or the throttle, later
        ticks are too; a token that is ready with the bucket full stays ready and the refill
        only moves its time; and the kept "not worth replacing" answer holds at a price
        whose step (`protect_min_step` of it) is at least the lowest price's."""
        if not rt.protect_dirty or now < self.budget_spent_until:
            return True
        core = self.core
        settings = core.settings
        if not settings.protect_on_exchange or not core.exchange.capabilities.stop_orders:
            return False  # a sync is wanted at once (it clears the flag)
        if now - rt.protect_last < settings.protect_throttle:
            return True  # never due in the run: no token asked for
        budget = settings.protect_budget
        if not (budget <= 0 or budget == float("inf")
                or (self._tokens >= budget and self._tokens >= 1.0)):
            return False  # a refill that changes the bucket: tick by tick
        return _not_worth_kept(rt, core.market.market(rt.position.symbol), settings, low)

    def through(self, rt: PositionRuntime, now: float) -> None:
        """What the quiet ticks' protection tests of a run up to `now` leave changed
        (`quiet_through` said they are all False): the budget's refill time, where the
        last tick asked for a token."""
        if rt.protect_dirty and now >= self.budget_spent_until \
                and now - rt.protect_last >= self.core.settings.protect_throttle:
            self._token_ready(now)

    async def sync(self, rt: PositionRuntime, force: bool = False,
                   settle: bool = False) -> None:
        """Make the exchange's reduce-only SL/TP orders mirror the local levels (call under
        the position's lock).

        `force` (a manual change, an open, start-up): at once. Otherwise (a rule's move) the
        position is throttled, a move smaller than `protect_min_step` of the price waits for
        `settle` (the housekeeping pass), and all positions share `protect_budget`
        re-placements per second: never one re-placement per tick of a trail. The local stop
        guards meanwhile.

        A rule's move found on the tick path (neither `force` nor `settle`) is carried out
        *beside* the stream, in a task of its own that takes the position's lock once the
        tick is done: journaling (its fsync), the venue's answer and the cancel of the old
        order then hold up this position's decisions only, never every other symbol's ticks
        (the old order protects until the new one is acknowledged). Its ticks meanwhile are
        not evaluated, as for any order of the position in flight: with the stop resting on
        the exchange a crossing is the venue's to decide (mark trigger) or left to it for
        `exchange_stop_grace` (last), which is what those ticks would have decided had the
        stream waited; the next tick after the lock is free is evaluated. A venue in simulated
        time (replay) has no stream to hold up: there it stays in line, deterministic."""
        core = self.core
        if not rt.is_open or core.book.runtime(rt.id) is not rt:
            return
        caps = core.exchange.capabilities
        if not core.settings.protect_on_exchange or not caps.stop_orders:
            rt.protect_dirty = False
            return
        now = core.clock()
        if not force and now - rt.protect_last < core.settings.protect_throttle:
            rt.protect_dirty = True
            return
        if not force:
            # the budget first: with thousands of positions trailing, most ticks find it
            # spent, and then nothing could be sent whatever the levels say
            if not self._token_ready(now):
                rt.protect_dirty = True
                return
            if not settle and not self._worth_replacing(rt):
                rt.protect_dirty = True  # the housekeeping pass aligns it
                return
            self._spend_token()
        rt.protect_dirty = False
        rt.protect_last = now
        if not force and not settle and getattr(core.exchange, "realtime", True):
            task = asyncio.get_running_loop().create_task(self._beside_stream(rt),
                                                          name=f"protect-{rt.symbol}")
            self._beside.add(task)
            task.add_done_callback(self._beside.discard)
            return
        # In line (an open, a manual change, the housekeeping pass) the stream still runs
        # beside it: the loop is handed over between the venue calls as a re-placement beside
        # the stream does. The stop's report and the take-profit's journal were one step of
        # ~1.2 ms at 500 positions, an open's third of five, and a stop's crossing due
        # meanwhile waited it out. A venue in simulated time stays in line, deterministic.
        await self._replace(rt, beside=getattr(core.exchange, "realtime", True))

    async def _beside_stream(self, rt: PositionRuntime) -> None:
        core = self.core
        await self._turns.turn()
        async with rt.lock:
            if not rt.is_open or core.book.runtime(rt.id) is not rt:
                return
            try:
                await self._replace(rt, beside=True)
            except PmguiError as exc:
                rt.protect_dirty = True  # the housekeeping pass tries again
                core.outbox.publish(ErrorEvent(f"{rt.symbol}: protective orders not "
                                               f"updated: {exc}", core.clock(), rt.id))
            except Exception:
                rt.protect_dirty = True
                log.exception("%s: re-placing the protective orders failed", rt.symbol)
        core.publish_position(rt)

    async def settle_background(self, timeout: float = 10.0) -> None:
        """Wait for the re-placements running beside the stream (shutdown). One still
        running after `timeout` is cancelled and awaited before the store and the exchange
        close under it: an order whose create was cut off stays pending in the journal and
        is looked up by its client id at the next start."""
        if not self._beside:
            return
        _, rest = await asyncio.wait(set(self._beside), timeout=timeout)
        for task in rest:
            task.cancel()
        if rest:
            await asyncio.gather(*rest, return_exceptions=True)

    async def _replace(self, rt: PositionRuntime, beside: bool = False) -> None:
        """SL, then TP. `beside` (a re-placement beside the stream): the loop is handed over
        between the venue calls (`_hand_over`), each a commit or two of CPU."""
        caps = self.core.exchange.capabilities
        if self.tranche_orders(rt):
            await self._sync_tranches(rt, OrderRole.STOP_LOSS, OrderType.STOP_MARKET, beside)
            if beside:
                await self._hand_over()
            if rt.is_open and caps.take_profit_orders:
                await self._sync_tranches(rt, OrderRole.TAKE_PROFIT,
                                          OrderType.TAKE_PROFIT_MARKET, beside)
            return
        await self._sync_one(rt, OrderRole.STOP_LOSS, OrderType.STOP_MARKET, beside)
        if beside:
            await self._hand_over()
        if rt.is_open and caps.take_profit_orders:
            await self._sync_one(rt, OrderRole.TAKE_PROFIT, OrderType.TAKE_PROFIT_MARKET,
                                 beside)

    async def _hand_over(self) -> None:
        """Between two steps of a re-placement beside the stream: what is due goes first
        (`let_due_work_first`), and of the re-placements one step per loop round
        (`TurnShare`). A burst of ten at storm start (the budget's bucket full) ran its ten
        steps of ~0.3 ms in one round, a stretch of 3-6 ms a tick due meanwhile waited out
        (2,000 positions, 3 such stretches in each storm's first 0.15 s)."""
        await let_due_work_first()
        await self._turns.turn()

    async def _sync_tranches(self, rt: PositionRuntime, role: OrderRole,
                             otype: OrderType, beside: bool = False) -> None:
        """One reduce-only order of `role` per tranche group, sized to it: new ones first,
        then the ones no group needs any more are cancelled."""
        core = self.core
        pos = rt.position
        wanted = self.tranche_orders(rt, pos, role)
        market = core.market.market(pos.symbol)
        current = [o for o in rt.pending(role)
                   if o.status in (OrderStatus.OPEN, OrderStatus.PENDING)]
        if any(o.status is OrderStatus.PENDING for o in current):
            rt.protect_dirty = True  # an unanswered create: wait until its fate is known
            return
        matched, unmatched = self._match(current, wanted, pos)
        ref = self.trigger_ref(pos)
        for i, m in enumerate(matched):
            if m is not None and m.trigger_ref not in (None, ref):
                matched[i] = None  # the symbol's trigger type changed: re-placed on it
                unmatched.append(m)
        failed = False
        for w, m in zip(wanted, matched, strict=True):
            if m is not None:
                continue
            # to the step: a float sum (0.03 - 0.02 = 0.00999…) the venue's precision would
            # truncate a step short (0.009), leaving that step without an order
            req = OrderRequest(core.new_client_id(), pos.symbol, pos.side.close_side, otype,
                               market.round_amount(w.qty), trigger_price=w.trigger,
                               reduce_only=True, position_id=pos.id,
                               role=role, reason=role.value + TRANCHES_TAG
                               + ",".join(w.tranche_ids), trigger_ref=ref)
            try:
                await core.place(req, self._turns if beside else None)
            except OrderStatusUnknown as exc:
                rt.protect_failing[role] = str(exc)
                rt.protect_dirty = True
                return
            except ExchangeError as exc:  # incl. a level already through the price: the
                failed = True             # tranche rule closes that tranche locally
                if exc.retryable:
                    rt.protect_dirty = True
                if role not in rt.protect_failing:
                    core.outbox.publish(ErrorEvent(
                        f"{pos.symbol}: {role.value} order for tranches "
                        f"{', '.join(w.tranche_ids)} not placed ({exc}); guarded locally only",
                        core.clock(), pos.id))
                rt.protect_failing[role] = str(exc)
        if failed:
            # A group's order was refused: the orders it was to replace stay (reduce-only,
            # they cannot over-close) — they are what still guards that group's quantity on
            # the exchange, as `_sync_one` keeps the old order when the new one fails.
            return
        rt.protect_failing.pop(role, None)
        for o in unmatched:
            await self.cancel_quietly(rt, o)

    def _worth_replacing(self, rt: PositionRuntime) -> bool:
        """A rule's move re-places the exchange order only when an order is missing or its
        level is at least `protect_min_step` of the price away.

        A trailing position asks on every tick until the housekeeping pass settles it, and
        the answer is mostly the same "no": it is kept (`rt.not_worth`) and given again with
        one comparison while the position, the market, the settings and the live orders are
        the same objects — the step is re-computed from the tick's price, as below."""
        core = self.core
        pos = rt.position
        market = core.market.market(pos.symbol)
        price = core.market.price(pos.symbol) or pos.entry
        settings = core.settings
        if _not_worth_kept(rt, market, settings, price):
            return False
        step = _min_step(settings, market, price)
        farthest = 0.0
        for role in PROTECTIVE:
            if role is OrderRole.TAKE_PROFIT and not core.exchange.capabilities.take_profit_orders:
                continue
            level = pos.sl if role is OrderRole.STOP_LOSS else pos.tp
            live = rt.pending(role)
            if any(o.status is not OrderStatus.OPEN for o in live) or len(live) > 1:
                return True  # something unresolved: let _sync_one decide
            if level is None:
                if live:
                    return True
                continue
            o = self.covering(rt, role)
            if o is None or o.trigger_price is None or abs(o.amount - pos.qty) > \
                    market.amount_step / 2 or abs(o.trigger_price - level) >= step:
                return True
            farthest = max(farthest, abs(o.trigger_price - level))
        rt.not_worth = (pos, market, settings, tuple(rt.orders.values()), farthest)
        return False

    def _token_ready(self, now: float) -> bool:
        """A re-placement fits the budget now (the bucket refilled to `now`)."""
        budget = self.core.settings.protect_budget
        if budget <= 0 or budget == float("inf"):
            return True
        tokens = self._tokens = min(budget, self._tokens + (now - self._refilled) * budget)
        self._refilled = now
        if tokens >= 1.0:
            return True
        self.budget_spent_until = now + (1.0 - tokens) / budget  # the refill's linear
        return False

    def _spend_token(self) -> None:
        budget = self.core.settings.protect_budget
        if 0 < budget < float("inf"):
            self._tokens -= 1.0

    async def _sync_one(self, rt: PositionRuntime, role: OrderRole, otype: OrderType,
                        beside: bool = False) -> None:
        """Place the order of `role` at the position's level if none covers it, then cancel
        the ones it replaces (with `beside`, the loop handed over in between)."""
        core = self.core
        pos = rt.position
        level = pos.sl if role is OrderRole.STOP_LOSS else pos.tp
        market = core.market.market(pos.symbol)
        current = [o for o in rt.pending(role)
                   if o.status in (OrderStatus.OPEN, OrderStatus.PENDING)]
        if level is not None:
            trigger = market.round_price(level)
            half_tick, half_step = market.tick_size / 2, market.amount_step / 2
            ref = self.trigger_ref(pos)
            # an order on the other trigger price (mark/last: the trader changed
            # `protection.trigger`) is re-placed; one whose type is not known is kept
            keep = [o for o in current if o.trigger_price is not None
                    and abs(o.trigger_price - trigger) < half_tick
                    and abs(o.amount - pos.qty) <= half_step
                    and o.trigger_ref in (None, ref)]
            keep.sort(key=lambda o: o.status is not OrderStatus.OPEN)  # acknowledged first
            if keep and keep[0].status is OrderStatus.PENDING:
                # Its create went unanswered: until its fate is known, what protects the
                # position now is not cancelled, and nothing new is sent (it may exist).
                rt.protect_dirty = True
                return
            if keep:
                rt.protect_failing.pop(role, None)
                for o in current:
                    if o is not keep[0]:
                        await self.cancel_quietly(rt, o)
                return
            # to the step: a float remainder (0.3 - 0.1 = 0.19999…) the venue's precision
            # would truncate a step short (0.199), leaving that step without an order
            req = OrderRequest(core.new_client_id(), pos.symbol, pos.side.close_side, otype,
                               market.round_amount(pos.qty), trigger_price=trigger,
                               reduce_only=True, position_id=pos.id,
                               role=role, reason=role.value, trigger_ref=ref)
            try:
                await core.place(req, self._turns if beside else None)
            except OrderWouldTriggerImmediately as exc:
                rt.protect_failing.pop(role, None)
                # The level is already through the market: close now (DESIGN §5), journaled.
                reason = core.stop_reason(pos) if role is OrderRole.STOP_LOSS \
                    else Reason.TAKE_PROFIT
                price = core.market.price(pos.symbol) or level
                action = Action(ActionType.CLOSE, reason, pos.id, price, qty=pos.qty,
                                rule="protection", ts=core.clock(),
                                inputs=frozen_map({"level": level, "error": str(exc)}))
                await core.execute(action)
                return
            except OrderStatusUnknown as exc:
                # It may be on the exchange: looked up by client id shortly (never re-sent
                # while its fate is unknown; `current` keeps the pending order).
                rt.protect_failing[role] = str(exc)
                rt.protect_dirty = True  # finish the move once it is resolved
                core.outbox.publish(ErrorEvent(
                    f"{pos.symbol}: the exchange did not confirm the {role.value} order "
                    f"({exc}); checking it by its id", core.clock(), pos.id))
                return
            except ExchangeError as exc:
                if exc.retryable:  # rate limit, timeout, outage: try again next pass
                    rt.protect_dirty = True
                if role not in rt.protect_failing:  # once per failure streak, not per try
                    core.outbox.publish(ErrorEvent(
                        f"{pos.symbol}: {role.value} order not placed ({exc}); guarded "
                        f"locally only{'; retrying' if exc.retryable else ''}",
                        core.clock(), pos.id))
                rt.protect_failing[role] = str(exc)
                return
            if rt.protect_failing.pop(role, None) is not None:
                log.info("%s: %s order placed after earlier failures", pos.symbol, role.value)
            if beside and current:
                await self._hand_over()  # the new order protects; the cancel can wait
        for o in current:
            await self.cancel_quietly(rt, o)

    async def cancel_quietly(self, rt: PositionRuntime, order: Order) -> None:
        try:
            await self.core.cancel(order)
        except ExchangeError as exc:
            self.core.outbox.publish(ErrorEvent(f"{rt.symbol}: cancel failed: {exc}",
                                                self.core.clock(), rt.id))

    def lost(self, order: Order, how: str | None = None) -> None:
        """A live SL/TP order of an open position ended without pmgui cancelling it
        (cancelled on the exchange's website, expired, lost): tell the trader at once and
        re-place it on the next housekeeping pass instead of at the next reconciliation."""
        core = self.core
        rt = core.book.runtime(order.position_id)
        if rt is None or not rt.is_open:
            return
        pos = rt.position
        what = "stop-loss" if order.role is OrderRole.STOP_LOSS else "take-profit"
        guard = "; the position is guarded locally only" \
            if self.protection(rt) is not Protection.ON_EXCHANGE else ""
        message = (f"{pos.symbol}: the {what} order on the exchange was "
                   f"{how or order.status.value} outside pmgui{guard}; re-placing it")
        log.warning("%s (%s)", message, order.client_id)
        core.outbox.publish(ErrorEvent(message, core.clock(), pos.id))
        self.mark_dirty(rt, urgent=True)
        core.publish_position(rt)
