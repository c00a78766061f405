"""The chart's axes: pyqtgraph's, with their grid filled instead of stroked.

The axes draw the chart's grid: one line per tick of every level, across the whole plot
(~50 of them on the price axis). Qt strokes an aliased 1-pixel line that is not opaque one
pixel at a time (its cosmetic stroker blends each pixel as its own span), so the price
axis's horizontal grid alone took 3-8 ms of GUI-thread CPU each time the range changed —
most of the longest stall left in a storm. The same pixels filled as a 1-pixel-high
rectangle are one span a row: ~0.5 ms for the whole grid.
"""

from __future__ import annotations

from math import floor

import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRect, Qt
from PySide6.QtGui import QPainter, QPen, QTransform
from PySide6.QtWidgets import QStyleOptionGraphicsItem, QWidget

TickSpec = tuple[QPen, QPointF, QPointF]
_PIXEL_LIMIT = 2.0**30  # device coordinates a QRect holds (int32), with room for its size


def _fillable(pen: QPen) -> bool:
    """A pen whose aliased line is exactly a 1-pixel run of its colour (cosmetic, at most
    1 pixel wide, solid, a plain colour, square-capped: the last pixel drawn too)."""
    return (pen.isCosmetic() and pen.widthF() <= 1.0
            and pen.style() == Qt.PenStyle.SolidLine
            and pen.capStyle() == Qt.PenCapStyle.SquareCap
            and pen.brush().style() == Qt.BrushStyle.SolidPattern)


def line_pixels(ax: float, ay: float, bx: float, by: float) -> QRect | None:
    """The device pixels Qt's aliased cosmetic stroker covers for a horizontal or vertical
    line from (ax, ay) to (bx, by) (device coordinates): the pixel holding each end and all
    between; None for a slanted line, or one off any pixel (a NaN, infinite or huge end,
    from a degenerate range: stroked by Qt then, which clips it — `floor` or `QRect` would
    raise inside a paint, where an exception takes the window down)."""
    if not all(-_PIXEL_LIMIT < v < _PIXEL_LIMIT for v in (ax, ay, bx, by)):  # NaN: False
        return None
    if ay == by:
        x0, x1 = sorted((floor(ax), floor(bx)))
        return QRect(x0, floor(ay), x1 - x0 + 1, 1)
    if ax == bx:
        y0, y1 = sorted((floor(ay), floor(by)))
        return QRect(floor(ax), y0, 1, y1 - y0 + 1)
    return None


class FilledGrid:
    """Put first among the bases of a pyqtgraph axis: its grid and tick lines are filled
    pixel runs (see the module's docstring), its labels pyqtgraph's own.

    Drawn straight into the painter, not recorded into a QPicture and replayed: the runs
    must be placed in device pixels, which a picture replayed under another transform would
    not keep. The chart caches each axis as a pixmap (DeviceCoordinateCache), so `paint`
    only runs when the axis changed (a new range, size or style) — when pyqtgraph
    regenerates its picture anyway."""

    def paint(self, p: QPainter, opt: QStyleOptionGraphicsItem | None = None,
              widget: QWidget | None = None) -> None:
        if self.style["tickFont"]:
            p.setFont(self.style["tickFont"])
        specs = self.generateDrawSpecs(p)
        if specs is not None:
            self.drawPicture(p, *specs)

    def drawPicture(self, p: QPainter, axisSpec: TickSpec, tickSpecs: list[TickSpec],
                    textSpecs: list) -> None:
        t = p.transform()
        # mapped by hand (what QTransform.map does for a scale and a shift, the same
        # arithmetic): ~50 lines × 2 points of Qt calls were half of this method's cost
        sx, sy, dx, dy = t.m11(), t.m22(), t.dx(), t.dy()
        lines = (axisSpec, *tickSpecs)
        fillable: dict[int, bool] = {}  # by pen: one pen per tick level
        runs = []
        for pen, a, b in lines:
            ok = fillable.get(id(pen))
            if ok is None:
                ok = fillable[id(pen)] = _fillable(pen)
            runs.append(line_pixels(a.x() * sx + dx, a.y() * sy + dy,
                                    b.x() * sx + dx, b.y() * sy + dy) if ok else None)
        if (t.type().value > QTransform.TransformationType.TxScale.value
                or any(run is None for run in runs)):
            # rotated, or a line not a pixel run: all stroked, in pyqtgraph's order
            super().drawPicture(p, axisSpec, tickSpecs, textSpecs)
            return
        p.save()
        p.resetTransform()  # the runs are in device pixels
        for (pen, _a, _b), run in zip(lines, runs, strict=True):
            p.fillRect(run, pen.color())
        p.restore()
        _pen, a, _b = axisSpec
        super().drawPicture(p, (QPen(Qt.PenStyle.NoPen), a, a), [], textSpecs)


class ChartAxis(FilledGrid, pg.AxisItem):
    """The price axis (`FilledGrid`)."""


class ChartDateAxis(FilledGrid, pg.DateAxisItem):
    """The time axis (`FilledGrid`)."""
