"""Audit of what the chart shows a trader: the price axis, markers, the view. Real window
over the engine double (tests/ui_doubles.py), real paints."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QApplication

from pmgui.domain.models import Market
from tests.ui_doubles import (
    T0,
    EngineDouble,
    candles,
    candles_event,
    position,
    shown_window,
    snapshot,
    tick,
)

PEPE = Market("PEPE/USDT:USDT", tick_size=0.0000001, amount_step=1.0, min_amount=1.0,
              base="PEPE", quote="USDT")


def shown(qtbot, pos, mark, step, markets=()):
    eng = EngineDouble()
    for m in markets:
        eng.markets[m.symbol] = m
    win = shown_window(qtbot, eng, size=(1400, 900))
    eng.outbox.publish(snapshot(pos, mark))
    eng.outbox.publish(candles_event(pos.symbol, candles(30, start=pos.entry, step=step)))
    eng.outbox.publish(tick(pos.symbol, mark, T0))
    win.bridge.flush_now()
    QApplication.processEvents()
    return eng, win, win.chart


def price_labels(chart) -> list[tuple[float, str]]:
    """(value, text) of every label the price axis draws at its range now."""
    axis = chart.plot.getPlotItem().getAxis("right")
    out = []
    for spacing, values in axis.tickValues(*axis.range, axis.geometry().height()):
        out += zip(values, axis.tickStrings(values, axis.autoSIPrefixScale, spacing),
                   strict=True)
    return out


@pytest.mark.parametrize("y0,y1", [(123_455.0, 123_458.0), (123_000.0, 124_000.0)])
def test_price_axis_labels_above_100k_are_distinct_prices_at_the_markets_precision(
        qtbot, y0, y1):
    """pyqtgraph wrote labels >= 10,000 with %g (six significant digits): 123,455.5,
    123,456.0 and 123,456.5 all read "123456", beside an entry at 123,456.7."""
    pos = position(entry=123_456.7, sl=123_400.0, tp=123_520.0)
    _eng, _win, chart = shown(qtbot, pos, 123_460.0, 1.0)
    chart.vb.setRange(yRange=(y0, y1), padding=0)
    QApplication.processEvents()
    labels = price_labels(chart)
    assert len(labels) >= 3
    texts = [t for _v, t in labels]
    assert len(set(texts)) == len(texts), texts
    for v, t in labels:
        # the tags' format (123,456.5): separators, the tick's decimals at least
        assert float(t.replace(",", "")) == pytest.approx(v, abs=1e-9), (v, t)
        assert "," in t and len(t.split(".")[1]) >= 1, (v, t)
    chart.grab().save(f"/tmp/pmgui_audit_axis_big_{y0:.0f}.png")


def test_price_axis_labels_of_a_tiny_price_are_plain_decimals(qtbot):
    """A price of 0.0000123 (tick 0.0000001) was labelled 1.23e-05."""
    pos = position(symbol=PEPE.symbol, qty=1_000_000.0, entry=0.0000123, sl=0.0000118,
                   tp=0.0000131)
    _eng, _win, chart = shown(qtbot, pos, 0.0000124, 0.0000001, markets=(PEPE,))
    chart.vb.setRange(yRange=(0.0000115, 0.0000135), padding=0)
    QApplication.processEvents()
    labels = price_labels(chart)
    assert len(labels) >= 3
    for v, t in labels:
        assert "e" not in t and float(t) == pytest.approx(v, rel=1e-9), (v, t)
        assert len(t.split(".")[1]) >= 7, (v, t)  # the tick's decimals at least
    chart.grab().save("/tmp/pmgui_audit_axis_tiny.png")


def test_an_action_marker_sits_on_the_candle_of_its_time_at_every_timeframe(qtbot):
    """A candle is drawn centred on its open time; a marker was drawn at the action's own
    time, so an action at 02:45:30 on the 1h chart sat against the 03:00 candle (and
    between two candles on the 1m chart). It sits on the candle that holds its time."""
    from pmgui.domain.enums import ActionType, Reason
    from tests.ui_doubles import action

    eng = EngineDouble()
    win = shown_window(qtbot, eng, size=(1400, 900))
    pos = position()
    t0 = 1_763_683_200.0  # a UTC midnight
    cs = candles(600, start=40_000.0, step=5.0, t0=t0)
    when = t0 + 2 * 3600 + 45 * 60 + 30  # 02:45:30
    eng.outbox.publish(snapshot(pos, 40_500.0, ts=t0 + 600 * 60))
    eng.outbox.publish(candles_event(pos.symbol, cs))
    eng.outbox.publish(action("p1", pos.symbol, ActionType.MOVE_SL, Reason.TRAILING, 40_410.0,
                              when, sl=39_500.0))
    win.bridge.flush_now()
    chart = win.chart

    def drawn_x() -> float:
        xs, _ys = chart.markers.getData()
        assert len(xs) == 1
        return float(xs[0])

    shown_ts = {c.ts for c in chart.candles()}
    assert drawn_x() == t0 + 2 * 3600 + 45 * 60 and drawn_x() in shown_ts  # the 02:45 minute
    chart.set_timeframe("1h")
    QApplication.processEvents()
    assert drawn_x() == t0 + 2 * 3600 and drawn_x() in {c.ts for c in chart.candles()}
    chart.set_timeframe("15m")
    assert drawn_x() == t0 + 2 * 3600 + 45 * 60
    ((x, _y, tip),) = chart.marker_points()  # what is listed is what is drawn
    assert x == drawn_x() and "trailing" in tip
    chart.set_timeframe("1h")
    QApplication.processEvents()
    chart.grab().save("/tmp/pmgui_audit_marker_1h.png")


def test_a_double_click_makes_the_view_follow_the_price_again_after_a_zoom(qtbot):
    """A wheel zoom is the trader's and the ticks keep it (the view does not jump back);
    but nothing brought the following view back: the price could walk out of the chart for
    good. A double click on the plot shows the candles and levels again and follows."""
    from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
    from PySide6.QtGui import QWheelEvent

    from tests.test_ui_drag import Mouse, _send

    pos = position()
    eng, win, chart = shown(qtbot, pos, 40_500.0, 10.0)
    chart.vb.updateAutoRange()
    vp = chart.plot.viewport()
    centre = QPointF(vp.width() / 2, vp.height() / 2)
    wheel = QWheelEvent(centre, QPointF(vp.mapToGlobal(centre.toPoint())), QPoint(0, 0),
                        QPoint(0, 240), Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                        Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(vp, wheel)
    zoomed = chart.vb.viewRange()
    assert list(chart.vb.autoRangeEnabled()) == [False, False]
    for i, price in enumerate((40_700.0, 41_200.0, 43_000.0)):  # the price runs away
        eng.outbox.publish(tick(pos.symbol, price, T0 + 1 + i))
        win.bridge.flush_now()
        chart.redraw_now()
        chart.plot.viewport().repaint()
    assert chart.vb.viewRange() == zoomed  # the trader's zoom is kept tick after tick
    assert not zoomed[1][0] <= 43_000.0 <= zoomed[1][1]
    at, left = centre.toPoint(), Qt.MouseButton.LeftButton
    mouse = Mouse(chart)
    mouse.press(at)
    mouse.release(at)
    _send(vp, QEvent.Type.MouseButtonDblClick, at, left, left)  # what Qt sends the 2nd time
    mouse.release(at)
    chart.vb.updateAutoRange()
    (x0, x1), (y0, y1) = chart.vb.viewRange()
    assert y0 <= 39_000.0 and 43_000.0 <= y1  # the stop and the price, in view again
    assert x0 <= chart.candles()[0].ts and chart.candles()[-1].ts <= x1
    assert all(chart.vb.autoRangeEnabled())
    assert eng.commands() == []  # a double click sends nothing


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, 0.0])
def test_a_non_finite_or_non_positive_indicator_value_is_never_drawn(qtbot, bad):
    """The rule's line takes the engine's values as they come: a NaN reached the curve and
    its tag ("Trail 2% —" placed at a NaN height), inf an edge tag, −1 a price of −1.0."""
    import math

    from pmgui.engine.commands import IndicatorHistory
    from pmgui.engine.events import RuleIndicator

    pos = position()
    eng, win, chart = shown(qtbot, pos, 40_500.0, 10.0)

    def trail(v: float, ts: float) -> RuleIndicator:
        return RuleIndicator("Trail 2%", "", v, ts, False, distance=0.02)

    for i, v in enumerate((39_500.0, bad)):
        eng.outbox.publish(snapshot(pos, 40_500.0, T0 + 1 + i, indicator=trail(v, T0 + 1 + i)))
        win.bridge.flush_now()
        chart.redraw_now()
    QApplication.processEvents()
    tag = chart.indicator_tag
    assert tag.toPlainText() == "Trail 2% 39,500.0"
    assert math.isfinite(tag.pos().y())
    assert all(math.isfinite(y) and y > 0 for y in chart.indicator().ys)
    # the same for the past the engine answers with
    chart._feed.on_history(IndicatorHistory(pos.id, trail(39_600.0, T0 + 5),
                                            ((T0 - 60, bad), (T0 - 30, 39_400.0))))
    chart._update_indicator()
    assert all(math.isfinite(y) and y > 0 for y in chart.indicator().ys)


def test_the_checked_timeframe_names_the_candles_shown(qtbot):
    """A symbol whose candles are hourly (a replayed hourly file) is drawn in hourly
    candles whatever timeframe was chosen: the 1m button stayed checked (and disabled)
    over hourly candles. The button of the candles shown is checked; another symbol with
    minute candles shows the trader's 1m again."""
    from pmgui.domain.models import Candle
    from tests.ui_doubles import ETH

    pos = position()
    eth = position("e1", ETH.symbol, entry=3000.0, sl=2900.0, tp=3300.0)
    eng, win, chart = shown(qtbot, pos, 40_500.0, 10.0)
    eng.outbox.publish(snapshot(eth, 3000.0))
    hourly = tuple(Candle(T0 - 3600.0 * (40 - i), 3000.0, 3010.0, 2990.0, 3000.0, 1.0)
                   for i in range(40))
    eng.outbox.publish(candles_event(ETH.symbol, hourly))
    win.bridge.flush_now()
    assert chart.timeframe == "1m" and chart.tf_buttons["1m"].isChecked()
    assert win.select_position("e1") and chart.symbol == ETH.symbol
    shown_candles = chart.candles()
    assert shown_candles[1].ts - shown_candles[0].ts == 3600.0  # hourly candles are shown
    checked = [n for n, b in chart.tf_buttons.items() if b.isChecked()]
    assert checked == ["1h"]
    assert not chart.tf_buttons["1m"].isEnabled()
    assert win.select_position("p1") and chart.symbol == pos.symbol
    checked = [n for n, b in chart.tf_buttons.items() if b.isChecked()]
    assert checked == ["1m"] and chart.timeframe == "1m"


def test_a_stop_with_no_order_on_the_exchange_is_not_drawn_as_a_held_one(qtbot):
    """The engine says the position's stop is guarded locally only (no acknowledged stop
    order on the venue covers it: refused, not yet placed, or the position grew). The SL
    line was the same solid line with the same tag as a stop held on the exchange; it says
    so, dashed, until the venue holds it."""
    from PySide6.QtCore import Qt

    from pmgui.domain.enums import Protection

    pos = position()
    eng, win, chart = shown(qtbot, pos, 40_500.0, 10.0)
    sl, tag = chart.line("sl"), chart.tags["sl"]
    assert sl.pen.style() == Qt.PenStyle.SolidLine and "local only" not in tag.toPlainText()
    eng.outbox.publish(snapshot(pos, 40_510.0, T0 + 1, protection=Protection.LOCAL_ONLY))
    win.bridge.flush_now()
    chart.redraw_now()
    assert "⚠ local only" in tag.toPlainText()
    assert sl.pen.style() == Qt.PenStyle.DashLine
    assert "local only" not in chart.tags["tp"].toPlainText()  # the badge is the stop's
    eng.outbox.publish(snapshot(pos, 40_520.0, T0 + 2, protection=Protection.ON_EXCHANGE))
    win.bridge.flush_now()
    chart.redraw_now()
    assert "local only" not in tag.toPlainText()
    assert sl.pen.style() == Qt.PenStyle.SolidLine


def test_a_markers_explanation_shows_no_none_nan_or_scientific_numbers(qtbot):
    """Rules record what they saw as the action's inputs; a missing value (a TP distance
    with no TP) read "tp distance None", a NaN "nan", and a price of a fine-ticked market
    "1.23e-05"."""
    from pmgui.domain.enums import ActionType, Reason
    from pmgui.domain.models import Action
    from pmgui.engine.events import ActionTaken

    pos = position(symbol=PEPE.symbol, qty=1_000_000.0, entry=0.0000123, sl=0.0000118,
                   tp=0.0000131)
    eng, win, chart = shown(qtbot, pos, 0.0000124, 0.0000001, markets=(PEPE,))
    a = Action(ActionType.CLOSE, Reason.SMART_TAKE_PROFIT, pos.id, 0.0000130, qty=1e6,
               rule="smart_tp", ts=T0,
               inputs={"tp_distance": None, "ema": 0.0000123, "move": float("nan"),
                       "roi": 0.0523, "peak_price": 0.00001305, "instant": True})
    eng.outbox.publish(ActionTaken(a, PEPE.symbol))
    win.bridge.flush_now()
    chart.redraw_now()
    ((_x, _y, tip),) = chart.marker_points()
    inputs = tip.splitlines()[2]
    assert "None" not in inputs and "nan" not in inputs.lower() and "e-0" not in inputs
    assert "tp distance —" in inputs and "move —" in inputs
    assert "ema 0.0000123" in inputs and "peak price 0.00001305" in inputs
    assert "roi 0.0523" in inputs
