"""The chart of the selected position: candles with volume, level lines, the rule's
indicator, the last price, action markers, a crosshair, timeframes.

Pieces (each in its own module):
- chart_candles: the candle series per symbol (engine window + forming candle from ticks,
  timeframes aggregated for display);
- chart_items: candles, lines and price tags (tags never overlap; a line out of view shows
  as a tag at that edge, ▲/▼ with its price);
- chart_state: one `LineMachine` per line (idle → dragging → proposed → pending →
  confirmed | local_only | rejected);
- chart_drag: the `DragController` (frozen view during a drag, snapping, Esc/right-click
  cancel, refusing levels that would trigger at once, creating SL/TP from the entry line);
- chart_indicator: the indicator the position's rules follow (chandelier, trail, EMA), as
  the engine sends it (values on the snapshots, the past by a GetIndicatorLine request);
- chart_text: what the tags, the crosshair read-out and the markers' tooltips say.

Items are created once and updated in place, so a tick costs a candle and a line move, not
a rebuild. The chart sends no command: it only asks read-only questions (GetCandles,
GetIndicatorLine) through the requester its owner gives it (`set_requester`), answered in
the GUI thread without waiting. A drop emits `levelDropped(position id, kind, level)`; the
owner sends it (`mark_sent`) or asks first (`propose` / `discard`), and hands the command's
result to `resolve`, which reads the protection outcome: only a level the venue confirmed
shows ✔, anything else says `local only: <reason>` or `✖ <reason>`.
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections.abc import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QPoint, QPointF, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QGraphicsItem,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from pmgui.domain.enums import ActionType, Protection, Side
from pmgui.domain.models import Market
from pmgui.domain.money import valid_price
from pmgui.engine.commands import (
    CandlesSnapshot,
    CommandResult,
    GetCandles,
    GetIndicatorLine,
    IndicatorHistory,
)
from pmgui.engine.events import ActionTaken, CandlesEvent, PositionSnapshot, TickEvent
from pmgui.ui.chart_axis import ChartAxis, ChartDateAxis
from pmgui.ui.chart_candles import TIMEFRAMES, CandleSeries
from pmgui.ui.chart_drag import (
    LINE_TITLES,
    DragContext,
    DragController,
    consequence,
    trigger_reason,
)
from pmgui.ui.chart_indicator import IndicatorFeed, IndicatorLine
from pmgui.ui.chart_items import (
    CandleLayer,
    CandlestickItem,
    ChartPlotItem,
    LevelLine,
    LevelTag,
    QuietViewBox,
    TextTag,
    outside_range,
    stack_tags,
)
from pmgui.ui.chart_state import LineMachine, LineState, Verdict, verdict
from pmgui.ui.chart_text import (
    DRAGGABLE,
    action_facts,
    crosshair_text,
    explain_facts,
    tag_text,
)
from pmgui.ui.fmt import fmt_price, fmt_qty
from pmgui.ui.theme import Theme, make_theme
from pmgui.ui.turns import Turns

__all__ = ["DRAGGABLE", "LINE_KINDS", "LINE_TITLES", "ChartWidget", "DragContext",
           "consequence", "trigger_reason"]

LINE_KINDS = ("entry", "sl", "tp", "trailing", "liquidation", "last")
MAX_MARKERS = 500
REDRAW_MS = 100  # live redraws of the chart: at most 10 a second
# what a live redraw draws on its first turn (the rest on the next: `_redraw_due`)
_SERIES_PARTS = frozenset(("candles", "indicator", "markers"))
FOLD_AFTER = 256  # ticks of a symbol not shown waiting before they are folded into its candles
_MARKER_SYMBOL = {ActionType.OPEN: "t1", ActionType.ADD: "t1", ActionType.CLOSE: "x",
                  ActionType.REDUCE: "t", ActionType.MOVE_SL: "d", ActionType.MOVE_TP: "d"}
TAG_MARGIN = 4  # pixels between a tag and the view's edge
MAX_SHOWN = 3000  # candles drawn at the selected timeframe (the newest; ~75 ms to draw)
VOLUME_SHARE = 7  # the highest volume bar reaches 1/7 of the view's height
HISTORY_CANDLES = 300  # asked of the engine per symbol and coarse timeframe (GetCandles)
# how the chart asks the engine a read-only question: CommandRunner.request
Ask = Callable[..., bool]


class SteadyViewBox(QuietViewBox):
    """Auto-range that holds still while the prices and the candles stay in view.

    pyqtgraph re-ranges for every new high or low of the forming candle, every move of a
    trailing line and every new candle; a new range regenerates both axes with their grid
    and lays every item and tag out again, which in a fast market is most of the chart's
    cost. Here the price range auto-range wants is taken with `SLACK` of room above and
    below, and the time range with `ROOM` after the newest candle (the right margin of a
    trading chart); each is kept while what must be shown is inside it and it is not much
    larger than needed (`LOOSE`). A new 1-minute candle in a view of 200 then moves the
    time range every ~10 minutes, not every minute. Its bounds, shape and paint are Qt's
    (`QtBounds`)."""

    SLACK = 0.06  # room added above and below when the price range must change
    ROOM = 0.05  # room added after the newest candle when the time range must change
    LOOSE = 1.5  # a range more than this × the needed span is tightened again

    def setRange(self, rect=None, xRange=None, yRange=None, padding=None, update=True,
                 disableAutoRange=True):
        if rect is None and not disableAutoRange and self._updatingRange:  # auto-range
            if xRange is not None:
                xRange = self._steady(0, xRange, 0.0, self.ROOM)
            if yRange is not None:
                yRange = self._steady(1, yRange, self.SLACK, self.SLACK)
            if xRange is None and yRange is None:
                return
        super().setRange(rect, xRange, yRange, padding, update, disableAutoRange)

    def _steady(self, axis: int, wanted, before: float,
                after: float) -> tuple[float, float] | None:
        """The range to set on `axis` for the auto-range's `wanted` one; None: keep the
        range shown (it holds what must be shown and is not too loose)."""
        lo, hi = float(wanted[0]), float(wanted[1])
        c0, c1 = self.viewRange()[axis]
        span = hi - lo
        # pyqtgraph padded the data's span by a fraction of it on each side; the time
        # range need only hold the data (its start must not count: it moves left as the
        # span grows with each candle)
        f = self.suggestPadding(axis) if axis == 0 else 0.0
        pad = span * f / (1 + 2 * f)
        if c0 <= lo + pad and hi - pad <= c1 and (c1 - c0) <= span * self.LOOSE:
            return None
        if span > 0:
            return (lo - span * before, hi + span * after)
        return (lo, hi)

    def itemBoundsChanged(self, item) -> None:
        """pyqtgraph answers an item's new bounds by marking the auto-range for the next
        paint and repainting the *whole* view. A candle item whose time span is the same and
        whose new prices are inside the range shown (the forming candle's new high or low,
        many a minute in a storm) can move neither range: the time axis fits the same span,
        and the price range holds while what it must show is in view and it grew no looser.
        Such a report only forgets the item's cached bounds: no auto-range at the next
        paint (it walked every item's bounds in Python, ~5 ms in a storm), no whole-view
        repaint; Qt still repaints the item itself. (A range loose since older extremes
        left the data is tightened by the next report that does re-range.)"""
        if getattr(item, "grew_in_place", False):
            lo, hi = item.dataBounds(1)
            y0, y1 = self.viewRange()[1]
            if y0 <= lo and hi <= y1:
                self._itemBoundsCache.pop(item, None)
                return
        if isinstance(item, LevelLine) and item.isVisible() and self.autoRangeEnabled()[1]:
            y0, y1 = self.viewRange()[1]
            if y0 <= item.value() <= y1:
                # a level moved inside the view (a trailing stop, many a second in a storm):
                # it may still move the range (a loose one is tightened), so the auto-range
                # runs at the next paint as pyqtgraph has it — but that paint is the line's
                # own (Qt repaints where it was and where it is; a new range repaints the
                # whole view by its new transform), not a repaint of the whole view asked
                # for besides, every item's paint in it (2-5 ms of GUI CPU)
                self._itemBoundsCache.pop(item, None)
                self._autoRangeNeedsUpdate = True
                item.update()
                return
        super().itemBoundsChanged(item)


class ChartWidget(QWidget):
    """The selected position on a chart. Feed it snapshots, ticks, candles and actions."""

    levelDropped = Signal(str, str, float)  # position id, kind ("sl"/"tp"), snapped level
    dragRejected = Signal(str, str)  # kind, reason (the line went back)
    dragCancelled = Signal(str)  # kind
    dragStarted = Signal(str)  # kind of the grabbed item ("entry" when creating SL/TP)
    timeframeChanged = Signal(str)
    # a right click on the plot (not during a drag): the price under the cursor, snapped to
    # the tick, and where to show the trade menu (global screen position)
    tradeMenuRequested = Signal(float, QPoint)

    def __init__(self, theme: Theme | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chart")
        self.setAccessibleName("Position chart")
        self._theme = theme or make_theme("dark")
        self._drag_modifier = Qt.KeyboardModifier.NoModifier
        self.drag_enabled = True
        self.timeframe = "1m"
        self._snap: PositionSnapshot | None = None
        self._market: Market | None = None
        self._series: dict[str, CandleSeries] = {}
        # ticks of the symbols not shown, folded into their series when it is asked for (a
        # storm's other symbols cost an append per pump, not a candle update). Kept as
        # (price, ts) floats in an array, not as the TickEvents: up to FOLD_AFTER of them
        # per symbol live for seconds, and as objects they were most of what a full garbage
        # collection walked in a storm (tens of thousands; the collection holds the
        # interpreter lock, so the window stalls for as long as it runs)
        self._waiting: dict[str, array] = {}
        self._last: dict[str, TickEvent] = {}
        # per position: (ts, price, glyph, *what the action was) in one flat tuple of plain
        # values (chart_text.action_facts), not the event: a session's markers are many
        # thousands, and the garbage collector stops tracking such a tuple
        self._markers: dict[str, list[tuple[object, ...]]] = {}
        # what the markers item shows: (position id, theme, count, first, last marker); None:
        # unknown (see _refresh_markers)
        self._markers_drawn: tuple[object, ...] | None = None
        self.machines = {kind: LineMachine(kind) for kind in LINE_KINDS}
        # live redraws (prices, actions of the shown position) at most every REDRAW_MS:
        # the first at once, the next when the interval is over (never a stale end state)
        # what waits: "candles", "indicator", "last", "markers", "levels", "title"
        self._due: set[str] = set()
        # (the timeframe buttons enabled, the one checked)
        self._tf_allowed: tuple[frozenset[str], str | None] | None = None
        self._title_of: tuple | None = None  # what the title shows
        # during a redraw the tags are laid out once, at its end (the indicator, the levels
        # and the last price each ask for it; None: not in a redraw)
        self._layout_wanted: bool | None = None
        self._layout_owed = False  # a redraw's first turn left the tags to the second
        self._cooldown = QTimer(self)
        self._cooldown.setSingleShot(True)
        self._cooldown.setInterval(REDRAW_MS)
        self._cooldown.timeout.connect(self._after_cooldown)
        self._indicator: IndicatorLine | None = None
        self._feed = IndicatorFeed()  # the engine's values of the rule's indicator
        self._rendered: tuple | None = None
        self._styled: tuple | None = None  # what the lines' pens were made for
        self._levels_drawn: tuple | None = None  # _levels_key() when the lines were drawn
        self._indicator_drawn: tuple | None = None  # (line, market) the curve shows
        self._entry_hint = ""
        self._ask: Ask | None = None
        self._asked: set[tuple[str, str]] = set()

        # title on top; under it the crosshair read-out and the timeframes
        self.title = QLabel("No position selected")
        self.title.setObjectName("chartTitle")
        self.title.setTextFormat(Qt.TextFormat.PlainText)
        self.title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.readout = QLabel(" ")
        self.readout.setObjectName("crosshairReadout")
        self.readout.setAccessibleName("Price, time and result of a stop or target under the "
                                       "cursor")
        self.readout.setTextFormat(Qt.TextFormat.PlainText)
        self.readout.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.tf_group = QButtonGroup(self)
        self.tf_group.setExclusive(True)
        self.tf_buttons: dict[str, QToolButton] = {}
        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        bar.setSpacing(0)
        bar.addWidget(self.readout, 1)
        for name in TIMEFRAMES:
            b = QToolButton()
            b.setText(name)
            b.setObjectName(f"timeframe_{name}")
            b.setCheckable(True)
            b.setAutoRaise(True)
            b.setToolTip(f"Show {name} candles")
            b.setAccessibleName(f"{name} candles")
            b.setChecked(name == self.timeframe)
            b.clicked.connect(lambda _c=False, n=name: self.set_timeframe(n))
            self.tf_group.addButton(b)
            self.tf_buttons[name] = b
            bar.addWidget(b)

        # plot
        self.price_axis = ChartAxis(orientation="right")  # labelled at the market's precision
        self.plot = pg.PlotWidget(plotItem=ChartPlotItem(
            viewBox=SteadyViewBox(),
            axisItems={"bottom": ChartDateAxis(orientation="bottom"),
                       "right": self.price_axis}))
        self.plot.setObjectName("chartPlot")
        self.plot.setAccessibleName("Price chart with entry, stop-loss and take-profit lines")
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        pi = self.plot.getPlotItem()
        pi.showAxis("right")
        pi.hideAxis("left")
        # the axes draw the grid over the whole plot: kept as a pixmap, so a moving price
        # line or tag repaints a blit, not every grid line and label (redrawn when the
        # range changes, the grid filled, not stroked: ChartAxis)
        for name in ("right", "bottom"):
            pi.getAxis(name).setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self.vb = pi.vb
        # volume: bars in their own view under the prices (bottom fifth), x linked
        self.volume_vb = QuietViewBox(enableMouse=False)
        self.volume_vb.setMouseEnabled(False, False)
        self.volume_vb.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        # pyqtgraph still hands it the scene's right clicks: no view menu of its own (the
        # chart's right click is the trade menu)
        self.volume_vb.setMenuEnabled(False)
        self.volume_vb.setZValue(-100)
        pi.scene().addItem(self.volume_vb)
        self.volume_vb.setXLink(self.vb)
        self.volume_vb.disableAutoRange()  # x follows the prices' view, y is set per data
        self.volume = pg.BarGraphItem(x=[], height=[], width=1.0)
        self.volume_vb.addItem(self.volume)
        self.vb.sigResized.connect(self._sync_volume_view)

        self.candle_item = CandleLayer(self.plot, self._theme)  # completed candles
        self.forming_item = CandlestickItem(self._theme)
        self.plot.addItem(self.forming_item)
        self.indicator_curve = pg.PlotDataItem([], [])
        self.indicator_curve.setObjectName("indicatorCurve")
        self.indicator_curve.setZValue(5)
        # kept as pixmaps: the last-price line sweeps across them at every redraw
        self.indicator_curve.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self.plot.addItem(self.indicator_curve, ignoreBounds=True)
        outside_range(self.indicator_curve)
        self.indicator_tag = LevelTag(LevelLine("indicator"))
        self.plot.scene().addItem(self.indicator_tag)
        self.lines: dict[str, LevelLine] = {}
        self.tags: dict[str, LevelTag] = {}
        self.drag = DragController(self)
        for kind in LINE_KINDS:
            line = LevelLine(kind)
            tag = LevelTag(line, right=(kind == "last"))
            self.lines[kind], self.tags[kind] = line, tag
            line.in_range = kind not in ("liquidation", "last")
            self.plot.addItem(line, ignoreBounds=not line.in_range)
            # a scene item placed in pixels by _layout_tags; the last price's on the price
            # axis, as exchanges show it: it never hides a candle
            self.plot.scene().addItem(tag)
            if kind in ("sl", "tp", "entry"):
                self.drag.attach(line)
                self.drag.attach(tag)
        self.markers = pg.ScatterPlotItem(size=11, hoverable=True, tip=self._marker_tip,
                                          pxMode=True)
        self.markers.setZValue(30)
        self.markers.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        # not in the auto-range: each new marker moved it (a new range lays the whole chart
        # out again, the date axis's labels, every item); they sit on the candles' prices,
        # and the candles' time range covers the forming candle's whole period. Nor do they
        # report new bounds: pyqtgraph answered each refresh of the markers (every action
        # of the shown position) with an auto-range at the next paint (2-4 ms of GUI CPU
        # in a storm, walking every item's bounds) and a repaint of the whole view, though
        # they cannot move the range (the GUI storm: 13 -> 10 auto-ranges in 10 s; the
        # rest follow a moved stop or a new candle)
        self.plot.addItem(self.markers, ignoreBounds=True)
        outside_range(self.markers)
        # crosshair
        self.cross_v = pg.InfiniteLine(angle=90, movable=False)
        self.cross_h = pg.InfiniteLine(angle=0, movable=False)
        for c in (self.cross_v, self.cross_h):
            c.setZValue(50)
            c.setVisible(False)
            self.plot.addItem(c, ignoreBounds=True)
        self.cross_tag = TextTag(anchor_x=1.0)  # the cursor's price on the axis
        self.cross_tag.setZValue(60)
        self.cross_tag.setVisible(False)
        self.plot.scene().addItem(self.cross_tag)
        self.plot.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.plot.scene().sigMouseClicked.connect(self._on_mouse_clicked)
        self.plot.viewport().installEventFilter(self)  # leaving the plot hides the crosshair
        self.vb.sigRangeChanged.connect(lambda *_: self._layout_tags())
        self.vb.sigResized.connect(lambda *_: self._layout_tags())

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(2)
        self.empty = QLabel("No open position to show.\n\nOpen one with New position "
                            "(Ctrl+N), or select a row in the table.")
        self.empty.setObjectName("chartEmpty")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(self.title)
        layout.addLayout(bar)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.empty, 1)
        self.plot.hide()
        self.set_theme(self._theme)

    # -- public API --------------------------------------------------------------------------
    @property
    def drag_modifier(self) -> Qt.KeyboardModifier:
        return self._drag_modifier

    @drag_modifier.setter
    def drag_modifier(self, mod: Qt.KeyboardModifier) -> None:
        self._drag_modifier = mod
        for item in (*self.lines.values(), *self.tags.values()):
            item.modifier = mod

    @property
    def position_id(self) -> str | None:
        return self._snap.position.id if self._snap is not None else None

    @property
    def symbol(self) -> str | None:
        return self._snap.position.symbol if self._snap is not None else None

    @property
    def snapshot(self) -> PositionSnapshot | None:
        return self._snap

    @property
    def market(self) -> Market | None:
        return self._market

    def line(self, kind: str) -> LevelLine:
        return self.lines[kind]

    def machine(self, kind: str) -> LineMachine:
        return self.machines[kind]

    def candles(self) -> tuple:
        """The candles shown now (at the selected timeframe), the forming one last."""
        return (*self.candle_item.candles, *self.forming_item.candles)

    def indicator(self) -> IndicatorLine | None:
        return self._indicator

    def last_price(self) -> float | None:
        """The newest price known for the shown symbol (tick or snapshot mark, by time)."""
        if self._snap is None:
            return None
        tick = self._last.get(self._snap.position.symbol)
        mark = self._snap.mark if valid_price(self._snap.mark) else None
        if tick is not None and (mark is None or tick.ts >= self._snap.ts):
            return tick.price
        return mark

    def price_of(self, symbol: str) -> float | None:
        """The newest tick price seen for any symbol (order entry, previews)."""
        t = self._last.get(symbol)
        if t is not None:
            return t.price
        if self._snap is not None and self._snap.position.symbol == symbol:
            return self.last_price()
        return None

    def known_symbols(self) -> list[str]:
        return sorted(set(self._last) | set(self._series) | set(self._waiting))

    def set_theme(self, theme: Theme) -> None:
        self._theme = theme
        self.plot.setBackground(theme.base)
        pi = self.plot.getPlotItem()
        for name in ("bottom", "right"):
            ax = pi.getAxis(name)
            ax.setPen(pg.mkPen(theme.muted))
            ax.setTextPen(pg.mkPen(theme.text))
        self.title.setStyleSheet(f"color: {theme.text}; font-weight: bold;")
        self.readout.setStyleSheet(f"color: {theme.muted};")
        self.empty.setStyleSheet(f"color: {theme.muted}; font-size: 14px;")
        self.candle_item.set_theme(theme)
        self.forming_item.set_theme(theme)
        for c in (self.cross_v, self.cross_h):
            c.setPen(pg.mkPen(theme.muted, width=1, style=Qt.PenStyle.DashLine))
        self.cross_tag.setColor(theme.base)
        self.cross_tag.set_box(pg.mkBrush(theme.muted), pg.mkPen(None))
        self.indicator_curve.setPen(pg.mkPen(theme.trailing, width=1,
                                             style=Qt.PenStyle.DotLine))
        self._style_tag(self.indicator_tag, theme.trailing)
        self._rendered = None
        self._styled = None
        self._render_candles()
        self._style_lines()
        self._refresh_markers()

    def set_timeframe(self, name: str) -> None:
        """Show candles of `name` (one of TIMEFRAMES), aggregated from the base candles."""
        if name not in TIMEFRAMES:
            raise ValueError(f"unknown timeframe {name!r}; choose one of "
                             f"{', '.join(TIMEFRAMES)}")
        self.tf_buttons[name].setChecked(True)
        if name == self.timeframe:
            return
        self.timeframe = name
        self._rendered = None
        self._render_candles()
        self._refresh_markers()  # on the candles of the new timeframe
        self.vb.enableAutoRange(axis=pg.ViewBox.XAxis)
        self._want_history()
        self.timeframeChanged.emit(name)

    def set_requester(self, ask: Ask | None) -> None:
        """How to ask the engine for older candles (`CommandRunner.request`: answered on the
        manager thread, the answer comes back to the GUI thread; nothing here waits)."""
        self._ask = ask
        self._want_history()

    def _want_history(self) -> None:
        """A timeframe coarser than the base candles shows the engine's candles of that
        timeframe before what the base candles cover (1h/4h/1d are not thin after a
        restart). Asked once per symbol and timeframe; for display only."""
        sym, tf = self.symbol, self.timeframe
        if sym is None or self._ask is None or (sym, tf) in self._asked:
            return
        series = self._series_of(sym)
        if TIMEFRAMES[tf] <= (series.base if series is not None else 60.0) + 1e-9:
            return
        self._asked.add((sym, tf))
        self._ask(GetCandles(sym, tf, HISTORY_CANDLES),
                  lambda data, err, k=(sym, tf): self._on_history(k, data, err),
                  key=("candles", sym, tf))

    def _take_indicator(self, snap: PositionSnapshot) -> bool:
        """The engine's value on `snap`; True when the line changed. A line seen first (the
        position shown, another preset) has its past asked of the engine."""
        was = self._feed.current
        if not self._feed.on_value(snap.indicator):
            return False
        now = self._feed.current
        if now is not None and (was is None or was.name != now.name):
            self._ask_indicator()
        return True

    def _ask_indicator(self) -> None:
        pid = self.position_id
        if pid is None or self._ask is None:
            return
        self._ask(GetIndicatorLine(pid), self._on_indicator_history)

    def _on_indicator_history(self, data: object, error: str | None) -> None:
        if error is None and isinstance(data, IndicatorHistory) \
                and self._feed.on_history(data):
            self._update_indicator()

    def _on_history(self, key: tuple[str, str], data: object, error: str | None) -> None:
        if error is not None or not isinstance(data, CandlesSnapshot):
            self._asked.discard(key)  # asked again when shown again
            return
        series = self._series_of(data.symbol, create=True)
        series.set_history(TIMEFRAMES[data.timeframe], data.candles)
        if data.symbol == self.symbol:
            self._rendered = None
            self._render_candles()
            if data.timeframe == self.timeframe:
                self.vb.enableAutoRange(axis=pg.ViewBox.XAxis)

    def set_position(self, snap: PositionSnapshot | None, market: Market | None) -> None:
        """Show `snap`'s position (None: show nothing). Cancels a drag of another position."""
        changed = (snap is None or self._snap is None
                   or snap.position.id != self._snap.position.id)
        if changed:
            self.drag.cancel()  # a drag belongs to the position it started on
        self._snap, self._market = snap, market
        self.price_axis.set_market(market)
        self.plot.setVisible(snap is not None)
        self.empty.setVisible(snap is None)
        if changed:
            for m in self.machines.values():
                m.reset()
            self._feed.reset(snap.position.id if snap is not None else None)
            self._rendered = None
            self._render_candles()
            self._refresh_markers()
            self.vb.enableAutoRange()
            self._frame_time()
            self._want_history()
        if snap is not None:
            self._take_indicator(snap)
        self._update_indicator()
        self.refresh_levels()
        self._update_title()

    def set_market(self, market: Market | None) -> None:
        """The market became known (tick size for snapping and labels)."""
        if market is not None and market != self._market:
            self._market = market
            self.price_axis.set_market(market)
            self.refresh_levels()
            self._update_title()

    def on_snapshot(self, snap: PositionSnapshot, *, defer: bool = False) -> None:
        """A newer snapshot of some position; redraws only if it is the one shown (with
        `defer`, as a live redraw: at most every REDRAW_MS, the line states settled now)."""
        if self._snap is None or snap.position.id != self._snap.position.id:
            return
        self._snap = snap
        p = snap.position
        tol = self._tolerance()
        for kind in DRAGGABLE:
            self.machines[kind].settle(getattr(p, kind), snap.ts, tol)
        if self._take_indicator(snap):
            self._due.add("indicator")
        if defer:
            # a new mark alone moves only the last price (the lines, their tags and the
            # title follow the position's levels and fields, not the price)
            self._due.add("levels" if self._levels_key() != self._levels_drawn else "last")
            self._due.add("title")
            self._redraw_soon()
            return
        if "indicator" in self._due:
            self._due.discard("indicator")
            self._update_indicator()
        self.refresh_levels()
        self._update_title()

    def _redraw_soon(self) -> None:
        """The first live redraw on the event loop's next turn, as a call of its own: not
        inside the bridge's pump that brought the change, whose other work (the table, the
        log) would hold the interpreter lock in one stretch with it. In a storm the engine's
        thread takes the lock from a stretch held past the switch interval (5 ms), and the
        GUI thread then waits to get it back; short stretches are rarely cut."""
        if not self._due or self._cooldown.isActive():
            return
        self._cooldown.start(0)

    # the window's `Turns` (set by the window): the live redraw waits for a turn of its own,
    # not run beside the other jobs due in the same pass of the timers; None: at once
    turns: Turns | None = None

    def _after_cooldown(self) -> None:
        if self.turns is not None:
            self.turns.later(("chart", id(self)), self._redraw_due, owner=self)
        else:
            self._redraw_due()

    def _redraw_due(self) -> None:
        if self._due:
            if self.turns is None:
                self.redraw_now()
            else:
                # the series (candles, indicator, markers) on this turn and the rest — the
                # levels, the last price, the tags and the auto-range — on the next (a live
                # redraw of both was 3-10 ms of GUI CPU in one stretch in the GUI storm);
                # asked before the repaint is held, so that it comes after both
                if self._due & _SERIES_PARTS:
                    self.turns.later(("chart-rest", id(self)), self._redraw_rest, owner=self)
                # its repaint on a later turn, not in this stretch (`Turns.paint_later`)
                self.turns.paint_later(self.plot.viewport())
                if self._due & _SERIES_PARTS:
                    self._redraw(_SERIES_PARTS, lay_out=False)
                else:
                    self._redraw_rest()
            self._cooldown.start(REDRAW_MS)

    def _redraw_rest(self) -> None:
        """The live redraw's second turn: what is due besides the series, then the
        auto-range."""
        self.redraw_now()
        # the auto-range here, as the scene would at the start of the paint: a new range
        # found there moved the axes and the tags and repainted the view a second time
        # (pyqtgraph re-ranges inside a paint); found here, the held repaint draws the new
        # range once
        self.plot.scene().prepareForPaint()

    def redraw_now(self) -> None:
        """Draw what the live updates changed (the owner calls it when flushed)."""
        self._redraw(None)

    def _redraw(self, parts: frozenset[str] | None, *, lay_out: bool = True) -> None:
        """Draw the `parts` due (None: all); the tags laid out at the end — or, without
        `lay_out`, by the next redraw that lays them out."""
        if parts is None:
            due, self._due = self._due, set()
        else:
            due = self._due & parts
            self._due -= due
        self._layout_wanted, self._layout_owed = self._layout_owed, False
        try:
            if "candles" in due:
                self._render_candles()
            if "indicator" in due:
                self._update_indicator()
            if "title" in due:
                self._update_title()
            if "markers" in due:
                self._refresh_markers()
            if "levels" in due or ("last" in due and self._held()):
                # (during a drag or a proposal the new price may make the level one that
                # would trigger at once: its tag says so without waiting for the hand)
                self.refresh_levels()  # also places the last price
            elif "last" in due:
                self._update_last()
        finally:
            wanted, self._layout_wanted = self._layout_wanted, None
        if wanted:
            if lay_out:
                self._layout_tags()
            else:
                self._layout_owed = True

    def on_ticks(self, evs: list[TickEvent]) -> None:
        """The newest price of each symbol (one list per bridge pump): every symbol's series
        follows; the chart redraws once, and only if its own symbol moved."""
        shown = self._snap.position.symbol if self._snap is not None else None
        render = moved = False
        last, waiting_of = self._last, self._waiting
        for ev in evs:
            p = ev.price
            if not (p.__class__ is float and 0.0 < p < math.inf) and not valid_price(p):
                continue  # (a finite positive float, tested inline: a storm's every price)
            sym = ev.symbol
            prev = last.get(sym)
            if prev is not None and ev.ts < prev.ts:
                continue  # never step back to an older price
            last[sym] = ev
            if sym == shown:
                changed = self._series_of(sym, create=True).on_tick(p, ev.ts)
                moved = True
                render = render or changed
                continue
            waiting = waiting_of.get(sym)
            if waiting is None:
                waiting_of[sym] = array("d", (p, ev.ts))
            else:
                waiting.append(p)
                waiting.append(ev.ts)
                if len(waiting) >= 2 * FOLD_AFTER:
                    self._series_of(sym)
        if render:
            self._due.add("candles")
        if moved:
            self._due.add("last")
        self._redraw_soon()

    def _series_of(self, symbol: str, create: bool = False) -> CandleSeries | None:
        """The symbol's candles with the ticks waiting for it folded in (None: none yet)."""
        waiting = self._waiting.pop(symbol, None)
        series = self._series.get(symbol)
        if series is None and (create or waiting):
            series = self._series[symbol] = CandleSeries()
        if waiting:
            assert series is not None
            series.fold(zip(waiting[0::2], waiting[1::2], strict=True))  # (price, ts) pairs
        return series

    def on_candles(self, ev: CandlesEvent) -> None:
        series = self._series_of(ev.symbol, create=True)
        series.merge(ev.candles)
        if self._snap is not None and ev.symbol == self._snap.position.symbol:
            had = bool(self.candle_item.candles)
            self._render_candles()
            self._refresh_markers()  # (redrawn only when the candles' grid changed)
            self._update_indicator()
            self._layout_tags()
            if not had and self.candle_item.candles:
                self.vb.enableAutoRange(axis=pg.ViewBox.XAxis)

    def on_actions(self, evs: list[ActionTaken]) -> None:
        """Live actions (one list per bridge pump): markers, and for automated SL/TP moves a
        note on the line. Markers are stored for every position (shown when it is selected),
        their tooltips written only on hover; the chart redraws once, and only when the
        position it shows has acted."""
        shown = self.position_id
        mine = False
        for ev in evs:
            if not self._store_marker(ev):
                continue
            a = ev.action
            if a.position_id != shown:
                continue
            mine = True
            if a.type in (ActionType.MOVE_SL, ActionType.MOVE_TP):
                m = self.machines["sl" if a.type is ActionType.MOVE_SL else "tp"]
                m.auto = "" if a.reason.value == "manual" else a.reason.value  # who moved it
        if mine:
            self._due.update(("markers", "levels"))
            self._redraw_soon()

    def add_marker(self, ev: ActionTaken) -> bool:
        """Put an action on its position's chart, explained on hover (reason and inputs)."""
        if not self._store_marker(ev):
            return False
        if ev.action.position_id == self.position_id:
            self._refresh_markers()
        return True

    def _store_marker(self, ev: ActionTaken) -> bool:
        a = ev.action
        if not valid_price(a.price):
            return False
        ts = a.ts if a.ts > 0 else self._now_ts(ev.symbol)
        lst = self._markers.get(a.position_id)
        if lst is None:
            lst = self._markers[a.position_id] = []
        item = (ts, a.price, _MARKER_SYMBOL.get(a.type, "o"), *action_facts(ev))
        if not lst or lst[-1][0] <= ts:
            lst.append(item)
        else:
            bisect.insort(lst, item, key=lambda m: m[0])
        if len(lst) > MAX_MARKERS + MAX_MARKERS // 10:  # trimmed in chunks
            del lst[:-MAX_MARKERS]
        return True

    def marker_points(self) -> list[tuple[float, float, str]]:
        """The markers shown now as (x, y, tooltip) — for tests and accessibility; x is the
        open time of the candle they sit on (`_marker_grid`)."""
        pid = self.position_id
        pts = self._markers.get(pid, [])[-MAX_MARKERS:] if pid else []
        sec, phase = self._marker_grid()
        return [(m[0] - (m[0] - phase) % sec, m[1],  # type: ignore[operator]
                 self._marker_tip(m[0], m[1], m[3:])) for m in pts]  # type: ignore[arg-type]

    # -- proposals and commits (driven by the owner) -----------------------------------------
    def propose(self, kind: str, level: float) -> None:
        """`kind` at `level` awaits the trader's decision (drawn dashed, not draggable)."""
        m = self.machines[kind]
        if m.state is not LineState.PROPOSED or m.level != level:
            m.propose(level)
        self.refresh_levels()

    def discard(self, kind: str) -> None:
        """The proposal was discarded: back to the engine's level."""
        m = self.machines[kind]
        if m.state is LineState.PROPOSED:
            m.discard()
        self.refresh_levels()

    def mark_sent(self, kind: str, level: float) -> None:
        """The level went to the engine; the line waits for `resolve`."""
        self.machines[kind].send(level, self._snap.ts if self._snap is not None else 0.0)
        self.refresh_levels()

    def resolve(self, kind: str, result: CommandResult | None, error: str | None) -> Verdict:
        """The command's answer: confirmed only when the venue holds the order."""
        m = self.machines[kind]
        v = verdict(kind, m.level if m.level is not None else math.nan, result, error)
        if m.state is LineState.PENDING:
            m.resolve(v, self._snap.ts if self._snap is not None else 0.0)
        self.refresh_levels()
        return v

    def refusal(self, kind: str, level: float) -> str | None:
        """Why `kind` at `level` cannot be sent now (it would trigger at once at the price
        now, or lies beyond liquidation), or None: a drop is checked when it happens, a
        proposal again when the trader applies it — the price may have crossed it since."""
        ctx = self.context()
        return trigger_reason(kind, level, ctx) if ctx is not None else None

    def pending(self) -> dict[str, float]:
        """Levels proposed or sent and not answered yet."""
        return {k: m.level for k, m in self.machines.items()
                if m.state in (LineState.PROPOSED, LineState.PENDING) and m.level is not None}

    # -- helpers for the drag controller -----------------------------------------------------
    def context(self) -> DragContext | None:
        s = self._snap
        if s is None:
            return None
        p = s.position
        return DragContext(p.side, p.entry, p.qty, p.contract_size, p.fee_rate, p.initial_sl,
                           self.last_price(), self._market, p.liquidation)

    def snap_level(self, y: float) -> float:
        if self._market is not None and self._market.tick_size > 0:
            return self._market.round_price(y)
        return y

    def engine_level(self, kind: str) -> float | None:
        """The level the engine's latest snapshot shows for `kind`."""
        if self._snap is None:
            return None
        v = getattr(self._snap.position, kind, None)
        return v if valid_price(v) else None

    def level_of(self, kind: str) -> float | None:
        """Where `kind` is drawn now."""
        line = self.lines[kind]
        return line.value() if line.isVisible() else self.engine_level(kind)

    def missing_levels(self) -> list[str]:
        """SL/TP the position has not got (neither from the engine nor on its way)."""
        out = []
        for kind in DRAGGABLE:
            m = self.machines[kind]
            held = m.level is not None and m.state not in (LineState.IDLE, LineState.DRAGGING)
            if self.engine_level(kind) is None and not held:
                out.append(kind)
        return out

    def _entry_note(self, kind: str) -> str:
        if kind != "entry":
            return ""
        if self.drag.creating and self._entry_hint:
            return self._entry_hint
        if self.lines["entry"].draggable:
            return f"drag for {'/'.join(LINE_TITLES[k] for k in self.missing_levels())}"
        return ""

    def show_entry_hint(self, kind: str) -> None:
        """Dragging out of the entry towards a level that exists already."""
        self._entry_hint = (f"{LINE_TITLES[kind]} exists: drag its line" if kind else "")
        self.refresh_levels()

    # -- drawing -----------------------------------------------------------------------------
    def _tolerance(self) -> float:
        return self._market.tick_size / 2 if self._market is not None else 1e-9

    def tolerance(self) -> float:
        """Two levels closer than this are the same level (half a tick)."""
        return self._tolerance()

    def _held(self) -> bool:
        """A line is being dragged or awaits Apply: its tag depends on the price."""
        return self.drag.active or any(self.machines[k].state is LineState.PROPOSED
                                       for k in DRAGGABLE)

    def _unguarded(self) -> bool:
        """The engine reports the shown position's stop as guarded locally only: no stop
        order the venue acknowledged covers it (the line must not look like a held one)."""
        return self._snap is not None and self._snap.protection == Protection.LOCAL_ONLY

    def _style_tag(self, tag: LevelTag, colour: str) -> None:
        tag.setColor(colour)
        base = self._theme.base
        tag.set_box(pg.mkBrush(base + "dd") if len(base) == 7 else pg.mkBrush(base),
                    pg.mkPen(colour))

    def _style_lines(self) -> None:
        t = self._theme
        paused = self._snap is not None and not self._snap.position.automation
        unguarded = self._unguarded()
        key = (t, paused, unguarded, tuple(self.machines[k].state for k in DRAGGABLE))
        if key == self._styled:
            return  # pens and tag colours as they are (setting them repaints every tag)
        self._styled = key
        colours = {"entry": t.entry, "sl": t.sl, "tp": t.tp, "trailing": t.trailing,
                   "liquidation": t.liquidation, "last": t.last}
        styles = {"entry": Qt.PenStyle.SolidLine, "sl": Qt.PenStyle.SolidLine,
                  "tp": Qt.PenStyle.SolidLine, "trailing": Qt.PenStyle.DashLine,
                  "liquidation": Qt.PenStyle.DashDotLine, "last": Qt.PenStyle.DotLine}
        for kind, line in self.lines.items():
            style = styles[kind]
            st = self.machines[kind].state
            if kind in DRAGGABLE and (paused or st in (LineState.PROPOSED, LineState.PENDING,
                                                       LineState.LOCAL_ONLY)
                                      or (kind == "sl" and unguarded
                                          and st is LineState.IDLE)):
                style = Qt.PenStyle.DashLine  # paused, awaiting the engine, or local only
            width = 2 if kind in DRAGGABLE else 1
            line.setPen(pg.mkPen(colours[kind], width=width, style=style))
            line.setHoverPen(pg.mkPen(colours[kind], width=4, style=style))
            self._style_tag(self.tags[kind], colours[kind])

    def _levels_key(self) -> tuple:
        """What the lines and their tags are drawn from (besides the theme)."""
        s = self._snap
        if s is None:
            return ()
        p = s.position
        return (p.id, p.side, p.entry, p.qty, p.sl, p.tp, p.trailing, p.liquidation,
                p.initial_sl, p.fee_rate, p.contract_size, p.automation, s.protection,
                id(self._market),
                self.drag_enabled, self.drag.creating, self._entry_hint,
                tuple((m.state, m.level, m.auto, m.reason) for m in self.machines.values()))

    def refresh_levels(self) -> None:
        """Lines and tags from the snapshot and each line's state."""
        s = self._snap
        self._levels_drawn = self._levels_key()
        self._style_lines()
        if s is None:
            for kind, line in self.lines.items():
                line.setVisible(False)
                line.set_draggable(False)
                self.tags[kind].draggable = False
            self._layout_tags()
            return
        p = s.position
        levels: dict[str, float | None] = {"entry": p.entry, "sl": p.sl, "tp": p.tp,
                                           "trailing": p.trailing,
                                           "liquidation": p.liquidation}
        for kind in DRAGGABLE:
            m = self.machines[kind]
            if m.state not in (LineState.IDLE, LineState.REJECTED) and m.level is not None:
                levels[kind] = m.level
        sl, trail = levels.get("sl"), levels.get("trailing")
        if valid_price(sl) and valid_price(trail) and abs(sl - trail) <= self._tolerance():  # type: ignore[operator]
            levels["trailing"] = None  # the SL *is* the trailing stop: one line, one tag
        ctx = self.context()
        busy = any(self.machines[k].busy for k in DRAGGABLE)
        for kind, level in levels.items():
            line, tag, m = self.lines[kind], self.tags[kind], self.machines[kind]
            ok = valid_price(level)
            line.setVisible(ok)
            tag.setVisible(ok)
            if kind in DRAGGABLE:
                on = ok and self.drag_enabled and m.can_drag
                line.set_draggable(on)
                tag.draggable = on
            elif kind == "entry":
                on = ok and self.drag_enabled and not busy and bool(self.missing_levels())
                line.set_draggable(on)
                tag.draggable = on
            if not ok:
                continue
            assert level is not None
            line.setValue(level)
            tag.set_text(tag_text(kind, level, ctx, m, automation=p.automation,
                                  market=self._market, entry_note=self._entry_note(kind),
                                  unguarded=self._unguarded()))
        self._update_last()

    def _update_last(self) -> None:
        line, tag = self.lines["last"], self.tags["last"]
        price = self.last_price()
        if price is None or not valid_price(price):
            line.setVisible(False)
            tag.setVisible(False)
            self._layout_tags()
            return
        line.setVisible(True)
        tag.setVisible(True)
        line.setValue(price)
        stale = self._snap is not None and self._snap.stale
        tag.set_text(f"{fmt_price(price, self._market)}{' ⚠ stale' if stale else ''}")
        self._layout_tags()

    def _layout_tags(self) -> None:
        """Put every visible tag beside its level without overlapping another; a level out
        of view gets its tag at that edge with ▲/▼."""
        if self._layout_wanted is not None:  # in a redraw: once, at its end
            self._layout_wanted = True
            return
        vb = self.vb
        rect = vb.sceneBoundingRect()
        if rect.height() <= 0 or self._snap is None:
            return
        x0 = vb.viewRange()[0][0]
        top, bottom = rect.top() + 1, rect.bottom() - 1
        items: list[tuple[LevelTag, float, str]] = [
            (self.tags[k], self.lines[k].value(), k) for k in LINE_KINDS
            if self.tags[k].isVisible()]
        ind = self._indicator
        if ind is not None and ind.last is not None and self.indicator_tag.isVisible():
            items.append((self.indicator_tag, ind.last, "indicator"))
        wanted: dict[bool, list[tuple[str, float, float]]] = {False: [], True: []}
        widths: dict[bool, float] = {False: 0.0, True: 0.0}
        by_key: dict[str, LevelTag] = {}
        for tag, level, key in items:
            y = vb.mapViewToScene(QPointF(x0, level)).y()
            edge = 1 if y < top else -1 if y > bottom else 0
            if edge != tag.edge:
                tag.edge = edge
            text = tag._text.lstrip("▲▼ ")
            tag.set_text(("▲ " if edge > 0 else "▼ " if edge < 0 else "") + text)
            br = tag.rect()
            wanted[tag.right].append((key, y, br.height()))
            widths[tag.right] = max(widths[tag.right], br.width())
            by_key[key] = tag
        axis_right = self.plot.getPlotItem().getAxis("right").sceneBoundingRect().right() - 1
        if widths[False] + widths[True] + 2 * TAG_MARGIN > axis_right - rect.left():
            columns = [wanted[False] + wanted[True]]  # too narrow: one stack for all
        else:
            columns = [wanted[False], wanted[True]]
        for col in columns:
            for key, c in stack_tags(col, top, bottom).items():
                tag = by_key[key]
                # scene items: right-aligned on the axis, or at the view's left edge
                tag.setPos(axis_right if tag.right else rect.left() + TAG_MARGIN, c)

    def _render_candles(self) -> None:
        sym = self.symbol
        series = self._series_of(sym) if sym else None
        if series is None:
            self.candle_item.set_candles((), 60.0)
            self.forming_item.set_candles(())
            self.volume.setOpts(x=[], height=[])
            self._update_tf_buttons(None)
            return
        self._update_tf_buttons(series)
        sec = max(TIMEFRAMES[self.timeframe], series.base)
        cs = series.view(sec, MAX_SHOWN)
        # (forming is part of the key: a tick that extends the engine's last completed candle
        # makes it forming with no new version; drawn again as completed it showed twice)
        key = (sym, sec, series.version, len(cs), series.forming)
        if series.forming and cs:
            head, tail = cs[:-1], cs[-1:]
        else:
            head, tail = cs, []
        if key != self._rendered:
            self._rendered = key
            self.candle_item.set_candles(head, sec)
            vols = [c.volume for c in head]
            top = max(vols, default=0.0)
            if top > 0:
                t = self._theme
                up, down = pg.mkBrush(t.up + "40"), pg.mkBrush(t.down + "40")
                self.volume.setOpts(x=[c.ts for c in head], height=vols, width=sec * 0.7,
                                    brushes=[up if c.close >= c.open else down for c in head],
                                    pen=pg.mkPen(None))
                self.volume_vb.setYRange(0, top * VOLUME_SHARE, padding=0)
            else:
                self.volume.setOpts(x=[], height=[])
        self.forming_item.set_candles(tail, sec)

    def _update_tf_buttons(self, series: CandleSeries | None) -> None:
        """Enable the timeframes the candles can be shown at and check the one shown: candles
        coarser than the chosen timeframe (a replayed hourly file) are shown at their own,
        which the checked button must name; the choice is kept for the next symbol."""
        allowed = frozenset(series.timeframes() if series is not None else TIMEFRAMES)
        sec = max(TIMEFRAMES[self.timeframe], series.base if series is not None else 0.0)
        shown = next((n for n, v in TIMEFRAMES.items() if abs(v - sec) < 1e-9), None)
        key = (allowed, shown)
        if key == self._tf_allowed:  # (each redraw: set only when it changes)
            return
        self._tf_allowed = key
        for name, b in self.tf_buttons.items():
            b.setEnabled(name in allowed)
        self.tf_group.setExclusive(shown is not None)  # (exclusive: one stays checked)
        for name, b in self.tf_buttons.items():
            b.setChecked(name == shown)
        self.tf_group.setExclusive(True)

    def _sync_volume_view(self) -> None:
        self.volume_vb.setGeometry(self.vb.sceneBoundingRect())

    def _update_indicator(self) -> None:
        s = self._snap
        series = self._series_of(s.position.symbol) if s is not None else None
        end = (series.candles[-1].ts + series.base) if series is not None and series.candles \
            else 0.0
        self._feed.bucket = series.base if series is not None else 60.0
        self._indicator = self._feed.line(end) if s is not None else None
        ind = self._indicator
        drawn = (ind, self._market)
        if drawn != self._indicator_drawn:  # the feed keeps its line while nothing changed
            self._indicator_drawn = drawn
            if ind is None or ind.last is None:
                self.indicator_curve.setData([], [])
                self.indicator_tag.setVisible(False)
            else:
                self.indicator_curve.setData(list(ind.xs), list(ind.ys))
                self.indicator_tag.set_text(f"{ind.name} {fmt_price(ind.last, self._market)}")
                self.indicator_tag.setVisible(True)
        if not self.cross_h.isVisible():
            self.readout.setText(self._idle_text())
        self._layout_tags()

    def _idle_text(self) -> str:
        """The read-out without a cursor: why the rule's indicator is not drawn yet."""
        ind = self._indicator
        return ind.note if ind is not None and ind.note else " "

    def _frame_time(self) -> None:
        """Without candles nothing bounds the time axis: show the last hour up to now."""
        if self.candle_item.candles or self.forming_item.candles or self._snap is None:
            return
        t = self._snap.ts
        tick = self._last.get(self._snap.position.symbol)
        if tick is not None:
            t = max(t, tick.ts)
        if t > 0:
            self.plot.setXRange(t - 3600, t + 60, padding=0)

    def _update_title(self) -> None:
        s = self._snap
        p = s.position if s is not None else None
        # what the title says (asked at each live redraw: written when it changes)
        key = None if p is None else (p.symbol, p.side, p.qty, p.entry, p.leverage, p.preset,
                                      p.automation, self._market)
        if key == self._title_of and self.title.text():
            return
        self._title_of = key
        if p is None:
            self.title.setText("No position selected")
            return
        arrow = "▲ LONG" if p.side is Side.LONG else "▼ SHORT"
        auto = "" if p.automation else " · ‖ automation paused"
        self.title.setText(
            f"{p.symbol}  {arrow} {fmt_qty(p.qty, self._market)} @ "
            f"{fmt_price(p.entry, self._market)} · {p.leverage:g}x · {p.preset}{auto}")
        self.title.setToolTip(self.title.text())  # the header may cut it short

    # -- crosshair ---------------------------------------------------------------------------
    def _on_mouse_moved(self, pos: QPointF) -> None:
        inside = self._snap is not None and self.vb.sceneBoundingRect().contains(pos)
        for item in (self.cross_v, self.cross_h, self.cross_tag):
            item.setVisible(inside)
        if not inside:
            self.readout.setText(self._idle_text())
            return
        pt = self.vb.mapSceneToView(pos)
        self.cross_v.setValue(pt.x())
        self.cross_h.setValue(pt.y())
        self.readout.setText(self.crosshair_text(pt.x(), pt.y()))
        self.cross_tag.setText(fmt_price(self.snap_level(pt.y()), self._market))
        right = self.plot.getPlotItem().getAxis("right").sceneBoundingRect().right() - 1
        self.cross_tag.setPos(right, pos.y())

    def _on_mouse_clicked(self, ev) -> None:
        """Right click on the plot: trade at that price (the window builds the menu). During
        a drag the right button cancels the drag instead (the line item takes it): the
        scene reports that click here too, after the dragged line or tag accepted it and
        the drag is over: that click is the cancel's, not the plot's (no trade menu).

        A double left click makes the view follow the candles and levels again: a wheel
        zoom or a pan turns pyqtgraph's auto-range off for good, and nothing else in the
        chart turns it back on for the position shown."""
        if ev.button() == Qt.MouseButton.LeftButton and ev.double() and not self.drag.active \
                and self._snap is not None:
            self.vb.enableAutoRange()
            return
        if ev.button() != Qt.MouseButton.RightButton or self.drag.active or self._snap is None:
            return
        if ev.isAccepted() and isinstance(ev.currentItem, (LevelLine, LevelTag)):
            return
        pos = ev.scenePos()
        if not self.vb.sceneBoundingRect().contains(pos):
            return
        y = self.vb.mapSceneToView(pos).y()
        if not valid_price(y):
            return
        ev.accept()
        self.tradeMenuRequested.emit(self.snap_level(y), ev.screenPos().toPoint())

    def eventFilter(self, obj: QObject, ev: QEvent) -> bool:
        if ev.type() == QEvent.Type.Leave and obj is self.plot.viewport():
            for item in (self.cross_v, self.cross_h, self.cross_tag):
                item.setVisible(False)
            self.readout.setText(self._idle_text())
        return False

    def crosshair_text(self, x: float, y: float) -> str:
        """The read-out for the point (x, y) of the view (see chart_text.crosshair_text)."""
        level = self.snap_level(y) if valid_price(y) else y
        return crosshair_text(x, level, self.context(), self._market)

    # -- markers -----------------------------------------------------------------------------
    def _refresh_markers(self) -> None:
        """The shown position's markers on the chart. Markers only added at the end since
        the last call (a live action: the usual case) are appended to the item, not all of
        them set again (up to MAX_MARKERS points remade, 0.6 ms and more of GUI CPU in a
        storm's live redraw)."""
        pid = self.position_id
        pts = self._markers.get(pid, [])[-MAX_MARKERS:] if pid else []
        if not pts:
            self.markers.setData([], [])
            self._markers_drawn = None
            return
        drawn, theme = self._markers_drawn, self._theme
        grid = self._marker_grid()
        if drawn is not None and drawn[0] == pid and drawn[1] is theme and drawn[5] == grid \
                and drawn[2] <= len(pts) and pts[0] is drawn[3] and pts[drawn[2] - 1] is drawn[4]:
            new = pts[drawn[2]:]  # (the markers drawn are still the first ones, unmoved)
            if new:
                self.markers.addPoints(**self._marker_args(new, grid))
        else:
            self.markers.setData(**self._marker_args(pts, grid))
        self._markers_drawn = (pid, theme, len(pts), pts[0], pts[-1], grid)

    def _marker_grid(self) -> tuple[float, float]:
        """(seconds, phase) of the candles shown: a candle is drawn centred on its open
        time, so a marker goes to the open time of the candle holding its action — drawn at
        the action's own time it sat between candles, against the next one on a coarse
        timeframe. Coarser timeframes are UTC buckets (phase 0); the base candles keep the
        engine's own phase (a replayed file's hours need not start on the hour)."""
        series = self._series.get(self.symbol) if self.symbol else None
        base = series.base if series is not None else 60.0
        sec = max(TIMEFRAMES[self.timeframe], base)
        phase = 0.0
        if series is not None and series.candles and sec <= base + 1e-9:
            phase = series.candles[0].ts % sec
        return sec, phase

    def _marker_args(self, pts: list[tuple[object, ...]],
                     grid: tuple[float, float]) -> dict[str, object]:
        facts = np.empty(len(pts), dtype=object)  # one cell per marker (a list of tuples
        for i, m in enumerate(pts):  # would be read as a 2-D array)
            facts[i] = m[3:]
        sec, phase = grid
        xs = [t - (t - phase) % sec for t in (float(m[0]) for m in pts)]  # type: ignore[arg-type]
        return {"x": xs, "y": [m[1] for m in pts], "data": facts,
                "symbol": [m[2] for m in pts], "brush": pg.mkBrush(self._theme.marker),
                "pen": pg.mkPen(self._theme.base)}

    def _marker_tip(self, x: float, y: float, data: object) -> str:
        """A marker's explanation, written when it is asked for (hover), not per action."""
        if isinstance(data, tuple):  # ActionFacts
            market = self._market if data[9] == self.symbol else None
            return explain_facts(data, market)  # type: ignore[arg-type]
        return str(data)

    def _now_ts(self, symbol: str) -> float:
        tick = self._last.get(symbol)
        if tick is not None:
            return tick.ts
        s = self._series_of(symbol)
        return s.candles[-1].ts if s is not None and s.candles else 0.0

