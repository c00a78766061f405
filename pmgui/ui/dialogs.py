"""Dialogs: edit TP/SL, order entry, keyboard shortcuts.

Dialogs never talk to the engine themselves: they build a command and hand it to a
`send(cmd, done)` callable supplied by the window (which goes through the CommandRunner),
then show the engine's answer. Input is parsed from text, so every bad input — NaN, zero,
negative, wrong side, beyond liquidation — gets its own message instead of being silently
clamped by a spin box.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from pmgui.domain.enums import Side
from pmgui.domain.errors import ValidationError
from pmgui.domain.models import Market, Position
from pmgui.domain.money import liquidation_price, risk_per_unit, valid_price
from pmgui.domain.validation import (
    check_entry_price,
    require_price,
    validate_leverage,
    validate_new_position,
    validate_targets,
)
from pmgui.engine.commands import KEEP, Command, CommandResult, OpenPosition, SetTargets
from pmgui.engine.events import PositionSnapshot
from pmgui.ui.chart_drag import DragContext, consequence
from pmgui.ui.fmt import fmt_price, fmt_qty, is_num
from pmgui.ui.theme import error_style, tabular_font

Send = Callable[[Command, Callable[[CommandResult | None, str | None], None]], bool]

MODES = ("Price", "% from entry", "R")
ORDER_TYPES = {"Market": "market", "Limit": "limit", "Stop": "stop"}
ENTRY_BUTTON = {"market": "Open at market", "limit": "Place limit order",
                "stop": "Place stop order"}
DESIGN_PRESETS = ("guardian", "breakout", "monitor", "active", "manual")


def preset_names() -> tuple[str, ...]:
    """The rule presets (from pmgui.rules.presets when present, else DESIGN §4's list)."""
    try:
        from pmgui.rules.presets import PRESETS
    except ImportError:
        return DESIGN_PRESETS
    return tuple(PRESETS) or DESIGN_PRESETS


def fixed_line(label: QLabel, lines: int = 1) -> QLabel:
    """A message line whose space is reserved: text appearing in it never moves the form,
    and a long text is cut at the dialog's edge (the whole of it is in the tooltip)."""
    label.setFixedHeight(lines * label.fontMetrics().height() + 4)
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
    label.setTextFormat(Qt.TextFormat.PlainText)
    return label


class _TipLabel(QLabel):
    """A QLabel whose tooltip repeats its text (for reserved lines that may cut it)."""

    def setText(self, text: str) -> None:
        super().setText(text)
        self.setToolTip(text)


def parse_number(text: str, name: str) -> float:
    """A number typed by a trader: thousands separators and a Unicode minus allowed."""
    t = text.strip().replace(",", "").replace("\u2212", "-").replace("%", "").rstrip("Rr")
    try:
        v = float(t)
    except ValueError:
        raise ValidationError(f"{name} must be a number (got {text.strip()!r})",
                              field=name.lower()) from None
    if math.isnan(v):
        raise ValidationError(f"{name} is not a number (NaN)", field=name.lower())
    if math.isinf(v):
        raise ValidationError(f"{name} must be finite", field=name.lower())
    return v


def level_from_input(text: str, mode: str, name: str, pos: Position) -> float | None:
    """Convert the typed value to a price. Empty → None (no level).

    `% from entry` is the signed favourable move (−2 is a 2% loss for either side); `R` is
    in multiples of the initial risk |entry − initial SL| (−1 is the initial stop).
    """
    if not text.strip():
        return None
    v = parse_number(text, name)
    if mode == MODES[0]:
        return require_price(v, name)
    if mode == MODES[1]:
        price = pos.entry * (1 + pos.side.dir * v / 100.0)
        if not price > 0:
            raise ValidationError(f"{name} {v:g}% from entry gives a price of zero or below",
                                  field=name.lower())
        return price
    r = risk_per_unit(pos.entry, pos.initial_sl)
    if r is None:
        raise ValidationError(f"{name} in R is undefined: the position has no initial stop",
                              field=name.lower())
    price = pos.entry + pos.side.dir * v * r
    if not price > 0:
        raise ValidationError(f"{name} {v:g}R gives a price of zero or below",
                              field=name.lower())
    return price


def check_level(kind: str, level: float, pos: Position, price: float | None) -> None:
    """Wrong side of the current price / beyond liquidation → ValidationError."""
    ref = price if valid_price(price) else pos.entry
    assert ref is not None
    if kind == "sl":
        validate_targets(pos.side, ref, level, None, pos.liquidation)
    else:
        validate_targets(pos.side, ref, None, level)


class EditTargetsDialog(QDialog):
    """Edit SL and TP as price, % from entry or R, with a live preview of each level."""

    def __init__(self, snap: PositionSnapshot, market: Market | None, price: float | None,
                 send: Send, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("editTargetsDialog")
        p = snap.position
        self.setWindowTitle(f"Edit TP/SL — {p.symbol}")
        self._snap, self._market, self._price, self._send = snap, market, price, send
        self._ctx = DragContext(p.side, p.entry, p.qty, p.contract_size, p.fee_rate,
                                p.initial_sl, price, market)
        self.inputs: dict[str, QLineEdit] = {}
        # the text the dialog itself put in each field (the position's level): a field
        # still showing it is the trader's "unchanged", and follows the engine's moves
        self._shown: dict[str, str] = {}
        self._moved: dict[str, float | None] = {}  # moved by the engine after the trader typed
        self.modes: dict[str, QComboBox] = {}
        self.previews: dict[str, QLabel] = {}
        side = "▲ LONG" if p.side is Side.LONG else "▼ SHORT"
        self._side_text = side
        head = QLabel(f"{p.symbol}  {side}  entry {fmt_price(p.entry, market)}  ·  "
                      f"price {fmt_price(price, market)}  ·  liq. "
                      f"{fmt_price(p.liquidation, market)}")
        head.setObjectName("targetsHeader")
        self.header = head
        grid = QGridLayout()
        for row, (kind, title, current) in enumerate((("sl", "Stop loss", p.sl),
                                                      ("tp", "Take profit", p.tp))):
            edit = QLineEdit(fmt_price(current, market) if current is not None else "")
            self._shown[kind] = edit.text()
            edit.setObjectName(f"{kind}Input")
            edit.setAccessibleName(f"{title} level")
            edit.setPlaceholderText("none")
            mode = QComboBox()
            mode.addItems(MODES)
            mode.setObjectName(f"{kind}Mode")
            mode.setAccessibleName(f"{title} unit")
            preview = fixed_line(_TipLabel())
            preview.setObjectName(f"{kind}Preview")
            grid.addWidget(QLabel(title), row * 2, 0)
            grid.addWidget(edit, row * 2, 1)
            grid.addWidget(mode, row * 2, 2)
            grid.addWidget(preview, row * 2 + 1, 1, 1, 2)
            self.inputs[kind], self.modes[kind], self.previews[kind] = edit, mode, preview
            edit.textChanged.connect(self._edited)
            mode.currentIndexChanged.connect(lambda _i, k=kind: self._mode_changed(k))
        self.error = fixed_line(_TipLabel(), 2)
        self.error.setObjectName("targetsError")
        self.error.setWordWrap(True)
        self.error.setStyleSheet(error_style())
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setObjectName("targetsOk")
        self.buttons.accepted.connect(self.submit)
        self.buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(head)
        lay.addLayout(grid)
        lay.addWidget(self.error)
        lay.addWidget(self.buttons)
        self._busy = False
        # the engine's refusal of the last OK: shown until the trader changes something
        # (a tick re-validates the fields, it must not wipe the venue's reason)
        self._refused = ""
        # the level a unit switch converted, by field: {kind: (mode, text, level)}. A
        # rounded % or R text read back would move the level by ticks, so the trader's
        # unchanged level (or the converted-back price) stays exactly what it was.
        self._converted: dict[str, tuple[str, str, float]] = {}
        self._gone = ""  # the position closed while the dialog was open: why
        self.result_message = ""
        self.result: CommandResult | None = None
        self.setMinimumWidth(540)
        self._refresh()

    def on_snapshot(self, snap: PositionSnapshot) -> None:
        """The engine's newer snapshot of the position (a trailing stop or a dynamic TP
        moved, a partial close): a field the trader has not touched follows the new level,
        so an OK never sends a stale one; a field the trader has changed stays theirs, and
        its preview says where the engine has put the level since."""
        old, p = self._snap.position, snap.position
        if p.id != old.id or self._gone:
            return
        self._snap = snap
        self._ctx = replace(self._ctx, entry=p.entry, qty=p.qty, initial_sl=p.initial_sl,
                            fee_rate=p.fee_rate, contract_size=p.contract_size)
        tol = self._market.tick_size / 2 if self._market is not None else 1e-12
        for kind in ("sl", "tp"):
            before, now = getattr(old, kind), getattr(p, kind)
            if (before is None) == (now is None) and (now is None or abs(now - before) <= tol):
                continue
            edit, mode = self.inputs[kind], self.modes[kind].currentText()
            conv = self._converted.get(kind)
            untouched = ((mode == MODES[0] and edit.text() == self._shown[kind])
                         or (conv is not None and conv[:2] == (mode, edit.text())
                             and conv[2] == before))
            if not untouched:
                self._moved[kind] = now
                continue
            text = ("" if now is None else fmt_price(now, self._market) if mode == MODES[0]
                    else self._text_for(kind, mode, now))  # (a price as when it opened)
            if text is None:  # (R without an initial stop: shown as a price)
                self.modes[kind].blockSignals(True)
                self.modes[kind].setCurrentText(MODES[0])
                self.modes[kind].blockSignals(False)
                mode, text = MODES[0], fmt_price(now, self._market)
            edit.blockSignals(True)
            edit.setText(text)
            edit.blockSignals(False)
            if mode == MODES[0]:
                self._shown[kind] = text
                self._converted.pop(kind, None)
            elif now is not None:
                self._converted[kind] = (mode, text, now)
            self._moved.pop(kind, None)
        self.header.setText(self._header_text())
        if not self._busy:
            self._refresh()

    def _header_text(self) -> str:
        p, m = self._snap.position, self._market
        return (f"{p.symbol}  {self._side_text}  entry {fmt_price(p.entry, m)}  ·  price "
                f"{fmt_price(self._price, m)}  ·  liq. {fmt_price(p.liquidation, m)}")

    def _text_for(self, kind: str, mode: str, level: float) -> str | None:
        """`level` as the field shows it in `mode` (None: R without an initial stop)."""
        p = self._snap.position
        if mode == MODES[0]:
            return fmt_price(level, self._market).replace(",", "")
        if mode == MODES[1]:
            return f"{p.side.dir * (level - p.entry) / p.entry * 100:.3f}"
        r = risk_per_unit(p.entry, p.initial_sl)
        return f"{p.side.dir * (level - p.entry) / r:.3f}" if r else None

    def on_tick(self, ev: object) -> None:
        """Validate against the newest price, not the one the dialog opened with."""
        p = self._snap.position
        price = getattr(ev, "price", None)
        if getattr(ev, "symbol", None) != p.symbol or not valid_price(price):
            return
        self._price = price
        self._ctx = replace(self._ctx, price=price)
        self.header.setText(self._header_text())
        if not self._busy:
            self._refresh()

    @property
    def position_id(self) -> str:
        return self._snap.position.id

    def position_gone(self, text: str) -> None:
        """The position closed while the dialog was open: nothing is left to protect, so
        nothing can be sent (an answer on its way still arrives)."""
        self._gone = text
        for w in (*self.inputs.values(), *self.modes.values()):
            w.setEnabled(False)
        self._refresh()

    def _edited(self) -> None:
        self._refused = ""
        self._refresh()

    def _mode_changed(self, kind: str) -> None:
        """Switching unit converts the shown value instead of reinterpreting it; the level
        itself is kept exactly (switching back and forth changes nothing)."""
        edit = self.inputs[kind]
        mode = self.modes[kind].currentText()
        prev = getattr(self, f"_last_{kind}", None)
        if prev is not None and valid_price(prev):
            # R without an initial stop: the text stays, and reads as an error in R (an
            # empty field would mean "no level" and remove it)
            text = self._text_for(kind, mode, prev)
            if text is not None:
                edit.blockSignals(True)
                edit.setText(text)
                edit.blockSignals(False)
                self._converted[kind] = (mode, text, prev)
        self._edited()

    def _level(self, kind: str) -> tuple[float | None, bool]:
        """(level, changed) for one field; raises ValidationError with a specific message."""
        p = self._snap.position
        name = "SL" if kind == "sl" else "TP"
        text, mode = self.inputs[kind].text(), self.modes[kind].currentText()
        conv = self._converted.get(kind)
        if conv is not None and conv[:2] == (mode, text):
            level: float | None = conv[2]  # the converted value, untouched since
        else:
            level = level_from_input(text, mode, name, p)
            if level is not None and self._market is not None:
                level = self._market.round_price(level)
        current = p.sl if kind == "sl" else p.tp
        if level is None or current is None:
            changed = level is not current
        else:
            tol = self._market.tick_size / 2 if self._market is not None else 1e-12
            changed = abs(level - current) > tol
        if changed and level is not None:
            check_level(kind, level, p, self._price)
        return level, changed

    def parsed(self) -> tuple[float | str | None, float | str | None]:
        """(sl, tp) as SetTargets wants them (KEEP where unchanged). Raises ValidationError."""
        out: list[float | str | None] = []
        for kind in ("sl", "tp"):
            level, changed = self._level(kind)
            out.append(level if changed else KEEP)
        return out[0], out[1]

    def _refresh(self) -> None:
        problems: list[str] = []
        notes: list[str] = []
        for kind, name in (("sl", "SL"), ("tp", "TP")):
            prev = self.previews[kind]
            try:
                level, _changed = self._level(kind)
            except ValidationError as e:
                prev.setText(f"✖ {e}")
                problems.append(str(e))
                setattr(self, f"_last_{kind}", None)
                continue
            setattr(self, f"_last_{kind}", level)
            if level is None:
                prev.setText(f"no {name}" + (": the position has no stop!" if kind == "sl"
                                             else ""))
            else:
                prev.setText(f"→ {consequence(kind, level, self._ctx)}")
            if kind in self._moved:  # the trader's value stays; the engine's is said
                now = self._moved[kind]
                notes.append(f"⚠ The engine has moved {name} to "
                             f"{fmt_price(now, self._market) if now is not None else 'none'}"
                             f" since you opened this; OK sends yours.")
        self.error.setText(self._gone or "\n".join(problems) or self._refused
                           or " ".join(notes))
        self.ok_button.setEnabled(not problems and not self._busy and not self._gone)

    def submit(self) -> None:
        if self._busy or self._gone:
            return  # Enter repeats while the engine is answering; a closed position
        try:
            sl, tp = self.parsed()
        except ValidationError as e:
            self.error.setText(str(e))
            return
        if sl == KEEP and tp == KEEP:
            self.reject()
            return
        self._busy = True
        self.ok_button.setEnabled(False)
        self.error.setText("Sending…")
        cmd = SetTargets(self._snap.position.id, sl=sl, tp=tp)
        self._send(cmd, self._on_done)

    def _on_done(self, res: CommandResult | None, err: str | None) -> None:
        self._busy = False
        if err is not None:
            self._refused = f"✖ Rejected: {err}"
            self.error.setText(self._refused)
            self._refresh_ok_only()
            return
        self.result_message = res.message if res is not None else ""
        self.result = res
        self.accept()

    def _refresh_ok_only(self) -> None:
        self.ok_button.setEnabled(not self._gone)


SIZE_UNITS = ("coins", "quote", "% of balance", "risk % of balance")
ENTRY_FEE_RATE = 0.0005  # taker fee assumed for the preview (the venue's own is charged)


class OrderDialog(QDialog):
    """Manual entry (paper and live): OpenPosition with a bracket SL/TP and a preset.

    Size in coins, in quote currency (notional), as % of the balance (margin) or by risk
    (the loss at the stop as % of the balance: R from the stop). A live preview shows the
    notional, margin, fees, liquidation price and risk before anything is sent; every bad
    value is refused with its reason on the line reserved under its field (no reflow)."""

    def __init__(self, symbols: Sequence[str], market_for: Callable[[str], Market | None],
                 price_for: Callable[[str], float | None], open_positions: Iterable[Position],
                 send: Send, parent: QWidget | None = None, *, default_preset: str = "",
                 balance: Callable[[], float | None] = lambda: None,
                 side: Side | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("orderDialog")
        self.setWindowTitle("New position")
        self._market_for, self._price_for, self._send = market_for, price_for, send
        self._balance = balance
        self._open = list(open_positions)
        self.symbol = QComboBox()
        self.symbol.setEditable(True)
        self.symbol.addItems(list(dict.fromkeys(symbols)))
        self.symbol.setObjectName("symbolInput")
        self.side = QComboBox()
        self.side.addItems(["▲ LONG (buy)", "▼ SHORT (sell)"])
        self.side.setObjectName("sideInput")
        if side is Side.SHORT:
            self.side.setCurrentIndex(1)
        self.order_type = QComboBox()
        self.order_type.setObjectName("orderTypeInput")
        self.order_type.setAccessibleName("Order type")
        self.order_type.addItems(list(ORDER_TYPES))
        self.price = QLineEdit()
        self.price.setObjectName("priceInput")
        self.price.setPlaceholderText("at market")
        self.price.setEnabled(False)
        self.qty = QLineEdit()
        self.qty.setObjectName("qtyInput")
        self.qty.setPlaceholderText("size")
        self.size_unit = QComboBox()
        self.size_unit.setObjectName("sizeUnit")
        self.size_unit.setAccessibleName("Size unit")
        self.size_unit.addItems(list(SIZE_UNITS))
        self.leverage = QLineEdit("5")
        self.leverage.setObjectName("leverageInput")
        self.sl = QLineEdit()
        self.sl.setObjectName("slInput")
        self.sl.setPlaceholderText("none")
        self.tp = QLineEdit()
        self.tp.setObjectName("tpInput")
        self.tp.setPlaceholderText("none")
        self.preset = QComboBox()
        self.preset.setObjectName("presetInput")
        names = preset_names()
        self.preset.addItems(list(names))
        if default_preset in names:
            self.preset.setCurrentText(default_preset)
        self.info = QLabel()
        self.info.setObjectName("orderInfo")
        self.preview = fixed_line(QLabel(), 5)
        self.preview.setObjectName("orderPreview")
        self.preview.setTextFormat(Qt.TextFormat.PlainText)
        self.preview.setFont(tabular_font())
        self.error = fixed_line(_TipLabel())
        self.error.setObjectName("orderError")
        self.error.setStyleSheet(error_style())
        # one reserved line under each field: an error appears without moving anything
        self.field_errors: dict[str, QLabel] = {}
        grid = QGridLayout()
        grid.setVerticalSpacing(0)
        size_row = QHBoxLayout()
        size_row.addWidget(self.qty, 1)
        size_row.addWidget(self.size_unit)
        rows = (("symbol", "Symbol", self.symbol), ("side", "Side", self.side),
                ("type", "Order type", self.order_type), ("price", "Price", self.price),
                ("qty", "Size", size_row), ("leverage", "Leverage", self.leverage),
                ("sl", "Stop loss", self.sl), ("tp", "Take profit", self.tp),
                ("preset", "Preset", self.preset))
        line_h = self.fontMetrics().height()
        for i, (key, title, w) in enumerate(rows):
            grid.addWidget(QLabel(title), 2 * i, 0)
            if isinstance(w, QHBoxLayout):
                grid.addLayout(w, 2 * i, 1)
            else:
                grid.addWidget(w, 2 * i, 1)
            err = fixed_line(_TipLabel())
            err.setObjectName(f"{key}Error")
            err.setFixedHeight(line_h + 2)
            err.setStyleSheet(error_style())
            err.setTextFormat(Qt.TextFormat.PlainText)
            grid.addWidget(err, 2 * i + 1, 1)
            self.field_errors[key] = err
        self.error.setFixedHeight(line_h + 2)
        self.preview.setFixedHeight(5 * line_h + 6)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.ok_button = QPushButton("Open at market")
        self.ok_button.setObjectName("orderOk")
        self.ok_button.setAutoDefault(False)
        self.buttons.addButton(self.ok_button, QDialogButtonBox.ButtonRole.AcceptRole)
        self.ok_button.clicked.connect(self.submit)
        self.buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(grid)
        lay.addWidget(self.info)
        lay.addWidget(self.preview)
        lay.addWidget(self.error)
        lay.addWidget(self.buttons)
        for w in (self.qty, self.leverage, self.sl, self.tp, self.price):
            w.textChanged.connect(self._refresh)
        self.order_type.currentIndexChanged.connect(self._type_changed)
        self.symbol.currentTextChanged.connect(self._refresh)
        self.side.currentIndexChanged.connect(self._refresh)
        self.size_unit.currentIndexChanged.connect(self._refresh)
        self._busy = False
        self.result: CommandResult | None = None
        self.setMinimumWidth(520)
        self._refresh()

    # -- the form -----------------------------------------------------------------------------
    def _side(self) -> Side:
        return Side.LONG if self.side.currentIndex() == 0 else Side.SHORT

    def _kind(self) -> str:
        return ORDER_TYPES[self.order_type.currentText()]

    def _type_changed(self) -> None:
        kind = self._kind()
        self.price.setEnabled(kind != "market")
        self.price.setPlaceholderText("at market" if kind == "market" else
                                      "limit price" if kind == "limit" else "trigger price")
        self.ok_button.setText(ENTRY_BUTTON[kind])
        self._refresh()

    def _entry_price(self, market: Market | None, last: float | None) -> float | None:
        """The price the entry is expected at: the market's for a market order, the typed
        limit/trigger (checked against the market) for a resting one."""
        kind = self._kind()
        if kind == "market":
            return last
        if not self.price.text().strip():
            raise ValidationError(f"enter the {'limit' if kind == 'limit' else 'trigger'} "
                                  "price", field="price")
        price = require_price(parse_number(self.price.text(), "Price"), "price")
        if market is not None:
            price = market.round_price(price)
        if valid_price(last):
            check_entry_price(kind, self._side(), price, last)  # type: ignore[arg-type]
        return price

    def _quantity(self, market: Market | None, price: float | None, lev: float,
                  sl: float | None) -> float:
        """The size in coins (contracts) the size field and its unit describe."""
        v = parse_number(self.qty.text(), "Size")
        if not v > 0:
            raise ValidationError("Size must be positive" if v < 0 else "Size cannot be zero",
                                  field="qty")
        unit = self.size_unit.currentIndex()
        if unit == 0:
            return v
        cs = market.contract_size if market is not None else 1.0
        if not valid_price(price):
            raise ValidationError("no price yet: size it in coins", field="qty")
        assert price is not None
        if unit == 1:
            return v / (price * cs)
        balance = self._balance()
        if not is_num(balance) or balance <= 0:  # type: ignore[operator]
            raise ValidationError("the balance is not known yet: size it in coins",
                                  field="qty")
        assert balance is not None
        if v > 100:
            raise ValidationError(f"{v:g} % is more than the whole balance", field="qty")
        if unit == 2:
            return balance * v / 100 * lev / (price * cs)
        if sl is None:
            raise ValidationError("risk sizing needs a stop loss (R is the distance to it)",
                                  field="qty")
        per_unit = abs(price - sl) * cs + ENTRY_FEE_RATE * (price + sl) * cs
        return balance * v / 100 / per_unit

    def command(self) -> OpenPosition:
        """The OpenPosition the form describes. Raises ValidationError with a specific message
        and the field it belongs to."""
        symbol = self.symbol.currentText().strip()
        if not symbol:
            raise ValidationError("choose a symbol", field="symbol")
        side = self._side()
        market = self._market_for(symbol)
        kind = self._kind()
        price = self._entry_price(market, self._price_for(symbol))
        lev = parse_number(self.leverage.text(), "Leverage")
        validate_leverage(lev, market.max_leverage if market else 125)
        sl = require_price(parse_number(self.sl.text(), "SL"), "SL") if self.sl.text().strip() \
            else None
        tp = require_price(parse_number(self.tp.text(), "TP"), "TP") if self.tp.text().strip() \
            else None
        if market is not None:
            sl = market.round_price(sl) if sl is not None else None
            tp = market.round_price(tp) if tp is not None else None
        if price is not None and valid_price(price):
            liq = liquidation_price(side, price, lev, market.mmr if market else 0.004)
            validate_targets(side, price, sl, tp, liq)
        qty = self._quantity(market, price, lev, sl)
        if market is not None:
            qty = market.floor_amount(qty)
        # a resting entry may add to the open position of that side when it fills
        validate_new_position(symbol, side, qty, lev, self._open if kind == "market" else (),
                              market, price)
        self._check_funds(qty, lev, market, price)
        return OpenPosition(symbol, side, qty, lev, sl, tp, self.preset.currentText() or None,
                            order_type=kind, price=None if kind == "market" else price)

    def _check_funds(self, qty: float, lev: float, market: Market | None,
                     price: float | None) -> None:
        balance = self._balance()
        if not (is_num(balance) and valid_price(price)):
            return
        assert balance is not None and price is not None
        cs = market.contract_size if market is not None else 1.0
        notional = qty * price * cs
        need = notional / lev + notional * ENTRY_FEE_RATE
        used = sum(p.entry * p.qty * p.contract_size / p.leverage for p in self._open
                   if p.leverage > 0)
        free = balance - used
        if need > free:
            quote = market.quote if market is not None else "USDT"
            raise ValidationError(
                f"needs {need:,.2f} {quote} margin + fee; {max(free, 0):,.2f} {quote} "
                f"available", field="qty")

    def _preview(self, cmd: OpenPosition) -> str:
        market = self._market_for(cmd.symbol)
        price = cmd.price if cmd.price is not None else self._price_for(cmd.symbol)
        if not valid_price(price):
            return ""
        assert price is not None
        cs = market.contract_size if market is not None else 1.0
        quote = market.quote if market is not None else "USDT"
        notional = cmd.qty * price * cs
        fees = ENTRY_FEE_RATE * notional * 2
        liq = liquidation_price(cmd.side, price, cmd.leverage, market.mmr if market else 0.004)
        base = (market.base if market is not None and market.base
                else cmd.symbol.split("/")[0])
        lines = [f"Size {fmt_qty(cmd.qty, market)} {base} · notional {notional:,.2f} {quote}",
                 f"Margin {notional / cmd.leverage:,.2f} {quote} · liquidation "
                 f"{fmt_price(liq, market)}",
                 f"Fees ≈ {fees:,.2f} {quote} (entry + exit, taker)"]
        balance = self._balance()
        if cmd.sl is not None:
            risk = abs(price - cmd.sl) * cmd.qty * cs + fees
            pct = (f" ({risk / balance * 100:.2f} % of balance)"
                   if is_num(balance) and balance > 0 else "")  # type: ignore[operator]
            lines.append(f"Risk to SL −{risk:,.2f} {quote}{pct} = 1R")
            if cmd.tp is not None and risk > 0:
                reward = abs(cmd.tp - price) * cmd.qty * cs - fees
                lines.append(f"Reward at TP {reward:+,.2f} {quote} = {reward / risk:+.2f}R")
        else:
            lines.append("No stop loss: the risk is up to the margin")
        if cmd.order_type != "market":
            verb = "buy" if cmd.side is Side.LONG else "sell"
            lines[0] = (f"{cmd.order_type.capitalize()} {verb} at {fmt_price(price, market)} "
                        "(rests until then) · " + lines[0])
        return "\n".join(lines)

    def field_problems(self) -> dict[str, str]:
        """Every field's own problem at once (each checked as far as it can be alone)."""
        out: dict[str, str] = {}
        symbol = self.symbol.currentText().strip()
        market = self._market_for(symbol) if symbol else None
        price = self._price_for(symbol) if symbol else None
        side = self._side()

        def check(key: str, fn: Callable[[], object]) -> object:
            try:
                return fn()
            except ValidationError as e:
                out.setdefault(key, str(e))
                return None

        if self._kind() != "market":
            price = check("price", lambda: self._entry_price(market, price))  # type: ignore

        if self.qty.text().strip():  # the size as a number (the rest needs the other fields)
            size = check("qty", lambda: parse_number(self.qty.text(), "Size"))
            if size is not None and not size > 0:  # type: ignore[operator]
                out.setdefault("qty", "Size must be positive" if size < 0  # type: ignore
                               else "Size cannot be zero")
        lev = check("leverage", lambda: parse_number(self.leverage.text(), "Leverage"))
        if lev is not None:
            check("leverage", lambda: validate_leverage(
                lev, market.max_leverage if market else 125))
        levels: dict[str, float | None] = {}
        for key, edit, name in (("sl", self.sl, "SL"), ("tp", self.tp, "TP")):
            if not edit.text().strip():
                levels[key] = None
                continue
            v = check(key, lambda e=edit, n=name: require_price(parse_number(e.text(), n), n))
            if v is None:
                continue
            v = market.round_price(v) if market is not None else v  # type: ignore[arg-type]
            levels[key] = v  # type: ignore[assignment]
            if valid_price(price) and "leverage" not in out and lev is not None:
                liq = liquidation_price(side, price, lev,  # type: ignore[arg-type]
                                        market.mmr if market else 0.004)
                check(key, lambda k=key, lv=v, lq=liq: validate_targets(
                    side, price, lv if k == "sl" else None, lv if k == "tp" else None,
                    lq if k == "sl" else None))
        return out

    def _refresh(self) -> None:
        symbol = self.symbol.currentText().strip()
        price = self._price_for(symbol) if symbol else None
        market = self._market_for(symbol) if symbol else None
        self.info.setText(f"Last price {fmt_price(price, market)}")
        for lab in self.field_errors.values():
            lab.setText("")
        problems = self.field_problems()
        try:
            cmd = self.command()
        except ValidationError as e:
            key = _FIELD_OF.get((e.field or "").lower(), "qty")
            problems.setdefault(key, str(e))
        else:
            if not problems:
                self.error.setText("")
                self.preview.setText(self._preview(cmd))
                self.ok_button.setEnabled(not self._busy)
                return
        if not self.qty.text().strip():
            problems.pop("qty", None)
        for key, msg in problems.items():
            self.field_errors[key].setText(f"✖ {msg}")
        first = next(iter(problems.values()), "Enter a size")
        self.error.setText(first if len(problems) < 2
                           else f"{len(problems)} problems: {first}")
        self.preview.setText("")
        self.ok_button.setEnabled(False)

    def submit(self) -> None:
        if self._busy:
            return
        try:
            cmd = self.command()
        except ValidationError as e:
            self.error.setText(str(e))
            return
        self._busy = True
        self.ok_button.setEnabled(False)
        self.error.setText("Sending…")
        self._send(cmd, self._on_done)

    def _on_done(self, res: CommandResult | None, err: str | None) -> None:
        self._busy = False
        if err is not None:
            self.error.setText(f"✖ Rejected: {err}")
            self.ok_button.setEnabled(True)
            return
        self.result = res
        self.accept()


# ValidationError.field → the form row whose reserved line shows the reason
_FIELD_OF = {"price": "price", "order_type": "type", "symbol": "symbol", "amount": "qty",
             "qty": "qty", "size": "qty",
             "quantity": "qty", "leverage": "leverage", "sl": "sl", "tp": "tp",
             "stop loss": "sl", "take profit": "tp"}


def protection_summary(res: CommandResult | None, market: Market | None,
                       roles: Sequence[str] = ("sl", "tp"), *,
                       default: float | None = None) -> str:
    """What the venue confirmed, in words: ✔ only for levels acknowledged on the exchange,
    ⚠ with the reason for anything else (DESIGN §2: the UI shows success only for that)."""
    names = {"sl": "SL", "tp": "TP"}
    outcomes = [o for o in (res.outcomes if res is not None else ()) if o.role in roles]
    if not outcomes:
        what = " / ".join(names.get(r, r) for r in roles)
        level = f" {fmt_price(default, market)}" if default is not None else ""
        return (f"⚠ {what}{level} sent; the engine did not confirm an order on the exchange"
                + (f" ({res.message})" if res is not None and res.message else ""))
    parts = []
    for o in outcomes:
        name = names.get(o.role, o.role)
        if o.level is None:
            parts.append(f"✔ {name} removed" if o.protection != "local_only"
                         else f"⚠ {name} removed locally only: {o.reason}")
        elif o.protection == "on_exchange":
            parts.append(f"✔ {name} {fmt_price(o.level, market)} on the exchange")
        elif o.protection == "local_only":
            parts.append(f"⚠ {name} {fmt_price(o.level, market)} guarded by pmgui only"
                         + (f": {o.reason}" if o.reason else ""))
        else:
            parts.append(f"⚠ {name} {fmt_price(o.level, market)} NOT protected"
                         + (f": {o.reason}" if o.reason else ""))
    return " · ".join(parts)


class AmountDialog(QDialog):
    """One number with a live preview and a reserved error line (partial close %, add qty).

    `parse(text)` returns (value, preview text) or raises ValidationError; OK emits `chosen`.
    """

    chosen = Signal(float)

    def __init__(self, title: str, label: str, parse: Callable[[str], tuple[float, str]],
                 parent: QWidget | None = None, *, object_name: str = "amountDialog",
                 ok_text: str = "OK") -> None:
        super().__init__(parent)
        self.setObjectName(object_name)
        self.setWindowTitle(title)
        self._parse = parse
        self.input = QLineEdit()
        self.input.setObjectName("amountInput")
        self.input.setAccessibleName(label)
        self.preview = fixed_line(_TipLabel())
        self.preview.setObjectName("amountPreview")
        self.error = fixed_line(_TipLabel())
        self.error.setObjectName("amountError")
        self.error.setStyleSheet(error_style())
        h = self.fontMetrics().height() + 2
        self.preview.setFixedHeight(h)
        self.error.setFixedHeight(h)
        form = QFormLayout()
        form.addRow(label, self.input)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.ok_button = QPushButton(ok_text)
        self.ok_button.setObjectName("amountOk")
        self.ok_button.setAutoDefault(False)
        self.buttons.addButton(self.ok_button, QDialogButtonBox.ButtonRole.AcceptRole)
        self.ok_button.clicked.connect(self.submit)
        self.buttons.rejected.connect(self.reject)
        self.input.returnPressed.connect(self.submit)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.preview)
        lay.addWidget(self.error)
        lay.addWidget(self.buttons)
        self.input.textChanged.connect(self._refresh)
        self.setMinimumWidth(400)
        self.position_id: str | None = None  # the position the amount is for
        self._gone = ""
        self._refresh()

    def position_gone(self, text: str) -> None:
        """The position closed while the dialog was open: nothing can be sent for it."""
        self._gone = text
        self.input.setEnabled(False)
        self._refresh()

    def _refresh(self) -> float | None:
        if self._gone:
            self.error.setText(self._gone)
            self.ok_button.setEnabled(False)
            return None
        if not self.input.text().strip():
            self.preview.setText("")
            self.error.setText("")
            self.ok_button.setEnabled(False)
            return None
        try:
            value, preview = self._parse(self.input.text())
        except ValidationError as e:
            self.preview.setText("")
            self.error.setText(f"✖ {e}")
            self.ok_button.setEnabled(False)
            return None
        self.preview.setText(preview)
        self.error.setText("")
        self.ok_button.setEnabled(True)
        return value

    def submit(self) -> None:
        value = self._refresh()
        if value is None:
            return
        self.chosen.emit(value)
        self.accept()


class ShortcutsDialog(QDialog):
    """Every action with a shortcut, read from the actions themselves (never out of date)."""

    def __init__(self, actions: Iterable, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("shortcutsDialog")
        self.setWindowTitle("Keyboard shortcuts")
        rows = [(a.text().replace("&", ""), a.shortcut().toString(
            QKeySequence.SequenceFormat.NativeText)) for a in actions if not a.shortcut().isEmpty()]
        self.table = QTableWidget(len(rows), 2)
        self.table.setObjectName("shortcutsTable")
        self.table.setHorizontalHeaderLabels(["Action", "Shortcut"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setColumnWidth(0, 260)
        for r, (name, keys) in enumerate(rows):
            self.table.setItem(r, 0, QTableWidgetItem(name))
            self.table.setItem(r, 1, QTableWidgetItem(keys))
        note = QLabel("Drag the SL or TP line on the chart to move it; Esc or a right click "
                      "cancels a drag. Double-click a row to edit its TP/SL.")
        note.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(self.table)
        lay.addWidget(note)
        lay.addWidget(buttons)
        self.resize(460, 420)
