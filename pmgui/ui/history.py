"""History: closed trades, their metrics and the equity curve, asked of the engine.

The UI never opens the store: it sends a `GetHistory` request and the engine answers with a
frozen `HistorySnapshot` (pmgui/engine/queries.py). The answer comes back to the GUI thread
through the CommandRunner's queued signal, like command results, so nothing here blocks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QCloseEvent, QColor
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
from pmgui.engine.commands import GetHistory, HistorySnapshot
from pmgui.ui.fmt import DASH, fmt_age, fmt_money, fmt_price, fmt_qty, fmt_r, is_num
from pmgui.ui.theme import Theme, make_theme, tabular_font

log = logging.getLogger(__name__)

CLOSED_COLUMNS = ("Closed", "Symbol", "Side", "Qty", "Entry", "Exit", "P/L", "R", "Reason",
                  "Held")


HistoryData = HistorySnapshot  # the engine's answer, shown as it is

Ask = Callable[[GetHistory, Callable[[object, str | None], None]], bool]


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


def equity_points(rows: tuple[tuple[float, float], ...]) -> tuple[list[float], list[float]]:
    """Plottable (time, equity) points: finite, a real timestamp (an unset clock's 0 would
    stretch the time axis back to 1970), in time order."""
    pts = sorted((float(t), float(e)) for t, e in rows
                 if is_num(t) and is_num(e) and t > 0)
    return [t for t, _e in pts], [e for _t, e in pts]


def _rate(v: float | None) -> str:
    return f"{v * 100:.0f}%" if is_num(v) else DASH


class HistoryPanel(QWidget):
    """Metrics line, closed-trades table and equity curve; `refresh()` reloads in the background."""

    loaded = Signal(object)  # HistoryData, in the GUI thread
    failed = Signal(str)
    _done = Signal(int, object, object)  # generation, data, error (cross-thread)

    def __init__(self, ask: Ask | None,
                 market_for: Callable[[str], object] | None = None,
                 theme: Theme | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("history")
        self._ask = ask
        self._market_for = market_for or (lambda _s: None)
        self._theme = theme or make_theme("dark")
        self._generation = 0
        self._busy = False
        self.data: HistoryData | None = None
        self._done.connect(self._on_done)

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

        plot = pg.PlotWidget(axisItems={"bottom": pg.DateAxisItem()})
        plot.setObjectName("equityCurve")
        plot.setAccessibleName("Equity curve")
        plot.setMenuEnabled(False)
        plot.hideButtons()
        plot.showGrid(x=True, y=True, alpha=0.15)
        self._equity_plot = plot
        self._equity_curve = plot.plot([], [])
        # room for "10,250"-wide labels: pyqtgraph leaves them out when they do not fit
        plot.getPlotItem().getAxis("left").setWidth(58)
        self._split.addWidget(plot)
        self._split.setStretchFactor(0, 3)
        self._split.setStretchFactor(1, 2)
        self._style_equity(self._theme)

    def _style_equity(self, theme: Theme) -> None:
        import pyqtgraph as pg

        self._equity_plot.setBackground(theme.base)
        self._equity_curve.setPen(pg.mkPen(theme.last, width=2))
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
        self._generation += 1
        gen = self._generation
        sent = self._ask(GetHistory(), lambda data, err, g=gen: self._on_done(g, data, err))
        if not sent:
            self._busy = False
        return sent

    def _on_done(self, gen: int, data: object, err: object) -> None:
        self._busy = False
        if gen != self._generation:
            return
        if err is not None:
            self.metrics_label.setText(f"⚠ {err}")
            self.failed.emit(str(err))
            return
        if not isinstance(data, HistorySnapshot):
            self.metrics_label.setText("⚠ the engine gave no history")
            self.failed.emit("the engine gave no history")
            return
        self.data = data
        self.metrics_label.setText(metrics_text(data.metrics))
        self._fill_table(data)
        xs, ys = equity_points(data.equity)
        self.equity_curve.setData(xs, ys)
        self.equity_plot.enableAutoRange()
        self.loaded.emit(data)

    def _fill_table(self, data: HistoryData) -> None:
        t = self._theme
        self.table.setRowCount(len(data.closed))
        font = tabular_font()
        for row, trade in enumerate(data.closed):
            p, r = trade.position, trade.r
            market = self._market_for(p.symbol)
            held = (p.closed_at - p.opened_at) if p.closed_at is not None else None
            when = (time.strftime("%m-%d %H:%M", time.localtime(p.closed_at))
                    if is_num(p.closed_at) else DASH)
            cells = (when, p.symbol, "▲ LONG" if p.side is Side.LONG else "▼ SHORT",
                     fmt_qty(p.initial_qty, market), fmt_price(p.entry, market),  # type: ignore[arg-type]
                     fmt_price(p.exit_price, market), fmt_money(p.realized_pnl),  # type: ignore[arg-type]
                     fmt_r(r), p.exit_reason or DASH, fmt_age(held))
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

    def closeEvent(self, event: QCloseEvent) -> None:
        self.shutdown()
        super().closeEvent(event)

