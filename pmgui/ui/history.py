"""History: closed trades, their metrics and the equity curve, asked of the engine.

The UI never opens the store: it sends a `GetHistory` request and the engine answers with a
frozen `HistorySnapshot` (pmgui/engine/queries.py). The answer comes back to the GUI thread
through the CommandRunner's queued signal, like command results, so nothing here blocks.

A closed position corrected after it was booked (the engine's `PositionCorrected`: a fill
re-booked at the venue's price, the venue's fee for an estimate) is shown at once from the
event — its row and the day's realised P/L — and the metrics and equity curve (the store's
sums) are asked for again shortly after, once for a burst of corrections. An answer asked
for before a correction arrived may predate its commit: the correction is laid over it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QColor, QFontMetrics
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from pmgui.domain.enums import Side
from pmgui.domain.models import Position
from pmgui.domain.money import trade_r
from pmgui.engine.commands import ClosedTrade, GetHistory, HistorySnapshot
from pmgui.engine.events import PositionCorrected
from pmgui.ui.fmt import (
    DASH,
    MINUS,
    fmt_age,
    fmt_money,
    fmt_price,
    fmt_qty,
    fmt_r,
    is_num,
    step_decimals,
)
from pmgui.ui.theme import Theme, make_theme, tabular_font

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

CLOSED_COLUMNS = ("Closed", "Symbol", "Side", "Qty", "Entry", "Exit", "P/L", "R", "Reason",
                  "Held")


HistoryData = HistorySnapshot  # the engine's answer, shown as it is

Ask = Callable[[GetHistory, Callable[[object, str | None], None]], bool]

# a correction's metrics and equity curve are asked for this long after it (one request for
# a burst: a storm's closes are followed by their fees' true-ups, one correction each)
REQUERY_MS = 300


def metrics_text(m: Any, currency: str = "USDT") -> str:
    if m.count == 0:
        return "No closed trades yet"
    parts = [f"Trades {m.count} ({m.wins} won, {m.losses} lost)",
             f"Win rate {m.win_rate * 100:.0f}%",
             f"Avg R {fmt_r(m.avg_r)}",
             f"TP1 hit {_rate(m.tp1_hit_rate)}", f"TP2 hit {_rate(m.tp2_hit_rate)}",
             f"Avg hold {fmt_age(m.avg_hold_seconds)}",
             f"Breakeven {m.breakeven_count}", f"Trailing {m.trailing_count}",
             f"Add-ons {m.add_on_count}", f"Total P/L {fmt_money(m.total_pnl, currency)}"]
    return " · ".join(parts)


EQUITY_MIN_SPAN_S = 3600.0  # the equity curve's view shows at least an hour
EQUITY_MIN_BAND = 0.005  # and at least ±0.5 % of the equity around a flat curve
# points drawn at most: the engine keeps a point every 10 s (8,640 a day), all of them in
# each answer; a month of them took ~0.9 s of the GUI thread to sort and draw at every
# close. A curve this wide is more points than the plot has pixels: each stretch keeps its
# lowest and highest equity, so no drawdown or peak is smoothed away.
EQUITY_MAX_POINTS = 4000
EQUITY_AXIS_WIDTH = 58  # px: the equity axis at least (its labels of 10,000s fit)


def equity_points(rows: tuple[tuple[float, float], ...]) -> tuple[list[float], list[float]]:
    """Plottable (time, equity) points: finite, a real timestamp (an unset clock's 0 would
    stretch the time axis back to 1970), in time order; at most `EQUITY_MAX_POINTS`
    (`thin_points`). Vectorised: the answer may hold hundreds of thousands."""
    import numpy as np  # (here: not before the window's first frame)

    try:
        a = np.asarray(rows, dtype=float).reshape(-1, 2)
    except (TypeError, ValueError):  # not plain numbers: one by one
        a = np.array([(float(t), float(e)) for t, e in rows if is_num(t) and is_num(e)],
                     dtype=float).reshape(-1, 2)
    t, e = a[:, 0], a[:, 1]
    keep = np.isfinite(t) & np.isfinite(e) & (t > 0)
    t, e = t[keep], e[keep]
    if len(t) > 1 and bool(np.any(t[1:] < t[:-1])):
        order = np.lexsort((e, t))  # by time (then equity: as sorting the pairs did)
        t, e = t[order], e[order]
    t, e = thin_points(t, e, EQUITY_MAX_POINTS)
    return t.tolist(), e.tolist()


def thin_points(t: np.ndarray, e: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """At most `limit` of the points, in order: the first, the last, and of each of
    `limit // 2 - 1` runs of consecutive points its lowest and highest equity."""
    import numpy as np

    n = len(t)
    if n <= limit:
        return t, e
    runs = max(1, limit // 2 - 1)
    size = -(-n // runs)  # points per run (the last run may be shorter)
    full = n // size * size
    idx = [np.array([0, n - 1])]
    if full:
        block = e[:full].reshape(-1, size)
        base = np.arange(0, full, size)
        idx += [base + block.argmin(axis=1), base + block.argmax(axis=1)]
    if full < n:
        tail = e[full:]
        idx.append(np.array([full + int(tail.argmin()), full + int(tail.argmax())]))
    keep = np.unique(np.concatenate(idx))
    return t[keep], e[keep]


def _equity_axis() -> Any:
    """The equity axis, labelled as amounts are everywhere else: thousands separators,
    plain decimals (as many as the ticks' spacing needs), a real minus. pyqtgraph writes
    a label of 10,000 or more with `%g`: a $1.2M account's axis read "1.3e+06"."""
    import pyqtgraph as pg

    class EquityAxis(pg.AxisItem):
        def tickStrings(self, values: list[float], scale: float,
                        spacing: float) -> list[str]:
            if self.logMode or not (is_num(spacing) and spacing > 0 and is_num(scale)):
                return super().tickStrings(values, scale, spacing)
            d = step_decimals(spacing * scale, 10)
            out = []
            for v in values:
                vs = v * scale
                text = f"{vs:,.{d}f}" if is_num(vs) else ""
                if text.startswith("-"):  # a real minus; none for a value rounding to 0
                    text = text[1:] if float(text[1:].replace(",", "")) == 0 \
                        else MINUS + text[1:]
                out.append(text)
            return out

    return EquityAxis(orientation="left")


def _rate(v: float | None) -> str:
    return f"{v * 100:.0f}%" if is_num(v) else DASH


def local_midnight(now: float) -> float:
    """The start of `now`'s local day (what the engine's "today" counts from)."""
    return time.mktime((*time.localtime(now)[:3], 0, 0, 0, 0, 0, -1))


def with_corrections(data: HistorySnapshot, positions: Mapping[str, Position],
                     now: float) -> tuple[HistorySnapshot, list[int]]:
    """`data` with the corrected closed positions in place of their rows (their R again)
    and the day's realised P/L moved by their difference when they count in it (closed
    since local midnight, as the engine sums it); the rows that changed."""
    closed = list(data.closed)
    midnight = local_midnight(now)
    today = data.realized_today
    rows = []
    for i, trade in enumerate(closed):
        old = trade.position
        new = positions.get(old.id)  # type: ignore[attr-defined]
        if new is None or new == old:
            continue
        if is_num(old.closed_at) and old.closed_at >= midnight:  # type: ignore[attr-defined]
            today += new.realized_pnl - old.realized_pnl  # type: ignore[attr-defined]
        closed[i] = ClosedTrade(new, trade_r(new))
        rows.append(i)
    if not rows:
        return data, rows
    return replace(data, closed=tuple(closed), realized_today=today), rows


class HistoryPanel(QWidget):
    """Metrics line, closed-trades table and equity curve; `refresh()` reloads in the background."""

    loaded = Signal(object)  # HistoryData, in the GUI thread
    failed = Signal(str)
    _done = Signal(int, object, object)  # generation, data, error (cross-thread)

    def __init__(self, ask: Ask | None,
                 market_for: Callable[[str], object] | None = None,
                 theme: Theme | None = None, parent: QWidget | None = None, *,
                 wall_clock: Callable[[], float] = time.time) -> None:
        super().__init__(parent)
        self.setObjectName("history")
        self._ask = ask
        self._market_for = market_for or (lambda _s: None)
        self._theme = theme or make_theme("dark")
        self._wall = wall_clock
        self._generation = 0
        self._busy = False
        self.data: HistoryData | None = None
        self._done.connect(self._on_done)
        # corrections received, by position id, with the request generation current then:
        # an answer of that generation or older may predate them (laid over it, `_on_done`)
        self._corrections: dict[str, tuple[Position, int]] = {}
        self._again = False  # asked for again once the request in flight is answered
        self._day: float | None = None  # local midnight of the day the answer shown counts
        self._asked_day: float | None = None  # … of the request in flight
        self._requery = QTimer(self)
        self._requery.setSingleShot(True)
        self._requery.setInterval(REQUERY_MS)
        self._requery.timeout.connect(self._refresh_corrected)

        self.metrics_label = QLabel("No history loaded")
        self.metrics_label.setObjectName("metricsLabel")
        self.metrics_label.setWordWrap(True)
        self.metrics_label.setTextFormat(Qt.TextFormat.PlainText)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setObjectName("historyRefresh")
        self.refresh_button.clicked.connect(self.refresh)
        top = QHBoxLayout()
        top.addWidget(self.metrics_label, 1)
        top.addWidget(self.refresh_button)

        self.table = QTableWidget(0, len(CLOSED_COLUMNS))
        self.table.setObjectName("closedTrades")
        self.table.setAccessibleName("Closed trades, newest first")
        self.table.setHorizontalHeaderLabels(list(CLOSED_COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setDefaultSectionSize(22)
        for c, w in enumerate((84, 118, 72, 60, 78, 78, 80, 60, 110, 60)):
            self.table.setColumnWidth(c, w)

        # the equity curve (pyqtgraph) is built when first needed (the first history
        # answer), so the window's first frame does not wait for pyqtgraph
        self._equity_plot: Any = None
        self._equity_curve: Any = None
        split = QSplitter(Qt.Orientation.Vertical)
        split.setObjectName("historySplitter")
        split.addWidget(self.table)
        self._split = split
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addLayout(top)
        lay.addWidget(split, 1)
        self.set_theme(self._theme)

    def set_theme(self, theme: Theme) -> None:
        self._theme = theme
        if self._equity_plot is not None:
            self._style_equity(theme)
        if self.data is not None:
            self._fill_table(self.data)

    @property
    def equity_plot(self) -> Any:
        if self._equity_plot is None:
            self._build_equity()
        return self._equity_plot

    @property
    def equity_curve(self) -> Any:
        if self._equity_curve is None:
            self._build_equity()
        return self._equity_curve

    def _build_equity(self) -> None:
        import pyqtgraph as pg

        plot = pg.PlotWidget(axisItems={"bottom": pg.DateAxisItem(),
                                        "left": _equity_axis()})
        plot.setObjectName("equityCurve")
        plot.setAccessibleName("Equity curve")
        plot.setMenuEnabled(False)
        plot.hideButtons()
        plot.showGrid(x=True, y=True, alpha=0.15)
        self._equity_plot = plot
        self._equity_curve = plot.plot([], [])
        # room for "10,250"-wide labels: pyqtgraph leaves them out when they do not fit
        # (widened to the account's own figures in `_frame_equity`)
        plot.getPlotItem().getAxis("left").setWidth(EQUITY_AXIS_WIDTH)
        self._split.addWidget(plot)
        self._split.setStretchFactor(0, 3)
        self._split.setStretchFactor(1, 2)
        self._style_equity(self._theme)

    def _style_equity(self, theme: Theme) -> None:
        import pyqtgraph as pg

        self._equity_plot.setBackground(theme.base)
        self._equity_curve.setPen(pg.mkPen(theme.last, width=2))
        self._equity_curve.setSymbolPen(pg.mkPen(theme.last))
        self._equity_curve.setSymbolBrush(pg.mkBrush(theme.last))
        self._equity_curve.setSymbolSize(7)
        pi = self._equity_plot.getPlotItem()
        for name in ("bottom", "left"):  # readable on both themes, like the chart's axes
            ax = pi.getAxis(name)
            ax.setPen(pg.mkPen(theme.muted))
            ax.setTextPen(pg.mkPen(theme.text))

    def refresh(self) -> bool:
        """Ask the engine for the history; False when there is no engine (or one is running)."""
        if self._ask is None:
            self.metrics_label.setText("No engine: history is not available in this mode")
            return False
        if self._busy:
            return False
        self._busy = True
        self._asked_day = local_midnight(self._wall())
        self._generation += 1
        gen = self._generation
        sent = self._ask(GetHistory(), lambda data, err, g=gen: self._on_done(g, data, err))
        if not sent:
            self._busy = False
        return sent

    def on_position_corrected(self, ev: PositionCorrected) -> None:
        """A closed position's booking corrected: its row and the day's realised P/L now,
        from the event (`loaded` tells the account panel); the metrics and the equity
        curve asked for again after `REQUERY_MS`."""
        pos = ev.position
        self._corrections[pos.id] = (pos, self._generation)
        if self.data is not None:
            data, rows = with_corrections(self.data, {pos.id: pos}, self._wall())
            if rows:
                self.data = data
                for row in rows:
                    self._fill_row(row, data.closed[row])
                self.loaded.emit(data)
        self.refresh_soon()

    def refresh_soon(self) -> None:
        """Ask for the history again after `REQUERY_MS` (once for all asked meanwhile), or,
        while an answer is on its way (it may predate what made this necessary), once it is
        answered: a correction's metrics, the events a remote window's resync left out."""
        if self._ask is not None and not self._requery.isActive():
            self._requery.start()

    def check_day(self) -> None:
        """Once a second (the window's status timer): past local midnight, the day's
        realised P/L shown is yesterday's (an answer counts the closes since the midnight
        of when it was made), so the history is asked for again — once, at the new day."""
        if self._day is None or self._ask is None:
            return
        day = local_midnight(self._wall())
        if day != self._day:
            self._day = day
            self.refresh_soon()

    def _refresh_corrected(self) -> None:
        if not self.refresh() and self._busy:
            self._again = True  # the answer on its way may predate the correction

    def _on_done(self, gen: int, data: object, err: object) -> None:
        self._busy = False
        if gen != self._generation:
            return
        if self._again:
            self._again = False
            self._requery.start()
        # the corrections this answer may predate (received while it was asked for) are
        # laid over it; the older ones it holds
        self._corrections = {pid: c for pid, c in self._corrections.items() if c[1] >= gen}
        if isinstance(data, HistorySnapshot) and self._corrections:
            data = with_corrections(data, {pid: c[0] for pid, c in self._corrections.items()},
                                    self._wall())[0]
        if err is not None:
            self.metrics_label.setText(f"⚠ {err}")
            self.failed.emit(str(err))
            return
        if not isinstance(data, HistorySnapshot):
            self.metrics_label.setText("⚠ the engine gave no history")
            self.failed.emit("the engine gave no history")
            return
        self.data = data
        self._day = self._asked_day  # (asked before midnight, answered after: asked again)
        self.metrics_label.setText(metrics_text(data.metrics))
        self._fill_table(data)
        xs, ys = equity_points(data.equity)
        self.equity_curve.setData(xs, ys)
        self._frame_equity(xs, ys)
        self.loaded.emit(data)

    def _frame_equity(self, xs: list[float], ys: list[float]) -> None:
        """The curve's view: its points, with at least `EQUITY_MIN_SPAN_S` of time and a
        band of equity around a flat curve. A new account has one point (or a few in the
        same minute, at the same equity): left to the auto range, the time axis read in
        hundredths of a second and the equity axis in tenths of a unit around it."""
        plot = self.equity_plot
        # a single point draws no line: a dot then, or a new account's curve looks empty
        self.equity_curve.setSymbol("o" if len(xs) == 1 else None)
        if not xs:
            plot.enableAutoRange()
            return
        x_hi = xs[-1]
        x_lo = min(xs[0], x_hi - EQUITY_MIN_SPAN_S)
        y_lo, y_hi = min(ys), max(ys)
        pad = max(abs(y_hi) * EQUITY_MIN_BAND, 1.0)
        if y_hi - y_lo < pad:
            mid = (y_lo + y_hi) / 2
            y_lo, y_hi = mid - pad, mid + pad
        plot.setRange(xRange=(x_lo, x_hi), yRange=(y_lo, y_hi), padding=0.02)
        # wide enough for the widest label this range gives ("1,240,000" is wider than
        # the designed "10,250"): pyqtgraph leaves out a label that does not fit
        axis = plot.getPlotItem().getAxis("left")
        step = (y_hi - y_lo) / 8
        texts = axis.tickStrings([y_lo, y_hi, -abs(y_lo)], 1.0, step)
        fm = QFontMetrics(axis.style.get("tickFont") or axis.font())
        need = max(fm.horizontalAdvance(t) for t in texts) + 14 if texts else 0
        if max(EQUITY_AXIS_WIDTH, need) != axis.width():
            axis.setWidth(max(EQUITY_AXIS_WIDTH, need))

    def _fill_table(self, data: HistoryData) -> None:
        self.table.setRowCount(len(data.closed))
        font = tabular_font()
        for row, trade in enumerate(data.closed):
            self._fill_row(row, trade, font)

    def _fill_row(self, row: int, trade: ClosedTrade, font: Any = None) -> None:
        t = self._theme
        font = font or tabular_font()
        p: Any = trade.position
        market = self._market_for(p.symbol)
        held = (p.closed_at - p.opened_at) if p.closed_at is not None else None
        when = (time.strftime("%m-%d %H:%M", time.localtime(p.closed_at))
                if is_num(p.closed_at) else DASH)
        cells = (when, p.symbol, "▲ LONG" if p.side is Side.LONG else "▼ SHORT",
                 fmt_qty(p.initial_qty, market), fmt_price(p.entry, market),  # type: ignore[arg-type]
                 fmt_price(p.exit_price, market), fmt_money(p.realized_pnl),  # type: ignore[arg-type]
                 fmt_r(trade.r), p.exit_reason or DASH, fmt_age(held))
        for c, text in enumerate(cells):
            item = QTableWidgetItem(text)
            if c in (3, 4, 5, 6, 7, 9):
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight
                                      | Qt.AlignmentFlag.AlignVCenter)
                item.setFont(font)
            if c == 6 and is_num(p.realized_pnl) and p.realized_pnl != 0:
                item.setForeground(QColor(t.up if p.realized_pnl > 0 else t.down))
            self.table.setItem(row, c, item)

    def shutdown(self) -> None:
        self._ask = None  # answers still on their way are shown nowhere
        self._requery.stop()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.shutdown()
        super().closeEvent(event)

