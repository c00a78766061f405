"""Audit of dragging on the chart, as a trader does it: real mouse events on the plot's
viewport, the real window over the engine double (tests/ui_doubles.py)."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QApplication

from pmgui.domain.enums import Side
from pmgui.engine.commands import SetTargets
from tests.test_ui_drag import RIGHT, _fast_mouse, make, on_exchange  # noqa: F401
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


def test_a_cancelled_drag_of_a_local_only_stop_keeps_its_warning(qtbot):
    """The venue refused the stop order: the line says "local only" (only pmgui's rules
    guard it) and is dashed. The trader grabs it again and presses Esc: the line must be
    what it was, warning included — it came back as a plain, solid stop that looked held
    on the exchange. The same for the engine's "◆ trailing" note."""
    from PySide6.QtCore import Qt

    from pmgui.domain.enums import ActionType, Reason
    from pmgui.engine.commands import CommandResult, ProtectionOutcome
    from pmgui.ui.chart_state import LineState
    from tests.ui_doubles import BTC, T0, action

    def local(cmd):
        return CommandResult(True, "ok", cmd.position_id, outcomes=(
            ProtectionOutcome("sl", cmd.sl, "local_only", "-2021 order would trigger"),))

    eng, win, chart, mouse = make(qtbot, [snapshot(POS, 40_500.0)], answer=local)
    mouse.drag(39_000.0, 39_400.0)
    (cmd,) = eng.of_type(SetTargets)
    eng.outbox.publish(snapshot(POS.evolve(sl=cmd.sl), 40_500.0, T0 + 1))
    win.bridge.flush_now()
    m, tag, line = chart.machine("sl"), chart.tags["sl"], chart.line("sl")
    assert m.state is LineState.LOCAL_ONLY
    before = (tag.toPlainText(), line.value(), line.pen.style())
    assert "⚠ local only" in before[0] and before[2] == Qt.PenStyle.DashLine

    def grab_and_escape(level: float) -> None:
        a, b = mouse.at(level), mouse.at(level - 300)
        mouse.move(a)
        mouse.press(a)
        mouse.move(a + (b - a) * 0.5)
        mouse.move(b)
        assert chart.drag.active
        qtbot.keyClick(chart.plot, Qt.Key.Key_Escape)
        mouse.release(b)

    grab_and_escape(cmd.sl)
    assert (tag.toPlainText(), line.value(), line.pen.style()) == before
    assert m.state is LineState.LOCAL_ONLY
    assert len(eng.of_type(SetTargets)) == 1
    # the engine then trails it (a new level: the warning gives way), noted ◆ trailing
    eng.outbox.publish(action("p1", BTC.symbol, ActionType.MOVE_SL, Reason.TRAILING,
                              40_600.0, T0 + 2, sl=39_600.0))
    eng.outbox.publish(snapshot(POS.evolve(sl=39_600.0), 40_600.0, T0 + 2))
    win.bridge.flush_now()
    chart.redraw_now()
    trailed = tag.toPlainText()
    assert "◆ trailing" in trailed and "local only" not in trailed
    grab_and_escape(39_600.0)
    assert tag.toPlainText() == trailed


def test_a_tight_stops_label_keeps_its_sign_and_size():
    """At 123,456.7 a stop 56.7 below is a −0.05% move (−2.3% of margin at 50x): the label
    read "0.0%" — no sign, no size — and a −0.04R "0.0R". Small values get the decimals
    that show them; the usual ones keep the label's one decimal."""
    from pmgui.ui.chart_drag import DragContext, consequence
    from tests.ui_doubles import BTC

    ctx = DragContext(Side.LONG, 123_456.7, 0.5, 1.0, 0.0, 122_000.0, 123_460.0, BTC)
    assert consequence("sl", 123_400.0, ctx) == "SL 123,400.0 · −0.05% · −$28.35 · −0.04R"
    assert consequence("tp", 123_500.0, ctx) == "TP 123,500.0 · +0.04% · +$21.65 · +0.03R"
    short = DragContext(Side.SHORT, 123_456.7, 0.5, 1.0, 0.0, 124_000.0, 123_450.0, BTC)
    assert consequence("sl", 123_500.0, short) == "SL 123,500.0 · −0.04% · −$21.65 · −0.1R"
    assert consequence("sl", 121_000.0, ctx) == "SL 121,000.0 · −2.0% · −$1,228 · −1.7R"
    assert consequence("sl", 123_456.7, ctx).startswith("SL 123,456.7 · 0.0% · $0.00")


def test_apply_of_a_proposal_the_price_has_crossed_meanwhile_is_refused(qtbot):
    """Confirm mode: the SL is dragged up to ~39,400 with the price at 40,500 and the trader
    hesitates; the price falls to 39,300. Apply would now send a stop above the price (the
    engine closes the position at market at once): it is refused as a drop there would be,
    with the reason, nothing is sent and the line shows the engine's stop again."""
    from PySide6.QtCore import Qt

    from pmgui.ui.chart_state import LineState
    from pmgui.ui.main_window import UiSettings
    from tests.ui_doubles import T0, tick

    eng, win, chart, mouse = make(qtbot, [snapshot(POS, 40_500.0)],
                                  settings=UiSettings(confirm_drags=True))
    mouse.drag(39_000.0, 39_400.0)
    bar = win.drag_bar
    assert bar.isVisible() and chart.machine("sl").state is LineState.PROPOSED
    eng.outbox.publish(tick(POS.symbol, 39_300.0, T0 + 1))
    win.bridge.flush_now()
    chart.redraw_now()
    qtbot.mouseClick(bar.apply_button, Qt.MouseButton.LeftButton)
    assert eng.of_type(SetTargets) == []
    assert not bar.isVisible()
    assert chart.machine("sl").state is LineState.IDLE
    assert chart.line("sl").value() == pytest.approx(39_000.0)
    msg = win.statusBar().currentMessage()
    assert "long would stop out at once" in msg and "SL not moved" in msg
    # with the price back above it, the same move applies
    eng.outbox.publish(tick(POS.symbol, 40_100.0, T0 + 2))
    win.bridge.flush_now()
    mouse.drag(39_000.0, 39_400.0)
    qtbot.mouseClick(bar.apply_button, Qt.MouseButton.LeftButton)
    assert len(eng.of_type(SetTargets)) == 1


def test_a_drop_while_the_same_levels_change_is_still_on_its_way_is_not_left_hanging(qtbot):
    """The venue is slow: the SL's change is in flight. The trader looks at another position
    and back (the line shows the engine's stop again) and drags the SL anew. That drop
    could not be sent (one change of a level at a time) and the line stayed at it, dashed,
    "confirm or discard" with no bar to do either, deaf to the engine's later moves. It
    goes back to the engine's level and says why."""
    from pmgui.engine.commands import CommandResult
    from pmgui.ui.chart_state import LineState
    from tests.ui_doubles import ETH, T0

    other = position("p9", ETH.symbol, entry=3000.0, sl=2900.0, tp=3300.0)
    eng, win, chart, mouse = make(qtbot, [snapshot(POS, 40_500.0), snapshot(other, 3001.0)])
    eng.hold = True
    mouse.drag(39_000.0, 39_400.0)
    assert len(eng.of_type(SetTargets)) == 1
    assert win.select_position("p9") and chart.position_id == "p9"
    assert win.select_position("p1") and chart.position_id == "p1"
    chart.vb.setRange(yRange=(38_500.0, 42_500.0), padding=0)
    QApplication.processEvents()
    mouse.drag(39_000.0, 39_300.0)
    assert len(eng.of_type(SetTargets)) == 1  # one change of a level at a time
    m = chart.machine("sl")
    assert m.state is LineState.IDLE
    assert chart.line("sl").value() == pytest.approx(39_000.0)
    assert "still on its way" in win.statusBar().currentMessage()
    # the first change is answered; the engine's snapshots move the line again
    eng.held[0].set_result(CommandResult(True, "ok", "p1"))
    eng.outbox.publish(snapshot(POS.evolve(sl=39_400.0), 40_500.0, T0 + 1))
    win.bridge.flush_now()
    chart.redraw_now()
    assert chart.line("sl").value() == pytest.approx(39_400.0)


def test_a_drop_the_engines_move_during_the_drag_turned_into_a_loosening_is_not_sent(qtbot):
    """Instant mode. The trader grabs the SL at 39,000 to tighten it to ~39,300; during the
    drag the trailing stop moves it to 39,600 — unseen, the line is under the cursor. The
    drop would now loosen the stop from 39,600 to 39,300: it is not sent, the line shows
    the engine's 39,600 and the status bar says why. A drop that still does what the
    trader meant (tighter than the engine's new stop) is sent."""
    from tests.ui_doubles import T0

    eng, win, chart, mouse = make(qtbot, [snapshot(POS, 40_500.0)], answer=on_exchange)

    def drag_while_the_engine_trails(y1: float, trailed: float, ts: float) -> None:
        start = chart.line("sl").value()
        a, b = mouse.at(start), mouse.at(y1)
        mouse.move(a)
        mouse.press(a)
        mouse.move(a + (b - a) * 0.5)
        eng.outbox.publish(snapshot(POS.evolve(sl=trailed), 40_600.0, ts))
        win.bridge.flush_now()
        chart.redraw_now()
        mouse.move(b)
        assert chart.drag.active
        mouse.release(b)

    drag_while_the_engine_trails(39_300.0, 39_600.0, T0 + 1)
    assert eng.of_type(SetTargets) == []
    assert chart.line("sl").value() == pytest.approx(39_600.0)
    msg = win.statusBar().currentMessage()
    assert "moved SL to 39,600.0 during the drag" in msg and "SL not moved" in msg
    drag_while_the_engine_trails(39_900.0, 39_700.0, T0 + 2)  # tighter still: sent
    (cmd,) = eng.of_type(SetTargets)
    assert abs(cmd.sl - 39_900.0) < 60


def test_stale_reason_reads_the_drag_against_what_the_trader_saw():
    """The rule behind the refusal above, for both sides and for a line whose confirmed
    level the snapshot had not shown yet (no engine move: nothing refused)."""
    from pmgui.ui.chart_drag import DragContext, stale_reason
    from tests.ui_doubles import BTC

    ctx = DragContext(Side.LONG, 40_000.0, 0.5, 1.0, 0.0, 39_000.0, 40_500.0, BTC)
    tol = BTC.tick_size / 2
    # long: tighten 39,000 → 39,300 while trailed to 39,600: loosening, refused
    assert "would move it down, not up" in stale_reason("sl", 39_300.0, 39_000.0, 39_000.0,
                                                        39_600.0, ctx, tol)
    assert stale_reason("sl", 39_800.0, 39_000.0, 39_000.0, 39_600.0, ctx, tol) is None
    assert stale_reason("sl", 38_500.0, 39_000.0, 39_000.0, 39_600.0, ctx, tol) is None
    assert stale_reason("sl", 39_300.0, 39_000.0, 39_000.0, 39_000.0, ctx, tol) is None
    # short: tighten 41,000 → 40,700 while trailed to 40,400: refused
    short = DragContext(Side.SHORT, 40_000.0, 0.5, 1.0, 0.0, 41_000.0, 39_500.0, BTC)
    assert "would move it up, not down" in stale_reason("sl", 40_700.0, 41_000.0, 41_000.0,
                                                        40_400.0, short, tol)
    # the line showed a confirmed 39,400 the snapshot (39,000) had not caught up with; the
    # snapshot then says 39,400: the engine moved nothing, a drag down from it is meant
    assert stale_reason("sl", 39_200.0, 39_400.0, 39_000.0, 39_400.0, ctx, tol) is None
    assert stale_reason("sl", 39_200.0, 39_400.0, None, 39_400.0, ctx, tol) is None
    # created out of the entry line while the engine set one
    assert "set SL to 39,100.0" in stale_reason("sl", 39_300.0, None, None, 39_100.0, ctx, tol)


def test_the_dragged_lines_tag_says_it_would_trigger_once_the_price_crosses_it(qtbot):
    """The trader holds the SL at ~40,300 under a price of 40,500; the price falls to
    40,200 while the hand is still. The tag said nothing until the mouse moved again and
    the drop was then refused as if by surprise; it says "would trigger now" as soon as
    the price crosses the held level."""
    from tests.ui_doubles import T0, tick

    eng, win, chart, mouse = make(qtbot, [snapshot(POS, 40_500.0)])
    a, b = mouse.at(39_000.0), mouse.at(40_300.0)
    mouse.move(a)
    mouse.press(a)
    mouse.move(a + (b - a) * 0.5)
    mouse.move(b)
    tag = chart.tags["sl"]
    assert "would trigger" not in tag.toPlainText()
    eng.outbox.publish(tick(POS.symbol, 40_200.0, T0 + 1))
    win.bridge.flush_now()
    chart.redraw_now()
    assert tag.toPlainText().endswith("✖ would trigger now")
    mouse.release(b)
    assert eng.of_type(SetTargets) == []


def test_a_proposal_the_price_crosses_says_so_on_its_tag_before_apply(qtbot):
    """Confirm mode: the proposed SL at ~39,400 waits for Apply; the price falls through it.
    Apply is refused then (above), and the line says so before the click: its tag reads
    "would trigger now" instead of "confirm or discard"; back above, it asks again."""
    from pmgui.ui.main_window import UiSettings
    from tests.ui_doubles import T0, tick

    eng, win, chart, mouse = make(qtbot, [snapshot(POS, 40_500.0)],
                                  settings=UiSettings(confirm_drags=True))
    mouse.drag(39_000.0, 39_400.0)
    tag = chart.tags["sl"]
    assert tag.toPlainText().endswith("confirm or discard")
    for i, (price, note) in enumerate(((39_300.0, "✖ would trigger now"),
                                       (40_100.0, "confirm or discard"))):
        eng.outbox.publish(tick(POS.symbol, price, T0 + 1 + i))
        win.bridge.flush_now()
        chart.redraw_now()
        assert tag.toPlainText().endswith(note), price
    assert eng.of_type(SetTargets) == []
