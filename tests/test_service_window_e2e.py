"""The real window attached to a real headless engine process over a websocket on 127.0.0.1.

The engine runs as `python -m pmgui --headless --listen 127.0.0.1:PORT` in its own process
(paper venue, its own database); the window runs here, through RemoteEngine and the same
bridge as the embedded engine. Every wait is for a condition.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from multiprocessing.process import BaseProcess
from pathlib import Path

import pytest

from pmgui.engine.commands import (
    ClosePosition,
    EngineInfo,
    GetEngineInfo,
    GetHistory,
    HistorySnapshot,
    SetAutomation,
    SetTargets,
)
from pmgui.service.client import RemoteEngine
from pmgui.service.handoff import endpoint_path
from pmgui.service.tokens import TokenStore
from pmgui.store.db import Store
from pmgui.ui.main_window import MainWindow
from pmgui.ui.remote import attach_remote
from tests.engine_driver import FORKS, cli_forked


class EngineProcess:
    def __init__(self, tmp_path: Path, extra_config: str = "") -> None:
        self.dir = tmp_path
        self.db = tmp_path / "pmgui.db"
        self.config = tmp_path / "config.toml"
        self.config.write_text("[paper]\nseed = 21\n" + extra_config)
        store = TokenStore(tmp_path / "tokens.json")
        self.tokens = {s: store.create(s)[0] for s in ("read", "trade")}
        self.proc: BaseProcess | None = None
        self.starts = 0

    def start(self, qtbot, port: int = 0) -> str:
        """`pmgui --headless --listen` as a child of the fork server (tests.engine_driver
        .cli_forked): pmgui.cli's main from the start, only the imports shared (a fresh
        interpreter spent ~1.5 s of CPU on them, five starts in this file); its stdout and
        stderr go to engineN.out and engineN.log."""
        endpoint_path(self.db).unlink(missing_ok=True)
        self.starts += 1
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        log = self.dir / f"engine{self.starts}.log"
        self.proc = FORKS.Process(target=cli_forked, daemon=True, args=(
            ["--headless", "--listen", f"127.0.0.1:{port}", "--db", str(self.db),
             "--config", str(self.config)], env, os.getcwd(),
            str(self.dir / f"engine{self.starts}.out"), str(log),
            str(self.dir / f"engine{self.starts}.passes")))
        self.proc.start()
        qtbot.waitUntil(lambda: endpoint_path(self.db).exists() or not self.proc.is_alive(),
                        timeout=90_000)
        assert self.proc.is_alive(), log.read_text()
        return json.loads(endpoint_path(self.db).read_text())["url"]

    def kill(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            self.proc.kill()
            self.proc.join(30)

    def stored(self) -> dict:
        store = Store.open(self.db, readonly=True)
        try:
            return {p.id: p for p in store.load_open_positions()}
        finally:
            store.close()


@pytest.fixture
def engine_proc(tmp_path):
    ep = EngineProcess(tmp_path)
    yield ep
    ep.kill()


def attach(qtbot, url: str, token: str) -> tuple[RemoteEngine, MainWindow]:
    remote = RemoteEngine(url, token)
    remote.start(timeout=60)
    win = MainWindow(remote)
    qtbot.addWidget(win)
    attach_remote(win, remote)
    win.show()
    qtbot.waitUntil(lambda: win.model.rowCount() >= 5, timeout=60_000)
    return remote, win


def test_window_steers_a_remote_engine_and_survives_its_restart(qtbot, engine_proc):
    url = engine_proc.start(qtbot)
    port = int(url.rsplit(":", 1)[1])
    remote, win = attach(qtbot, url, engine_proc.tokens["trade"])
    try:
        assert win.remote_link.text().startswith("● engine ws://127.0.0.1")
        done: list = []
        win.runner.submit(SetAutomation(None, False), lambda r, e: done.append((r, e)))
        qtbot.waitUntil(lambda: bool(done), timeout=30_000)
        assert done[0][1] is None
        qtbot.waitUntil(lambda: all(not win.model.snapshot(pid).position.automation
                                    for pid in win.model.position_ids()), timeout=30_000)
        pid = sorted(win.model.position_ids())[0]
        pos = win.model.snapshot(pid).position
        tick = remote.market(pos.symbol).tick_size  # markets travel with the snapshots
        away = -10 if pos.side.value == "long" else 10  # a little further from the price
        new_sl = round(round(pos.sl / tick) * tick + away * tick, 10)
        done.clear()
        win.runner.submit(SetTargets(pid, sl=new_sl), lambda r, e: done.append((r, e)))
        qtbot.waitUntil(lambda: bool(done), timeout=30_000)
        res, err = done[0]
        assert err is None and res.ok, err
        # the remote engine moved it: the window shows it, the engine's store has it
        qtbot.waitUntil(lambda: win.model.snapshot(pid).position.sl == pytest.approx(new_sl),
                        timeout=30_000)
        qtbot.waitUntil(lambda: engine_proc.stored()[pid].sl == pytest.approx(new_sl),
                        timeout=30_000)

        # the engine dies: the window says so, and refuses commands instead of queueing them
        engine_proc.kill()
        qtbot.waitUntil(lambda: remote.link == "disconnected", timeout=30_000)
        qtbot.waitUntil(lambda: "DISCONNECTED" in win.remote_link.text(), timeout=10_000)
        assert "DISCONNECTED" in win.windowTitle()
        done.clear()
        win.runner.submit(ClosePosition(pid), lambda r, e: done.append((r, e)))
        qtbot.waitUntil(lambda: bool(done), timeout=10_000)
        assert done[0][0] is None and "not sent" in done[0][1]

        # it comes back on the same port: the window reconnects and shows the same state
        syncs = remote.syncs
        engine_proc.start(qtbot, port)
        qtbot.waitUntil(lambda: remote.link == "connected" and remote.syncs > syncs,
                        timeout=60_000)
        qtbot.waitUntil(lambda: win.remote_link.text().startswith("● engine"), timeout=10_000)
        stored = engine_proc.stored()
        assert pid in stored and stored[pid].sl == pytest.approx(new_sl)
        qtbot.waitUntil(lambda: set(win.model.position_ids()) == set(engine_proc.stored()),
                        timeout=30_000)
        assert win.model.snapshot(pid).position.sl == pytest.approx(new_sl)
    finally:
        win.close()
        remote.stop()


def test_two_windows_see_the_same_positions_and_a_read_only_one_cannot_close(qtbot,
                                                                             engine_proc):
    url = engine_proc.start(qtbot)
    trader, win1 = attach(qtbot, url, engine_proc.tokens["trade"])
    viewer, win2 = attach(qtbot, url, engine_proc.tokens["read"])
    try:
        assert viewer.scope == "read" and "(read-only)" in win2.remote_link.text()
        # read-only requests are answered with their snapshots over the wire
        history = viewer.submit(GetHistory()).result(60)
        assert isinstance(history, HistorySnapshot) and history.metrics is not None
        info = viewer.submit(GetEngineInfo()).result(60)
        assert isinstance(info, EngineInfo) and info.exchange == "paper" and info.presets
        qtbot.waitUntil(lambda: set(win1.model.position_ids()) == set(win2.model.position_ids())
                        and len(win1.model.position_ids()) >= 5, timeout=30_000)
        done: list = []
        win1.runner.submit(SetAutomation(None, False), lambda r, e: done.append((r, e)))
        qtbot.waitUntil(lambda: bool(done), timeout=30_000)
        pid = sorted(win2.model.position_ids())[0]
        done.clear()
        win2.runner.submit(ClosePosition(pid), lambda r, e: done.append((r, e)))
        qtbot.waitUntil(lambda: bool(done), timeout=30_000)
        res, err = done[0]
        assert res is None and "read-only" in err and "ClosePosition" in err
        # the trader's change shows in both windows; the refused close changed nothing
        pos = win1.model.snapshot(pid).position
        tick = trader.market(pos.symbol).tick_size
        new_tp = round(round(pos.tp / tick) * tick + (10 if pos.side.value == "long" else -10)
                       * tick, 10)
        done.clear()
        win1.runner.submit(SetTargets(pid, tp=new_tp), lambda r, e: done.append((r, e)))
        qtbot.waitUntil(lambda: bool(done), timeout=30_000)
        assert done[0][1] is None
        for win in (win1, win2):
            qtbot.waitUntil(lambda w=win: w.model.snapshot(pid) is not None
                            and w.model.snapshot(pid).position.tp == pytest.approx(new_tp),
                            timeout=30_000)
        assert pid in engine_proc.stored()
    finally:
        for w in (win1, win2):
            w.close()
        trader.stop()
        viewer.stop()


def test_pmgui_connect_runs_the_window_against_the_engine_process(qtbot, engine_proc, tmp_path):
    url = engine_proc.start(qtbot)
    token_file = tmp_path / "token"
    token_file.write_text(engine_proc.tokens["read"] + "\n")
    shot = tmp_path / "remote.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen",
           "PMGUI_UI_SETTINGS": str(tmp_path / "ui.ini"), "PMGUI_CONFIG_DIR": str(tmp_path),
           "PMGUI_DATA_DIR": str(tmp_path / "desk")}
    env.pop("PMGUI_TOKEN", None)
    out = subprocess.run([sys.executable, "-m", "pmgui", "--connect", url, "--token-file",
                          str(token_file), "--exit-after", "2", "--screenshot", str(shot)],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert shot.stat().st_size > 10_000
    assert "attached to the engine" in out.stderr and engine_proc.tokens["read"] not in out.stderr
    token_file.write_text("pmgui_not_a_token")
    out = subprocess.run([sys.executable, "-m", "pmgui", "--connect", url, "--token-file",
                          str(token_file)], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 1 and "refused the token" in out.stderr


def test_dragging_the_stop_in_the_remote_window_moves_it_in_the_engine_process(qtbot,
                                                                               engine_proc):
    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication

    from tests.test_ui_drag import Mouse

    url = engine_proc.start(qtbot)
    old = pg.getConfigOption("mouseRateLimit")
    pg.setConfigOption("mouseRateLimit", -1)
    remote, win = attach(qtbot, url, engine_proc.tokens["trade"])
    try:
        win.resize(1400, 900)
        qtbot.waitExposed(win)
        qtbot.waitUntil(lambda: win.selected_snapshot() is not None
                        and win.selected_snapshot().mark is not None, timeout=30_000)
        pid = win.selected_snapshot().position.id
        assert remote.submit(SetAutomation(pid, False)).result(60).ok  # no rule races the drag
        qtbot.waitUntil(lambda: not win.selected_snapshot().position.automation,
                        timeout=30_000)
        snap = win.selected_snapshot()
        pos, mark = snap.position, snap.mark
        lo, hi = min(pos.sl, pos.tp), max(pos.sl, pos.tp)
        win.chart.plot.getPlotItem().vb.setRange(
            yRange=(lo - (hi - lo) * 0.25, hi + (hi - lo) * 0.25), padding=0)
        QApplication.processEvents()
        said: list[str] = []
        win.statusMessage.connect(said.append)
        target = pos.sl + (mark - pos.sl) * 0.4  # towards the price, still a valid stop
        Mouse(win.chart).drag(pos.sl, target)
        qtbot.waitUntil(lambda: win.model.snapshot(pid) is not None
                        and win.model.snapshot(pid).position.sl != pos.sl, timeout=60_000)
        new_sl = win.model.snapshot(pid).position.sl
        market = remote.market(pos.symbol)
        assert new_sl == market.round_price(new_sl)
        assert abs(new_sl - target) < (hi - lo) * 0.05
        # the engine process has it in its store; the venue's acknowledgement reached the window
        qtbot.waitUntil(lambda: engine_proc.stored()[pid].sl == new_sl, timeout=60_000)
        qtbot.waitUntil(lambda: any(m.startswith(("✔ SL", "⚠ SL", "✖ SL")) for m in said),
                        timeout=60_000)
        assert any(m.startswith("✔ SL set to") for m in said), said
    finally:
        pg.setConfigOption("mouseRateLimit", old)
        win.close()
        remote.stop()
