"""The positions table: a model with declarative columns and incremental updates.

Each column is one `Column` value (title, raw value getter, formatter, alignment, tone),
so adding a column is one line and sorting, display and colouring cannot disagree: the
proxy sorts on the raw value, the view shows the formatted text.

Updates are incremental: a new snapshot of a known position emits `dataChanged` only over
the columns whose text changed; new positions are inserted, closed ones removed. The model
is never reset per tick, so selection, scroll position and sorting survive live updates.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetrics, QPalette
from PySide6.QtWidgets import QStyledItemDelegate, QStyleOptionViewItem

from pmgui.domain.enums import Protection, Side
from pmgui.domain.models import Market
from pmgui.engine.events import PositionSnapshot
from pmgui.ui.figures import Figures, figures
from pmgui.ui.fmt import (
    DASH,
    fmt_age,
    fmt_money,
    fmt_pct,
    fmt_price,
    fmt_qty,
    fmt_r,
    is_num,
)
from pmgui.ui.theme import Theme, make_theme, tabular_font

SORT_ROLE = Qt.ItemDataRole.UserRole + 1  # the raw value a column sorts by
ID_ROLE = Qt.ItemDataRole.UserRole + 2  # the position id of a row
SNAPSHOT_ROLE = Qt.ItemDataRole.UserRole + 3  # the PositionSnapshot of a row
CELL_ROLE = Qt.ItemDataRole.UserRole + 4  # (text, foreground, font, alignment) in one call

RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
LEFT = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
CENTER = Qt.AlignmentFlag.AlignCenter

Index = QModelIndex | QPersistentModelIndex


@dataclass(frozen=True, slots=True)
class Row:
    """What one table row knows: the newest snapshot and the market it trades on."""

    snap: PositionSnapshot
    market: Market | None
    _fig: Figures | None = field(default=None, compare=False, repr=False)

    @property
    def quote(self) -> str:
        return self.market.quote if self.market is not None else "USDT"

    @property
    def fig(self) -> Figures:
        f = self._fig
        if f is None:  # computed once per snapshot, read by several columns
            f = figures(self.snap, self.market)
            object.__setattr__(self, "_fig", f)
        return f


@dataclass(frozen=True, slots=True)
class Column:
    """One column, declared: `value` gives the raw (sortable) value, `fmt` its text.

    `tone` maps the raw value to +1 (up colour), −1 (down colour), 2 (warning) or 0
    (plain); colour only ever repeats what the text already says with a sign or symbol.
    """

    key: str
    title: str
    value: Callable[[Row, float], object]
    fmt: Callable[[object, Row], str]
    align: Qt.AlignmentFlag = RIGHT
    numeric: bool = True
    tone: Callable[[object, Row], int] | None = None
    tip: str = ""
    live: bool = False  # changes with the clock, not with snapshots (age)
    default: bool = True  # shown unless the trader hides it (the column chooser)


def _sign_tone(v: object, _row: Row) -> int:
    if not is_num(v):
        return 0
    return 1 if v > 0 else (-1 if v < 0 else 0)  # type: ignore[operator]


def _side_text(v: object, _row: Row) -> str:
    return "▲ LONG" if v == Side.LONG.value else "▼ SHORT"


def _side_tone(v: object, _row: Row) -> int:
    return 1 if v == Side.LONG.value else -1


_BADGE = {
    Protection.ON_EXCHANGE.value: "● exchange",
    Protection.LOCAL_ONLY.value: "◐ local only",
    Protection.UNPROTECTED.value: "○ UNPROTECTED",
}


def _badge_tone(v: object, _row: Row) -> int:
    return 0 if v == Protection.ON_EXCHANGE.value else 2


def _preset_text(v: object, row: Row) -> str:
    name = str(v)
    return name if row.snap.position.automation else f"{name} ‖ paused"


def _liq_tone(v: object, _row: Row) -> int:
    return 2 if is_num(v) and v < 0.05 else 0  # type: ignore[operator]


def _margin_mode(row: Row) -> str:
    pos = row.snap.position
    mode = "isolated" if pos.exchange == "paper" else (pos.margin_mode or "—")
    return f"{mode} · hedge" if pos.hedge else mode


def fmt_amount(v: float | None, quote: str) -> str:
    """An unsigned amount of money (notional, margin): `12,345.67`."""
    if not is_num(v):
        return DASH
    return f"{v:,.2f}"


def _mark_text(v: object, row: Row) -> str:
    text = fmt_price(v, row.market)  # type: ignore[arg-type]
    return f"⚠ {text}" if row.snap.stale and text != DASH else text


def _price(getter: Callable[[Row], float | None]) -> Callable[[Row, float], object]:
    return lambda row, _now: getter(row)


def _fmt_price(v: object, row: Row) -> str:
    return fmt_price(v, row.market)  # type: ignore[arg-type]


COLUMNS: tuple[Column, ...] = (
    Column("symbol", "Symbol", lambda r, _n: r.snap.position.symbol, lambda v, _r: str(v),
           LEFT, numeric=False),
    Column("side", "Side", lambda r, _n: r.snap.position.side.value, _side_text, LEFT,
           numeric=False, tone=_side_tone),
    Column("qty", "Qty", lambda r, _n: r.snap.position.qty,
           lambda v, r: fmt_qty(v, r.market)),  # type: ignore[arg-type]
    Column("entry", "Entry", _price(lambda r: r.snap.position.entry), _fmt_price),
    Column("mark", "Mark", _price(lambda r: r.snap.mark), _mark_text,
           tip="Mark price; ⚠ marks a price older than the allowed age"),
    Column("pnl", "P/L", lambda r, _n: r.fig.pnl,
           lambda v, r: fmt_money(v, r.quote), tone=_sign_tone,  # type: ignore[arg-type]
           tip="Unrealized profit/loss in quote currency, net of the entry fees paid and "
               "the estimated exit fee"),
    Column("roi", "ROI %", lambda r, _n: r.fig.roi, lambda v, _r: fmt_pct(v),  # type: ignore[arg-type]
           tone=_sign_tone, tip="Net P/L on the initial margin (after fees); the exchange's "
                                "ROE, before fees, is in the cell's tooltip"),
    Column("r", "R", lambda r, _n: r.fig.r, lambda v, _r: fmt_r(v),  # type: ignore[arg-type]
           tone=_sign_tone, tip="Net P/L in multiples of the initial risk "
                                "(|entry − initial SL| × qty), after fees"),
    Column("sl", "SL", _price(lambda r: r.snap.position.sl), _fmt_price),
    Column("tp", "TP", _price(lambda r: r.snap.position.tp), _fmt_price),
    Column("trailing", "Trailing", _price(lambda r: r.snap.position.trailing), _fmt_price),
    Column("liquidation", "Liq.", _price(lambda r: r.snap.position.liquidation), _fmt_price,
           tip="Liquidation price"),
    Column("liq_dist", "To liq.", lambda r, _n: r.fig.liq_distance,
           lambda v, _r: fmt_pct(v, 1).lstrip("+"), tone=_liq_tone,  # type: ignore[arg-type]
           tip="How far the mark may still move against the position before liquidation "
               "(% of the mark); ⚠ under 5 %"),
    Column("notional", "Notional", lambda r, _n: r.fig.notional,
           lambda v, r: fmt_amount(v, r.quote),  # type: ignore[arg-type]
           tip="Position value at the mark price (qty × mark × contract size)"),
    Column("margin", "Margin", lambda r, _n: r.fig.margin,
           lambda v, r: fmt_amount(v, r.quote),  # type: ignore[arg-type]
           tip="Initial margin held for the position (entry value / leverage)"),
    Column("funding", "Funding", lambda r, _n: r.snap.position.funding,
           lambda v, r: fmt_money(v, r.quote) if is_num(v) else DASH,  # type: ignore[arg-type]
           tone=_sign_tone,
           tip="Funding received (+) or paid (−) by this position so far; — where the venue "
               "does not report it per position"),
    Column("leverage", "Lev.", lambda r, _n: r.snap.position.leverage,
           lambda v, _r: f"{v:g}×" if is_num(v) else DASH, tip="Leverage"),
    Column("mode", "Mode", lambda r, _n: _margin_mode(r), lambda v, _r: str(v), LEFT,
           numeric=False, default=False,
           tip="Margin mode: isolated (the paper venue) or as the exchange reports it"),
    Column("preset", "Preset", lambda r, _n: r.snap.position.preset, _preset_text, LEFT,
           numeric=False),
    Column("protection", "Protection", lambda r, _n: r.snap.protection.value,
           lambda v, _r: _BADGE.get(str(v), str(v)), LEFT, numeric=False, tone=_badge_tone,
           tip="Protective orders: on the exchange, local only, or none"),
    Column("age", "Age", lambda r, now: now - r.snap.position.opened_at,
           lambda v, _r: fmt_age(v), live=True),  # type: ignore[arg-type]
)

COLUMN_KEYS = tuple(c.key for c in COLUMNS)
# the columns that matter first: kept when the window is narrow (1024 px)
ESSENTIAL = ("symbol", "side", "qty", "entry", "mark", "pnl", "roi", "r", "sl", "tp",
             "liq_dist", "protection")


def column_index(key: str) -> int:
    return COLUMN_KEYS.index(key)


@dataclass(slots=True)
class _Cached:
    row: Row
    texts: list[str | None] = field(default_factory=list)  # None: not formatted yet
    values: tuple[object, ...] = field(default_factory=tuple)  # raw values the texts show
    sig: tuple[object, ...] = ()  # what else the texts depend on (market, staleness, ...)
    stale: bool = False  # `row` is newer than `values`: compared when next shown
    tones: list[object] = field(default_factory=list)  # brush per cell; _UNSET: not yet


_UNSET = object()
# what follows the mark when the position itself did not change (figures.py)
_MARK_KEYS = ("mark", "pnl", "roi", "r", "liq_dist", "notional")
_LEVEL_KEYS = ("sl", "tp", "trailing", "liquidation", "liq_dist")  # follow the stop levels


def _levels(p) -> tuple:
    return (p.sl, p.tp, p.trailing, p.liquidation)


def _shown(p) -> tuple:
    """The position's fields the table shows or computes from, besides its levels (rule
    memory — peaks, best price, flags — changes with every tick and shows nothing)."""
    return (p.symbol, p.side, p.qty, p.entry, p.leverage, p.opened_at, p.initial_qty,
            p.initial_sl, p.fee_rate, p.contract_size, p.preset, p.automation, p.fees_paid,
            p.exchange, p.margin_mode, p.hedge, p.funding)


def _merge(blocks: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Column blocks sorted, overlapping or touching ones joined."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(blocks):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _sig(row: Row) -> tuple[object, ...]:
    return (id(row.market), row.snap.stale, row.snap.position.automation)


# roles as plain ints: comparing with the enum members costs more than the whole lookup
_DISPLAY = int(Qt.ItemDataRole.DisplayRole)
_ALIGN = int(Qt.ItemDataRole.TextAlignmentRole)
_FOREGROUND = int(Qt.ItemDataRole.ForegroundRole)
_FONT = int(Qt.ItemDataRole.FontRole)
_TOOLTIP = int(Qt.ItemDataRole.ToolTipRole)
_ACCESSIBLE = int(Qt.ItemDataRole.AccessibleTextRole)
_SORT = int(SORT_ROLE)
_ID = int(ID_ROLE)
_SNAPSHOT = int(SNAPSHOT_ROLE)
_CELL = int(CELL_ROLE)


class PositionsModel(QAbstractTableModel):
    """Open positions, one row each, keyed by position id."""

    def __init__(self, market_for: Callable[[str], Market | None] | None = None, *,
                 theme: Theme | None = None, clock: Callable[[], float] = time.time,
                 columns: Sequence[Column] = COLUMNS, parent=None) -> None:
        super().__init__(parent)
        self._market_for = market_for or (lambda _s: None)
        self._markets: dict[str, Market] = {}
        self._columns = tuple(columns)
        self._rows: list[_Cached] = []
        self._index: dict[str, int] = {}
        self._clock = clock
        self._theme = theme or make_theme("dark")
        self._font = tabular_font()
        self._protection_detail: dict[str, str] = {}
        self._bold = QFont(self._font)
        self._bold.setBold(True)
        self._brushes: dict[str, QBrush] = {}
        self._aligns = [int(col.align) for col in self._columns]
        self._align_flags = [Qt.AlignmentFlag(a) for a in self._aligns]
        keys = [col.key for col in self._columns]
        follow = [c for c, k in enumerate(keys) if k in _MARK_KEYS]
        blocks: list[tuple[int, int]] = []  # contiguous runs of the columns following the mark
        for c in follow:
            if blocks and blocks[-1][1] == c - 1:
                blocks[-1] = (blocks[-1][0], c)
            else:
                blocks.append((c, c))
        self._mark_blocks = tuple(blocks) or ((0, len(keys) - 1),)
        lv = [c for c, k in enumerate(keys) if k in _LEVEL_KEYS]
        self._level_blocks = tuple(_merge([(c, c) for c in lv])) or ((0, len(keys) - 1),)
        self._protection_col = keys.index("protection") if "protection" in keys else 0
        self._fonts = [self._bold if col.key == "symbol" else self._font if col.numeric
                       else None for col in self._columns]

    # -- Qt model API ------------------------------------------------------------------------
    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._columns)

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(self._columns):
            return None
        col = self._columns[section]
        if role == Qt.ItemDataRole.DisplayRole:
            return col.title
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(col.align)
        if role == Qt.ItemDataRole.ToolTipRole:
            return col.tip or None
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        # The view asks ~7 roles of every visible cell at each paint: keep this path short
        # (ints, cached texts and brushes) — it is most of the table's cost in a storm.
        r = index.row()
        rows = self._rows
        if not 0 <= r < len(rows):
            return None
        role = int(role)
        c = index.column()
        cached = rows[r]
        if cached.stale:
            self._refresh(cached)
        if role == _CELL:  # what the delegate paints: one call per cell, not seven
            col = self._columns[c]
            text = (col.fmt(col.value(cached.row, self._clock()), cached.row) if col.live
                    else self._text(cached, c))
            brush = cached.tones[c]
            if brush is _UNSET:
                brush = cached.tones[c] = self._tone(cached, c)
            return (text, brush, self._fonts[c], self._align_flags[c])
        if role == _DISPLAY:
            col = self._columns[c]
            if col.live:
                return col.fmt(col.value(cached.row, self._clock()), cached.row)
            return self._text(cached, c)
        if role == _FOREGROUND:
            brush = cached.tones[c]
            if brush is _UNSET:
                brush = cached.tones[c] = self._tone(cached, c)
            return brush
        if role == _ALIGN:
            return self._aligns[c]
        if role == _FONT:
            return self._fonts[c]
        if role == _TOOLTIP:
            return self._tooltip(cached.row, self._columns[c])
        if role == _SORT:
            return self.sort_value(r, c)
        if role == _ID:
            return cached.row.snap.position.id
        if role == _SNAPSHOT:
            return cached.row.snap
        if role == _ACCESSIBLE:
            col = self._columns[c]
            return f"{col.title}: {self._text(cached, c) if not col.live else ''}"
        return None

    def _tone(self, cached: _Cached, c: int) -> QBrush | None:
        col = self._columns[c]
        if col.tone is None:
            return None
        tone = col.tone(col.value(cached.row, self._clock()), cached.row)
        colour = {1: self._theme.up, -1: self._theme.down, 2: self._theme.warning}.get(tone)
        if not colour:
            return None
        brush = self._brushes.get(colour)
        if brush is None:
            brush = self._brushes[colour] = QBrush(QColor(colour))
        return brush

    # -- our API -----------------------------------------------------------------------------
    def sort_value(self, row: int, column: int) -> object:
        """The raw value a cell sorts by (None for missing: the proxy puts those last)."""
        cached = self._rows[row]
        v = self._columns[column].value(cached.row, self._clock())
        if isinstance(v, float) and not is_num(v):
            return None
        return v

    def update(self, snapshots: Iterable[PositionSnapshot]) -> None:
        """Apply newest snapshots: insert new positions, keep the newest snapshot of the
        others, and tell the view once per batch (one `dataChanged` per block of columns that
        can have changed, over the changed rows; one insertion for all new rows). Nothing is
        computed or formatted here: when the view paints a row (only visible rows are
        painted) its raw values are compared with the ones on screen and only the cells whose
        value changed are formatted again — a storm over 500 rows costs a dictionary update
        per snapshot, and the few dozen cells on screen."""
        ncols = len(self._columns)
        fresh: dict[str, _Cached] = {}
        top = bottom = -1
        full = marks = levels = badge = False
        index = self._index
        rows = self._rows
        for snap in snapshots:
            pid = snap.position.id
            i = index.get(pid)
            if i is None:
                row = Row(snap, self._market(snap.position.symbol))
                fresh[pid] = _Cached(row, [None] * ncols, (), _sig(row), True,
                                     [_UNSET] * ncols)
                continue
            cached = rows[i]
            old = cached.row.snap
            cached.row = Row(snap, cached.row.market or self._market(snap.position.symbol))
            # which cells can have changed, from the snapshot's own fields (cheap): a
            # position whose shown fields are the same at another mark changes only the
            # columns that follow the mark; a moved stop only the level columns besides
            op, np_ = old.position, snap.position
            if snap.stale != old.stale or (np_ is not op and _shown(np_) != _shown(op)):
                full = True
            else:
                moved = np_ is not op and _levels(np_) != _levels(op)
                same_mark = snap.mark == old.mark and snap.pnl == old.pnl
                if same_mark and not moved:
                    if snap.protection is old.protection:
                        continue  # nothing shown changed (values stay valid)
                    badge = True
                else:
                    marks = marks or not same_mark
                    levels = levels or moved
                    if snap.protection is not old.protection:
                        badge = True
            cached.stale = True
            if top < 0 or i < top:
                top = i
            if i > bottom:
                bottom = i
        if bottom >= 0:
            if full:
                blocks = [(0, ncols - 1)]
            else:
                blocks = list(self._mark_blocks) if marks else []
                if levels:
                    blocks.extend(self._level_blocks)
                blocks = _merge(blocks)
                if badge:
                    blocks.append((self._protection_col, self._protection_col))
            for lo, hi in blocks:  # one signal per block of columns over the changed rows
                self.dataChanged.emit(self.index(top, lo), self.index(bottom, hi))
        if fresh:
            n = len(rows)
            self.beginInsertRows(QModelIndex(), n, n + len(fresh) - 1)
            for k, (pid, cached) in enumerate(fresh.items()):
                rows.append(cached)
                index[pid] = n + k
            self.endInsertRows()

    def _refresh(self, cached: _Cached) -> None:
        """The row's newest snapshot is about to be shown: forget the texts (and colours) of
        the cells whose raw value changed."""
        cached.stale = False
        row = cached.row
        now = self._clock()
        values = tuple(None if col.live else col.value(row, now) for col in self._columns)
        sig = _sig(row)
        texts, tones = cached.texts, cached.tones
        if cached.sig != sig or len(cached.values) != len(values):
            for c in range(len(values)):
                texts[c] = None
                tones[c] = _UNSET
        else:
            for c, (a, b) in enumerate(zip(cached.values, values, strict=True)):
                if a == b and type(a) is type(b):
                    continue
                texts[c] = None
                tones[c] = _UNSET
        cached.values, cached.sig = values, sig

    def _text(self, cached: _Cached, c: int) -> str:
        if cached.stale:
            self._refresh(cached)
        text = cached.texts[c]
        if text is None:
            col = self._columns[c]
            text = cached.texts[c] = col.fmt(cached.values[c], cached.row)
        return text

    def remove(self, position_id: str) -> bool:
        """Remove a closed position's row; False when it was not shown."""
        i = self._index.get(position_id)
        if i is None:
            return False
        self.beginRemoveRows(QModelIndex(), i, i)
        del self._rows[i]
        self._protection_detail.pop(position_id, None)
        self._index = {c.row.snap.position.id: n for n, c in enumerate(self._rows)}
        self.endRemoveRows()
        return True

    def refresh_live(self) -> None:
        """Re-read clock-driven cells (age) — called once a second by the window."""
        if not self._rows:
            return
        for c, col in enumerate(self._columns):
            if col.live:
                self.dataChanged.emit(self.index(0, c), self.index(len(self._rows) - 1, c),
                                      [Qt.ItemDataRole.DisplayRole])

    def set_theme(self, theme: Theme) -> None:
        self._theme = theme
        self._brushes.clear()
        for cached in self._rows:
            cached.tones = [_UNSET] * len(self._columns)
        if self._rows:
            self.dataChanged.emit(self.index(0, 0),
                                  self.index(len(self._rows) - 1, len(self._columns) - 1),
                                  [Qt.ItemDataRole.ForegroundRole])

    def snapshot(self, position_id: str) -> PositionSnapshot | None:
        i = self._index.get(position_id)
        return None if i is None else self._rows[i].row.snap

    def snapshot_at(self, row: int) -> PositionSnapshot:
        return self._rows[row].row.snap

    def row_of(self, position_id: str) -> int | None:
        return self._index.get(position_id)

    def position_ids(self) -> list[str]:
        return [c.row.snap.position.id for c in self._rows]

    def market(self, symbol: str) -> Market | None:
        return self._market(symbol)

    @property
    def columns(self) -> tuple[Column, ...]:
        return self._columns

    # -- internals ---------------------------------------------------------------------------
    def _market(self, symbol: str) -> Market | None:
        m = self._markets.get(symbol)
        if m is None:
            m = self._market_for(symbol)
            if m is not None:
                self._markets[symbol] = m
        return m

    def set_protection_detail(self, position_id: str, text: str) -> None:
        """What protects a position on the exchange (its live SL/TP orders), as a tooltip."""
        if self._protection_detail.get(position_id) == text:
            return
        self._protection_detail[position_id] = text
        i = self._index.get(position_id)
        if i is not None:
            c = column_index("protection")
            self.dataChanged.emit(self.index(i, c), self.index(i, c),
                                  [Qt.ItemDataRole.ToolTipRole])

    def protection_detail(self, position_id: str) -> str:
        return self._protection_detail.get(position_id, "")

    def _tooltip(self, row: Row, col: Column) -> str | None:
        if col.key == "protection":
            detail = self._protection_detail.get(row.snap.position.id)
            return f"{col.tip}\n{detail}" if detail else col.tip
        if col.key == "mark" and row.snap.stale:
            return "Stale price: older than the allowed price age; rules are not acting on it"
        if col.key in ("pnl", "roi", "r"):
            return _pnl_tip(row, col)
        if col.key == "preset" and not row.snap.position.automation:
            return "Automation paused: rules do not act on this position"
        return col.tip or None


def _pnl_tip(row: Row, col: Column) -> str:
    f = row.fig
    if f.gross_pnl is None:
        return col.tip
    lines = [col.tip, "",
             f"Gross P/L {fmt_money(f.gross_pnl, row.quote)}",
             f"Fees {fmt_money(-f.fees, row.quote)} (entry paid + estimated exit)",
             f"Net P/L {fmt_money(f.pnl, row.quote)}",
             f"Exchange ROE (gross, before fees) {fmt_pct(f.roe)}"]
    funding = row.snap.position.funding
    lines.append(f"Funding {fmt_money(funding, row.quote)} (not in the P/L above)"
                 if is_num(funding) else "Funding — (not reported per position by the venue)")
    return "\n".join(lines)


class CellDelegate(QStyledItemDelegate):
    """Paints a positions cell from one `CELL_ROLE` answer instead of the ~7 roles Qt's
    default delegate asks one by one (each a call from C++ into Python, and in a storm each
    a wait for the interpreter while the engine thread runs): the table's paint is most of
    the GUI's cost when every row moves."""

    _HAS_DISPLAY = QStyleOptionViewItem.ViewItemFeature.HasDisplay
    _TEXT = QPalette.ColorRole.Text

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._metrics: dict[int, tuple[QFont, QFontMetrics]] = {}  # the font kept alive

    def initStyleOption(self, option: QStyleOptionViewItem, index: Index) -> None:
        cell = index.data(_CELL)
        if not isinstance(cell, tuple):
            super().initStyleOption(option, index)
            return
        text, brush, font, align = cell
        option.index = index
        option.text = text
        option.features |= self._HAS_DISPLAY
        option.displayAlignment = align
        if font is not None:
            option.font = font
            metrics = self._metrics.get(id(font))
            if metrics is None:
                metrics = self._metrics[id(font)] = (font, QFontMetrics(font))
            option.fontMetrics = metrics[1]
        if brush is not None:
            option.palette.setBrush(self._TEXT, brush)


class PositionsProxy(QSortFilterProxyModel):
    """Sorts by each column's raw value (numbers as numbers); missing values always last."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setSortRole(SORT_ROLE)
        self.setDynamicSortFilter(True)

    def lessThan(self, left: Index, right: Index) -> bool:
        src = self.sourceModel()
        if not isinstance(src, PositionsModel):
            return super().lessThan(left, right)
        a = src.sort_value(left.row(), left.column())
        b = src.sort_value(right.row(), right.column())
        if a is None or b is None:
            # None last in ascending order, and — Qt reverses the comparison for descending —
            # last in descending too.
            desc = self.sortOrder() == Qt.SortOrder.DescendingOrder
            if a is None and b is None:
                return False
            return (a is None) if desc else (b is None)
        if isinstance(a, str) and isinstance(b, str):
            return a.casefold() < b.casefold()
        try:
            return a < b  # type: ignore[operator]
        except TypeError:
            return str(a) < str(b)
