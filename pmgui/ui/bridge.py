"""Bridge: drains the engine's Outbox on GUI timers and re-emits typed signals.

Why two rates: the table is read by a human (≤ 15 Hz: its prices at most ~70 ms old, and
the view stays cheap), the chart's last-price line should feel live (≤ 30 Hz). The Outbox
already coalesces per key on the engine side; the bridge drains it at the fast rate and
keeps its own "newest per key" buffer for the slow signals, so whatever is emitted is always
the newest value known — never an older price after a newer one. The table flush rides on
every n-th pump, on the event loop's next turn after its drain (`Turns`: the pump's chart and
log work and the table's update are a few ms of CPU each; in one stretch they held the window
long enough for the engine's thread to take the interpreter lock from it — a stall). The pump
itself is a turn too, ahead of the jobs waiting (its timer often came due in the same pass as
one of them). A table value is never a whole period older than the drain that brought it.

Unkeyed events (actions, errors, closed positions, corrections of closed positions) are
emitted in publish order at the fast rate and never dropped; a PositionRemoved also discards
that position's pending snapshot so a closed position is not resurrected by a late flush.

In a fast market every signal counts (a storm is hundreds of rule actions and thousands of
prices a second): prices and actions go out as *one list per pump*, not one signal each.
A pump hands on at most `MAX_LOG_PER_PUMP` actions/errors, the rest waits (in order) for the
next pump, so one pump stays short after the GUI was held up; `flush_now` hands on all.
"""

from __future__ import annotations

import sys
from collections import deque

from PySide6.QtCore import QObject, QTimer, Signal

from pmgui.engine.events import (
    AccountEvent,
    ActionTaken,
    CandlesEvent,
    ConnectionEvent,
    ErrorEvent,
    Event,
    OrderSnapshot,
    PositionCorrected,
    PositionRemoved,
    PositionSnapshot,
    TickEvent,
)
from pmgui.engine.outbox import Outbox
from pmgui.ui.fanout import Fanout
from pmgui.ui.turns import Turns

TABLE_HZ = 15.0
CHART_HZ = 30.0
MAX_LOG_PER_PUMP = 1000  # actions + errors handed on per pump; the rest waits, in order


class Bridge(QObject):
    """Outbox → signals. Lives in (and must only be used from) the GUI thread."""

    # The per-pump lists (positionsChanged, ticks, actions) are `Fanout`s, made per bridge
    # in __init__: their receivers are called in Python, without the hand-overs of the
    # interpreter lock a Qt signal makes at each slot (pmgui.ui.fanout). Each list is made
    # per emit and handed to every receiver as it is; receivers only read it.
    positionRemoved = Signal(object)  # PositionRemoved
    positionCorrected = Signal(object)  # PositionCorrected: a closed position's new numbers
    orderChanged = Signal(object)  # OrderSnapshot
    candles = Signal(object)  # CandlesEvent
    connection = Signal(object)  # ConnectionEvent
    account = Signal(object)  # AccountEvent
    error = Signal(object)  # ErrorEvent (in order with the actions around it)
    flushed = Signal()  # flush_now: everything pending was handed on (show it now)

    def __init__(self, outbox: Outbox, parent: QObject | None = None, *,
                 table_hz: float = TABLE_HZ, chart_hz: float = CHART_HZ) -> None:
        super().__init__(parent)
        self.positionsChanged = Fanout()  # list[PositionSnapshot], newest per position
        self.ticks = Fanout()  # list[TickEvent], the newest per symbol, one list per pump
        self.actions = Fanout()  # list[ActionTaken] in publish order, one list per run
        if not (0 < table_hz <= TABLE_HZ and 0 < chart_hz <= CHART_HZ):
            raise ValueError(f"rates must be in (0, {TABLE_HZ:g}] and (0, {CHART_HZ:g}] Hz")
        self.outbox = outbox
        # Pending slow-rate values, newest per key (dicts keep the newest by overwrite).
        self._positions: dict[str, PositionSnapshot] = {}
        self._orders: dict[str, OrderSnapshot] = {}
        self._connection: dict[str, ConnectionEvent] = {}
        self._account: AccountEvent | None = None
        self._removed: dict[str, float] = {}  # position id → close time: no resurrection
        self._log: deque[ActionTaken | ErrorEvent] = deque()  # waiting, in publish order
        self._chart_timer = QTimer(self)
        self._chart_timer.setInterval(max(1, round(1000 / chart_hz)))
        self._chart_timer.timeout.connect(self._pump_later)
        self._table_every = max(1, round(chart_hz / table_hz))  # pumps per table flush
        self._pumps = 0
        # the window's periodic jobs, one per event-loop turn (the table flush; the panels
        # hand theirs on too). No Qt parent: it lives while the bridge or a panel holds it
        # (a panel's timer may outlive the bridge)
        self.turns = Turns()
        self.emitted = 0  # signals emitted so far (diagnostics and benchmarks)

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self._chart_timer.start()

    def stop(self) -> None:
        self._chart_timer.stop()

    @property
    def running(self) -> bool:
        return self._chart_timer.isActive()

    # -- draining ---------------------------------------------------------------------------
    def pump(self, limit: int = MAX_LOG_PER_PUMP) -> None:
        """Fast tick: drain the Outbox; emit chart and unkeyed events; buffer table events."""
        latest_tick: dict[str, TickEvent] = {}
        latest_candles: dict[str, CandlesEvent] = {}
        positions, removed = self._positions, self._removed
        for ev in self.outbox.drain():
            # the bulk of a storm inline (prices, snapshots); the rest by `_route`
            cls = ev.__class__
            if cls is TickEvent:
                prev = latest_tick.get(ev.symbol)  # type: ignore[attr-defined]
                if prev is None or ev.ts >= prev.ts:
                    latest_tick[ev.symbol] = ev  # type: ignore[attr-defined,assignment]
            elif cls is PositionSnapshot:
                pid = ev.position.id  # type: ignore[attr-defined]
                if pid in removed and ev.ts <= removed[pid]:
                    continue
                prev_snap = positions.get(pid)
                if prev_snap is None or ev.ts >= prev_snap.ts:
                    positions[pid] = ev  # type: ignore[assignment]
            else:
                self._route(ev, latest_tick, latest_candles)
        if latest_tick:
            self._emit(self.ticks, list(latest_tick.values()))
        for c in latest_candles.values():
            self._emit(self.candles, c)
        self._hand_on_log(limit)

    def _pump_later(self) -> None:
        """The pump's timer hands the pump to the turns, ahead of the jobs waiting: its timer
        and a job's often came due in the same pass of Qt's timers, and the pump (1-5 ms of
        GUI CPU in a storm) then ran in one stretch with the job and its repaint."""
        self.turns.later("pump", self._on_timer, owner=self, first=True)

    def _on_timer(self) -> None:
        self.pump()
        self._pumps += 1
        if self._pumps % self._table_every == 0:
            self.turns.later("table", self.flush_table, first=True, owner=self)

    @property
    def waiting(self) -> int:
        """Actions and errors drained but not handed on yet (a pump's bound)."""
        return len(self._log)

    def _hand_on_log(self, limit: int) -> None:
        """Up to `limit` waiting actions/errors, in order: runs of actions as one list each,
        errors one by one between them (never dropped, never reordered)."""
        log = self._log
        run: list[ActionTaken] = []
        n = 0
        while log and n < limit:
            ev = log.popleft()
            n += 1
            if isinstance(ev, ActionTaken):
                run.append(ev)
                continue
            if run:
                self._emit(self.actions, run)
                run = []
            self._emit(self.error, ev)
        if run:
            self._emit(self.actions, run)

    def flush_table(self) -> None:
        """Slow tick: emit the newest pending table-rate values."""
        if self._positions:
            snaps, self._positions = list(self._positions.values()), {}
            self._emit(self.positionsChanged, snaps)
        if self._orders:
            orders, self._orders = list(self._orders.values()), {}
            for o in orders:
                self._emit(self.orderChanged, o)
        if self._connection:
            conns, self._connection = list(self._connection.values()), {}
            for c in conns:
                self._emit(self.connection, c)
        if self._account is not None:
            acct, self._account = self._account, None
            self._emit(self.account, acct)

    def flush_now(self) -> None:
        """Drain and emit everything pending at once (start-up, tests, before a screenshot)."""
        self.pump(limit=sys.maxsize)
        self.turns.cancel("table")
        self.flush_table()
        self.flushed.emit()

    # -- internals --------------------------------------------------------------------------
    def _route(self, ev: Event, ticks: dict[str, TickEvent],
               candles: dict[str, CandlesEvent]) -> None:
        # the bulk of a storm first: prices, snapshots, actions
        if isinstance(ev, TickEvent):
            prev = ticks.get(ev.symbol)
            if prev is None or ev.ts >= prev.ts:
                ticks[ev.symbol] = ev
        elif isinstance(ev, PositionSnapshot):
            pid = ev.position.id
            if pid in self._removed and ev.ts <= self._removed[pid]:
                return
            prev_snap = self._positions.get(pid)
            if prev_snap is None or ev.ts >= prev_snap.ts:
                self._positions[pid] = ev
        elif isinstance(ev, (ActionTaken, ErrorEvent)):
            self._log.append(ev)
        elif isinstance(ev, CandlesEvent):
            candles[ev.symbol] = ev
        elif isinstance(ev, PositionRemoved):
            self._positions.pop(ev.position.id, None)
            self._removed[ev.position.id] = ev.ts
            self._emit(self.positionRemoved, ev)
        elif isinstance(ev, PositionCorrected):
            self._emit(self.positionCorrected, ev)
        elif isinstance(ev, OrderSnapshot):
            self._orders[ev.order.client_id] = ev
        elif isinstance(ev, ConnectionEvent):
            self._connection[ev.exchange] = ev
        elif isinstance(ev, AccountEvent):
            if self._account is None or ev.ts >= self._account.ts:
                self._account = ev

    def _emit(self, signal: Signal | Fanout, value: object) -> None:
        self.emitted += 1
        signal.emit(value)  # type: ignore[attr-defined]
