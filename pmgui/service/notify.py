"""Alerts that leave the desktop, through apprise (`[notify] urls = [...]`, DESIGN §11).

What is worth a phone buzz: a position closed (reason, P/L), an emergency stop, protection
lost (a position unprotected or only locally protected), market data or the order stream
down or stale beyond `stale_after`, engine/exchange errors, and a daily summary.

The engine calls `on_event` on its own thread: it only classifies and enqueues (bounded,
never blocks). A worker thread sends, so a slow or unreachable notification service never
delays the engine. Each alert has a key: the same key is sent again at most every
`min_interval` seconds (de-duplication), and at most `max_per_hour` alerts go out per hour
(rate limit); what is held back is counted in `suppressed`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pmgui.domain.enums import Protection
from pmgui.engine.events import (
    ActionTaken,
    ConnectionEvent,
    ErrorEvent,
    PositionCorrected,
    PositionRemoved,
    PositionSnapshot,
)
from pmgui.service.settings import NotifyConfig

log = logging.getLogger("pmgui.notify")


@dataclass(frozen=True, slots=True)
class Alert:
    key: str
    title: str
    body: str
    level: str = "info"  # info | success | warning | failure (apprise's notify types)


def _money(v: float | None) -> str:
    return "?" if v is None else f"{v:+,.2f}"


class Notifier:
    def __init__(self, config: NotifyConfig, *, send: Callable[[Alert], bool] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self._send = send or self._apprise_sender(config.urls)
        self._queue: queue.Queue[Alert | None] = queue.Queue(maxsize=200)
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._sent_times: deque[float] = deque()
        self.sent = 0
        self.suppressed = 0
        self.failed = 0
        # state for the derived alerts
        self._protection: dict[str, Protection] = {}
        self._symbols: dict[str, str] = {}
        self._conn: ConnectionEvent | None = None
        self._conn_at = 0.0
        self._down_since: dict[str, float] = {}
        self._stale_told: set[str] = set()
        # position id → (ts, symbol, pnl) of the closes for the daily summary (a correction
        # of a closed position's P/L replaces its entry's)
        self._closed_today: dict[str, tuple[float, str, float]] = {}
        self._summary_day: str | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @staticmethod
    def _apprise_sender(urls: tuple[str, ...]) -> Callable[[Alert], bool]:
        import apprise

        ap = apprise.Apprise()
        for u in urls:
            if not ap.add(u):
                log.error("notify: apprise does not understand one of the [notify] urls")
        types = {"info": apprise.NotifyType.INFO, "success": apprise.NotifyType.SUCCESS,
                 "warning": apprise.NotifyType.WARNING, "failure": apprise.NotifyType.FAILURE}

        def send(alert: Alert) -> bool:
            return bool(ap.notify(title=alert.title, body=alert.body,
                                  notify_type=types.get(alert.level, apprise.NotifyType.INFO)))

        return send

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="pmgui-notify", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        if self._thread is not None:
            self._thread.join(timeout)

    def _work(self) -> None:
        while True:
            try:
                alert = self._queue.get(timeout=1.0)
            except queue.Empty:
                alert = None
            if alert is not None:
                try:
                    ok = self._send(alert)
                except Exception as e:  # a broken notification service is not the engine's
                    log.warning("notify: sending %r failed: %s", alert.title, e)
                    ok = False
                if ok:
                    self.sent += 1
                else:
                    self.failed += 1
            elif self._stopping.is_set() and self._queue.empty():
                return
            try:
                self.check()
            except Exception:
                log.exception("notify: periodic check failed")

    # -- alerts --------------------------------------------------------------------------------
    def alert(self, alert: Alert) -> bool:
        """Queue `alert` unless a duplicate was sent recently or the hourly budget is spent."""
        now = self.clock()
        with self._lock:
            last = self._last.get(alert.key)
            if last is not None and now - last < self.config.min_interval:
                self.suppressed += 1
                return False
            while self._sent_times and now - self._sent_times[0] >= 3600:
                self._sent_times.popleft()
            if len(self._sent_times) >= self.config.max_per_hour:
                self.suppressed += 1
                return False
            self._last[alert.key] = now
            self._sent_times.append(now)
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            self.suppressed += 1
            return False
        return True

    def on_event(self, ev: Any) -> None:
        """Outbox listener (manager thread): classify, never block."""
        if isinstance(ev, PositionRemoved):
            p = ev.position
            pnl = p.realized_pnl
            with self._lock:
                self._closed_today[p.id] = (p.closed_at or ev.ts, p.symbol, pnl)
                self._protection.pop(p.id, None)
            self.alert(Alert(f"close:{p.id}", f"pmgui: {p.symbol} closed",
                             f"{p.symbol} {p.side.value} closed @ {p.exit_price} "
                             f"({p.exit_reason or 'closed'}), P/L {_money(pnl)}",
                             "success" if pnl >= 0 else "warning"))
        elif isinstance(ev, PositionCorrected):  # the summary's P/L, no alert of its own
            p = ev.position
            with self._lock:
                if p.id in self._closed_today:
                    ts, symbol, _old = self._closed_today[p.id]
                    self._closed_today[p.id] = (ts, symbol, p.realized_pnl)
        elif isinstance(ev, ActionTaken):
            if str(ev.action.reason.value).startswith("emergency_stop"):
                a = ev.action
                self.alert(Alert(f"emergency:{a.position_id}",
                                 f"pmgui: EMERGENCY STOP {ev.symbol}",
                                 f"{ev.symbol}: {a.reason.value.replace('_', ' ')} at {a.price} "
                                 f"{'' if ev.ok else '(FAILED: ' + ev.detail + ')'}".strip(),
                                 "failure"))
        elif isinstance(ev, PositionSnapshot):
            self._on_snapshot(ev)
        elif isinstance(ev, ConnectionEvent):
            with self._lock:
                self._conn, self._conn_at = ev, time.monotonic()
        elif isinstance(ev, ErrorEvent):
            self.alert(Alert(f"error:{ev.message[:80]}", "pmgui: engine error", ev.message,
                             "failure"))

    def _on_snapshot(self, snap: PositionSnapshot) -> None:
        p = snap.position
        with self._lock:
            before = self._protection.get(p.id)
            self._protection[p.id] = snap.protection
            self._symbols[p.id] = p.symbol
        if snap.protection == before or snap.protection == Protection.ON_EXCHANGE:
            return
        if snap.protection == Protection.UNPROTECTED:
            self.alert(Alert(f"unprotected:{p.id}", f"pmgui: {p.symbol} UNPROTECTED",
                             f"{p.symbol} {p.side.value} {p.qty:g} has no stop on the exchange "
                             "and no local rule guarding it", "failure"))
        elif snap.protection == Protection.LOCAL_ONLY and before is not None:
            self.alert(Alert(f"local_only:{p.id}", f"pmgui: {p.symbol} protection lost",
                             f"{p.symbol}: the stop is no longer on the exchange; only pmgui's "
                             "rules guard the position now", "warning"))

    def check(self) -> None:
        """Time-based alerts: stale streams, the daily summary (called by the worker)."""
        now = self.clock()
        with self._lock:
            conn, conn_at = self._conn, self._conn_at
        if conn is not None:
            age = (conn.last_tick_age + time.monotonic() - conn_at
                   if conn.last_tick_age is not None else None)
            states = {"market data": conn.market_data and (age is None or
                                                           age <= self.config.stale_after),
                      "order stream": conn.orders}
            for name, up in states.items():
                if up:
                    self._down_since.pop(name, None)
                    self._stale_told.discard(name)
                    continue
                since = self._down_since.setdefault(name, now)
                if now - since >= self.config.stale_after and name not in self._stale_told:
                    self._stale_told.add(name)
                    self.alert(Alert(f"stale:{name}", f"pmgui: {name} down",
                                     f"{conn.exchange}: {name} down or stale for "
                                     f"{now - since:.0f} s {conn.detail}".strip(), "failure"))
        self._daily_summary(now)

    def _daily_summary(self, now: float) -> None:
        at = self.config.daily_summary
        if not at:
            return
        t = time.localtime(now)
        hh, mm = (int(x) for x in at.split(":"))
        day = time.strftime("%Y-%m-%d", t)
        if (t.tm_hour, t.tm_min) < (hh, mm) or self._summary_day == day:
            return
        if self._summary_day is None and (t.tm_hour, t.tm_min) > (hh, mm + 1):
            self._summary_day = day  # started after today's summary time: from tomorrow
            return
        self._summary_day = day
        self.alert(self.summary(now))

    def summary(self, now: float) -> Alert:
        midnight = time.mktime((*time.localtime(now)[:3], 0, 0, 0, 0, 0, -1))
        with self._lock:
            self._closed_today = {pid: c for pid, c in self._closed_today.items()
                                  if c[0] >= midnight}
            closes = list(self._closed_today.values())
            open_n = len(self._protection)
            unprotected = sum(1 for v in self._protection.values()
                              if v != Protection.ON_EXCHANGE)
        total = sum(c[2] for c in closes)
        wins = sum(1 for c in closes if c[2] > 0)
        day = time.strftime("%Y-%m-%d", time.localtime(now))
        body = (f"{len(closes)} closed today ({wins} won), realized P/L {_money(total)}; "
                f"{open_n} open, {unprotected} not protected on the exchange")
        return Alert(f"summary:{day}", f"pmgui: daily summary {day}", body, "info")
