"""Drag SL/TP lines with real mouse events on the chart viewport (as a user would)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pyqtgraph as pg
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

from pmgui.domain.enums import ActionType, Reason, Side
from pmgui.domain.errors import ValidationError
from pmgui.engine.commands import (
    KEEP,
    CommandResult,
    OpenPosition,
    ProtectionOutcome,
    SetTargets,
)
from pmgui.ui.chart_state import LineState
from pmgui.ui.dialogs import OrderDialog
from pmgui.ui.main_window import UiSettings
from tests.ui_doubles import (
    BTC,
    ETH,
    T0,
    EngineDouble,
    action,
    candles,
    candles_event,
    position,
    shown_window,
    snapshot,
    tick,
)

NO_MOD = Qt.KeyboardModifier.NoModifier
LEFT = Qt.MouseButton.LeftButton
RIGHT = Qt.MouseButton.RightButton


@contextlib.contextmanager
def every_mouse_move() -> Iterator[None]:
    """pyqtgraph delivers every synthetic mouse move (no rate limit) until the end."""
    old = pg.getConfigOption("mouseRateLimit")
    pg.setConfigOption("mouseRateLimit", -1)
    try:
        yield
    finally:
        pg.setConfigOption("mouseRateLimit", old)


@pytest.fixture(autouse=True)
def _fast_mouse():
    with every_mouse_move():
        yield


def _send(w, kind, pos: QPoint, button, buttons, mods=NO_MOD) -> None:
    local = QPointF(pos)
    ev = QMouseEvent(kind, local, QPointF(w.mapToGlobal(pos)), button, buttons, mods)
    QApplication.sendEvent(w, ev)


class Mouse:
    """Press / move / release on the plot's viewport at data coordinates."""

    def __init__(self, chart) -> None:
        self.chart = chart
        self.vp = chart.plot.viewport()
        self.buttons = Qt.MouseButton.NoButton

    def at(self, y: float, x_frac: float = 0.5) -> QPoint:
        vb = self.chart.plot.getPlotItem().vb
        (x0, x1), _ = vb.viewRange()
        scene = vb.mapViewToScene(QPointF(x0 + (x1 - x0) * x_frac, y))
        return self.chart.plot.mapFromScene(scene)

    def move(self, p: QPoint, mods=NO_MOD) -> None:
        _send(self.vp, QEvent.Type.MouseMove, p, Qt.MouseButton.NoButton, self.buttons, mods)

    def press(self, p: QPoint, button=LEFT, mods=NO_MOD) -> None:
        self.buttons |= button
        _send(self.vp, QEvent.Type.MouseButtonPress, p, button, self.buttons, mods)

    def release(self, p: QPoint, button=LEFT, mods=NO_MOD) -> None:
        self.buttons &= ~button
        _send(self.vp, QEvent.Type.MouseButtonRelease, p, button, self.buttons, mods)

    def drag(self, y0: float, y1: float, mods=NO_MOD, steps: int = 4) -> None:
        a, b = self.at(y0), self.at(y1)
        self.move(a, mods)
        self.press(a, LEFT, mods)
        for i in range(1, steps + 1):
            self.move(a + (b - a) * (i / steps), mods)
        self.release(b, LEFT, mods)


POS = position()  # long 0.5 BTC @ 40,000, SL 39,000, TP 42,000, 10x
SHORT = position("s1", ETH.symbol, Side.SHORT, qty=3.0, entry=3000.0, sl=3100.0, tp=2800.0,
                 leverage=5.0)


def on_exchange(cmd):
    """What the engine answers when the venue acknowledged the new protective order."""
    outs = tuple(ProtectionOutcome(role, getattr(cmd, role), "on_exchange")
                 for role in ("sl", "tp") if getattr(cmd, role) != KEEP)
    return CommandResult(True, "ok", cmd.position_id, outcomes=outs)


def make(qtbot, snaps, settings: UiSettings | None = None, answer=None):
    eng = EngineDouble(answer=answer)
    win = shown_window(qtbot, eng, size=(1400, 900), settings=settings or UiSettings())
    for s in snaps:
        eng.outbox.publish(s)
    sym = snaps[0].position.symbol
    eng.outbox.publish(candles_event(sym, candles(30, start=snaps[0].position.entry,
                                                  step=snaps[0].position.entry / 4000)))
    eng.outbox.publish(tick(sym, snaps[0].mark, T0))
    win.bridge.flush_now()
    chart = win.chart
    p = snaps[0].position
    levels = [v for v in (p.sl, p.tp, p.entry) if v is not None]
    lo, hi = min(levels), max(levels)
    pad = (hi - lo) * 0.25
    chart.plot.getPlotItem().vb.setRange(yRange=(lo - pad, hi + pad), padding=0)
    QApplication.processEvents()
    return eng, win, chart, Mouse(chart)


def test_drag_sl_sends_one_snapped_set_targets_and_shows_the_confirmed_level(qtbot):
    eng, win, chart, mouse = make(qtbot, [snapshot(POS, 40_500.0)], answer=on_exchange)
    sl = chart.line("sl")
    labels = []
    chart.plot.scene().sigMouseMoved.connect(lambda _p: labels.append(sl.label.toPlainText()))
    mouse.drag(39_000.0, 39_523.37)
    cmds = eng.of_type(SetTargets)
    assert len(cmds) == 1
    cmd = cmds[0]
    assert cmd.position_id == "p1" and cmd.tp == KEEP
    assert cmd.sl == BTC.round_price(cmd.sl)  # snapped to the 0.1 tick
    assert abs(cmd.sl - 39_523.37) < 60  # where the mouse went (within a few pixels)
    # during the drag the label showed level and consequence
    assert any(t.startswith("SL 39,") and "%" in t and "$" in t and "R" in t for t in labels)
    # the venue confirmed: the line stays at the new level until the next snapshot…
    assert sl.value() == pytest.approx(cmd.sl)
    assert "✔ on exchange" in sl.label.toPlainText()
    assert "SL set to" in win.statusBar().currentMessage()
    # …which then decides (the engine confirmed a slightly different level)
    eng.outbox.publish(snapshot(POS.evolve(sl=39_520.0), 40_500.0, T0 + 1))
    win.bridge.flush_now()
    assert sl.value() == pytest.approx(39_520.0)
    assert "✔" not in sl.label.toPlainText()


def test_consequence_label_format():
    from pmgui.ui.chart import DragContext, consequence
    ctx = DragContext(Side.LONG, 40_000.0, 0.5, 1.0, 0.0, 39_000.0, 40_500.0, BTC)
    assert consequence("sl", 39_280.0, ctx) == "SL 39,280.0 · −1.8% · −$360 · −0.7R"
    assert consequence("tp", 40_120.0, ctx) == "TP 40,120.0 · +0.3% · +$60.00 · +0.1R"


def test_drag_tp_of_a_short(qtbot):
    eng, _win, _chart, mouse = make(qtbot, [snapshot(SHORT, 2950.0)])
    mouse.drag(2800.0, 2700.0)
    (cmd,) = eng.of_type(SetTargets)
    assert cmd.sl == KEEP and cmd.tp == ETH.round_price(cmd.tp) and abs(cmd.tp - 2700) < 10


def test_escape_cancels_and_restores(qtbot):
    eng, win, chart, mouse = make(qtbot, [snapshot(POS, 40_500.0)])
    a, b = mouse.at(39_000.0), mouse.at(39_600.0)
    mouse.move(a)
    mouse.press(a)
    mouse.move(a + (b - a) * 0.5)
    mouse.move(b)
    assert chart.line("sl").value() > 39_300  # it follows the mouse
    qtbot.keyClick(chart.plot, Qt.Key.Key_Escape)
    assert chart.line("sl").value() == pytest.approx(39_000.0)
    mouse.move(a + (b - a) * 0.2)  # the rest of the gesture does nothing
    mouse.release(b)
    assert eng.of_type(SetTargets) == []
    assert chart.line("sl").value() == pytest.approx(39_000.0)
    assert "cancelled" in win.statusBar().currentMessage()


def test_right_click_cancels(qtbot):
    eng, _win, chart, mouse = make(qtbot, [snapshot(POS, 40_500.0)])
    a, b = mouse.at(42_000.0), mouse.at(41_000.0)
    mouse.move(a)
    mouse.press(a)
    mouse.move(b)
    assert chart.line("tp").value() < 41_500  # dragging
    mouse.press(b, RIGHT)
    mouse.release(b, RIGHT)
    mouse.release(b)
    assert eng.of_type(SetTargets) == []
    assert chart.line("tp").value() == pytest.approx(42_000.0)


@pytest.mark.parametrize("kind,start,end,word", [
    ("sl", 39_000.0, 40_900.0, "stop out at once"),   # SL above the price of a long
    ("tp", 42_000.0, 39_800.0, "take profit at once"),  # TP below it
])
def test_a_level_that_would_trigger_at_once_cannot_be_dropped(qtbot, kind, start, end, word):
    eng, win, chart, mouse = make(qtbot, [snapshot(POS, 40_500.0)])
    mouse.drag(start, end)
    assert eng.of_type(SetTargets) == []
    assert chart.line(kind).value() == pytest.approx(start)
    msg = win.statusBar().currentMessage()
    assert word in msg and "not moved" in msg


def test_short_mirror_sl_below_price_is_refused(qtbot):
    eng, win, _chart, mouse = make(qtbot, [snapshot(SHORT, 2950.0)])
    mouse.drag(3100.0, 2900.0)
    assert eng.of_type(SetTargets) == []
    assert "short would stop out at once" in win.statusBar().currentMessage()


def test_rejected_change_reverts_with_the_reason(qtbot):
    def refuse(cmd):
        raise ValidationError("SL 39,500 is too close to the price for the exchange")
    eng, win, chart, mouse = make(qtbot, [snapshot(POS, 40_500.0)], answer=refuse)
    mouse.drag(39_000.0, 39_500.0)
    assert len(eng.of_type(SetTargets)) == 1
    assert chart.line("sl").value() == pytest.approx(39_000.0)
    assert "too close to the price" in win.statusBar().currentMessage()
    assert chart.pending() == {}


def test_confirm_step_apply_and_discard(qtbot):
    eng, win, chart, mouse = make(qtbot, [snapshot(POS, 40_500.0)],
                                  settings=UiSettings(confirm_drags=True))
    mouse.drag(39_000.0, 39_400.0)
    assert eng.commands() == []
    bar = win.drag_bar
    assert bar.isVisible() and "move SL 39," in bar.label.text()
    assert chart.line("sl").value() > 39_200  # shown where dropped, awaiting the decision
    qtbot.keyClick(win, Qt.Key.Key_Escape)  # discard
    assert not bar.isVisible()
    assert chart.line("sl").value() == pytest.approx(39_000.0)
    assert eng.commands() == []
    mouse.drag(39_000.0, 39_400.0)
    qtbot.mouseClick(bar.apply_button, LEFT)
    (cmd,) = eng.of_type(SetTargets)
    assert 39_300 < cmd.sl < 39_500


def test_a_proposal_whose_level_the_engine_moves_meanwhile_says_so_before_apply(qtbot):
    """Confirm drags: the trader drags the SL up from 39,000 to ~39,400 and hesitates; the
    trailing stop moves it to 39,600. Apply would now loosen the stop: the bar says where
    the engine has put it; Apply still sends the trader's level if they choose it."""
    eng, win, _chart, mouse = make(qtbot, [snapshot(POS, 40_500.0)],
                                  settings=UiSettings(confirm_drags=True))
    mouse.drag(39_000.0, 39_400.0)
    bar = win.drag_bar
    assert bar.isVisible() and "engine has moved" not in bar.label.text()
    eng.outbox.publish(snapshot(POS, 40_550.0, T0 + 1))  # a new mark alone: no note
    win.bridge.flush_now()
    assert "engine has moved" not in bar.label.text()
    eng.outbox.publish(snapshot(POS.evolve(sl=39_600.0), 40_800.0, T0 + 2))
    win.bridge.flush_now()
    assert bar.label.text().startswith("⚠ the engine has moved SL to 39,600.0 since the drag")
    assert "move SL 39," in bar.label.text()
    assert eng.commands() == []
    qtbot.mouseClick(bar.apply_button, LEFT)
    (cmd,) = eng.of_type(SetTargets)
    assert 39_300 < cmd.sl < 39_500


def test_modifier_can_be_required(qtbot):
    eng, _win, chart, mouse = make(qtbot, [snapshot(POS, 40_500.0)],
                                  settings=UiSettings(drag_modifier=True))
    mouse.drag(39_000.0, 39_400.0)  # no Shift: the line does not move
    assert eng.of_type(SetTargets) == []
    assert chart.line("sl").value() == pytest.approx(39_000.0)
    mouse.drag(39_000.0, 39_400.0, mods=Qt.KeyboardModifier.ShiftModifier)
    assert len(eng.of_type(SetTargets)) == 1


def test_trailing_entry_and_liquidation_lines_are_not_draggable(qtbot):
    pos = POS.evolve(trailing=39_500.0, liquidation=36_500.0)
    eng, _win, chart, mouse = make(qtbot, [snapshot(pos, 40_500.0)])
    for kind in ("trailing", "entry"):
        before = chart.line(kind).value()
        mouse.drag(before, before + 300)
        assert chart.line(kind).value() == pytest.approx(before)
        assert not chart.line(kind).movable
    assert eng.of_type(SetTargets) == []


def test_hover_highlights_the_line(qtbot):
    _eng, _win, chart, mouse = make(qtbot, [snapshot(POS, 40_500.0)])
    sl = chart.line("sl")
    mouse.move(mouse.at(39_700.0))
    assert not sl.mouseHovering
    mouse.move(mouse.at(39_000.0))
    assert sl.mouseHovering
    assert sl.cursor().shape() == Qt.CursorShape.SizeVerCursor  # says "drag me up or down"


def test_paused_automation_and_automated_moves_are_drawn_differently(qtbot):
    eng, win, chart, _mouse = make(qtbot, [snapshot(POS.evolve(automation=False), 40_500.0)])
    assert chart.line("sl").pen.style() == Qt.PenStyle.DashLine
    assert "paused" in chart.line("sl").label.toPlainText()
    eng.outbox.publish(snapshot(POS, 40_500.0, T0 + 1))
    eng.outbox.publish(action("p1", BTC.symbol, ActionType.MOVE_SL, Reason.BREAKEVEN,
                              40_600.0, T0 + 1, sl=40_040.0))
    eng.outbox.publish(snapshot(POS.evolve(sl=40_040.0), 40_600.0, T0 + 2))
    win.bridge.flush_now()
    sl = chart.line("sl")
    assert sl.pen.style() == Qt.PenStyle.SolidLine
    assert sl.value() == pytest.approx(40_040.0)
    assert "◆ breakeven" in sl.label.toPlainText()
    assert any("breakeven" in t for _x, _y, t in chart.marker_points())


def test_pending_line_is_not_draggable_until_the_engine_answers(qtbot):
    eng, _win, chart, mouse = make(qtbot, [snapshot(POS, 40_500.0)])
    eng.hold = True
    mouse.drag(39_000.0, 39_400.0)
    (cmd,) = eng.of_type(SetTargets)
    assert "pending" in chart.line("sl").label.toPlainText()
    mouse.drag(cmd.sl, cmd.sl - 200)  # grabbing it again does nothing
    assert len(eng.of_type(SetTargets)) == 1
    eng.held[0].set_result(CommandResult(True, "ok", "p1"))
    assert chart.pending() == {}
    assert chart.line("sl").movable


def test_live_updates_and_re_sorting_do_not_break_a_drag(qtbot):
    from pmgui.ui.positions_model import column_index

    other = position("p9", ETH.symbol, entry=3000.0, sl=2900.0, tp=3300.0)
    eng, win, chart, mouse = make(qtbot, [snapshot(POS, 40_500.0), snapshot(other, 3001.0)])
    win.table.sortByColumn(column_index("pnl"), Qt.SortOrder.DescendingOrder)
    assert win.selected_position_id() == "p1"
    a, b = mouse.at(39_000.0), mouse.at(39_500.0)
    mouse.move(a)
    mouse.press(a)
    mouse.move(a + (b - a) * 0.5)
    # ETH jumps to the top of the P/L sort while the trader drags BTC's SL
    eng.outbox.publish(snapshot(other, 3_900.0, T0 + 1))
    eng.outbox.publish(snapshot(POS, 40_450.0, T0 + 1))
    win.bridge.flush_now()
    assert win.proxy.index(0, 0).data() == ETH.symbol
    assert chart.line("sl").dragging
    mouse.move(b)
    mouse.release(b)
    (cmd,) = eng.of_type(SetTargets)
    assert cmd.position_id == "p1" and abs(cmd.sl - 39_500.0) < 60


def test_redragging_a_proposal_keeps_the_line_and_the_confirm_bar_agreeing(qtbot):
    """A proposed SL dragged away and back onto its level, re-dragged elsewhere, a re-drag
    cancelled with Esc or dropped where it would trigger: the line always shows the proposal
    the confirm bar is asking about; nothing is sent until Apply."""
    eng, win, chart, mouse = make(qtbot, [snapshot(POS, 40_500.0)],
                                  settings=UiSettings(confirm_drags=True))
    bar = win.drag_bar
    sl = chart.machine("sl")

    def gesture(y0, y1, back=False, esc=False):
        p, q = mouse.at(y0), mouse.at(y1)
        mouse.move(p)
        mouse.press(p)
        for i in range(1, 5):
            mouse.move(p + (q - p) * (i / 4))
        assert chart.drag.active
        if back:
            mouse.move(p)
        if esc:
            qtbot.keyClick(chart.plot, Qt.Key.Key_Escape)
        mouse.release(p if back else q)

    def shows_proposal(near, tol):
        assert sl.state is LineState.PROPOSED and sl.level == pytest.approx(near, abs=tol)
        assert chart.line("sl").value() == sl.level
        assert bar.isVisible() and bar.proposal[1:] == ("sl", sl.level)
        return sl.level

    gesture(39_000.0, 39_400.0)
    proposed = shows_proposal(39_400.0, 10.0)
    gesture(proposed, 39_700.0, esc=True)  # a re-drag cancelled with Esc: still the proposal
    assert shows_proposal(proposed, 0.0) == proposed
    assert not chart.drag.active
    gesture(proposed, 40_800.0)  # above the price: refused, the proposal stays
    assert shows_proposal(proposed, 0.0) == proposed
    assert "not moved" in win.statusBar().currentMessage()
    gesture(proposed, 39_700.0, back=True)  # away and back onto it (within a pixel)
    proposed = shows_proposal(proposed, 10.0)
    gesture(proposed, 39_700.0)  # re-dragged to another level: both show that one
    moved = shows_proposal(39_700.0, 10.0)
    assert eng.of_type(SetTargets) == []
    qtbot.mouseClick(bar.apply_button, LEFT)
    (cmd,) = eng.of_type(SetTargets)
    assert cmd.sl == moved


def test_right_click_on_the_chart_offers_an_entry_at_that_price_through_the_ticket(qtbot):
    """Trading from the chart: a right click below the market offers a buy limit and a sell
    stop at the clicked price (snapped to the tick); the ticket opens filled in and sends
    only when the trader confirms it there."""
    eng, win, chart, mouse = make(qtbot, [snapshot(POS, 40_500.0)])
    with qtbot.waitSignal(chart.tradeMenuRequested, timeout=5000) as sig:
        p = mouse.at(39_800.0)
        mouse.move(p)
        mouse.press(p, Qt.MouseButton.RightButton)
        mouse.release(p, Qt.MouseButton.RightButton)
    price = sig.args[0]
    assert price == BTC.round_price(price) and abs(price - 39_800.0) < 60
    assert not eng.of_type(OpenPosition)  # a click alone sends nothing
    menu = win.build_chart_menu(price)
    names = {a.objectName() for a in menu.actions()}
    assert {"chartEntry_long_limit", "chartEntry_short_stop"} <= names
    assert not {"chartEntry_long_stop", "chartEntry_short_limit"} & names
    above = {a.objectName() for a in win.build_chart_menu(41_000.0).actions()}
    assert {"chartEntry_long_stop", "chartEntry_short_limit"} <= above
    buy = next(a for a in menu.actions() if a.objectName() == "chartEntry_long_limit")
    buy.trigger()
    dlg = win.dialog
    assert isinstance(dlg, OrderDialog) and dlg.isVisible()
    assert dlg.order_type.currentText() == "Limit" and dlg.side.currentIndex() == 0
    qtbot.keyClicks(dlg.qty, "0.01")
    qtbot.mouseClick(dlg.ok_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(eng.of_type(OpenPosition)), timeout=5000)
    (sent,) = eng.of_type(OpenPosition)
    assert sent.symbol == BTC.symbol and sent.side is Side.LONG
    assert sent.order_type == "limit" and sent.price == pytest.approx(price)
