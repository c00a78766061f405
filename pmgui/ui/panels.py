"""Panels that subscribe to the bridge themselves (vn.py's BaseMonitor idea).

Each panel declares what it shows and connects to the Bridge signals it needs; the main
window only assembles them into docks and menus and wires the few cross-panel links
(selection → chart, history → action log and account). No panel computes trading state:
everything shown comes from the newest engine snapshot (see figures.py for the derived
numbers).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from itertools import islice

from PySide6.QtCore import (
    QItemSelectionModel,
    QModelIndex,
    QObject,
    QPoint,
    QRect,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QAccessible, QAction, QFontMetrics
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QPushButton,
    QSizePolicy,
    QStatusBar,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from pmgui.domain.enums import OrderRole, OrderStatus
from pmgui.domain.models import Market, Order
from pmgui.engine.commands import HistorySnapshot
from pmgui.engine.events import (
    AccountEvent,
    ConnectionEvent,
    OrderSnapshot,
    PositionRemoved,
    PositionSnapshot,
    TickEvent,
)
from pmgui.ui.bridge import Bridge
from pmgui.ui.figures import account_of, account_terms
from pmgui.ui.flow import FlowLayout
from pmgui.ui.fmt import fmt_age, fmt_money, fmt_pct, fmt_price, fmt_qty, is_num
from pmgui.ui.positions_model import (
    ESSENTIAL,
    ID_ROLE,
    PositionsModel,
    PositionsProxy,
    fmt_amount,
)
from pmgui.ui.theme import Theme, tabular_font

MarketFor = Callable[[str], Market | None]
ACCOUNT_MS = 400  # the account's sums over all positions: at most ~2.5 times a second
# positions whose account terms one turn recomputes (the rest on the next turns): in the GUI
# storm (500 positions, nearly all changed between two sums) the sums were one stretch of
# ~1.5 ms of GUI CPU, ~1.25 ms of it the terms
ACCOUNT_SLICE = 128
VISIBLE_MARGIN = 1  # rows above and below the view written with the rows on screen

# width of each column (px at 96 dpi; scaled with the font on high-DPI screens)
CELL_PAD = 14  # a cell's text margins and focus frame, in pixels
WIDE_CHARS = "0123456789,.+\u2212-$%R×▲▼●—MW"  # at least as wide as any character of a value
WIDTHS = {"symbol": 120, "side": 76, "qty": 66, "entry": 84, "mark": 84, "pnl": 86,
          "roi": 68, "r": 60, "sl": 84, "tp": 84, "trailing": 84, "liquidation": 84,
          "liq_dist": 66, "notional": 92, "margin": 84, "leverage": 50, "mode": 70,
          "preset": 110, "protection": 104, "age": 64}


# -- positions ---------------------------------------------------------------------------------


class PositionsTable(QTableView):
    """The positions view, repainting only the cells a change names.

    Qt repaints the whole viewport for a `dataChanged` over more than one cell; in a storm
    every row changes at each flush, but only in the columns that follow the price, and
    painting cells is most of the GUI thread's work then. This view repaints the rectangle of
    the named columns over the visible rows instead (the proxy still gets every change, so
    live sorting is unaffected; with an accessibility client, Qt's own handling runs)."""

    def dataChanged(self, top_left: QModelIndex, bottom_right: QModelIndex,
                    roles: list[int] | None = None) -> None:
        if (top_left == bottom_right or not top_left.isValid() or not bottom_right.isValid()
                or QAccessible.isActive()):
            super().dataChanged(top_left, bottom_right, roles or [])
            return
        vp = self.viewport()
        first = self.rowAt(0)
        last = self.rowAt(vp.height() - 1)
        if first < 0:
            return  # nothing visible
        if last < 0:
            last = self.model().rowCount() - 1
        r0, r1 = max(top_left.row(), first), min(bottom_right.row(), last)
        if r0 > r1:
            return
        src = self.source
        shown = src.shown_changes if src is not None else None
        if shown is not None:
            if shown is not self._repainted:  # (one update: one or more blocks signalled)
                self._repainted = shown
                self._repaint_shown(shown, first, last)
            return
        xs = [(self.columnViewportPosition(c), self.columnWidth(c))
              for c in range(top_left.column(), bottom_right.column() + 1)
              if not self.isColumnHidden(c)]
        if not xs:
            return
        x0 = min(x for x, _w in xs)
        x1 = max(x + w for x, w in xs)
        y0 = self.rowViewportPosition(r0)
        y1 = self.rowViewportPosition(r1) + self.rowHeight(r1)
        vp.update(QRect(x0, y0, x1 - x0, y1 - y0))

    def _repaint_shown(self, shown: dict[int, int], r0: int, r1: int) -> None:
        """Repaint, of the rows r0..r1 on screen, only the cells whose text or colour the
        model's update changed (`PositionsModel.shown_changes`), all at the first block the
        update signals: in a storm about half the rows on screen change at each flush, and
        of those mostly the price and the P/L."""
        if not shown:
            return
        proxy = self.model()
        to_source = proxy.mapToSource if isinstance(proxy, QSortFilterProxyModel) else None
        vp = self.viewport()
        for r in range(r0, r1 + 1):
            s = to_source(proxy.index(r, 0)).row() if to_source is not None else r
            mask = shown.get(s, 0)
            if not mask:
                continue
            y, h = self.rowViewportPosition(r), self.rowHeight(r)
            c = 0
            while mask:
                if mask & 1 and not self.isColumnHidden(c):
                    vp.update(QRect(self.columnViewportPosition(c), y, self.columnWidth(c), h))
                mask >>= 1
                c += 1

    # the model the proxy shows (its `shown_changes` names the cells to repaint)
    source: PositionsModel | None = None
    _repainted: object = None  # the `shown_changes` repainted last

    # rows come into view: their cells are written first (PositionsModel.refresh_rows)
    view_changed: Callable[[], None] | None = None

    # the viewport's width changes: the columns are fitted to it (PositionsPanel.fit_width).
    # Told from the view's own resize, the viewport laid out by then (its width changes with
    # the view's alone: the vertical scroll bar is always shown), not from a `viewportEvent`
    # override, which Qt would call into Python for each of the viewport's events
    width_changed: Callable[[int], None] | None = None

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self.width_changed is not None:
            self.width_changed(self.viewport().width())
        if self.view_changed is not None:
            self.view_changed()

    def showEvent(self, event) -> None:
        if self.view_changed is not None:
            self.view_changed()
        super().showEvent(event)


class PositionsPanel(QWidget):
    """The open positions table: sorting that can be held still, a column chooser, and a
    selection that only the trader moves (a closed position leaves nothing selected)."""

    currentChanged = Signal(object)  # position id or None

    def __init__(self, bridge: Bridge, market_for: MarketFor, theme: Theme,
                 clock: Callable[[], float] = time.time, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("positionsPanel")
        self._market_for = market_for
        self._theme = theme
        self._orders: dict[str, dict[str, Order]] = {}  # position id → live SL/TP orders
        self._removing: str | None = None  # the selected id whose row is being removed
        self.model = PositionsModel(market_for, theme=theme, clock=clock)
        # before the proxy connects: know a selected row is going *before* the view moves
        # the current index to its neighbour
        self.model.rowsAboutToBeRemoved.connect(self._before_remove)
        self.proxy = PositionsProxy(self)
        self.proxy.setSourceModel(self.model)
        t = self.table = PositionsTable()
        t.setObjectName("positionsTable")
        t.setAccessibleName("Open positions")
        t.setModel(self.proxy)
        t.source = self.model
        # the model writes the rows on screen at each update, the others when they come into
        # view (scrolling, resizing, re-sorting, rows removed above)
        self.model.visible = self._visible_rows
        t.view_changed = self._refresh_visible
        t.width_changed = self.fit_width
        t.verticalScrollBar().valueChanged.connect(self._refresh_visible)
        self.proxy.layoutChanged.connect(self._refresh_visible)
        self.proxy.rowsRemoved.connect(self._refresh_visible)
        t.setSortingEnabled(True)
        t.sortByColumn(-1, Qt.SortOrder.AscendingOrder)  # keep insertion order
        t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        t.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        t.setAlternatingRowColors(True)
        t.verticalHeader().setVisible(False)
        t.verticalHeader().setDefaultSectionSize(24)
        t.setWordWrap(False)
        t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        # the scroll bar's room is kept whatever the rows: the columns fitted to the width
        # stay put when the book grows past a screenful (before, its bar then took 14 px of a
        # width the columns had been fitted to: a bar to scroll sideways by 2 px appeared and
        # the last column shrank, a repaint of its own)
        t.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOn)
        hdr = t.horizontalHeader()
        hdr.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        hdr.setStretchLastSection(True)
        hdr.setHighlightSections(False)
        hdr.setSectionsMovable(True)
        hdr.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        hdr.customContextMenuRequested.connect(self._header_menu)
        self._value_need: dict[int, int] = {}  # column → width its widest value needed
        self._metrics: dict[int, QFontMetrics] = {}  # column → its font's metrics
        self._widest: dict[int, int] = {}  # column → advance of its widest WIDE_CHARS
        self.size_columns()
        for c, col in enumerate(self.model.columns):
            t.setColumnHidden(c, not col.default)

        self.hold_button = QToolButton()
        self.hold_button.setObjectName("holdOrder")
        self.hold_button.setCheckable(True)
        self.hold_button.setText("Hold row order")
        self.hold_button.setToolTip("Stop re-sorting rows while values change (the sort "
                                    "column is kept; click again to re-sort live)")
        self.hold_button.toggled.connect(self.hold_order)
        self.columns_button = QToolButton()
        self.columns_button.setObjectName("chooseColumns")
        self.columns_button.setText("Columns ▾")
        self.columns_button.setToolTip("Choose the columns shown (also: right-click a header)")
        self.columns_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.columns_menu = QMenu(self)
        self.columns_menu.setObjectName("columnsMenu")
        self.columns_menu.aboutToShow.connect(self._fill_columns_menu)
        self.columns_button.setMenu(self.columns_menu)
        self.account = AccountPanel(bridge, market_for, theme)
        bar = QHBoxLayout()
        bar.setContentsMargins(4, 2, 4, 2)
        bar.addWidget(self.account, 1)
        bar.addWidget(self.hold_button)
        bar.addWidget(self.columns_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addLayout(bar)
        lay.addWidget(t, 1)

        t.selectionModel().currentRowChanged.connect(self._current_changed)
        self.model.rowsInserted.connect(self._select_first_if_none)
        self.model.rowsInserted.connect(
            lambda _p, first, last: self.fit_values(range(first, min(last, first + 63) + 1)))
        self.model.rowsRemoved.connect(self._after_remove)
        bridge.positionsChanged.connect(self.on_positions)
        bridge.positionRemoved.connect(self.on_position_removed)
        bridge.orderChanged.connect(self.on_order)
        # the view is told of a table flush on the turn after it (the flush's Python work,
        # then the repaint of the cells it changed, each a stretch of its own: in a storm
        # each is several ms of GUI CPU, and a stretch that held both was the GUI storm's
        # longest stall); ahead of the jobs waiting, as the flush itself. A `flush_now`
        # (start-up, a screenshot) tells it at once.
        turns = bridge.turns
        self.model.signal_later = lambda send: turns.later(
            ("table-paint", id(self)), send, owner=self, first=True)
        # and a flush of every row is applied a slice per turn (PositionsModel.apply_later):
        # the table's share of the turn the flush came in, then the rest, ahead of the jobs
        # waiting, each slice told to the view (and repainted) before the next one
        self.model.apply_later = lambda apply: turns.later(
            ("table-rest", id(self)), apply, owner=self, first=True)
        # the price of the rows left for later slices on the turn after the first slice,
        # ahead of the view being told of both (PositionsModel.marks_later)
        self.model.marks_later = lambda write: turns.later(
            ("table-marks", id(self)), write, owner=self, first=True)
        bridge.flushed.connect(self.model.finish)

    def _visible_rows(self) -> list[int] | None:
        """The source rows on screen (with a margin); None: the view shows nothing yet, so
        every row is written at once."""
        t = self.table
        if not t.isVisible():
            return None
        p = self.proxy
        n = p.rowCount()
        first = t.rowAt(0)
        if n == 0 or first < 0:
            return None
        last = t.rowAt(t.viewport().height() - 1)
        if last < 0:
            last = n - 1
        lo, hi = max(0, first - VISIBLE_MARGIN), min(n - 1, last + VISIBLE_MARGIN)
        return [p.mapToSource(p.index(r, 0)).row() for r in range(lo, hi + 1)]

    def _refresh_visible(self, *_a: object) -> None:
        self.model.refresh_rows(self._visible_rows())

    # -- events -------------------------------------------------------------------------------
    def on_positions(self, snaps: list[PositionSnapshot]) -> None:
        self.model.update(snaps)

    def on_position_removed(self, ev: PositionRemoved) -> None:
        self.model.remove(ev.position.id)
        self._orders.pop(ev.position.id, None)

    def on_order(self, ev: OrderSnapshot) -> None:
        """Keep each position's live protective orders, shown on its protection badge."""
        o = ev.order
        if o.position_id is None:
            return
        live = not o.status.is_final and o.role in (OrderRole.STOP_LOSS, OrderRole.TAKE_PROFIT)
        orders = self._orders.get(o.position_id)
        if orders is None:
            if not live:
                # nothing held for it: most often a closed position's stops, cancelled after
                # it left (removals are handed on at once, orders at the table's rate) —
                # kept, they were an entry here and a text in the model per trade closed
                return
            orders = self._orders[o.position_id] = {}
        if live:
            orders[o.client_id] = o
        else:
            orders.pop(o.client_id, None)
        market = self._market_for(o.symbol)
        lines = []
        for x in sorted(orders.values(), key=lambda x: x.role.value):
            name = "SL" if x.role is OrderRole.STOP_LOSS else "TP"
            state = "on exchange" if x.status is OrderStatus.OPEN else x.status.value
            tranches = (x.reason or "").partition(" tranches=")[2]
            which = f" · tranches {tranches.replace(',', ', ')}" if tranches else ""
            ref = f" · triggers on {x.trigger_ref} price" if x.trigger_ref else ""
            lines.append(f"{name} {x.type.value} {fmt_qty(x.amount, market)} @ "
                         f"{fmt_price(x.trigger_price or x.price, market)} · {state}{which}"
                         f"{ref}")
        self.model.set_protection_detail(
            o.position_id, "\n".join(lines) if lines else "no protective orders on the exchange")

    # -- selection ----------------------------------------------------------------------------
    def selected_id(self) -> str | None:
        idx = self.table.currentIndex()
        return self.proxy.data(idx, ID_ROLE) if idx.isValid() else None

    def select(self, position_id: str | None) -> bool:
        sm = self.table.selectionModel()
        if position_id is None:
            sm.clear()
            self.table.setCurrentIndex(QModelIndex())
            return True
        row = self.model.row_of(position_id)
        if row is None:
            return False
        pidx = self.proxy.mapFromSource(self.model.index(row, 0))
        sm.setCurrentIndex(pidx, QItemSelectionModel.SelectionFlag.ClearAndSelect
                           | QItemSelectionModel.SelectionFlag.Rows)
        return True

    def _select_first_if_none(self, *_a: object) -> None:
        """Only when nothing was ever chosen (start-up): never a jump to another row."""
        if self.table.currentIndex().isValid() or self.proxy.rowCount() == 0:
            return
        if getattr(self, "_chosen", False):
            return
        first = self.proxy.index(0, 0)
        self.table.selectionModel().setCurrentIndex(
            first, QItemSelectionModel.SelectionFlag.ClearAndSelect
            | QItemSelectionModel.SelectionFlag.Rows)

    def _before_remove(self, _parent: QModelIndex, first: int, last: int) -> None:
        sel = self.selected_id()
        ids = self.model.position_ids()[first:last + 1]
        self._removing = sel if sel in ids else None

    def _after_remove(self, *_a: object) -> None:
        if self._removing is not None:
            # Qt moves the current index to a neighbour: undo that, the selection was closed
            self._removing = None
            self.table.selectionModel().blockSignals(True)
            self.select(None)
            self.table.selectionModel().blockSignals(False)
            self.currentChanged.emit(None)

    def _current_changed(self, current: QModelIndex, _prev: QModelIndex) -> None:
        if self._removing is not None:
            return  # the neighbour Qt picks while removing the selected row
        if current.isValid():
            self._chosen = True
        self.currentChanged.emit(self.selected_id())

    # -- sorting and columns ------------------------------------------------------------------
    def hold_order(self, held: bool) -> None:
        """Hold the rows where they are (values keep updating) or re-sort live again."""
        self.proxy.setDynamicSortFilter(not held)
        if self.hold_button.isChecked() != held:
            self.hold_button.setChecked(held)
        self.hold_button.setText("Re-sort live" if held else "Hold row order")
        if not held:
            self.proxy.invalidate()

    @property
    def order_held(self) -> bool:
        return not self.proxy.dynamicSortFilter()

    def size_columns(self) -> None:
        for c in range(len(self.model.columns)):
            self.table.setColumnWidth(c, self._designed(c))

    def fit_values(self, rows: Iterable[int] | None = None) -> bool:
        """Widen the columns whose value would be cut: a price of 100,000.12345 shown as
        "100,000.1…", a quantity of 123,456,789 as "123,456…" — a number cut at its end
        reads as another number, so it is shown whole (the table scrolls sideways when the
        window is too narrow, as for any column). `rows` are source rows (default: those on
        screen); called for rows added and once a second, never per tick. A column grows only
        past the widest value seen so far, so a column the trader narrowed stays as set
        until a wider value comes. True if a column grew."""
        model = self.model
        if rows is None:
            rows = self._visible_rows() or range(min(model.rowCount(), 64))
        n_rows, n_cols = model.rowCount(), model.columnCount()
        if not n_rows:
            return False
        metrics, wide = self._metrics, self._widest
        if len(metrics) != n_cols:  # each column's font is fixed (set when a row is added)
            metrics.clear()
            metrics.update((c, QFontMetrics(model.item(0, c).font())) for c in range(n_cols))
            wide.clear()
            wide.update((c, max(1, *(metrics[c].horizontalAdvance(ch) for ch in WIDE_CHARS)))
                        for c in range(n_cols))
        # the width a column's values may reach; a text of no more characters than fit in it
        # at the widest character a cell shows fits (most cells: no measuring)
        scale = self._scale()
        room = [max(self._value_need.get(c, 0), round(WIDTHS.get(col.key, 90) * scale))
                - CELL_PAD for c, col in enumerate(model.columns)]
        sure = [room[c] // wide[c] for c in range(n_cols)]
        grew = []
        for r in rows:
            if not 0 <= r < n_rows:
                continue
            for c, text in enumerate(model.row_texts(r)):
                if text is None or len(text) <= sure[c]:
                    continue
                width = metrics[c].horizontalAdvance(text)
                if width > room[c]:
                    room[c] = width
                    self._value_need[c] = width + CELL_PAD
                    grew.append(c)
        if not grew:
            return False
        for c in set(grew):
            if not self.table.isColumnHidden(c) and self.table.columnWidth(c) < self._designed(c):
                self.table.setColumnWidth(c, self._designed(c))
        self.fit_width(self.table.viewport().width())
        return True

    def set_column_visible(self, key: str, visible: bool) -> None:
        c = [col.key for col in self.model.columns].index(key)
        self.table.setColumnHidden(c, not visible)
        getattr(self, "_auto_hidden", set()).discard(key)  # the trader's choice wins

    def visible_columns(self) -> list[str]:
        return [col.key for c, col in enumerate(self.model.columns)
                if not self.table.isColumnHidden(c)]

    def header_need(self, c: int) -> int:
        """Width a header label needs to be read whole (with the sort arrow's room)."""
        hdr = self.table.horizontalHeader()
        title = str(self.model.headerData(c, Qt.Orientation.Horizontal))
        arrow = 18 if hdr.sortIndicatorSection() == c else 0
        return hdr.fontMetrics().horizontalAdvance(title) + 14 + arrow

    def _scale(self) -> float:
        return max(1.0, self.table.fontMetrics().height() / 16.0)  # high-DPI / large fonts

    def _designed_base(self, c: int) -> int:
        return round(WIDTHS.get(self.model.columns[c].key, 90) * self._scale())

    def _designed(self, c: int) -> int:
        """The column's width: as designed, or what its widest value needs (`fit_values`)."""
        return max(self._designed_base(c), self._value_need.get(c, 0))

    def fit_width(self, width: int) -> None:
        """Any width: the designed column widths when they fit; when narrow, first the
        columns that matter (the rest go to the chooser, and come back when there is room
        again), then compact widths that still show every header and value whole."""
        if width <= 0:
            return
        cols = self.model.columns
        keys = [col.key for col in cols]
        hidden_by_me: set[str] = getattr(self, "_auto_hidden", set())
        self._auto_hidden = hidden_by_me
        shown = [c for c in range(len(cols)) if not self.table.isColumnHidden(c)]
        # the last column is stretched to the table's edge: what it needs is its own width
        # (counted stretched, a widened window never had room to bring anything back)
        hdr = self.table.horizontalHeader()
        last = max(shown, key=hdr.visualIndex) if shown else -1
        need = sum(min(self.table.columnWidth(c), self._designed(c)) if c == last
                   else self.table.columnWidth(c) for c in shown)
        for c in range(len(cols)):  # room again: bring back what we hid, in column order
            if keys[c] in hidden_by_me and need + self._designed(c) <= width:
                self.table.setColumnHidden(c, False)
                self.table.setColumnWidth(c, self._designed(c))
                hidden_by_me.discard(keys[c])
                need += self._designed(c)
                shown.append(c)
        if need <= width:
            return
        for c in shown:  # too wide: designed widths first (a narrowed window starts over)
            self.table.setColumnWidth(c, self._designed(c))
        need = sum(self._designed(c) for c in shown)
        for c in reversed(range(len(cols))):
            if need <= width:
                break
            if c in shown and keys[c] not in ESSENTIAL:
                self.table.setColumnHidden(c, True)
                hidden_by_me.add(keys[c])
                need -= self._designed(c)
                shown.remove(c)
        # still too wide (a very small window): the table scrolls sideways; nothing is cut

    def _fill_columns_menu(self) -> None:
        menu = self.columns_menu
        menu.clear()
        for c, col in enumerate(self.model.columns):
            a = QAction(col.title, menu)
            a.setObjectName(f"column_{col.key}")
            a.setCheckable(True)
            a.setChecked(not self.table.isColumnHidden(c))
            a.setEnabled(col.key != "symbol")
            a.toggled.connect(lambda on, k=col.key: self.set_column_visible(k, on))
            menu.addAction(a)

    def _header_menu(self, pos: QPoint) -> None:
        self._fill_columns_menu()
        self.columns_menu.popup(self.table.horizontalHeader().mapToGlobal(pos))

    def set_theme(self, theme: Theme) -> None:
        self._theme = theme
        self.model.set_theme(theme)
        self.account.set_theme(theme)


# -- account -----------------------------------------------------------------------------------
class AccountPanel(QWidget):
    """Wallet, unrealized P/L, equity, margin, available, margin ratio, today's realized P/L
    and funding: recomputed with every positions update (the wallet with each account
    event), so the equity moves with the P/L column, not every 10 s."""

    FIELDS = (("equity", "Equity", "Wallet balance plus the net unrealized P/L"),
              ("wallet", "Wallet", "Wallet balance: deposits plus realized P/L, minus fees "
                                   "and funding"),
              ("upnl", "Unrealized", "Net unrealized P/L of the open positions (after fees)"),
              ("margin", "Margin", "Initial margin held by the open positions"),
              ("available", "Available", "Wallet balance not held as margin: what new "
                                         "orders can use"),
              ("ratio", "Margin ratio", "Maintenance margin / equity: liquidation at 100 %"),
              ("today", "Today", "P/L realized by positions closed since local midnight"),
              ("funding", "Funding", "Funding fees paid (−) or received (+) so far by the "
                                     "account; 'open': the open positions' share (the "
                                     "Funding column summed)"))

    def __init__(self, bridge: Bridge, market_for: MarketFor, theme: Theme,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("accountPanel")
        self.setAccessibleName("Account summary")
        self._market_for = market_for
        self._theme = theme
        self._snaps: dict[str, PositionSnapshot] = {}
        self._wallet: float | None = None
        self._currency = "USDT"
        self._funding: float | None = None
        self._today: float | None = None
        # P/L realised by closes — whole or partial — the venue's wallet report does not
        # hold yet: (position id, the engine time of the close) → P/L realised by it.
        # Counted into the wallet until a report made after the close comes (the closed
        # P/L leaves "Unrealized" at once; the engine reports the wallet after a whole close
        # within a second, after a partial one with its periodic report, 10 s)
        self._unreported: dict[tuple[str, float], float] = {}
        self._realized: dict[str, float] = {}  # each position's realised P/L as accounted
        # positions whose terms were computed from a stale price (their feed silent past
        # `price.max_age`): the sums say so, as the rows do
        self._stale: set[str] = set()
        self.labels: dict[str, QLabel] = {}
        lay = FlowLayout(self, h_spacing=14)
        font = tabular_font()
        for key, title, tip in self.FIELDS:
            lab = QLabel()
            lab.setObjectName(f"account_{key}")
            lab.setToolTip(tip)
            lab.setAccessibleName(title)
            lab.setTextFormat(Qt.TextFormat.PlainText)
            lab.setFont(font)
            lab.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
            lab.setFixedHeight(lab.sizeHint().height())
            lay.addWidget(lab)
            self.labels[key] = lab
        self._styles: dict[str, str] = {}
        # each position's terms for its newest snapshot, and the positions whose snapshot
        # changed since (an ordered set): only those are computed again, a slice per turn
        self._terms: dict[str, tuple[float, float, float]] = {}
        self._funding_of: dict[str, float] = {}  # the open positions' own funding, if known
        self._changed: dict[str, None] = {}
        self._batch: int | None = None  # positions of the sums under way left to compute
        # a storm updates every position at each flush: the account's sums over all of
        # them are redone at most every ACCOUNT_MS (at once on the first change and when
        # the bridge is flushed), not at every flush
        self._dirty = False
        self._cooldown = QTimer(self)
        self._cooldown.setSingleShot(True)
        self._cooldown.setInterval(ACCOUNT_MS)
        self._cooldown.timeout.connect(self._after_cooldown)
        self._turns = bridge.turns
        bridge.account.connect(self.on_account)
        bridge.positionsChanged.connect(self.on_positions)
        bridge.positionRemoved.connect(self.on_position_removed)
        bridge.flushed.connect(self._refresh_if_dirty)
        self.refresh()

    def on_account(self, ev: AccountEvent) -> None:
        if is_num(ev.balance):
            self._wallet = float(ev.balance)
            if self._unreported:  # the closes up to this report are in its wallet
                self._unreported = {k: v for k, v in self._unreported.items()
                                    if not (is_num(ev.ts) and ev.ts >= k[1])}
        self._currency = ev.currency or self._currency
        funding = getattr(ev, "funding", None)
        self._funding = float(funding) if is_num(funding) else self._funding
        # on the account's turns, not in the table's flush that brought the event (which
        # summed every changed position's terms there: 1.4 ms in the GUI storm)
        self._refresh_later()

    def on_positions(self, snaps: list[PositionSnapshot]) -> None:
        changed = self._changed
        for s in snaps:
            pid = s.position.id
            self._snaps[pid] = s
            changed[pid] = None
        if self._cooldown.isActive():
            self._dirty = True
        else:
            self._refresh_later()
            self._cooldown.start()

    def _after_cooldown(self) -> None:
        if self._dirty:
            self._refresh_later()
            self._cooldown.start()

    def _refresh_later(self) -> None:
        """The sums on turns of their own (`Turns`), not inside the table's flush that
        brought the snapshots or beside the other timers due with the cooldown's: a few ms
        of CPU that made those stretches longer. The terms of the positions that changed
        are computed `ACCOUNT_SLICE` positions a turn, the labels set on the turn that
        computes the last of them."""
        self._dirty = True
        self._turns.later(("account", id(self)), self._refresh_step, owner=self)

    def _refresh_step(self) -> None:
        """One turn of the sums: a slice of the terms of the positions that had changed when
        the sums began (their batch), and with its last slice the labels. A position that
        changes again meanwhile is left for the next sums (its newer terms then), so a storm
        computes each position's terms once per sums, however slow the turns: the labels
        show its terms of when the sums began until then."""
        if not self._dirty:
            return
        if self._batch is None:
            self._batch = len(self._changed)  # the first ones (an ordered set)
        n = min(ACCOUNT_SLICE, self._batch)
        self._update_terms(n)
        self._batch -= n
        if self._batch > 0:
            self._turns.later(("account", id(self)), self._refresh_step, owner=self)
            return
        self.refresh(full=False)

    def _refresh_if_dirty(self) -> None:
        if self._dirty:
            self._turns.cancel(("account", id(self)))
            self.refresh()

    def on_position_removed(self, ev: PositionRemoved) -> None:
        pid = ev.position.id
        snap = self._snaps.pop(pid, None)
        seen = self._realized.pop(pid, None)
        self._stale.discard(pid)
        if snap is not None:
            # its P/L leaves the unrealized sum now; the wallet holding it comes later
            self._note_realized(pid, snap.position.realized_pnl if seen is None else seen,
                                ev.position.realized_pnl, ev.ts)
        self._terms.pop(pid, None)
        self._funding_of.pop(pid, None)
        self._changed.pop(pid, None)
        self.refresh()

    def on_history(self, data: object) -> None:
        if isinstance(data, HistorySnapshot):
            self._today = data.realized_today
            self.refresh()

    def _note_realized(self, pid: str, before: float, after: float, ts: float) -> None:
        """P/L realised by a close of `pid` at engine time `ts` (`after` − `before`), held
        until a wallet report made after it."""
        done = after - before
        if self._wallet is not None and is_num(done) and done != 0 and is_num(ts):
            self._unreported[(pid, float(ts))] = self._unreported.get((pid, float(ts)),
                                                                       0.0) + done

    def _seen(self, pid: str, snap: PositionSnapshot) -> None:
        """A position's realised P/L as its terms are computed: a rise since the last ones
        is a partial close the wallet report may not hold yet."""
        now = snap.position.realized_pnl
        before = self._realized.get(pid)
        self._realized[pid] = now
        if before is not None and now != before:
            self._note_realized(pid, before, now, snap.ts)

    def _update_terms(self, limit: int | None = None) -> None:
        """The terms of (at most `limit` of) the positions changed since their last terms,
        oldest change first."""
        changed, snaps, terms = self._changed, self._snaps, self._terms
        funding = self._funding_of
        realized = self._realized
        stale = self._stale
        market_for = self._market_for
        n = len(changed) if limit is None else min(limit, len(changed))
        pids = list(islice(changed, n))
        for pid in pids:
            del changed[pid]
            snap = snaps.get(pid)
            if snap is not None:
                p = snap.position
                terms[pid] = account_terms(snap, market_for(p.symbol))
                r = p.realized_pnl
                if realized.get(pid) != r:  # (inline: this loop runs over a storm's book)
                    self._seen(pid, snap)
                if snap.stale:
                    stale.add(pid)
                elif stale:
                    stale.discard(pid)
                if is_num(p.funding):
                    funding[pid] = p.funding
                else:
                    funding.pop(pid, None)

    def _first_terms(self, pid: str, snap: PositionSnapshot) -> tuple[float, float, float]:
        """A position's terms computed out of turn: it has none yet (new since the sums
        began). Its change stays marked for the next sums."""
        p = snap.position
        t = self._terms[pid] = account_terms(snap, self._market_for(p.symbol))
        self._seen(pid, snap)
        if snap.stale:
            self._stale.add(pid)
        if is_num(p.funding):
            self._funding_of[pid] = p.funding
        return t

    def figures(self):
        """`account_figures` over the positions (the same sums in the same order): the terms
        of the positions changed since the last sums computed, the others' kept."""
        self._update_terms()
        return self._sums()

    def _sums(self):
        """The account from the terms as computed (a position without terms yet: now)."""
        terms = self._terms
        upnl = margin = maint = 0.0
        for pid, snap in self._snaps.items():
            t = terms.get(pid)
            if t is None:
                t = self._first_terms(pid, snap)
            upnl += t[0]
            margin += t[1]
            maint += t[2]
        wallet = self._wallet
        if wallet is not None and self._unreported:
            wallet += sum(self._unreported.values())
        return account_of(wallet, upnl, margin, maint)

    def refresh(self, *, full: bool = True) -> None:
        """The labels from the sums: of every position's newest terms, or without `full`
        (the sums' turns) of the terms computed so far (a position never computed yet is
        computed now), the changes left marked for the next sums."""
        self._dirty = False
        self._batch = None
        f = self.figures() if full else self._sums()
        if self._changed:  # (left for the next sums, after the cooldown)
            self._dirty = True
            if not self._cooldown.isActive():
                self._cooldown.start()
        cur = self._currency
        # equity at or below zero with positions open: past liquidation, where
        # maintenance / equity has no value (None) — said, not a calm dash
        broke = f.margin_ratio is None and is_num(f.equity) and f.equity <= 0 \
            and bool(self._snaps)  # type: ignore[operator]
        texts = {
            "equity": f"Equity {fmt_amount(f.equity, cur)} {cur}",
            "wallet": f"Wallet {fmt_amount(f.wallet, cur)}",
            "upnl": f"Unrealized {fmt_money(f.unrealized, cur)}",
            "margin": f"Margin {fmt_amount(f.margin, cur)}",
            "available": f"Available {fmt_amount(f.available, cur)}",
            "ratio": "Margin ratio ⚠ over 100% (equity ≤ 0)" if broke
                     else f"Margin ratio {fmt_pct(f.margin_ratio, 1).lstrip('+')}",
            "today": f"Today {fmt_money(self._today, cur)}",
            "funding": f"Funding {fmt_money(self._funding, cur)}",
        }
        n_stale = len(self._stale)
        if n_stale:  # summed over prices the feed has not renewed: not live figures
            texts["upnl"] += f" ⚠ {n_stale} stale price{'s' if n_stale != 1 else ''}"
            texts["equity"] += " ⚠ stale"
        fund = self._funding_of
        own = [fund[pid] for pid in self._snaps if pid in fund]
        if own:
            texts["funding"] += f" · open {fmt_money(sum(own), cur)}"  # type: ignore[arg-type]
        t = self._theme
        for key, text in texts.items():
            lab = self.labels[key]
            if lab.text() != text:
                self._fit(lab, text)
                lab.setText(text)
        for key, v in (("upnl", f.unrealized), ("today", self._today),
                       ("funding", self._funding)):
            colour = t.up if is_num(v) and v > 0 else t.down if is_num(v) and v < 0 else t.text  # type: ignore[operator]
            if key == "upnl" and n_stale:
                colour = t.warning
            self._style(key, f"color: {colour};")
        warn = broke or (is_num(f.margin_ratio) and f.margin_ratio >= 0.8)  # type: ignore[operator]
        self._style("ratio", f"color: {t.warning}; font-weight: bold;" if warn
                    else f"color: {t.text};")

    @staticmethod
    def _fit(lab: QLabel, text: str) -> None:
        """A label of fixed size (a new text does not re-run the layouts up to the window's,
        which would resize the chart below at every refresh): widened, with room for a few
        more digits, only when a text needs more."""
        fm = lab.fontMetrics()
        need = fm.horizontalAdvance(text) + 4
        if need > lab.maximumWidth() or lab.maximumWidth() != lab.minimumWidth():
            lab.setFixedWidth(need + fm.horizontalAdvance("00"))

    def _style(self, key: str, sheet: str) -> None:
        """A style sheet is re-parsed and re-polished whenever it is set: only on change."""
        if self._styles.get(key) != sheet:
            self._styles[key] = sheet
            lab = self.labels[key]
            lab.setStyleSheet(sheet)
            self._fit(lab, lab.text())  # (bold is wider)

    def text(self, key: str) -> str:
        return self.labels[key].text()

    def set_theme(self, theme: Theme) -> None:
        self._theme = theme
        self.refresh()


def venue_health(c: ConnectionEvent | None) -> tuple[str, str]:
    """(status-bar suffix, tooltip lines) for the venue's clock offset, rate-limit headroom
    and per-stream states; empty where the venue does not report them (paper)."""
    if c is None:
        return "", ""
    short: list[str] = []
    long: list[str] = []
    if is_num(c.clock_offset):
        off = float(c.clock_offset)  # type: ignore[arg-type]
        short.append(f"clock {off:+.1f} s")
        long.append(f"Exchange clock minus this computer's: {off:+.2f} s (synced)")
    if is_num(c.rate_limit_headroom):
        free = float(c.rate_limit_headroom)  # type: ignore[arg-type]
        short.append(f"API {free:.0%} free" if free > 0 else "⚠ API rate-limited")
        long.append(f"Request budget left: {free:.0%}")
    for name, state in c.streams:
        long.append(f"{name}: {state}")
    return " · ".join(short), "\n".join(long)


def _sheet(lab: QWidget, sheet: str) -> None:
    """A style sheet is re-parsed and the widget re-polished whenever one is set: only on
    change (the status bar is refreshed every second)."""
    if lab.styleSheet() != sheet:
        lab.setStyleSheet(sheet)


# -- connection status -------------------------------------------------------------------------
class ConnectionStatus(QObject):
    """Market data and order connections, and the newest price's age, in the status bar."""

    def __init__(self, bridge: Bridge, status_bar: QStatusBar, exchange_id: str,
                 theme: Theme, clock: Callable[[], float], stale_after: Callable[[], float],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._exchange = exchange_id
        self._theme = theme
        self._clock = clock
        self._stale_after = stale_after
        self._conn: ConnectionEvent | None = None
        self._conn_at: float | None = None
        self._tick_at: float | None = None

        def label(name: str, tip: str) -> QLabel:
            lab = QLabel()
            lab.setObjectName(name)
            lab.setAccessibleName(tip)
            lab.setToolTip(tip)
            lab.setTextFormat(Qt.TextFormat.PlainText)
            lab.setContentsMargins(6, 0, 6, 0)
            status_bar.addPermanentWidget(lab)
            return lab

        self.market_data_label = label("marketDataStatus", "Market data connection")
        self.orders_label = label("ordersStatus", "Order connection")
        self.tick_age_label = label("tickAge", "Age of the newest price")
        self.tick_age_label.setFont(tabular_font())
        bridge.connection.connect(self.on_connection)
        bridge.ticks.connect(self.on_ticks)

    def on_connection(self, ev: ConnectionEvent) -> None:
        self._conn = ev
        self._conn_at = self._clock()
        self.refresh()

    def on_ticks(self, _evs: list[TickEvent]) -> None:
        self._tick_at = self._clock()

    def set_theme(self, theme: Theme) -> None:
        self._theme = theme
        self.refresh()

    def tick_age(self) -> float | None:
        """Seconds since the newest price, from the engine's report and our own tick receipt."""
        now = self._clock()
        ages = []
        if self._conn is not None and self._conn_at is not None and is_num(
                self._conn.last_tick_age):
            ages.append(float(self._conn.last_tick_age) + (now - self._conn_at))  # type: ignore[arg-type]
        if self._tick_at is not None:
            ages.append(now - self._tick_at)
        return max(0.0, min(ages)) if ages else None

    def is_stale(self) -> bool:
        age = self.tick_age()
        return age is None or age > self._stale_after()

    def refresh(self) -> None:
        t, c = self._theme, self._conn
        md = c.market_data if c else False
        od = c.orders if c else False
        self._set_state(self.market_data_label, "Market data", md, c is not None)
        self._set_state(self.orders_label, "Orders", od, c is not None)
        detail = c.detail if c is not None and c.detail else ""
        for lab, what in ((self.market_data_label, "Market data connection"),
                          (self.orders_label, "Order connection")):
            lab.setToolTip(f"{what} ({self._exchange})" + (f": {detail}" if detail else ""))
        if md and detail and "REST" in detail:
            self.market_data_label.setText("● Market data: REST polling")
        short, long = venue_health(c)
        if short:
            self.orders_label.setText(f"{self.orders_label.text()} · {short}")
        if long:
            self.orders_label.setToolTip(f"{self.orders_label.toolTip()}\n{long}")
        age = self.tick_age()
        if age is None:
            self.tick_age_label.setText("Last tick —")
            _sheet(self.tick_age_label, f"color: {t.warning};")
        elif age > self._stale_after():
            self.tick_age_label.setText(f"⚠ STALE: last tick {fmt_age(age)} ago")
            _sheet(self.tick_age_label, f"color: {t.warning}; font-weight: bold;")
        else:
            self.tick_age_label.setText(f"Last tick {fmt_age(age)} ago")
            _sheet(self.tick_age_label, f"color: {t.text};")

    def _set_state(self, lab: QLabel, name: str, up: bool, known: bool) -> None:
        if not known:
            lab.setText(f"○ {name}: unknown")
            _sheet(lab, f"color: {self._theme.muted};")
        elif up:
            lab.setText(f"● {name}: connected")
            _sheet(lab, f"color: {self._theme.ok};")
        else:
            lab.setText(f"✖ {name}: DISCONNECTED")
            _sheet(lab, f"color: {self._theme.warning}; font-weight: bold;")


# -- alerts ------------------------------------------------------------------------------------
class AlertButton(QPushButton):
    """Emergency stops: a highlighted status-bar notice that stays until clicked.

    Its hover lists the newest `SHOWN` (a crash may stop out hundreds of positions at once:
    a list of them all was taller than the screen), with how many came before."""

    SHOWN = 20

    def __init__(self, theme: Theme, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("emergencyAlert")
        self.setAccessibleName("Emergency stop alert (click to dismiss)")
        self.setFlat(True)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.clicked.connect(self.dismiss)
        self.hide()
        self.messages: list[str] = []  # the newest (at most 2 × SHOWN)
        self.count = 0  # alerts since the last dismissal
        self.set_theme(theme)

    def add(self, text: str) -> None:
        self.messages.append(text)
        self.count += 1
        if len(self.messages) > 2 * self.SHOWN:
            del self.messages[:-self.SHOWN]
        more = self.count - 1
        self.setText(text + (f"   (+{more} more)" if more else "") + "   ✕")
        shown = self.messages[-self.SHOWN:]
        earlier = self.count - len(shown)
        head = f"… and {earlier} earlier\n" if earlier else ""
        self.setToolTip(head + "\n".join(shown) + "\n\nClick to dismiss")
        self.show()

    def dismiss(self) -> None:
        self.messages.clear()
        self.count = 0
        self.hide()

    def set_theme(self, theme: Theme) -> None:
        bg = "#b31d28" if theme.dark else "#cf222e"
        self.setStyleSheet(
            f"QPushButton#emergencyAlert {{ background: {bg}; color: #ffffff; "
            f"font-weight: bold; border: none; border-radius: 3px; padding: 2px 10px; "
            f"text-align: left; }}")
