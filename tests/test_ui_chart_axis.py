"""The chart's axes fill their grid as pixel runs (chart_axis.py) and look exactly as
pyqtgraph's stroked lines did."""

from __future__ import annotations

import pyqtgraph as pg
import pytest
from PySide6.QtGui import QImage, QPainter

from pmgui.ui.chart_axis import FilledGrid, line_pixels
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
