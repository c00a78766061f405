"""Memory per position, resident size, the action journal, time to flat, start-up to paint."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

from pmgui.bench.storm import open_book, storm_markets, storm_symbols
from pmgui.domain.enums import ActionType, Reason
from pmgui.domain.models import Action, Position


async def _engine(n_positions: int, tmp: str, *, sync_off: bool = True):
    from pmgui.engine.core import EngineCore
    from pmgui.engine.outbox import Outbox
    from pmgui.exchange.paper import PaperExchange
    from pmgui.store.db import Store

    symbols = storm_symbols(max(1, n_positions // 2))
    store = Store.open(Path(tmp) / "m.db")
    paper = PaperExchange(storm_markets(symbols), None, realtime=True, db=store.db,
                          balance=1e12)
    core = EngineCore(paper, store, Outbox())
    await core.start()
    if sync_off:
        store.db.conn.execute("PRAGMA synchronous = OFF")
    return core, paper, symbols


@dataclass(frozen=True)
class PositionBytes:
    """Engine bytes per position, marginal from `small` to `large` positions (see
    `bytes_per_position`)."""

    own: float  # the position's own state: book, runtime, orders, store caches
    market: float  # its symbol's candles and indicator sets (a symbol per two positions here)
    venue: float  # what the simulated venue keeps (a real venue keeps that on its side)
    bare: float  # the Position values alone (the baseline)

    @property
    def engine(self) -> float:
        return self.own + self.market

    @property
    def with_venue(self) -> float:
        return self.engine + self.venue


def bytes_per_position(small: int = 50, large: int = 500) -> PositionBytes:
    """The engine's bytes per position by tracemalloc: the marginal growth from `small` to
    `large` positions, all opened through the real path and their warm-ups done (an open
    loads its symbol's rule candles and indicator sets beside it, as the first tick did
    before). Told apart by the allocating call stack: what the simulated venue allocates,
    and the symbol's market data (allocated under `pmgui/engine/marketdata.py`), which is
    per symbol and grows with the venue's history length, not with the positions."""
    async def go() -> PositionBytes:
        with tempfile.TemporaryDirectory() as tmp:
            core, paper, symbols = await _engine(large, tmp)
            await open_book(core, symbols[:small // 2], paper, time.time)
            await core.warmed_up()
            core.outbox.drain()
            gc.collect()
            tracemalloc.start(40)
            before = tracemalloc.take_snapshot()
            await open_book(core, symbols[small // 2:large // 2], paper, time.time)
            await core.warmed_up()
            core.outbox.drain()
            gc.collect()
            after = tracemalloc.take_snapshot()
            tracemalloc.stop()
            n = len(core.book) - small
            if n != large - small:
                raise AssertionError(f"memory: {n} positions opened, wanted {large - small}")

            def grown(*filters: tracemalloc.Filter) -> float:
                return sum(d.size_diff for d in after.filter_traces(filters).compare_to(
                    before.filter_traces(filters), "filename"))

            not_venue = tracemalloc.Filter(False, "*/pmgui/exchange/paper.py", all_frames=True)
            market = grown(not_venue, tracemalloc.Filter(
                True, "*/pmgui/engine/marketdata.py", all_frames=True))
            engine = grown(not_venue)
            total = grown()
            # baseline: the positions' own values alone
            tracemalloc.start()
            b0 = tracemalloc.get_traced_memory()[0]
            copies = [Position(p.id + "x", p.symbol, p.side, p.qty, p.entry, p.leverage,
                               p.opened_at, p.initial_qty, sl=p.sl, tp=p.tp,
                               initial_sl=p.initial_sl, tranches=p.tranches)
                      for p in list(core.book.values())[small:]]
            b1 = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
            bare = (b1 - b0) / len(copies)
            await core.shutdown()
            return PositionBytes(own=(engine - market) / n, market=market / n,
                                 venue=(total - engine) / n, bare=bare)

    return asyncio.run(go())


_RSS_SCRIPT = """
import asyncio, json, sys, tempfile
from pmgui.bench.misc import _engine, rss_kb
from pmgui.bench.storm import open_book
import time
n = int(sys.argv[1])
async def go():
    with tempfile.TemporaryDirectory() as tmp:
        core, paper, symbols = await _engine(n, tmp)
        base = rss_kb()
        await open_book(core, symbols, paper, time.time)
        full = rss_kb()
        assert len(core.book) == n, len(core.book)
        await core.shutdown()
        return base, full
print(json.dumps(asyncio.run(go())))
"""


def rss_kb() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def rss_at(n: int) -> tuple[float, float]:
    """(resident MB of an engine process holding `n` positions, the same process before it
    opened any): a fresh interpreter, so nothing else is counted."""
    out = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(n)], capture_output=True,
                         text=True, check=True, timeout=600)
    base, full = json.loads(out.stdout.strip().splitlines()[-1])
    return full / 1024, base / 1024


def journal_rate(seconds: float) -> tuple[float, float, int]:
    """(actions journaled per s through Store.record_action on disk, the same rows through
    bare sqlite3 with the same durability, rows written)."""
    from pmgui.store.db import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "j.db")
        a = Action(ActionType.MOVE_SL, Reason.TRAILING_STOP, "pos-1", 100.0, sl=99.0,
                   rule="trailing", ts=1.0)
        n = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            store.record_action(a, symbol="BENCH/USDT:USDT")
            n += 1
        ours = n / (time.perf_counter() - t0)
        stored = len(store.actions(limit=n + 10))
        store.close()
        if stored != n:
            raise AssertionError(f"journal: {stored} of {n} actions stored")
        conn = sqlite3.connect(Path(tmp) / "raw.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE a (id INTEGER PRIMARY KEY, pid TEXT, type TEXT, "
                     "reason TEXT, price REAL, sl REAL, rule TEXT, ts REAL, inputs TEXT)")
        m = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            conn.execute("BEGIN")
            conn.execute("INSERT INTO a (pid, type, reason, price, sl, rule, ts, inputs) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         ("pos-1", "move_sl", "trailing_stop", 100.0, 99.0, "trailing", 1.0,
                          "{}"))
            conn.execute("COMMIT")
            m += 1
        raw = m / (time.perf_counter() - t0)
        conn.close()
    return ours, raw, n


def time_to_flat(n: int = 50) -> tuple[float, float]:
    """(seconds for CloseAll of `n` positions, seconds to close them one by one), each on
    its own engine with the paper venue and SQLite on disk."""
    from pmgui.engine import commands as cmd

    async def go(all_at_once: bool) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            core, paper, symbols = await _engine(n, tmp)
            await open_book(core, symbols, paper, time.time)
            core.store.db.conn.execute("PRAGMA synchronous = FULL")
            core.store.forget_level()
            if len(core.book) != n:
                raise AssertionError(f"flat: {len(core.book)} of {n} positions opened")
            t0 = time.perf_counter()
            if all_at_once:
                res = await core.handle(cmd.CloseAll())
                if not res.ok:
                    raise AssertionError(f"flat: {res.message}")
            else:
                for pid in list(core.book):
                    await core.handle(cmd.ClosePosition(pid, 1.0))
            dt = time.perf_counter() - t0
            if len(core.book):
                raise AssertionError(f"flat: {len(core.book)} positions still open")
            await core.shutdown()
            return dt

    return asyncio.run(go(True)), asyncio.run(go(False))


# The probe runs before anything else in the spawned interpreter: it only puts an event
# filter on the QApplication (whoever creates it) and reports wall-clock times. "paint":
# the first frame of the window named "mainWindow" — at its first paint event the report
# is queued, so it runs once that frame (children included) is painted and flushed.
# "ready": then the window also shows the chart (a visible child named "chart") and lists
# positions (the table named "positionsTable" has rows), checked every 5 ms; a window
# without them (the bare baseline) is ready at its first frame. The application itself
# runs exactly as `python -m pmgui ARGS` would.
_PAINT_PROBE = """
import faulthandler, json, os, sys, time
faulthandler.enable()  # a crash of the spawned window says where, in the bench's error
from PySide6 import QtWidgets
from PySide6.QtCore import QEvent, QObject, QTimer

class _Probe(QObject):
    window = None
    times = {}
    def eventFilter(self, obj, ev):
        if (self.window is None and ev.type() == QEvent.Type.Paint and obj.isWidgetType()
                and obj.isWindow() and obj.objectName() == "mainWindow"):
            self.window = obj
            QTimer.singleShot(0, self.painted)
        return False
    def painted(self):
        self.times["paint"] = time.time()
        self.poll = QTimer()
        self.poll.timeout.connect(self.check)
        self.poll.start(5)
        self.check()
    def check(self):
        w = self.window
        table = w.findChild(QtWidgets.QTableView, "positionsTable")
        chart = w.findChild(QtWidgets.QWidget, "chart")
        if table is None or (chart is not None and chart.isVisible()
                             and table.model().rowCount() > 0):
            self.times["ready"] = time.time()
            sys.stdout.write(json.dumps(self.times) + "\\n")
            sys.stdout.flush()
            os._exit(0)

_probe = _Probe()

class _ProbedApplication(QtWidgets.QApplication):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.installEventFilter(_probe)

QtWidgets.QApplication = _ProbedApplication
"""

_PAINT_APP = _PAINT_PROBE + """
import runpy
sys.argv = ["pmgui", *sys.argv[1:]]
runpy.run_module("pmgui", run_name="__main__", alter_sys=True)
"""

_PAINT_BARE = _PAINT_PROBE + """
from PySide6.QtWidgets import QApplication, QMainWindow, QTableView
app = QApplication(sys.argv[:1])
w = QMainWindow()
w.setObjectName("mainWindow")
w.setCentralWidget(QTableView())
w.statusBar().showMessage("ready")
w.menuBar().addMenu("&Help")
w.resize(1024, 700)
w.show()
app.exec()
"""


@dataclass
class Startup:
    """Seconds from spawn, one entry per run (fresh interpreter, fresh folders)."""

    paint: list[float] = field(default_factory=list)  # pmgui's first frame
    ready: list[float] = field(default_factory=list)  # pmgui with its chart and positions
    bare: list[float] = field(default_factory=list)  # the bare PySide6 window's first frame

    @staticmethod
    def median(xs: list[float]) -> float:
        s = sorted(xs)
        n = len(s)
        return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def first_paint(runs: int = 3) -> Startup:
    """Spawn `python -m pmgui --paper` and a bare PySide6 window (a table, a status bar, a
    menu) `runs` times each, interleaved so both see the same machine, each with a fresh
    interpreter and fresh, empty config and data folders (a first start: no database):
    seconds to the first painted frame of each, and to pmgui showing its chart and the
    paper demo positions."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    env.pop("PMGUI_WINDOW_SIZE", None)

    def once(script: str, args: list[str], tmp: Path) -> tuple[float, float]:
        env["PMGUI_CONFIG_DIR"] = str(tmp / "config")
        env["PMGUI_DATA_DIR"] = str(tmp / "data")
        env["PMGUI_UI_SETTINGS"] = str(tmp / "ui.ini")
        t0 = time.time()
        out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                             text=True, env=env, timeout=120)
        lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
        if out.returncode != 0 or not lines:
            raise AssertionError(f"first paint: no painted window (exit {out.returncode}): "
                                 f"{out.stderr[-3000:]}")
        times = json.loads(lines[-1])
        if not t0 < times["paint"] <= times["ready"]:
            raise AssertionError(f"first paint: times out of order: {times} (spawn {t0})")
        return times["paint"] - t0, times["ready"] - t0

    result = Startup()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs):
            paint, ready = once(_PAINT_APP, ["--paper"], Path(tmp) / f"app{i}")
            result.paint.append(paint)
            result.ready.append(ready)
            result.bare.append(once(_PAINT_BARE, [], Path(tmp) / f"bare{i}")[0])
    return result


@dataclass
class CommandStartup:
    """Seconds from spawn to exit, one entry per run (fresh interpreter each)."""

    command: list[float] = field(default_factory=list)  # `pmgui replay --json`, a short file
    bare: list[float] = field(default_factory=list)  # the interpreter alone (`-c pass`)
    ticks: int = 0


def replay_startup(runs: int = 3, ticks: int = 1000) -> CommandStartup:
    """Spawn `python -m pmgui replay FILE --json` on a `ticks`-row tick CSV (manual preset,
    the position kept open: the file is read to its end) and a bare interpreter, `runs`
    times each, interleaved: seconds from spawn to exit of each. What a command run from
    outside pays before its first tick — the interpreter, pmgui's imports, a store in a
    temporary folder, the engine's start — plus a short file; the replay's own rate per
    tick is `replay[…]`'s (start-up removed there). Raises unless every run replayed the
    whole file and wrote its summary."""
    from pmgui.bench.rules import quiet_path, replay_file, replayed_summary

    result = CommandStartup(ticks=ticks)
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as tmp:
        env["PMGUI_CONFIG_DIR"] = str(Path(tmp) / "config")
        env["PMGUI_DATA_DIR"] = str(Path(tmp) / "data")
        args = replay_file(quiet_path(ticks), Path(tmp) / "ticks.csv", "manual")
        for _ in range(runs):
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-m", "pmgui", *args], capture_output=True,
                                 text=True, env=env, timeout=300)
            result.command.append(time.perf_counter() - t0)
            rows = [json.loads(ln) for ln in out.stdout.splitlines() if ln.strip()] \
                if out.returncode == 0 else []
            replayed_summary("replay start-up", ticks, out.returncode, rows, out.stderr)
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True, env=env, timeout=60)
            result.bare.append(time.perf_counter() - t0)
    return result
