"""Audit of the history panel's equity curve over a long-running account."""

from __future__ import annotations

import math

from pmgui.engine.commands import GetHistory, HistorySnapshot
from pmgui.store.metrics import TradeMetrics
from pmgui.ui.history import EQUITY_MAX_POINTS, HistoryPanel, equity_points
from tests.ui_doubles import T0

MONTH = 30 * 8_640  # the engine's equity points in a month (one every 10 s)


def month_of_equity() -> tuple[tuple[float, float], ...]:
    """A month of points, a slow wave with one sharp drawdown and one spike up."""
    pts = [(T0 + i * 10.0, 10_000.0 + 200.0 * math.sin(i / 5_000.0)) for i in range(MONTH)]
    pts[123_457] = (pts[123_457][0], 7_500.0)  # a liquidation cascade's low, one point
    pts[200_001] = (pts[200_001][0], 12_900.0)  # the best moment
    return tuple(pts)


def test_a_months_equity_curve_is_drawn_from_a_bounded_set_keeping_every_extreme():
    """Every answer carries every point the engine kept; drawing a month of them (259,200)
    took over half a second of the GUI thread at each close: the window froze. The curve
    is drawn from at most EQUITY_MAX_POINTS, each stretch keeping its lowest and highest
    equity, so the drawdown and the peak are still there, at their times."""
    rows = month_of_equity()
    xs, ys = equity_points(rows)
    assert 2 <= len(xs) <= EQUITY_MAX_POINTS
    assert xs == sorted(xs) and len(set(xs)) == len(xs)
    assert (xs[0], ys[0]) == rows[0] and (xs[-1], ys[-1]) == rows[-1]
    assert (rows[123_457][0], 7_500.0) in zip(xs, ys, strict=True)
    assert (rows[200_001][0], 12_900.0) in zip(xs, ys, strict=True)
    assert min(ys) == 7_500.0 and max(ys) == 12_900.0
    # every point drawn is a point of the account, not an average
    real = dict(rows)
    assert all(real[x] == y for x, y in zip(xs, ys, strict=True))


def test_a_short_curve_is_drawn_whole_and_an_unsorted_one_in_time_order():
    rows = tuple((T0 + i * 10.0, 10_000.0 + i) for i in range(EQUITY_MAX_POINTS))
    assert equity_points(rows) == ([r[0] for r in rows], [r[1] for r in rows])
    assert equity_points(((T0 + 20, 3.0), (T0, 1.0), (T0 + 10, 2.0))) == (
        [T0, T0 + 10, T0 + 20], [1.0, 2.0, 3.0])


def test_the_panel_draws_a_months_answer_bounded(qtbot):
    answer = HistorySnapshot((), TradeMetrics(), month_of_equity())

    def ask(_req: GetHistory, done) -> bool:
        done(answer, None)
        return True

    panel = HistoryPanel(ask, lambda _s: None)
    qtbot.addWidget(panel)
    panel.show()
    assert panel.refresh()
    xs, ys = panel.equity_curve.getData()
    assert len(xs) <= EQUITY_MAX_POINTS and min(ys) == 7_500.0 and max(ys) == 12_900.0
    (x0, x1), _y = panel.equity_plot.getPlotItem().getViewBox().viewRange()
    assert x0 <= T0 + 1 and x1 >= T0 + (MONTH - 1) * 10.0 - 1


def test_the_equity_axis_reads_a_large_account_in_plain_figures(qtbot):
    """pyqtgraph labels values of 10,000 or more with `%g`: a $1.2M account's axis read
    "1.3e+06" (and its neighbours, "1.24634e+06", did not fit and were left out)."""
    equity = tuple((T0 + i * 600.0, 1_234_000.0 * (1 + 0.01 * (i % 7))) for i in range(40))
    answer = HistorySnapshot((), TradeMetrics(), equity)
    panel = HistoryPanel(lambda _r, done: (done(answer, None), True)[1], lambda _s: None)
    qtbot.addWidget(panel)
    panel.resize(600, 500)
    panel.show()
    qtbot.waitExposed(panel)
    assert panel.refresh()
    axis = panel.equity_plot.getPlotItem().getAxis("left")
    assert axis.tickStrings([1_240_000.0, 1_260_000.0], 1.0, 20_000.0) == [
        "1,240,000", "1,260,000"]
    assert axis.tickStrings([10_050.0, 10_100.0], 1.0, 50.0) == ["10,050", "10,100"]
    assert axis.tickStrings([0.0505, 0.051], 1.0, 0.0005) == ["0.0505", "0.0510"]
    assert axis.tickStrings([-500.0, 0.0], 1.0, 250.0) == ["\u2212500", "0"]
    # the labels the axis draws now: every one whole, none in scientific notation
    qtbot.waitUntil(lambda: bool(_drawn_labels(axis)), timeout=5000)
    labels = _drawn_labels(axis)
    assert len(labels) >= 3 and all("e+" not in t for t in labels), labels


def _drawn_labels(axis) -> list[str]:
    from PySide6.QtGui import QPainter, QPixmap

    pix = QPixmap(10, 10)
    painter = QPainter(pix)
    try:
        specs = axis.generateDrawSpecs(painter)
    finally:
        painter.end()
    return [] if specs is None else [t for _rect, _flags, t in specs[2]]
