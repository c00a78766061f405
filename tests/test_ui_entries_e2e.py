"""The order ticket's limit/stop entries over the real engine thread and paper exchange, acted
as a user: real key presses and clicks, the working order listed and cancelled."""

from __future__ import annotations

from PySide6.QtCore import Qt

from pmgui.ui.dialogs import OrderDialog
from pmgui.ui.main_window import MainWindow
from tests.ui_doubles import paper_engine, stored

BTC = "BTC/USDT:USDT"  # the paper venue's BTC starts near 87 500


def _ticket(win, qtbot) -> OrderDialog:
    win.act_order.trigger()
    dlg = win.dialog
    assert isinstance(dlg, OrderDialog)
    qtbot.waitExposed(dlg)
    edit = dlg.symbol.lineEdit()
    edit.selectAll()
    qtbot.keyClicks(edit, BTC)
    # the order type by keyboard, as a trader would: focus the combo, arrow down to "Limit"
    dlg.order_type.setFocus()
    qtbot.keyClick(dlg.order_type, Qt.Key.Key_Down)
    assert dlg.order_type.currentText() == "Limit"
    assert dlg.price.isEnabled() and dlg.ok_button.text() == "Place limit order"
    return dlg


def test_limit_entry_from_the_ticket_is_listed_and_cancelled(qtbot, tmp_path):
    db = tmp_path / "pmgui.db"
    with paper_engine(db, seed=11, demo_positions=False) as engine:
        win = MainWindow(engine)
        qtbot.addWidget(win)
        said: list[str] = []
        win.statusMessage.connect(said.append)
        win.show()

        # a limit buy above the market is refused with its reason; nothing rests
        dlg = _ticket(win, qtbot)
        qtbot.keyClicks(dlg.price, "150000")
        qtbot.keyClicks(dlg.qty, "0.001")
        if dlg.ok_button.isEnabled():  # the window has no BTC price yet: the engine refuses
            qtbot.mouseClick(dlg.ok_button, Qt.MouseButton.LeftButton)
            qtbot.waitUntil(lambda: "Rejected" in dlg.error.text(), timeout=20_000)
        else:
            assert "below the market" in dlg.field_errors["price"].text()
        assert "below the market" in dlg.error.text()
        assert not win.orders.orders
        dlg.reject()

        # a limit buy well below the market: it rests and is listed as a working order
        dlg = _ticket(win, qtbot)
        qtbot.keyClicks(dlg.price, "80000")
        qtbot.keyClicks(dlg.qty, "0.001")
        qtbot.keyClicks(dlg.sl, "78000")
        assert dlg.ok_button.isEnabled(), dlg.error.text()
        assert "Limit buy at" in dlg.preview.text()
        qtbot.mouseClick(dlg.ok_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: not dlg.isVisible(), timeout=20_000)
        win.orders_dock.raise_()
        qtbot.waitUntil(lambda: win.orders.table.rowCount() == 1, timeout=20_000)
        t = win.orders.table
        assert [t.item(0, c).text() for c in (0, 2)] == [BTC, "Limit"]
        assert "80,000" in t.item(0, 3).text()
        assert win.model.rowCount() == 0  # not a position until it fills
        cid = next(iter(win.orders.orders))

        # a second, bad ticket meanwhile: now the window knows the price and says why at once
        qtbot.waitUntil(lambda: win.chart.price_of(BTC) is not None, timeout=20_000)
        dlg = _ticket(win, qtbot)
        qtbot.keyClicks(dlg.price, "150000")
        qtbot.keyClicks(dlg.qty, "0.001")
        assert not dlg.ok_button.isEnabled()
        assert "below the market" in dlg.field_errors["price"].text()
        dlg.reject()

        # cancel it: select the row with a click, then the Cancel button
        rect = t.visualItemRect(t.item(0, 0))
        qtbot.mouseClick(t.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
        assert win.orders.cancel_button.isEnabled()
        qtbot.mouseClick(win.orders.cancel_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: t.rowCount() == 0, timeout=20_000)
        qtbot.waitUntil(lambda: any("canceled" in m for m in said), timeout=20_000)
        win.ask_before_quit = False
    with stored(db) as store:
        o = store.order(cid)
        assert o.status.value == "canceled" and o.role.value == "entry"
        assert not store.load_open_positions()
