"""The window over the real engine thread and the real paper exchange: a trader's session."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QToolButton

from pmgui.config import Config, PaperConfig
from pmgui.engine.build import build_engine
from pmgui.engine.settings import EngineSettings
from pmgui.store.db import Store
from pmgui.ui.main_window import MainWindow


def test_demo_positions_show_up_and_emergency_close_closes_one(qtbot, tmp_path):
    db = tmp_path / "pmgui.db"
    engine = build_engine(Config(paper=PaperConfig(seed=11),
                                 engine=EngineSettings(demo_positions=True)), db)
    engine.start()
    try:
        win = MainWindow(engine)
        qtbot.addWidget(win)
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
        qtbot.waitUntil(lambda: win.model.rowCount() == 4, timeout=20_000)
        assert "closed" in win.statusBar().currentMessage()
    finally:
        engine.stop()
    store = Store.open(db, readonly=True)
    try:
        closed = store.load_position(pid)
        assert not closed.is_open and closed.exit_reason == "manual"
        reduces = [o for o in store.linked_orders(pid) if o.role.value == "reduce"]
        assert len(reduces) == 1  # the double click sent one close
        assert len(store.load_open_positions()) == 4
    finally:
        store.close()
