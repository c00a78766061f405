"""The chart's axes fill their grid as pixel runs (chart_axis.py) and look exactly as
pyqtgraph's stroked lines did."""

from __future__ import annotations

import pyqtgraph as pg
import pytest
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QApplication

from pmgui.ui import chart_axis
from pmgui.ui.chart_axis import FilledGrid, Measured, line_pixels
from tests.test_ui_chart import auto_ranged


class Recording:
    """A painter that notes the lines stroked through it (everything else is the real
    painter's)."""

    def __init__(self, painter: QPainter) -> None:
        self._painter = painter
        self.stroked: list[tuple] = []

    def drawLine(self, *args: object) -> None:
        self.stroked.append(args)
        self._painter.drawLine(*args)

    def __getattr__(self, name: str) -> object:
        return getattr(self._painter, name)


def _image(axis: pg.AxisItem) -> QImage:
    r = axis.boundingRect()
    img = QImage(int(r.width() * 2) + 4, int(r.height() * 2) + 4,
                 QImage.Format.Format_ARGB32_Premultiplied)
    img.fill(0)
    return img


def _axes(chart) -> list[pg.AxisItem]:
    pi = chart.plot.getPlotItem()
    return [pi.getAxis("right"), pi.getAxis("bottom")]


@pytest.mark.parametrize("shift", [(0.0, 0.0), (0.5, 0.5), (0.37, 0.81)])
@pytest.mark.parametrize("scale", [1.0, 1.5, 2.0])
def test_the_axes_paint_the_same_pixels_as_pyqtgraphs(qtbot, shift, scale):
    _eng, _win, chart, _mouse = auto_ranged(qtbot)
    for axis in _axes(chart):
        r = axis.boundingRect()
        images = []
        for draw in (pg.AxisItem.drawPicture, type(axis).drawPicture):
            img = _image(axis)
            p = QPainter(img)
            p.translate(-r.x() * scale + shift[0], -r.y() * scale + shift[1])
            p.scale(scale, scale)
            draw(axis, p, *axis.generateDrawSpecs(p))
            p.end()
            images.append(img)
        assert images[0] == images[1], axis.orientation


def test_the_grid_is_filled_not_stroked(qtbot):
    """Qt strokes a translucent aliased line pixel by pixel: the price axis's ~50 grid
    lines cost milliseconds at every new range; filled they are one span a row."""
    _eng, _win, chart, _mouse = auto_ranged(qtbot)
    for axis in _axes(chart):
        assert isinstance(axis, FilledGrid)
        img = _image(axis)
        p = QPainter(img)
        _axis_line, ticks, _labels = axis.generateDrawSpecs(p)
        assert len(ticks) > 5  # grid lines to draw
        rec = Recording(p)
        axis.paint(rec, None, None)
        p.end()
        # (pyqtgraph's own axis line is handed a point and no pen)
        assert [a for a in rec.stroked if a[0] != a[-1]] == [], axis.orientation


@pytest.mark.parametrize("end", [float("nan"), float("inf"), -float("inf"), 1e300])
def test_a_line_off_any_pixel_is_left_to_qt(end):
    """A degenerate range can put a grid line's end at a NaN, infinite or huge device coordinate:
    no pixel run (the axis strokes it, Qt skips it) rather than an exception inside paint."""
    assert line_pixels(end, 3.0, 10.0, 3.0) is None
    assert line_pixels(2.0, 3.0, 2.0, end) is None
    assert line_pixels(0.5, 3.5, 9.5, 3.5) is not None


class Counting(Recording):
    """A painter that counts the text measurements asked of it and of its font metrics."""

    def __init__(self, painter: QPainter) -> None:
        super().__init__(painter)
        self.measured = 0

    def boundingRect(self, *args: object) -> object:
        self.measured += 1
        return self._painter.boundingRect(*args)

    def fontMetrics(self) -> object:
        outer = self

        class Metrics:
            def __init__(self, fm) -> None:
                self._fm = fm

            def boundingRect(self, *args: object) -> object:
                outer.measured += 1
                return self._fm.boundingRect(*args)

            def __getattr__(self, name: str) -> object:
                return getattr(self._fm, name)

        return Metrics(self._painter.fontMetrics())


def _ranges(chart) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """The view's range and others around it: shifted by a fraction, zoomed in and out."""
    (x0, x1), (y0, y1) = chart.vb.viewRange()
    w, h = x1 - x0, y1 - y0
    return [((x0, x1), (y0, y1)), ((x0 + w / 7, x1 + w / 7), (y0 - h / 9, y1 - h / 9)),
            ((x0, x0 + w / 20), (y0, y0 + h / 30)), ((x0 - 5 * w, x1 + 5 * w), (y0, y1 + 40 * h)),
            ((x0 - 300 * w, x1), (y0 + h / 3, y1 - h / 3))]


def _specs(axis: pg.AxisItem, p: object) -> tuple:
    (_pen, a, b), ticks, labels = axis.generateDrawSpecs(p)
    return ((a.toTuple(), b.toTuple()), [(q.toTuple(), r.toTuple()) for _pen, q, r in ticks],
            [(rect.getRect(), int(flags), text) for rect, flags, text in labels],
            getattr(axis, "minSpacing", None))


def test_the_labels_are_measured_once(qtbot):
    """A label's bounding rect (the time axis: also its zoom levels' example texts) is
    measured once per font and device, not at every paint of a new range."""
    _eng, _win, chart, _mouse = auto_ranged(qtbot)
    for axis in _axes(chart):
        chart_axis._MEASURES.clear()
        counts = []
        for _ in range(2):
            img = _image(axis)
            p = QPainter(img)
            rec = Counting(p)
            axis.paint(rec, None, None)
            p.end()
            counts.append(rec.measured)
        assert counts[0] > 3 and counts[1] == 0, (axis.orientation, counts)


def test_remembered_measures_give_pyqtgraphs_specs_and_pixels(qtbot):
    """At several ranges the draw specs made with remembered measurements (first and
    second time) are those of pyqtgraph measuring every label, and so are the pixels."""
    _eng, _win, chart, _mouse = auto_ranged(qtbot)
    chart.vb.disableAutoRange()
    for xr, yr in _ranges(chart):
        chart.vb.setRange(xRange=xr, yRange=yr, padding=0)
        QApplication.processEvents()
        for axis in _axes(chart):
            chart_axis._MEASURES.clear()
            img = _image(axis)
            p = QPainter(img)
            plain = _specs(axis, p)
            cold = _specs(axis, Measured(p))
            warm = _specs(axis, Measured(p))
            p.end()
            assert len(plain[2]) > 1, (axis.orientation, xr, yr)  # labels to measure
            assert cold == plain and warm == plain, (axis.orientation, xr, yr)
            images = []
            for draw in ("pyqtgraph", "cold", "warm"):
                if draw == "cold":
                    chart_axis._MEASURES.clear()
                img = _image(axis)
                p = QPainter(img)
                if draw == "pyqtgraph":
                    if axis.style["tickFont"]:
                        p.setFont(axis.style["tickFont"])
                    axis.drawPicture(p, *axis.generateDrawSpecs(p))
                else:
                    axis.paint(p, None, None)
                p.end()
                images.append(img)
            assert images[0] == images[1] == images[2], (axis.orientation, xr, yr)
