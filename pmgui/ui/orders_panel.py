"""Working orders: resting limit/stop entries (not yet positions) and the add-on rule's
resting limit adds, with a Cancel action for the entries.

Fed by the bridge's OrderSnapshots like every panel; cancelling sends `CancelOrder` through
the window's command runner and shows the engine's answer. Protective SL/TP orders are shown
on their position's protection badge instead (pmgui/ui/panels.py). An add-on's limit order
rests on the exchange too (for minutes, at the EMA): it is listed, so every pmgui order the
exchange shows is in the window, but it is the rule's to withdraw (`add_on_cancel`) — the
engine cancels entry orders only, so it has no Cancel.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from pmgui.domain.enums import OrderRole, OrderSide, OrderType
from pmgui.domain.models import Market, Order
from pmgui.engine.commands import CancelOrder, Command, CommandResult
from pmgui.engine.events import OrderSnapshot
from pmgui.ui.bridge import Bridge
from pmgui.ui.fmt import fmt_price, fmt_qty

Send = Callable[[Command, Callable[[CommandResult | None, str | None], None]], bool]
HEADERS = ("Symbol", "Side", "Type", "Price", "Size", "Filled", "State", "Role")
ENTRY_TYPES = (OrderType.LIMIT, OrderType.STOP_MARKET)
ROLES = {OrderRole.ENTRY: "Entry", OrderRole.ADD: "Add-on"}  # the resting orders listed


class WorkingOrdersPanel(QWidget):
    message = Signal(str)  # the engine's answer to a cancel, for the status bar

    def __init__(self, bridge: Bridge, market_for: Callable[[str], Market | None],
                 send: Send, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ordersPanel")
        self._market_for, self._send = market_for, send
        self.orders: dict[str, Order] = {}
        self.table = QTableWidget(0, len(HEADERS))
        self.table.setObjectName("ordersTable")
        self.table.setHorizontalHeaderLabels(list(HEADERS))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.cancel_button = QPushButton("Cancel order")
        self.cancel_button.setObjectName("cancelOrder")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel_selected)
        self.status = QLabel("No working orders")
        self.status.setObjectName("workingOrdersStatus")
        bar = QHBoxLayout()
        bar.addWidget(self.status, 1)
        bar.addWidget(self.cancel_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addLayout(bar)
        lay.addWidget(self.table, 1)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        bridge.orderChanged.connect(self.on_order)

    def on_order(self, ev: OrderSnapshot) -> None:
        o = ev.order
        if o.role not in ROLES or o.type not in ENTRY_TYPES \
                or self.orders.get(o.client_id) == o:  # (re-published unchanged)
            return
        if o.status.is_final:
            if self.orders.pop(o.client_id, None) is None:
                return
        else:
            self.orders[o.client_id] = o
        self._rebuild()

    def selected_id(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        item = self.table.item(rows[0].row(), 0)
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def _rebuild(self) -> None:
        keep = self.selected_id()
        self.table.setRowCount(len(self.orders))
        for row, o in enumerate(sorted(self.orders.values(), key=lambda x: x.created_at)):
            m = self._market_for(o.symbol)
            kind = "Limit" if o.type is OrderType.LIMIT else "Stop"
            cells = (o.symbol, "▲ BUY" if o.side is OrderSide.BUY else "▼ SELL", kind,
                     fmt_price(o.price or o.trigger_price, m), fmt_qty(o.amount, m),
                     fmt_qty(o.filled, m), "working" if o.status.value == "open"
                     else "sending", ROLES[o.role])
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, o.client_id)
                self.table.setItem(row, col, item)
            if o.client_id == keep:
                self.table.selectRow(row)
        n = len(self.orders)
        self.status.setText(f"{n} working order{'s' if n != 1 else ''}" if n
                            else "No working orders")
        self._selection_changed()

    def _cancellable(self) -> str | None:
        """The selected order if the trader may cancel it (an entry: the engine's
        `CancelOrder` withdraws entries only; an add-on is its rule's)."""
        cid = self.selected_id()
        o = self.orders.get(cid) if cid is not None else None
        return cid if o is not None and o.role is OrderRole.ENTRY else None

    def _selection_changed(self) -> None:
        cid = self.selected_id()
        ok = self._cancellable() is not None
        self.cancel_button.setEnabled(ok)
        self.cancel_button.setToolTip(
            "" if ok or cid is None else "The add-on rule places and withdraws this "
            "order (the engine cancels entry orders only)")

    def cancel_selected(self) -> None:
        cid = self._cancellable()
        if cid is None:
            return
        self.cancel_button.setEnabled(False)

        def done(res: CommandResult | None, err: str | None) -> None:
            self._selection_changed()
            self.message.emit(f"✖ Cancel refused: {err}" if err is not None
                              else (res.message if res is not None else ""))

        self._send(CancelOrder(cid), done)
