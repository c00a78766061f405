"""The chart as a trader uses it: real mouse events on the plot's viewport, real widgets.

Drags near the edge move a line exactly as the hand moved (the view is frozen while dragging),
lines out of view are edge tags that can be dragged, SL/TP are created out of the entry line,
timeframes, the forming candle, the crosshair's P/L, the rule's indicator, explained markers,
tags that never overlap, and the state machine behind every line.
"""

from __future__ import annotations

import itertools
import math
import types

import pyqtgraph as pg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtWidgets import QApplication, QGraphicsWidget

from pmgui.domain.candles import merge_buckets
from pmgui.domain.enums import ActionType, Reason, Side
from pmgui.domain.models import Action, Candle
from pmgui.engine.commands import KEEP, CommandResult, ProtectionOutcome, SetTargets
from pmgui.engine.events import ActionTaken, RuleIndicator
from pmgui.ui.chart import TAG_MARGIN
from pmgui.ui.chart_candles import CandleSeries
from pmgui.ui.chart_drag import consequence
from pmgui.ui.chart_items import stack_tags
from pmgui.ui.chart_state import LineMachine, LineState, TransitionError, verdict
from pmgui.ui.main_window import UiSettings
from tests.test_ui_drag import LEFT, Mouse, _fast_mouse, make, on_exchange  # noqa: F401
from tests.ui_doubles import (
    BTC,
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

POS = position()  # long 0.5 BTC @ 40,000, SL 39,000, TP 42,000


def viewport_point(chart, scene: QPointF) -> QPoint:
    return chart.plot.mapFromScene(scene)


def price_at(chart, p: QPoint) -> float:
    """The price under a viewport point, as the view maps it now."""
    return chart.vb.mapSceneToView(chart.plot.mapToScene(p)).y()


def auto_ranged(qtbot, pos=POS, mark=40_500.0, settings=None, answer=None, size=(1400, 900)):
    """A window whose chart auto-ranges by itself (no range set by the test)."""
    eng = EngineDouble(answer=answer)
    win = shown_window(qtbot, eng, size=size, settings=settings or UiSettings())
    eng.outbox.publish(snapshot(pos, mark))
    eng.outbox.publish(candles_event(pos.symbol, candles(30, start=40_000.0, step=10.0)))
    eng.outbox.publish(tick(pos.symbol, mark, T0))
    win.bridge.flush_now()
    QApplication.processEvents()
    chart = win.chart
    chart.vb.updateAutoRange()
    QApplication.processEvents()
    return eng, win, chart, Mouse(chart)


# -- dragging exactly where the hand goes --------------------------------------------------

@pytest.mark.parametrize("dy", [12, 26, -40])
def test_drag_at_the_edge_lands_on_the_price_under_the_cursor(qtbot, dy):
    """The issue's case: SL below every candle, near the view's bottom edge, auto-range on.
    A 12 px drag must move it by 12 px worth of price, not hundreds of dollars (a drag starts
    past Qt's start-drag distance, 10 px)."""
    eng, _win, chart, mouse = auto_ranged(qtbot)
    assert chart.vb.autoRangeEnabled()[1]
    a = mouse.at(39_000.0)
    (_x0, _x1), (y0, y1) = chart.vb.viewRange()
    assert 39_000.0 - y0 < (y1 - y0) * 0.1  # the SL sits near the bottom edge
    b = a + QPoint(0, dy)
    expected = 39_000.0 + price_at(chart, b) - price_at(chart, a)  # moved as the hand moved
    y_before = chart.vb.viewRange()[1]
    mouse.move(a)
    mouse.press(a)
    ranges = []
    for i in range(1, 9):
        mouse.move(a + (b - a) * (i / 8))
        QApplication.processEvents()
        chart.vb.updateAutoRange()  # what a paint would do: auto-range must be off
        if chart.drag.active:
            ranges.append(chart.vb.viewRange())
    frozen = chart.drag.frozen_range
    assert frozen is not None and list(frozen[1]) == y_before
    assert ranges and all(r == [list(frozen[0]), list(frozen[1])] for r in ranges)
    assert chart.line("sl").value() == pytest.approx(expected, abs=BTC.tick_size)
    mouse.release(b)
    (cmd,) = eng.of_type(SetTargets)
    assert abs(cmd.sl - expected) <= BTC.tick_size / 2 + 1e-9  # within one tick (snapped)
    assert chart.vb.autoRangeEnabled()[1]  # auto-range is back after the drop


def repaints_and_ranges(chart, monkeypatch) -> tuple[list[tuple], list[int]]:
    """Lists that grow with each repaint of the whole view asked for (QGraphicsItem.update
    on the view box) and each auto-range run (each walks every item's bounds in Python)."""
    whole: list[tuple] = []
    ranged: list[int] = []

    def update(self, *a) -> None:
        if self is chart.vb:
            whole.append(a)
        QGraphicsWidget.update(self, *a)

    monkeypatch.setattr(pg.ViewBox, "update", update, raising=False)
    real_range = chart.vb.updateAutoRange

    def auto_range() -> None:
        ranged.append(1)
        real_range()

    chart.vb.updateAutoRange = auto_range
    return whole, ranged


def bounds_reports(chart) -> list[object]:
    """A list that grows with each item that tells the view box of new bounds
    (`itemBoundsChanged`: what informViewBoundsChanged calls)."""
    reported: list[object] = []
    real = chart.vb.itemBoundsChanged

    def spy(item) -> None:
        reported.append(item)
        real(item)

    chart.vb.itemBoundsChanged = spy
    return reported


def test_each_move_puts_the_line_where_the_hand_moved_it(qtbot):
    _eng, _win, chart, mouse = auto_ranged(qtbot)
    a = mouse.at(42_000.0)
    mouse.move(a)
    mouse.press(a)
    for dy in (17, 41, 90, 160, 12):
        p = a + QPoint(0, dy)
        mouse.move(p)
        assert chart.line("tp").value() == pytest.approx(
            42_000.0 + price_at(chart, p) - price_at(chart, a), abs=BTC.tick_size)
    mouse.release(a + QPoint(0, 12))


def test_a_line_out_of_view_is_an_edge_tag_that_can_be_dragged(qtbot):
    pos = POS.evolve(liquidation=36_400.0)
    eng, _win, chart, mouse = make(qtbot, [snapshot(pos, 40_500.0)])
    chart.vb.setRange(yRange=(39_600.0, 42_400.0), padding=0)
    QApplication.processEvents()
    sl_tag, liq_tag = chart.tags["sl"], chart.tags["liquidation"]
    vb_rect = chart.vb.sceneBoundingRect()
    for tag, title in ((sl_tag, "SL 39,000.0"), (liq_tag, "Liq 36,400.0")):
        assert tag.isVisible() and tag.edge == -1
        assert tag.toPlainText().startswith("▼ " + title)  # the price, with where it is
        assert vb_rect.contains(tag.sceneBoundingRect())  # inside the view, at the bottom
        assert tag.sceneBoundingRect().bottom() > vb_rect.bottom() - 3 * tag.sceneBoundingRect(
        ).height()
    # grab the SL's edge tag and pull the stop into view
    start = viewport_point(chart, sl_tag.sceneBoundingRect().center())
    target = mouse.at(39_800.0)
    expected = price_at(chart, target)
    mouse.move(start)
    mouse.press(start)
    mouse.move(start + (target - start) * 0.5)
    assert chart.machine("sl").state is LineState.DRAGGING
    mouse.move(target)
    assert sl_tag.edge == 0 and not sl_tag.toPlainText().startswith("▼")
    mouse.release(target)
    (cmd,) = eng.of_type(SetTargets)
    assert abs(cmd.sl - expected) <= BTC.tick_size / 2 + 1e-9
    assert liq_tag.edge == -1  # liquidation is shown, never draggable
    assert not liq_tag.draggable


def test_drag_out_of_the_entry_line_creates_the_missing_stop(qtbot):
    pos = POS.evolve(sl=None, initial_sl=None)
    eng, _win, chart, mouse = make(qtbot, [snapshot(pos, 40_500.0)], answer=on_exchange)
    chart.vb.setRange(yRange=(38_500.0, 42_500.0), padding=0)
    QApplication.processEvents()
    entry = chart.line("entry")
    assert entry.movable and "drag for SL" in chart.tags["entry"].toPlainText()
    assert not chart.line("sl").isVisible()
    a, b = mouse.at(40_000.0), mouse.at(39_400.0)
    mouse.move(a)
    mouse.press(a)
    mouse.move(a + (b - a) * 0.5)
    mouse.move(b)
    sl = chart.line("sl")
    assert sl.isVisible() and chart.machine("sl").state is LineState.DRAGGING
    assert sl.value() == pytest.approx(price_at(chart, b), abs=BTC.tick_size)
    assert chart.tags["sl"].toPlainText().startswith("SL 39,")
    assert entry.value() == pytest.approx(40_000.0)  # the entry itself never moves
    mouse.release(b)
    (cmd,) = eng.of_type(SetTargets)
    assert cmd.tp == KEEP and abs(cmd.sl - price_at(chart, b)) <= BTC.tick_size
    assert chart.machine("sl").state is LineState.CONFIRMED
    assert "✔ on exchange" in chart.tags["sl"].toPlainText()
    # the new stop counts at once: the entry offers nothing more to create
    assert not entry.movable and "drag for" not in chart.tags["entry"].toPlainText()


def test_entry_drag_towards_an_existing_level_creates_nothing(qtbot):
    pos = POS.evolve(sl=None, initial_sl=None)
    eng, _win, chart, mouse = make(qtbot, [snapshot(pos, 40_500.0)])
    chart.vb.setRange(yRange=(38_500.0, 42_500.0), padding=0)
    QApplication.processEvents()
    a, b = mouse.at(40_000.0), mouse.at(41_000.0)  # upwards: the TP, which exists
    mouse.move(a)
    mouse.press(a)
    mouse.move(b)
    assert "TP exists" in chart.tags["entry"].toPlainText()
    mouse.release(b)
    assert eng.of_type(SetTargets) == []
    assert chart.line("tp").value() == pytest.approx(42_000.0)


def test_entry_of_a_short_without_targets_creates_a_take_profit_below(qtbot):
    pos = position("s", side=Side.SHORT, entry=40_000.0, sl=None, tp=None, initial_sl=None)
    eng, _win, chart, mouse = make(qtbot, [snapshot(pos, 40_000.0)])
    chart.vb.setRange(yRange=(38_500.0, 41_500.0), padding=0)
    QApplication.processEvents()
    mouse.drag(40_000.0, 39_000.0)
    (cmd,) = eng.of_type(SetTargets)
    assert cmd.sl == KEEP and abs(cmd.tp - 39_000.0) < 30


# -- results of a change --------------------------------------------------------------------

def test_local_only_result_says_so_and_is_never_shown_as_success(qtbot):
    def local(cmd):
        return CommandResult(True, "ok", cmd.position_id, outcomes=(
            ProtectionOutcome("sl", cmd.sl, "local_only", "-2021 order would trigger"),))

    eng, win, chart, mouse = make(qtbot, [snapshot(POS, 40_500.0)], answer=local)
    mouse.drag(39_000.0, 39_400.0)
    (cmd,) = eng.of_type(SetTargets)
    m, tag = chart.machine("sl"), chart.tags["sl"]
    assert m.state is LineState.LOCAL_ONLY
    assert "⚠ local only: -2021 order would trigger" in tag.toPlainText()
    assert "✔" not in tag.toPlainText() and "✔" not in win.statusBar().currentMessage()
    assert "local only" in win.statusBar().currentMessage()
    assert chart.line("sl").pen.style() == Qt.PenStyle.DashLine
    # the engine's snapshot shows that level: the warning stays; a new level clears it
    eng.outbox.publish(snapshot(POS.evolve(sl=cmd.sl), 40_500.0, T0 + 1))
    win.bridge.flush_now()
    assert m.state is LineState.LOCAL_ONLY
    eng.outbox.publish(snapshot(POS.evolve(sl=39_450.0), 40_500.0, T0 + 2))
    win.bridge.flush_now()
    assert m.state is LineState.IDLE and "local only" not in tag.toPlainText()


def test_refused_result_restores_the_engine_level_with_the_reason(qtbot):
    def refuse(cmd):
        return CommandResult(False, "the venue is in maintenance", cmd.position_id)

    eng, win, chart, mouse = make(qtbot, [snapshot(POS, 40_500.0)], answer=refuse)
    mouse.drag(39_000.0, 39_400.0)
    assert chart.machine("sl").state is LineState.REJECTED
    assert chart.line("sl").value() == pytest.approx(39_000.0)
    assert "✖ the venue is in maintenance" in chart.tags["sl"].toPlainText()
    assert "rejected" in win.statusBar().currentMessage()
    mouse.drag(39_000.0, 39_300.0)  # a rejected line can be dragged again
    assert len(eng.of_type(SetTargets)) == 2


def test_line_machine_transitions():
    m = LineMachine("sl")
    assert m.state is LineState.IDLE and m.can_drag and not m.busy
    m.start_drag(39_000.0)
    m.move(39_100.0)
    m.cancel()
    assert m.state is LineState.IDLE and m.level is None
    m.start_drag(39_000.0)
    m.drop(39_200.0)
    assert m.state is LineState.PROPOSED and m.busy
    m.discard()
    assert m.state is LineState.IDLE
    m.start_drag(39_000.0)
    m.drop(39_200.0)
    m.send(39_200.0, snapshot_ts=T0)
    assert m.state is LineState.PENDING and not m.can_drag
    with pytest.raises(TransitionError):
        m.start_drag(39_200.0)
    with pytest.raises(TransitionError):
        m.drop(39_300.0)
    ok = CommandResult(True, "ok", "p1", outcomes=(
        ProtectionOutcome("sl", 39_200.0, "on_exchange"),))
    m.resolve(verdict("sl", 39_200.0, ok, None), T0)
    assert m.state is LineState.CONFIRMED and m.level == 39_200.0
    m.settle(39_200.0, T0, 0.05)  # not newer: nothing changes
    assert m.state is LineState.CONFIRMED
    m.settle(39_200.0, T0 + 1, 0.05)
    assert m.state is LineState.IDLE
    # rejected from an error, from ok=False; local only without a venue order
    for res, err, state in ((None, "too close", LineState.REJECTED),
                            (CommandResult(False, "nope"), None, LineState.REJECTED),
                            (CommandResult(True, "ok"), None, LineState.LOCAL_ONLY),
                            (CommandResult(True, "ok", outcomes=(ProtectionOutcome(
                                "sl", 39_300.0, "unprotected", "no stop orders"),)), None,
                             LineState.LOCAL_ONLY)):
        m.send(39_300.0, T0)
        v = verdict("sl", 39_300.0, res, err)
        m.resolve(v, T0)
        assert m.state is state, (res, err)
        assert (m.level is None) == (state is LineState.REJECTED)
        assert v.reason
        m.start_drag(39_000.0)  # any result may start a new drag
        m.cancel()
    with pytest.raises(TransitionError):
        m.move(1.0)


# -- candles, timeframes, crosshair, indicator, markers -------------------------------------

def test_forming_candle_follows_the_last_price(qtbot):
    eng, win, chart, _mouse = make(qtbot, [snapshot(POS, 40_500.0)])
    cs = chart.candles()
    assert cs[-1].ts == T0 and cs[-1].close == 40_500.0  # make()'s tick formed a candle
    new_ts = T0 + 60 + 5
    for price, ts in ((40_600.0, new_ts), (40_650.0, new_ts + 10), (40_580.0, new_ts + 20)):
        eng.outbox.publish(tick(BTC.symbol, price, ts))
        win.bridge.flush_now()
        last = chart.candles()[-1]
        assert last.close == price == chart.line("last").value()
        assert last.low <= price <= last.high
    assert len(chart.candles()) == len(cs) + 1
    assert chart.forming_item.candles == (Candle(T0 + 60, 40_600.0, 40_650.0,
                                                 40_580.0, 40_580.0, 0.0),)
    assert chart.candle_item.candles == cs  # the completed ones are not redrawn


def test_timeframe_buttons_aggregate_the_candles(qtbot):
    eng, win, chart, _mouse = make(qtbot, [snapshot(POS, 40_500.0)])
    base = (*candles(30, start=40_000.0, step=10.0),
            Candle(T0, 40_500.0, 40_500.0, 40_500.0, 40_500.0, 0.0))  # formed by make()'s tick
    assert chart.candles() == base
    chart.tf_buttons["5m"].click()  # QTest clicks would move the global cursor
    assert chart.timeframe == "5m" and chart.tf_buttons["5m"].isChecked()
    shown = chart.candles()
    assert shown == tuple(merge_buckets(base, 300.0))
    assert len(shown) == 7
    # volume bars under the completed candles, at the same times
    vol = chart.volume.opts
    assert list(vol["x"]) == [c.ts for c in shown[:-1]]
    assert list(vol["height"]) == [c.volume for c in shown[:-1]] == [5.0] * 6
    first = shown[0]
    assert (first.open, first.close) == (base[0].open, base[4].close)
    assert first.high == max(c.high for c in base[:5]) and first.volume == 5.0
    # a tick extends the newest 5-minute candle
    eng.outbox.publish(tick(BTC.symbol, 41_000.0, T0 + 130))  # 2 min later: same 5m bucket
    win.bridge.flush_now()
    assert chart.candles()[-1] == Candle(T0, 40_500.0, 41_000.0, 40_500.0, 41_000.0, 0.0)
    assert len(chart.candles()) == 7
    chart.tf_buttons["1m"].click()  # QTest clicks would move the global cursor
    assert len(chart.candles()) == 32
    with pytest.raises(ValueError, match="unknown timeframe"):
        chart.set_timeframe("7m")


def test_hourly_data_offers_no_finer_timeframe():
    s = CandleSeries()
    s.merge([Candle(3600.0 * i, 10, 11, 9, 10, 1) for i in range(1, 30)])
    assert s.base == 3600.0 and s.timeframes() == ["1h", "4h", "1d"]
    s.on_tick(10.5, 3600.0 * 30 + 5)
    assert s.candles[-1].ts == 3600.0 * 30 and s.forming


def test_crosshair_shows_price_time_and_the_result_of_a_stop_or_target_there(qtbot):
    _eng, _win, chart, mouse = make(qtbot, [snapshot(POS, 40_500.0)])
    p = mouse.at(39_500.0, x_frac=0.3)
    mouse.move(p)
    y = price_at(chart, p)
    text = chart.readout.text()
    level = BTC.round_price(y)
    assert chart.cross_h.isVisible() and chart.cross_h.value() == pytest.approx(y)
    ctx = chart.context()
    want = consequence("sl", level, ctx).split(" · ", 1)[1]
    assert f"SL here · {want}" in text and "−$" in text and "R" in text
    assert f"{level:,.1f}" in text and ":" in text.split(" · ")[0]  # the time
    assert chart.cross_tag.isVisible() and chart.cross_tag.toPlainText() == \
        f"{level:,.1f}"  # and the price on the axis
    p = mouse.at(41_500.0, x_frac=0.3)
    mouse.move(p)
    assert "TP here · +" in chart.readout.text()
    QApplication.sendEvent(chart.plot.viewport(), QEvent(QEvent.Type.Leave))
    assert not chart.cross_h.isVisible() and chart.readout.text().strip() == ""
    assert not chart.cross_tag.isVisible()


def chandelier(value, since, have=30):
    return RuleIndicator("Chandelier 22×3 · 1h", "1h", value, since, True, have, 22)


def test_the_rules_indicator_is_the_engines_values_drawn_thin(qtbot):
    """The line is what the engine sends: its past (GetIndicatorLine) and the value on each
    snapshot; a stepped line holds each level from its candle's close to the next one."""
    from pmgui.engine.commands import IndicatorHistory
    from pmgui.ui.chart import ChartWidget

    chart = ChartWidget()
    qtbot.addWidget(chart)
    chart.resize(900, 500)
    chart.show()
    asked = []
    chart.set_requester(lambda req, done, **kw: asked.append((req, done)) or True)
    pos = POS.evolve(preset="breakout")
    minutes = candles(60 * 5, start=40_000.0, step=3.0, t0=T0 - 60 * 60 * 5)
    chart.on_candles(candles_event(BTC.symbol, minutes))
    h = T0 - T0 % 3600
    chart.set_position(snapshot(pos, 40_500.0, indicator=chandelier(39_800.0, h)), BTC)
    (req, done), = [(r, d) for r, d in asked if type(r).__name__ == "GetIndicatorLine"]
    assert req.position_id == pos.id
    ind = chart.indicator()
    assert ind.name == "Chandelier 22×3 · 1h" and ind.step and ind.last == 39_800.0
    done(IndicatorHistory(pos.id, chandelier(39_800.0, h),
                          ((h - 7200, 39_600.0), (h - 3600, 39_700.0), (h, 39_800.0))), None)
    ind = chart.indicator()
    end = minutes[-1].ts + 60
    assert ind.xs == (h - 7200, h - 3600, h - 3600, h, h, end)
    assert ind.ys == (39_600.0, 39_600.0, 39_700.0, 39_700.0, 39_800.0, 39_800.0)
    chart.on_snapshot(snapshot(pos, 40_600.0, T0 + 3600,
                               indicator=chandelier(39_900.0, h + 3600)))
    assert chart.indicator().ys[-2:] == (39_900.0, 39_900.0) and len(chart.indicator().xs) == 8
    assert chart.indicator_curve.opts["pen"].width() <= 1
    assert chart.indicator_tag.isVisible()
    assert chart.indicator_tag.toPlainText().lstrip("▲▼ ") == "Chandelier 22×3 · 1h 39,900.0"
    # another preset: another line, its past asked again
    trail = RuleIndicator("Trail 2%", "", 39_690.0, T0 + 3601, False, distance=0.02)
    chart.on_snapshot(snapshot(pos.evolve(preset="active"), 40_500.0, T0 + 3601,
                               indicator=trail))
    assert chart.indicator().name == "Trail 2%" and chart.indicator().ys == (39_690.0,)
    assert sum(type(r).__name__ == "GetIndicatorLine" for r, _d in asked) == 2


def test_an_indicator_not_warm_yet_says_how_far_it_is(qtbot):
    pos = POS.evolve(preset="breakout")
    _eng, _win, chart, _mouse = make(qtbot, [snapshot(pos, 40_500.0,
                                                      indicator=chandelier(None, T0, 5))])
    ind = chart.indicator()
    assert ind is not None and ind.xs == () and not chart.indicator_tag.isVisible()
    assert ind.note == "Chandelier 22×3 on 1h candles: 5 of 22 so far"
    assert chart.readout.text() == ind.note


def test_a_trail_keeps_two_values_per_candle():
    from pmgui.ui.chart_indicator import IndicatorFeed

    feed = IndicatorFeed(bucket=60.0)
    feed.reset("p1")
    for i in range(600):  # ten minutes of ticks every second
        feed.on_value(RuleIndicator("Trail 2%", "", 39_000.0 + i, T0 + i, False))
    line = feed.line()
    assert len(line.xs) <= 2 * 11 and line.ys[-1] == 39_599.0 and line.xs[-1] == T0 + 599
    assert list(line.xs) == sorted(line.xs)


def test_marker_hover_explains_reason_and_inputs(qtbot):
    eng, win, chart, mouse = make(qtbot, [snapshot(POS, 40_500.0)])
    a = Action(ActionType.MOVE_SL, Reason.TRAILING, "p1", 40_300.0, sl=39_400.0,
               rule="trailing", ts=T0 - 600,
               inputs={"atr": 120.5, "atr_mult": 3.0, "highest_high": 40_761.0})
    eng.outbox.publish(ActionTaken(a, BTC.symbol))
    win.bridge.flush_now()
    ((x, y, tip),) = chart.marker_points()
    assert tip.splitlines()[0] == "trailing · move sl → 39,400.0"
    assert "atr 120.5" in tip and "highest high 40,761.0" in tip and "rule trailing" in tip
    scene = chart.vb.mapViewToScene(QPointF(x, y))
    mouse.move(viewport_point(chart, scene))
    assert "highest high 40,761.0" in chart.vb.toolTip()


def test_markers_keep_their_explanation_not_the_actions(qtbot):
    """Markers are kept for every position all session (up to MAX_MARKERS each, shown when
    it is selected): as plain values, not the actions. Actions are objects the garbage
    collector walks at every full collection, and a collection holds the interpreter lock
    (hundreds of thousands of them stalled the window for as long). The tooltip is the same."""
    import gc

    from pmgui.ui.chart_text import explain_action

    _eng, _win, chart, _mouse = make(qtbot, [snapshot(POS, 40_500.0)])
    other = "p-other"
    evs = [ActionTaken(Action(ActionType.MOVE_SL, Reason.TRAILING, other, 2000.0 + i,
                              sl=1900.0 + i, rule="trailing", ts=T0 + i,
                              inputs={"atr": 12.5, "why": "trail"}), "ETH/USDT:USDT")
           for i in range(50)]
    tips = [explain_action(ev, None) for ev in evs]
    chart.on_actions(evs)
    del evs
    gc.collect()
    alive = [o for o in gc.get_objects()
             if isinstance(o, ActionTaken) and o.action.position_id == other]
    assert alive == []
    stored = chart._markers[other]
    assert len(stored) == 50 and not any(gc.is_tracked(m) for m in stored)
    assert [chart._marker_tip(m[0], m[1], m[3:]) for m in stored] == tips



def test_live_markers_are_appended_to_the_item_and_it_shows_every_marker(qtbot, monkeypatch):
    """A live action of the shown position adds its marker to the chart's item, not every
    marker set again; an action older than the last marker (put in between), a theme or
    another position sets them all. Whichever way, the item shows exactly the markers
    `marker_points` lists, in order."""
    _eng, _win, chart, _mouse = make(qtbot, [snapshot(POS, 40_500.0)])
    sets: list[int] = []
    real_set = chart.markers.setData

    def counted(*a, **k):
        sets.append(len(k.get("x", a[0] if a else [])))
        return real_set(*a, **k)

    monkeypatch.setattr(chart.markers, "setData", counted)

    def act(i: float) -> ActionTaken:
        return ActionTaken(Action(ActionType.MOVE_SL, Reason.TRAILING, "p1", 40_300.0 + i,
                                  sl=39_400.0 + i, rule="trailing", ts=T0 + i), BTC.symbol)

    def shown() -> list[tuple[float, float]]:
        d = chart.markers.data
        return [(float(x), float(y)) for x, y in zip(d["x"], d["y"], strict=True)]

    def listed() -> list[tuple[float, float]]:
        return [(x, y) for x, y, _tip in chart.marker_points()]

    chart.on_actions([act(1), act(2)])
    chart.redraw_now()
    assert shown() == listed() and len(listed()) == 2
    first = len(sets)
    for i in (3, 4, 5):
        chart.on_actions([act(i)])
        chart.redraw_now()
    assert len(sets) == first  # appended, not set again
    assert shown() == listed() and len(listed()) == 5
    chart.on_actions([act(2.5)])  # older than the last: in between
    chart.redraw_now()
    assert len(sets) == first + 1 and sets[-1] == 6
    assert shown() == listed() and [x for x, _y in shown()] == sorted(x for x, _y in shown())


# -- labels at 1024×700 ----------------------------------------------------------------------

@pytest.mark.parametrize("theme", ["dark", "light"])
def test_no_tags_overlap_at_1024x700(qtbot, theme):
    pos = POS.evolve(sl=39_950.0, trailing=39_960.0, liquidation=36_400.0, preset="active")
    eng, win, chart, _mouse = auto_ranged(qtbot, pos, 40_020.0,
                                          settings=UiSettings(theme=theme), size=(1024, 700))
    trail = RuleIndicator("Trail 2%", "", 39_955.0, T0, False, distance=0.02)
    eng.outbox.publish(snapshot(pos, 40_020.0, T0 + 1, indicator=trail))
    win.bridge.flush_now()
    QApplication.processEvents()
    chart.vb.updateAutoRange()
    QApplication.processEvents()
    tags = [t for t in (*chart.tags.values(), chart.indicator_tag) if t.isVisible()]
    assert {t.kind for t in tags} >= {"entry", "sl", "tp", "trailing", "liquidation", "last",
                                      "indicator"}
    vb_rect = chart.vb.sceneBoundingRect()
    for a, b in itertools.combinations(tags, 2):
        ra, rb = a.sceneBoundingRect(), b.sceneBoundingRect()
        assert not ra.intersects(rb), (a.kind, a.toPlainText(), b.kind, b.toPlainText())
    axis = chart.plot.getPlotItem().getAxis("right").sceneBoundingRect()
    for t in tags:
        r = t.sceneBoundingRect()
        assert vb_rect.top() - 1 <= r.top() and r.bottom() <= vb_rect.bottom() + 1, t.kind
        if t.kind == "last":  # on the price axis, never over the newest candle
            assert r.right() <= axis.right() + 1 and r.left() >= vb_rect.right() - r.width()
            newest = chart.candles()[-1]
            x = chart.vb.mapViewToScene(QPointF(newest.ts, newest.close)).x()
            assert x < r.left()
        else:
            assert vb_rect.adjusted(-1, -1, 1, 1).contains(r), t.kind
    win.chart.grab().save(f"/tmp/pmgui_chart_1024_{theme}.png")


def test_stack_tags_keeps_order_and_bounds():
    out = stack_tags([("a", 50, 20), ("b", 52, 20), ("c", 54, 20), ("d", 300, 20)], 0, 100)
    assert out["a"] < out["b"] < out["c"]
    assert out["b"] - out["a"] >= 21 and out["c"] - out["b"] >= 21
    assert out["d"] == 90  # clamped to the bottom edge
    assert out["c"] <= out["d"] - 21


def test_a_new_candle_redraws_one_chunk_of_the_history(qtbot):
    import pyqtgraph as pg

    from pmgui.ui.chart_items import CandleLayer
    from pmgui.ui.theme import make_theme

    plot = pg.PlotWidget()
    qtbot.addWidget(plot)
    layer = CandleLayer(plot, make_theme("dark"))
    cs = candles(1000, start=40_000.0, step=3.0, t0=0.0)
    layer.set_candles(cs[:999], 60.0)
    items = layer.items
    assert len(items) == 5 and sum(len(i.candles) for i in items) == 999
    pictures = [i._picture for i in items]
    layer.set_candles(cs, 60.0)
    assert layer.candles == cs
    changed = [a is not b._picture for a, b in zip(pictures, layer.items, strict=True)]
    assert changed == [False, False, False, False, True]
    layer.set_candles(cs[400:], 60.0)  # the oldest dropped: their chunks go away
    assert len(layer.items) == 3 and layer.candles == cs[400:]
    assert [i for i in plot.getPlotItem().items if i in items[:2]] == []


def test_series_view_returns_only_the_newest_candles():
    s = CandleSeries()
    s.merge(candles(600, t0=0.0))
    assert s.view(60.0, 100) == list(candles(600, t0=0.0)[-100:])
    five = s.view(300.0, 10)
    assert len(five) == 10 and five == merge_buckets(candles(600, t0=0.0), 300.0)[-10:]


def test_tag_texts_say_the_state_of_each_line():
    from pmgui.ui.chart_drag import DragContext
    from pmgui.ui.chart_text import tag_text

    ctx = DragContext(Side.LONG, 40_000.0, 0.5, 1.0, 0.0, 39_000.0, 40_500.0, BTC)
    m = LineMachine("sl")

    def text(level=39_400.0, automation=True, kind="sl", note=""):
        return tag_text(kind, level, ctx, m, automation=automation, market=BTC,
                        entry_note=note)

    assert text() == "SL 39,400.0 · −1.5% · −$300 · −0.6R"
    assert text(automation=False).endswith(" · ‖ paused")
    m.start_drag(39_500.0)
    assert text(40_600.0).endswith(" · ✖ would trigger now")
    m.drop(39_600.0)
    assert text().endswith("confirm or discard")
    m.send(39_600.0, T0)
    assert text().endswith("pending…")
    m.resolve(verdict("sl", 39_600.0, None, "x" * 80), T0)
    assert text().endswith(" · ✖ " + "x" * 47 + "…")  # long reasons are cut short
    m.reset()
    m.auto = "trailing"
    assert text().endswith(" · ◆ trailing")
    assert tag_text("entry", 40_000.0, ctx, LineMachine("entry"), automation=True,
                    market=BTC, entry_note="drag for SL") == "Entry 40,000.0 · drag for SL"


def test_escape_while_creating_from_the_entry_creates_nothing(qtbot):
    pos = POS.evolve(sl=None, initial_sl=None)
    eng, win, chart, mouse = make(qtbot, [snapshot(pos, 40_500.0)])
    chart.vb.setRange(yRange=(38_500.0, 42_500.0), padding=0)
    QApplication.processEvents()
    a, b = mouse.at(40_000.0), mouse.at(39_300.0)
    mouse.move(a)
    mouse.press(a)
    mouse.move(b)
    assert chart.line("sl").isVisible()
    qtbot.keyClick(chart.plot, Qt.Key.Key_Escape)
    assert not chart.line("sl").isVisible() and chart.machine("sl").state is LineState.IDLE
    mouse.move(a)  # the rest of the gesture does nothing
    mouse.release(a)
    assert eng.of_type(SetTargets) == []
    assert "cancelled" in win.statusBar().currentMessage()
    assert chart.line("entry").movable  # and the entry still offers the stop


def test_a_new_action_marker_neither_re_ranges_nor_repaints_the_whole_view(
        qtbot, monkeypatch):
    """The markers are outside the auto-range: refreshing them (each action of the shown
    position, many a second in a storm) must not make pyqtgraph run an auto-range and
    repaint the whole view; the marker is still shown."""
    eng, win, chart, _mouse = auto_ranged(qtbot)
    for _ in range(3):
        QApplication.processEvents()
    reported = bounds_reports(chart)
    whole, ranged = repaints_and_ranges(chart, monkeypatch)
    shown = chart.vb.viewRange()
    eng.outbox.publish(action(POS.id, POS.symbol, price=40_450.0, ts=T0 + 5))
    win.bridge.flush_now()
    QApplication.processEvents()
    chart.plot.viewport().repaint()  # the paint that would run a pending auto-range
    assert [m[:2] for m in chart.marker_points()] == [(T0, 40_450.0)]  # on T0's candle
    assert reported == [] and whole == [] and ranged == []
    assert chart.vb.viewRange() == shown


def test_a_stop_moved_inside_the_view_repaints_itself_not_the_whole_view(qtbot, monkeypatch):
    """A trailing stop moves many times a second in a storm: inside the view its move still
    runs the auto-range at the next paint (it can tighten a loose range), but asks for no
    repaint of the whole view besides its own; moved out of the view it re-ranges as
    before, the range growing to show it."""
    eng, win, chart, _mouse = auto_ranged(qtbot)
    for _ in range(3):
        QApplication.processEvents()
    whole, ranged = repaints_and_ranges(chart, monkeypatch)
    from dataclasses import replace

    (_x0, _x1), (y0, y1) = chart.vb.viewRange()
    shown = chart.vb.viewRange()
    inside = POS.sl + 20.0  # the stop trails up a little, still the lowest level
    assert y0 < inside < y1
    eng.outbox.publish(snapshot(replace(POS, sl=inside), 40_500.0, T0 + 5))
    win.bridge.flush_now()
    QApplication.processEvents()
    chart.plot.viewport().repaint()
    assert chart.line("sl").value() == inside
    assert ranged == [1] and whole == []  # the auto-range ran, at the line's own paint
    assert chart.vb.viewRange() == shown  # (and held the range)
    ranged.clear()
    below = round(y0 - (y1 - y0), 1)  # far below the view
    eng.outbox.publish(snapshot(replace(POS, sl=below), 40_500.0, T0 + 6))
    win.bridge.flush_now()
    QApplication.processEvents()
    chart.plot.viewport().repaint()
    assert ranged and chart.vb.viewRange()[1][0] <= below


def test_the_last_price_moves_without_re_ranging_the_view_and_a_new_high_still_does(
        qtbot, monkeypatch):
    """The last-price line and the tags are outside the auto-range: moving them must not
    make pyqtgraph re-range and repaint the whole view (it did at every tick of the shown
    symbol). The forming candle is inside it: a new high beyond the view re-ranges."""
    eng, win, chart, _mouse = auto_ranged(qtbot)
    eng.outbox.publish(tick(POS.symbol, 40_490.0, T0 + 1))  # settle: the forming candle
    win.bridge.flush_now()
    for _ in range(3):
        QApplication.processEvents()
    reported = bounds_reports(chart)
    whole, ranged = repaints_and_ranges(chart, monkeypatch)
    last = chart.line("last")
    shown = chart.vb.viewRange()
    assert shown[1][0] < 40_480.0
    eng.outbox.publish(tick(POS.symbol, 40_480.0, T0 + 2))  # the forming candle: 480–500
    win.bridge.flush_now()
    QApplication.processEvents()
    chart.plot.viewport().repaint()  # the paint that would run a pending auto-range
    # its new low was reported, is inside the view: the range holds, no whole-view repaint,
    # and no auto-range is run for it
    assert chart.forming_item in reported and whole == [] and ranged == []
    assert chart.vb.viewRange() == shown
    reported.clear()
    eng.outbox.publish(tick(POS.symbol, 40_490.0, T0 + 3))  # inside the forming candle
    win.bridge.flush_now()
    QApplication.processEvents()
    assert last.value() == 40_490.0
    assert last not in reported and chart.tags["last"] not in reported
    assert reported == []  # nothing that bounds the view changed
    _lo, hi = chart.vb.viewRange()[1]
    high = hi + (hi - _lo)  # far above the view
    eng.outbox.publish(tick(POS.symbol, high, T0 + 4))
    win.bridge.flush_now()
    QApplication.processEvents()
    chart.plot.viewport().repaint()
    assert chart.forming_item in reported and ranged  # its new high was reported, re-ranged
    assert chart.vb.viewRange()[1][1] >= high  # and the view follows it


_tick_prices = st.one_of(st.floats(99.0, 101.0), st.sampled_from([100.0, 100.5, 0.0, -1.0]),
                         st.just(math.nan), st.none())
_tick_steps = st.one_of(st.floats(-5.0, 90.0), st.sampled_from([0.0, 60.0, 3600.0]),
                        st.just(math.inf))


@settings(max_examples=300, deadline=None)
@given(ticks=st.lists(st.tuples(_tick_prices, _tick_steps), max_size=60),
       start=st.sampled_from(["empty", "window", "forming"]),
       max_len=st.sampled_from([3, 10_000]))
def test_folding_waiting_ticks_is_the_same_as_one_tick_at_a_time(ticks, start, max_len):
    """A symbol not shown folds its waiting ticks in one batch: the same candles, version
    and forming flag as feeding them one by one."""
    one, batch = CandleSeries(max_len), CandleSeries(max_len)
    for s in (one, batch):
        if start != "empty":
            s.merge(candles(5, start=100.0, step=0.1, t0=T0 - 300))
        if start == "forming":
            s.on_tick(100.2, T0 + 1)
    ts, pairs = T0, []
    for price, step in ticks:
        ts = ts + step if math.isfinite(step) else step
        pairs.append((price, ts))
    for price, t in pairs:
        one.on_tick(price, t)  # type: ignore[arg-type]
    batch.fold(pairs)  # type: ignore[arg-type]
    assert batch.candles == one.candles
    assert (batch.version, batch.forming) == (one.version, one.forming)


def test_ticks_of_symbols_not_shown_wait_without_their_events(qtbot):
    """In a storm nearly every tick is of a symbol not shown; up to FOLD_AFTER of them per
    symbol wait to be folded into its candles. They wait as numbers, not as the engine's
    events: tens of thousands of live objects made every full garbage collection long, and
    a collection holds the interpreter lock (the window stalled for as long). The candles
    they fold into are the same as one tick at a time."""
    import gc

    from pmgui.engine.events import TickEvent

    _eng, _win, chart, _mouse = make(qtbot, [snapshot(POS, 40_500.0)])
    other = "ETH/USDT:USDT"
    prices = [2000.0 + (i % 17) * 0.5 for i in range(200)]
    for i, p in enumerate(prices):
        chart.on_ticks([tick(other, p, T0 + i * 7.0)])
    alive = [o for o in gc.get_objects() if isinstance(o, TickEvent) and o.symbol == other]
    assert len(alive) <= 1  # the newest price of the symbol, nothing per waiting tick
    assert chart.price_of(other) == prices[-1]
    one = CandleSeries()
    for i, p in enumerate(prices):
        one.on_tick(p, T0 + i * 7.0)
    folded = chart._series_of(other)
    assert folded is not None and folded.candles == one.candles


def test_a_tick_after_the_engines_window_does_not_show_the_last_candle_twice(qtbot):
    """The engine's window ends with a completed candle (nothing forming); the next tick of
    the same minute extends it, so it is forming again, with no new candle and no new
    version. It is drawn once, as the forming candle: the completed candles drawn before
    must be redrawn without it (it was shown twice, in the drawn candles and as the forming
    one; seen as a flaky 4h bucket twice in test_ui_chart_engine)."""
    eng, win, chart, _mouse = make(qtbot, [snapshot(POS, 40_500.0)])
    window = candles(40, start=40_000.0, step=10.0, t0=T0 - 39 * 60)  # ends at T0's minute
    eng.outbox.publish(candles_event(POS.symbol, window))
    win.bridge.flush_now()
    assert [c.ts for c in chart.candles()][-1] == window[-1].ts
    eng.outbox.publish(tick(POS.symbol, window[-1].high + 50.0, window[-1].ts + 30))
    win.bridge.flush_now()
    ts = [c.ts for c in chart.candles()]
    assert ts == sorted(set(ts))
    assert chart.candles()[-1].high == window[-1].high + 50.0


def test_the_title_follows_the_shown_positions_size_and_automation(qtbot):
    """The title is written only when what it says changed (it is asked at every live
    redraw): a new size, a pause, a new selection still reach it."""
    from dataclasses import replace

    eng, win, chart, _mouse = make(qtbot, [snapshot(POS, 40_500.0)])
    assert chart.title.text().startswith(f"{BTC.symbol}  ▲ LONG 0.500 @ 40,000.0")
    eng.outbox.publish(snapshot(POS, 40_510.0, T0 + 1))  # a new mark: the same title
    win.bridge.flush_now()
    assert "0.500" in chart.title.text()
    smaller = replace(POS, qty=0.25)
    eng.outbox.publish(snapshot(smaller, 40_520.0, T0 + 2))
    win.bridge.flush_now()
    assert chart.title.text().startswith(f"{BTC.symbol}  ▲ LONG 0.250 @")
    eng.outbox.publish(snapshot(replace(smaller, automation=False), 40_530.0, T0 + 3))
    win.bridge.flush_now()
    assert chart.title.text().endswith("‖ automation paused")
    assert chart.title.toolTip() == chart.title.text()


def test_a_live_redraw_is_a_call_of_its_own_not_part_of_the_pump(qtbot):
    """In a storm the engine's thread takes the interpreter lock from the GUI thread once it
    has held it past the switch interval (5 ms), and getting it back waits: the GUI's work
    is best done in short stretches. A change brought by the bridge's pump redrew the chart
    inside the pump's call, after the table and the log; now the redraw runs on the event
    loop's next turn, as a call of its own."""
    eng, win, chart, _mouse = make(qtbot, [snapshot(POS, 40_500.0)])
    QApplication.processEvents()
    chart._cooldown.stop()  # the next live change redraws at once, not after the interval
    eng.outbox.publish(tick(POS.symbol, 40_600.0, T0 + 5))
    win.bridge.pump()
    assert chart.line("last").value() == 40_500.0  # not redrawn inside the pump
    qtbot.waitUntil(lambda: chart.line("last").value() == 40_600.0)  # the next turn


def test_actions_during_the_forming_candle_do_not_move_the_time_range(qtbot):
    """A marker counts in the auto-range, and an action falls anywhere in the forming
    candle's minute, past its drawn body: each one widened the time range, and a new range
    lays the whole chart out again (the date axis's labels, every item), ~9 times in 4 s
    of the GUI storm. The candles' time bounds reach the end of the last one's period, so
    the forming minute's markers are inside them (and on screen)."""
    from tests.ui_doubles import action

    eng, win, chart, _mouse = auto_ranged(qtbot)  # forming candle: T0's minute
    chart.vb.updateAutoRange()  # (settled: the view's final size)
    QApplication.processEvents()
    x_range = chart.vb.viewRange()[0]
    for i, dt in enumerate((40.0, 50.0, 59.0)):
        eng.outbox.publish(action(POS.id, POS.symbol, ts=T0 + dt, sl=39_100.0 + i))
        win.bridge.flush_now()
        chart.vb.updateAutoRange()
        QApplication.processEvents()
        assert chart.vb.viewRange()[0] == x_range
    xs = [x for x, _y, _tip in chart.marker_points()]
    assert len(xs) == 3 and all(x_range[0] < x < x_range[1] for x in xs)


def test_with_no_history_the_forming_minutes_markers_are_on_screen(qtbot):
    """Markers do not count in the auto-range (each new one moved it); with no history the
    range is the forming candle's alone, and it covers that candle's whole minute, so an
    action late in the minute is still shown."""
    from tests.ui_doubles import action

    eng = EngineDouble()
    win = shown_window(qtbot, eng, size=(1400, 900), settings=UiSettings())
    eng.outbox.publish(snapshot(POS, 40_500.0))
    eng.outbox.publish(tick(POS.symbol, 40_500.0, T0))
    eng.outbox.publish(action(POS.id, POS.symbol, ts=T0 + 50, sl=39_100.0))
    win.bridge.flush_now()
    chart = win.chart
    chart.vb.updateAutoRange()
    QApplication.processEvents()
    assert chart.vb.autoRangeEnabled()[0] and not chart.candle_item.candles
    (x0, x1), _ = chart.vb.viewRange()
    ((x, _y, _tip),) = chart.marker_points()
    assert x0 < x == T0 < x1  # on the forming candle (of T0's minute)


def _python_overrides(item, names=("paint", "boundingRect", "shape")) -> list[str]:
    """The Qt virtuals `item`'s class answers in Python (Qt calls each one back into Python,
    under the interpreter lock, at every paint)."""
    return [n for n in names if isinstance(getattr(type(item), n), types.FunctionType)]


def test_tags_are_drawn_by_qt_beside_their_level_and_follow_the_view(qtbot):
    """Line tags and the crosshair's tag are Qt-native: no Python paint, bounds or
    per-paint transform (pyqtgraph's TextItem had all three); the text and the place a
    trader reads are as before, and they follow a pan of the view."""
    _eng, _win, chart, _mouse = auto_ranged(qtbot)
    for tag in (*chart.tags.values(), chart.indicator_tag, chart.cross_tag):
        assert _python_overrides(tag) == [] and _python_overrides(tag.textItem) == []
        assert tag.textItem.text() == tag.toPlainText()
    sl = chart.tags["sl"]
    assert sl.isVisible() and sl.toPlainText().startswith("SL 39,000")

    def beside_its_level() -> None:
        r, vb = sl.sceneBoundingRect(), chart.vb.sceneBoundingRect()
        y = chart.vb.mapViewToScene(QPointF(0.0, chart.line("sl").value())).y()
        assert r.center().y() == pytest.approx(y, abs=1.0)
        assert r.left() == pytest.approx(vb.left() + TAG_MARGIN, abs=1.0)

    beside_its_level()
    y0, y1 = chart.vb.viewRange()[1]
    chart.vb.setYRange(y0 - (y1 - y0) * 0.2, y1 - (y1 - y0) * 0.2, padding=0)  # a pan
    QApplication.processEvents()
    beside_its_level()


def test_the_views_and_the_plot_answer_paints_in_qt(qtbot):
    """Qt asks every item for its bounds at every paint (a view box for its shape too): the
    chart's view boxes and plot item leave those to Qt, with the same rectangle as
    pyqtgraph's Python versions."""
    _eng, _win, chart, _mouse = auto_ranged(qtbot)
    pi = chart.plot.getPlotItem()
    for w in (chart.vb, chart.volume_vb, pi):
        assert _python_overrides(w) == [], type(w).__name__
        assert w.boundingRect() == pg.GraphicsWidget.boundingRect(w)
        assert w.shape().boundingRect() == w.boundingRect()
    assert chart.vb.sceneBoundingRect().contains(chart.tags["sl"].sceneBoundingRect())


def test_a_new_candle_in_the_right_margin_keeps_the_time_range(qtbot):
    """The time range leaves room after the newest candle: a new candle inside it moves
    no range (a new range re-lays the whole chart out, both axes and every item); one
    beyond it moves the range on, with room again, the newest candle in view."""
    eng, win, chart, _mouse = auto_ranged(qtbot)
    x0, x1 = chart.vb.viewRange()[0]
    newest = chart.candles()[-1]
    assert x1 > newest.ts + 60  # room after the forming candle's period

    def at(ts: float, price: float) -> None:
        eng.outbox.publish(tick(POS.symbol, price, ts))
        win.bridge.flush_now()
        qtbot.waitUntil(lambda: chart.candles()[-1].ts == ts)
        chart.plot.viewport().repaint()  # the paint that runs the auto-range

    at(newest.ts + 60, 40_490.0)  # the next minute
    assert chart.vb.viewRange()[0] == [x0, x1]
    beyond = (x1 // 60 + 1) * 60  # a minute past the range's end
    at(beyond, 40_495.0)
    y0, y1 = chart.vb.viewRange()[0]
    assert y1 > beyond + 60  # moved on, the newest candle in view with room after it
    assert y0 <= chart.candles()[0].ts  # and the oldest still in view


@pytest.mark.parametrize("off", [4, -4])
def test_a_line_grabbed_beside_its_level_does_not_jump_to_the_cursor(qtbot, off):
    """A line is grabbed within a few pixels of its level. The first move put the level under
    the cursor: a press 4 px off the stop, held, with a 1 px tremor, moved the stop by 5 px of
    price and the drop sent it. The line keeps where it was held and moves as the hand moves."""
    eng, _win, chart, mouse = auto_ranged(qtbot)
    a = mouse.at(39_000.0) + QPoint(0, off)
    assert abs(price_at(chart, a) - 39_000.0) > 5 * BTC.tick_size  # a real offset
    mouse.move(a)
    mouse.press(a)
    b = a + QPoint(0, 1)
    for _ in range(3):  # past the drag threshold and back: a held, trembling click
        mouse.move(a + QPoint(0, 12))
        mouse.move(b)
    moved = price_at(chart, b) - price_at(chart, a)
    assert chart.line("sl").value() == pytest.approx(39_000.0 + moved, abs=BTC.tick_size)
    mouse.release(b)
    (cmd,) = eng.of_type(SetTargets)
    assert abs(cmd.sl - (39_000.0 + moved)) <= BTC.tick_size / 2 + 1e-9
