"""The positions table: a model with declarative columns and incremental updates.

Each column is one `Column` value (title, raw value getter, formatter, alignment, tone),
so adding a column is one line and sorting, display and colouring cannot disagree: the
proxy sorts on the raw value, the view shows the formatted text.

Updates are incremental: a new snapshot of a known position emits `dataChanged` only over
the columns whose text changed; new positions are inserted, closed ones removed. The model
is never reset per tick, so selection, scroll position and sorting survive live updates.
"""

from __future__ import annotations

import math
import operator
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from PySide6.QtCore import (
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import QBrush, QColor, QFont, QStandardItem, QStandardItemModel

from pmgui.domain.enums import Protection, Side
from pmgui.domain.models import Market
from pmgui.domain.slots import slot_constructor
from pmgui.engine.events import PositionSnapshot
from pmgui.ui.figures import Figures, figures
from pmgui.ui.fmt import (
    DASH,
    MINUS,
    fmt_age,
    fmt_money,
    fmt_pct,
    fmt_price,
    fmt_qty,
    fmt_r,
    is_num,
    step_decimals,
)
from pmgui.ui.theme import Theme, make_theme, tabular_font

SORT_ROLE = Qt.ItemDataRole.UserRole + 1  # the raw value a column sorts by (ascending)
ID_ROLE = Qt.ItemDataRole.UserRole + 2  # the position id of a row
SORT_DESC_ROLE = Qt.ItemDataRole.UserRole + 5  # the same, descending (missing: last)

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


_PRICE_TEXT: dict[int, tuple[Market, Callable[[object], str]]] = {}  # id(market) → formatter


def _price_formatter(market: Market | None) -> Callable[[object], str]:
    """`fmt_price` for one market with its decimals and rounding worked out once (a storm
    formats thousands of prices a second): the same text, a fraction of the work. The text
    is a function of the price's whole number of ticks, kept per market: a storm's prices
    come back to the same ticks (a symbol walks around its price), so most are a division,
    a round and a dict look-up."""
    if market is None or not market.tick_size > 0:
        return lambda v: fmt_price(v, market)  # type: ignore[arg-type]
    tick = market.tick_size
    clean = max(0, min(12, -math.floor(math.log10(tick) + 1e-12) + 2))  # Market._clean's
    spec = f",.{step_decimals(tick)}f"
    texts: dict[int, str] = {}  # whole ticks → text

    def text(v: object) -> str:
        if v.__class__ is not float or v - v != 0:  # type: ignore[operator]
            return fmt_price(v, market)  # type: ignore[arg-type]  (None, ints, nan, inf)
        steps = v / tick  # type: ignore[operator]
        if steps - steps != 0:
            return fmt_price(v, market)  # type: ignore[arg-type]
        n = round(steps)
        out = texts.get(n)
        if out is None:
            if len(texts) >= _TEXTS_PER_MARKET:
                texts.clear()
            out = format(round(n * tick, clean), spec)
            out = texts[n] = MINUS + out[1:] if out[0] == "-" else out
        return out

    return text


_TEXTS_PER_MARKET = 4096  # price texts kept per market (then forgotten, all at once)


def _formatter_of(market: Market | None) -> Callable[[object], str]:
    """The market's `_price_formatter`, made once and shared by every row on the market."""
    hit = _PRICE_TEXT.get(id(market))
    if hit is None or hit[0] is not market:
        if len(_PRICE_TEXT) > 4096:
            _PRICE_TEXT.clear()
        hit = _PRICE_TEXT[id(market)] = (market, _price_formatter(market))  # type: ignore[assignment]
    return hit[1]


def price_text(v: object, market: Market | None) -> str:
    """The same as `fmt_price(v, market)`, with the market's formatter cached."""
    return _formatter_of(market)(v)


def _mark_text(v: object, row: Row) -> str:
    text = price_text(v, row.market)
    return f"⚠ {text}" if row.snap.stale and text != DASH else text


def _price(getter: Callable[[Row], float | None]) -> Callable[[Row, float], object]:
    return lambda row, _now: getter(row)


def _fmt_price(v: object, row: Row) -> str:
    return price_text(v, row.market)


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


_ALIGN = int(Qt.ItemDataRole.TextAlignmentRole)
_FOREGROUND = int(Qt.ItemDataRole.ForegroundRole)
_SORT = int(SORT_ROLE)
_SORT_DESC = int(SORT_DESC_ROLE)
_ID = int(ID_ROLE)
_FLAGS = (Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEnabled
          | Qt.ItemFlag.ItemNeverHasChildren)


# what follows the mark when the position itself did not change (figures.py)
_MARK_KEYS = ("mark", "pnl", "roi", "r", "liq_dist", "notional")
_LEVEL_KEYS = ("sl", "tp", "trailing", "liquidation", "liq_dist")  # follow the stop levels
_TIP_KEYS = ("pnl", "roi", "r")  # tooltips written from the row's figures
_MISSING_LAST = math.inf  # ascending sort value of a missing number (last)
# Rows an update applies per event-loop turn when the view spreads it (`apply_later`): in the
# GUI storm (500 rows, 2,000 ticks/s) a table flush is ~200 rows and cost 5 ms of GUI CPU
# median, 10 ms at worst, in one stretch (~10-25 µs a row), so a slice is ~1-1.5 ms
ROWS_PER_SLICE = 64


# The position's fields the table shows or computes from (rule memory — peaks, best price,
# flags — changes with every tick and shows nothing): first those besides the levels, then
# its stop and target levels (the last `_N_LEVELS`). One getter (a tuple built in C) and one
# comparison per snapshot tell that neither changed, the common case in a storm.
_N_LEVELS = 4
_shown = operator.attrgetter(
    "symbol", "side", "qty", "entry", "leverage", "opened_at", "initial_qty", "initial_sl",
    "fee_rate", "contract_size", "preset", "automation", "fees_paid", "exchange",
    "margin_mode", "hedge", "funding", "sl", "tp", "trailing", "liquidation")


def _merge(blocks: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Column blocks sorted, overlapping or touching ones joined."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(blocks):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


_new_row = slot_constructor(Row)  # Row(snap, market, None), set slot by slot (per snapshot)


def _sig(row: Row) -> tuple[object, ...]:
    return (id(row.market), row.snap.stale, row.snap.position.automation)


_NOT_SET = object()  # a cell never written


@dataclass(slots=True, eq=False)
class _Line:
    """One row: its newest snapshot, its Qt items, and what the items show now."""

    row: Row
    items: list[QStandardItem]
    values: list[object]  # raw values the texts show (_NOT_SET: not written yet)
    texts: list[str | None]
    tones: list[str | None]  # colour of each cell's text (None: the palette's)
    sorts: list[object]  # raw sort values written
    sig: tuple[object, ...] = ()  # what else the texts depend on (market, staleness, ...)
    pending: int = 0  # columns (bit c) that may show less than `row`: written when on screen
    shown: tuple = ()  # _shown() of the row's position: what shows, its levels last
    price: Callable[[object], str] = fmt_price  # type: ignore[assignment]  # the market's


class PositionsModel(QStandardItemModel):
    """Open positions, one row each, keyed by position id.

    The cells are `QStandardItem`s holding their text, colour, font, alignment, tooltip and
    sort value, so a view paints them without calling into Python (no `data()` override, no
    delegate): in a storm each such call would wait for the interpreter while the engine
    thread runs. `update` writes only the cells whose value changed, with the model's
    signals held, and then names the changed blocks of columns once per batch.

    What is written when: with a `visible` callback (the view's rows on screen, as source
    rows) the rows on screen are written at each update, and the others when they come into
    view (`refresh_rows`); their mark and the sort column are always written, so sorting and
    the price column are current for every row. Without one, every changed row is written
    at once."""

    def __init__(self, market_for: Callable[[str], Market | None] | None = None, *,
                 theme: Theme | None = None, clock: Callable[[], float] = time.time,
                 columns: Sequence[Column] = COLUMNS, parent=None) -> None:
        super().__init__(0, len(columns), parent)
        self._market_for = market_for or (lambda _s: None)
        self._markets: dict[str, Market] = {}
        self._columns = tuple(columns)
        self._lines: list[_Line] = []
        self._index: dict[str, int] = {}
        self._clock = clock
        self._theme = theme or make_theme("dark")
        self._font = tabular_font()
        self._protection_detail: dict[str, str] = {}
        self._bold = QFont(self._font)
        self._bold.setBold(True)
        self._brushes: dict[str, QBrush] = {}
        keys = [col.key for col in self._columns]
        self._keys = keys
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
        self._mark_col = keys.index("mark") if "mark" in keys else -1
        self._tip_cols = tuple(c for c, k in enumerate(keys) if k in _TIP_KEYS)
        self._funding_col = keys.index("funding") if "funding" in keys else -1
        # the mark is the snapshot's, as _mark_text shows it: written inline by update
        self._fast_mark = self._mark_col >= 0 and self._columns[self._mark_col].fmt is _mark_text
        self._fonts = [self._bold if col.key == "symbol" else self._font if col.numeric
                       else None for col in self._columns]
        self._live = tuple(c for c, col in enumerate(self._columns) if col.live)
        self._live_mask = sum(1 << c for c in self._live)
        n = len(self._columns)
        self._all_mask = (1 << n) - 1
        self._mark_mask = sum(1 << c for lo, hi in self._mark_blocks for c in range(lo, hi + 1))
        self._level_mask = sum(1 << c for lo, hi in self._level_blocks
                               for c in range(lo, hi + 1))
        self._badge_mask = 1 << self._protection_col
        self._mask_cols: dict[int, tuple[int, ...]] = {}
        # the view's rows on screen (source rows; None: everything is written at once)
        self.visible: Callable[[], Iterable[int] | None] | None = None
        self.sort_column = -1  # the column the proxy sorts by: written for every row
        # While `update` tells the view what changed: source row → the columns (bit c) whose
        # text or colour changed; the view repaints those cells only. None otherwise.
        self.shown_changes: dict[int, int] | None = None
        # How `update` tells the view: None, at once; else it hands `send_changes` to this
        # (the window's `Turns`): the update's Python work and the repaint its signals cause
        # then fall into two event-loop turns, not one stretch (see `send_changes`)
        self.signal_later: Callable[[Callable[[], None]], None] | None = None
        self._unsent: tuple[dict[int, int], int, int, list[tuple[int, int]]] | None = None
        # How many snapshots `update` applies in one go: None, all of them; else it applies
        # `rows_per_slice` and hands the rest to this (the window's `Turns`), a slice per
        # turn. In the GUI storm (500 rows at 15 Hz) one flush was 5-10 ms of GUI CPU in one
        # stretch, the longest of the table's (see ROWS_PER_SLICE)
        self.apply_later: Callable[[Callable[[], None]], None] | None = None
        # How the first slice's turn hands on writing the price of the rows waiting for a
        # later slice (`_write_marks`): None, written in that turn; else a job handed to this
        # (the window's `Turns`, the next turn, ahead of the view being told). In the GUI
        # storm it was ~0.9 ms of the first slice's ~2 ms turn (the table's longest)
        self.marks_later: Callable[[Callable[[], None]], None] | None = None
        self.rows_per_slice = ROWS_PER_SLICE
        self._waiting: dict[str, PositionSnapshot] = {}  # position id → newest, not applied
        self._on_screen: list[int] | None = None  # `visible()` as read for the batch waiting
        # Called with the number of rows an update inserted (once per update that inserted
        # any): the window takes a batch of new rows out of the cyclic collector (their items,
        # lines and figures live as long as the positions; see MainWindow)
        self.inserted: Callable[[int], None] | None = None
        self.rowsRemoved.connect(self._on_rows_removed)
        for c, col in enumerate(self._columns):
            h = QStandardItem(col.title)
            h.setData(int(col.align), _ALIGN)
            if col.tip:
                h.setToolTip(col.tip)
            self.setHorizontalHeaderItem(c, h)

    # -- our API -----------------------------------------------------------------------------
    def sort_value(self, row: int, column: int) -> object:
        """The raw value a cell sorts by (None for missing: the proxy puts those last)."""
        line = self._lines[row]
        v = self._columns[column].value(line.row, self._clock())
        return _sortable(v)

    def update(self, snapshots: Iterable[PositionSnapshot]) -> None:
        """Apply newest snapshots: insert new positions, keep the newest snapshot of the
        others, write the cells whose value changed (see the class) and tell the view once
        per batch: one `dataChanged` per block of columns that can have changed, over the
        changed rows.

        With `apply_later` set, the snapshots of known positions are applied in slices of
        at most `rows_per_slice` rows, one slice now (the rows on screen first, and every
        row's price) and the rest on later turns (see `apply_later`); a newer snapshot of a
        position still waiting takes the older one's place (the newest wins, nothing is
        dropped). New positions are inserted at once."""
        waiting = self._waiting
        index = self._index
        fresh: dict[str, PositionSnapshot] = {}
        for snap in snapshots:
            pid = snap.position.id
            if pid in index:
                waiting[pid] = snap  # (a position waiting already keeps its place)
            else:
                fresh[pid] = snap
        self._on_screen = None  # (read again for a new batch)
        self._apply_slice(tell=True)
        for snap in fresh.values():
            self._insert(snap)
        if fresh and self.inserted is not None:
            self.inserted(len(fresh))

    @property
    def waiting(self) -> int:
        """Snapshots handed to `update` and not applied yet (their slice is to come)."""
        return len(self._waiting)

    def _apply_slice(self, tell: bool = False) -> None:
        """Apply the next slice of the waiting snapshots (all of them without `apply_later`)
        and hand the rest on to a later turn. The view is told of the first slice (`tell`:
        the rows on screen are in it) and of the last; the slices between are told with the
        last (they change rows off screen: one repaint and one re-sort for them, not one
        each)."""
        waiting = self._waiting
        if not waiting:
            return
        visible = self._on_screen
        if visible is None and self.visible is not None:
            # read once per batch (each read maps the rows on screen through the proxy) and
            # again when the view changed meanwhile (`refresh_rows`, rows added or removed)
            rows = self.visible()
            visible = self._on_screen = list(rows) if rows is not None else None
        n = self.rows_per_slice if self.apply_later is not None else len(waiting)
        marks_due = False
        if len(waiting) <= n:
            batch, self._waiting = list(waiting.values()), {}
        else:
            batch = []
            if visible:  # the rows on screen first: what the trader reads
                lines = self._lines
                for r in visible:
                    if 0 <= r < len(lines):
                        snap = waiting.pop(lines[r].row.snap.position.id, None)
                        if snap is not None:
                            batch.append(snap)
            items = list(waiting.items())
            k = max(0, n - len(batch))
            batch.extend(snap for _pid, snap in items[:k])
            self._waiting = dict(items[k:])
            # asked before the slice tells the view (`signal_later`, ahead of the jobs
            # waiting): the view is told of this slice, and repaints it, before the next one
            if self._waiting:
                self.apply_later(self._apply_slice)  # type: ignore[misc]
                # a new batch: the price of every row now (or on the next turn), the rest
                # in its slice
                if tell and self.marks_later is None:
                    self._write_marks(self._waiting.values(), visible)
                elif tell:
                    marks_due = True
        self._apply(batch, visible, tell or not self._waiting)
        if marks_due:
            # asked after the slice asked to tell the view: the marks come first (the jobs
            # are put ahead of those waiting), and the view is told of both at once
            self.marks_later(self._write_waiting_marks)  # type: ignore[misc]

    def _write_waiting_marks(self) -> None:
        """The price of every row still waiting for its slice (`marks_later`'s job)."""
        if self._waiting:
            self._write_marks(self._waiting.values(), self._on_screen)

    def _write_marks(self, snapshots: Iterable[PositionSnapshot],
                     visible: list[int] | None) -> None:
        """The mark (price) text of rows whose snapshot waits for a later slice, written
        now: the price column is what the trader follows, and a slice a turn or more later
        (each turn is a wait for the interpreter lock in a storm) left it behind. The rest of
        the row follows in its slice (which finds the mark written). Only where the mark is
        all the text depends on (`_write_mark`'s inline case, rows off screen, the proxy not
        sorting by it); other rows wait for their slice."""
        mc = self._mark_col
        if visible is None or not self._fast_mark or self.sort_column == mc:
            return
        mbit = 1 << mc
        index, lines = self._index, self._lines
        shown: dict[int, int] = {}
        top = bottom = -1
        was = self.blockSignals(True)
        try:
            for snap in snapshots:
                i = index.get(snap.position.id)
                if i is None:
                    continue
                line = lines[i]
                sig = line.sig
                if not sig or sig[0] != id(line.row.market) or sig[1] != snap.stale:
                    continue  # (its texts depend on more: written in full by its slice)
                v = snap.mark
                a = line.values[mc]
                if a == v and type(a) is type(v):
                    continue
                line.values[mc] = v
                text = line.price(v)
                if snap.stale and text != DASH:
                    text = f"⚠ {text}"
                line.sorts[mc] = _NOT_SET  # (prepare_sort writes it)
                line.pending |= mbit
                if text != line.texts[mc]:
                    line.texts[mc] = text
                    line.items[mc].setText(text)
                    shown[i] = mbit
                    if top < 0 or i < top:
                        top = i
                    if i > bottom:
                        bottom = i
        finally:
            self.blockSignals(was)
        if top >= 0:
            self._add_unsent(shown, top, bottom, [(mc, mc)])

    def _add_unsent(self, shown: dict[int, int], top: int, bottom: int,
                    blocks: list[tuple[int, int]]) -> None:
        """Add changes to those the view has not been told of yet."""
        unsent = self._unsent
        if unsent is None:
            self._unsent = (shown, top, bottom, blocks)
            return
        told_later, t0, b0, blocks0 = unsent
        for r, m in shown.items():
            told_later[r] = told_later.get(r, 0) | m
        self._unsent = (told_later, min(t0, top), max(b0, bottom), _merge(blocks0 + blocks))

    def finish(self) -> None:
        """Apply every waiting snapshot and tell the view now (`flush_now`: start-up, a
        screenshot)."""
        if self._waiting:
            batch, self._waiting = list(self._waiting.values()), {}
            self._apply(batch, self.visible() if self.visible is not None else None, True)
        self.send_changes()

    def _apply(self, snapshots: Iterable[PositionSnapshot], visible: Iterable[int] | None,
               tell: bool) -> None:
        """`update`'s work for snapshots of positions shown already (`visible`: the rows on
        screen, as `self.visible()` gave them); what changed is added to what the view has
        not been told yet, and told (`tell`) now or on a later turn (`signal_later`)."""
        top = bottom = -1
        full = marks = levels = badge = False
        index = self._index
        lines = self._lines
        all_mask, mark_mask = self._all_mask, self._mark_mask
        level_mask, badge_mask = self._level_mask, self._badge_mask
        # with a view: every row gets its mark (the price column) and the sort column now,
        # the rest when it is on screen (below) or comes into view; without: all of it
        mc, sc = self._mark_col, self.sort_column
        mbit = 1 << mc if mc >= 0 else 0
        sbit = 1 << sc if 0 <= sc < len(self._columns) else 0
        mark_only = visible is not None and sc != mc
        fast = self._fast_mark
        shown: dict[int, int] = {}  # row → columns whose text or colour changed
        was = self.blockSignals(True)
        try:
            for snap in snapshots:
                np_ = snap.position
                i = index.get(np_.id)
                if i is None:
                    continue  # (removed while it waited)
                line = lines[i]
                row = line.row
                old = row.snap
                market = row.market or self._market(np_.symbol)
                line.row = _new_row(snap, market, None)
                # which cells can have changed, from the snapshot's own fields (cheap): a
                # position whose shown fields are the same at another mark changes only the
                # columns that follow the mark; a moved stop only the level columns besides
                shown_changed = moved = False
                if np_ is not old.position:
                    fields = _shown(np_)
                    was_shown = line.shown
                    if fields != was_shown:
                        shown_changed = fields[:-_N_LEVELS] != was_shown[:-_N_LEVELS]
                        moved = not shown_changed
                        line.shown = fields
                if snap.stale != old.stale or shown_changed:
                    full = True
                    mask = all_mask
                else:
                    same_mark = snap.mark == old.mark and snap.pnl == old.pnl
                    mask = 0
                    if same_mark and not moved:
                        if snap.protection is old.protection:
                            continue  # nothing shown changed (values stay valid)
                        badge = True
                        mask = badge_mask
                    else:
                        if not same_mark:
                            marks = True
                            mask = mark_mask
                        if moved:
                            levels = True
                            mask |= level_mask
                        if snap.protection is not old.protection:
                            badge = True
                            mask |= badge_mask
                line.pending |= mask
                if top < 0 or i < top:
                    top = i
                if i > bottom:
                    bottom = i
                if visible is None:
                    if m := self._write(line):
                        shown[i] = m
                    continue
                if mask & mbit and mark_only:
                    if fast and mask != all_mask and line.sig[0] == id(market):
                        # the same as _write_mark, inline (a storm: every row)
                        v = snap.mark
                        a = line.values[mc]
                        if a != v or type(a) is not type(v):
                            line.values[mc] = v
                            text = line.price(v)
                            if snap.stale and text != DASH:
                                text = f"⚠ {text}"
                            if text != line.texts[mc]:
                                line.texts[mc] = text
                                line.items[mc].setText(text)
                                shown[i] = mbit
                            line.sorts[mc] = _NOT_SET
                    elif m := self._write_mark(line):
                        shown[i] = m
                if mask & sbit:
                    if m := self._write_cells(line, (sc,)):
                        shown[i] = shown.get(i, 0) | m
                    line.pending &= ~sbit
            if top >= 0 and visible is not None:
                # the rows on screen: all they show (a re-sort that brings other rows
                # into view writes them: the view asks for them on layoutChanged)
                self._refresh(visible, shown)
        finally:
            self.blockSignals(was)
        if top >= 0:
            if full:
                blocks = [(0, len(self._columns) - 1)]
            else:
                blocks = list(self._mark_blocks) if marks else []
                if levels:
                    blocks.extend(self._level_blocks)
                blocks = _merge(blocks)
                if badge:
                    blocks.append((self._protection_col, self._protection_col))
            self._add_unsent(shown, top, bottom, blocks)  # (with a slice not told yet)
        if tell and self._unsent is not None:
            if self.signal_later is None:
                self.send_changes()
            else:
                self.signal_later(self.send_changes)

    def send_changes(self) -> None:
        """Tell the view what the last `update` changed (see `signal_later`): one
        `dataChanged` per block of columns over the changed rows, with `shown_changes`
        naming the cells to repaint. Nothing when it was told already."""
        unsent, self._unsent = self._unsent, None
        if unsent is None:
            return
        shown, top, bottom, blocks = unsent
        self.shown_changes = shown
        try:
            for lo, hi in blocks:
                self.dataChanged.emit(self.index(top, lo), self.index(bottom, hi))
        finally:
            self.shown_changes = None

    def refresh_rows(self, rows: Iterable[int] | None = None) -> None:
        """Write what changed in rows not written since their last snapshot (`rows`: those
        source rows; None: all) — the view calls it for the rows coming into view."""
        self._on_screen = None  # (the view changed: its rows are read again)
        was = self.blockSignals(True)
        try:
            self._refresh(rows, {})
        finally:
            self.blockSignals(was)

    def _refresh(self, rows: Iterable[int] | None, shown: dict[int, int]) -> None:
        """`refresh_rows` with the model's signals held; adds to `shown` (row → columns)
        the cells whose text or colour changed."""
        lines = self._lines
        n = len(lines)
        for r in (range(n) if rows is None else rows):
            if 0 <= r < n and (line := lines[r]).pending:
                mask, line.pending = line.pending, 0
                if m := self._write_cells(line, self._cols_of(mask)):
                    shown[r] = shown.get(r, 0) | m

    def _cols_of(self, mask: int) -> tuple[int, ...]:
        cols = self._mask_cols.get(mask)
        if cols is None:
            cols = self._mask_cols[mask] = tuple(
                c for c in range(len(self._columns)) if mask >> c & 1)
        return cols

    def prepare_sort(self, column: int) -> None:
        """The proxy is about to sort by `column`: its sort values are written for every
        row (the rows off screen may not have been written since their last snapshot)."""
        self.sort_column = column
        if not 0 <= column < len(self._columns):
            return
        bit = 1 << column
        was = self.blockSignals(True)
        try:
            for line in self._lines:
                if line.pending & bit:
                    self._write_cells(line, (column,))
                    line.pending &= ~bit
        finally:
            self.blockSignals(was)

    def _insert(self, snap: PositionSnapshot) -> None:
        pid = snap.position.id
        row = Row(snap, self._market(snap.position.symbol))
        n = len(self._columns)
        items = []
        for c in range(n):
            it = QStandardItem()
            it.setFlags(_FLAGS)
            it.setData(pid, _ID)
            it.setData(int(self._columns[c].align), _ALIGN)
            if self._fonts[c] is not None:
                it.setFont(self._fonts[c])
            items.append(it)
        line = _Line(row, items, [_NOT_SET] * n, [None] * n, [None] * n, [_NOT_SET] * n)
        line.shown = _shown(snap.position)
        self._write(line)
        self._lines.append(line)
        self._index[pid] = len(self._lines) - 1
        self._on_screen = None
        self.appendRow(items)

    def _write(self, line: _Line) -> int:
        """Write every cell of the row whose value changed since it was last written; the
        columns whose text or colour changed (bit c)."""
        line.pending = 0
        return self._write_cells(line, range(len(self._columns)))

    def _write_mark(self, line: _Line) -> int:
        """Only the mark's text (the rest of the row waits until it is on screen; the mark's
        sort value too: written when the proxy sorts by it). Returns as `_write`."""
        row = line.row
        if _sig(row) != line.sig:
            return self._write(line)
        c = self._mark_col
        col = self._columns[c]
        v = col.value(row, 0.0)
        a = line.values[c]
        if a == v and type(a) is type(v):
            return 0
        line.values[c] = v
        text = col.fmt(v, row)
        line.sorts[c] = _NOT_SET  # not written: prepare_sort writes it
        line.pending |= 1 << c
        if text != line.texts[c]:
            line.texts[c] = text
            line.items[c].setText(text)
            return 1 << c
        return 0

    def _write_cells(self, line: _Line, cols: Iterable[int], sort: bool = True) -> int:
        """Write the cells `cols` of the row whose value changed (all of them when what else
        the texts depend on changed); the columns whose text or colour changed (bit c)."""
        row = line.row
        now = self._clock()
        values, texts, items = line.values, line.texts, line.items
        sig = _sig(row)
        if sig != line.sig:  # the texts depend on more than the values: all written again
            line.sig = sig
            line.price = _formatter_of(row.market)
            for c in range(len(values)):
                values[c] = _NOT_SET
            self._write_tips(line, static=True)
            line.pending = 0
            cols = range(len(self._columns))
        tips = False
        shown = 0
        for c in cols:
            col = self._columns[c]
            v = col.value(row, now)
            if sort:
                sv = _sortable(-row.snap.position.opened_at if col.live else v)
                old = line.sorts[c]
                if sv != old or type(sv) is not type(old):
                    line.sorts[c] = sv
                    _set_sort(items[c], sv)
            if col.live:  # (its text follows the clock: refresh_live, or written now)
                text = col.fmt(v, row)
                if text != texts[c]:
                    texts[c] = text
                    items[c].setText(text)
                    shown |= 1 << c
                continue
            a = values[c]
            if a == v and type(a) is type(v):
                continue
            values[c] = v
            text = col.fmt(v, row)
            if text != texts[c]:
                texts[c] = text
                items[c].setText(text)
                shown |= 1 << c
            if col.tone is not None:
                tone = col.tone(v, row)
                colour = (self._theme.up if tone == 1 else self._theme.down if tone == -1
                          else self._theme.warning if tone == 2 else None) or None
                if colour != line.tones[c]:
                    line.tones[c] = colour
                    items[c].setData(self._brush(colour), _FOREGROUND)
                    shown |= 1 << c
            if c in self._tip_cols or c == self._funding_col:  # (funding: in the tips)
                tips = True
        if tips:
            self._write_tips(line)
        return shown

    def _write_tips(self, line: _Line, static: bool = False) -> None:
        """The tooltips that follow the row's figures (P/L, ROI, R); with `static` also
        those that follow its state (staleness, automation, protective orders)."""
        cols = range(len(self._columns)) if static else self._tip_cols
        detail = _pnl_detail(line.row)  # the same lines under P/L, ROI and R
        for c in cols:
            col = self._columns[c]
            if c in self._tip_cols:
                tip = f"{col.tip}\n\n{detail}" if detail else col.tip
            else:
                tip = self._tooltip(line.row, col)
            if line.items[c].toolTip() != (tip or ""):
                line.items[c].setToolTip(tip or "")

    def _brush(self, colour: str | None) -> QBrush | None:
        if not colour:
            return None
        brush = self._brushes.get(colour)
        if brush is None:
            brush = self._brushes[colour] = QBrush(QColor(colour))
        return brush

    def remove(self, position_id: str) -> bool:
        """Remove a closed position's row; False when it was not shown."""
        self._waiting.pop(position_id, None)
        i = self._index.get(position_id)
        if i is None:
            return False
        self._protection_detail.pop(position_id, None)
        self.send_changes()  # its rows are the rows before the removal
        self.removeRow(i)  # _on_rows_removed keeps the lines in step
        return True

    def _on_rows_removed(self, _parent: Index, first: int, last: int) -> None:
        # connected first: the lines follow Qt's rows before anyone else hears of it
        del self._lines[first:last + 1]
        self._on_screen = None
        self._index = {ln.row.snap.position.id: n for n, ln in enumerate(self._lines)}

    def refresh_live(self) -> None:
        """Re-read clock-driven cells (age) — called once a second by the window: with a
        view, in the rows on screen (the others when they come into view, as any cell)."""
        if not self._lines or not self._live:
            return
        now = self._clock()
        visible = self.visible() if self.visible is not None else None
        if visible is None:
            lines: Iterable[_Line] = self._lines
        else:
            n = len(self._lines)
            on = {r for r in visible if 0 <= r < n}
            lines = [self._lines[r] for r in sorted(on)]
            live = self._live_mask
            for r, line in enumerate(self._lines):
                if r not in on:
                    line.pending |= live
        was = self.blockSignals(True)
        try:
            for line in lines:
                for c in self._live:
                    col = self._columns[c]
                    text = col.fmt(col.value(line.row, now), line.row)
                    if text != line.texts[c]:
                        line.texts[c] = text
                        line.items[c].setText(text)
                line.pending &= ~self._live_mask
        finally:
            self.blockSignals(was)
        for c in self._live:
            self.dataChanged.emit(self.index(0, c), self.index(len(self._lines) - 1, c),
                                  [Qt.ItemDataRole.DisplayRole])

    def set_theme(self, theme: Theme) -> None:
        self._theme = theme
        self._brushes.clear()
        was = self.blockSignals(True)
        try:
            for line in self._lines:
                for c, col in enumerate(self._columns):
                    v = line.values[c]
                    if col.tone is None or v is _NOT_SET:
                        continue
                    tone = col.tone(v, line.row)
                    colour = (theme.up if tone == 1 else theme.down if tone == -1
                              else theme.warning if tone == 2 else None) or None
                    line.tones[c] = colour
                    line.items[c].setData(self._brush(colour), _FOREGROUND)
        finally:
            self.blockSignals(was)
        if self._lines:
            self.dataChanged.emit(self.index(0, 0),
                                  self.index(len(self._lines) - 1, len(self._columns) - 1),
                                  [Qt.ItemDataRole.ForegroundRole])

    def snapshot(self, position_id: str) -> PositionSnapshot | None:
        """The position's newest snapshot (one waiting for its slice, if there is one)."""
        snap = self._waiting.get(position_id)
        if snap is not None:
            return snap
        i = self._index.get(position_id)
        return None if i is None else self._lines[i].row.snap

    def snapshot_at(self, row: int) -> PositionSnapshot:
        return self._lines[row].row.snap

    def row_of(self, position_id: str) -> int | None:
        return self._index.get(position_id)

    def row_texts(self, row: int) -> list[str | None]:
        """What row `row`'s cells show now, by column (None: not written yet). Read-only."""
        return self._lines[row].texts

    def position_ids(self) -> list[str]:
        return [ln.row.snap.position.id for ln in self._lines]

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
            c = self._protection_col
            line = self._lines[i]
            line.items[c].setToolTip(self._tooltip(line.row, self._columns[c]) or "")

    def protection_detail(self, position_id: str) -> str:
        return self._protection_detail.get(position_id, "")

    def _tooltip(self, row: Row, col: Column) -> str | None:
        if col.key == "protection":
            detail = self._protection_detail.get(row.snap.position.id)
            return f"{col.tip}\n{detail}" if detail else col.tip
        if col.key == "mark" and row.snap.stale:
            return "Stale price: older than the allowed price age; rules are not acting on it"
        if col.key in _TIP_KEYS:
            return _pnl_tip(row, col)
        if col.key == "preset" and not row.snap.position.automation:
            return "Automation paused: rules do not act on this position"
        return col.tip or None


def _sortable(v: object) -> object:
    if v is None or (isinstance(v, float) and not is_num(v)):
        return None
    if isinstance(v, str):
        return v.casefold()
    return v


def _set_sort(item: QStandardItem, v: object) -> None:
    """The cell's sort values: ascending (`SORT_ROLE`) and descending (`SORT_DESC_ROLE`);
    a missing value sorts last in both orders."""
    if v is None:
        item.setData(_MISSING_LAST, _SORT)
        item.setData(-_MISSING_LAST, _SORT_DESC)
    elif isinstance(v, bool):
        item.setData(int(v), _SORT)
        item.setData(int(v), _SORT_DESC)
    else:
        item.setData(v, _SORT)
        item.setData(v, _SORT_DESC)


def _pnl_tip(row: Row, col: Column) -> str:
    detail = _pnl_detail(row)
    return f"{col.tip}\n\n{detail}" if detail else col.tip


def _pnl_detail(row: Row) -> str:
    """What the P/L, ROI and R tooltips add to their column's own text ("" without a P/L)."""
    f = row.fig
    if f.gross_pnl is None:
        return ""
    lines = [f"Gross P/L {fmt_money(f.gross_pnl, row.quote)}",
             f"Fees {fmt_money(-f.fees, row.quote)} (entry paid + estimated exit)",
             f"Net P/L {fmt_money(f.pnl, row.quote)}",
             f"Exchange ROE (gross, before fees) {fmt_pct(f.roe)}"]
    funding = row.snap.position.funding
    lines.append(f"Funding {fmt_money(funding, row.quote)} (not in the P/L above)"
                 if is_num(funding) else "Funding — (not reported per position by the venue)")
    return "\n".join(lines)


class PositionsProxy(QSortFilterProxyModel):
    """Sorts by each column's raw value (numbers as numbers, text without case); a missing
    value is last in both orders. The comparison is Qt's own on the cells' sort values
    (`SORT_ROLE` ascending, `SORT_DESC_ROLE` descending): no Python per comparison."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setSortRole(SORT_ROLE)
        self.setDynamicSortFilter(True)

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        src = self.sourceModel()
        if isinstance(src, PositionsModel):
            src.prepare_sort(column)
        role = SORT_DESC_ROLE if order == Qt.SortOrder.DescendingOrder else SORT_ROLE
        if self.sortRole() != role:
            self.setSortRole(role)
        super().sort(column, order)
