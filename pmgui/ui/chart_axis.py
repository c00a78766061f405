"""The chart's axes: pyqtgraph's, with their grid filled instead of stroked.

The axes draw the chart's grid: one line per tick of every level, across the whole plot
(~50 of them on the price axis). Qt strokes an aliased 1-pixel line that is not opaque one
pixel at a time (its cosmetic stroker blends each pixel as its own span), so the price
axis's horizontal grid alone took 3-8 ms of GUI-thread CPU each time the range changed —
most of the longest stall left in a storm. The same pixels filled as a 1-pixel-high
rectangle are one span a row: ~0.5 ms for the whole grid.

Each new range also measures every tick label again (pyqtgraph asks the painter for each
label's bounding rect, ~28 a paint of the price axis, and the time axis sizes its zoom levels'
example texts through the font metrics): ~12 µs of text layout each, ~1.4 ms of GUI-thread
CPU when both axes re-range. A storm's labels are few and recur (a price axis shifted by a
tick shows mostly the same numbers), so their measurements are remembered (`Measured`).
"""

from __future__ import annotations

from math import floor, isfinite

import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRect, QRectF, Qt
from PySide6.QtGui import QFont, QFontMetrics, QPainter, QPen, QTransform
from PySide6.QtWidgets import QStyleOptionGraphicsItem, QWidget

from pmgui.domain.models import Market
from pmgui.domain.numbers import step_decimals

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


_MEASURES: dict[tuple, QRectF | QRect] = {}  # (font, device, what was asked) → its rect
_MEASURES_KEPT = 4096  # then forgotten, all at once


def _measured(key: tuple, measure) -> QRectF | QRect:
    """The rect `measure()` gives, remembered under `key`; a copy each time (pyqtgraph
    scales the one it gets)."""
    rect = _MEASURES.get(key)
    if rect is None:
        if len(_MEASURES) >= _MEASURES_KEPT:
            _MEASURES.clear()
        rect = _MEASURES[key] = measure()
    return type(rect)(rect)


class MeasuredMetrics:
    """A painter's font metrics whose `boundingRect(text)` is remembered (the time axis
    sizes its zoom levels' example texts with it at every new range); the rest is Qt's."""

    def __init__(self, metrics: QFontMetrics, font: tuple) -> None:
        self._metrics = metrics
        self._font = font

    def boundingRect(self, *args: object) -> QRect:
        if len(args) == 1 and isinstance(args[0], str):
            return _measured((self._font, "metrics", args[0]),
                             lambda: self._metrics.boundingRect(args[0]))
        return self._metrics.boundingRect(*args)

    def __getattr__(self, name: str) -> object:
        return getattr(self._metrics, name)


class Measured:
    """The painter an axis generates its draw specs with: a label's bounding rect (and the
    font metrics' rect of a text) is measured once per font and paint device, then
    remembered; everything else is the painter's own.

    The font is the painter's at the time (tracked through `setFont`), the device's
    resolution goes with it: what Qt's measurement depends on besides the text, the
    rectangle and the flags, which are part of the key too."""

    def __init__(self, painter: QPainter) -> None:
        self._painter = painter
        self._font = self._font_key()

    def _font_key(self) -> tuple:
        device = self._painter.device()
        dpi = ((device.logicalDpiX(), device.logicalDpiY(), device.devicePixelRatioF())
               if device is not None else ())
        return (self._painter.font().key(), *dpi)

    def setFont(self, font: QFont) -> None:
        self._painter.setFont(font)
        self._font = self._font_key()

    def boundingRect(self, *args: object) -> QRectF:
        if len(args) == 3 and isinstance(args[0], QRectF) and isinstance(args[2], str):
            rect, flags, text = args
            key = (self._font, rect.getRect(), int(flags), text)  # type: ignore[attr-defined, call-overload]
            return _measured(key, lambda: self._painter.boundingRect(*args))
        return self._painter.boundingRect(*args)

    def fontMetrics(self) -> MeasuredMetrics:
        return MeasuredMetrics(self._painter.fontMetrics(), self._font)

    def __getattr__(self, name: str) -> object:
        return getattr(self._painter, name)


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
        specs = self.generateDrawSpecs(Measured(p))
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
    """The price axis (`FilledGrid`), labelled as the trader reads prices everywhere else:
    thousands separators, plain decimals, at least the market's precision.

    pyqtgraph writes a label of 10,000 or more, or under 0.001, with `%g` (six significant
    digits, else scientific): above 100,000 neighbouring labels read the same ("123456" for
    123,455.5, 123,456.0 and 123,456.5) and a price of 0.0000123 reads "1.23e-05"."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._decimals: int | None = None  # the market's price decimals (None: unknown)

    def set_market(self, market: Market | None) -> None:
        """Label prices at `market`'s precision (None: as the ticks' spacing needs)."""
        d = step_decimals(market.tick_size, 2) if market is not None \
            and market.tick_size > 0 else None
        if d != self._decimals:
            self._decimals = d
            self.picture = None
            self.update()

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        """Each value as a price: as many decimals as the spacing needs (0.25 → 2), never
        fewer than the market's."""
        if self.logMode or not (isfinite(spacing) and spacing > 0 and isfinite(scale)):
            return super().tickStrings(values, scale, spacing)
        d = step_decimals(spacing * scale, 10)
        if self._decimals is not None:
            d = max(d, self._decimals)
        out = []
        for v in values:
            vs = v * scale
            text = f"{vs:,.{d}f}" if isfinite(vs) else ""
            if text.startswith("-"):
                # a real minus; none for a value that rounds to zero
                text = text[1:] if float(text[1:].replace(",", "")) == 0 else "\u2212" + text[1:]
            out.append(text)
        return out


class ChartDateAxis(FilledGrid, pg.DateAxisItem):
    """The time axis (`FilledGrid`)."""
