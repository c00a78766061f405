"""The main window: positions table, chart, action log, status bar, toolbar.

It is wired to the engine only through the Bridge (events in) and the CommandRunner
(commands out). Everything shown comes from the newest engine snapshot; nothing here
computes trading state of its own.
"""

from __future__ import annotations

import dataclasses
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6.QtCore import (
    QByteArray,
    QEvent,
    QItemSelectionModel,
    QPoint,
    QSettings,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QDockWidget,
    QMainWindow,
    QMenu,
    QSystemTrayIcon,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from pmgui.domain.enums import Side
from pmgui.engine.commands import (
    CloseAll,
    ClosePosition,
    Command,
    CommandResult,
    HistorySnapshot,
    SetAutomation,
    SetPreset,
    SetTargets,
)
from pmgui.engine.events import (
    CandlesEvent,
    PositionRemoved,
    PositionSnapshot,
)
from pmgui.ui.about import show_about
from pmgui.ui.action_log import ActionLogPanel
from pmgui.ui.bridge import Bridge
from pmgui.ui.chart_drag import LINE_TITLES, DragContext, consequence
from pmgui.ui.chart_state import verdict, verdict_message
from pmgui.ui.confirm import ConfirmDialog, DragConfirmBar
from pmgui.ui.dialogs import (
    ORDER_TYPES,
    AmountDialog,
    EditTargetsDialog,
    OrderDialog,
    ShortcutsDialog,
    preset_names,
    protection_summary,
)
from pmgui.ui.fmt import fmt_price, fmt_qty, is_num, plain_price
from pmgui.ui.handle import EngineHandle
from pmgui.ui.history import HistoryPanel
from pmgui.ui.orders_panel import WorkingOrdersPanel
from pmgui.ui.panels import (
    AlertButton,
    ConnectionStatus,
    PositionsPanel,
    venue_health,  # noqa: F401 (re-exported: the status bar's venue read-out)
)
from pmgui.ui.runner import CommandRunner
from pmgui.ui.settings_dialog import SettingsDialog
from pmgui.ui.theme import THEMES, Theme, apply_theme, make_theme
from pmgui.ui.trading import PositionActions, fills_text, quit_text

if TYPE_CHECKING:  # the chart (pyqtgraph) is imported when it is built: build_chart
    from pmgui.ui.chart import ChartWidget

STALE_AFTER = 5.0  # seconds: DESIGN §4 max_price_age (live)


@dataclass(slots=True)
class UiSettings:
    """Per-user UI choices (persisted by the settings layer)."""

    theme: str = "dark"
    colour_blind: bool = False
    red_up: bool = False
    confirm_drags: bool = False
    drag_modifier: bool = False  # require Shift to drag SL/TP lines
    sound_alerts: bool = False  # beep on closes and emergency stops
    one_click: bool = False  # partial closes, adds and reverses without a confirmation
    stale_after: float = STALE_AFTER


MAX_ALERTS = 200  # alerts kept in `MainWindow.alerts`

# QSettings keys of the persisted UiSettings fields (the layout's file, group "ui")
_PERSISTED = ("theme", "colour_blind", "red_up", "confirm_drags", "drag_modifier",
              "sound_alerts", "one_click")


def _is_emergency(reason: str | None) -> bool:
    return bool(reason) and str(reason).startswith("emergency_stop")




def _freeze_long_lived() -> None:
    """The chart is built: pyqtgraph, numpy and the chart's items are imported and made now
    and live as long as the window. `gc.freeze()` takes everything that exists out of the
    collector's generations (the engine thread does the same once it has started), so a full
    collection in a storm traverses only what the storm made. Without it one full collection
    walked pyqtgraph's and the window's objects for 50 ms, freeing nothing, while holding the
    interpreter lock: the window's longest stall. Frozen objects are still freed by reference
    counting."""
    gc.freeze()


# New rows in one table update from which the window takes them out of the collector
BULK_ROWS = 20


def _freeze_bulk_rows(rows: int) -> None:
    """Many positions listed at once (the book at start-up, a reconnect): each row is ~20
    Qt items with their Python wrappers, its line, row and figures — 19,000 objects for 500
    positions, living as long as the positions. Left young, the next young collection walked
    them all (13 ms) and the next middle one again with what else it held (28,000 objects,
    37-41 ms of GUI CPU with the interpreter lock held: the GUI storm's longest stall, a
    second after the table filled); every full collection walks them again. `gc.freeze()`
    takes them out (with everything else alive now, as `_freeze_long_lived`); a row is still
    freed by reference counting when its position closes. A row or two at a time ages as
    any object does."""
    if rows >= BULK_ROWS:
        gc.freeze()


class MainWindow(QMainWindow):
    """pmgui's window. `clock` is monotonic seconds (injectable so tests need no sleeps)."""

    statusMessage = Signal(str)
    # the window has closed (its close was accepted). `run_gui` ends its run on it: Qt 6
    # emits QApplication.lastWindowClosed only from inside QApplication.exec(), so a window
    # closed during the first-frame loop (a plain QEventLoop) would leave the run waiting
    closed = Signal()

    def __init__(self, engine: EngineHandle, *, settings: UiSettings | None = None,
                 bridge: Bridge | None = None, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time, start: bool = True,
                 qsettings: QSettings | None = None, parent: QWidget | None = None,
                 defer_chart: bool = False) -> None:
        super().__init__(parent)
        self.setObjectName("mainWindow")
        self.setWindowTitle(f"pmgui — {engine.exchange_id}")
        self.engine = engine
        self.settings = settings or UiSettings()
        self.theme: Theme = make_theme(self.settings.theme,
                                       colour_blind=self.settings.colour_blind,
                                       red_up=self.settings.red_up)
        self._clock = clock
        self._wall = wall_clock
        self.bridge = bridge or Bridge(engine.outbox, self)
        self.runner = CommandRunner(engine, self)
        self._closed_ok: set[str] = set()  # positions whose full close the engine confirmed
        self._action_state: object = ()  # what the selection's actions show (never () again)
        self.confirm_dialog: ConfirmDialog | None = None
        # the dragged proposal's position, level kind, that level at the drop, bar text
        self._proposal_from: tuple[str, str, float | None, str] | None = None
        self.dialog: QDialog | None = None  # the edit/order/help dialog shown last
        # the newest alerts raised this session (newest last; at most MAX_ALERTS: a window
        # running for weeks beside a busy book raises thousands)
        self.alerts: list[str] = []
        self._tray: QSystemTrayIcon | None = None
        self._qsettings = qsettings
        self.keyring_backend: object | None = None  # None: the OS keyring (tests inject one)
        self.settings_dialog: SettingsDialog | None = None
        self.sounds = 0  # alert sounds played this session
        self.ask_before_quit = start  # the live window asks before leaving positions alone
        self._quit_ok = False
        # extend the quit question (pmgui.ui.remote.offer_background_engine adds "keep
        # protecting in the background")
        self.quit_dialog_hooks: list[Callable[[ConfirmDialog], None]] = []

        # panels subscribe to the bridge themselves; the window assembles them
        self.positions = PositionsPanel(self.bridge, engine.market, self.theme, wall_clock)
        self.model, self.proxy, self.table = (self.positions.model, self.positions.proxy,
                                              self.positions.table)
        self.model.inserted = _freeze_bulk_rows
        self.account = self.positions.account
        self.positions.currentChanged.connect(lambda _pid: self._show_current())
        self.trading = PositionActions(self)

        # chart: built by build_chart (at once, or — defer_chart — by whoever shows the
        # window, right after its first frame; anything needing it earlier builds it)
        self._chart: ChartWidget | None = None
        self._early_candles: list[CandlesEvent] = []  # arrived before the chart was built

        # Layout: the table spans the full width on top (a fixed dock, so the window
        # state — including its height — is saved with the docks); the chart is central
        # and the action log sits to its right.
        self.table_dock = QDockWidget("Positions", self)
        self.table_dock.setObjectName("positionsDock")
        self.table_dock.setWidget(self.positions)
        self.table_dock.setFeatures(QDockWidget.DockWidgetFeature.NoDockWidgetFeatures)
        self.table_dock.setTitleBarWidget(QWidget())
        self.setCorner(Qt.Corner.TopLeftCorner, Qt.DockWidgetArea.TopDockWidgetArea)
        self.setCorner(Qt.Corner.TopRightCorner, Qt.DockWidgetArea.TopDockWidgetArea)
        self.addDockWidget(Qt.DockWidgetArea.TopDockWidgetArea, self.table_dock)
        self.drag_bar = DragConfirmBar()
        self.drag_bar.applied.connect(self._drag_confirmed)
        self.drag_bar.discarded.connect(self._drag_discarded)
        centre = QWidget()
        centre_lay = QVBoxLayout(centre)
        centre_lay.setContentsMargins(0, 0, 0, 0)
        centre_lay.setSpacing(0)
        centre_lay.addWidget(self.drag_bar)
        self._centre_lay = centre_lay
        self.setCentralWidget(centre)
        if not defer_chart:
            self.build_chart()
        self.table.doubleClicked.connect(lambda _i: self.edit_targets())
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._show_context_menu)

        # action log
        self.action_log = ActionLogPanel(
            self.bridge, engine.market, self.theme,
            lambda pid: (snap.position.symbol if (snap := self.model.snapshot(pid)) else None),
            wall_clock)
        self.log_dock = QDockWidget("Action log", self)
        self.log_dock.setObjectName("actionLogDock")
        self.log_dock.setWidget(self.action_log)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.log_dock)
        self.resizeDocks([self.log_dock], [470], Qt.Orientation.Horizontal)
        self.resizeDocks([self.table_dock], [230], Qt.Orientation.Vertical)

        # history (closed trades, metrics, equity) from the store, read-only
        self.history = HistoryPanel(self.runner.request, engine.market, self.theme,
                                    wall_clock=wall_clock)
        self.history.loaded.connect(self._on_history_loaded)
        self.history.loaded.connect(self.account.on_history)
        self.history_dock = QDockWidget("History", self)
        self.history_dock.setObjectName("historyDock")
        self.history_dock.setWidget(self.history)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.history_dock)
        self.tabifyDockWidget(self.log_dock, self.history_dock)
        # working (resting) entry orders, with Cancel
        self.orders = WorkingOrdersPanel(self.bridge, engine.market, self._send)
        self.orders.message.connect(self.notify)
        self.orders_dock = QDockWidget("Orders", self)
        self.orders_dock.setObjectName("ordersDock")
        self.orders_dock.setWidget(self.orders)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.orders_dock)
        self.tabifyDockWidget(self.log_dock, self.orders_dock)
        self.log_dock.raise_()

        # the panels' sizes the trader chose, given back when a squeezed window grows (the
        # designed ones until the panels are laid out at the window's size)
        self._dock_want: dict[str, int] = {"table": 230, "side": 470}
        self._win_size = self.size()
        self._roomiest = (0, 0)  # the largest width and height the window has had
        self._dock_noted = False
        for dock in (self.table_dock, self.log_dock, self.history_dock, self.orders_dock):
            dock.installEventFilter(self)

        self._build_actions()
        self._build_status_bar()
        self._connect_bridge()

        self._second = QTimer(self)
        self._second.setInterval(1000)
        self._second.timeout.connect(self.refresh_status)
        self.apply_theme(self.theme)
        # every designed column fits beside the always-shown vertical scroll bar
        self.resize(1500, 900)
        if qsettings is not None:
            self.restore_layout(qsettings)
        self._win_size = self.size()  # the panels laid out at this size are as wanted
        self.refresh_status()
        if start:
            self.bridge.start()
            self._second.start()
            self.history.refresh()

    # -- construction ------------------------------------------------------------------------
    def _build_actions(self) -> None:
        tb = QToolBar("Main")
        tb.setObjectName("mainToolbar")
        tb.setMovable(False)
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.addToolBar(tb)
        self.toolbar = tb

        def act(name: str, text: str, slot: Callable[[], None], shortcut: str | None = None,
                tip: str = "", checkable: bool = False) -> QAction:
            a = QAction(text, self)
            a.setObjectName(name)
            a.setCheckable(checkable)
            if shortcut:
                a.setShortcut(QKeySequence(shortcut))
                a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            a.setToolTip(f"{tip or text}" + (f" ({shortcut})" if shortcut else ""))
            a.setStatusTip(tip or text)
            a.triggered.connect(lambda *_: slot())
            self.addAction(a)  # shortcuts work wherever the focus is in the window
            return a

        self.act_emergency = act("emergencyClose", "Emergency close", self.emergency_close,
                                 "Ctrl+Shift+X", "Close the selected position at market")
        self.act_close_all = act("closeAll", "Close all / flatten", self.close_all,
                                 "Ctrl+Shift+F", "Cancel orders and close every position")
        self.act_edit = act("editTargets", "Edit TP/SL…", self.edit_targets, "Ctrl+E",
                            "Edit the selected position's stop loss and take profit")
        self.act_order = act("newOrder", "New position…", self.new_order, "Ctrl+N",
                             "Open a position at market")
        self.act_automation = act("toggleAutomation", "Automation (this position)",
                                  self.toggle_automation, "Ctrl+P",
                                  "Pause or resume the rules for the SELECTED position only "
                                  "(Options: pause or resume all)", checkable=True)
        self.act_pause_all = act("pauseAll", "Pause automation for all positions",
                                 lambda: self.set_automation_all(False), None,
                                 "Rules stop acting on every open position (exchange SL/TP "
                                 "orders stay)")
        self.act_resume_all = act("resumeAll", "Resume automation for all positions",
                                  lambda: self.set_automation_all(True), None,
                                  "Rules act again on every open position")
        self.act_close_parts = [
            act(f"close{pct}", f"Close {pct} %", lambda f=pct / 100: self.close_part(f),
                f"Alt+{i}", f"Close {pct} % of the selected position at market")
            for i, pct in enumerate((25, 50, 75), start=1)]
        self.act_close_custom = act("closeCustom", "Close part…", self.close_custom, "Alt+4",
                                    "Close a chosen % of the selected position at market")
        self.act_add = act("addToPosition", "Add to position…", self.add_to_position,
                           "Ctrl+Shift+A", "Add to the selected position at market")
        self.act_reverse = act("reversePosition", "Reverse", self.reverse, "Ctrl+Shift+R",
                               "Close the selected position and open the same size the "
                               "other way")
        self.act_one_click = act("oneClick", "One-click trading", self._one_click_changed,
                                 None, "Partial close, add and reverse act without asking "
                                       "(emergency close and close all still ask)",
                                 checkable=True)
        self.act_help = act("shortcutsHelp", "Shortcuts", self.show_shortcuts, "F1",
                            "Keyboard shortcuts")
        self.act_settings = act("openSettings", "Settings…", self.open_settings, "Ctrl+,",
                                "Exchange credentials, presets per symbol, behaviour")
        self.act_theme = act("toggleTheme", "Light theme", self.toggle_theme, "Ctrl+T",
                             "Switch between dark and light themes")
        self.act_colour_blind = act("colourBlind", "Colour-blind-safe palette",
                                    self._palette_changed, None,
                                    "Blue/orange instead of green/red", checkable=True)
        self.act_red_up = act("redUp", "Red means up", self._palette_changed, None,
                              "East-Asian convention: red for rising, green for falling",
                              checkable=True)
        self.act_confirm_drags = act("confirmDrags", "Confirm dragged SL/TP",
                                     self._drag_options_changed, None,
                                     "Ask to confirm or discard after dragging a line",
                                     checkable=True)
        self.act_drag_modifier = act("dragModifier", "Require Shift to drag lines",
                                     self._drag_options_changed, None,
                                     "Lines only move while Shift is held", checkable=True)
        self.act_colour_blind.setChecked(self.settings.colour_blind)
        self.act_red_up.setChecked(self.settings.red_up)
        self.act_confirm_drags.setChecked(self.settings.confirm_drags)
        self.act_drag_modifier.setChecked(self.settings.drag_modifier)
        self.act_one_click.setChecked(self.settings.one_click)

        for a in (self.act_emergency, self.act_close_all, None, self.act_edit, self.act_order,
                  self.act_automation, None, self.act_theme, self.act_settings,
                  self.act_help):
            if a is None:
                tb.addSeparator()
                continue
            tb.addAction(a)
            w = tb.widgetForAction(a)
            w.setObjectName(a.objectName())
            w.setAccessibleName(a.text())
        options = QMenu("Options", self)
        options.setObjectName("optionsMenu")
        for a in (self.act_colour_blind, self.act_red_up, self.act_confirm_drags,
                  self.act_drag_modifier, self.act_one_click):
            options.addAction(a)
        options.addSeparator()
        options.addAction(self.act_pause_all)
        options.addAction(self.act_resume_all)
        options.addSeparator()
        options.addAction(self.act_settings)
        btn = QToolButton()
        btn.setObjectName("optionsButton")
        btn.setText("Options")
        btn.setMenu(options)
        btn.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        tb.addWidget(btn)
        self.options_menu = options
        # the side panels can be closed (their ✕) and floated: this is how they come back
        # (a closed panel stays closed across restarts: the layout saves it)
        view = self.menuBar().addMenu("&View")
        view.setObjectName("viewMenu")
        for dock in (self.log_dock, self.history_dock, self.orders_dock):
            a = dock.toggleViewAction()
            a.setObjectName(f"show_{dock.objectName()}")
            a.setStatusTip(f"Show or hide the {dock.windowTitle()} panel")
            view.addAction(a)
        self.view_menu = view
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.setObjectName("helpMenu")
        help_menu.addAction(self.act_help)  # F1: every shortcut, read from the actions
        help_menu.addAction("About pmgui…", lambda: show_about(self))
        self._update_action_state()

    def _build_status_bar(self) -> None:
        sb = self.statusBar()
        sb.setObjectName("statusBar")
        self.alert_button = AlertButton(self.theme)
        sb.addPermanentWidget(self.alert_button, 1)
        self.status = ConnectionStatus(self.bridge, sb, self.engine.exchange_id, self.theme,
                                       self._clock, lambda: self.settings.stale_after, self)
        self.market_data_label = self.status.market_data_label
        self.orders_label = self.status.orders_label
        self.tick_age_label = self.status.tick_age_label

    def _connect_bridge(self) -> None:
        """What the window itself follows: the chart of the selection, closes (alerts)."""
        b = self.bridge
        b.positionsChanged.connect(self.on_positions)
        b.positionRemoved.connect(self.on_position_removed)
        # a closed position's booking corrected: its history row and the day's realised
        # P/L (the account panel takes it from the history's `loaded`)
        b.positionCorrected.connect(self.history.on_position_corrected)
        b.candles.connect(self._keep_candles)
        b.error.connect(lambda ev: self.notify(f"⚠ {ev.message}"))

    @property
    def chart(self) -> ChartWidget:
        return self._chart if self._chart is not None else self.build_chart()

    def build_chart(self) -> ChartWidget:
        """Create the chart in the central area (this imports pyqtgraph); once only."""
        if self._chart is not None:
            return self._chart
        from pmgui.ui.chart import ChartWidget

        chart = self._chart = ChartWidget(self.theme)
        chart.set_requester(self.runner.request)  # older candles per timeframe
        chart.turns = self.bridge.turns
        chart.drag_modifier = (Qt.KeyboardModifier.ShiftModifier
                               if self.settings.drag_modifier
                               else Qt.KeyboardModifier.NoModifier)
        self._centre_lay.addWidget(chart, 1)
        chart.levelDropped.connect(self._on_level_dropped)
        chart.tradeMenuRequested.connect(
            lambda price, at: self.build_chart_menu(price).popup(at))
        chart.dragRejected.connect(self._on_drag_rejected)
        chart.dragCancelled.connect(
            lambda kind: self.notify(f"{LINE_TITLES[kind]} drag cancelled: line restored"))
        b = self.bridge
        b.ticks.connect(chart.on_ticks)
        b.candles.connect(chart.on_candles)
        early, self._early_candles = self._early_candles, []
        for ev in early:  # what the engine sent before the chart existed
            chart.on_candles(ev)
        b.actions.connect(chart.on_actions)
        b.flushed.connect(chart.redraw_now)
        _freeze_long_lived()
        return chart

    def _keep_candles(self, ev: CandlesEvent) -> None:
        """Candle windows that arrive before the chart is built (it is built after the first
        frame) are kept for it: the engine sends a symbol's window once, not again."""
        if self._chart is None:
            self._early_candles.append(ev)

    # -- event handlers ----------------------------------------------------------------------
    def on_positions(self, snaps: list[PositionSnapshot]) -> None:
        chart = self.chart
        shown = chart.position_id
        if shown is not None:
            # the table took the batch first (its panel connects first): the newest
            # snapshot of the chart's position is the table's — a new one when the batch
            # had it (no look through the batch)
            s = self.model.snapshot(shown)
            if s is not None and s is not chart.snapshot:
                chart.on_snapshot(s, defer=True)  # a live redraw (≤ 10 a second)
        if self.chart.symbol is not None and self.chart.market is None:
            self.chart.set_market(self.engine.market(self.chart.symbol))
        if self.drag_bar.proposal is not None:
            self._proposal_moved()
        self._update_action_state(unless_same=True)

    def _proposal_moved(self) -> None:
        """A dragged level awaits Apply while the engine moves that level (a trailing
        stop): the bar says where it is now, so Apply is not taken for the move the trader
        first saw (tightening a stop the engine has since tightened further loosens it)."""
        base = self._proposal_from
        prop = self.drag_bar.proposal
        if base is None or prop is None or base[:2] != prop[:2]:
            return
        pid, kind, was, text = base
        snap = self.model.snapshot(pid)
        if snap is None:
            return
        now = getattr(snap.position, kind)
        market = self.engine.market(snap.position.symbol)
        tol = market.tick_size / 2 if market is not None else 1e-12
        if (now is None) == (was is None) and (now is None or abs(now - was) <= tol):
            return
        name = LINE_TITLES[kind]
        self.drag_bar.label.setText(
            f"⚠ the engine has moved {name} to {fmt_price(now, market)} since the drag — "
            f"{text}")

    def on_position_removed(self, ev: PositionRemoved) -> None:
        p = ev.position
        self._closed_ok.discard(p.id)
        reason = p.exit_reason or "closed"
        price = fmt_price(p.exit_price, self.engine.market(p.symbol))
        # a close this window only learns of (a remote window's resync after it was away)
        # has no reason or price: "closed", not "closed (closed) at —"
        how = (f" ({reason})" if p.exit_reason else "") + (
            f" at {price}" if is_num(p.exit_price) and p.exit_price > 0 else "")
        if _is_emergency(reason):
            self.notify(f"⚠ EMERGENCY STOP: {p.symbol} {_side(p.side)} closed{how}",
                        alert=True, critical=True, timeout_ms=60_000)
        else:
            self.notify(f"{p.symbol} {_side(p.side)} closed{how}", alert=True)
        if self._second.isActive():  # live window: the engine has just written the close
            # once for a burst of closes, and again after an answer already on its way
            # (read before this close was written: a plain refresh was dropped then)
            self.history.refresh_soon()
        if self.chart.position_id == p.id:
            self._show_current()
        gone = (f"{p.symbol} {_side(p.side)} has closed{how}: there is nothing left to "
                f"change.")
        for dlg in (self.dialog, self.confirm_dialog):  # a question about it is void
            if (dlg is not None and dlg.isVisible()
                    and getattr(dlg, "position_id", None) == p.id):
                dlg.position_gone(gone)  # type: ignore[attr-defined]

    def _on_history_loaded(self, data: HistorySnapshot) -> None:
        """First load: the stored recent actions under the live ones (and on the chart)."""
        for ev in self.action_log.seed(data):
            self.chart.add_marker(ev)

    # -- status ------------------------------------------------------------------------------
    def tick_age(self) -> float | None:
        return self.status.tick_age()

    def is_stale(self) -> bool:
        return self.status.is_stale()

    def refresh_status(self) -> None:
        self.status.refresh()
        self.history.check_day()  # "Today" starts again at local midnight
        self.model.refresh_live()
        self.positions.fit_values()  # once a second: a value grown past its column

    def notify(self, text: str, *, alert: bool = False, critical: bool = False,
               timeout_ms: int = 15000) -> None:
        """Say something in the status bar; alerts also go to the desktop (tray) and, when
        the sound setting is on, beep. Critical alerts (emergency stops) highlight the status
        bar until the message goes away."""
        self.statusBar().showMessage(text, timeout_ms)
        self.statusMessage.emit(text)
        if critical:
            self.alert_button.add(text)
        if alert or critical:
            self._desktop_alert(text, critical=critical)

    @property
    def critical_alert(self) -> bool:
        """An emergency-stop notice is showing (until the trader dismisses it)."""
        return not self.alert_button.isHidden()

    def dismiss_alert(self) -> None:
        self.alert_button.dismiss()

    def _desktop_alert(self, text: str, *, critical: bool = False) -> None:
        """A desktop notification through the system tray where the platform has one, and
        a sound (QApplication.beep: QtMultimedia is not a dependency) when enabled."""
        self.alerts.append(text)
        if len(self.alerts) > 2 * MAX_ALERTS:  # trimmed in chunks, not at every alert
            del self.alerts[:-MAX_ALERTS]
        if self.settings.sound_alerts:
            self.sounds += 1
            QApplication.beep()
            if critical:  # a stronger alert: a second beep
                QApplication.beep()
        if not QSystemTrayIcon.isSystemTrayAvailable():
            return
        if self._tray is None:
            self._tray = QSystemTrayIcon(self.windowIcon(), self)
            self._tray.setToolTip("pmgui")
            self._tray.show()
        icon = (QSystemTrayIcon.MessageIcon.Critical if critical
                else QSystemTrayIcon.MessageIcon.Information)
        self._tray.showMessage("pmgui — EMERGENCY STOP" if critical else "pmgui", text, icon,
                               30_000 if critical else 8000)

    # -- selection ---------------------------------------------------------------------------
    def selected_position_id(self) -> str | None:
        return self.positions.selected_id()

    def select_position(self, position_id: str) -> bool:
        return self.positions.select(position_id)

    def _show_current(self) -> None:
        pid = self.selected_position_id()
        if self.drag_bar.proposal is not None and self.drag_bar.proposal[0] != pid:
            self.drag_bar.discard()
        snap = self.model.snapshot(pid) if pid else None
        market = self.engine.market(snap.position.symbol) if snap else None
        self.chart.set_position(snap, market)
        self._update_action_state()

    def selected_snapshot(self) -> PositionSnapshot | None:
        pid = self.selected_position_id()
        return self.model.snapshot(pid) if pid else None

    # -- emergency close / close all ---------------------------------------------------------
    def emergency_close(self) -> None:
        """Ask (stating exactly what happens), then send one ClosePosition for the selection."""
        snap = self.selected_snapshot()
        if snap is None:
            self.notify("Emergency close: no position selected")
            return
        p = snap.position
        if self.runner.busy(("close", p.id)) or p.id in self._closed_ok:
            self.notify(f"{p.symbol}: a close is already on its way")
            return
        if self.confirm_dialog is not None and self.confirm_dialog.isVisible():
            return  # one question at a time: repeats of the shortcut do nothing
        market = self.engine.market(p.symbol)
        mark = fmt_price(snap.mark, market)
        text = (f"Close {p.symbol} {_side(p.side)} {fmt_qty(p.qty, market)} now with a "
                f"reduce-only MARKET order (last price {mark}).\n\n"
                f"Its SL/TP orders are cancelled. This works even while automation is paused "
                f"and cannot be undone.")
        dlg = ConfirmDialog("Emergency close", text, f"Close {p.symbol} now", self,
                            object_name="emergencyConfirm")
        dlg.position_id = p.id
        dlg.confirmed.connect(lambda pid=p.id: self.send_close(pid))
        self.confirm_dialog = dlg
        dlg.open()

    def send_close(self, position_id: str) -> bool:
        """Send ClosePosition once; repeats while one is pending (or done) are ignored."""
        if position_id in self._closed_ok:
            return False
        key = ("close", position_id)
        if self.runner.busy(key):
            return False
        snap = self.model.snapshot(position_id)
        label = snap.position.symbol if snap else position_id
        self.notify(f"Closing {label} at market…")  # before: the answer may come at once
        return self.runner.submit(
            ClosePosition(position_id, 1.0, "manual"),
            lambda res, err: self._on_close_done(position_id, label, res, err), key=key)

    def _on_close_done(self, pid: str, label: str, res: CommandResult | None,
                       err: str | None) -> None:
        if err is not None:
            self.notify(f"✖ Close {label} failed: {err}", alert=True)
            return
        self._closed_ok.add(pid)
        # the status bar only: the position leaving the book raises the close's one alert
        # (`on_position_removed`), this answer was a second beep and notice for it
        self.notify(f"✔ {label} closed{fills_text(res, self.engine.market(label))}")

    def close_all(self) -> None:
        n = self.model.rowCount()
        if self.runner.busy("close_all"):
            self.notify("Close all is already on its way")
            return
        if self.confirm_dialog is not None and self.confirm_dialog.isVisible():
            return
        text = (f"Flatten: cancel every protective order and close all {n} open "
                f"position{'s' if n != 1 else ''} with reduce-only MARKET orders, then re-check "
                f"the exchange for anything left.\n\nThis works even while automation is "
                f"paused and cannot be undone.")
        dlg = ConfirmDialog("Close all / flatten", text, f"Close all {n} now", self,
                            object_name="closeAllConfirm")
        dlg.confirmed.connect(self.send_close_all)
        self.confirm_dialog = dlg
        dlg.open()

    def send_close_all(self) -> bool:
        if self.runner.busy("close_all"):
            return False
        self.notify("Closing all positions…")
        return self.runner.submit(CloseAll("manual"), self._on_close_all_done, key="close_all")

    def _on_close_all_done(self, res: CommandResult | None, err: str | None) -> None:
        if err is not None:
            self.notify(f"✖ Close all failed: {err}", alert=True)
            return
        if res is not None and res.residual:
            self.notify(f"⚠ Close all: still open after re-check: {', '.join(res.residual)}",
                        alert=True)
            return
        # each position closed raised its own alert as it left the book (no extra one)
        self.notify(f"✔ All positions closed{fills_text(res, None, self.engine.market)}")

    # -- drag to modify ----------------------------------------------------------------------
    def _on_level_dropped(self, pid: str, kind: str, level: float) -> None:
        if not self.settings.confirm_drags:
            self.commit_level(pid, kind, level)
            return
        snap = self.model.snapshot(pid)
        if snap is None:
            return
        p = snap.position
        market = self.engine.market(p.symbol)
        ctx = DragContext(p.side, p.entry, p.qty, p.contract_size, p.fee_rate, p.initial_sl,
                          self.chart.last_price(), market)
        self.chart.propose(kind, level)
        text = f"{p.symbol}: move {consequence(kind, level, ctx)} ?"
        self.drag_bar.ask(pid, kind, level, text)
        # the level the proposal changes: if the engine moves it meanwhile, the bar says so
        self._proposal_from = (pid, kind, getattr(p, kind), text)

    def commit_level(self, pid: str, kind: str, level: float) -> bool:
        """Send one SetTargets for a dragged level; the line shows it as pending meanwhile."""
        key = ("targets", pid, kind)
        if self.runner.busy(key):  # not sent: the line must not wait for it as a proposal
            if self.chart.position_id == pid:
                self.chart.discard(kind)
            self.notify(f"✖ {LINE_TITLES[kind]} not moved: its previous change is still on "
                        f"its way — line restored")
            return False
        cmd = SetTargets(pid, sl=level) if kind == "sl" else SetTargets(pid, tp=level)
        if self.chart.position_id == pid:
            self.chart.mark_sent(kind, level)
        return self.runner.submit(
            cmd, lambda res, err: self._level_done(pid, kind, level, res, err), key=key)

    def _level_done(self, pid: str, kind: str, level: float, res: CommandResult | None,
                    err: str | None) -> None:
        v = (self.chart.resolve(kind, res, err) if self.chart.position_id == pid
             else verdict(kind, level, res, err))
        snap = self.model.snapshot(pid)
        market = self.engine.market(snap.position.symbol) if snap else None
        self.notify(verdict_message(LINE_TITLES[kind], level, v, market))

    def _drag_confirmed(self, pid: str, kind: str, level: float) -> None:
        why = self.chart.refusal(kind, level) if self.chart.position_id == pid else None
        if why is not None:  # the price crossed the proposal while the trader decided
            self.chart.discard(kind)
            self._on_drag_rejected(kind, why)
            return
        self.commit_level(pid, kind, level)

    def _drag_discarded(self, pid: str, kind: str, level: float) -> None:
        if self.chart.position_id == pid:
            self.chart.discard(kind)
        self.notify(f"{LINE_TITLES[kind]} change discarded: line restored")

    def _on_drag_rejected(self, kind: str, reason: str) -> None:
        self.notify(f"✖ {reason} — {LINE_TITLES[kind]} not moved")

    # -- per-position commands ---------------------------------------------------------------
    def _send(self, cmd: Command, done: Callable[[CommandResult | None, str | None], None]
              ) -> bool:
        return self.runner.submit(cmd, done)

    def edit_targets(self) -> None:
        snap = self.selected_snapshot()
        if snap is None:
            self.notify("Edit TP/SL: no position selected")
            return
        market = self.engine.market(snap.position.symbol)
        price = self.chart.last_price() if self.chart.position_id == snap.position.id \
            else snap.mark
        dlg = EditTargetsDialog(snap, market, price, self._send, self)
        def on_ticks(evs: list, d=dlg, sym=snap.position.symbol) -> None:
            for ev in evs:
                if ev.symbol == sym:
                    d.on_tick(ev)

        def on_positions(snaps: list, d=dlg, pid=snap.position.id) -> None:
            for s in snaps:
                if s.position.id == pid:
                    d.on_snapshot(s)

        self.bridge.ticks.connect(on_ticks)  # the newest price, while it is open
        self.bridge.positionsChanged.connect(on_positions)  # and the newest levels
        dlg.finished.connect(lambda _r: (self.bridge.ticks.disconnect(on_ticks),
                                         self.bridge.positionsChanged.disconnect(on_positions)))
        dlg.accepted.connect(lambda s=snap.position.symbol, d=dlg, m=market: self.notify(
            f"{s}: " + protection_summary(d.result, m)))
        self.dialog = dlg
        dlg.open()

    def new_order(self, symbol: str | None = None, side: Side | None = None) -> OrderDialog:
        """The order ticket (also the chart's entry point: symbol and side preset)."""
        snaps = [self.model.snapshot_at(r) for r in range(self.model.rowCount())]
        symbols = [s.position.symbol for s in snaps] + self.chart.known_symbols()
        if symbol:
            symbols.insert(0, symbol)
        dlg = OrderDialog(symbols, self.engine.market, self.chart.price_of,
                          [s.position for s in snaps], self._send, self,
                          balance=lambda: self.account.figures().wallet, side=side)
        dlg.accepted.connect(lambda d=dlg: self._opened(d.result))
        self.dialog = dlg
        dlg.open()
        return dlg

    def _opened(self, res: CommandResult | None) -> None:
        text = "Position opened" + (f" ({res.message})" if res is not None and res.message
                                    else "")
        if res is not None and res.outcomes:
            text += " · " + protection_summary(res, None)
        else:
            text = "✔ " + text
        self.notify(text)

    # -- partial close, add, reverse (pmgui/ui/trading.py) -------------------------------
    def close_part(self, fraction: float) -> None:
        self.trading.close_part(fraction)

    def close_custom(self) -> AmountDialog | None:
        return self.trading.close_custom()

    def add_to_position(self) -> AmountDialog | None:
        return self.trading.add_to_position()

    def reverse(self) -> None:
        self.trading.reverse()

    def set_automation_all(self, enable: bool) -> None:
        verb = "resumed" if enable else "paused"

        def done(res: CommandResult | None, err: str | None) -> None:
            self.notify(f"✖ automation not changed: {err}" if err
                        else f"✔ automation {verb} for all positions")

        self.runner.submit(SetAutomation(None, enable), done, key="automation_all")

    def _one_click_changed(self) -> None:
        self.settings.one_click = self.act_one_click.isChecked()
        if self._qsettings is not None:
            self.persist_settings(self._qsettings)

    def toggle_automation(self) -> None:
        snap = self.selected_snapshot()
        if snap is None:
            self._update_action_state()
            return
        p = snap.position
        enable = not p.automation
        verb = "resumed" if enable else "paused"

        def done(_res: CommandResult | None, err: str | None) -> None:
            self.notify(f"✖ {p.symbol}: automation not changed: {err}" if err
                        else f"✔ {p.symbol}: automation {verb}")
            self._update_action_state()

        self.runner.submit(SetAutomation(p.id, enable), done, key=("automation", p.id))
        self._update_action_state()

    def set_preset(self, name: str) -> None:
        snap = self.selected_snapshot()
        if snap is None:
            return
        p = snap.position

        def done(_res: CommandResult | None, err: str | None) -> None:
            self.notify(f"✖ {p.symbol}: preset not changed: {err}" if err
                        else f"✔ {p.symbol}: preset {name}")

        self.runner.submit(SetPreset(p.id, name), done, key=("preset", p.id))

    def open_settings(self) -> SettingsDialog:
        """The Settings dialog (one at a time: a second request raises the open one)."""
        dlg = self.settings_dialog
        if dlg is not None and dlg.isVisible():
            dlg.raise_()
            dlg.activateWindow()
            return dlg
        dlg = SettingsDialog(self.engine, self.settings, self.apply_settings, self._send,
                             ask=self.runner.request, keyring_backend=self.keyring_backend,
                             error_colour=self.theme.sl, parent=self)
        self.settings_dialog = dlg
        dlg.open()
        return dlg

    def _quit_confirmed(self) -> None:
        self._quit_ok = True
        self.close()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        # narrow windows: the columns that matter first, the rest stay in the chooser
        self.positions.fit_width(self.table.viewport().width() or event.size().width() - 24)
        self._regrow_docks(event.oldSize(), event.size())

    # -- panel sizes through window resizes ----------------------------------------------
    def _side_dock(self) -> QDockWidget | None:
        return next((d for d in (self.log_dock, self.history_dock, self.orders_dock)
                     if d.isVisible() and not d.isFloating()), None)

    def _dock_size(self, key: str) -> int | None:
        if key == "table":
            return self.table_dock.height() if self.table_dock.isVisible() else None
        side = self._side_dock()
        return side.width() if side is not None else None

    def _regrow_docks(self, old, new) -> None:
        """A smaller window squeezes the panels (the positions table to a row or two, the
        action log to a sliver), and Qt gives all of a larger window back to the chart: the
        panels stayed squeezed. When the window grows, a panel smaller than the trader last
        had it (before the squeeze) gets that size back."""
        want = self._dock_want
        if old.isValid():
            for key, grew, orient in (
                    ("table", new.height() > old.height(), Qt.Orientation.Vertical),
                    ("side", new.width() > old.width(), Qt.Orientation.Horizontal)):
                now = self._dock_size(key)
                dock = self.table_dock if key == "table" else self._side_dock()
                if grew and now is not None and now < want[key] and dock is not None:
                    self.resizeDocks([dock], [want[key]], orient)
        self._roomiest = (max(self._roomiest[0], new.width()),
                          max(self._roomiest[1], new.height()))
        self._win_size = new

    def eventFilter(self, obj, ev) -> bool:
        """A panel resized while the window keeps its size, once the first layout is done:
        the trader moved a splitter (or the window gave a panel back its size); unless the
        window is smaller than it has been, that size is the one to give back."""
        if (ev.type() == QEvent.Type.Resize and self._dock_noted
                and self.size() == self._win_size):
            self._note_dock_sizes()
        return False

    def _note_dock_sizes(self) -> None:
        """The panels' sizes now are the trader's (the laid-out designed or restored layout,
        a splitter moved), unless the window is smaller than it has been (a squeeze)."""
        for key, i in (("table", 1), ("side", 0)):
            size = self._dock_size(key)
            if size is not None and (self.width(), self.height())[i] >= self._roomiest[i]:
                self._dock_want[key] = size

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._dock_noted:  # once laid out at its first size
            QTimer.singleShot(0, self, self._first_layout_done)

    def _first_layout_done(self) -> None:
        self._dock_noted = True
        self._note_dock_sizes()

    def apply_settings(self, new: UiSettings) -> None:
        """Apply behaviour settings live (theme, palette, drags, sound) and persist them."""
        if new.theme not in THEMES:
            raise ValueError(f"unknown theme {new.theme!r}")
        self.settings = dataclasses.replace(new)
        for act, on in ((self.act_colour_blind, new.colour_blind), (self.act_red_up, new.red_up),
                        (self.act_confirm_drags, new.confirm_drags),
                        (self.act_drag_modifier, new.drag_modifier)):
            act.blockSignals(True)
            act.setChecked(on)
            act.blockSignals(False)
        self._drag_options_changed()
        self.apply_theme(make_theme(new.theme, colour_blind=new.colour_blind,
                                    red_up=new.red_up))
        if self._qsettings is not None:
            self.persist_settings(self._qsettings)

    def persist_settings(self, qs: QSettings) -> None:
        """The behaviour settings, in the layout's file (no secrets ever go here)."""
        for name in _PERSISTED:
            qs.setValue(f"ui/{name}", getattr(self.settings, name))
        qs.sync()

    def show_shortcuts(self) -> None:
        dlg = ShortcutsDialog(self.actions(), self)
        self.dialog = dlg
        dlg.open()

    def build_chart_menu(self, price: float) -> QMenu:
        """Right click on the chart: an entry order at that price — a limit where the price is
        better than the market, a stop where it is worse — opens the ticket with its type, side
        and price filled in (nothing is sent without the ticket), then the position's actions."""
        menu = self.build_context_menu()
        symbol = self.chart.symbol
        last = self.chart.price_of(symbol) if symbol else None
        if symbol is None or last is None or price == last:
            return menu
        first = menu.actions()[0] if menu.actions() else None
        level = fmt_price(price, self.engine.market(symbol))
        below = price < last
        for side, kind in ((Side.LONG, "limit" if below else "stop"),
                           (Side.SHORT, "stop" if below else "limit")):
            verb = "Buy" if side is Side.LONG else "Sell"
            act = QAction(f"{verb} {kind} @ {level}…", menu)
            act.setObjectName(f"chartEntry_{side.value}_{kind}")
            act.triggered.connect(
                lambda _c=False, sd=side, k=kind: self.ticket_at(symbol, sd, k, price))
            menu.insertAction(first, act)
        menu.insertSeparator(first)
        return menu

    def ticket_at(self, symbol: str, side: Side, kind: str, price: float) -> OrderDialog:
        """The order ticket for an entry order of `kind` at `price` (from the chart)."""
        dlg = self.new_order(symbol, side)
        dlg.order_type.setCurrentText(next(k for k, v in ORDER_TYPES.items() if v == kind))
        dlg.price.setText(plain_price(price, self.engine.market(symbol)))
        return dlg

    def build_context_menu(self) -> QMenu:
        """The selected row's menu: edit, automation, preset, emergency close."""
        menu = QMenu(self)
        menu.setObjectName("positionMenu")
        menu.addAction(self.act_edit)
        close = menu.addMenu("Close part")
        close.setObjectName("closePartMenu")
        for a in (*self.act_close_parts, self.act_close_custom):
            close.addAction(a)
        menu.addAction(self.act_add)
        menu.addAction(self.act_reverse)
        menu.addSeparator()
        menu.addAction(self.act_automation)
        presets = menu.addMenu("Preset")
        presets.setObjectName("presetMenu")
        snap = self.selected_snapshot()
        current = snap.position.preset if snap else None
        for name in preset_names():
            a = presets.addAction(name)
            a.setObjectName(f"preset_{name}")
            a.setCheckable(True)
            a.setChecked(name == current)
            a.triggered.connect(lambda _c=False, n=name: self.set_preset(n))
        presets.setEnabled(snap is not None)
        menu.addSeparator()
        menu.addAction(self.act_emergency)
        return menu

    def _show_context_menu(self, pos: QPoint) -> None:
        idx = self.table.indexAt(pos)
        if idx.isValid():
            self.table.selectionModel().setCurrentIndex(
                idx, QItemSelectionModel.SelectionFlag.ClearAndSelect
                | QItemSelectionModel.SelectionFlag.Rows)
        self.build_context_menu().popup(self.table.viewport().mapToGlobal(pos))

    def _update_action_state(self, *, unless_same: bool = False) -> None:
        """The actions on the selection (enabled, the automation switch's state and text).
        `unless_same` (each table flush): nothing is set while the selection's symbol and
        automation are what was shown last — other callers set it all again (a triggered
        checkable action has flipped itself, for one)."""
        if not hasattr(self, "act_automation"):
            return
        snap = self.selected_snapshot()
        has = snap is not None
        state = (snap.position.symbol, snap.position.automation) if snap is not None else None
        if unless_same and state == self._action_state:
            return
        self._action_state = state
        for a in (self.act_edit, self.act_emergency, self.act_automation, self.act_add,
                  self.act_reverse, self.act_close_custom, *self.act_close_parts):
            a.setEnabled(has)
        on = bool(snap and snap.position.automation)
        self.act_automation.setChecked(on)
        sym = snap.position.symbol.split("/")[0] if snap else ""
        self.act_automation.setText(f"Automation {sym}: on" if on else
                                    f"Automation {sym}: paused" if has
                                    else "Automation (select a position)")
        self.act_automation.setToolTip(
            f"Rules for {snap.position.symbol} only — Ctrl+P pauses or resumes this one "
            f"position; Options → pause/resume all" if has else
            "Select a position: this switch acts on one position (Options: all)")

    # -- options and layout ------------------------------------------------------------------
    def _palette_changed(self) -> None:
        self.settings.colour_blind = self.act_colour_blind.isChecked()
        self.settings.red_up = self.act_red_up.isChecked()
        self.apply_theme(make_theme(self.settings.theme, colour_blind=self.settings.colour_blind,
                                    red_up=self.settings.red_up))

    def _drag_options_changed(self) -> None:
        self.settings.confirm_drags = self.act_confirm_drags.isChecked()
        self.settings.drag_modifier = self.act_drag_modifier.isChecked()
        if self._chart is not None:
            self._chart.drag_modifier = (Qt.KeyboardModifier.ShiftModifier
                                         if self.settings.drag_modifier
                                         else Qt.KeyboardModifier.NoModifier)
        self._sync_settings_dialog()

    def _sync_settings_dialog(self) -> None:
        """Changes made from the toolbar/menu show in an open Settings dialog too."""
        dlg = getattr(self, "settings_dialog", None)
        if dlg is not None:
            dlg.show_behaviour(self.settings)

    def save_layout(self, qs: QSettings) -> None:
        """Window geometry and docks, column widths and order, sorting, palette options."""
        qs.setValue("window/geometry", self.saveGeometry())
        qs.setValue("window/state", self.saveState())
        qs.setValue("table/header", self.table.horizontalHeader().saveState())
        self.persist_settings(qs)

    def restore_layout(self, qs: QSettings) -> bool:
        """Apply a saved layout; unknown or damaged values are ignored, never fatal."""
        restored = False
        geo, state = qs.value("window/geometry"), qs.value("window/state")
        if isinstance(geo, QByteArray):
            restored |= self.restoreGeometry(geo)
        if isinstance(state, QByteArray):
            restored |= self.restoreState(state)
        hdr_state = qs.value("table/header")
        hdr = self.table.horizontalHeader()
        if isinstance(hdr_state, QByteArray) and hdr.restoreState(hdr_state):
            restored = True
            if 0 <= hdr.sortIndicatorSection() < self.model.columnCount():
                self.table.sortByColumn(hdr.sortIndicatorSection(), hdr.sortIndicatorOrder())
        # settings chosen in the app win over the config file's (as symbol rules do)
        theme = qs.value("ui/theme")
        if theme in THEMES:
            self.settings.theme = str(theme)
        for key, act in (("ui/colour_blind", self.act_colour_blind),
                         ("ui/red_up", self.act_red_up),
                         ("ui/confirm_drags", self.act_confirm_drags),
                         ("ui/drag_modifier", self.act_drag_modifier)):
            v = qs.value(key)
            if v is not None:
                act.setChecked(str(v).lower() in ("true", "1"))
        sound = qs.value("ui/sound_alerts")
        if sound is not None:
            self.settings.sound_alerts = str(sound).lower() in ("true", "1")
        one_click = qs.value("ui/one_click")  # saved when toggled (Options → One-click)
        if one_click is not None:
            self.settings.one_click = str(one_click).lower() in ("true", "1")
            self.act_one_click.setChecked(self.settings.one_click)
        self._drag_options_changed()
        self._palette_changed()
        return restored

    # -- theme -------------------------------------------------------------------------------
    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        app = QApplication.instance()
        if isinstance(app, QApplication):
            apply_theme(app, theme)
        self.positions.set_theme(theme)
        self.action_log.set_theme(theme)
        if self._chart is not None:
            self._chart.set_theme(theme)
        if hasattr(self, "history"):
            self.history.set_theme(theme)
        self.act_theme.setText("Light theme" if theme.dark else "Dark theme")
        if hasattr(self, "alert_button"):
            self.alert_button.set_theme(theme)
            self.status.set_theme(theme)
        self._sync_settings_dialog()
        danger = "#d73a49" if theme.dark else "#b31d28"
        self.toolbar.setStyleSheet(
            f"QToolButton#emergencyClose, QToolButton#closeAll {{ color: {danger}; "
            f"font-weight: bold; border: 1px solid {danger}; border-radius: 3px; "
            f"padding: 2px 8px; margin: 1px 3px; }}"
            f"QToolButton#emergencyClose:disabled {{ color: {theme.muted}; "
            f"border-color: {theme.muted}; }}")
        self.refresh_status()

    def toggle_theme(self) -> None:
        name = "light" if self.theme.dark else "dark"
        self.settings.theme = name
        self.apply_theme(make_theme(name, colour_blind=self.settings.colour_blind,
                                    red_up=self.settings.red_up))

    def quit_text(self) -> str:
        return quit_text(self.engine.exchange_id, self.engine.market,
                         [self.model.snapshot_at(r) for r in range(self.model.rowCount())])

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.ask_before_quit and not self._quit_ok and self.model.rowCount() > 0:
            event.ignore()
            if self.confirm_dialog is not None and self.confirm_dialog.isVisible():
                return
            dlg = ConfirmDialog("Quit pmgui?", self.quit_text(), "Quit anyway", self,
                                object_name="quitConfirm")
            dlg.confirmed.connect(self._quit_confirmed)
            for hook in self.quit_dialog_hooks:
                hook(dlg)
            self.confirm_dialog = dlg
            dlg.open()
            return
        if self._qsettings is not None:
            self.save_layout(self._qsettings)
        self.bridge.stop()
        self._second.stop()
        self.history.shutdown()
        super().closeEvent(event)
        if event.isAccepted():
            self.closed.emit()


def _side(side: Side) -> str:
    return "▲ LONG" if side is Side.LONG else "▼ SHORT"
