"""The chart of the selected position: candles, level lines, last price, action markers.

Items are created once and updated in place (candles regenerate their QPicture, lines
move with `setValue`, markers with `setData`), so a tick costs a line move, not a rebuild.

SL and TP lines (`slLine`, `tpLine`) are draggable: the drag snaps to the market's tick
size and labels the level with its consequence (`SL 41,250 · −1.8% · −$92 · −0.9R`); Esc or
a right click cancels and restores the line; a level that would trigger at once cannot be
dropped (the line returns and `dragRejected` says why). A drop emits `levelDropped`; the
owner (the main window) decides whether to commit at once or after confirmation and tells
the chart the outcome. Entry, trailing and liquidation lines are never draggable.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QKeyEvent, QPainter, QPicture
from PySide6.QtWidgets import QApplication, QLabel, QVBoxLayout, QWidget

from pmgui.domain.enums import ActionType, Side
from pmgui.domain.models import Candle, Market
from pmgui.domain.money import pnl_r, unrealized_pnl, valid_price
from pmgui.engine.events import ActionTaken, CandlesEvent, PositionSnapshot, TickEvent
from pmgui.ui.fmt import fmt_money, fmt_pct, fmt_price, fmt_qty, fmt_r
from pmgui.ui.theme import Theme, make_theme

LINE_KINDS = ("entry", "sl", "tp", "trailing", "liquidation", "last")
DRAGGABLE = ("sl", "tp")
LINE_TITLES = {"entry": "Entry", "sl": "SL", "tp": "TP", "trailing": "Trail",
               "liquidation": "Liq", "last": "Last"}
MAX_MARKERS = 500
# Where along the line each label sits (fraction of the view width), so labels of nearby
# levels (entry vs. last price, SL vs. trailing) do not cover each other.
LABEL_POSITIONS = {"entry": 0.02, "liquidation": 0.02, "trailing": 0.22, "sl": 0.84,
                   "tp": 0.84, "last": 0.995}


class CandlestickItem(pg.GraphicsObject):
    """OHLC candles drawn once into a QPicture (pyqtgraph's customGraphicsItem recipe).

    `set_candles` regenerates the picture only when the candle window really changed.
    """

    def __init__(self, theme: Theme) -> None:
        super().__init__()
        self._theme = theme
        self._candles: tuple[Candle, ...] = ()
        self._picture = QPicture()
        self._rect = QRectF()

    @property
    def candles(self) -> tuple[Candle, ...]:
        return self._candles

    def set_theme(self, theme: Theme) -> None:
        self._theme = theme
        self._regenerate()

    def set_candles(self, candles: Sequence[Candle]) -> None:
        valid = tuple(c for c in candles if _valid_candle(c))
        if valid == self._candles:
            return
        self._candles = valid
        self._regenerate()

    def _regenerate(self) -> None:
        self.prepareGeometryChange()
        pic = QPicture()
        p = QPainter(pic)
        cs = self._candles
        if cs:
            width = _candle_width(cs) * 0.35
            up_pen, down_pen = pg.mkPen(self._theme.up), pg.mkPen(self._theme.down)
            up_brush, down_brush = pg.mkBrush(self._theme.up), pg.mkBrush(self._theme.down)
            for c in cs:
                rising = c.close >= c.open
                p.setPen(up_pen if rising else down_pen)
                p.setBrush(up_brush if rising else down_brush)
                p.drawLine(QPointF(c.ts, c.low), QPointF(c.ts, c.high))
                body = c.close - c.open
                if body == 0:
                    p.drawLine(QPointF(c.ts - width, c.open), QPointF(c.ts + width, c.open))
                else:
                    p.drawRect(QRectF(c.ts - width, c.open, width * 2, body))
        p.end()
        self._picture = pic
        if cs:
            width = _candle_width(cs) * 0.35
            lo = min(c.low for c in cs)
            hi = max(c.high for c in cs)
            x0, x1 = cs[0].ts - width, cs[-1].ts + width
            self._rect = QRectF(x0, lo, x1 - x0, hi - lo)
        else:
            self._rect = QRectF()
        self.update()

    def paint(self, p: QPainter, *args: object) -> None:
        p.drawPicture(0, 0, self._picture)

    def dataBounds(self, axis: int, frac: float = 1.0,
                   orthoRange: object = None) -> tuple[float, float] | None:
        """Auto-range on the candles only; nothing at all when there are none (not 0)."""
        if not self._candles:
            return None
        r = self._rect
        return (r.left(), r.right()) if axis == 0 else (r.top(), r.bottom())

    def boundingRect(self) -> QRectF:
        return QRectF(self._rect)


def _valid_candle(c: Candle) -> bool:
    return all(valid_price(v) for v in (c.open, c.high, c.low, c.close)) and math.isfinite(c.ts)


def _candle_width(cs: Sequence[Candle]) -> float:
    if len(cs) < 2:
        return 60.0
    gaps = sorted(b.ts - a.ts for a, b in itertools.pairwise(cs) if b.ts > a.ts)
    return gaps[len(gaps) // 2] if gaps else 60.0


@dataclass(frozen=True, slots=True)
class DragContext:
    """What a drag needs to know: the position, its market and the current price."""

    side: Side
    entry: float
    qty: float
    contract_size: float
    fee_rate: float
    initial_sl: float | None
    price: float | None
    market: Market | None


def consequence(kind: str, level: float, ctx: DragContext) -> str:
    """`SL 41,250 · −1.8% · −$92 · −0.9R`: what the trader gets if price reaches `level`.

    The percentage is the price move from entry (direction-aware), the money is the P/L of
    the whole position at that level net of fees, R relative to the initial stop.
    """
    move = ctx.side.dir * (level - ctx.entry) / ctx.entry if valid_price(ctx.entry) else None
    pnl = unrealized_pnl(ctx.side, ctx.entry, level, ctx.qty, ctx.contract_size, ctx.fee_rate)
    r = pnl_r(ctx.side, ctx.entry, level, ctx.initial_sl)
    quote = ctx.market.quote if ctx.market is not None else "USDT"
    parts = [f"{LINE_TITLES[kind]} {fmt_price(level, ctx.market)}", fmt_pct(move, 1),
             fmt_money(pnl, quote, 0 if abs(pnl) >= 100 else 2)]
    if r is not None:
        parts.append(fmt_r(r, 1))
    return " · ".join(parts)


def trigger_reason(kind: str, level: float, ctx: DragContext) -> str | None:
    """Why `level` cannot be dropped (it would trigger at once), or None if it can."""
    p = ctx.price
    if p is None or not valid_price(p):
        return None
    fp = fmt_price(p, ctx.market)
    fl = fmt_price(level, ctx.market)
    name = LINE_TITLES[kind]
    if kind == "sl":
        if ctx.side is Side.LONG and level >= p:
            return f"{name} {fl} is at or above the price {fp}: a long would stop out at once"
        if ctx.side is Side.SHORT and level <= p:
            return f"{name} {fl} is at or below the price {fp}: a short would stop out at once"
    if kind == "tp":
        if ctx.side is Side.LONG and level <= p:
            return f"{name} {fl} is at or below the price {fp}: a long would take profit at once"
        if ctx.side is Side.SHORT and level >= p:
            return f"{name} {fl} is at or above the price {fp}: a short would take profit at once"
    return None


class LevelLine(pg.InfiniteLine):
    """A horizontal level with a label; SL/TP variants can be dragged by the line itself.

    Dragging is only possible when `draggable` is set (by the chart) and, if a modifier is
    required, while it is held. pyqtgraph delivers the drag only to the item under the
    cursor, so the line has to be grabbed (it highlights on hover).
    """

    def __init__(self, kind: str, chart: ChartWidget) -> None:
        super().__init__(angle=0, movable=False)
        self.kind = kind
        self.setObjectName(f"{kind}Line")
        self._chart = chart
        self.draggable = False
        self.dragging = False
        self.cancelled = False
        self.start_value: float | None = None
        pos = LABEL_POSITIONS.get(kind, 0.97)
        anchors = [(1, 1), (1, 0)] if pos > 0.5 else [(0, 1), (0, 0)]
        self.label = pg.InfLineLabel(self, text="", position=pos, anchors=anchors,
                                     movable=False)
        self.setZValue(20 if kind in DRAGGABLE else 10)
        self.setVisible(False)

    # pyqtgraph consults `movable` to accept hover-drags; keep it in sync with `draggable`.
    def set_draggable(self, on: bool) -> None:
        self.draggable = on
        self.setMovable(on)

    def set_text(self, text: str) -> None:
        self.label.setFormat(text.replace("{", "{{").replace("}", "}}"))
        self.label.valueChanged()

    def hoverEvent(self, ev) -> None:  # ev: a pyqtgraph mouse event
        if self.draggable and not ev.isExit() and self._modifier_ok(ev.modifiers()):
            if ev.acceptDrags(Qt.MouseButton.LeftButton):
                self.setMouseHover(True)
                return
        self.setMouseHover(False)

    def mouseDragEvent(self, ev) -> None:  # ev: a pyqtgraph mouse event
        if ev.button() != Qt.MouseButton.LeftButton:
            return
        if ev.isStart():
            if not self.draggable or not self._modifier_ok(ev.modifiers()):
                ev.ignore()
                return
            self.dragging, self.cancelled = True, False
            self.start_value = self.value()
            self._chart._drag_started(self)
        if not self.dragging and not self.cancelled:
            ev.ignore()
            return
        ev.accept()
        if self.cancelled:
            if ev.isFinish():
                self.cancelled = False
            return
        y = self.mapToParent(ev.pos()).y()
        self._chart._drag_moved(self, y)
        if ev.isFinish():
            self.dragging = False
            self._chart._drag_finished(self)

    def mouseClickEvent(self, ev) -> None:  # ev: a pyqtgraph mouse event
        if self.dragging and ev.button() == Qt.MouseButton.RightButton:
            ev.accept()
            self.cancel_drag()
            return
        self.sigClicked.emit(self, ev)

    def cancel_drag(self) -> None:
        """Esc / right click: restore the line where it was; the rest of the drag is ignored."""
        if not self.dragging:
            return
        self.dragging, self.cancelled = False, True
        self._chart._drag_cancelled(self)

    def _modifier_ok(self, mods: Qt.KeyboardModifier) -> bool:
        need = self._chart.drag_modifier
        return need == Qt.KeyboardModifier.NoModifier or bool(mods & need)


class ChartWidget(QWidget):
    """The selected position on a chart. Feed it snapshots, ticks, candles and actions."""

    levelDropped = Signal(str, str, float)  # position id, kind ("sl"/"tp"), snapped level
    dragRejected = Signal(str, str)  # kind, reason (the line went back)
    dragCancelled = Signal(str)  # kind

    def __init__(self, theme: Theme | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chart")
        self.setAccessibleName("Position chart")
        self._theme = theme or make_theme("dark")
        self.drag_modifier = Qt.KeyboardModifier.NoModifier
        self.drag_enabled = True
        self._snap: PositionSnapshot | None = None
        self._market: Market | None = None
        self._candles: dict[str, tuple[Candle, ...]] = {}
        self._last: dict[str, TickEvent] = {}
        self._markers: dict[str, list[tuple[float, float, str, str]]] = {}
        self._pending: dict[str, float] = {}  # kind → level sent to the engine, awaiting result
        self._pending_note: dict[str, str] = {}
        self._pending_since: dict[str, float] = {}  # snapshot ts when the level was sent
        self._held: dict[str, float] = {}  # kind → level accepted, until the next snapshot
        self._notes: dict[str, str] = {}  # kind → reason of the last automated move
        self._drag_line: LevelLine | None = None

        self.title = QLabel("No position selected")
        self.title.setObjectName("chartTitle")
        self.title.setTextFormat(Qt.TextFormat.PlainText)
        self.plot = pg.PlotWidget(axisItems={"bottom": pg.DateAxisItem(orientation="bottom")})
        self.plot.setObjectName("chartPlot")
        self.plot.setAccessibleName("Price chart with entry, stop-loss and take-profit lines")
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        self.plot.getPlotItem().showAxis("right")
        self.plot.getPlotItem().hideAxis("left")
        self.candle_item = CandlestickItem(self._theme)
        self.plot.addItem(self.candle_item)
        self.lines: dict[str, LevelLine] = {}
        for kind in LINE_KINDS:
            line = LevelLine(kind, self)
            self.lines[kind] = line
            self.plot.addItem(line, ignoreBounds=(kind == "liquidation"))
        self.markers = pg.ScatterPlotItem(size=11, hoverable=True, tip=self._marker_tip,
                                          pxMode=True)
        self.markers.setZValue(30)
        self.plot.addItem(self.markers)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(2)
        self.empty = QLabel("No open position to show.\n\nOpen one with New position "
                            "(Ctrl+N), or select a row in the table.")
        self.empty.setObjectName("chartEmpty")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(self.title)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.empty, 1)
        self.plot.hide()
        self.set_theme(self._theme)

    # -- public API --------------------------------------------------------------------------
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
        return sorted(set(self._last) | set(self._candles))

    def set_theme(self, theme: Theme) -> None:
        self._theme = theme
        self.plot.setBackground(theme.base)
        pi = self.plot.getPlotItem()
        for name in ("bottom", "right"):
            ax = pi.getAxis(name)
            ax.setPen(pg.mkPen(theme.muted))
            ax.setTextPen(pg.mkPen(theme.text))
        self.title.setStyleSheet(f"color: {theme.text}; font-weight: bold;")
        self.empty.setStyleSheet(f"color: {theme.muted}; font-size: 14px;")
        self.candle_item.set_theme(theme)
        self._style_lines()
        self._refresh_markers()

    def set_position(self, snap: PositionSnapshot | None, market: Market | None) -> None:
        """Show `snap`'s position (None: show nothing). Cancels a drag of another position."""
        changed = (snap is None or self._snap is None
                   or snap.position.id != self._snap.position.id)
        if changed and self._drag_line is not None:
            self._drag_line.cancel_drag()  # a drag belongs to the position it started on
        self._snap, self._market = snap, market
        self.plot.setVisible(snap is not None)
        self.empty.setVisible(snap is None)
        if changed:
            self._pending.clear()
            self._pending_note.clear()
            self._pending_since.clear()
            self._held.clear()
            self._notes.clear()
            sym = snap.position.symbol if snap is not None else None
            self.candle_item.set_candles(self._candles.get(sym, ()) if sym else ())
            self._refresh_markers()
            self.plot.enableAutoRange()
            self._frame_time()
        self._update_levels()
        self._update_last()
        self._update_title()

    def set_market(self, market: Market | None) -> None:
        """The market became known (tick size for snapping and labels)."""
        if market is not None and market != self._market:
            self._market = market
            self._update_levels()
            self._update_last()
            self._update_title()

    def on_snapshot(self, snap: PositionSnapshot) -> None:
        """A newer snapshot of some position; redraws only if it is the one shown."""
        if self._snap is None or snap.position.id != self._snap.position.id:
            return
        self._snap = snap
        self._held.clear()  # the engine's level now speaks for itself
        self._update_levels()
        self._update_last()
        self._update_title()

    def on_tick(self, ev: TickEvent) -> None:
        if not valid_price(ev.price):
            return
        prev = self._last.get(ev.symbol)
        if prev is not None and ev.ts < prev.ts:
            return  # never step back to an older price
        self._last[ev.symbol] = ev
        if self._snap is not None and ev.symbol == self._snap.position.symbol:
            self._update_last()

    def on_candles(self, ev: CandlesEvent) -> None:
        self._candles[ev.symbol] = tuple(ev.candles)
        if self._snap is not None and ev.symbol == self._snap.position.symbol:
            had = bool(self.candle_item.candles)
            self.candle_item.set_candles(ev.candles)
            if not had and self.candle_item.candles:
                self.plot.enableAutoRange(axis="x")

    def _frame_time(self) -> None:
        """Without candles nothing bounds the time axis: show the last hour up to now."""
        if self.candle_item.candles or self._snap is None:
            return
        t = self._snap.ts
        tick = self._last.get(self._snap.position.symbol)
        if tick is not None:
            t = max(t, tick.ts)
        if t > 0:
            self.plot.setXRange(t - 3600, t + 60, padding=0)

    def on_action(self, ev: ActionTaken) -> None:
        """A live action: marker, and for automated SL/TP moves a note on the line."""
        a = ev.action
        if not self.add_marker(ev):
            return
        if a.type in (ActionType.MOVE_SL, ActionType.MOVE_TP) and a.reason.value != "manual":
            self._notes["sl" if a.type is ActionType.MOVE_SL else "tp"] = a.reason.value
        if a.position_id == self.position_id:
            self._update_levels()

    def add_marker(self, ev: ActionTaken) -> bool:
        """Put an action on its position's chart (with its reason as tooltip)."""
        a = ev.action
        if not valid_price(a.price):
            return False
        ts = a.ts if a.ts > 0 else self._now_ts(ev.symbol)
        tip = f"{a.reason.value} · {a.type.value}"
        if ev.detail:
            tip += f" · {ev.detail}"
        if not ev.ok:
            tip += " · FAILED"
        symbol = {ActionType.OPEN: "t1", ActionType.ADD: "t1", ActionType.CLOSE: "x",
                  ActionType.REDUCE: "t", ActionType.MOVE_SL: "d",
                  ActionType.MOVE_TP: "d"}.get(a.type, "o")
        lst = self._markers.setdefault(a.position_id, [])
        lst.append((ts, a.price, tip, symbol))
        lst.sort(key=lambda m: m[0])
        del lst[:-MAX_MARKERS]
        if a.position_id == self.position_id:
            self._refresh_markers()
        return True

    def marker_points(self) -> list[tuple[float, float, str]]:
        """The markers shown now as (x, y, tooltip) — for tests and accessibility."""
        pid = self.position_id
        return [(x, y, t) for x, y, t, _s in self._markers.get(pid, [])] if pid else []

    # -- pending commits (driven by the main window) -----------------------------------------
    def set_pending(self, kind: str, level: float, note: str = "pending…") -> None:
        """Draw `kind` at `level`, marked with `note`, until `resolve_pending`.

        Used while a dropped level waits for the trader's confirmation ("confirm?") or for
        the engine's answer ("pending…"); the line cannot be dragged meanwhile.
        """
        self._pending[kind] = level
        self._pending_note[kind] = note
        self._pending_since[kind] = self._snap.ts if self._snap is not None else 0.0
        self._update_levels()

    def resolve_pending(self, kind: str, ok: bool) -> None:
        """The outcome is known. Rejected: back to the engine's level. Accepted: the level
        stays until the engine's next snapshot shows it (unless one already arrived)."""
        level = self._pending.pop(kind, None)
        self._pending_note.pop(kind, None)
        since = self._pending_since.pop(kind, 0.0)
        fresher = self._snap is not None and self._snap.ts > since
        if ok and level is not None and not fresher:
            self._held[kind] = level
        self._notes.pop(kind, None)
        self._update_levels()

    def pending(self) -> dict[str, float]:
        return dict(self._pending)

    # -- drag plumbing (called by LevelLine) -------------------------------------------------
    def _context(self) -> DragContext | None:
        s = self._snap
        if s is None:
            return None
        p = s.position
        return DragContext(p.side, p.entry, p.qty, p.contract_size, p.fee_rate, p.initial_sl,
                           self.last_price(), self._market)

    def snap_level(self, y: float) -> float:
        if self._market is not None and self._market.tick_size > 0:
            return self._market.round_price(y)
        return y

    def _drag_started(self, line: LevelLine) -> None:
        self._drag_line = line
        app = QApplication.instance()
        if app is not None:
            app.installEventFilter(self)
        self.plot.setFocus()

    def _drag_moved(self, line: LevelLine, y: float) -> None:
        ctx = self._context()
        if ctx is None or not math.isfinite(y) or y <= 0:
            return
        level = self.snap_level(y)
        if not valid_price(level):
            return
        line.setValue(level)
        text = consequence(line.kind, level, ctx)
        if trigger_reason(line.kind, level, ctx):
            text += " · ✖ would trigger now"
        line.set_text(text)

    def _drag_finished(self, line: LevelLine) -> None:
        self._end_drag()
        ctx = self._context()
        level = line.value()
        pid = self.position_id
        if ctx is None or pid is None:
            self._update_levels()
            return
        reason = trigger_reason(line.kind, level, ctx)
        if reason is None and line.start_value is not None and level == line.start_value:
            self._update_levels()  # dropped where it was: nothing to do
            return
        if reason is not None:
            self._update_levels()
            self.dragRejected.emit(line.kind, reason)
            return
        self.levelDropped.emit(pid, line.kind, float(level))

    def _drag_cancelled(self, line: LevelLine) -> None:
        self._end_drag()
        self._update_levels()
        self.dragCancelled.emit(line.kind)

    def _end_drag(self) -> None:
        self._drag_line = None
        app = QApplication.instance()
        if app is not None:
            app.removeEventFilter(self)

    def eventFilter(self, obj: QObject, ev: QEvent) -> bool:
        """While a line is dragged, Esc anywhere in the app cancels the drag."""
        if (ev.type() == QEvent.Type.KeyPress and self._drag_line is not None
                and isinstance(ev, QKeyEvent) and ev.key() == Qt.Key.Key_Escape):
            self._drag_line.cancel_drag()
            return True
        return False

    # -- drawing -----------------------------------------------------------------------------
    def _style_lines(self) -> None:
        t = self._theme
        paused = self._snap is not None and not self._snap.position.automation
        colours = {"entry": t.entry, "sl": t.sl, "tp": t.tp, "trailing": t.trailing,
                   "liquidation": t.liquidation, "last": t.last}
        styles = {"entry": Qt.PenStyle.SolidLine, "sl": Qt.PenStyle.SolidLine,
                  "tp": Qt.PenStyle.SolidLine, "trailing": Qt.PenStyle.DashLine,
                  "liquidation": Qt.PenStyle.DashDotLine, "last": Qt.PenStyle.DotLine}
        for kind, line in self.lines.items():
            style = styles[kind]
            if kind in DRAGGABLE and (paused or kind in self._pending):
                style = Qt.PenStyle.DashLine  # paused automation or awaiting the engine
            width = 2 if kind in DRAGGABLE else 1
            line.setPen(pg.mkPen(colours[kind], width=width, style=style))
            line.setHoverPen(pg.mkPen(colours[kind], width=4, style=style))
            line.label.setColor(colours[kind])
            line.label.fill = pg.mkBrush(t.base + "cc") if len(t.base) == 7 else None
            line.label.update()

    def _update_levels(self) -> None:
        s = self._snap
        self._style_lines()
        if s is None:
            for line in self.lines.values():
                line.setVisible(False)
                line.set_draggable(False)
            return
        p = s.position
        levels = {"entry": p.entry, "sl": p.sl, "tp": p.tp, "trailing": p.trailing,
                  "liquidation": p.liquidation}
        levels.update(self._held)
        levels.update(self._pending)
        sl, trail = levels.get("sl"), levels.get("trailing")
        tol = self._market.tick_size / 2 if self._market is not None else 1e-9
        if valid_price(sl) and valid_price(trail) and abs(sl - trail) <= tol:  # type: ignore[operator]
            levels["trailing"] = None  # the SL *is* the trailing stop: one line, one label
        ctx = self._context()
        for kind, level in levels.items():
            line = self.lines[kind]
            if line.dragging:
                continue
            ok = valid_price(level)
            line.setVisible(ok)
            if kind in DRAGGABLE:
                line.set_draggable(ok and self.drag_enabled and kind not in self._pending)
            if not ok:
                continue
            assert level is not None
            line.setValue(level)
            if kind in DRAGGABLE and ctx is not None:
                text = consequence(kind, level, ctx)
            else:
                text = f"{LINE_TITLES[kind]} {fmt_price(level, self._market)}"
            if kind in self._pending:
                text += f" · {self._pending_note.get(kind, 'pending…')}"
            elif kind in self._notes:
                text += f" · ◆ {self._notes[kind]}"
            if kind in DRAGGABLE and not p.automation:
                text += " · ‖ paused"
            line.set_text(text)

    def _update_last(self) -> None:
        line = self.lines["last"]
        price = self.last_price()
        if price is None or not valid_price(price):
            line.setVisible(False)
            return
        line.setVisible(True)
        line.setValue(price)
        stale = self._snap is not None and self._snap.stale
        line.set_text(f"{fmt_price(price, self._market)}{' ⚠ stale' if stale else ''}")

    def _update_title(self) -> None:
        s = self._snap
        if s is None:
            self.title.setText("No position selected")
            return
        p = s.position
        arrow = "▲ LONG" if p.side is Side.LONG else "▼ SHORT"
        auto = "" if p.automation else "   ‖ automation paused"
        self.title.setText(
            f"{p.symbol}   {arrow} {fmt_qty(p.qty, self._market)} @ "
            f"{fmt_price(p.entry, self._market)}   {p.leverage:g}x   {p.preset}{auto}")

    def _refresh_markers(self) -> None:
        pid = self.position_id
        pts = self._markers.get(pid, []) if pid else []
        if not pts:
            self.markers.setData([], [])
            return
        self.markers.setData(
            x=[x for x, *_ in pts], y=[y for _x, y, *_ in pts],
            data=[t for _x, _y, t, _s in pts], symbol=[s for *_, s in pts],
            brush=pg.mkBrush(self._theme.marker), pen=pg.mkPen(self._theme.base))

    def _marker_tip(self, x: float, y: float, data: object) -> str:
        return str(data)

    def _now_ts(self, symbol: str) -> float:
        tick = self._last.get(symbol)
        if tick is not None:
            return tick.ts
        cs = self._candles.get(symbol)
        return cs[-1].ts if cs else 0.0
