"""The action log: every rule action and engine error, newest first.

Built for a fast market: the bridge hands actions over as one list per pump, the model
inserts each list with one `beginInsertRows` and formats a row's text only when the view
asks for it (the few rows on screen), so 500 trailing moves a second cost a few appends,
not 500 × 4 widget items. The log holds at most `MAX_LOG_ROWS` rows; when it is full, the
oldest *routine* rows (successful automated SL/TP moves) go first, so what the trader must
see — errors, failures, opens, fills, reductions, closes — is never pushed out by a storm of
trailing moves (those are only dropped when the log holds nothing but must-see rows).
The position's levels themselves are always current in the table and on the chart.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from PySide6.QtCore import (
    QModelIndex,
    QPersistentModelIndex,
    Qt,
    QTimer,
)
from PySide6.QtGui import QBrush, QColor, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QAbstractItemView, QTableView, QWidget

from pmgui.domain.enums import ActionType
from pmgui.domain.models import Market
from pmgui.domain.money import valid_price
from pmgui.engine.commands import HistorySnapshot
from pmgui.engine.events import ActionTaken, ErrorEvent
from pmgui.ui.chart_text import inputs_text
from pmgui.ui.fmt import DASH, fmt_price, fmt_qty, is_num
from pmgui.ui.theme import Theme

MAX_LOG_ROWS = 2000
TRIM_SLACK = 200  # rows over the cap before trimming (trim in chunks, not per row)
COMMIT_MS = 500  # live rows reach the view at most twice a second (a human reads the log)
# the live commit's repaint comes in this many bands, one per turn (`Turns.paint_later`): in
# the GUI storm every row on screen is new at each commit, one repaint of all of them 2-3 ms
# of GUI CPU in one stretch, the log's longest
PAINT_PARTS = 2
HEADERS = ("Time", "Symbol", "Reason", "Detail")
# rows above and below the view whose cells are made with the rows on screen: one (a row
# coming into view by scrolling is made before it is painted: `ActionLogPanel` fills on every
# scroll); in a storm every row on screen is new at each commit, so each extra row is made,
# pushed off screen by the next commit and never seen
FILL_MARGIN = 1
_FLAGS = (Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEnabled
          | Qt.ItemFlag.ItemNeverHasChildren)
ROUTINE = (ActionType.MOVE_SL, ActionType.MOVE_TP)

MarketFor = Callable[[str], Market | None]
Index = QModelIndex | QPersistentModelIndex


def action_detail(ev: ActionTaken, market: Market | None) -> str:
    a = ev.action
    parts = [a.type.value, f"@ {fmt_price(a.price, market)}"]
    if a.qty is not None:
        parts.append(f"qty {fmt_qty(a.qty, market)}")
    if a.type is ActionType.MOVE_SL and a.sl is not None:
        parts.append(f"SL → {fmt_price(a.sl, market)}")
    if a.type is ActionType.MOVE_TP and a.tp is not None:
        parts.append(f"TP → {fmt_price(a.tp, market)}")
    return " ".join(parts)


def explain(ev: ActionTaken, market: Market | None) -> str:
    """An action in full, for the hover of its reason and detail: what was done, at which
    price by which rule, the inputs the rule saw, the outcome. A note without a price
    (reconciliation's, the ledger's) says no "at 0.00", and its note is not said twice."""
    a = ev.action
    head = f"{a.reason.value.replace('_', ' ')} · {a.type.value.replace('_', ' ')}"
    if a.type is ActionType.MOVE_SL and a.sl is not None:
        head += f" → {fmt_price(a.sl, market)}"
    elif a.type is ActionType.MOVE_TP and a.tp is not None:
        head += f" → {fmt_price(a.tp, market)}"
    elif a.qty is not None:
        head += f" {fmt_qty(a.qty, market)}"
    lines = [head]
    at = [f"at {fmt_price(a.price, market)}"] if valid_price(a.price) else []
    if a.rule:
        at.append(f"rule {a.rule}")
    if at:
        lines.append(" · ".join(at))
    inputs = {k: v for k, v in a.inputs.items() if not (ev.detail and v == ev.detail)}
    if inputs:
        lines.append(inputs_text(inputs, market))
    if ev.detail:
        lines.append(ev.detail)
    if not ev.ok:
        lines.append("FAILED")
    return "\n".join(lines)


def _key(ev: ActionTaken) -> tuple:
    a = ev.action
    return (round(a.ts, 3), a.position_id, a.type.value, a.reason.value, a.price)


@dataclass(slots=True)
class LogEntry:
    """One row: an action or an error; its text is made when first shown."""

    when: float
    symbol: str
    event: ActionTaken | ErrorEvent
    warn: bool
    routine: bool  # may be trimmed before must-see rows
    key: tuple | None = None  # the action's identity (so stored ones are not repeated)
    texts: tuple[str, str, str, str] | None = None
    shown: bool = False  # its cells are made (see ActionLogModel)


def entry_of(ev: ActionTaken | ErrorEvent, wall: float,
             symbol_of: Callable[[str], str | None]) -> LogEntry:
    if isinstance(ev, ErrorEvent):
        symbol = (symbol_of(ev.position_id) if ev.position_id else None) or DASH
        when = ev.ts if is_num(ev.ts) and ev.ts > 0 else wall
        return LogEntry(when, symbol, ev, True, False)
    a = ev.action
    return LogEntry(a.ts if a.ts > 0 else wall, ev.symbol, ev, not ev.ok,
                    ev.ok and a.type in ROUTINE, _key(ev) if a.ts > 0 else None)


class ActionLogModel(QStandardItemModel):
    """Rows newest first; live batches inserted at the top, stored ones at the bottom.

    The cells are `QStandardItem`s (a view paints them without calling into Python), made
    for the rows on screen (`visible`: the view's first and last row) when they are added
    and for the others when they come into view (`fill_visible`): a storm's hundreds of
    rows a second cost a list insert each, and text only for the few rows on screen."""

    def __init__(self, market_for: MarketFor, theme: Theme, *,
                 max_rows: int = MAX_LOG_ROWS, parent=None) -> None:
        super().__init__(0, len(HEADERS), parent)
        self.setHorizontalHeaderLabels(list(HEADERS))
        self._market_for = market_for
        self._rows: list[LogEntry] = []
        self._keys: set[tuple] = set()
        self._max = max_rows
        self._warn = QBrush(QColor(theme.warning))
        # a new cell is a copy of one of these (one call, not one per flag and colour)
        self._cell = QStandardItem()
        self._cell.setFlags(_FLAGS)
        self._warn_cell = self._cell.clone()
        self._warn_cell.setForeground(self._warn)
        self.trimmed = 0  # rows dropped by the cap so far (routine ones first)
        # the rows on screen, (first, last); None: none (nothing is made until shown)
        self.visible: Callable[[], tuple[int, int] | None] | None = None

    # -- our API ---------------------------------------------------------------------------
    def texts(self, r: int) -> tuple[str, str, str, str]:
        e = self._rows[r]
        if e.texts is None:
            e.texts = self._format(e)
        return e.texts

    def tooltip(self, r: int, c: int) -> str:
        """The cell's hover text; the reason and detail cells of an action explain it in full
        (what was done, the price and rule, the inputs the rule saw: the row itself has room
        for the outcome only, and without the inputs a decision could not be checked)."""
        e = self._rows[r]
        if c == 0:
            return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.when))
        ev = e.event
        if isinstance(ev, ErrorEvent):
            return ev.message
        if c >= 2:
            return explain(ev, self._market_for(ev.symbol))
        return self.texts(r)[c]

    def entry(self, r: int) -> LogEntry:
        return self._rows[r]

    def set_theme(self, theme: Theme) -> None:
        self._warn = QBrush(QColor(theme.warning))
        self._warn_cell.setForeground(self._warn)
        was = self.blockSignals(True)
        try:
            for r, e in enumerate(self._rows):
                if e.warn and e.shown:
                    for c in range(len(HEADERS)):
                        it = self.item(r, c)
                        if it is not None:
                            it.setForeground(self._warn)
        finally:
            self.blockSignals(was)
        if self._rows:
            self.dataChanged.emit(self.index(0, 0),
                                  self.index(len(self._rows) - 1, len(HEADERS) - 1),
                                  [Qt.ItemDataRole.ForegroundRole])

    def add_newest(self, entries: Sequence[LogEntry], *, trim: bool = True) -> int:
        """Put live rows on top (the last of `entries` is the newest); the same action is
        never shown twice. Returns how many were added. Without `trim` the log may stay
        over its cap until `trim` is called (`over_cap`)."""
        fresh = self._unseen(entries)
        if not fresh:
            return 0
        fresh.reverse()
        self._rows[0:0] = fresh
        self.insertRows(0, len(fresh))  # empty rows: made when shown
        if trim:
            self.trim()
        self.fill_visible()
        return len(fresh)

    @property
    def over_cap(self) -> bool:
        """More rows than the cap and its slack: `trim` has work to do."""
        return len(self._rows) > self._max + TRIM_SLACK

    def trim(self) -> None:
        """Back to the cap if over it and its slack (see `_trim`)."""
        if self.over_cap:
            self._trim()

    def add_oldest(self, entries: Iterable[LogEntry]) -> list[LogEntry]:
        """Stored rows under the live ones; returns those kept. Over the cap, the trim drops
        routine rows first — live or stored — so a stored close, fill or failure is not kept
        out by a storm of trailing moves that reached the log before the history did."""
        fresh = self._unseen(entries)
        if not fresh:
            return fresh
        n = len(self._rows)
        self._rows.extend(fresh)
        self.insertRows(n, len(fresh))
        if self.over_cap:
            self._trim()
            kept = {id(e) for e in self._rows}
            fresh = [e for e in fresh if id(e) in kept]
        self.fill_visible()
        return fresh

    def fill_visible(self) -> None:
        """Make the cells of the rows on screen (and a few around) that have none yet."""
        span = self.visible() if self.visible is not None else None
        if span is None or not self._rows:
            return
        first, last = max(0, span[0] - FILL_MARGIN), min(len(self._rows) - 1,
                                                          span[1] + FILL_MARGIN)
        todo = [r for r in range(first, last + 1) if not self._rows[r].shown]
        if not todo:
            return
        was = self.blockSignals(True)
        try:
            for r in todo:
                self._fill(r)
        finally:
            self.blockSignals(was)
        self.dataChanged.emit(self.index(todo[0], 0), self.index(todo[-1], len(HEADERS) - 1))

    def _fill(self, r: int) -> None:
        e = self._rows[r]
        e.shown = True
        texts = self.texts(r)
        cell = self._warn_cell if e.warn else self._cell
        why = None  # the reason and detail cells share one explanation (made once)
        for c, text in enumerate(texts):
            it = cell.clone()
            it.setText(text)
            if c < 2 or why is None:
                tip = self.tooltip(r, c)
                if c >= 2:
                    why = tip
            it.setToolTip(tip if c < 2 else why)
            self.setItem(r, c, it)

    def _unseen(self, entries: Iterable[LogEntry]) -> list[LogEntry]:
        out: list[LogEntry] = []
        keys = self._keys
        for e in entries:
            if e.key is not None:
                if e.key in keys:
                    continue
                keys.add(e.key)
            out.append(e)
        return out

    def _trim(self) -> None:
        """Back to the cap: the oldest routine rows go first, then the oldest of the rest.
        Removed in runs of rows from the bottom up (selection and scroll survive)."""
        rows = self._rows
        excess = len(rows) - self._max
        drop: set[int] = set()
        for i in range(len(rows) - 1, -1, -1):  # oldest first
            if len(drop) == excess:
                break
            if rows[i].routine:
                drop.add(i)
        i = len(rows) - 1
        while len(drop) < excess:
            if i not in drop:
                drop.add(i)
            i -= 1
        for i in drop:
            key = rows[i].key
            if key is not None:
                self._keys.discard(key)
        runs: list[tuple[int, int]] = []  # (first, count), from the bottom up
        for i in sorted(drop, reverse=True):
            if runs and runs[-1][0] == i + 1:
                runs[-1] = (i, runs[-1][1] + 1)
            else:
                runs.append((i, 1))
        for first, count in runs:
            del self._rows[first:first + count]
            self.removeRows(first, count)
        self.trimmed += len(drop)

    def _format(self, e: LogEntry) -> tuple[str, str, str, str]:
        hhmmss = time.strftime("%H:%M:%S", time.localtime(e.when))
        ev = e.event
        if isinstance(ev, ErrorEvent):
            return (hhmmss, e.symbol, "⚠ error", ev.message)
        detail = ev.detail or action_detail(ev, self._market_for(ev.symbol))
        if not ev.ok:
            detail = f"FAILED · {detail}"
        return (hhmmss, e.symbol, ev.action.reason.value, detail)


class ActionLogPanel(QTableView):
    """Every action and engine error, newest first; stored ones below the live ones.

    Live rows are collected as the bridge hands them on and reach the view at most every
    `COMMIT_MS` (a human reads the log; a storm must not repaint it at every pump), and at
    once when the bridge is flushed (`Bridge.flushed`)."""

    def __init__(self, bridge, market_for: MarketFor, theme: Theme,
                 symbol_of: Callable[[str], str | None],
                 wall_clock: Callable[[], float] = time.time,
                 parent: QWidget | None = None, *, max_rows: int = MAX_LOG_ROWS) -> None:
        super().__init__(parent)
        self.setObjectName("actionLog")
        self.setAccessibleName("Action log, newest first")
        self.log_model = ActionLogModel(market_for, theme, max_rows=max_rows, parent=self)
        self.setModel(self.log_model)
        self.log_model.visible = self._visible_rows
        self.verticalScrollBar().valueChanged.connect(self._fill)
        self.log_model.layoutChanged.connect(self._fill)
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setDefaultSectionSize(
            self.verticalHeader().minimumSectionSize() + 6)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setWordWrap(False)
        self.horizontalHeader().setStretchLastSection(True)
        for c, w in enumerate((64, 118, 118)):
            self.setColumnWidth(c, w)
        self._symbol_of = symbol_of
        self._wall = wall_clock
        self._pending: list[LogEntry] = []
        self._commit = QTimer(self)
        self._commit.setSingleShot(True)
        self._commit.setInterval(COMMIT_MS)
        # the commit runs on a turn of its own (`Turns`): its timer often comes due in the
        # same pass as the bridge's, and the two ran in one stretch
        self._turns = bridge.turns
        self._commit.timeout.connect(lambda: self._turns.later(("actionLog", id(self)),
                                                              self._commit_turn, owner=self))
        self.seeded = False
        self._trim_later = False  # (set by _commit_turn around its commit)
        bridge.actions.connect(self.on_actions)
        bridge.error.connect(self.on_error)
        bridge.flushed.connect(self.commit)

    def _visible_rows(self) -> tuple[int, int] | None:
        if not self.isVisible():
            return None
        n = self.log_model.rowCount()
        first = self.rowAt(0)
        if n == 0:
            return None
        if first < 0:
            first = 0
        last = self.rowAt(self.viewport().height() - 1)
        return first, (last if last >= 0 else n - 1)

    def _fill(self, *_a: object) -> None:
        self.log_model.fill_visible()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.log_model.fill_visible()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.log_model.fill_visible()

    # -- live ------------------------------------------------------------------------------
    def on_actions(self, evs: list[ActionTaken]) -> None:
        wall = self._wall()
        self._pending.extend(entry_of(ev, wall, self._symbol_of) for ev in evs)
        self._schedule()

    def on_error(self, ev: ErrorEvent) -> None:
        self._pending.append(entry_of(ev, self._wall(), self._symbol_of))
        self._schedule()

    def _schedule(self) -> None:
        if not self._commit.isActive():
            self._commit.start()

    def commit(self) -> None:
        """Show the collected live rows now.

        The new rows are laid out here, not on the view's own zero timer: the repaint they
        cause (every row on screen moves down, ~5 ms of GUI CPU at 500 positions) then
        follows the commit in its own turn. Laid out by Qt a pass later, it ran beside the
        job that pass held — in the GUI storm most often the table's flush, one stretch of
        both (`Turns`). On the commit's own turn (`_commit_turn`) the rows over the cap
        are dropped on a turn after it (`_trim_turn`)."""
        self._commit.stop()
        if self._pending:
            batch, self._pending = self._pending, []
            model = self.log_model
            later = self._trim_later
            if model.add_newest(batch, trim=not later) and self.isVisible():
                self.executeDelayedItemsLayout()
            if later and model.over_cap:
                self._turns.later(("actionLogTrim", id(self)), self._trim_turn, owner=self)

    def _commit_turn(self) -> None:
        """The live commit on its turn, its repaint (every row on screen, 5–8 ms of GUI CPU
        in a storm) held for the next turns, in `PAINT_PARTS` bands (`Turns.paint_later`),
        and the trim to the cap
        on a turn after (in the GUI storm every second commit trimmed, 0.8-1.3 ms of GUI
        CPU, a third to a half of the commit's stretch: the rows removed are off screen,
        the view's bookkeeping of them grows with the rows in the log)."""
        if self._pending:
            self._turns.paint_later(self.viewport(), parts=PAINT_PARTS)
        self._trim_later = True
        try:
            self.commit()
        finally:
            self._trim_later = False

    def _trim_turn(self) -> None:
        self.log_model.trim()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def log_action(self, ev: ActionTaken, *, newest: bool) -> bool:
        """Add one row now (at the top for live actions, at the bottom for older ones loaded
        from the store). False if the same action is already shown."""
        self.commit()
        e = entry_of(ev, self._wall(), self._symbol_of)
        if newest:
            return self.log_model.add_newest([e]) == 1
        return bool(self.log_model.add_oldest([e]))

    def seed(self, data: HistorySnapshot) -> list[ActionTaken]:
        """First history answer: stored actions under the live ones; returns those added."""
        if self.seeded:
            return []
        self.seeded = True
        self.commit()
        wall = self._wall()
        added = self.log_model.add_oldest(entry_of(ev, wall, self._symbol_of)
                                          for ev in data.actions)
        return [e.event for e in added if isinstance(e.event, ActionTaken)]

    # -- reading (tests, accessibility) ----------------------------------------------------
    def rowCount(self) -> int:
        return self.log_model.rowCount()

    def text(self, row: int, column: int) -> str:
        return self.log_model.texts(row)[column]

    def tooltip(self, row: int, column: int) -> str:
        return self.log_model.tooltip(row, column)

    def is_warning(self, row: int) -> bool:
        return self.log_model.entry(row).warn

    def set_theme(self, theme: Theme) -> None:
        self.log_model.set_theme(theme)
