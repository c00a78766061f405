"""Graphics items of the chart: candles, volume bars, level lines and their price tags.

The interactive items (`LevelLine`, `LevelTag`) only speak through signals — started,
moved, finished, cancelled, with the cursor's scene position — in the manner of pyqtgraph's
`InfiniteLine.sigDragged`/`sigPositionChangeFinished`; what a drag means is decided by the
`DragController` (chart_drag.py). An item accepts a drag only while `draggable` is set and
the required keyboard modifier (if any) is held.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyqtgraph as pg
from PySide6.QtCore import QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QPainter, QPen, QPicture
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsRectItem,
    QGraphicsSimpleTextItem,
    QGraphicsWidget,
)

from pmgui.domain.models import Candle
from pmgui.ui.chart_candles import base_seconds, valid_candle
from pmgui.ui.theme import Theme


class QtBounds:
    """Put first among the bases of a pyqtgraph widget (a view box, the plot item): Qt's own
    `boundingRect`, `shape` and `paint`, not pyqtgraph's Python ones, which give the same
    rectangle (the widget's, untransformed) and, for these widgets, paint nothing.

    Qt asks every item of the scene for its bounds at every paint, and a view box for its
    shape too (it clips its children to it); each answer written in Python is a call back
    into the interpreter, which the GUI thread must first take back from the engine's
    thread. A class attribute that is Qt's own method is no override for PySide: Qt then
    answers without Python. (A view box given a border would need pyqtgraph's paint.)"""

    boundingRect = QGraphicsWidget.boundingRect
    shape = QGraphicsWidget.shape
    paint = QGraphicsWidget.paint


class QuietViewBox(QtBounds, pg.ViewBox):
    """A `pg.ViewBox` whose bounds, shape and paint are Qt's (see `QtBounds`)."""


class ChartPlotItem(QtBounds, pg.PlotItem):
    """A `pg.PlotItem` whose bounds, shape and paint are Qt's (see `QtBounds`)."""


def _unreported() -> None:
    """(stands in for `informViewBoundsChanged` on items outside the auto-range)"""


def outside_range(item: pg.GraphicsObject) -> None:
    """An item the view's auto-range ignores (added with ignoreBounds) no longer reports its
    new bounds to the view, nor do its parts (a PlotDataItem's curve and points): pyqtgraph
    answers each report with a new auto-range and a repaint of the *whole* view
    (`ViewBox.update`), though the item cannot change the range. Qt still repaints where the
    item was and where it is now."""
    for it in (item, *item.childItems()):
        if isinstance(it, pg.GraphicsObject):
            it.informViewBoundsChanged = _unreported  # type: ignore[method-assign]


class CandlestickItem(pg.GraphicsObject):
    """OHLC candles drawn once into a QPicture (pyqtgraph's customGraphicsItem recipe).

    `set_candles` regenerates the picture only when the candles really changed. The chart
    uses one item for the completed candles and one for the forming candle, so a tick
    redraws one candle.
    """

    def __init__(self, theme: Theme) -> None:
        super().__init__()
        self._theme = theme
        self._candles: tuple[Candle, ...] = ()
        self._width = 60.0
        self._picture = QPicture()
        self._tools: tuple | None = None  # the theme's pens and brushes (see _pens)
        self.grew_in_place = False  # the last change only extended the price span
        # a pixmap of the candles: a price line moving over them repaints a blit
        self.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self._rect = QRectF()

    @property
    def candles(self) -> tuple[Candle, ...]:
        return self._candles

    def set_theme(self, theme: Theme) -> None:
        self._theme = theme
        self._tools = None
        self._regenerate()

    def _pens(self) -> tuple:
        """(up pen, down pen, up brush, down brush) of the theme, made once (the forming
        candle is redrawn at every tick of the shown symbol)."""
        if self._tools is None:
            t = self._theme
            self._tools = (pg.mkPen(t.up), pg.mkPen(t.down), pg.mkBrush(t.up),
                           pg.mkBrush(t.down))
        return self._tools

    def set_candles(self, candles: Sequence[Candle], width: float | None = None, *,
                    checked: bool = False) -> None:
        """`checked`: the caller already dropped invalid candles."""
        valid = tuple(candles) if checked else tuple(c for c in candles if valid_candle(c))
        w = width if width is not None else base_seconds(valid)
        if valid == self._candles and w == self._width:
            return
        self._candles, self._width = valid, w
        self._regenerate()

    def _regenerate(self) -> None:
        self.prepareGeometryChange()
        pic = QPicture()
        p = QPainter(pic)
        cs = self._candles
        half = self._width * 0.35
        if cs:
            up_pen, down_pen, up_brush, down_brush = self._pens()
            for c in cs:
                rising = c.close >= c.open
                p.setPen(up_pen if rising else down_pen)
                p.setBrush(up_brush if rising else down_brush)
                p.drawLine(QPointF(c.ts, c.low), QPointF(c.ts, c.high))
                body = c.close - c.open
                if body == 0:
                    p.drawLine(QPointF(c.ts - half, c.open), QPointF(c.ts + half, c.open))
                else:
                    p.drawRect(QRectF(c.ts - half, c.open, half * 2, body))
        p.end()
        self._picture = pic
        before = self._rect
        if cs:
            lo = min(c.low for c in cs)
            hi = max(c.high for c in cs)
            x0, x1 = cs[0].ts - half, cs[-1].ts + half
            self._rect = QRectF(x0, lo, x1 - x0, hi - lo)
        else:
            self._rect = QRectF()
        r = self._rect
        # the same time span, the prices only extended (the forming candle's new high/low)
        self.grew_in_place = bool(cs) and before.width() > 0 and (
            r.left() == before.left() and r.right() == before.right()
            and r.top() <= before.top() and r.bottom() >= before.bottom())
        self.update()
        if r != before:  # a new high or low, a new candle: the auto-range follows
            self.informViewBoundsChanged()

    def paint(self, p: QPainter, *args: object) -> None:
        p.drawPicture(0, 0, self._picture)

    def dataBounds(self, axis: int, frac: float = 1.0,
                   orthoRange: object = None) -> tuple[float, float] | None:
        """Auto-range on the candles only; nothing at all when there are none (not 0).

        In time, up to the end of the last candle's period, not of its drawn body: the
        forming candle's own growth then does not move the time range tick by tick — a new
        range lays the whole chart out again (the date axis's labels, every item's place).
        The action markers stay out of the range (`ignoreBounds`), and sit inside this one:
        they are placed on the candles' times."""
        if not self._candles:
            return None
        r = self._rect
        if axis == 0:
            return r.left(), self._candles[-1].ts + self._width
        return r.top(), r.bottom()

    def boundingRect(self) -> QRectF:
        return QRectF(self._rect)


class CandleLayer:
    """Completed candles in chunks of `CHUNK` candles (by time), each its own picture: a new
    candle redraws one chunk, not the whole history (25 µs a candle adds up)."""

    CHUNK = 200

    def __init__(self, plot: pg.PlotWidget, theme: Theme) -> None:
        self._plot = plot
        self._theme = theme
        self._items: dict[int, CandlestickItem] = {}
        self._candles: tuple[Candle, ...] = ()
        self._width = 60.0

    @property
    def candles(self) -> tuple[Candle, ...]:
        return self._candles

    @property
    def items(self) -> list[CandlestickItem]:
        return [self._items[k] for k in sorted(self._items)]

    def set_theme(self, theme: Theme) -> None:
        self._theme = theme
        for it in self._items.values():
            it.set_theme(theme)

    def set_candles(self, candles: Sequence[Candle], width: float) -> None:
        """`candles` must be valid (the chart's `CandleSeries` keeps only valid ones)."""
        cs = tuple(candles)
        if cs == self._candles and width == self._width:
            return
        self._candles, self._width = cs, width
        span = width * self.CHUNK
        groups: dict[int, list[Candle]] = {}
        for c in cs:
            groups.setdefault(int(c.ts // span), []).append(c)
        for k in [k for k in self._items if k not in groups]:
            self._plot.removeItem(self._items.pop(k))
        for k, group in groups.items():
            it = self._items.get(k)
            if it is None:
                it = self._items[k] = CandlestickItem(self._theme)
                self._plot.addItem(it)
            it.set_candles(group, width, checked=True)


class _Draggable:
    """The gesture part shared by lines and tags: accept a left drag when allowed, report
    it as signals, swallow the rest of a gesture that was cancelled."""

    kind: str
    draggable: bool
    modifier: Qt.KeyboardModifier
    dragging: bool
    cancelled: bool

    def _init_drag(self) -> None:
        self.draggable = False
        self.modifier = Qt.KeyboardModifier.NoModifier
        self.dragging = False
        self.cancelled = False

    def modifier_ok(self, mods: Qt.KeyboardModifier) -> bool:
        need = self.modifier
        return need == Qt.KeyboardModifier.NoModifier or bool(mods & need)

    def _drag(self, ev) -> None:  # ev: a pyqtgraph MouseDragEvent
        if ev.button() != Qt.MouseButton.LeftButton:
            return
        if ev.isStart():
            if not self.draggable or not self.modifier_ok(ev.modifiers()):
                ev.ignore()
                return
            self.dragging, self.cancelled = True, False
            # where the button went down: the grab point the drag keeps its offset from
            self.sigStarted.emit(  # type: ignore[attr-defined]
                self, ev.buttonDownScenePos(Qt.MouseButton.LeftButton))
        if not self.dragging and not self.cancelled:
            ev.ignore()
            return
        ev.accept()
        if self.cancelled:
            if ev.isFinish():
                self.cancelled = False
            return
        self.sigMoved.emit(self, ev.scenePos())  # type: ignore[attr-defined]
        if ev.isFinish():
            self.dragging = False
            self.sigFinished.emit(self, ev.scenePos())  # type: ignore[attr-defined]

    def _click(self, ev) -> bool:
        """Right click during a drag cancels it. True: handled."""
        if self.dragging and ev.button() == Qt.MouseButton.RightButton:
            ev.accept()
            self.sigCancelled.emit(self)  # type: ignore[attr-defined]
            return True
        return False

    def abort(self) -> None:
        """The controller cancelled the drag: ignore the rest of this gesture."""
        if self.dragging:
            self.dragging, self.cancelled = False, True


class LevelLine(pg.InfiniteLine, _Draggable):
    """A horizontal level. Its price tag is a separate `LevelTag` (laid out by the chart)."""

    sigStarted = Signal(object, object)  # item, scene position
    sigMoved = Signal(object, object)
    sigFinished = Signal(object, object)
    sigCancelled = Signal(object)

    # Whether the view's auto-range follows this line (False: added with ignoreBounds).
    in_range = True

    def __init__(self, kind: str) -> None:
        super().__init__(angle=0, movable=False)
        self._init_drag()
        self.kind = kind
        self.setObjectName(f"{kind}Line")
        self.tag: LevelTag | None = None
        self.setZValue(20 if kind in ("sl", "tp") else 10)
        self.setVisible(False)

    # pyqtgraph consults `movable` to accept hover-drags; keep it in sync with `draggable`.
    def set_draggable(self, on: bool) -> None:
        self.draggable = on
        self.setMovable(on)

    @property
    def label(self) -> LevelTag:
        assert self.tag is not None
        return self.tag

    def hoverEvent(self, ev) -> None:  # ev: a pyqtgraph HoverEvent
        if self.draggable and not ev.isExit() and self.modifier_ok(ev.modifiers()):
            if ev.acceptDrags(Qt.MouseButton.LeftButton):
                self.setMouseHover(True)
                self.setCursor(Qt.CursorShape.SizeVerCursor)
                return
        self.setMouseHover(False)
        self.unsetCursor()

    def mouseDragEvent(self, ev) -> None:
        self._drag(ev)

    def mouseClickEvent(self, ev) -> None:
        if not self._click(ev):
            self.sigClicked.emit(self, ev)

    def informViewBoundsChanged(self) -> None:
        """Only a line the auto-range follows tells the view it moved: pyqtgraph answers
        every move with a new auto-range and a repaint of the *whole* view (`ViewBox.update`),
        which for the last-price line was every tick of the shown symbol. A line outside
        the range is repainted by Qt where it was and where it is now, nothing else."""
        if self.in_range:
            super().informViewBoundsChanged()


class _TagSignals(QObject):
    """The drag signals of a `LevelTag` (a Qt-native item is no QObject)."""

    sigStarted = Signal(object, object)  # item, scene position
    sigMoved = Signal(object, object)
    sigFinished = Signal(object, object)
    sigCancelled = Signal(object)


class TextTag(QGraphicsRectItem):
    """A label in a box (text, fill, border), placed in *scene* (pixel) coordinates beside
    a point: `anchor_x` 0 puts the box's left edge on it, 1 its right edge; vertically the
    box is centred on it.

    Drawn by Qt alone: a `QGraphicsRectItem` with a `QGraphicsSimpleTextItem` child and no
    Python method Qt calls while painting. pyqtgraph's `TextItem` answered every paint of
    the scene in Python (`updateTransform` on each `sigPrepareForPaint`, `boundingRect` and
    `paint` on each item), and every such call from Qt takes the interpreter lock back from
    the engine's thread: with eight tags that was most of a chart repaint's Python calls.
    The chart lays the tags out again whenever the view moves or resizes."""

    PAD = 4.0  # pixels between the text and the box's edge

    def __init__(self, anchor_x: float = 0.0) -> None:
        super().__init__()
        self.anchor_x = anchor_x
        self.textItem = QGraphicsSimpleTextItem(self)
        self.setPen(QPen(Qt.PenStyle.NoPen))
        self.setBrush(QBrush(Qt.BrushStyle.NoBrush))
        self._text = ""
        self._place_text()

    def setText(self, text: str) -> None:
        if text != self._text:
            self._text = text
            self.textItem.setText(text)
            self._place_text()

    def toPlainText(self) -> str:
        return self._text

    def setColor(self, colour: str) -> None:
        self.textItem.setBrush(QBrush(QColor(colour)))

    def set_box(self, fill: QBrush, border: QPen) -> None:
        self.setBrush(fill)
        self.setPen(border)

    def _place_text(self) -> None:
        """The box around the text, anchored on the item's position."""
        r = self.textItem.boundingRect()
        w, h = r.width() + 2 * self.PAD, r.height() + 2 * self.PAD
        left = -self.anchor_x * w
        self.setRect(QRectF(left, -h / 2, w, h))
        self.textItem.setPos(left + self.PAD, -h / 2 + self.PAD)


class LevelTag(TextTag, _Draggable):
    """The price tag of a line: `SL 41,250 · −1.8% · −$92 · −0.9R`. When the line is out of
    view the tag sits at that edge with ▲/▼ (an edge marker); SL/TP tags can be dragged like
    their line, also from the edge (pyqtgraph's scene hands any item with `mouseDragEvent`
    its drags). A scene item: the chart places it in pixels beside its level."""

    def __init__(self, line: LevelLine, right: bool = False) -> None:
        super().__init__(anchor_x=1.0 if right else 0.0)
        self._signals = _TagSignals()
        self.sigStarted = self._signals.sigStarted
        self.sigMoved = self._signals.sigMoved
        self.sigFinished = self._signals.sigFinished
        self.sigCancelled = self._signals.sigCancelled
        self._init_drag()
        self.line = line
        self.kind = line.kind
        self.right = right
        self.edge = 0  # -1: the line is below the view, +1: above, 0: in view
        line.tag = self
        self.setZValue(40 if line.kind in ("sl", "tp") else 35)
        self.setVisible(False)

    def set_text(self, text: str) -> None:
        self.setText(text)

    def hoverEvent(self, ev) -> None:
        if self.draggable and not ev.isExit() and self.modifier_ok(ev.modifiers()):
            ev.acceptDrags(Qt.MouseButton.LeftButton)
            self.setCursor(Qt.CursorShape.SizeVerCursor)
        else:
            self.unsetCursor()

    def mouseDragEvent(self, ev) -> None:
        self._drag(ev)

    def mouseClickEvent(self, ev) -> None:
        self._click(ev)


def stack_tags(wanted: Sequence[tuple[str, float, float]], top: float, bottom: float,
               gap: float = 1.0) -> dict[str, float]:
    """Vertical centres (pixels, growing downwards) for tags that must not overlap.

    `wanted` is (key, desired centre, height). Tags keep their order, move the least needed
    to clear each other, and stay between `top` and `bottom` when they fit.
    """
    items = sorted(wanted, key=lambda w: w[1])
    out: list[list] = []
    for key, y, h in items:
        c = min(max(y, top + h / 2), bottom - h / 2)
        if out:
            _pk, pc, ph = out[-1]
            c = max(c, pc + ph / 2 + gap + h / 2)
        out.append([key, c, h])
    for i in range(len(out) - 1, -1, -1):  # push back up from the bottom edge
        key, c, h = out[i]
        limit = bottom - h / 2 if i == len(out) - 1 else out[i + 1][1] - out[i + 1][2] / 2 \
            - gap - h / 2
        out[i][1] = min(c, limit)
    return {k: c for k, c, _h in out}
