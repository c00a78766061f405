"""History, metrics and equity over a store the real engine wrote after real closes.

The engine runs on the real paper exchange (simulated time); the UI then reads the same
SQLite file read-only, as it does in the app — first while the engine is still running,
then again from a fresh window after the engine has shut down (the app reopened).
"""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QTableWidget

from pmgui.domain.enums import Side
from pmgui.domain.models import Tick
from pmgui.engine import commands as cmd
from pmgui.engine.settings import EngineSettings
from pmgui.ui.fmt import fmt_r
from pmgui.ui.history import CLOSED_COLUMNS, HistoryPanel, equity_points
from pmgui.ui.main_window import MainWindow
from pmgui.ui.runner import CommandRunner
from tests.engine_support import MARKET, SYMBOL, Harness
from tests.ui_doubles import EngineDouble

T0 = 1_700_000_000.0


async def trade_three_times(h: Harness) -> tuple[list[str], str]:
    """A breakout win (TP1, TP2, breakeven stop), a trailing-stop win, a short stopped out;
    one position left open. Returns the closed ids and the open one."""
    await h.engine.start()
    i = 0

    async def tick(*prices: float) -> None:
        nonlocal i
        for p in prices:
            i += 60
            await h.paper.deliver(Tick(SYMBOL, p, T0 + i), h.engine)
        await h.engine.refresh_account()  # what the manager thread does every few seconds

    await tick(60_000.0)
    a = await h.engine.handle(cmd.OpenPosition(SYMBOL, Side.LONG, 0.02, 10, sl=59_000.0,
                                               tp=64_000.0, preset="breakout"))
    await tick(60_500.0, 61_010.0, 61_500.0, 62_010.0, 61_000.0, 60_100.0, 60_000.0)
    b = await h.engine.handle(cmd.OpenPosition(
        SYMBOL, Side.LONG, 0.01, 5, sl=58_000.0, tp=70_000.0, preset="manual",
        overrides={"trailing.enabled": True, "trailing.mode": "fixed",
                   "trailing.distance": 0.01}))
    await tick(60_600.0, 61_000.0, 60_350.0)
    c = await h.engine.handle(cmd.OpenPosition(SYMBOL, Side.SHORT, 0.01, 5, sl=61_000.0,
                                               tp=58_000.0, preset="manual"))
    await tick(60_800.0, 61_050.0)
    d = await h.engine.handle(cmd.OpenPosition(SYMBOL, Side.LONG, 0.01, 5, sl=59_000.0,
                                               preset="manual"))
    await tick(61_100.0)
    closed = [a.position_id, b.position_id, c.position_id]
    for pid in closed:
        assert not h.store.load_position(pid).is_open
    assert d.position_id in h.engine.positions
    return closed, d.position_id


def rows_of(table: QTableWidget) -> list[list[str]]:
    return [[table.item(r, c).text() for c in range(len(CLOSED_COLUMNS))]
            for r in range(table.rowCount())]


@pytest.fixture
async def traded(db_path):
    h = Harness(db_path, [], EngineSettings(default_preset="manual", protect_throttle=0.0))
    closed, open_id = await trade_three_times(h)
    state = {"up": True}
    yield h, closed, open_id, state
    if state["up"]:
        await h.engine.shutdown()


async def test_history_after_real_closes_and_after_reopening(qtbot, traded, db_path):
    h, _closed, _open_id, state = traded
    expected = h.store.trade_metrics()
    assert expected.count == 3 and expected.tp1_hit_rate is not None

    eng = EngineDouble(db=db_path, markets={SYMBOL: MARKET})
    # while the engine still has the file
    panel = HistoryPanel(CommandRunner(eng).request, eng.market)
    qtbot.addWidget(panel)
    with qtbot.waitSignal(panel.loaded, timeout=10_000):
        assert panel.refresh()
    rows = rows_of(panel.findChild(QTableWidget, "closedTrades"))
    assert len(rows) == 3  # the open position is not history
    reasons = sorted(r[8] for r in rows)
    assert reasons == ["breakeven_stop", "stop_loss", "trailing_stop"]
    by_reason = {r[8]: r for r in rows}
    assert by_reason["stop_loss"][2] == "▼ SHORT" and by_reason["stop_loss"][6].startswith("−$")
    assert by_reason["breakeven_stop"][6].startswith("+$")
    assert by_reason["trailing_stop"][7].startswith("+")  # R of a win

    text = panel.metrics_label.text()
    assert "Trades 3 (2 won, 1 lost)" in text and "Win rate 67%" in text
    # every trade had an initial stop (an R); only the breakout trade reached TP1 and TP2
    assert "TP1 hit 33%" in text and "TP2 hit 33%" in text
    assert f"Avg R {fmt_r(expected.avg_r)}" in text
    assert "Avg hold" in text and "Breakeven 1" in text and "Trailing 1" in text
    assert "Add-ons 0" in text
    xs, ys = panel.equity_curve.getData()
    assert len(xs) >= 5 and all(y > 0 for y in ys)
    assert list(xs) == sorted(xs)

    await h.engine.shutdown()  # the app closes …
    state["up"] = False
    win = MainWindow(EngineDouble(db=db_path, markets={SYMBOL: MARKET}), start=False)
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.history.loaded, timeout=10_000):  # … and opens again
        win.history.refresh()
    again = rows_of(win.history.findChild(QTableWidget, "closedTrades"))
    assert sorted(again) == sorted(rows)
    assert win.history.metrics_label.text() == text
    logged = [win.action_log.text(r, 2) for r in range(win.action_log.rowCount())]
    assert {"tp1", "tp2", "breakeven", "breakeven_stop", "trailing_stop",
            "stop_loss"} <= set(logged)


def test_equity_points_skip_unset_clocks_and_non_numbers():
    rows = ((T0 + 60, 10_010.0), (0.0, 10_000.0), (T0, float("nan")), (T0 + 30, 10_005.0),
            (float("inf"), 1.0))
    assert equity_points(rows) == ([T0 + 30, T0 + 60], [10_005.0, 10_010.0])
