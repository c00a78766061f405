"""Dragging levels on the chart: what a drag means and the controller that runs it.

The `DragController` listens to the lines' and tags' signals (started / moved / finished /
cancelled) and drives the line's `LineMachine`. While a drag lasts:
- the view's range is frozen (auto-range off on both axes, restored after the drop), so the
  scale never moves under the cursor: a line moves exactly as the hand moves from where it
  was grabbed (a tag puts its level under the cursor), snapped to the tick size;
- Esc anywhere in the application or a right click cancels and restores the line;
- dragging out of the entry line creates a missing SL or TP (the side of the entry the
  cursor is on decides which, as in MT5 and TradingView).
A level that would trigger at once cannot be dropped (`dragRejected` says why); a drop where
the line started does nothing; any other drop leaves the line `proposed` and emits
`levelDropped` — the owner sends it (`ChartWidget.mark_sent`) or discards it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, QPointF, Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QApplication

from pmgui.domain.enums import Side
from pmgui.domain.models import Market
from pmgui.domain.money import pnl_r, unrealized_pnl, valid_price
from pmgui.ui.chart_state import LineState
from pmgui.ui.fmt import fmt_money, fmt_pct, fmt_price, fmt_r

if TYPE_CHECKING:
    from pmgui.ui.chart import ChartWidget

LINE_TITLES = {"entry": "Entry", "sl": "SL", "tp": "TP", "trailing": "Trail",
               "liquidation": "Liq", "last": "Last"}


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
    # the position's liquidation price: a stop beyond it never triggers (None: unknown)
    liquidation: float | None = None


def consequence(kind: str, level: float, ctx: DragContext) -> str:
    """`SL 41,250 · −1.8% · −$92 · −0.9R`: what the trader gets if price reaches `level`.

    The percentage is the price move from entry (direction-aware), the money is the P/L of
    the whole position at that level net of fees, R relative to the initial stop.
    """
    move = ctx.side.dir * (level - ctx.entry) / ctx.entry if valid_price(ctx.entry) else None
    pnl = unrealized_pnl(ctx.side, ctx.entry, level, ctx.qty, ctx.contract_size, ctx.fee_rate)
    r = pnl_r(ctx.side, ctx.entry, level, ctx.initial_sl)
    quote = ctx.market.quote if ctx.market is not None else "USDT"
    parts = [f"{LINE_TITLES[kind]} {fmt_price(level, ctx.market)}",
             fmt_pct(move, _shown_decimals(move * 100 if move is not None else None)),
             fmt_money(pnl, quote, 0 if abs(pnl) >= 100 else 2)]
    if r is not None:
        parts.append(fmt_r(r, _shown_decimals(r)))
    return " · ".join(parts)


def _shown_decimals(value: float | None, most: int = 3) -> int:
    """One decimal, or as many more (up to `most`) as a small non-zero value needs not to
    read 0.0 — a tight stop's −0.05% lost its sign and size."""
    d = 1
    if value is None or not math.isfinite(value) or value == 0:
        return d
    while d < most and round(abs(value), d) == 0:
        d += 1
    return d


def trigger_reason(kind: str, level: float, ctx: DragContext) -> str | None:
    """Why `level` cannot be dropped (it would trigger at once, or it is a stop the
    position would be liquidated before reaching), or None if it can."""
    why = liquidation_reason(kind, level, ctx)
    if why is not None:
        return why
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


def liquidation_reason(kind: str, level: float, ctx: DragContext) -> str | None:
    """Why a stop at `level` protects nothing: at or beyond the liquidation price (below it
    for a long, above it for a short) the venue liquidates the position first."""
    liq = ctx.liquidation
    if kind != "sl" or liq is None or not valid_price(liq):
        return None
    if (level <= liq) if ctx.side is Side.LONG else (level >= liq):
        return (f"{LINE_TITLES[kind]} {fmt_price(level, ctx.market)} is beyond the "
                f"liquidation price {fmt_price(liq, ctx.market)}: the position would be "
                f"liquidated before the stop triggers")
    return None


def stale_reason(kind: str, level: float, shown: float | None, before: float | None,
                 now: float | None, ctx: DragContext, tol: float) -> str | None:
    """Why a drop is not sent because the engine moved the same level during the drag
    (a trailing stop; `before` → `now`): the drop would move the engine's new level the
    other way than the trader dragged the line from where it was shown (`shown`), the
    line under the cursor having hidden that move — tightening a stop the engine has
    tightened further loosens it. None: the drop still does what was meant (or the engine
    did not move the level)."""
    name = LINE_TITLES[kind]
    base = before if before is not None else shown  # (a level the engine has not shown yet)
    if now is None or (base is not None and abs(now - base) <= tol):
        return None
    if base is None or shown is None:  # created out of the entry line meanwhile
        return (f"the engine set {name} to {fmt_price(now, ctx.market)} during the drag: "
                f"drag its line")
    dragged, effect = level - shown, level - now
    if dragged * effect > 0:
        return None
    return (f"the engine moved {name} to {fmt_price(now, ctx.market)} during the drag: "
            f"{fmt_price(level, ctx.market)} would move it {'down' if effect < 0 else 'up'}"
            f", not {'up' if dragged > 0 else 'down'} as dragged")


def created_kind(side: Side, entry: float, y: float) -> str:
    """Dragging out of the entry line: below a long's entry is its stop, above its target
    (mirrored for a short)."""
    below = y < entry
    return "sl" if below == (side is Side.LONG) else "tp"


class DragController(QObject):
    """Owns every drag on one chart (see the module docstring)."""

    def __init__(self, chart: ChartWidget) -> None:
        super().__init__(chart)
        self.chart = chart
        self.item = None  # the LevelLine / LevelTag being dragged
        self.kind: str | None = None  # the level being changed ("sl"/"tp")
        self.creating = False  # dragged out of the entry line
        self._saved_auto: list | None = None
        self.frozen_range: tuple | None = None  # the view range held during the drag
        # what the dragged line was when the drag began (LineMachine.memo; None: created)
        self.before: tuple | None = None
        self.engine_start: float | None = None  # the engine's level when the drag began
        # the grabbed line's level minus the price where the button went down: a line is
        # grabbed within a few pixels of it, and without the offset the first move snapped
        # it to the cursor (a held click with a 1 px tremor moved a stop by up to 5 px)
        self.grab_offset = 0.0

    @property
    def active(self) -> bool:
        return self.item is not None

    def attach(self, item) -> None:
        item.sigStarted.connect(self._started)
        item.sigMoved.connect(self._moved)
        item.sigFinished.connect(self._finished)
        item.sigCancelled.connect(lambda _item: self.cancel())

    # -- gesture -----------------------------------------------------------------------------
    def _started(self, item, pos: QPointF) -> None:
        chart = self.chart
        if chart.position_id is None or self.active:
            item.abort()
            return
        self.item = item
        self.creating = item.kind == "entry"
        self.kind = None
        self.grab_offset = 0.0
        # a LevelTag knows its `line` (chart_items is not imported here: it loads
        # pyqtgraph, which waits until after the first frame)
        if not self.creating and not hasattr(item, "line"):
            # a tag (possibly stacked away from its level, or at the view's edge for a level
            # out of view) puts the level under the cursor; a line keeps where it was held
            start, y = chart.level_of(item.kind), chart.vb.mapSceneToView(pos).y()
            if start is not None and math.isfinite(y):
                self.grab_offset = start - y
        if not self.creating:
            self.kind = item.kind
            m = chart.machine(item.kind)
            self.before = m.memo()
            self.engine_start = chart.engine_level(item.kind)
            m.start_drag(chart.level_of(item.kind))
        self._freeze()
        app = QApplication.instance()
        if app is not None:
            app.installEventFilter(self)
        chart.plot.setFocus()
        chart.dragStarted.emit(item.kind)

    def _moved(self, item, pos: QPointF) -> None:
        if item is not self.item:
            return
        chart = self.chart
        y = chart.vb.mapSceneToView(pos).y() + self.grab_offset
        if not math.isfinite(y) or y <= 0:
            return
        level = chart.snap_level(y)
        if not valid_price(level):
            return
        if self.creating:
            snap = chart.snapshot
            assert snap is not None
            want = created_kind(snap.position.side, snap.position.entry, level)
            if want != self.kind:
                if self.kind is not None:
                    chart.machine(self.kind).cancel()
                    chart.refresh_levels()
                self.kind = None
                if want in chart.missing_levels():  # only a missing level can be created
                    self.kind = want
                    chart.machine(want).start_drag(None)
            if self.kind is None:
                chart.show_entry_hint(want)
                return
        assert self.kind is not None
        chart.machine(self.kind).move(level)
        chart.refresh_levels()

    def _finished(self, item, _pos: QPointF) -> None:
        if item is not self.item:
            return
        chart = self.chart
        kind, before, engine_start = self.kind, self.before, self.engine_start
        self._end()
        if kind is None:  # an entry drag that created nothing
            chart.refresh_levels()
            return
        m = chart.machine(kind)
        level = m.level
        ctx = chart.context()
        reason = trigger_reason(kind, level, ctx) if ctx is not None and level else None
        if reason is None and ctx is not None and level:
            reason = stale_reason(kind, level, m.start, engine_start,
                                  chart.engine_level(kind), ctx, chart.tolerance())
        if level is None or reason is not None or level == m.start or ctx is None:
            self._restore(kind, before)
            chart.refresh_levels()
            if reason is not None:
                chart.dragRejected.emit(kind, reason)
            return
        m.drop(level)
        chart.refresh_levels()
        pid = chart.position_id
        assert pid is not None
        chart.levelDropped.emit(pid, kind, float(level))

    def cancel(self) -> None:
        """Esc / right click / another position shown: restore the line, ignore the rest."""
        if not self.active:
            return
        item, kind, before = self.item, self.kind, self.before
        item.abort()
        self._end()
        if kind is not None:
            self._restore(kind, before)
        self.chart.refresh_levels()
        self.chart.dragCancelled.emit(kind or item.kind)

    def _restore(self, kind: str, before: tuple | None) -> None:
        """A drag that changed nothing: the line is what it was before it — the engine's
        level, the proposal still awaiting the trader's decision (the confirm bar stays
        open for it, so the line must keep showing it), or a result with its warning;
        then the newest snapshot settles a result as it would have during the drag."""
        chart = self.chart
        m = chart.machine(kind)
        if m.state is not LineState.DRAGGING:
            return
        if before is None:  # created out of the entry line: nothing was there
            m.cancel()
            return
        m.restore(before)
        snap = chart.snapshot
        if snap is not None:
            m.settle(chart.engine_level(kind), snap.ts, chart.tolerance())

    def _end(self) -> None:
        self.item = None
        self.before = None
        self.engine_start = None
        self.creating = False
        self.kind = None
        self._unfreeze()
        app = QApplication.instance()
        if app is not None:
            app.removeEventFilter(self)

    # -- frozen view -------------------------------------------------------------------------
    def _freeze(self) -> None:
        vb = self.chart.vb
        self._saved_auto = list(vb.state["autoRange"])
        vb.disableAutoRange()
        self.frozen_range = tuple(tuple(r) for r in vb.viewRange())

    def _unfreeze(self) -> None:
        vb = self.chart.vb
        saved, self._saved_auto = self._saved_auto, None
        self.frozen_range = None
        if saved is None:
            return
        for axis, enable in zip((vb.XAxis, vb.YAxis), saved, strict=True):
            if enable:
                vb.enableAutoRange(axis=axis, enable=enable)

    def eventFilter(self, obj: QObject, ev: QEvent) -> bool:
        """While a line is dragged, Esc anywhere in the app cancels the drag."""
        if not (self.active and isinstance(ev, QKeyEvent) and ev.key() == Qt.Key.Key_Escape):
            return False
        if ev.type() == QEvent.Type.ShortcutOverride:
            ev.accept()  # Esc is the drag's, not a shortcut's (e.g. discarding a proposal)
            return True
        if ev.type() == QEvent.Type.KeyPress:
            self.cancel()
            return True
        return False
