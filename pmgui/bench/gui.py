"""The GUI storm: the real main window (offscreen) with its positions fed by the real engine
on its manager thread (paper venue, SQLite on disk) during a storm.

Measured on the GUI thread: its CPU time per tick delivered to the engine, the longest gap
of a 5 ms heartbeat timer (a stall: nothing else can run meanwhile), and how far behind the
*displayed* price is: the mark column's text is read from the model as the view would paint
it, and each price names the tick it came from (`PricePath`); its lag is 0 when it is the
newest price the engine has received for that symbol, else the time since the engine received
the first newer one (the engine's own backlog is the storm bench's business, not the GUI's).

The workload is checked, not assumed: the window must have shown the storm — position
updates applied to the table, rule actions received by the log and the chart, the table
painted, displayed prices sampled.

Baseline, same storm, same process: vn.py's PositionMonitor as vn.py builds it
(`QTableWidget`, one queued signal per position event, the table re-sorted after each event,
Python cell classes; see `_vnpy_monitor_class`). The older, cheaper reduction of it (plain
items, no sorting) is run too and reported as a reference row, so the change of baseline is
visible in the results.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import math
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pmgui.bench.storm import PricePath, open_book, percentile, storm_markets, storm_symbols


@dataclass
class GuiResult:
    name: str
    rows: int
    delivered: int = 0
    wall: float = 0.0
    gui_cpu: float = 0.0  # GUI-thread CPU seconds, the measurement's own work taken out
    gaps: list[float] = field(default_factory=list)  # heartbeat intervals, s
    # per gap, the time the GUI thread sat runnable waiting for a CPU (another process or
    # thread had it: the host, not the window), s; empty where the system does not say
    waits: list[float] = field(default_factory=list)
    # per gap, the GUI thread's own CPU time in it (the heartbeat's sampling taken out), s:
    # the rest of a gap is the thread off a CPU — waiting for one (`waits`), for the
    # interpreter lock the engine's thread holds, or blocked
    cpus: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)  # displayed price lag samples, s
    samples: int = 0
    updates: int = 0  # position snapshots the view applied
    # position events sent to the view while it was measured (None: not counted — pmgui's
    # window coalesces them, the newest wins, and its price lag says whether it kept up)
    events: int | None = None
    actions: int | None = None  # rule actions the view received (None: it shows none)
    paints: int = 0  # paint events of the positions table

    @property
    def handled(self) -> float:
        """The delivered ticks whose position events the view applied: all of them, except
        for a view that applies every event (vn.py's monitor) and fell behind — its events
        queue up, and the ticks it handled are the delivered ones in the share of events it
        applied."""
        if not self.events or self.updates >= self.events:
            return float(self.delivered)
        return self.delivered * self.updates / self.events

    @property
    def cpu_per_tick(self) -> float:
        """GUI-thread CPU per tick handled. Why not per tick delivered: vn.py's monitor
        saturates the GUI thread at 2,000 ticks/s (~9.5 of 10 s), so per delivered tick its
        figure is ~10 s / delivered — the ticks still queued when the window closed credited
        to it as done, and a figure that swung 615–2,031 µs with how the engine's thread
        and the GUI thread shared the interpreter lock in the run."""
        handled = self.handled
        return self.gui_cpu / handled if handled else math.inf

    @property
    def cpu_per_delivered_tick(self) -> float:
        return self.gui_cpu / self.delivered if self.delivered else math.inf

    @property
    def max_stall(self) -> float:
        return max(self.gaps, default=math.nan)

    def stalls_over(self, s: float) -> int:
        return sum(1 for g in self.gaps if g > s)

    @property
    def own_gaps(self) -> list[float]:
        """Each gap less the time the GUI thread waited for a CPU in it: what the process
        itself held the thread for (running, or waiting for the interpreter lock). On a
        shared host the longest gaps are mostly that wait; the gaps themselves stay the
        headline (a trader on a busy machine sees them too). Empty where unknown."""
        if not self.waits or len(self.waits) != len(self.gaps):
            return []
        return [max(0.0, g - w) for g, w in zip(self.gaps, self.waits, strict=True)]

    def host_share(self) -> dict[str, float | int | None]:
        """The bench's params for the stalls less the CPU waits (empty where unknown)."""
        own = self.own_gaps
        if not own:
            return {}
        wait = self.longest_wait
        return {"stall_max_less_cpu_wait_ms": round(max(own) * 1e3, 1),
                "stalls_over_50ms_less_cpu_wait": sum(1 for g in own if g > 0.05),
                "longest_stall_cpu_wait_ms": None if wait is None else round(wait * 1e3, 1)}

    def gui_cpu_share(self) -> dict[str, float]:
        """The bench's params for the GUI thread's own CPU in the gaps (empty where unknown):
        in the longest gap, the most in any gap (the longest stretch of work the window did
        between two heartbeats, steadier than the wall figures), and what of the longest gap
        was neither that CPU nor a wait for a CPU (the interpreter lock, a block)."""
        if not self.cpus or len(self.cpus) != len(self.gaps):
            return {}
        i = max(range(len(self.gaps)), key=self.gaps.__getitem__)
        out = {"stall_max_gui_cpu_ms": round(self.cpus[i] * 1e3, 1),
               "gui_cpu_max_between_beats_ms": round(max(self.cpus) * 1e3, 1)}
        if len(self.waits) == len(self.gaps):
            rest = self.gaps[i] - self.waits[i] - self.cpus[i]
            out["stall_max_lock_or_blocked_ms"] = round(max(0.0, rest) * 1e3, 1)
        return out

    @property
    def longest_wait(self) -> float | None:
        """The CPU wait inside the longest gap (None: unknown)."""
        if not self.waits or len(self.waits) != len(self.gaps):
            return None
        return self.waits[max(range(len(self.gaps)), key=self.gaps.__getitem__)]

    def check(self) -> None:
        if self.delivered == 0:
            raise AssertionError(f"gui[{self.name}]: no tick was delivered")
        if self.rows == 0:
            raise AssertionError(f"gui[{self.name}]: the table had no rows")
        if self.updates < self.rows:
            raise AssertionError(f"gui[{self.name}]: only {self.updates} position updates "
                                 f"reached the table of {self.rows} rows")
        if self.actions == 0:
            raise AssertionError(f"gui[{self.name}]: no rule action reached the window")
        if self.paints == 0:
            raise AssertionError(f"gui[{self.name}]: the table was never painted")
        if self.samples == 0 and self.actions is not None:
            # (a baseline so far behind that it still shows only pre-storm prices has no
            # lag sample: its lag is reported as unknown, its other figures stand)
            raise AssertionError(f"gui[{self.name}]: no displayed price could be sampled")


class Offered:
    """Per symbol, the offered prices and when (written by the engine thread)."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}
        self.prices: dict[str, list[float]] = {}

    def add(self, symbol: str, price: float, at: float) -> None:
        self.times.setdefault(symbol, []).append(at)
        self.prices.setdefault(symbol, []).append(price)

    def lag(self, symbol: str, shown: float, now: float) -> float | None:
        prices = self.prices.get(symbol)
        if not prices:
            return None
        times = self.times[symbol]
        n = min(len(prices), len(times))
        for j in range(n - 1, max(-1, n - 1001), -1):
            if abs(prices[j] - shown) < 5e-7:
                return 0.0 if j == n - 1 else max(0.0, now - times[j + 1])
        return None  # shown before the storm (the opening price)


_SCHEDSTAT_FDS: dict[int, int] = {}  # native thread id → its schedstat, opened once


def _pread_holding_the_lock() -> Callable[[int, ctypes.Array, int, int], int] | None:
    """libc's pread called with the interpreter lock held (ctypes.PyDLL): Python's own file
    reads let the lock go around each system call (see `cpu_wait`)."""
    try:
        fn = ctypes.PyDLL(None).pread
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_ssize_t
    fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_long]
    return fn


_PREAD = _pread_holding_the_lock()


def cpu_wait() -> float | None:
    """Seconds the calling thread has spent runnable, waiting for a CPU (Linux schedstat;
    None elsewhere).

    Read without letting the interpreter lock go: the heartbeat reads it at every beat, and
    a read through Python's `open` let the lock go three times (open, read, close) — in a
    storm the engine's thread took it there and the GUI thread waited up to a switch interval
    for it, inside the measurement (11 such waits a second, 52 ms/s, in the GUI storm;
    perf's take_gil waits matched to the Python call they fell in), counted in the next gap.
    The thread's file is opened once (its first call) and read again from the start."""
    tid = threading.get_native_id()
    fd = _SCHEDSTAT_FDS.get(tid)
    if fd is None:
        try:
            fd = _SCHEDSTAT_FDS[tid] = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        except OSError:
            return None
    try:
        if _PREAD is not None:
            buf = ctypes.create_string_buffer(96)
            n = _PREAD(fd, buf, 95, 0)
            if n <= 0:
                raise OSError("schedstat: nothing read")
            text = buf.raw[:n]
        else:
            text = os.pread(fd, 95, 0)
        return int(text.split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        _SCHEDSTAT_FDS.pop(tid, None)  # (a thread gone: its id may come back, opened anew)
        os.close(fd)
        return None


def _parse(text: object) -> float | None:
    try:
        return float(str(text).replace("⚠", "").replace(",", "").strip())
    except ValueError:
        return None


def run_gui_storm(positions: int = 500, rate: float = 2000.0, duration: float = 10.0, *,
                  baseline: bool = False, reduced: bool = False, seed: int = 7) -> GuiResult:
    """One storm against the window, or with `baseline` against vn.py's monitor (`reduced`: the
    older, cheaper reduction of it without vn.py's per-event re-sort and cell classes)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QEvent, QEventLoop, QObject, QTimer
    from PySide6.QtWidgets import QApplication

    from pmgui.engine.core import EngineCore
    from pmgui.engine.thread import EngineThread
    from pmgui.exchange.paper import PaperExchange
    from pmgui.store.db import Store
    from pmgui.ui.collector import pinned_to_gui_thread
    from pmgui.ui.gil import short_switch_interval

    app = QApplication.instance() or QApplication([])
    symbols = storm_symbols(max(1, positions // 2))
    offered = Offered()
    # pmgui's window runs as run_gui runs it: the cyclic collector on the GUI thread only
    # (pmgui.ui.collector), the engine stopped inside; vn.py's monitor leaves CPython's own
    # (and its 5 ms switch interval, where pmgui's window runs at pmgui.ui.gil's)
    pinned = contextlib.nullcontext() if baseline else pinned_to_gui_thread(app)
    switch = contextlib.nullcontext() if baseline else short_switch_interval()
    with tempfile.TemporaryDirectory() as tmp, pinned, switch:
        db = Path(tmp) / "gui.db"

        def factory(outbox):
            store = Store.open(db)
            paper = PaperExchange(storm_markets(symbols), None, realtime=True, db=store.db,
                                  balance=1e12)
            return EngineCore(paper, store, outbox)

        engine = EngineThread(factory, db_path=db)
        engine.start()
        loop = engine._loop
        core = engine._core
        assert loop is not None and core is not None

        async def setup() -> None:
            core.store.db.conn.execute("PRAGMA synchronous = OFF")
            await open_book(core, symbols, core.exchange, time.time)
            core.store.db.conn.execute("PRAGMA synchronous = FULL")
            core.store.forget_level()  # set behind the store's back: it must not trust its own

        asyncio.run_coroutine_threadsafe(setup(), loop).result(600)
        if baseline:
            view = _VnpyMonitor(engine.outbox, faithful=not reduced)
        else:
            from pmgui.ui.main_window import MainWindow
            from pmgui.ui.positions_model import column_index

            view = MainWindow(engine)
            mark_col = column_index("mark")
        view.resize(1400, 900)
        view.show()

        def settle(done) -> None:
            deadline = time.monotonic() + 60
            while not done() and time.monotonic() < deadline:
                app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)

        # The storm starts on a ready window, as the start-up bench defines it (every position
        # listed and, for pmgui, the chart built and painted once): the window's start-up —
        # the chart is built after the first paint — is `startup.ready`'s business, not the
        # storm's.
        settle(lambda: (view.rows() if baseline else view.model.rowCount()) >= positions)
        if not baseline:
            from PySide6.QtWidgets import QWidget

            settle(lambda: (c := view.findChild(QWidget, "chart")) is not None
                   and c.isVisible())
            chart = view.findChild(QWidget, "chart")
            chart_paints = [0]

            class ChartPainted(QObject):
                def eventFilter(self, _obj, ev) -> bool:
                    if ev.type() == QEvent.Type.Paint:
                        chart_paints[0] += 1
                    return False

            probe = ChartPainted()
            target = chart.viewport() if hasattr(chart, "viewport") else chart
            target.installEventFilter(probe)
            chart.update()
            settle(lambda: chart_paints[0] > 0)
            target.removeEventFilter(probe)
        name = ("vn.py monitor (reduced)" if reduced else "vn.py PositionMonitor") if baseline \
            else "pmgui main window"
        res = GuiResult(name,
                        view.rows() if baseline else view.model.rowCount())
        counting = [False]

        class PaintCounter(QObject):
            def eventFilter(self, _obj, ev) -> bool:
                if counting[0] and ev.type() == QEvent.Type.Paint:
                    res.paints += 1
                return False

        table = view if baseline else view.positions.table
        painter = PaintCounter()
        table.viewport().installEventFilter(painter)
        if baseline:
            view.applied = view.emitted = 0
        else:
            res.actions = 0

            def on_snaps(snaps: list) -> None:
                if counting[0]:
                    res.updates += len(snaps)

            def on_actions(evs: list) -> None:
                if counting[0]:
                    res.actions += len(evs)  # type: ignore[operator]

            view.bridge.positionsChanged.connect(on_snaps)
            view.bridge.actions.connect(on_actions)
        own = [0.0]  # GUI CPU spent by the measurement itself
        last = [time.perf_counter()]
        last_cpu = [time.thread_time()]  # the GUI thread's CPU when the last beat ended
        last_wait = [cpu_wait()]
        rng = random.Random(seed)

        def beat() -> None:
            c0 = time.thread_time()
            now = time.perf_counter()
            waited = cpu_wait()
            res.gaps.append(now - last[0])
            res.cpus.append(c0 - last_cpu[0])
            last[0] = now
            if waited is not None and last_wait[0] is not None:
                res.waits.append(waited - last_wait[0])
            last_wait[0] = waited
            if len(res.gaps) % 10 == 0:  # sample the displayed prices every ~50 ms
                n = view.rows() if baseline else view.model.rowCount()
                for _ in range(min(20, n)):
                    r = rng.randrange(n)
                    if baseline:
                        sym, text = view.symbol_at(r), view.mark_text(r)
                    else:
                        m = view.model
                        sym = m.snapshot_at(r).position.symbol
                        text = m.data(m.index(r, mark_col))
                    shown = _parse(text)
                    if shown is None:
                        continue
                    lag = offered.lag(sym, shown, time.perf_counter())
                    if lag is not None:
                        res.lags.append(lag)
                        res.samples += 1
            last_cpu[0] = time.thread_time()
            own[0] += last_cpu[0] - c0

        stop = threading.Event()

        async def drive() -> int:
            path = PricePath(symbols, seed)
            pick = random.Random(seed + 1)
            from pmgui.domain.models import Tick

            t0 = time.perf_counter()
            i = 0
            while not stop.is_set():
                due = i / rate
                now = time.perf_counter() - t0
                if due > now:
                    await asyncio.sleep(due - now)
                    continue
                s = symbols[pick.randrange(len(symbols))]
                p = path.next(s)
                offered.add(s, p, time.perf_counter())  # the engine receives it now
                await core.exchange.deliver(Tick(s, p, time.time()), core)
                i += 1
                if i % 64 == 0:
                    await asyncio.sleep(0)
            return i

        heartbeat = QTimer()
        heartbeat.setInterval(5)
        heartbeat.timeout.connect(beat)
        fut = asyncio.run_coroutine_threadsafe(drive(), loop)
        cpu0 = time.thread_time()
        t0 = time.perf_counter()
        last[0] = t0
        last_wait[0] = cpu_wait()
        last_cpu[0] = time.thread_time()
        counting[0] = True
        heartbeat.start()
        ev = QEventLoop()
        QTimer.singleShot(int(duration * 1000), ev.quit)
        ev.exec()
        heartbeat.stop()
        res.wall = time.perf_counter() - t0
        res.gui_cpu = time.thread_time() - cpu0 - own[0]
        counting[0] = False
        if baseline:
            res.updates, res.events = view.applied, view.emitted
        table.viewport().removeEventFilter(painter)
        stop.set()
        res.delivered = fut.result(60)
        view.close()
        if baseline:
            view.detach()
        engine.stop()
        view.deleteLater()
        app.processEvents()
    res.check()
    return res


def _vnpy_monitor_class(faithful: bool = True):
    """vn.py's monitor, as a class built once Qt is imported.

    faithful (the baseline): vn.py's `BaseMonitor`/`PositionMonitor` mechanics as they are in
    `vnpy/trader/ui/widget.py` — one queued signal per event; per event sorting switched off and
    back on (`sorting = True`, so Qt re-sorts the table after every event); rows inserted at
    the top; cells are Python `QTableWidgetItem` subclasses (`BaseCell`, `EnumCell`,
    `DirectionCell`, `PnlCell`) centred, coloured by direction and by the sign of the PnL;
    only the columns flagged `update` are set again; alternating row colours. Columns: the
    same 16 the pmgui table shows (vn.py's PositionMonitor has no mark price, which the lag
    measurement needs).

    not faithful (the older reduced baseline, kept as a reference row): plain items, no
    sorting, every cell of the row set per event.
    """
    from PySide6.QtCore import Qt, Signal
    from PySide6.QtGui import QColor
    from PySide6.QtWidgets import QTableWidget, QTableWidgetItem

    from pmgui.domain.models import Side
    from pmgui.engine.events import PositionSnapshot

    color_long, color_short = QColor("red"), QColor("green")  # vn.py's own choice

    class BaseCell(QTableWidgetItem):
        def __init__(self, content, data) -> None:
            super().__init__()
            self.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
            self.set_content(content, data)

        def set_content(self, content, data) -> None:
            self.setText(str(content))
            self._data = data

    class EnumCell(BaseCell):
        def set_content(self, content, data) -> None:
            if content:
                super().set_content(content.value, data)

    class DirectionCell(EnumCell):
        def set_content(self, content, data) -> None:
            super().set_content(content, data)
            self.setForeground(color_short if content is Side.SHORT else color_long)

    class PnlCell(BaseCell):
        def set_content(self, content, data) -> None:
            super().set_content(content, data)
            self.setForeground(color_short if str(content).startswith("-") else color_long)

    # header → (cell type, updated on every event, value from the snapshot)
    headers = {
        "symbol": (BaseCell, False, lambda e: e.position.symbol),
        "side": (DirectionCell, False, lambda e: e.position.side),
        "qty": (BaseCell, True, lambda e: e.position.qty),
        "entry": (BaseCell, True, lambda e: e.position.entry),
        "mark": (BaseCell, True, lambda e: e.mark),
        "pnl": (PnlCell, True, lambda e: e.pnl),
        "roi": (PnlCell, True, lambda e: e.roi),
        "r": (BaseCell, True, lambda e: e.r),
        "sl": (BaseCell, True, lambda e: e.position.sl),
        "tp": (BaseCell, True, lambda e: e.position.tp),
        "trailing": (BaseCell, True, lambda e: e.position.trailing),
        "liquidation": (BaseCell, True, lambda e: e.position.liquidation),
        "preset": (BaseCell, False, lambda e: e.position.preset),
        "protection": (EnumCell, True, lambda e: e.protection),
        "stale": (BaseCell, True, lambda e: e.stale),
        "ts": (BaseCell, True, lambda e: e.ts),
    }
    names = tuple(headers)
    mark_col = names.index("mark")

    class VnpyMonitor(QTableWidget):
        signal = Signal(object)
        sorting = faithful

        def __init__(self, outbox) -> None:
            super().__init__()
            self.setColumnCount(len(names))
            self.setHorizontalHeaderLabels(list(names))
            self.verticalHeader().setVisible(False)
            self.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
            if faithful:
                self.setAlternatingRowColors(True)
            self.setSortingEnabled(self.sorting)
            self.cells: dict[str, dict[str, QTableWidgetItem]] = {}
            self.applied = 0  # events applied (the bench's workload check)
            self.emitted = 0  # events signalled to it (from the engine's thread)
            self.signal.connect(self.process_event, Qt.ConnectionType.QueuedConnection)
            self.outbox = outbox
            self._listening = True
            outbox.add_listener(self._listen)
            for ev in outbox.drain():  # positions already open
                self._listen(ev)

        def _listen(self, ev) -> None:  # engine thread: one signal per event, like vn.py
            if self._listening and isinstance(ev, PositionSnapshot):
                self.emitted += 1
                self.signal.emit(ev)

        def detach(self) -> None:
            self._listening = False

        def rows(self) -> int:
            return self.rowCount()

        def symbol_at(self, r: int) -> str:
            item = self.item(r, 0)
            return item.text() if item is not None else ""

        def mark_text(self, r: int) -> str:
            item = self.item(r, mark_col)
            return item.text() if item is not None else ""

        def process_event(self, ev: PositionSnapshot) -> None:
            self.applied += 1
            if self.sorting:
                self.setSortingEnabled(False)
            row = self.cells.get(ev.position.id)
            if row is None:
                self.insert_new_row(ev)
            elif faithful:
                for h, cell in row.items():
                    cell.set_content(headers[h][2](ev), ev)
            else:
                for h, item in row.items():
                    v = headers[h][2](ev)
                    item.setText("" if v is None else str(v))
                    if h == "pnl":
                        item.setForeground(QColor("red") if v < 0 else QColor("green"))
            if self.sorting:
                self.setSortingEnabled(True)

        def insert_new_row(self, ev: PositionSnapshot) -> None:
            self.insertRow(0)
            row = {}
            for c, (h, (cell_type, update, value)) in enumerate(headers.items()):
                if faithful:
                    cell = cell_type(value(ev), ev)
                else:
                    v = value(ev)
                    cell = QTableWidgetItem("" if v is None else str(v))
                self.setItem(0, c, cell)
                if update or not faithful:
                    row[h] = cell
            self.cells[ev.position.id] = row

    return VnpyMonitor


def _VnpyMonitor(outbox, faithful: bool = True):
    return _vnpy_monitor_class(faithful)(outbox)


def lag_percentile(res: GuiResult, q: float) -> float:
    return percentile(res.lags, q)
