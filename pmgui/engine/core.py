"""The engine core: feed → price validation → policy → orders → fills → state → store → events.

`EngineCore` is loop-agnostic: the manager thread (`pmgui.engine.thread`) runs it on its own
asyncio loop for the GUI and `--headless`, and `pmgui replay` runs the very same object over
the paper exchange in simulated time. It is the only writer of trading state.

It keeps the tick → policy → execute loop, order placement, fill booking and the position
lifecycle, and dispatches commands; the parts it is made of each own one thing:

* `runtime.PositionBook` / `PositionRuntime`: one object per position (position, lock,
  params, protection state, pending orders, last save), indexed by symbol;
* `ledger.OrderLedger`: the order journal, the order state machine and fill-delta
  accounting (the same fill arriving twice is applied once);
* `protection.Protector`: the exchange's SL/TP orders mirror the local levels;
* `reconcile.Reconciler`: journal and state brought in line with the exchange;
* `marketdata.MarketData`: prices, candles per symbol and timeframe, indicators;
* `manual.ManualCommands`: the trader's commands, through the same paths as the rules.

Over ~400 lines because placing an order, booking its fills on the position and closing the
position are one path that every caller (rules, commands, protection, reconciliation)
shares; cutting it apart would spread one order's life over several modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from types import MappingProxyType

from pmgui.aio import wait_event
from pmgui.collection import collection_deferred
from pmgui.domain import money
from pmgui.domain.enums import (
    ActionType,
    OrderRole,
    OrderStatus,
    OrderType,
    PositionStatus,
    Protection,
    Reason,
    StopKind,
)
from pmgui.domain.errors import (
    ExchangeError,
    PmguiError,
    RetryableExchangeError,
    ValidationError,
)
from pmgui.domain.levels import rule_level_move
from pmgui.domain.models import (
    Action,
    Candle,
    Fill,
    MarketState,
    Order,
    OrderRequest,
    Position,
    Scalar,
    Tick,
    Tranche,
    frozen_map,
)
from pmgui.domain.numbers import plain_price, plain_qty
from pmgui.domain.slots import slot_constructor, slot_copier
from pmgui.domain.validation import validate_targets
from pmgui.engine import commands as cmd
from pmgui.engine import indicator_line, queries
from pmgui.engine.entries import RestingEntries
from pmgui.engine.events import (
    AccountEvent,
    ActionTaken,
    ConnectionEvent,
    ErrorEvent,
    PositionRemoved,
    PositionSnapshot,
)
from pmgui.engine.funding import FundingSync
from pmgui.engine.ids import is_ours, new_client_id
from pmgui.engine.ledger import EPS, Applied, Correction, OrderLedger, corrected
from pmgui.engine.loop import TurnShare, let_due_work_first
from pmgui.engine.manual import ManualCommands
from pmgui.engine.marketdata import MarketData
from pmgui.engine.outbox import Outbox
from pmgui.engine.protection import PROTECTIVE, Protector, tranche_ids
from pmgui.engine.reconcile import Reconciler
from pmgui.engine.runtime import PositionBook, PositionRuntime
from pmgui.engine.settings import EngineSettings, SymbolRules
from pmgui.exchange.base import ConnectionState, Exchange, ExchangePosition, OrderUpdate
from pmgui.exchange.demo import DemoPosition
from pmgui.exchange.retry import OrderStatusUnknown
from pmgui.indicators import IndicatorSpec
from pmgui.rules.common import ADD_ON_OPEN_PREFIX, TRANCHE_CLOSED_PREFIX, add_on_open_since
from pmgui.rules.params import Params, resolve_params
from pmgui.rules.policy import (
    evaluate,
    evaluate_trend,
    indicator_frames,
    indicator_spec,
    initial_targets,
    observe,
    price_is_usable,
    scale_out,
)
from pmgui.rules.tranches import reduce_tranches, tranche_levels
from pmgui.store.db import Store

log = logging.getLogger("pmgui.engine")


class _Step(Enum):
    """What a position's tick still needs after `EngineCore._screen_tick`."""

    DONE = 0
    SYNC = 1  # a quiet tick whose protection sync is due
    EVALUATE = 2


_DONE, _SYNC, _EVALUATE = _Step.DONE, _Step.SYNC, _Step.EVALUATE
_OPEN = PositionStatus.OPEN  # `Position.is_open` without the property call
# a rule's actions that place an order (journaled and synced before it is sent)
_ORDERING = frozenset((ActionType.CLOSE, ActionType.REDUCE, ActionType.ADD))

HOUSEKEEPING_SLICE = 64  # positions per slice of a housekeeping pass (`periodic`)
ACCOUNT_INTERVAL = 1.0  # s: closes refresh the account at most this often
ACCOUNT_SLICE = 256  # positions summed per step of an account refresh (`_open_pnl`)
STARTUP_WARM_WAIT = 5.0  # s: start-up waits this long at most for the book's warm-ups

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
                 demo: Iterable[DemoPosition] = (),
                 client_ids: Callable[[], str] = new_client_id) -> None:
        self.exchange = exchange
        self.store = store
        self.outbox = outbox
        self.settings = settings or EngineSettings()
        self.clock = clock or time.time
        self.new_client_id = client_ids  # every order's client id comes from here
        self._demo = tuple(demo)
        self._demo_pending: dict[str, DemoPosition] = {}
        self.book = PositionBook()
        self._params_cache: dict[tuple, Params] = {}
        # what the tick path derives from a Params object (it is immutable): by its id
        self._rule_info: dict[int, tuple[Params, _RuleInfo]] = {}
        # while held (`hold_marks`), the tick path's position snapshots are published once
        # per position at `release_marks` (coalesced), not on every tick
        self._marks: dict[str, PositionRuntime] | None = None
        self.quiet_ticks = 0  # position ticks inside their quiet band (rules skipped)
        self._account_at = float("-inf")  # engine time of the last account refresh
        self._account_due = False  # a close since then has not been reflected
        self._account_task: asyncio.Task[None] | None = None  # a close's refresh, beside
        now = lambda: self.clock()  # noqa: E731 (callers may swap the engine's clock)
        self.ledger = OrderLedger(store, outbox, now)
        self.ledger.rebook = self._rebook_open  # a reference booking's correction
        # the venue's word on which fill records carry an estimated fee (the ccxt adapter's;
        # the ledger keeps that with the record so a restart still corrects it), and when
        # one needs no correction after all
        self.ledger.fee_estimated = getattr(exchange, "fee_estimated", None)
        if self.ledger.fee_estimated is not None:
            exchange.on_fee_settled = self.ledger.fee_settled  # type: ignore[attr-defined]
        self.market = MarketData(outbox, self.settings, now)
        self.protector = Protector(self)
        self.reconciler = Reconciler(self)
        self.commands = ManualCommands(self)
        self.entries = RestingEntries(self)
        self.funding = FundingSync(self)
        self._connection = ConnectionState(False, False, "connecting")
        self._orders_up = asyncio.Event()
        self.stream_task: asyncio.Task[None] | None = None
        self.started = False  # rules act only once the start-up reconciliation is done
        self._warming: set[asyncio.Task[None]] = set()  # positions' warm-ups under way

    # read-only views for callers outside the engine (UI queries, tests, replay)
    @property
    def positions(self) -> Mapping[str, Position]:
        return self.book

    @property
    def orders(self) -> Mapping[str, Order]:
        return MappingProxyType(self.ledger.live)

    @property
    def _last(self) -> dict[str, Tick]:
        return self.market.last

    # ------------------------------------------------------------------ lifecycle

    async def start(self, stream: bool = False, stream_wait: float = 10.0) -> None:
        """Connect, restore from the store, reconcile with the exchange, protect; rules act
        only after that (DESIGN §2 start-up order).

        With `stream`, the venue's streams (`exchange.run`) are started here, before the
        snapshot: the order/user stream is up first (waited for up to `stream_wait` s), so
        a fill after the snapshot arrives through it instead of falling into a blind spot.
        The task is `stream_task`; `shutdown()` stops it.
        """
        await self.exchange.connect()
        self.store.checkpoint_in_background()  # no WAL checkpoint stalls the loop
        recall = getattr(self.exchange, "recall_orders", None)
        if recall is not None:  # orders only the journal can name (Bybit position TP/SL)
            recall(self.store.open_orders())
        self.market.markets = dict(self.exchange.markets())
        stored_rules = self.store.get_setting("symbol_rules", {}) or {}
        if stored_rules:
            self.apply_symbol_rules(stored_rules)
        for pos in self.store.load_open_positions():
            self.set_position(pos, persist=False)
        self.ledger.load()
        symbols = sorted(self.book.symbols() | {d.symbol for d in self._demo})
        if symbols:
            self.exchange.subscribe(symbols)
        if stream:
            self.stream_task = asyncio.create_task(self.exchange.run(self),
                                                   name="exchange-stream")
            await self._wait_for_order_stream(stream_wait)
        elif (attach := getattr(self.exchange, "attach", None)) is not None:
            # no stream: what lookups find (a fill with the venue's price and fee) is still
            # delivered here, ahead of the order they return (else its fee is estimated)
            attach(self)
        await self.reconciler.reconcile(startup=True)
        symbols = sorted(self.book.symbols() | {d.symbol for d in self._demo})
        if symbols:
            self.exchange.subscribe(symbols)
        for symbol in symbols:
            await self.market.load_history(self.exchange, symbol)
        if self._demo and not self.store.get_setting("demo_opened", False):
            # Opened on each symbol's first live price (the venue may have none yet).
            self._demo_pending = {d.symbol: d for d in self._demo}
        for rt in self.book.runtimes():
            await self.protector.sync(rt, force=True)
            self.publish_position(rt)
        self.entries.prune()
        self.entries.publish()
        await self.refresh_account()
        self.started = True
        # Protected and acting: now what the rules of the restored (and adopted) positions
        # read, so their symbols' first ticks do not load it — before the manager thread's
        # `gc.freeze` (it runs when `start` returns), which then takes these long-lived
        # candles and indicator sets out of the collector's generations too. All at once
        # (the venue client's rate limiter paces the fetches) and waited for at most
        # `STARTUP_WARM_WAIT`: a large book on a slow or rate-limited venue must not hold
        # the trader's start-up back (nor run into the engine thread's start timeout); what
        # is not in by then goes on in the background, as an open's warm-up does.
        for rt in list(self.book.runtimes()):
            self.schedule_warm_up(rt)
        if self._warming:
            await asyncio.wait(set(self._warming), timeout=STARTUP_WARM_WAIT)

    async def _wait_for_order_stream(self, timeout: float) -> None:
        task = self.stream_task
        assert task is not None
        deadline = asyncio.get_running_loop().time() + timeout
        while not self._connection.orders:
            if task.done():
                task.result()  # the stream failed at once: raise its error
                raise ExchangeError(f"{self.exchange.id}: the exchange stream ended at start")
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                log.warning("%s: the order stream is not up after %.0f s; reconciling anyway "
                            "(orders are polled until it is)", self.exchange.id, timeout)
                return
            self._orders_up.clear()
            await wait_event(self._orders_up, min(left, 0.25))

    async def stop_stream(self) -> None:
        task, self.stream_task = self.stream_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def shutdown(self) -> None:
        """Persist everything that is only in memory; the exchange keeps the orders."""
        await self.stop_stream()
        for task in list(self._warming):
            task.cancel()
        await asyncio.gather(*self._warming, return_exceptions=True)
        await self.protector.settle_background()
        if self._account_task is not None:  # it writes an equity point: before the close
            await asyncio.gather(self._account_task, return_exceptions=True)
        # the whole book in one transaction: one synced commit, not one per position
        self.store.save_positions(self.book.values())
        try:
            await self.exchange.close()
        finally:
            self.store.close()

    async def _open_demo(self, spec: DemoPosition, tick: Tick) -> None:
        """First start in paper mode: open one demo position at the current price."""
        del self._demo_pending[spec.symbol]
        if not self._demo_pending:
            self.store.set_setting("demo_opened", True)
        if self.book.find(spec.symbol, spec.side) is None:
            sl, tp = spec.targets(tick.price, self.market.markets.get(spec.symbol))
            try:
                await self.handle(cmd.OpenPosition(spec.symbol, spec.side, spec.qty, spec.leverage,
                                                   sl=sl, tp=tp))
            except PmguiError as exc:
                log.warning("demo position %s not opened: %s", spec.symbol, exc)

    # ------------------------------------------------------------------ sink

    async def on_connection(self, state: ConnectionState) -> None:
        self._connection = state
        if state.orders:
            self._orders_up.set()
        self.publish_connection()

    def publish_connection(self) -> None:
        c = self._connection
        self.outbox.publish(ConnectionEvent(self.exchange.id, c.market_data, c.orders,
                                            self.market.tick_age(), c.detail, c.clock_offset,
                                            c.streams, c.rate_limit_headroom))

    async def on_tick(self, tick: Tick) -> None:
        if not self.market.on_tick(tick):
            return
        if tick.symbol in self._demo_pending:
            await self._open_demo(self._demo_pending[tick.symbol], tick)
        for rt in self.book.for_symbol(tick.symbol):
            # most of a position's ticks are decided by `_screen_tick` alone, without a
            # coroutine of their own
            step = self._screen_tick(rt, tick)
            if step is not _DONE:
                await self._on_position_tick(rt, tick, step is _SYNC)
        window = self.settings.write_behind
        # a due chunk's log lines are built on this tick, written on a later one (two loop
        # steps, not one: `Store.build_behind`)
        if self.store.behind_due(window) and not self.store.build_behind():
            self.store.flush_behind(window)

    def on_tick_run(self, ticks: Sequence[Tick], low: float, high: float,
                    volumes: Sequence[float] | None) -> bool:
        """Take a run of one symbol's ticks at once — what `on_tick` of each, in order,
        would do — when every one would be a quiet tick of every position of the symbol;
        False, with nothing changed, when not (the venue then delivers them one by one).

        Why: `pmgui replay` delivers every row of a file; inside a position's quiet band a
        tick changes only the last price, the forming candle and the marks, so a candle's
        ticks whose range lies inside every band (`BandGate.quiet_run`) need one pass, not
        one per tick. The ticks: strictly increasing times, float prices from `low` to
        `high` (a recorded file's run, `PaperExchange.run`). Taken only where the outcome
        cannot differ: the engine's clock is the venue's simulated one (each tick would be
        judged at its own time: fresh), marks and prices are published coalesced
        (`hold_marks`: the last state is what is published), no protection sync falls due
        (`Protector.quiet_through`), no save falls due within the run, and every position's
        band holds."""
        first, last = ticks[0], ticks[-1]
        symbol = first.symbol
        if self._marks is None or symbol in self._demo_pending \
                or not self.market.can_take_run(symbol, first, last, low, high):
            return False
        now = self.clock()
        if now != last.ts:
            return False  # not the simulated clock that follows the ticks
        runtimes = self.book.for_symbol(symbol)
        settings = self.settings
        for rt in runtimes:
            pos = rt.position
            if pos.status is not _OPEN or self.book.runtime(pos.id) is not rt:
                continue  # (`_screen_tick`: nothing for it)
            params = rt.params
            info = rt.info
            if params is None or rt.info_params is not params \
                    or not info.max_age >= 0.0 \
                    or rt.band_pos is not pos or rt.band_params is not params \
                    or rt.band_version != self.market.versions.get(symbol, 0) \
                    or rt.band_add_on \
                    or not rt.gate.quiet_run(first.price, first.ts, low, high, last.ts):
                return False
            if rt.lock.locked() or not self.started:
                continue  # (its quiet ticks only publish the mark)
            if not self.protector.quiet_through(rt, now, low):
                return False  # a protection sync may fall due in the run: at its own tick
            if pos is not rt.saved:
                elapsed = now - rt.saved_at
                if elapsed >= settings.save_interval and (
                        elapsed * settings.save_budget >= len(self.book)
                        or settings.save_budget <= 0):
                    return False  # a save falls due in the run: at its own tick
        self.market.take_run(ticks, low, high, volumes)
        n = len(ticks)
        marks = self._marks
        for rt in runtimes:
            pos = rt.position
            if pos.status is not _OPEN or self.book.runtime(pos.id) is not rt:
                continue
            self.quiet_ticks += n
            if not rt.lock.locked() and self.started:
                rt.deferred_since = None
                rt.indicator_due = last
                self.protector.through(rt, now)
            marks[pos.id] = rt
        window = settings.write_behind
        if self.store.behind_due(window) and not self.store.build_behind():
            self.store.flush_behind(window)
        return True

    async def on_candle(self, symbol: str, candle: Candle, closed: bool) -> None:
        self.market.on_candle(symbol, candle, closed)

    async def on_order_update(self, update: OrderUpdate) -> None:
        await self.apply_order(update.order, update.fills)

    def candles(self, symbol: str) -> tuple[Candle, ...]:
        return self.market.candles(symbol)

    # ------------------------------------------------------------------ evaluation

    def params(self, pos: Position) -> Params:
        rt = self.book.runtime(pos.id)
        if rt is not None and rt.params is not None:
            return rt.params
        overrides = self.settings.overrides_for(pos.symbol)
        overrides.update(pos.overrides)
        # Params are immutable: positions with the same preset and overrides share one
        # (≈ 3 KB each; 500 positions need a handful, not 500)
        key = (pos.preset, tuple(sorted(overrides.items())))
        p = self._params_cache.get(key)
        if p is None:
            p = resolve_params(pos.preset, overrides)
            if len(self._params_cache) < 1024:
                self._params_cache[key] = p
        if rt is not None:
            rt.params = p
        return p

    def _params_of(self, rt: PositionRuntime) -> Params:
        """`params(rt.position)` for a runtime of the book (a pass over the whole book: its
        resolved Params at once when it has them)."""
        p = rt.params
        return p if p is not None else self.params(rt.position)

    def rule_info(self, params: Params) -> _RuleInfo:
        """What the tick path reads from `params`, derived once per Params object."""
        hit = self._rule_info.get(id(params))
        if hit is not None and hit[0] is params:
            return hit[1]
        frames = indicator_frames(params)
        info = _RuleInfo(indicator_spec(params), frames, tuple(frames),
                         float(params["price.max_age"]))
        if len(self._rule_info) >= 1024:
            self._rule_info.clear()
        self._rule_info[id(params)] = (params, info)
        return info

    async def warm_up(self, rt: PositionRuntime) -> None:
        """Load what `rt`'s rules read — each rule timeframe's venue history
        (`MarketData.ensure_frames`) and the indicator sets on its candles
        (`MarketData.state`) — now, not on its symbol's first tick: that tick would fetch
        and compute them on the tick path (hundreds of µs to ms each, a symbol at a time
        in a storm), and the objects it makes would be born after start-up's `gc.freeze`.
        The tick path keeps the lazy load as the fallback (a warm-up not finished waits
        for the load under way, one that failed falls back as before). Never raises: a
        failed fetch is logged by the load, anything else here once."""
        pos = rt.position
        if not pos.is_open:
            return
        try:
            info = self.rule_info(self._params_of(rt))
            if info.frames:
                await self.market.ensure_frames(self.exchange, pos.symbol, info.frames)
            self.market.state(pos.symbol, info.spec, info.timeframes)
        except Exception:
            log.warning("%s: warm-up of its rules' candles failed (its first tick does "
                        "what it can, as without one)", pos.symbol, exc_info=True)

    def schedule_warm_up(self, rt: PositionRuntime) -> None:
        """`warm_up(rt)` as a task of its own: what called it (an open, right after its
        protective orders) does not wait for a history fetch."""
        task = asyncio.create_task(self.warm_up(rt), name=f"warm-up {rt.position.symbol}")
        self._warming.add(task)
        task.add_done_callback(self._warming.discard)

    async def warmed_up(self) -> None:
        """Wait for the warm-ups under way (a bench whose book stands for a restored one)."""
        while self._warming:
            await asyncio.gather(*self._warming, return_exceptions=True)

    def hold_marks(self) -> None:
        """Coalesce the tick path's publications (prices, position marks) until
        `release_marks()`: a batch of ticks publishes each symbol's and position's last
        state once. Actions, fills and errors are published at once as always."""
        if self._marks is None:
            self._marks = {}
        self.market.hold()

    def release_marks(self, keep_holding: bool = False) -> None:
        marks, self._marks = self._marks, ({} if keep_holding else None)
        self.market.release(keep_holding)
        for rt in (marks or {}).values():
            self.publish_position(rt)

    def _publish_mark(self, rt: PositionRuntime) -> None:
        if self._marks is not None:
            self._marks[rt.position.id] = rt  # `rt.id` without the property call
        else:
            self.publish_position(rt)

    def _screen_tick(self, rt: PositionRuntime, tick: Tick) -> _Step:
        """What `rt`'s tick needs beyond what is done here: `_DONE` when the position is no
        longer the book's open one, when the price is not usable (its mark published), or
        when the tick is inside the position's quiet band (done here, below); `_SYNC` for a
        quiet tick whose protection sync is due; `_EVALUATE` otherwise. Synchronous: the
        quiet tick, a position's usual one, costs no coroutine and no await (and no call
        of its own: it is most ticks of a replay)."""
        pos = rt.position
        if pos.status is not _OPEN or self.book.runtime(pos.id) is not rt:
            return _DONE
        params = rt.params if rt.params is not None else self.params(pos)
        if rt.info_params is params:
            info: _RuleInfo = rt.info  # type: ignore[assignment]
        else:
            info = rt.info = self.rule_info(params)
            rt.info_params = params
        now = self.clock()
        ts = tick.ts
        # price_is_usable, its common case first (the price was validated by market.on_tick;
        # x - x == 0.0: x is finite, math.isfinite's answer for these floats without a call)
        if not (ts.__class__ is float and now - ts <= info.max_age and ts - ts == 0.0
                and now - now == 0.0) \
                and not price_is_usable(tick.price, ts, now, info.max_age):
            self._publish_mark(rt)
            return _DONE
        # the band is computed at the first tick that needs it (`BandGate`)
        if rt.band_pos is not pos or rt.band_params is not params:
            return _EVALUATE
        if rt.band_version != self.market.versions.get(pos.symbol, 0):
            # a candle closed since the band was settled: settled again at this tick
            if rt.band_add_on or not self.market.frames_ready(pos.symbol, info.frames):
                return _EVALUATE
            self._settle_at_close(rt, tick, params, info)
            if rt.band_pos is not pos:
                return _EVALUATE
        if not (rt.gate.quiet(tick.price, ts)
                and (not rt.band_add_on or rt.pending(OrderRole.ADD))):
            return _EVALUATE
        # A tick inside the position's quiet band: `observe` would keep the position and
        # `evaluate` return nothing (the band's contract), so only what a tick without
        # actions does besides remains: the start-up and in-flight gates, the exchange-stop
        # grace restarting, the pending protection sync (run by the caller under the lock,
        # which then saves and publishes), saving, and the mark for the window.
        self.quiet_ticks += 1
        if rt.lock.locked() or not self.started:
            self._publish_mark(rt)
            return _DONE
        rt.deferred_since = None  # no stop/TP close was due: the grace starts afresh
        rt.indicator_due = tick  # the chart's line, computed when next published
        if rt.protect_dirty and now >= self.protector.budget_spent_until \
                and self.protector.wants_sync(rt, now):
            return _SYNC
        # `_maybe_persist`'s own first tests, without the call (it is due once per
        # `save_every()` at most: its test, inline, as elapsed >= interval and
        # elapsed x budget >= book size)
        if rt.position is not rt.saved:
            settings = self.settings
            elapsed = now - rt.saved_at
            if elapsed >= settings.save_interval and (
                    elapsed * settings.save_budget >= len(self.book)
                    or settings.save_budget <= 0):
                self._maybe_persist(rt, now)
        marks = self._marks  # `_publish_mark`, without the call
        if marks is not None:
            marks[rt.position.id] = rt
        else:
            self.publish_position(rt)
        return _DONE

    async def _on_position_tick(self, rt: PositionRuntime, tick: Tick,
                                sync_only: bool = False) -> None:
        """The rest of a tick `_screen_tick` did not decide: with `sync_only`, the quiet
        tick's due protection sync (under the lock), else the evaluation."""
        if sync_only:
            async with rt.lock:
                if rt.protect_dirty and rt.is_open and self.book.runtime(rt.id) is rt:
                    await self.protector.sync(rt)
            self._maybe_persist(rt)
            self._publish_mark(rt)
            return
        pos = rt.position
        params = rt.params if rt.params is not None else self.params(pos)
        info: _RuleInfo = rt.info  # type: ignore[assignment]  (`_screen_tick` set it)
        # the tick is in the settled position's trend lane (it is not in its quiet band, or
        # an add-on that rested when the position was settled ended: then a full evaluation,
        # its flag may be dropped below, a change the lane does not know)
        in_lane = rt.band_pos is pos and rt.band_params is params \
            and rt.band_version == self.market.version(pos.symbol) \
            and not rt.band_add_on and rt.gate.lane(tick.price, tick.ts)
        settled = rt.band_pos
        observed = observe(pos, tick.price)
        if observed is not pos:
            self.set_position(observed, persist=False)
            pos = observed
        if rt.lock.locked() or not self.started:
            # an order for this position is in flight, or start-up has not reconciled yet:
            # decide on a later tick
            self._publish_mark(rt)
            return
        frames = info.frames
        if frames and not self.market.frames_ready(pos.symbol, frames):
            # each rule's timeframe: the venue's history once, then live closes
            await self.market.ensure_frames(self.exchange, pos.symbol, frames)
        async with rt.lock:
            pos = rt.position
            if not pos.is_open or self.book.runtime(rt.id) is not rt:
                return
            if add_on_open_since(pos.flags) is not None and not rt.pending(OrderRole.ADD):
                # the add-on order filled or ended: nothing rests any more
                pos = self.set_position(pos.evolve(flags=frozenset(
                    f for f in pos.flags if not f.startswith(ADD_ON_OPEN_PREFIX)))).position
            market = self.market.market(pos.symbol)
            indicators, frame_sets = self.market.state(pos.symbol, info.spec, info.timeframes)
            version = self.market.version(pos.symbol)
            mkt = MarketState(pos.symbol, tick.price, tick.ts, market, indicators, frame_sets)
            failed_close = False
            rt.deferred_seen = False
            # the lane holds for the position observed on this tick, if nothing changed it
            # while this tick waited for its market data or the lock
            decide = evaluate_trend if in_lane and pos is observed \
                and rt.band_pos is settled and rt.band_version == version else evaluate
            for action in decide(pos, mkt, params):
                if "follows" in action.inputs and failed_close:
                    continue  # the breakeven that rides with a TP1 that was not carried out
                if self._venue_owns_stop(rt, action, params):
                    continue
                # stamped when decided, on the engine's clock (a replay's is its ticks'):
                # the tick may predate the position (evaluated at its open on the last
                # price), and the action log must not list a stop move before the open
                ok = await self.execute(_action_at(action, self.clock()))
                failed_close = action.is_closing and not ok
                if not rt.is_open:
                    break
            if not rt.deferred_seen:
                rt.deferred_since = None  # the price is back: the grace starts afresh
            rt.indicator = self._rule_line(rt, params, info, tick.price, tick.ts,
                                          (mkt, version))
            rt.indicator_due = None
            self._set_band(rt, mkt, params, version)
            if rt.protect_dirty and rt.is_open \
                    and self.protector.wants_sync(rt, self.clock()):
                await self.protector.sync(rt)
        self._maybe_persist(rt)
        self._publish_mark(rt)

    def _settle_at_close(self, rt: PositionRuntime, tick: Tick, params: Params,
                         info: _RuleInfo) -> None:
        """A candle of the symbol closed since `rt`'s band was settled: settle it again for
        the same position with the new indicators, at this tick. The band is a function of
        position, market state and params (`pmgui.rules.bands`' contract): a tick inside it
        is one a full evaluation would decide nothing on (observe keeps the position,
        evaluate returns nothing), so the first tick after each close need not be
        evaluated in full when it is inside; outside, it is evaluated as before."""
        symbol = rt.position.symbol
        indicators, frames = self.market.state(symbol, info.spec, info.timeframes)
        mkt = MarketState(symbol, tick.price, tick.ts, self.market.market(symbol), indicators,
                          frames)
        # the version read after `state` (a frame created just now may have bumped it), as
        # the evaluation reads it
        self._set_band(rt, mkt, params, self.market.version(symbol))

    def _set_band(self, rt: PositionRuntime, mkt: MarketState, params: Params,
                  version: int) -> None:
        """After an evaluation: the prices and times at which the rules cannot act on this
        position as it now is (`pmgui.rules.bands`), kept with what it was computed for."""
        pos = rt.position
        rt.band_pos = None
        if not self.settings.quiet_bands or not pos.is_open:
            rt.gate.clear()
            return
        rt.gate.settle(pos, mkt, params)  # the band itself is computed when first needed
        rt.band_pos, rt.band_params, rt.band_version = pos, params, version
        rt.band_add_on = add_on_open_since(pos.flags) is not None

    def indicator_of(self, rt: PositionRuntime) -> object | None:
        """The line the position's rules follow (RuleIndicator), as of its last tick."""
        tick = rt.indicator_due
        if tick is not None:
            rt.indicator_due = None
            params = self._params_of(rt)
            rt.indicator = self._rule_line(rt, params, None, tick.price, tick.ts)
        return rt.indicator

    def _rule_line(self, rt: PositionRuntime, params: Params, info: _RuleInfo | None,
                   price: float, ts: float, given: tuple[MarketState, int] | None = None
                   ) -> object | None:
        """`indicator_line.current` for `rt`'s position on a tick at `price`, `ts` (`given`:
        that tick's market state and the candle version it was read at, when the caller
        has them — an evaluation, whose awaits may have let a candle close since). What the
        line reads besides the tick and the best price (`indicator_line.prepare`) is kept
        with the position's fields it reads, the Params object and the candle version: a
        position's usual tick changes none of them (a new best price, peak or stop does
        not) and computes only the trail's level at its price. Read afresh, the line was a
        quarter of a quiet tick's cost (the candles' series and indicators read again)."""
        pos = rt.position
        symbol = pos.symbol
        memo = rt.line_memo
        read = indicator_line.reads(pos)
        if memo is None or memo[1] is not params \
                or memo[2] != self.market.versions.get(symbol, 0) or memo[0] != read:
            if info is None:
                info = self.rule_info(params)
            if given is None:
                indicators, frames = self.market.state(symbol, info.spec, info.timeframes)
                # read after `state` (a frame created just now may have bumped it)
                version = self.market.versions.get(symbol, 0)
                mkt = MarketState(symbol, price, ts, self.market.market(symbol), indicators,
                                  frames)
            else:
                mkt, version = given
            memo = (read, params, version,
                    indicator_line.prepare(self.market, pos, mkt, params, info.spec))
            rt.line_memo = memo
        return indicator_line.line_at(memo[3], pos.best_price, price, ts)

    def _venue_owns_stop(self, rt: PositionRuntime, action: Action, params: Params) -> bool:
        """A stop resting on the exchange that triggers on the mark price decides by itself:
        the last price wicking through its level is not a stop-out (seed 002)."""
        return (action.type is ActionType.CLOSE and action.reason in STOP_REASON.values()
                and self.exchange.capabilities.mark_trigger
                and str(params["protection.trigger"]) == "mark"
                and self.protector.outcome(rt, OrderRole.STOP_LOSS).protection
                == Protection.ON_EXCHANGE.value)

    def stop_reason(self, pos: Position) -> Reason:
        return STOP_REASON[pos.sl_kind]

    async def execute(self, action: Action) -> bool:
        """Carry out one decision, the rules' and the trader's alike (a manual SetTargets is
        MOVE_SL/MOVE_TP actions through here). The decision is journaled first, then acted
        on; level moves leave the position dirty for the protection sync that follows.
        True when it was carried out."""
        rt = self.book.runtime(action.position_id)
        if rt is None or not rt.is_open:
            return False
        pos = rt.position
        moved: Position | None = None
        if action.type in (ActionType.MOVE_SL, ActionType.MOVE_TP):
            moved = self._moved(pos, action)
            if moved is None:
                return False
            if action.sl != moved.sl or action.tp != moved.tp:  # the log shows the new levels
                action = _action_levels(action, moved.sl, moved.tp)
        elif action.sl is None or action.tp is None:  # the log shows the levels in force
            action = replace(action, sl=pos.sl if action.sl is None else action.sl,
                             tp=pos.tp if action.tp is None else action.tp)
        if action.type is ActionType.CLOSE and action.rule != "manual" \
                and self._exchange_will_close(rt, action):
            return False
        # A rule's level move sends no order and can be rebuilt (the rules recompute it):
        # written behind. Everything else — closes, adds, the trader's own moves — is synced.
        behind = moved is not None and action.reason is not Reason.MANUAL
        if behind:
            self.store.record_action_behind(action, symbol=pos.symbol)
        elif action.type in _ORDERING and action.reason is not Reason.MANUAL:
            # A rule's close, reduction or add: an order follows, journaled and synced
            # (`place` -> `journal_synced`, its fsync in a worker) before it is sent, and that
            # sync makes this commit durable too. Not an fsync of its own on the loop's thread
            # on the tick -> close path (a SIGKILL loses neither: WAL). The trader's stay synced.
            with self.store.relaxed():
                self.store.record_action(action, symbol=pos.symbol)
        else:
            self.store.record_action(action, symbol=pos.symbol)
        ok, detail = True, ""
        try:
            if action.type is ActionType.CLOSE:
                if await self.reduce(rt, pos.qty, action.reason, action) is None:
                    detail = self.close_not_sent(rt)
            elif action.type is ActionType.REDUCE:
                if await self.reduce(rt, action.qty or 0.0, action.reason, action) is None:
                    detail = self.close_not_sent(rt)
            elif behind:
                # The row is not rewritten for the move: its log line, just recorded, is
                # the journal the store replays on load over the row's last state
                # (`Store._positions`); the row itself follows with the next peaks save
                # (`_maybe_persist`, `save_every`), or with any synced save before.
                rt.position = moved
                rt.protect_dirty = True
            elif moved is not None:
                self.set_position(moved)
                rt.protect_dirty = True
            elif action.type is ActionType.ADD and action.qty:
                await self._add(rt, action)
            elif action.type is ActionType.CANCEL:
                detail = await self._cancel_adds(rt, action)
        except PmguiError as exc:
            ok, detail = False, str(exc)
            self.outbox.publish(ErrorEvent(f"{pos.symbol}: {action.reason.value} failed: {exc}",
                                           self.clock(), pos.id))
        self.outbox.publish(ActionTaken(action, pos.symbol, ok, detail))
        return ok

    def _exchange_will_close(self, rt: PositionRuntime, action: Action) -> bool:
        """A stop/TP close whose level an acknowledged exchange order covering the position
        holds is left to that order for `exchange_stop_grace` seconds: its fill closes the
        position; a market close sent meanwhile would race it (refused for lack of a
        position, or filling against one opened since). After the grace the engine acts."""
        if action.reason in STOP_REASON.values():
            role, level = OrderRole.STOP_LOSS, rt.position.sl
        elif action.reason is Reason.TAKE_PROFIT:
            role, level = OrderRole.TAKE_PROFIT, rt.position.tp
        else:
            return False
        order = self.protector.covering(rt, role)
        market = self.market.market(rt.symbol)
        if level is None or order is None or order.trigger_price is None \
                or abs(order.trigger_price - market.round_price(level)) >= market.tick_size / 2:
            return False
        # ... and only where the price that decided it reached that order's trigger: a stop
        # due at once (a trailing level set above the price it is crossed by, never sent)
        # is not the order resting at the position's earlier stop, which that price does
        # not fill (DESIGN §4: a due stop acts at once)
        beyond = rt.position.side.dir * (action.price - order.trigger_price)
        if (beyond > market.tick_size / 2 if role is OrderRole.STOP_LOSS
                else beyond < -market.tick_size / 2):
            return False
        now = self.clock()
        rt.deferred_seen = True
        if rt.deferred_since is None:
            rt.deferred_since = now
            log.info("%s: %s crossed; its order on the exchange closes it", rt.symbol,
                     action.reason.value)
        if now - rt.deferred_since < self.settings.exchange_stop_grace:
            return True
        log.warning("%s: the exchange's %s order has not filled %.1f s after its level was "
                    "crossed; closing at market", rt.symbol, role.value,
                    now - rt.deferred_since)
        return False

    async def _cancel_adds(self, rt: PositionRuntime, action: Action) -> str:
        """Withdraw the position's resting add-on order (issue 11): its conditions no longer
        hold (`action.inputs["why"]`)."""
        cancelled = []
        for order in rt.pending(OrderRole.ADD):
            if order.type is OrderType.LIMIT:
                await self.cancel(order)
                cancelled.append(order.client_id)
        pos = rt.position
        self.set_position(pos.evolve(flags=frozenset(
            f for f in pos.flags if not f.startswith(ADD_ON_OPEN_PREFIX))))
        why = action.inputs.get("why", "")
        return (f"add-on order cancelled ({why})" if cancelled
                else f"no resting add-on order ({why})")

    @staticmethod
    def _moved(pos: Position, action: Action) -> Position | None:
        """The position after a level move. A rule names the new level in `sl`/`tp`
        (`rule_level_move`, which the store replays on load); a manual move may also remove
        one (`inputs` new_sl/new_tp = None) and re-levels the tranches."""
        inputs = action.inputs
        if action.type is ActionType.MOVE_SL:
            sl = inputs["new_sl"] if "new_sl" in inputs else action.sl
            if action.reason is not Reason.MANUAL:
                return rule_level_move(pos, ActionType.MOVE_SL, sl, None, action.stop_kind,
                                       action.flags)
            new = pos.evolve(sl=sl, sl_kind=StopKind.MANUAL,
                             initial_sl=pos.initial_sl if pos.initial_sl is not None else sl,
                             flags=pos.flags | action.flags if action.flags else pos.flags)
            return new.evolve(tranches=tuple(replace(t, sl=sl) for t in pos.tranches))
        tp = inputs["new_tp"] if "new_tp" in inputs else action.tp
        if action.reason is not Reason.MANUAL:
            return rule_level_move(pos, action.type, None, tp, None, action.flags)
        new = pos.evolve(tp=tp, flags=pos.flags | action.flags if action.flags else pos.flags)
        return new.evolve(tranches=tuple(replace(t, tp=tp) for t in pos.tranches))

    # ------------------------------------------------------------------ orders

    async def place(self, req: OrderRequest, turns: TurnShare | None = None) -> Order:
        """Journal, then send. Never re-sent blindly: the adapter resolves timeouts by id.

        `turns` (a re-placement beside the stream): once journaled and synced, the send
        waits for its turn among its peers (`TurnShare`). Their fsyncs end together in a
        burst, and each one's send and booking (a commit or two) then ran in one round."""
        ledger = self.ledger
        rt = self.book.runtime(req.position_id) if req.position_id else None
        if rt is not None and rt.position is not rt.saved and rt.position.is_open:
            # the position as it is now goes to disk in the order's own commit (the store
            # carries a position's queued state with it): an order is never on disk
            # without the levels it was placed at, rule moves included (not written per
            # move: `execute`)
            self.set_position(rt.position, persist="behind")
        order = await ledger.journal_synced(req)  # its fsync off the loop
        if turns is not None:
            await turns.turn()  # journaled and synced: nothing is sent before this anyway
        ledger.mark_sent(req.client_id)
        try:
            result = await self.exchange.create_order(req)
        except OrderStatusUnknown:
            # Maybe placed, maybe not: it stays pending in the journal and is looked up by
            # client id (`resolve_pending`, reconciliation). Never re-sent blindly, never
            # assumed rejected.
            ledger.mark_unknown(req.client_id)
            raise
        except ExchangeError as exc:
            ledger.reject(req.client_id, str(exc))
            raise
        finally:
            ledger.create_answered(req.client_id)
        await self.apply_order(result, ())
        return ledger.live.get(req.client_id) or ledger.get(req.client_id) or order

    async def cancel(self, order: Order) -> None:
        # While our cancel is in flight, the stream's CANCELED for this order is ours, not
        # a protective order disappearing behind pmgui's back.
        self.ledger.cancelling.add(order.client_id)
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
            await self.apply_order(result, ())
        finally:
            self.ledger.cancelling.discard(order.client_id)

    async def apply_order(self, order: Order, fills: Iterable[Fill]) -> None:
        """Apply what changed in `order` since we last saw it (the ledger computes the
        delta; the position books it).

        A fill that closes a position is booked in the commit of the order's report: both
        are the venue's word (it can tell them again), committed without a sync of their own,
        so one commit stands between the venue's fill and the close booked instead of two.
        Other reports commit alone (no enclosing transaction: a savepoint more).

        A close the venue carried out (its stop, its take-profit, a liquidation) is
        acknowledged as soon as the venue reported it — the order's snapshot and the close's
        log line published — and booked after, in that commit: the venue committed the fill
        before it reported it, and what it holds is booked again at the next start should the
        engine die before its own commit (reconciliation looks up every order the journal
        still has open). The booking (the order's row, its fill, the closed position, the
        log line: ~1 ms of SQL and Python at 500 positions) was between the two."""
        closing: _Closing | None = None

        def announce(applied: Applied) -> ActionTaken | None:
            nonlocal closing
            if applied.delta > 0 and applied.price is not None and applied.order.position_id:
                closing = self._closing_fill(applied)
            return closing.note if closing is not None else None

        # the report booked and a close acknowledged without a collection in between (it
        # runs right after: `collection_deferred`); nothing in the block awaits
        with collection_deferred():
            fills = tuple(fills)
            pos = self.book.runtime(order.position_id) if order.position_id else None
            known = self.ledger.get(order.client_id)
            owner = self.book.runtime(known.position_id) if known else pos
            with contextlib.ExitStack() as booking:
                delta = known is not None and order.filled - known.filled > EPS
                if delta:  # a fill's delta: booked whole with the close it may complete
                    booking.enter_context(self.store.relaxed())
                    booking.enter_context(self.store.transaction(whole=True))
                applied = self.ledger.apply(
                    order, fills,
                    fee_rate=owner.position.fee_rate if owner else 0.0005,
                    contract_size=self.market.market(order.symbol).contract_size,
                    announce=announce if delta else None)
                if closing is not None:
                    self._book_closing(closing)
        if applied is None:
            await self._apply_foreign(order, fills)
            return
        merged = applied.order
        if applied.lost_protection:
            self.protector.lost(merged)
        if closing is not None:
            await self._closed(closing.pos, None)  # its log line published above
        elif applied.delta > 0 and applied.price is not None and merged.position_id:
            await self._apply_fill(merged, applied.delta, applied.price, applied.fee or 0.0,
                                   liquidation=applied.liquidation)

    def _rebook_open(self, c: Correction) -> bool:
        """The ledger's hook, inside its report's transaction: a fill booked at a reference
        re-booked at the venue's price on the position the book holds open (its runtime
        state is the truth). False: not open here (the ledger corrects a closed one's row)."""
        rt = self.book.runtime(c.position_id)
        if rt is None or not rt.position.is_open:
            return False
        self.set_position(corrected(rt.position, c))
        self.publish_position(rt)
        return True

    async def _apply_foreign(self, order: Order, fills: tuple[Fill, ...]) -> None:
        """An order pmgui did not place: a liquidation, or the trader's own order elsewhere."""
        if order.filled <= EPS:
            return
        liquidation = order.reason == "liquidation" or any(f.liquidation for f in fills)
        target = next((rt for rt in self.book.for_symbol(order.symbol)
                       if rt.is_open and order.side is rt.side.close_side), None)
        if target is None:
            return
        self.ledger.adopt(replace(order, position_id=target.id, role=OrderRole.REDUCE,
                                  reason="liquidation" if liquidation else Reason.RECONCILE.value,
                                  filled=0.0, average=None, status=OrderStatus.OPEN))
        await self.apply_order(order, fills)

    # ------------------------------------------------------------------ fills → positions

    async def _apply_fill(self, order: Order, qty: float, price: float, fee: float,
                          liquidation: bool = False) -> None:
        rt = self.book.runtime(order.position_id)
        if rt is None and order.role is OrderRole.ENTRY and not order.reduce_only:
            # a resting entry's fill: it creates its position (or adds to the open one)
            rt = await self.entries.filled(order, qty, price, fee)
            if rt is None:
                return
        if rt is None:
            stored = self.store.load_position(order.position_id or "")
            if stored is None or not stored.is_open:
                return
            rt = self.set_position(stored, persist=False)
        pos = rt.position
        self.reconciler.touch(pos.symbol, pos.side)
        opening = order.side is pos.side.open_side and not order.reduce_only
        now = self.clock()
        market = self.market.market(pos.symbol)
        if opening:
            new_qty = pos.qty + qty
            entry = money.average_entry(pos.qty, pos.entry, qty, price)
            t_sl, t_tp = tranche_levels(pos.side, price, self.params(pos), market)
            tranche = Tranche(order.client_id, qty, price, now,
                              pos.sl if t_sl is None else t_sl, pos.tp if t_tp is None else t_tp,
                              "add_on" if order.role is OrderRole.ADD else "entry")
            same = next((t for t in pos.tranches if t.id == tranche.id), None)
            if same is None:
                tranches = (*pos.tranches, tranche)
            else:  # a later partial fill of the same order: its tranche grows
                tranches = tuple(replace(t, qty=t.qty + qty, entry=money.average_entry(
                    t.qty, t.entry, qty, price)) if t is same else t for t in pos.tranches)
            pos = pos.evolve(qty=new_qty, entry=entry, fees_paid=pos.fees_paid + fee,
                             realized_pnl=pos.realized_pnl - fee, tranches=tranches)
            if pos.liquidation is not None or self.exchange.id == "paper":
                pos = pos.evolve(liquidation=money.liquidation_price(
                    pos.side, pos.entry, pos.leverage, market.mmr))
            self.set_position(pos)
            rt.protect_dirty = True
            self.publish_position(rt)
            return
        q = min(qty, pos.qty)
        pos = self._reduced(rt, order, qty, price, fee, liquidation, now)
        if pos.status is PositionStatus.CLOSED:
            with self.store.relaxed(), self.store.transaction(whole=True):
                note = self._book_close(pos, order, q, price, liquidation)
            await self._closed(pos, note)
        else:
            self.set_position(pos)
            rt.protect_dirty = True
            self.publish_position(rt)

    def _closing_fill(self, applied: Applied) -> _Closing | None:
        """What the order report's fill does when it closes an open position of the book:
        the closed position and the log line of a close the venue carried out (published
        before the booking: see `apply_order`), nothing written yet. None: any other fill,
        booked after the report's commit by `_apply_fill`."""
        order = applied.order
        rt = self.book.runtime(order.position_id or "")
        if rt is None or (order.side is rt.position.side.open_side and not order.reduce_only):
            return None
        price = applied.price or 0.0
        q = min(applied.delta, rt.position.qty)
        pos = self._reduced(rt, order, applied.delta, price, applied.fee or 0.0,
                            applied.liquidation, self.clock())
        if pos.status is not PositionStatus.CLOSED:
            return None
        self.reconciler.touch(pos.symbol, pos.side)
        return _Closing(pos, self._close_note(pos, order, q, price, applied.liquidation))

    def _book_closing(self, closing: _Closing) -> None:
        """Inside the order report's transaction: the close `_closing_fill` found, booked in
        the same commit (the closed position and its log line)."""
        self.set_position(closing.pos)
        if closing.note is not None:
            self.store.record_action(closing.note.action, symbol=closing.pos.symbol)

    def _reduced(self, rt: PositionRuntime, order: Order, qty: float, price: float, fee: float,
                 liquidation: bool, now: float) -> Position:
        """The position after a reducing fill of `qty` at `price` (closed when nothing is
        left); nothing is stored."""
        pos = rt.position
        market = self.market.market(pos.symbol)
        q = min(qty, pos.qty)
        gross = pos.dir * (price - pos.entry) * q * pos.contract_size
        remaining = pos.qty - q
        if remaining <= max(EPS, market.amount_step * 1e-6):
            remaining = 0.0
        flags = action_flags = self.ledger.reduce_flags.get(order.client_id, frozenset())
        ids = tranche_ids(self.ledger.get(order.client_id) or order)
        if ids:  # a per-tranche protective order: exactly its tranches leave
            flags = flags | {TRANCHE_CLOSED_PREFIX + i for i in ids}
        tranches = reduce_tranches(pos.tranches, q, flags)
        pos = pos.evolve(qty=remaining, realized_pnl=pos.realized_pnl + gross - fee,
                         fees_paid=pos.fees_paid + fee, tranches=tranches)
        if action_flags and not action_flags <= pos.flags:  # booked with the reduction
            pos = pos.evolve(flags=pos.flags | action_flags)  # (after a restart too)
        if remaining == 0.0:
            pos = pos.evolve(status=PositionStatus.CLOSED, closed_at=now, exit_price=price,
                             exit_reason=self._fill_reason(pos, order, liquidation))
        return pos

    def _book_close(self, pos: Position, order: Order, qty: float, price: float,
                    liquidation: bool) -> ActionTaken | None:
        """The closed position stored with its log line, inside the caller's transaction.
        Booked from the venue's fill: the venue can tell it again (reconciliation), so the
        caller commits it without waiting for a sync (a killed process loses nothing).
        Returns the log line's event, published once committed (`_closed`)."""
        note = self._close_note(pos, order, qty, price, liquidation)
        self.set_position(pos)
        if note is not None:
            self.store.record_action(note.action, symbol=pos.symbol)
        return note

    def _close_note(self, pos: Position, order: Order, qty: float, price: float,
                    liquidation: bool) -> ActionTaken | None:
        """The log line of a close the exchange carried out (protective order, liquidation,
        a reconciled order), not yet recorded; None for a close of the engine's own (its
        action is logged where it was decided)."""
        if order.role in PROTECTIVE or liquidation or order.reason == Reason.RECONCILE.value:
            return self._note_external_close(pos, order, qty, price, str(pos.exit_reason))
        return None

    async def _closed(self, pos: Position, note: ActionTaken | None) -> None:
        """A close committed: its log line published, then the rest of the close."""
        if note is not None:
            self.outbox.publish(note)
        await self.finish_close(pos)

    def _fill_reason(self, pos: Position, order: Order, liquidation: bool) -> str:
        if liquidation:
            return Reason.LIQUIDATION.value
        if order.role is OrderRole.STOP_LOSS:
            return STOP_REASON[pos.sl_kind].value
        if order.role is OrderRole.TAKE_PROFIT:
            return Reason.TAKE_PROFIT.value
        return order.reason or Reason.MANUAL.value

    def _note_external_close(self, pos: Position, order: Order, qty: float, price: float,
                             reason: str) -> ActionTaken:
        """A close the exchange carried out (protective order, liquidation): its log line's
        event (the caller records its action)."""
        action = Action(ActionType.CLOSE, Reason(reason), pos.id, price, qty=qty,
                        sl=pos.sl, tp=pos.tp, rule="exchange", ts=self.clock(),
                        inputs=frozen_map({"order": order.client_id, "price": price}))
        market = self.market.market(pos.symbol)
        return ActionTaken(action, pos.symbol, True, f"filled "
                           f"{plain_qty(qty, market)} @ {plain_price(price, market)}")

    async def finish_close(self, pos: Position) -> None:
        """Closed: cancel what protected it, publish, forget."""
        rt = self.book.runtime(pos.id)
        for order in (rt.resting() if rt else []):
            if not is_ours(order.client_id):
                continue  # the trader's own order booked on it: never touched (DESIGN §5)
            try:
                await self.cancel(order)
            except ExchangeError as exc:
                self.outbox.publish(ErrorEvent(
                    f"{pos.symbol}: could not cancel {order.type.value} order: {exc}",
                    self.clock(), pos.id))
        self.reconciler.touch(pos.symbol, pos.side)
        self.book.remove(pos.id)
        self.ledger.forget_position(pos.id)
        self.outbox.publish(PositionRemoved(pos, self.clock()))
        # the balance moved; the other positions' funding did not (it is brought in line
        # by the periodic refresh and at start). The account sums every open position: at
        # most once a second from closes, a burst of closes leaves it to the housekeeping
        self._account_due = True
        if self.clock() - self._account_at >= ACCOUNT_INTERVAL:
            await self._refresh_account_after_close()

    async def _refresh_account_after_close(self) -> None:
        """The account refreshed for a close, *beside* whoever booked it (a tick, the order
        stream, a command), in a task of its own: summing the book is a pass over every
        open position (~1.7 ms at 2,000), and inline it held up the stream's next ticks —
        a stop's crossing among them — for all of it. One such task at a time; a close
        meanwhile leaves `_account_due` for it or the housekeeping. A venue in simulated
        time (replay) has no stream to hold up: there it stays in line, deterministic."""
        if not getattr(self.exchange, "realtime", True):
            await self.refresh_account(funding=False)
            return
        if self._account_task is not None and not self._account_task.done():
            return
        self._account_task = asyncio.get_running_loop().create_task(
            self._account_beside(), name="account refresh")

    async def _account_beside(self) -> None:
        await let_due_work_first()  # the booking's caller goes on first
        if self._account_due:
            try:
                await self.refresh_account(funding=False)
            except Exception:
                log.exception("account refresh after a close failed")

    async def verify_before_close(self, rt: PositionRuntime,
                                  remote: list[ExchangePosition] | None = None,
                                  mark: int = 0) -> float:
        """Never act on a position that may not be ours any more (DESIGN §5).

        Before a market close: the state of the position's resting stop/TP orders is looked
        up (a stop that filled closes the position in the ledger, and nothing is sent), then
        what the exchange holds for the symbol and side right now (`remote`, fetched when not
        given, with the change `mark` it was requested at) bounds the close; a position the
        exchange no longer holds is reconciled, not closed (unless a fill of ours changed it
        since the snapshot: then the snapshot only bounds the close). Returns the quantity
        that may be closed (0: nothing to send). Raises ExchangeError when the venue cannot
        tell: no close is sent blind.
        """
        pos = rt.position
        protective = [o for o in rt.pending() if o.role in PROTECTIVE]
        if protective:
            answers = await asyncio.gather(
                *(self.exchange.fetch_order_by_client_id(o.client_id, o.symbol)
                  for o in protective), return_exceptions=True)
            for o, found in zip(protective, answers, strict=True):
                if isinstance(found, BaseException):
                    if not isinstance(found, ExchangeError):
                        raise found
                    raise _unsure(found, f"{pos.symbol}: not closing while the state of "
                                         f"its {o.role.value} order is unknown ({found})")
                if found is not None:
                    await self.apply_order(found, ())
                if not rt.is_open:
                    return 0.0  # its own stop/TP closed it: nothing to send
                if found is not None and found.status is OrderStatus.FILLED \
                        and found.filled <= EPS:
                    # it fired; its fill is on its way (the order stream or the next
                    # lookup books it): closing now could hit someone else's position
                    log.info("%s: its %s order fired; waiting for its fill instead of "
                             "closing", pos.symbol, o.role.value)
                    return 0.0
        if remote is None:
            mark = self.reconciler.mark
            try:
                remote = await self.exchange.fetch_positions()
            except ExchangeError as exc:
                raise _unsure(exc, f"{pos.symbol}: not closing while the exchange's "
                                   f"position is unknown ({exc})") from exc
        if not rt.is_open:
            return 0.0
        pos = rt.position
        r = next((r for r in remote if r.symbol == pos.symbol and r.side is pos.side
                  and r.qty > 0), None)
        held = r.qty if r is not None else 0.0
        if held + self.market.market(pos.symbol).amount_step / 2 < pos.qty \
                and not self.reconciler.changed_since((pos.symbol, pos.side), mark):
            await self.reconciler.align(rt, r)  # closed or reduced outside pmgui: journaled
        return min(held, rt.position.qty) if rt.is_open else 0.0

    async def reduce(self, rt: PositionRuntime, qty: float, reason: Reason | str,
                      action: Action | None = None,
                      remote: list[ExchangePosition] | None = None,
                     mark: int = 0) -> Order | None:
        """A reduce-only market close of `qty` (None: nothing was left to send)."""
        closable = await self.verify_before_close(rt, remote, mark)
        if closable <= 0:
            return None
        pos = rt.position
        market = self.market.market(pos.symbol)
        qty, close_all = scale_out(min(qty, closable), closable, market)
        # a remainder below the market's minimum order could never be closed or protected
        # (every order for it is refused): the close takes it too
        if close_all or 0 < closable - qty < market.min_amount - EPS:
            qty = closable
        if qty <= 0:
            raise ValidationError(f"nothing to close in {pos.symbol}")
        flags = action.flags if action else frozenset()
        req = OrderRequest(self.new_client_id(), pos.symbol, pos.side.close_side, OrderType.MARKET,
                           qty, reduce_only=True, position_id=pos.id, role=OrderRole.REDUCE,
                           reason=str(getattr(reason, "value", reason)))
        if flags:
            self.ledger.keep_reduce_flags(req.client_id, flags)
        try:
            order = await self.place(req)
        except OrderStatusUnknown:
            raise  # looked up by client id; never re-sent while its fate is unknown
        except ExchangeError as refused:
            # Refused (e.g. nothing left to reduce): look up and reconcile, never re-send.
            # The usual cause is a race the lookup above cannot close: the position's own
            # stop (or take-profit) on the exchange filled in the instant between that lookup
            # and this close reaching the venue — a market falling through the old stop
            # while its moved level is being re-placed. The lookup books that fill (by the
            # stop's client id); a venue that holds nothing of the position any more means
            # the close was not needed, which is no failure (the caller reports why).
            left = 0.0
            if rt.is_open:
                try:
                    left = await self.verify_before_close(rt)
                except ExchangeError as exc:
                    log.info("%s: lookup after a refused close failed: %s", pos.symbol, exc)
                    raise refused from None
            if left > 0:
                raise
            log.info("%s: close refused (%s); the exchange holds nothing of the position "
                     "any more: %s", pos.symbol, refused, self.close_not_sent(rt))
            return None
        finally:
            if flags:
                self.ledger.drop_reduce_flags(req.client_id)
        if flags and rt.is_open and self.book.runtime(rt.id) is rt:
            self.set_position(rt.position.evolve(flags=rt.position.flags | flags))
        return order

    def close_not_sent(self, rt: PositionRuntime) -> str:
        """Why a close `reduce` decided not to send (or the venue refused as not needed): the
        exchange holds nothing of the position any more. The truth for the action log."""
        pos = rt.position
        market = self.market.market(pos.symbol)
        if not rt.is_open:
            if pos.exit_reason == Reason.RECONCILE.value:
                return "not sent: the position was closed outside pmgui"
            price = f" @ {plain_price(pos.exit_price, market)}" if pos.exit_price else ""
            return f"not sent: the exchange closed it first ({pos.exit_reason}{price})"
        fired = [o.role.value for o in rt.pending() if o.role in PROTECTIVE
                 and o.status is OrderStatus.FILLED]
        if fired:
            return (f"not sent: its {fired[0]} order on the exchange fired; its fill is "
                    "booked as the exchange reports it")
        return "not sent: the exchange holds nothing of the position any more"

    async def _add(self, rt: PositionRuntime, action: Action) -> None:
        pos = rt.position
        market = self.market.market(pos.symbol)
        qty = market.floor_amount(action.qty or 0.0)
        if qty <= 0 or (market.min_amount and qty < market.min_amount):
            raise ValidationError(f"add of {action.qty:g} is below the minimum size")
        # Flags first: an add is attempted once even if the order is rejected (seed 001).
        self.set_position(pos.evolve(flags=pos.flags | action.flags))
        req = OrderRequest(self.new_client_id(), pos.symbol, pos.side.open_side,
                           OrderType.LIMIT if action.limit else OrderType.MARKET, qty,
                           price=market.round_price(action.price) if action.limit else None,
                           position_id=pos.id, role=OrderRole.ADD, reason=action.reason.value)
        await self.place(req)

    # ------------------------------------------------------------------ state & events

    def protection(self, pos: Position) -> Protection:
        rt = self.book.runtime(pos.id)
        if rt is None:
            return Protection.UNPROTECTED if pos.sl is None else Protection.LOCAL_ONLY
        return self.protector.protection(rt, pos)

    def set_position(self, pos: Position, persist: bool | str = True) -> PositionRuntime:
        """Replace the position's state; `persist`: True (synced now), "behind" (rebuildable
        state, written with the next write-behind window) or False."""
        rt = self.book.runtime(pos.id)
        if rt is None:
            rt = self.book.add(PositionRuntime(pos, self.ledger.of_position(pos.id)))
        else:
            rt.position = pos
        if persist == "behind":
            self.store.save_position_behind(pos)
            rt.saved_at, rt.saved = self.clock(), pos
        elif persist:
            self.store.save_position(pos)
            rt.saved_at, rt.saved = self.clock(), pos
        return rt

    def save_every(self) -> float:
        """How long a position's changed peaks (best price, peak ROI: rebuildable) wait
        before they are written behind: `save_interval`, or in a book of more than
        `save_budget` x `save_interval` positions as long as writing them all takes at
        `save_budget` positions a second. A storm moves nearly every position's best price
        within seconds, and at 2,000 positions their saves (400 rows a second at 5 s, a
        commit and a sorted pass each chunk) were 1-5 µs of each tick's CPU in paired
        storms, a cost a small book does not pay. Nothing the trader relies on waits
        longer: a rule's stop move is logged behind within `write_behind` and replayed over
        the row on load, an order's levels are saved with it, a close is synced; a crash
        can lose at most this long of peaks."""
        s = self.settings
        budget = s.save_budget
        n = len(self.book)
        if budget > 0 and n > budget * s.save_interval:
            return n / budget
        return s.save_interval

    def _maybe_persist(self, rt: PositionRuntime, now: float | None = None) -> None:
        # peaks and best prices: rebuildable, written behind (unless unchanged since saved)
        if rt.position is not rt.saved \
                and (self.clock() if now is None else now) - rt.saved_at \
                >= self.save_every() and self.book.runtime(rt.id) is rt:
            self.set_position(rt.position, persist="behind")

    def snapshot(self, pos: Position) -> PositionSnapshot:
        """What the window shows of `pos` now. Made for every position a tick reaches (two
        per tick of a storm's symbols, a third of its engine time), so the runtime is looked
        up once and the price's max age read from the rule info kept per Params."""
        tick = self.market.last.get(pos.symbol)
        now = self.clock()
        rt = self.book.runtime(pos.id)
        if rt is None:  # a position the book does not hold
            max_age = self.rule_info(self.params(pos)).max_age
            ind = None
            protection = self.protection(pos)
        else:
            max_age = self.rule_info(self._params_of(rt)).max_age
            ind = self.indicator_of(rt)
            protection = self.protector.protection(rt, pos)
        if tick is None:
            return _new_snapshot(pos, None, 0.0, 0.0, None, protection, True, now, ind)
        mark = tick.price
        return _new_snapshot(pos, mark, money.position_pnl(pos, mark),
                             money.position_roi(pos, mark), money.position_r(pos, mark),
                             protection, now - tick.ts > max_age, now, ind)

    def publish_position(self, rt: PositionRuntime) -> None:
        if rt.is_open and self.book.runtime(rt.id) is rt:
            snap = self.snapshot(rt.position)
            rt.published_at = snap.ts
            rt.published_stale = snap.stale
            self.outbox.publish(snap)

    async def publish_all(self, max_age: float = 0.0) -> None:
        """Publish every position (with `max_age`: those not published for that long whose
        snapshot moved with the clock alone — its price became stale —; a tick publishes its
        own positions anyway, the window counts ages itself), then the working entries and
        the connection. A pass over the book: the loop is handed over every
        `HOUSEKEEPING_SLICE` positions and before each of the other two (each a scan of its
        own: the live orders, every symbol's last tick)."""
        now = self.clock()
        last = self.market.last
        for i, rt in enumerate(self.book.runtimes(), 1):
            if not max_age:
                self.publish_position(rt)
            elif now - rt.published_at >= max_age:
                tick = last.get(rt.symbol)
                stale = tick is None or now - tick.ts > self.rule_info(
                    self._params_of(rt)).max_age
                if stale is not rt.published_stale:
                    self.publish_position(rt)
            if i % HOUSEKEEPING_SLICE == 0:
                await let_due_work_first()
        await let_due_work_first()
        self.entries.publish()
        await let_due_work_first()
        self.publish_connection()

    async def refresh_account(self, funding: bool = True) -> None:
        if funding:
            await self.funding.sync()  # per position, from the venue's funding history
        try:
            bal = await self.exchange.fetch_balance()
        except ExchangeError as exc:
            log.warning("balance unavailable: %s", exc)
            return
        self._account_due = False  # a close from here on may miss this sum: due again
        equity = bal.total + await self._open_pnl()
        now = self.clock()
        self._account_at = now
        self.outbox.publish(AccountEvent(equity, bal.total, bal.currency, now, bal.funding))
        self.store.record_equity(now, equity, bal.total)

    async def _open_pnl(self) -> float:
        """`open_pnl` of the book, `ACCOUNT_SLICE` positions per step with the loop handed
        over in between (`let_due_work_first`): one pass was ~1.7 ms of CPU at 2,000
        positions, a stretch every tick due meanwhile waited out. The same float as one
        pass over an unchanged book (the running total goes on in the book's order); a
        position closed meanwhile counts with what it held when its slice is summed — its
        close sets `_account_due`, so the next refresh has it right."""
        runtimes = self.book.runtimes()
        last = self.market.last
        total = 0.0
        for start in range(0, len(runtimes), ACCOUNT_SLICE):
            if start:
                await let_due_work_first()
            total = open_pnl(runtimes[start:start + ACCOUNT_SLICE], last, total)
        return total

    async def periodic(self) -> None:
        """Housekeeping the manager thread runs every few seconds. Incremental: it hands the
        loop over (`let_due_work_first`: the ticks due meanwhile go first) between its parts
        and every `HOUSEKEEPING_SLICE` positions, so a pass over a large book never holds up
        the ticks behind it for milliseconds at a time."""
        await self._refresh_stale_prices()
        await let_due_work_first()
        await self.reconciler.resolve_pending()
        await self._cancel_orphans()
        await let_due_work_first()
        self.entries.prune()
        await self.publish_all(max_age=1.0)  # staleness and ages move on without ticks
        if self._account_due:
            await let_due_work_first()  # the account sums the whole book: a part of its own
            await self.refresh_account(funding=False)
        protector = self.protector
        for i, rt in enumerate(self.book.runtimes(), 1):
            if rt.protect_dirty and self.clock() >= protector.budget_spent_until \
                    and protector.due(rt, self.clock()):
                async with rt.lock:
                    await self.protector.sync(rt, settle=True)
            if i % HOUSEKEEPING_SLICE == 0:
                await let_due_work_first()
        for i, rt in enumerate(self.book.runtimes(), 1):
            self._maybe_persist(rt)
            if i % HOUSEKEEPING_SLICE == 0:
                await let_due_work_first()
        # what waits behind, a chunk at a time with the ticks in between (not one long commit),
        # each chunk's log lines built in a step before its write (`Store.build_behind`)
        window = self.settings.write_behind
        while True:
            while self.store.behind and self.store.build_behind():  # a step at a time
                await let_due_work_first()
            if not self.store.flush_behind(window):
                break
            await let_due_work_first()

    async def _cancel_orphans(self) -> None:
        """Protective orders whose position is no longer open (their cancel failed, or the
        position closed while pmgui was down) do not survive one housekeeping pass."""
        if not await self._orphans_possible():
            return
        for o in self.ledger.resting():
            owner = self.book.runtime(o.position_id)
            if o.role in PROTECTIVE and (owner is None or not owner.is_open) \
                    and o.client_id not in self.ledger.cancelling:
                try:
                    await self.cancel(o)
                    self.reconciler.log(f"cancelled orphaned {o.type.value} order "
                                        f"{o.client_id}")
                except ExchangeError as exc:
                    log.info("orphaned order %s not cancelled yet: %s", o.client_id, exc)

    async def _orphans_possible(self) -> bool:
        """False when `_cancel_orphans` cannot find one: every live order names a position
        that is open in the book (one test per position, not one per order of a large
        book), `HOUSEKEEPING_SLICE` positions per step with the loop handed over in
        between: in one step the test was ~2-3 ms at 2,000 positions every second, a
        stretch the ticks due meanwhile waited out. A position closed after its slice was
        tested leaves its orders to the next pass, as one closed after a test in one step."""
        owners = self.ledger.owners()
        if sum(owners.values()) != len(self.ledger.live):
            return True
        ids = list(owners)
        for start in range(0, len(ids), HOUSEKEEPING_SLICE):
            if start:
                await let_due_work_first()
            if not self.book.all_open(ids[start:start + HOUSEKEEPING_SLICE]):
                return True
        return False

    async def _refresh_stale_prices(self) -> None:
        """Each symbol of the book checked once for a stale price (refreshed from REST),
        `HOUSEKEEPING_SLICE` positions per step with the loop handed over in between: in
        one step the pass was ~2 ms of CPU at 2,000 positions every second."""
        seen: set[str] = set()
        wanted: list[tuple[str, float, int, float]] = []
        for i, rt in enumerate(self.book.runtimes(), 1):
            symbol = rt.position.symbol
            if symbol not in seen:
                seen.add(symbol)
                max_age, tries, backoff = self._params_of(rt).memo(_price_policy,
                                                                   _price_policy)
                wanted.append((symbol, max_age, tries, backoff))
            if i % HOUSEKEEPING_SLICE == 0:
                if wanted:
                    await self.market.refresh_stale(self.exchange, wanted, self.on_tick)
                    wanted = []
                await let_due_work_first()
        if wanted:
            await self.market.refresh_stale(self.exchange, wanted, self.on_tick)

    async def reconcile(self, startup: bool = False) -> list[str]:
        return await self.reconciler.reconcile(startup)

    async def adopt(self, r: ExchangePosition, *, sl: float | None = None,
                    tp: float | None = None, preset: str | None = None,
                    overrides: Mapping[str, Scalar] | None = None,
                    entry_fee: float | None = None) -> Position:
        """Take over a position that exists on the exchange (replay start, manual adoption).

        `entry_fee` is the fee rate the entry paid; it is booked so realized P/L is net.
        """
        price = self.market.price(r.symbol) or r.entry
        validate_targets(r.side, price, sl, tp)
        if preset is not None or overrides:
            resolve_params(preset or self.settings.preset_for(r.symbol), dict(overrides or {}))
        pos = self.reconciler.adopt(r, sl=sl, tp=tp, preset=preset, overrides=overrides,
                                    reason=Reason.MANUAL, fee_rate=entry_fee)
        if entry_fee:
            fee = r.qty * r.entry * pos.contract_size * entry_fee
            pos = pos.evolve(fees_paid=fee, realized_pnl=-fee)
            self.set_position(pos)
        rt = self.book.runtime(pos.id)
        if rt is not None:
            async with rt.lock:
                await self.protector.sync(rt, force=True)
            self.publish_position(rt)
        return self.book.get(pos.id, pos)

    def with_default_targets(self, pos: Position) -> Position:
        """Presets that set levels (monitor) give SL/TP to positions arriving without them."""
        if pos.sl is not None and pos.tp is not None:
            return pos
        sl, tp = initial_targets(pos.side, pos.entry, self.params(pos),
                                 self.market.market(pos.symbol))
        return pos.evolve(sl=pos.sl if pos.sl is not None else sl,
                          tp=pos.tp if pos.tp is not None else tp,
                          initial_sl=pos.initial_sl if pos.initial_sl is not None
                          else (pos.sl if pos.sl is not None else sl))

    # ------------------------------------------------------------------ commands

    async def handle(self, command: cmd.Command) -> cmd.CommandResult:
        """Run one command; raises PmguiError subclasses with a readable message."""
        if isinstance(command, cmd.SetTargets):
            return await self.commands.set_targets(command)
        if isinstance(command, cmd.ClosePosition):
            return await self.commands.close(command)
        if isinstance(command, cmd.CloseAll):
            return await self.commands.close_all(command)
        if isinstance(command, cmd.SetAutomation):
            return self.commands.set_automation(command)
        if isinstance(command, cmd.SetPreset):
            return self.commands.set_preset(command)
        if isinstance(command, cmd.OpenPosition):
            return await self.commands.open(command)
        if isinstance(command, cmd.SetSymbolRules):
            return self.commands.set_symbol_rules(command)
        if isinstance(command, cmd.AddToPosition):
            return await self.commands.add(command)
        if isinstance(command, cmd.CancelOrder):
            return await self.entries.cancel(command)
        if isinstance(command, cmd.REQUESTS):  # read-only requests → snapshots
            return await queries.answer(self, command)  # type: ignore[return-value]
        raise ValidationError(f"unknown command {type(command).__name__}")

    def apply_symbol_rules(self, stored: Mapping[str, Mapping[str, object]]) -> None:
        """Rules chosen in the app win over the config file's, symbol by symbol. A symbol's
        overrides are also under its open positions' own (`params`): a change re-resolves
        their rules now and re-aligns their exchange orders (`protection.trigger`, the
        tranches), as a restart would have — before, they kept the old rules until one."""
        before = self.settings
        symbols = dict(before.symbols)
        for symbol, spec in stored.items():
            symbols[symbol] = SymbolRules(spec.get("preset"),  # type: ignore[arg-type]
                                          frozen_map(spec.get("overrides") or {}))
        self.settings = replace(before, symbols=MappingProxyType(symbols))
        self.market.settings = self.settings
        for rt in self.book.runtimes():
            sym = rt.position.symbol
            if rt.params is not None and rt.is_open and \
                    before.overrides_for(sym) != self.settings.overrides_for(sym):
                rt.params = None
                self.protector.mark_dirty(rt, urgent=True)

    def symbol_rules(self) -> dict[str, tuple[str, dict[str, Scalar]]]:
        """Effective preset and overrides per configured symbol (for the settings dialog)."""
        return {sym: (self.settings.preset_for(sym), self.settings.overrides_for(sym))
                for sym in sorted(set(self.settings.symbols) | set(self.market.markets))}


def open_pnl(runtimes: Iterable[PositionRuntime], last: Mapping[str, Tick],
             total: float = 0.0) -> float:
    """`total` + Σ `money.position_pnl(position, its last price)` over the positions that
    have a price, in their order (the account's unrealized P/L, summed every second over the
    whole book): the same float, the usual case — plain finite floats — computed inline.
    `total`: the running sum of the slices before (`EngineCore._open_pnl`)."""
    get = last.get
    for rt in runtimes:
        p = rt.position
        tick = get(p.symbol)
        if tick is None:
            continue
        price, entry, qty, cs, fee_rate = tick.price, p.entry, p.qty, p.contract_size, p.fee_rate
        if price.__class__ is float and entry.__class__ is float and qty.__class__ is float \
                and cs.__class__ is float and fee_rate.__class__ is float \
                and price - price == 0.0 and entry - entry == 0.0 and qty - qty == 0.0 \
                and price > 0 and entry > 0 and qty > 0:
            # `money.unrealized_pnl`, its checks made above
            fees = fee_rate * (entry * qty * cs + price * qty * cs)
            v = p.side.dir * (price - entry) * qty * cs - fees
            total += v if v - v == 0.0 else 0.0
        else:
            total += money.position_pnl(p, price)
    return total


def _price_policy(params: Params) -> tuple[float, int, float]:
    """(max age, REST tries, REST backoff) of a position's prices (from the values alone)."""
    return (params.f("price.max_age"),
            params.i("price.rest_retries") if "price.rest_retries" in params else 3,
            params.f("price.rest_backoff") if "price.rest_backoff" in params else 0.5)


@dataclass(frozen=True, slots=True)
class _RuleInfo:
    spec: IndicatorSpec
    frames: dict[str, tuple[str, ...]]  # timeframe → the rules that read it
    timeframes: tuple[str, ...]
    max_age: float  # price.max_age


_new_snapshot = slot_constructor(PositionSnapshot)  # `PositionSnapshot(…)`, every field given


@dataclass(frozen=True, slots=True)
class _Closing:
    """A fill that closes a position (`EngineCore._closing_fill`): the closed position and
    the log line of a close the venue carried out (None for a close of the engine's own)."""

    pos: Position
    note: ActionTaken | None


# `dataclasses.replace` of an applied action without its per-call overhead
_action_at = slot_copier(Action, ("ts",))
_action_levels = slot_copier(Action, ("sl", "tp"))


def _unsure(exc: ExchangeError, message: str) -> ExchangeError:
    return RetryableExchangeError(message) if exc.retryable else ExchangeError(message)
