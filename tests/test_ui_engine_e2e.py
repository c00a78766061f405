"""The window over the real engine thread and the real paper exchange: a trader's session."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QToolButton

from pmgui.ui.main_window import MainWindow
from tests.ui_doubles import paper_engine, stored


def test_demo_positions_show_up_and_emergency_close_closes_one(qtbot, tmp_path):
    db = tmp_path / "pmgui.db"
    with paper_engine(db, seed=11, demo_positions=True) as engine:
        win = MainWindow(engine)
        qtbot.addWidget(win)
        said: list[str] = []  # a hovered tool button's status tip may replace the message
        win.statusMessage.connect(said.append)
        win.show()
        qtbot.waitUntil(lambda: win.model.rowCount() >= 5, timeout=20_000)
        qtbot.waitUntil(lambda: win.selected_position_id() is not None, timeout=5_000)
        pid = win.selected_position_id()
        btn = win.toolbar.findChild(QToolButton, "emergencyClose")
        qtbot.mouseClick(btn, Qt.MouseButton.LeftButton)
        dlg = win.confirm_dialog
        assert dlg is not None and dlg.isVisible()
        qtbot.mouseClick(dlg.confirm_button, Qt.MouseButton.LeftButton)
        qtbot.mouseClick(dlg.confirm_button, Qt.MouseButton.LeftButton)  # a double click
        qtbot.waitUntil(lambda: win.model.snapshot(pid) is None, timeout=20_000)
        qtbot.waitUntil(lambda: any("closed" in m and "✔" in m for m in said), timeout=20_000)
        (done,) = [m for m in said if "closed" in m and "✔" in m]
        assert "filled" in done and "realized" in done  # the closing fill and its P/L
        # the closed position's row is gone and nothing else took its selection
        assert win.selected_position_id() is None
        win.ask_before_quit = False
    with stored(db) as store:
        closed = store.load_position(pid)
        assert not closed.is_open and closed.exit_reason == "manual"
        reduces = [o for o in store.linked_orders(pid) if o.role.value == "reduce"]
        assert len(reduces) == 1  # the double click sent one close
        assert pid not in {p.id for p in store.load_open_positions()}


def test_drag_sl_on_the_chart_moves_the_stop_in_engine_store_and_exchange(qtbot, tmp_path):
    from PySide6.QtWidgets import QApplication

    from tests.test_ui_drag import Mouse, every_mouse_move

    db = tmp_path / "pmgui.db"
    with paper_engine(db, seed=5, demo_positions=True) as engine, every_mouse_move():
        win = MainWindow(engine)
        qtbot.addWidget(win)
        win.resize(1400, 900)
        win.show()
        qtbot.waitExposed(win)
        qtbot.waitUntil(lambda: win.model.rowCount() >= 5, timeout=20_000)
        qtbot.waitUntil(lambda: win.selected_snapshot() is not None
                        and win.selected_snapshot().mark is not None, timeout=10_000)
        snap = win.selected_snapshot()
        pos = snap.position
        # pause automation so no trailing move races the trader's drag
        from pmgui.engine.commands import SetAutomation
        engine.submit(SetAutomation(pos.id, False)).result(10)
        qtbot.waitUntil(lambda: not win.selected_snapshot().position.automation, timeout=5_000)
        pos = win.selected_snapshot().position
        mark = win.selected_snapshot().mark
        lo, hi = min(pos.sl, pos.tp), max(pos.sl, pos.tp)
        vb = win.chart.plot.getPlotItem().vb
        vb.setRange(yRange=(lo - (hi - lo) * 0.25, hi + (hi - lo) * 0.25), padding=0)
        QApplication.processEvents()
        target = pos.sl + (mark - pos.sl) * 0.4  # towards the price, still a valid stop
        said: list[str] = []
        win.statusMessage.connect(said.append)
        Mouse(win.chart).drag(pos.sl, target)
        market = engine.market(pos.symbol)

        def moved() -> bool:
            cur = win.model.snapshot(pos.id)
            return cur is not None and cur.position.sl != pos.sl

        qtbot.waitUntil(moved, timeout=10_000)
        new_sl = win.model.snapshot(pos.id).position.sl
        assert new_sl == market.round_price(new_sl)
        assert abs(new_sl - target) < (hi - lo) * 0.05
        orders = engine.query(lambda core: [o for o in core.orders.values()
                                            if o.position_id == pos.id
                                            and o.role.value == "stop_loss"]).result(10)
        assert [o.trigger_price for o in orders] == [new_sl]  # the exchange order moved
        # the venue acknowledged the new stop: the command's outcome says so, and only then ✔
        qtbot.waitUntil(lambda: any(m.startswith(("✔ SL", "⚠ SL", "✖ SL")) for m in said),
                        timeout=10_000)
        assert any(m.startswith("✔ SL set to") for m in said), said
    with stored(db) as store:
        assert store.load_position(pos.id).sl == new_sl
