"""Start-up (issue 9): `pmgui` paints a real, usable window before anything heavy is
imported or started; the chart and the engine follow right after that first frame.

What is checked is what is loaded and built, never how long it took (the bench measures
that: `python -m pmgui.bench --only startup`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pmgui.config import default_config
from pmgui.domain.errors import PmguiError
from pmgui.engine.commands import EngineInfo, GetEngineInfo
from pmgui.launch import EngineLauncher

ROOT = Path(__file__).resolve().parents[1]

# Nothing of these may be loaded when the window's first frame is painted: the chart's
# plotting library, the venue and store libraries, the asyncio loop, alerts, the keyring.
HEAVY = ("pyqtgraph", "numpy", "pandas", "ccxt", "sqlite_utils", "sqlite3", "aiohttp",
         "apprise", "keyring", "asyncio", "qasync", "pmgui.engine.core", "pmgui.store",
         "pmgui.exchange.paper", "pmgui.ui.chart")

# Runs `python -m pmgui ARGS` unchanged, with an event filter on its QApplication: at the
# main window's first paint it notes what is loaded and what the window holds, then waits
# (a Qt timer, no sleeping) until the chart is built and the engine's positions are listed.
PROBE = r"""
import json, os, sys
from PySide6 import QtWidgets
from PySide6.QtCore import QEvent, QObject, QTimer

HEAVY = json.loads(os.environ["PROBE_HEAVY"])
report = {}

def loaded():
    return sorted(m for m in HEAVY if m in sys.modules)

def contents(w):
    table = w.findChild(QtWidgets.QTableView, "positionsTable")
    chart = w.findChild(QtWidgets.QWidget, "chart")
    return {"loaded": loaded(), "visible": w.isVisible(),
            "table": table is not None and table.isVisible(),
            "columns": table.model().columnCount() if table is not None else 0,
            "rows": table.model().rowCount() if table is not None else 0,
            "status_bar": w.statusBar().isVisible(),
            "menus": [a.text() for a in w.menuBar().actions()],
            "toolbar": [a.objectName() for a in w.findChild(QtWidgets.QToolBar).actions()
                        if a.objectName()],
            "chart": chart is not None and chart.isVisible()}

class Probe(QObject):
    window = None
    def eventFilter(self, obj, ev):
        if (self.window is None and ev.type() == QEvent.Type.Paint and obj.isWidgetType()
                and obj.isWindow() and obj.objectName() == "mainWindow"):
            self.window = obj
            report["first_frame"] = contents(obj)
            self.poll = QTimer()
            self.poll.timeout.connect(self.check)
            self.poll.start(20)
        return False
    def check(self):
        now = contents(self.window)
        if now["chart"] and now["rows"] > 0:
            report["ready"] = now
            print(json.dumps(report), flush=True)
            os._exit(0)

probe = Probe()

class ProbedApplication(QtWidgets.QApplication):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.installEventFilter(probe)

QtWidgets.QApplication = ProbedApplication
import runpy
sys.argv = ["pmgui", *sys.argv[1:]]
try:
    runpy.run_module("pmgui", run_name="__main__", alter_sys=True)
finally:
    print(json.dumps(report), flush=True)
"""


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(ROOT),
            "PMGUI_CONFIG_DIR": str(tmp_path / "config"),
            "PMGUI_DATA_DIR": str(tmp_path / "data"),
            "PMGUI_UI_SETTINGS": str(tmp_path / "ui.ini"),
            "PROBE_HEAVY": json.dumps(HEAVY)}


def test_first_frame_is_a_usable_window_painted_before_anything_heavy(tmp_path):
    r = subprocess.run([sys.executable, "-c", PROBE, "--paper", "--exit-after", "120"],
                       capture_output=True, text=True, env=_env(tmp_path), timeout=300,
                       cwd=tmp_path)
    report = json.loads(r.stdout.strip().splitlines()[-1])
    first = report["first_frame"]
    assert first["loaded"] == [], f"imported before the first frame: {first['loaded']}"
    # a real window from the first frame: the table with its columns, the status bar, the
    # menu and the toolbar's actions
    assert first["visible"] and first["table"] and first["columns"] >= 10
    assert first["status_bar"] and first["menus"] == ["&View", "&Help"]
    assert {"emergencyClose", "closeAll", "newOrder"} <= set(first["toolbar"])
    # then the chart is built into it and the engine starts and lists the demo positions
    ready = report.get("ready")
    assert ready is not None, f"never got the chart and the positions: {r.stderr[-2000:]}"
    assert ready["chart"] and ready["rows"] > 0
    assert {"pyqtgraph", "pmgui.engine.core", "pmgui.store"} <= set(ready["loaded"])


def test_a_failed_engine_start_closes_the_window_and_says_why(tmp_path):
    db = tmp_path / "not-a-database.db"
    db.write_bytes(b"this is not an SQLite file" * 100)
    r = subprocess.run([sys.executable, "-m", "pmgui", "--paper", "--db", str(db),
                        "--exit-after", "120"], capture_output=True, text=True,
                       env=_env(tmp_path), timeout=300, cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("pmgui: error: ") and "database" in last, last
    assert "Traceback" not in r.stderr


# -- the launcher on its own (the real paper engine) ------------------------------------------

def _paper_launcher(tmp_path: Path, **kw) -> EngineLauncher:
    from pmgui.engine.build import build_engine

    config = default_config()
    db = tmp_path / "launch.db"
    return EngineLauncher(config.exchange.id, db,
                          lambda outbox: build_engine(config, db, outbox), **kw)


def test_commands_sent_before_the_engine_started_are_answered_once_it_is(tmp_path):
    started = []
    launcher = _paper_launcher(tmp_path, started=started.append)
    try:
        assert launcher.market("BTC/USDT:USDT") is None and not launcher.running
        early = [launcher.submit(GetEngineInfo()) for _ in range(3)]
        assert not any(f.done() for f in early)  # waiting, not refused
        launcher.start_in_background()
        answers = [f.result(timeout=120) for f in early]
        assert all(isinstance(a, EngineInfo) and a.exchange == "paper" for a in answers)
        assert launcher.wait_started(120) and launcher.running
        assert started == [launcher.engine]
        assert launcher.market("BTC/USDT:USDT") is not None
        assert isinstance(launcher.submit(GetEngineInfo()).result(timeout=120), EngineInfo)
        assert launcher.outbox is launcher.engine.outbox  # the window's outbox is the engine's
    finally:
        launcher.stop()
    assert not launcher.running and launcher.error is None


def test_a_failed_start_fails_the_waiting_commands_and_is_reported(tmp_path):
    failures: list[BaseException] = []

    def refuse(engine) -> None:
        raise PmguiError("the venue refused the key")

    launcher = _paper_launcher(tmp_path, start=refuse)
    early = launcher.submit(GetEngineInfo())
    launcher.start_in_background(on_failed=failures.append)
    with pytest.raises(PmguiError, match="refused the key"):
        early.result(timeout=120)
    assert launcher.wait_started(120)
    assert [str(e) for e in failures] == ["the venue refused the key"]
    assert isinstance(launcher.startup_error, PmguiError)
    late = launcher.submit(GetEngineInfo())
    with pytest.raises(PmguiError):
        late.result(timeout=1)
    launcher.stop()  # nothing started: nothing to stop, no error


def test_stopped_before_its_start_the_waiting_commands_fail(tmp_path):
    launcher = _paper_launcher(tmp_path)  # e.g. the window closed before its first frame
    pending = launcher.submit(GetEngineInfo())
    launcher.stop()
    assert not launcher.wait_started(0)
    with pytest.raises(PmguiError, match="not running"):
        pending.result(timeout=1)
    with pytest.raises(PmguiError, match="not running"):
        launcher.submit(GetEngineInfo()).result(timeout=1)
    assert launcher.startup_error is None  # not a failed start: nothing to report


def test_a_live_exchange_id_is_checked_without_importing_ccxt(tmp_path):
    """The config is read before the window shows: ccxt (most of a second to import) is
    not loaded to validate `exchange.id`, and the ids accepted are exactly ccxt's."""
    cfg = tmp_path / "config.toml"
    cfg.write_text('[exchange]\nid = "binanceusdm"\n', encoding="utf-8")
    bad = tmp_path / "bad.toml"
    bad.write_text('[exchange]\nid = "binanceusdmx"\n', encoding="utf-8")
    code = (
        "import json, sys\n"
        "from pmgui.config import ccxt_exchange_ids, load_config\n"
        "from pmgui.domain.errors import ConfigError\n"
        f"cfg = load_config(__import__('pathlib').Path({str(cfg)!r}))\n"
        "try:\n"
        f"    load_config(__import__('pathlib').Path({str(bad)!r})); refused = ''\n"
        "except ConfigError as e:\n"
        "    refused = str(e)\n"
        "loaded = 'ccxt' in sys.modules\n"
        "ids = sorted(ccxt_exchange_ids())\n"
        "import ccxt\n"
        "print(json.dumps([cfg.exchange.id, refused, loaded, ids == sorted(ccxt.exchanges)]))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=_env(tmp_path), timeout=300, cwd=tmp_path)
    exchange, refused, loaded, same = json.loads(r.stdout.strip().splitlines()[-1])
    assert exchange == "binanceusdm" and not loaded and same
    assert "exchange.id" in refused and "binanceusdmx" in refused


def test_the_startup_bench_times_spawn_to_the_window_and_beside_a_bare_one():
    from pmgui.bench.misc import Startup, first_paint

    r = first_paint(1)  # raises unless each spawn painted its window named mainWindow
    assert len(r.paint) == len(r.ready) == len(r.bare) == 1
    assert 0 < r.paint[0] <= r.ready[0] and r.bare[0] > 0  # ready: chart and rows, later
    assert Startup.median([3.0, 1.0, 2.0]) == 2.0 and Startup.median([4.0, 1.0]) == 2.5


def test_the_replay_startup_bench_times_the_whole_command_beside_a_bare_interpreter():
    from pmgui.bench.misc import replay_startup

    r = replay_startup(1, ticks=200)  # raises unless the file was replayed to its end
    assert r.ticks == 200 and len(r.command) == len(r.bare) == 1
    assert r.command[0] > 0 and r.bare[0] > 0
