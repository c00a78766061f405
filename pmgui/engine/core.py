"""The engine core: feed → price validation → policy → orders → fills → state → store → events.

`EngineCore` is loop-agnostic: the manager thread (`pmgui.engine.thread`) runs it on its own
asyncio loop for the GUI and `--headless`, and `pmgui replay` runs the very same object over
the paper exchange in simulated time. It is the only writer of trading state.

Accounting is driven by *order fill deltas*, not by individual fill messages: every order we
know carries how much of it has been applied to its position, so the same fill arriving twice
(stream and REST, or before and after a crash) can never be applied twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from types import MappingProxyType

from pmgui.domain import money
from pmgui.domain.enums import (
    ActionType,
    OrderRole,
    OrderStatus,
    OrderType,
    PositionStatus,
    Protection,
    Reason,
    Side,
    StopKind,
)
from pmgui.domain.errors import (
    ExchangeError,
    OrderWouldTriggerImmediately,
    PmguiError,
    PositionNotFound,
    ValidationError,
)
from pmgui.domain.models import (
    Action,
    Candle,
    Fill,
    Market,
    MarketState,
    Order,
    OrderRequest,
    Position,
    Scalar,
    Tick,
    Tranche,
    frozen_map,
)
from pmgui.domain.validation import validate_new_position, validate_targets
from pmgui.engine import commands as cmd
from pmgui.engine.events import (
    AccountEvent,
    ActionTaken,
    CandlesEvent,
    ConnectionEvent,
    ErrorEvent,
    OrderSnapshot,
    PositionRemoved,
    PositionSnapshot,
    TickEvent,
)
from pmgui.engine.ids import is_ours, new_client_id, new_position_id
from pmgui.engine.outbox import Outbox
from pmgui.engine.settings import EngineSettings, SymbolRules
from pmgui.exchange.base import ConnectionState, Exchange, ExchangePosition, OrderUpdate
from pmgui.exchange.demo import DemoPosition
from pmgui.exchange.retry import OrderStatusUnknown
from pmgui.indicators import IndicatorSet, IndicatorSpec
from pmgui.rules.params import Params, resolve_params
from pmgui.rules.policy import (
    evaluate,
    indicator_spec,
    initial_targets,
    observe,
    price_is_usable,
    scale_out,
)
from pmgui.rules.tranches import reduce_tranches, tranche_levels
from pmgui.store.db import Store

log = logging.getLogger("pmgui.engine")

EPS = 1e-12
STOP_REASON = {
    StopKind.INITIAL: Reason.STOP_LOSS,
    StopKind.MANUAL: Reason.STOP_LOSS,
    StopKind.TRAILING: Reason.TRAILING_STOP,
    StopKind.BREAKEVEN: Reason.BREAKEVEN_STOP,
}


class EngineCore:
    """Owns positions, orders and the policy; implements `ExchangeSink`."""

    def __init__(self, exchange: Exchange, store: Store, outbox: Outbox,
                 settings: EngineSettings | None = None,
                 clock: Callable[[], float] | None = None,
                 demo: Iterable[DemoPosition] = ()) -> None:
        self.exchange = exchange
        self.store = store
        self.outbox = outbox
        self.settings = settings or EngineSettings()
        self.clock = clock or time.time
        self._demo = tuple(demo)
        self._demo_pending: dict[str, DemoPosition] = {}
        self.positions: dict[str, Position] = {}
        self.orders: dict[str, Order] = {}  # open / pending orders we track, by client id
        self._markets: dict[str, Market] = {}
        self._last: dict[str, Tick] = {}
        self._params: dict[str, Params] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._closing: dict[str, asyncio.Future] = {}
        self._candles: dict[str, deque[Candle]] = {}
        self._forming: dict[str, Candle] = {}
        self._indicators: dict[tuple[str, IndicatorSpec], IndicatorSet] = {}
        self._protect_dirty: set[str] = set()
        self._protect_last: dict[str, float] = {}
        self._saved_at: dict[str, float] = {}
        self._reduce_flags: dict[str, frozenset[str]] = {}
        self._stale_reported: set[str] = set()  # client id → the action's flags
        self._cancelling: set[str] = set()  # client ids pmgui is cancelling right now
        self._creating: set[str] = set()  # client ids whose create call is in flight
        self._opening: set[tuple[str, Side]] = set()  # entries in flight (not positions yet)
        # A change counter, bumped by every fill/open/close and remembered per (symbol,
        # side): reconciliation ignores what changed after its snapshot was requested.
        self._changes = 0
        self._touched: dict[tuple[str, Side], int] = {}
        self._protect_failing: dict[tuple[str, OrderRole], str] = {}  # → last error told
        self._connection = ConnectionState(False, False, "connecting")
        self._balance: tuple[float, float, str] | None = None
        self.started = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect, restore from the store, reconcile with the exchange, protect."""
        await self.exchange.connect()
        self._markets = dict(self.exchange.markets())
        stored_rules = self.store.get_setting("symbol_rules", {}) or {}
        if stored_rules:
            self._apply_symbol_rules(stored_rules)
        for pos in self.store.load_open_positions():
            self.positions[pos.id] = pos
        for order in self.store.open_orders():
            self.orders[order.client_id] = order
        await self.reconcile(startup=True)
        symbols = sorted({p.symbol for p in self.positions.values()}
                         | {d.symbol for d in self._demo})
        if symbols:
            self.exchange.subscribe(symbols)
        for symbol in symbols:
            await self._load_history(symbol)
        if self._demo and not self.store.get_setting("demo_opened", False):
            # Opened on each symbol's first live price (the venue may have none yet).
            self._demo_pending = {d.symbol: d for d in self._demo}
        for pos in list(self.positions.values()):
            await self._sync_protection(pos.id, force=True)
            self._publish_position(pos.id)
        await self.refresh_account()
        self.started = True

    async def shutdown(self) -> None:
        """Persist everything that is only in memory; the exchange keeps the orders."""
        for pos in self.positions.values():
            self.store.save_position(pos)
        try:
            await self.exchange.close()
        finally:
            self.store.close()

    async def _load_history(self, symbol: str) -> None:
        try:
            history = await self.exchange.fetch_ohlcv(symbol, "1m", self.settings.candle_window)
        except (ExchangeError, NotImplementedError) as exc:
            log.warning("no candle history for %s: %s", symbol, exc)
            history = []
        window = self._candles.setdefault(symbol, deque(maxlen=self.settings.candle_window))
        for c in history:
            if not window or c.ts > window[-1].ts:
                window.append(c)
        self._publish_candles(symbol)

    async def _open_demo(self, spec: DemoPosition, tick: Tick) -> None:
        """First start in paper mode: open one demo position at the current price."""
        del self._demo_pending[spec.symbol]
        if not self._demo_pending:
            self.store.set_setting("demo_opened", True)
        if not any(p.symbol == spec.symbol and p.side is spec.side
                   for p in self.positions.values()):
            sl, tp = spec.targets(tick.price, self._markets.get(spec.symbol))
            try:
                await self.handle(cmd.OpenPosition(spec.symbol, spec.side, spec.qty, spec.leverage,
                                                   sl=sl, tp=tp))
            except PmguiError as exc:
                log.warning("demo position %s not opened: %s", spec.symbol, exc)

    # ------------------------------------------------------------------ sink

    async def on_connection(self, state: ConnectionState) -> None:
        self._connection = state
        self.publish_connection()

    def publish_connection(self) -> None:
        now = self.clock()
        newest = max((t.ts for t in self._last.values()), default=None)
        age = max(0.0, now - newest) if newest is not None else None
        c = self._connection
        self.outbox.publish(ConnectionEvent(self.exchange.id, c.market_data, c.orders, age,
                                            c.detail, c.clock_offset, c.streams,
                                            c.rate_limit_headroom))

    async def on_tick(self, tick: Tick) -> None:
        if not money.valid_price(tick.price):
            log.warning("ignoring invalid price %r for %s", tick.price, tick.symbol)
            return
        prev = self._last.get(tick.symbol)
        if prev is not None and tick.ts < prev.ts:
            return  # out of order: never let an older price replace a newer one
        self._last[tick.symbol] = tick
        self._update_forming(tick)
        self.outbox.publish(TickEvent(tick.symbol, tick.price, tick.ts))
        if tick.symbol in self._demo_pending:
            await self._open_demo(self._demo_pending[tick.symbol], tick)
        for pid in [p.id for p in self.positions.values() if p.symbol == tick.symbol]:
            await self._on_position_tick(pid, tick)

    async def on_candle(self, symbol: str, candle: Candle, closed: bool) -> None:
        if not closed:
            self._forming[symbol] = candle
            return
        self._close_candle(symbol, candle)

    async def on_order_update(self, update: OrderUpdate) -> None:
        await self._apply_order(update.order, update.fills)

    # ------------------------------------------------------------------ candles & indicators

    def _update_forming(self, tick: Tick) -> None:
        """The still-forming candle, for the chart only. Completed candles (and so every
        indicator) come from the venue's `on_candle`: a replayed hourly file must not be
        cut into minutes by the engine."""
        tf = self.settings.candle_timeframe
        bucket = tick.ts - (tick.ts % tf)
        cur = self._forming.get(tick.symbol)
        if cur is None or bucket > cur.ts:
            cur = Candle(bucket, tick.price, tick.price, tick.price, tick.price, tick.volume)
        else:
            cur = Candle(cur.ts, cur.open, max(cur.high, tick.price), min(cur.low, tick.price),
                         tick.price, cur.volume + tick.volume)
        self._forming[tick.symbol] = cur

    def _close_candle(self, symbol: str, candle: Candle) -> None:
        window = self._candles.setdefault(symbol, deque(maxlen=self.settings.candle_window))
        if window and candle.ts <= window[-1].ts:
            return
        window.append(candle)
        forming = self._forming.get(symbol)
        if forming is not None and forming.ts <= candle.ts:
            del self._forming[symbol]
        for (sym, _spec), ind in self._indicators.items():
            if sym == symbol:
                ind.update(candle)
        self._publish_candles(symbol)

    def _publish_candles(self, symbol: str) -> None:
        candles = tuple(self._candles.get(symbol, ()))
        forming = self._forming.get(symbol)
        if forming is not None and (not candles or forming.ts > candles[-1].ts):
            candles = (*candles, forming)
        self.outbox.publish(CandlesEvent(symbol, candles))

    def _indicator_set(self, symbol: str, spec: IndicatorSpec) -> IndicatorSet:
        key = (symbol, spec)
        ind = self._indicators.get(key)
        if ind is None:
            ind = IndicatorSet.from_candles(spec, list(self._candles.get(symbol, ())))
            self._indicators[key] = ind
        return ind

    def candles(self, symbol: str) -> tuple[Candle, ...]:
        return tuple(self._candles.get(symbol, ()))

    # ------------------------------------------------------------------ evaluation

    def params(self, pos: Position) -> Params:
        p = self._params.get(pos.id)
        if p is None:
            overrides = self.settings.overrides_for(pos.symbol)
            overrides.update(pos.overrides)
            p = resolve_params(pos.preset, overrides)
            self._params[pos.id] = p
        return p

    def _lock(self, pid: str) -> asyncio.Lock:
        lock = self._locks.get(pid)
        if lock is None:
            lock = self._locks[pid] = asyncio.Lock()
        return lock

    async def _on_position_tick(self, pid: str, tick: Tick) -> None:
        pos = self.positions.get(pid)
        if pos is None or not pos.is_open:
            return
        params = self.params(pos)
        now = self.clock()
        if not price_is_usable(tick.price, tick.ts, now, float(params["price.max_age"])):
            self._publish_position(pid)
            return
        observed = observe(pos, tick.price)
        if observed is not pos:
            self._set(observed, persist=False)
            pos = observed
        lock = self._lock(pid)
        if lock.locked():  # an order for this position is in flight: decide next tick
            self._publish_position(pid)
            return
        async with lock:
            market = self._market(pos.symbol)
            mkt = MarketState(pos.symbol, tick.price, tick.ts, market,
                              self._indicator_set(pos.symbol, indicator_spec(params)).snapshot())
            for action in evaluate(pos, mkt, params):
                await self._execute(replace(action, ts=tick.ts))
                if not self._is_open(pid):
                    break
            if pid in self._protect_dirty and self._is_open(pid):
                await self._sync_protection(pid)
        self._maybe_persist(pid)
        self._publish_position(pid)

    def _is_open(self, pid: str) -> bool:
        pos = self.positions.get(pid)
        return pos is not None and pos.is_open

    def _market(self, symbol: str) -> Market:
        m = self._markets.get(symbol)
        if m is None:
            m = Market(symbol, tick_size=1e-8, amount_step=1e-8)
        return m

    async def _execute(self, action: Action) -> None:
        """Carry out one decision. The decision is journaled first, then acted on."""
        pos = self.positions.get(action.position_id)
        if pos is None or not pos.is_open:
            return
        if action.sl is None or action.tp is None:  # the log shows the levels in force
            action = replace(action, sl=pos.sl if action.sl is None else action.sl,
                             tp=pos.tp if action.tp is None else action.tp)
        self.store.record_action(action, symbol=pos.symbol)
        ok, detail = True, ""
        try:
            if action.type is ActionType.CLOSE:
                await self._reduce(pos, pos.qty, action.reason, action)
            elif action.type is ActionType.REDUCE:
                await self._reduce(pos, action.qty or 0.0, action.reason, action)
            elif action.type is ActionType.MOVE_SL and action.sl is not None:
                kind = action.stop_kind or StopKind.MANUAL
                new = pos.evolve(sl=action.sl, sl_kind=kind,
                                 trailing=action.sl if kind is StopKind.TRAILING else pos.trailing,
                                 initial_sl=pos.initial_sl if pos.initial_sl is not None
                                 else action.sl,
                                 flags=pos.flags | action.flags)
                self._set(new)
                self._protect_dirty.add(pos.id)
            elif action.type is ActionType.MOVE_TP and action.tp is not None:
                self._set(pos.evolve(tp=action.tp, flags=pos.flags | action.flags))
                self._protect_dirty.add(pos.id)
            elif action.type is ActionType.ADD and action.qty:
                await self._add(pos, action)
        except PmguiError as exc:
            ok, detail = False, str(exc)
            self.outbox.publish(ErrorEvent(f"{pos.symbol}: {action.reason.value} failed: {exc}",
                                           self.clock(), pos.id))
        self.outbox.publish(ActionTaken(action, pos.symbol, ok, detail))

    # ------------------------------------------------------------------ orders

    async def _place(self, req: OrderRequest) -> Order:
        """Journal, then send. Never re-sent blindly: the adapter resolves timeouts by id."""
        order = self.store.journal_order(req, self.clock())
        if req.position_id:
            self.store.link_order(req.position_id, req.client_id, req.role)
        self.orders[req.client_id] = order
        self._creating.add(req.client_id)
        try:
            result = await self.exchange.create_order(req)
        except OrderStatusUnknown:
            # Maybe placed, maybe not: it stays PENDING in the journal and is looked up by
            # client id (`_resolve_pending`, reconciliation). Never re-sent blindly, never
            # assumed rejected.
            raise
        except ExchangeError as exc:
            rejected = replace(order, status=OrderStatus.REJECTED, error=str(exc),
                               updated_at=self.clock())
            self.store.save_order(rejected)
            self.orders.pop(req.client_id, None)
            self.outbox.publish(OrderSnapshot(rejected))
            raise
        finally:
            self._creating.discard(req.client_id)
        await self._apply_order(result, ())
        return self.orders.get(req.client_id) or result

    async def _cancel(self, order: Order) -> None:
        # While our cancel is in flight, the stream's CANCELED for this order is ours, not
        # a protective order disappearing behind pmgui's back.
        self._cancelling.add(order.client_id)
        try:
            try:
                result = await self.exchange.cancel_order(order)
            except ExchangeError as exc:
                # Already gone (filled or cancelled): the exchange's word decides.
                found = await self.exchange.fetch_order_by_client_id(order.client_id,
                                                                     order.symbol)
                if found is None or not found.status.is_final:
                    raise
                result = found
                log.info("cancel %s: %s", order.client_id, exc)
            await self._apply_order(result, ())
        finally:
            self._cancelling.discard(order.client_id)

    async def _apply_order(self, order: Order, fills: Iterable[Fill],
                           synthesize: bool = False) -> None:
        """Apply what changed in `order` since we last saw it.

        Fill records come from the exchange's own fills (they arrive with the stream). Only
        reconciliation, which sees a filled order but never its fills, `synthesize`s one.
        """
        fills = tuple(fills)
        known = self.orders.get(order.client_id) or self.store.order(order.client_id)
        if known is None:
            await self._apply_foreign(order, fills)
            return
        merged = replace(order, position_id=known.position_id, role=known.role,
                         reason=known.reason, created_at=known.created_at or order.created_at)
        if merged.filled + EPS < known.filled:  # a stale update must not undo fills
            merged = replace(merged, filled=known.filled, average=known.average)
        delta = merged.filled - known.filled
        price = _delta_price(known, merged, delta, fills)
        fee = sum(f.fee for f in fills) if fills else None
        with self.store.transaction():
            self.store.save_order(merged)
            for f in fills:
                self.store.record_fill(f, merged.position_id)
            if synthesize and delta > EPS and not fills and price is not None:
                self.store.record_fill(
                    Fill(f"{merged.client_id}#{merged.filled:.12g}", merged.client_id,
                         merged.symbol, merged.side, delta, price,
                         delta * price * self._market(merged.symbol).contract_size
                         * self._fee_rate(merged), self.clock(), merged.exchange_id),
                    merged.position_id)
        if merged.status.is_final:
            self.orders.pop(merged.client_id, None)
        else:
            self.orders[merged.client_id] = merged
        self.outbox.publish(OrderSnapshot(merged))
        if merged.status.is_final and not known.status.is_final and merged.filled <= EPS \
                and merged.role in (OrderRole.STOP_LOSS, OrderRole.TAKE_PROFIT) \
                and merged.client_id not in self._cancelling:
            self._protective_order_lost(merged)
        if delta > EPS and price is not None and merged.position_id:
            if fee is None:
                fee = delta * price * self._market(merged.symbol).contract_size * \
                    self._fee_rate(merged)
            await self._apply_fill(merged, delta, price, fee,
                                   liquidation=any(f.liquidation for f in fills))

    def _protective_order_lost(self, order: Order, how: str | None = None) -> None:
        """A live SL/TP order of an open position ended without pmgui cancelling it
        (cancelled on the exchange's website, expired, lost): tell the trader at once and
        re-place it on the next housekeeping pass instead of at the next reconciliation."""
        pos = self.positions.get(order.position_id or "")
        if pos is None or not pos.is_open:
            return
        what = "stop-loss" if order.role is OrderRole.STOP_LOSS else "take-profit"
        guard = "; the position is guarded locally only" \
            if self.protection(pos) is not Protection.ON_EXCHANGE else ""
        message = (f"{pos.symbol}: the {what} order on the exchange was "
                   f"{how or order.status.value} outside pmgui{guard}; re-placing it")
        log.warning("%s (%s)", message, order.client_id)
        self.outbox.publish(ErrorEvent(message, self.clock(), pos.id))
        self._protect_dirty.add(pos.id)
        self._protect_last.pop(pos.id, None)  # not throttled: protection is missing
        self._publish_position(pos.id)

    def _fee_rate(self, order: Order) -> float:
        pos = self.positions.get(order.position_id or "")
        return pos.fee_rate if pos else 0.0005

    async def _apply_foreign(self, order: Order, fills: tuple[Fill, ...]) -> None:
        """An order pmgui did not place: a liquidation, or the trader's own order elsewhere."""
        if order.filled <= EPS:
            return
        liquidation = order.reason == "liquidation" or any(f.liquidation for f in fills)
        target = None
        for pos in self.positions.values():
            if pos.is_open and pos.symbol == order.symbol and order.side is pos.side.close_side:
                target = pos
                break
        if target is None:
            return
        adopted = replace(order, position_id=target.id, role=OrderRole.REDUCE,
                          reason="liquidation" if liquidation else Reason.RECONCILE.value,
                          filled=0.0, average=None, status=OrderStatus.OPEN)
        self.store.save_order(adopted)
        self.store.link_order(target.id, order.client_id, OrderRole.REDUCE)
        self.orders[order.client_id] = adopted
        await self._apply_order(order, fills)

    # ------------------------------------------------------------------ fills → positions

    def _touch(self, symbol: str, side: Side) -> None:
        self._changes += 1
        self._touched[(symbol, side)] = self._changes

    async def _apply_fill(self, order: Order, qty: float, price: float, fee: float,
                          liquidation: bool = False) -> None:
        pos = self.positions.get(order.position_id or "")
        if pos is None:
            pos = self.store.load_position(order.position_id or "")
            if pos is None or not pos.is_open:
                return
        self._touch(pos.symbol, pos.side)
        opening = order.side is pos.side.open_side and not order.reduce_only
        now = self.clock()
        if opening:
            new_qty = pos.qty + qty
            entry = money.average_entry(pos.qty, pos.entry, qty, price)
            t_sl, t_tp = tranche_levels(pos.side, price, self.params(pos),
                                        self._market(pos.symbol))
            tranche = Tranche(order.client_id, qty, price, now,
                              pos.sl if t_sl is None else t_sl, pos.tp if t_tp is None else t_tp,
                              "add_on" if order.role is OrderRole.ADD else "entry")
            pos = pos.evolve(qty=new_qty, entry=entry, fees_paid=pos.fees_paid + fee,
                             realized_pnl=pos.realized_pnl - fee,
                             tranches=(*pos.tranches, tranche))
            if pos.liquidation is not None or self.exchange.id == "paper":
                pos = pos.evolve(liquidation=money.liquidation_price(
                    pos.side, pos.entry, pos.leverage, self._market(pos.symbol).mmr))
            self._set(pos)
            self._protect_dirty.add(pos.id)
            self._publish_position(pos.id)
            return
        q = min(qty, pos.qty)
        gross = pos.dir * (price - pos.entry) * q * pos.contract_size
        remaining = pos.qty - q
        step = self._market(pos.symbol).amount_step
        if remaining <= max(EPS, step * 1e-6):
            remaining = 0.0
        tranches = reduce_tranches(pos.tranches, q,
                                   self._reduce_flags.get(order.client_id, frozenset()))
        pos = pos.evolve(qty=remaining, realized_pnl=pos.realized_pnl + gross - fee,
                         fees_paid=pos.fees_paid + fee, tranches=tranches)
        reason = self._fill_reason(pos, order, liquidation)
        if remaining == 0.0:
            pos = pos.evolve(status=PositionStatus.CLOSED, closed_at=now, exit_price=price,
                             exit_reason=reason)
            self._set(pos)
            if order.role in (OrderRole.STOP_LOSS, OrderRole.TAKE_PROFIT) or liquidation \
                    or order.reason == Reason.RECONCILE.value:
                self._note_external_close(pos, order, q, price, reason)
            await self._finish_close(pos)
        else:
            self._set(pos)
            self._protect_dirty.add(pos.id)
            self._publish_position(pos.id)

    def _fill_reason(self, pos: Position, order: Order, liquidation: bool) -> str:
        if liquidation:
            return Reason.LIQUIDATION.value
        if order.role is OrderRole.STOP_LOSS:
            return STOP_REASON[pos.sl_kind].value
        if order.role is OrderRole.TAKE_PROFIT:
            return Reason.TAKE_PROFIT.value
        return order.reason or Reason.MANUAL.value

    def _note_external_close(self, pos: Position, order: Order, qty: float, price: float,
                             reason: str) -> None:
        """A close the exchange carried out (protective order, liquidation): log it too."""
        action = Action(ActionType.CLOSE, Reason(reason), pos.id, price, qty=qty,
                        sl=pos.sl, tp=pos.tp, rule="exchange", ts=self.clock(),
                        inputs=frozen_map({"order": order.client_id, "price": price}))
        self.store.record_action(action, symbol=pos.symbol)
        self.outbox.publish(ActionTaken(action, pos.symbol, True, f"filled {qty:g} @ {price:g}"))

    async def _finish_close(self, pos: Position) -> None:
        """Closed: cancel what protected it, publish, forget."""
        for order in [o for o in self.orders.values() if o.position_id == pos.id]:
            if order.status is OrderStatus.OPEN:
                try:
                    await self._cancel(order)
                except ExchangeError as exc:
                    self.outbox.publish(ErrorEvent(
                        f"{pos.symbol}: could not cancel {order.type.value} order: {exc}",
                        self.clock(), pos.id))
        self._touch(pos.symbol, pos.side)
        self.positions.pop(pos.id, None)
        self._params.pop(pos.id, None)
        self._protect_dirty.discard(pos.id)
        for role in (OrderRole.STOP_LOSS, OrderRole.TAKE_PROFIT):
            self._protect_failing.pop((pos.id, role), None)
        self.outbox.publish(PositionRemoved(pos, self.clock()))
        await self.refresh_account()

    async def _reduce(self, pos: Position, qty: float, reason: Reason | str,
                      action: Action | None = None) -> Order | None:
        market = self._market(pos.symbol)
        qty, close_all = scale_out(qty, pos.qty, market)
        if close_all:
            qty = pos.qty
        if qty <= 0:
            raise ValidationError(f"nothing to close in {pos.symbol}")
        flags = action.flags if action else frozenset()
        req = OrderRequest(new_client_id(), pos.symbol, pos.side.close_side, OrderType.MARKET,
                           qty, reduce_only=True, position_id=pos.id, role=OrderRole.REDUCE,
                           reason=str(getattr(reason, "value", reason)))
        if flags:
            self._reduce_flags[req.client_id] = flags
        try:
            order = await self._place(req)
        finally:
            self._reduce_flags.pop(req.client_id, None)
        cur = self.positions.get(pos.id)
        if flags and cur is not None and cur.is_open:
            self._set(cur.evolve(flags=cur.flags | flags))
        return order

    async def _add(self, pos: Position, action: Action) -> None:
        market = self._market(pos.symbol)
        qty = market.floor_amount(action.qty or 0.0)
        if qty <= 0 or (market.min_amount and qty < market.min_amount):
            raise ValidationError(f"add of {action.qty:g} is below the minimum size")
        # Flags first: an add is attempted once even if the order is rejected (seed 001).
        self._set(pos.evolve(flags=pos.flags | action.flags))
        req = OrderRequest(new_client_id(), pos.symbol, pos.side.open_side,
                           OrderType.LIMIT if action.limit else OrderType.MARKET, qty,
                           price=market.round_price(action.price) if action.limit else None,
                           position_id=pos.id, role=OrderRole.ADD, reason=action.reason.value)
        await self._place(req)

    # ------------------------------------------------------------------ protection

    def protection(self, pos: Position) -> Protection:
        """ON_EXCHANGE only while an SL order the exchange acknowledged (OPEN, not merely
        journaled) covers the whole current quantity; a smaller one (the position grew) or
        none at all leaves the stop guarded locally only."""
        if pos.sl is None:
            return Protection.UNPROTECTED
        half_step = self._market(pos.symbol).amount_step / 2
        for o in self.orders.values():
            if o.position_id == pos.id and o.role is OrderRole.STOP_LOSS \
                    and o.status is OrderStatus.OPEN and o.amount + half_step + EPS >= pos.qty:
                return Protection.ON_EXCHANGE
        return Protection.LOCAL_ONLY

    async def _sync_protection(self, pid: str, force: bool = False) -> None:
        """Make the exchange's reduce-only SL/TP orders mirror the local levels.

        New order first, then cancel the old one: the position is never without an order
        on the exchange during a move (reduce-only guarantees two cannot over-close).
        """
        pos = self.positions.get(pid)
        if pos is None or not pos.is_open:
            return
        caps = self.exchange.capabilities
        if not self.settings.protect_on_exchange or not caps.stop_orders:
            self._protect_dirty.discard(pid)
            return
        now = self.clock()
        if not force and now - self._protect_last.get(pid, -1e18) < self.settings.protect_throttle:
            self._protect_dirty.add(pid)
            return
        self._protect_dirty.discard(pid)
        self._protect_last[pid] = now
        await self._sync_one(pos, OrderRole.STOP_LOSS, pos.sl, OrderType.STOP_MARKET)
        pos = self.positions.get(pid)
        if pos is not None and pos.is_open and caps.take_profit_orders:
            await self._sync_one(pos, OrderRole.TAKE_PROFIT, pos.tp, OrderType.TAKE_PROFIT_MARKET)

    async def _sync_one(self, pos: Position, role: OrderRole, level: float | None,
                        otype: OrderType) -> None:
        market = self._market(pos.symbol)
        current = [o for o in self.orders.values()
                   if o.position_id == pos.id and o.role is role
                   and o.status in (OrderStatus.OPEN, OrderStatus.PENDING)]
        if level is not None:
            trigger = market.round_price(level)
            half_tick, half_step = market.tick_size / 2, market.amount_step / 2
            keep = [o for o in current if o.trigger_price is not None
                    and abs(o.trigger_price - trigger) < half_tick
                    and abs(o.amount - pos.qty) <= half_step]
            keep.sort(key=lambda o: o.status is not OrderStatus.OPEN)  # acknowledged first
            if keep and keep[0].status is OrderStatus.PENDING:
                # Its create went unanswered: until its fate is known, what protects the
                # position now is not cancelled, and nothing new is sent (it may exist).
                self._protect_dirty.add(pos.id)
                return
            if keep:
                self._protect_failing.pop((pos.id, role), None)
                for o in current:
                    if o is not keep[0]:
                        await self._cancel_quietly(pos, o)
                return
            req = OrderRequest(new_client_id(), pos.symbol, pos.side.close_side, otype, pos.qty,
                               trigger_price=trigger, reduce_only=True, position_id=pos.id,
                               role=role, reason=role.value)
            key = (pos.id, role)
            try:
                await self._place(req)
            except OrderWouldTriggerImmediately as exc:
                self._protect_failing.pop(key, None)
                # The level is already through the market: close now (DESIGN §5), journaled.
                reason = STOP_REASON[pos.sl_kind] if role is OrderRole.STOP_LOSS \
                    else Reason.TAKE_PROFIT
                price = self._last[pos.symbol].price if pos.symbol in self._last else level
                action = Action(ActionType.CLOSE, reason, pos.id, price, qty=pos.qty,
                                rule="protection", ts=self.clock(),
                                inputs=frozen_map({"level": level, "error": str(exc)}))
                await self._execute(action)
                return
            except OrderStatusUnknown as exc:
                # It may be on the exchange: looked up by client id shortly (never re-sent
                # while its fate is unknown; `current` keeps the pending order).
                self._protect_failing[key] = str(exc)
                self._protect_dirty.add(pos.id)  # finish the move once it is resolved
                self.outbox.publish(ErrorEvent(
                    f"{pos.symbol}: the exchange did not confirm the {role.value} order "
                    f"({exc}); checking it by its id", self.clock(), pos.id))
                return
            except ExchangeError as exc:
                if exc.retryable:  # rate limit, timeout, outage: try again next pass
                    self._protect_dirty.add(pos.id)
                if key not in self._protect_failing:  # once per failure streak, not per try
                    self.outbox.publish(ErrorEvent(
                        f"{pos.symbol}: {role.value} order not placed ({exc}); guarded "
                        f"locally only{'; retrying' if exc.retryable else ''}",
                        self.clock(), pos.id))
                self._protect_failing[key] = str(exc)
                return
            if self._protect_failing.pop(key, None) is not None:
                log.info("%s: %s order placed after earlier failures", pos.symbol, role.value)
        for o in current:
            await self._cancel_quietly(pos, o)

    async def _cancel_quietly(self, pos: Position, order: Order) -> None:
        try:
            await self._cancel(order)
        except ExchangeError as exc:
            self.outbox.publish(ErrorEvent(f"{pos.symbol}: cancel failed: {exc}",
                                           self.clock(), pos.id))

    # ------------------------------------------------------------------ state & events

    def _set(self, pos: Position, persist: bool = True) -> None:
        self.positions[pos.id] = pos
        if persist:
            self.store.save_position(pos)
            self._saved_at[pos.id] = self.clock()

    def _maybe_persist(self, pid: str) -> None:
        pos = self.positions.get(pid)
        if pos is not None and self.clock() - self._saved_at.get(pid, 0.0) >= \
                self.settings.save_interval:
            self._set(pos)

    def snapshot(self, pos: Position) -> PositionSnapshot:
        tick = self._last.get(pos.symbol)
        mark = tick.price if tick else None
        now = self.clock()
        stale = tick is None or now - tick.ts > float(self.params(pos)["price.max_age"])
        if mark is None:
            return PositionSnapshot(pos, None, 0.0, 0.0, None, self.protection(pos), True, now)
        return PositionSnapshot(pos, mark, money.position_pnl(pos, mark),
                                money.position_roi(pos, mark), money.position_r(pos, mark),
                                self.protection(pos), stale, now)

    def _publish_position(self, pid: str) -> None:
        pos = self.positions.get(pid)
        if pos is not None and pos.is_open:
            self.outbox.publish(self.snapshot(pos))

    def publish_all(self) -> None:
        for pid in list(self.positions):
            self._publish_position(pid)
        self.publish_connection()

    async def refresh_account(self) -> None:
        try:
            bal = await self.exchange.fetch_balance()
        except ExchangeError as exc:
            log.warning("balance unavailable: %s", exc)
            return
        upnl = sum(money.position_pnl(p, self._last[p.symbol].price)
                   for p in self.positions.values() if p.symbol in self._last)
        equity = bal.total + upnl
        now = self.clock()
        self.outbox.publish(AccountEvent(equity, bal.total, bal.currency, now))
        self.store.record_equity(now, equity, bal.total)

    async def periodic(self) -> None:
        """Housekeeping the manager thread runs every few seconds."""
        await self._refresh_stale_prices()
        await self._resolve_pending()
        self.publish_all()
        for pid in list(self._protect_dirty):
            async with self._lock(pid):
                await self._sync_protection(pid)
        for pid in list(self.positions):
            self._maybe_persist(pid)

    async def _resolve_pending(self, min_age: float = 2.0) -> None:
        """Look up, by client id, orders whose create got no answer (OrderStatusUnknown).

        Without this a pending protective order would only be resolved by the next full
        reconciliation (a minute later), and while it is pending it is neither trusted as
        protection nor re-sent. Orders whose create call is still in flight are left alone.
        """
        now = self.clock()
        for order in [o for o in self.orders.values() if o.status is OrderStatus.PENDING
                      and o.client_id not in self._creating and now - o.created_at >= min_age]:
            try:
                found = await self.exchange.fetch_order_by_client_id(order.client_id,
                                                                      order.symbol)
            except ExchangeError as exc:
                log.info("pending order %s still unresolved: %s", order.client_id, exc)
                continue
            if order.client_id not in self.orders:
                continue  # resolved meanwhile (the order stream)
            if found is None:
                dead = replace(order, status=OrderStatus.REJECTED,
                               error="never reached the exchange", updated_at=self.clock())
                self.store.save_order(dead)
                self.orders.pop(order.client_id, None)
                self.outbox.publish(OrderSnapshot(dead))
                self._log_reconcile(f"order {order.client_id} never reached the exchange")
                if order.position_id:
                    self._protect_dirty.add(order.position_id)
                    self._protect_last.pop(order.position_id, None)
            else:
                await self._apply_order(found, (), synthesize=True)
            if order.position_id:
                self._protect_failing.pop((order.position_id, order.role), None)
                self._protect_dirty.add(order.position_id)

    async def _refresh_stale_prices(self) -> None:
        """Seed 000 §4: on a gap in the stream, ask REST (3 tries, backoff 0.5·2ⁿ s).

        A price that is still not fresh is never used: rules stay idle for that symbol and
        the trader is told once per gap (the table shows the staleness meanwhile).
        """
        by_symbol: dict[str, Params] = {}
        for pos in self.positions.values():
            by_symbol.setdefault(pos.symbol, self.params(pos))
        for symbol, params in by_symbol.items():
            max_age = params.f("price.max_age")
            last = self._last.get(symbol)
            if last is not None and self.clock() - last.ts <= max_age:
                self._stale_reported.discard(symbol)
                continue
            tries = params.i("price.rest_retries") if "price.rest_retries" in params else 3
            backoff = params.f("price.rest_backoff") if "price.rest_backoff" in params else 0.5
            for attempt in range(tries):
                try:
                    tick = await self.exchange.fetch_price(symbol)
                except ExchangeError:
                    tick = None
                if tick is not None and money.valid_price(tick.price) \
                        and self.clock() - tick.ts <= max_age:
                    await self.on_tick(tick)
                    self._stale_reported.discard(symbol)
                    break
                if attempt + 1 < tries:
                    await asyncio.sleep(backoff * 2 ** attempt)
            else:
                if symbol not in self._stale_reported:
                    self._stale_reported.add(symbol)
                    self.outbox.publish(ErrorEvent(
                        f"{symbol}: no fresh price (stream and REST); rules are paused for it "
                        "until prices return", self.clock()))

    # ------------------------------------------------------------------ reconciliation

    async def reconcile(self, startup: bool = False) -> list[str]:
        """Bring the store in line with the exchange; every fix is logged as `reconcile`.

        1. Journaled orders the exchange never acknowledged are looked up by client id.
        2. Orders we believe open are refreshed (fills that happened while we were away).
        3. Positions are compared: adopt unknown ones, close vanished ones, fix quantities.
        4. Orphaned protective orders of ours are cancelled; missing ones re-created.
        """
        notes: list[str] = []
        for order in list(self.store.pending_orders()) + [
                o for o in self.orders.values() if o.status is OrderStatus.OPEN]:
            if order.client_id in self._creating:
                continue  # its create call is still waiting for the answer: not ours to judge
            try:
                found = await self.exchange.fetch_order_by_client_id(order.client_id, order.symbol)
            except ExchangeError as exc:
                notes.append(f"could not check order {order.client_id}: {exc}")
                continue
            if found is None:
                if order.status is OrderStatus.PENDING:
                    dead = replace(order, status=OrderStatus.REJECTED,
                                   error="never reached the exchange", updated_at=self.clock())
                    self.store.save_order(dead)
                    self.orders.pop(order.client_id, None)
                    notes.append(f"order {order.client_id} never reached the exchange")
                elif order.status is OrderStatus.OPEN:
                    gone = replace(order, status=OrderStatus.CANCELED, updated_at=self.clock())
                    self.store.save_order(gone)
                    self.orders.pop(order.client_id, None)
                    notes.append(f"order {order.client_id} no longer on the exchange")
                    if gone.role in (OrderRole.STOP_LOSS, OrderRole.TAKE_PROFIT):
                        self._protective_order_lost(gone, "missing")
                continue
            self.orders.setdefault(order.client_id, order)
            await self._apply_order(found, (), synthesize=True)
        mark = self._changes
        try:
            remote = await self.exchange.fetch_positions()
        except ExchangeError as exc:
            notes.append(f"positions unavailable: {exc}")
            remote = None
        if remote is not None:
            position_notes = await self._reconcile_positions(remote, mark)
        else:
            position_notes = []
        try:
            open_remote = await self.exchange.fetch_open_orders()
        except ExchangeError:
            open_remote = []
        for o in open_remote:
            if not is_ours(o.client_id):
                continue
            known = self.orders.get(o.client_id) or self.store.order(o.client_id)
            owner = self.positions.get(known.position_id or "") if known else None
            if o.reduce_only and (owner is None or not owner.is_open):
                try:
                    await self.exchange.cancel_order(o)
                    notes.append(f"cancelled orphaned {o.type.value} order {o.client_id}")
                    if known:
                        self.store.save_order(replace(known, status=OrderStatus.CANCELED))
                        self.orders.pop(o.client_id, None)
                except ExchangeError as exc:
                    notes.append(f"orphaned order {o.client_id} not cancelled: {exc}")
        for note in notes:
            self._log_reconcile(note)
        notes += position_notes
        if not startup:  # (start() protects every position itself once reconciled)
            for pid in list(self.positions):
                # under the position's lock: a tick handler may be moving this very stop,
                # and two syncs at once would both place an order
                async with self._lock(pid):
                    await self._sync_protection(pid, force=True)
        return notes

    async def _reconcile_positions(self, remote: list[ExchangePosition],
                                   mark: int | None = None) -> list[str]:
        """Notes returned here are journaled already (on their position).

        `remote` is a snapshot requested when the change counter stood at `mark`: a
        position filled, opened or closed since then, or with an order in flight (its lock
        held), or an entry still waiting for its answer, is left to the next pass instead
        of being "fixed" against an outdated picture (a second, adopted copy of a position
        being opened; a close of ours taken for one made outside pmgui).
        """
        notes: list[str] = []
        by_key = {(r.symbol, r.side): r for r in remote if r.qty > 0}

        def busy(key: tuple[str, Side]) -> bool:
            return key in self._opening or (
                mark is not None and self._touched.get(key, 0) > mark)

        for pos in list(self.positions.values()):
            key = (pos.symbol, pos.side)
            r = by_key.pop(key, None)
            if busy(key) or self._lock(pos.id).locked() or not pos.is_open:
                continue
            if r is None:
                price = self._last[pos.symbol].price if pos.symbol in self._last else pos.entry
                closed = pos.evolve(status=PositionStatus.CLOSED, qty=0.0, closed_at=self.clock(),
                                    exit_price=price, exit_reason=Reason.RECONCILE.value)
                self._set(closed)
                note = f"{pos.symbol} {pos.side.value} was closed outside pmgui"
                self._journal_reconcile(ActionType.CLOSE, pos, note, price, pos.qty)
                notes.append(note)
                await self._finish_close(closed)
                continue
            market = self._market(pos.symbol)
            if abs(r.qty - pos.qty) > market.amount_step / 2:
                note = (f"{pos.symbol} {pos.side.value} quantity {pos.qty:g} → {r.qty:g} "
                        "(changed outside pmgui)")
                if r.qty < pos.qty:  # the tranches shrink with it, oldest first
                    tranches = reduce_tranches(pos.tranches, pos.qty - r.qty)
                else:
                    tranches = (*pos.tranches, Tranche(
                        f"reconcile-{int(self.clock() * 1000):x}", r.qty - pos.qty,
                        r.entry or pos.entry, self.clock(), pos.sl, pos.tp, "adopted"))
                self._journal_reconcile(
                    ActionType.REDUCE if r.qty < pos.qty else ActionType.ADD, pos, note,
                    self._price(pos.symbol) or pos.entry, abs(pos.qty - r.qty))
                notes.append(note)
                self._set(pos.evolve(qty=r.qty, entry=r.entry or pos.entry, tranches=tranches))
                # the protective orders are re-sized by the sync that follows reconciliation
                self._protect_dirty.add(pos.id)
            if r.liquidation and r.liquidation != pos.liquidation:
                self._set(self.positions[pos.id].evolve(liquidation=r.liquidation))
        for r in by_key.values():
            if busy((r.symbol, r.side)):
                continue
            pos = self._adopt(r)  # journals its own OPEN action
            log.info("reconcile: adopted %s %s %g @ %g (preset %s)", r.symbol, r.side.value,
                     r.qty, r.entry, pos.preset)
        return notes

    def _journal_reconcile(self, kind: ActionType, pos: Position, note: str, price: float,
                           qty: float) -> None:
        """A discrepancy with the exchange that changed a position: journaled on that
        position (the history shows why its quantity changed or why it closed)."""
        log.warning("reconcile: %s", note)
        action = Action(kind, Reason.RECONCILE, pos.id, price, qty=qty, rule="reconcile",
                        ts=self.clock(), inputs=frozen_map({"note": note}))
        self.store.record_action(action, symbol=pos.symbol)
        self.outbox.publish(ActionTaken(action, pos.symbol, True, note))

    async def adopt(self, r: ExchangePosition, *, sl: float | None = None,
                    tp: float | None = None, preset: str | None = None,
                    overrides: Mapping[str, Scalar] | None = None,
                    entry_fee: float | None = None) -> Position:
        """Take over a position that exists on the exchange (replay start, manual adoption).

        `entry_fee` is the fee rate the entry paid; it is booked so realized P/L is net.
        """
        price = self._price(r.symbol) or r.entry
        validate_targets(r.side, price, sl, tp)
        if preset is not None or overrides:
            resolve_params(preset or self.settings.preset_for(r.symbol), dict(overrides or {}))
        pos = self._adopt(r, sl=sl, tp=tp, preset=preset, overrides=overrides,
                          reason=Reason.MANUAL, fee_rate=entry_fee)
        if entry_fee:
            fee = r.qty * r.entry * pos.contract_size * entry_fee
            pos = pos.evolve(fees_paid=fee, realized_pnl=-fee)
            self._set(pos)
        async with self._lock(pos.id):
            await self._sync_protection(pos.id, force=True)
        self._publish_position(pos.id)
        return self.positions.get(pos.id, pos)

    def _adopt(self, r: ExchangePosition, *, sl: float | None = None, tp: float | None = None,
               preset: str | None = None, overrides: Mapping[str, Scalar] | None = None,
               reason: Reason = Reason.RECONCILE, fee_rate: float | None = None) -> Position:
        now = self.clock()
        preset = preset or self.settings.preset_for(r.symbol)
        pos = Position(
            fee_rate=0.0005 if fee_rate is None else fee_rate,
            overrides=frozen_map(overrides or {}),
            id=new_position_id(r.symbol, r.side.value, now), symbol=r.symbol, side=r.side,
            qty=r.qty, entry=r.entry, leverage=r.leverage or 1.0,
            opened_at=r.opened_at or now, initial_qty=r.qty, sl=sl, tp=tp, initial_sl=sl,
            liquidation=r.liquidation, preset=preset, exchange=self.exchange.id,
            contract_size=self._market(r.symbol).contract_size,
            tranches=(Tranche("adopted", r.qty, r.entry, r.opened_at or now, sl, tp, "adopted"),),
        )
        if pos.liquidation is None and self.exchange.id == "paper":
            pos = pos.evolve(liquidation=money.liquidation_price(
                pos.side, pos.entry, pos.leverage, self._market(pos.symbol).mmr))
        pos = self._with_default_targets(pos)
        pos = pos.evolve(tranches=tuple(
            replace(t, sl=pos.sl if t.sl is None else t.sl, tp=pos.tp if t.tp is None else t.tp)
            for t in pos.tranches))
        self._set(pos)
        action = Action(ActionType.OPEN, reason, pos.id, r.entry, qty=r.qty, sl=pos.sl, tp=pos.tp,
                        rule="reconcile" if reason is Reason.RECONCILE else "manual", ts=now)
        self.store.record_action(action, symbol=pos.symbol)
        self.outbox.publish(ActionTaken(action, pos.symbol, True, "adopted"))
        return pos

    def _with_default_targets(self, pos: Position) -> Position:
        """Presets that set levels (monitor) give SL/TP to positions arriving without them."""
        if pos.sl is not None and pos.tp is not None:
            return pos
        sl, tp = initial_targets(pos.side, pos.entry, self.params(pos), self._market(pos.symbol))
        return pos.evolve(sl=pos.sl if pos.sl is not None else sl,
                          tp=pos.tp if pos.tp is not None else tp,
                          initial_sl=pos.initial_sl if pos.initial_sl is not None
                          else (pos.sl if pos.sl is not None else sl))

    def _log_reconcile(self, note: str) -> None:
        log.info("reconcile: %s", note)
        action = Action(ActionType.CLOSE if "closed outside" in note else ActionType.MOVE_SL,
                        Reason.RECONCILE, "", 0.0, rule="reconcile", ts=self.clock(),
                        inputs=frozen_map({"note": note}))
        self.store.record_action(action, symbol="")
        self.outbox.publish(ActionTaken(action, "", True, note))

    # ------------------------------------------------------------------ commands

    async def handle(self, command: cmd.Command) -> cmd.CommandResult:
        """Run one command; raises PmguiError subclasses with a readable message."""
        if isinstance(command, cmd.SetTargets):
            return await self._set_targets(command)
        if isinstance(command, cmd.ClosePosition):
            return await self._close_command(command)
        if isinstance(command, cmd.CloseAll):
            return await self._close_all(command)
        if isinstance(command, cmd.SetAutomation):
            return self._set_automation(command)
        if isinstance(command, cmd.SetPreset):
            return self._set_preset(command)
        if isinstance(command, cmd.OpenPosition):
            return await self._open(command)
        if isinstance(command, cmd.SetSymbolRules):
            return self._set_symbol_rules(command)
        raise ValidationError(f"unknown command {type(command).__name__}")

    def _get(self, pid: str) -> Position:
        pos = self.positions.get(pid)
        if pos is None or not pos.is_open:
            raise PositionNotFound(f"position {pid} is not open")
        return pos

    def _price(self, symbol: str) -> float | None:
        t = self._last.get(symbol)
        return t.price if t else None

    async def _set_targets(self, c: cmd.SetTargets) -> cmd.CommandResult:
        pos = self._get(c.position_id)
        market = self._market(pos.symbol)
        sl = pos.sl if c.sl == cmd.KEEP else (None if c.sl is None else market.round_price(
            _number(c.sl, "SL")))
        tp = pos.tp if c.tp == cmd.KEEP else (None if c.tp is None else market.round_price(
            _number(c.tp, "TP")))
        price = self._price(pos.symbol)
        if price is None:
            raise ValidationError(f"no current price for {pos.symbol}; try again in a moment")
        validate_targets(pos.side, price, sl if c.sl != cmd.KEEP else None,
                         tp if c.tp != cmd.KEEP else None, pos.liquidation)
        async with self._lock(pos.id):
            pos = self._get(c.position_id)
            now = self.clock()
            new = pos.evolve(sl=sl, tp=tp, tranches=tuple(
                replace(t, sl=sl if sl != pos.sl else t.sl, tp=tp if tp != pos.tp else t.tp)
                for t in pos.tranches))
            if sl != pos.sl:
                new = new.evolve(sl_kind=StopKind.MANUAL,
                                 initial_sl=pos.initial_sl if pos.initial_sl is not None else sl)
                a = Action(ActionType.MOVE_SL, Reason.MANUAL, pos.id, price, sl=sl, tp=tp,
                           rule="manual", ts=now, stop_kind=StopKind.MANUAL,
                           inputs=frozen_map({"old_sl": pos.sl, "new_sl": sl}))
                self.store.record_action(a, symbol=pos.symbol)
                self.outbox.publish(ActionTaken(a, pos.symbol))
            if tp != pos.tp:
                a = Action(ActionType.MOVE_TP, Reason.MANUAL, pos.id, price, sl=sl, tp=tp,
                           rule="manual", ts=now, inputs=frozen_map({"old_tp": pos.tp,
                                                                      "new_tp": tp}))
                self.store.record_action(a, symbol=pos.symbol)
                self.outbox.publish(ActionTaken(a, pos.symbol))
            self._set(new)
            await self._sync_protection(pos.id, force=True)
        self._publish_position(pos.id)
        cur = self.positions.get(pos.id, new)
        return cmd.CommandResult(True, f"{pos.symbol}: SL {_fmt(cur.sl)} · TP {_fmt(cur.tp)}",
                                 pos.id)

    async def _close_command(self, c: cmd.ClosePosition) -> cmd.CommandResult:
        if not 0 < c.fraction <= 1:
            raise ValidationError(f"close fraction must be in (0, 1], got {c.fraction:g}")
        inflight = self._closing.get(c.position_id)
        if inflight is not None and c.fraction >= 1:
            return await asyncio.shield(inflight)  # idempotent: one close per position
        pos = self._get(c.position_id)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        if c.fraction >= 1:
            self._closing[pos.id] = fut
        try:
            async with self._lock(pos.id):
                pos = self._get(c.position_id)
                price = self._price(pos.symbol) or pos.entry
                qty = pos.qty if c.fraction >= 1 else pos.qty * c.fraction
                action = Action(ActionType.CLOSE if c.fraction >= 1 else ActionType.REDUCE,
                                Reason(c.reason) if c.reason in Reason._value2member_map_
                                else Reason.MANUAL, pos.id, price, qty=qty, rule="manual",
                                ts=self.clock())
                self.store.record_action(action, symbol=pos.symbol)
                order = await self._reduce(pos, qty, action.reason)
                self.outbox.publish(ActionTaken(action, pos.symbol))
            result = cmd.CommandResult(
                True, f"{pos.symbol}: closed {order.filled if order else 0:g} @ "
                      f"{_fmt(order.average if order else None)}", pos.id,
                fills=tuple(self.store.fills(pos.id)))
            if not fut.done():
                fut.set_result(result)
            return result
        except BaseException as exc:
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # mark retrieved
            raise
        finally:
            self._closing.pop(pos.id, None)

    async def _close_all(self, c: cmd.CloseAll) -> cmd.CommandResult:
        errors: list[str] = []
        for order in [o for o in self.orders.values() if o.status is OrderStatus.OPEN]:
            try:
                await self._cancel(order)
            except ExchangeError as exc:
                errors.append(f"cancel {order.symbol}: {exc}")
        closed = 0
        for pid in list(self.positions):
            try:
                await self._close_command(cmd.ClosePosition(pid, 1.0, c.reason))
                closed += 1
            except PmguiError as exc:
                errors.append(f"{pid}: {exc}")
        residual: list[str] = []
        try:
            for r in await self.exchange.fetch_positions():
                if r.qty > 0:
                    residual.append(f"{r.symbol} {r.side.value} {r.qty:g}")
        except ExchangeError as exc:
            errors.append(f"re-check failed: {exc}")
        msg = f"closed {closed} position(s)"
        if residual:
            msg += "; STILL OPEN: " + ", ".join(residual)
            self.outbox.publish(ErrorEvent("Flatten left positions open: " + ", ".join(residual),
                                           self.clock()))
        if errors:
            msg += "; errors: " + "; ".join(errors)
        return cmd.CommandResult(not residual and not errors, msg, residual=tuple(residual))

    def _set_automation(self, c: cmd.SetAutomation) -> cmd.CommandResult:
        targets = [self._get(c.position_id)] if c.position_id else list(self.positions.values())
        for pos in targets:
            self._set(pos.evolve(automation=c.enabled))
            self._publish_position(pos.id)
        state = "on" if c.enabled else "paused"
        return cmd.CommandResult(True, f"automation {state} for {len(targets)} position(s)")

    def _set_preset(self, c: cmd.SetPreset) -> cmd.CommandResult:
        pos = self._get(c.position_id)
        overrides = self.settings.overrides_for(pos.symbol)
        overrides.update(c.overrides)
        resolve_params(c.preset, overrides)  # validates; raises ValidationError
        self._params.pop(pos.id, None)
        self._set(pos.evolve(preset=c.preset, overrides=frozen_map(c.overrides)))
        self._publish_position(pos.id)
        return cmd.CommandResult(True, f"{pos.symbol}: preset {c.preset}", pos.id)

    def _set_symbol_rules(self, c: cmd.SetSymbolRules) -> cmd.CommandResult:
        if not c.symbol:
            raise ValidationError("symbol must not be empty")
        merged = dict(self.settings.overrides)
        merged.update(c.overrides)
        resolve_params(c.preset or self.settings.default_preset, merged)  # validates
        stored = dict(self.store.get_setting("symbol_rules", {}) or {})
        if c.preset is None and not c.overrides:
            stored.pop(c.symbol, None)
        else:
            stored[c.symbol] = {"preset": c.preset, "overrides": dict(c.overrides)}
        self.store.set_setting("symbol_rules", stored)
        self._apply_symbol_rules(stored)
        return cmd.CommandResult(True, f"{c.symbol}: new positions use preset "
                                       f"{self.settings.preset_for(c.symbol)}")

    def _apply_symbol_rules(self, stored: Mapping[str, Mapping[str, object]]) -> None:
        """Rules chosen in the app win over the config file's, symbol by symbol."""
        symbols = dict(self.settings.symbols)
        for symbol, spec in stored.items():
            symbols[symbol] = SymbolRules(spec.get("preset"),  # type: ignore[arg-type]
                                          frozen_map(spec.get("overrides") or {}))
        self.settings = replace(self.settings, symbols=MappingProxyType(symbols))

    def symbol_rules(self) -> dict[str, tuple[str, dict[str, Scalar]]]:
        """Effective preset and overrides per configured symbol (for the settings dialog)."""
        return {sym: (self.settings.preset_for(sym), self.settings.overrides_for(sym))
                for sym in sorted(set(self.settings.symbols) | set(self._markets))}

    async def _open(self, c: cmd.OpenPosition) -> cmd.CommandResult:
        market = self._markets.get(c.symbol)
        if market is None:
            raise ValidationError(f"unknown symbol {c.symbol}")
        price = self._price(c.symbol)
        if price is None:
            tick = await self.exchange.fetch_price(c.symbol)
            if tick is None:
                raise ValidationError(f"no price for {c.symbol} yet")
            self._last[c.symbol] = tick
            price = tick.price
        validate_new_position(c.symbol, c.side, c.qty, c.leverage, self.positions.values(),
                              market, price)
        preset = c.preset or self.settings.preset_for(c.symbol)
        overrides = self.settings.overrides_for(c.symbol)
        overrides.update(c.overrides)
        resolve_params(preset, overrides)
        validate_targets(c.side, price, c.sl, c.tp,
                         money.liquidation_price(c.side, price, c.leverage, market.mmr))
        qty = market.floor_amount(c.qty)
        await self.exchange.set_leverage(c.symbol, c.leverage)
        self.exchange.subscribe([c.symbol])
        now = self.clock()
        pid = new_position_id(c.symbol, c.side.value, now)
        req = OrderRequest(new_client_id(), c.symbol, c.side.open_side, OrderType.MARKET, qty,
                           position_id=None, role=OrderRole.ENTRY, reason="open")
        order = self.store.journal_order(req, now)
        self._creating.add(req.client_id)
        self._opening.add((c.symbol, c.side))
        try:
            result = await self.exchange.create_order(req)
        except OrderStatusUnknown:
            raise  # stays pending: reconciliation adopts the position if it was opened
        except ExchangeError as exc:
            self.store.save_order(replace(order, status=OrderStatus.REJECTED, error=str(exc)))
            raise
        finally:
            self._creating.discard(req.client_id)
            self._opening.discard((c.symbol, c.side))
            self._touch(c.symbol, c.side)
        if result.filled <= 0 or result.average is None:
            self.store.save_order(result)
            raise ExchangeError(f"{c.symbol}: entry order not filled ({result.status.value})")
        pos = Position(
            id=pid, symbol=c.symbol, side=c.side, qty=result.filled, entry=result.average,
            leverage=c.leverage, opened_at=now, initial_qty=result.filled,
            sl=None if c.sl is None else market.round_price(c.sl),
            tp=None if c.tp is None else market.round_price(c.tp),
            initial_sl=None if c.sl is None else market.round_price(c.sl),
            preset=preset, overrides=frozen_map(c.overrides), exchange=self.exchange.id,
            contract_size=market.contract_size, best_price=result.average,
            liquidation=money.liquidation_price(c.side, result.average, c.leverage, market.mmr)
            if self.exchange.id == "paper" else None,
            tranches=(Tranche(req.client_id, result.filled, result.average, now,
                              c.sl, c.tp, "entry"),),
        )
        fee = result.filled * result.average * market.contract_size * pos.fee_rate
        pos = pos.evolve(fees_paid=fee, realized_pnl=-fee)
        pos = self._with_default_targets(pos)
        with self.store.transaction():
            self._set(pos)
            self.store.save_order(replace(result, position_id=pid, role=OrderRole.ENTRY,
                                          reason="open"))
            self.store.link_order(pid, req.client_id, OrderRole.ENTRY)
            action = Action(ActionType.OPEN, Reason.MANUAL, pid, result.average,
                            qty=result.filled, sl=pos.sl, tp=pos.tp, rule="manual", ts=now)
            self.store.record_action(action, symbol=c.symbol)
        self.outbox.publish(ActionTaken(action, c.symbol))
        async with self._lock(pid):  # ticks may already be evaluating the new position
            await self._sync_protection(pid, force=True)
        self._publish_position(pid)
        return cmd.CommandResult(True, f"opened {c.side.value} {result.filled:g} {c.symbol} @ "
                                 f"{result.average:g}", pid)


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"{name} must be a number")
    return float(value)


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:g}"


def _delta_price(known: Order, new: Order, delta: float, fills: tuple[Fill, ...]) -> float | None:
    if delta <= EPS:
        return None
    if fills:
        q = sum(f.qty for f in fills)
        if q > 0:
            return sum(f.qty * f.price for f in fills) / q
    if new.average is not None and known.average is not None and known.filled > 0:
        p = (new.average * new.filled - known.average * known.filled) / delta
        if money.valid_price(p):
            return p
    if new.average is not None:
        return new.average
    return new.price or new.trigger_price
