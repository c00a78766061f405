"""Audit of dragging on the chart, as a trader does it: real mouse events on the plot's
viewport, the real window over the engine double (tests/ui_doubles.py)."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QApplication

from pmgui.domain.enums import Side
from pmgui.engine.commands import SetTargets
from tests.test_ui_drag import RIGHT, _fast_mouse, make  # noqa: F401
from tests.ui_doubles import position, snapshot

POS = position()  # long 0.5 BTC @ 40,000, SL 39,000, TP 42,000, 10x


def test_a_right_click_that_cancels_a_drag_opens_no_trade_menu(qtbot):
    """The right click is the drag's cancel: it must not also offer an entry at that price
    (a menu of buy/sell orders popping up under a hand that meant "stop")."""
    eng, _win, chart, mouse = make(qtbot, [snapshot(POS, 40_500.0)])
    menus: list[float] = []
    chart.tradeMenuRequested.connect(lambda price, _at: menus.append(price))
    a, b = mouse.at(42_000.0), mouse.at(41_000.0)
    mouse.move(a)
    mouse.press(a)
    mouse.move(b)
    assert chart.drag.active
    mouse.press(b, RIGHT)
    mouse.release(b, RIGHT)
    mouse.release(b)
    assert not chart.drag.active and eng.of_type(SetTargets) == []
    assert chart.line("tp").value() == pytest.approx(42_000.0)
    assert menus == []
    # a right click with no drag still offers the trade menu
    mouse.press(b, RIGHT)
    mouse.release(b, RIGHT)
    QApplication.processEvents()
    assert len(menus) == 1


def test_a_right_click_on_the_chart_opens_no_pyqtgraph_view_menu(qtbot):
    """The chart's right click is the trade menu; pyqtgraph's own view menu ("View All",
    "Mouse Mode", "Export...") must not pop up beside or under it."""
    from PySide6.QtWidgets import QMenu

    _eng, _win, chart, mouse = make(qtbot, [snapshot(POS, 40_500.0)])
    chart.tradeMenuRequested.disconnect()  # only what pyqtgraph itself opens
    b = mouse.at(41_000.0)
    mouse.move(b)
    mouse.press(b, RIGHT)
    mouse.release(b, RIGHT)
    QApplication.processEvents()
    shown = [[a.text() for a in w.actions()] for w in QApplication.topLevelWidgets()
             if isinstance(w, QMenu) and w.isVisible()]
    assert shown == []


@pytest.mark.parametrize("pos,mark,start,end,liq", [
    (POS.evolve(liquidation=36_400.0), 40_500.0, 39_000.0, 36_000.0, "36,400.0"),
    (position("s1", side=Side.SHORT, entry=40_000.0, sl=41_000.0, tp=38_000.0,
              liquidation=43_600.0), 39_500.0, 41_000.0, 43_900.0, "43,600.0"),
])
def test_a_stop_dragged_beyond_liquidation_is_refused_with_the_reason(qtbot, pos, mark, start,
                                                                      end, liq):
    """A stop past the liquidation price never fills: the venue liquidates the position
    first. The drop is refused like a level that would trigger at once: the line goes back,
    the status bar says why, nothing is sent; during the drag the tag says so."""
    eng, win, chart, mouse = make(qtbot, [snapshot(pos, mark)])
    chart.vb.setRange(yRange=(min(start, end) - 800, max(start, end) + 800), padding=0)
    QApplication.processEvents()
    a, b = mouse.at(start), mouse.at(end)
    mouse.move(a)
    mouse.press(a)
    mouse.move(a + (b - a) * 0.5)
    mouse.move(b)
    assert chart.tags["sl"].toPlainText().endswith("✖ beyond liquidation")
    mouse.release(b)
    assert eng.of_type(SetTargets) == []
    assert chart.line("sl").value() == pytest.approx(start)
    msg = win.statusBar().currentMessage()
    assert f"beyond the liquidation price {liq}" in msg and "SL not moved" in msg
    # a stop between the price and the liquidation is still a stop
    mouse.drag(start, (start + end) / 2)
    assert len(eng.of_type(SetTargets)) == 1
