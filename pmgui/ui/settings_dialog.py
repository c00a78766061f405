"""The Settings dialog: exchange credentials, per-symbol presets, behaviour.

Why three very different tabs in one dialog: a trader looks for "settings" in one place.
Each tab writes to exactly one home, and says which:
- Exchange: the API key goes to the OS keyring (never QSettings, SQLite, logs or this
  window once saved); the exchange id and demo mode come from config.toml, which pmgui
  never writes, so they are shown read-only. Keyring calls run on a worker thread (a
  locked keyring may prompt or hang); paper trading needs no key, so the section is hidden.
- Presets: `SetSymbolRules` commands; the engine validates and stores them in its database.
  A row the engine rejects shows the reason beside it and keeps its old rules.
- Behaviour: the window's UiSettings, applied at once and persisted by the window in the
  same QSettings file as its layout.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from pmgui.domain.errors import ValidationError
from pmgui.domain.models import Scalar
from pmgui.engine.commands import (
    Command,
    CommandResult,
    EngineInfo,
    GetEngineInfo,
    GetSymbolRules,
    SetSymbolRules,
    SymbolRulesSnapshot,
)
from pmgui.exchange.credentials import (
    Credentials,
    credentials_stored,
    delete_credentials,
    store_credentials,
)
from pmgui.rules.params import parse_assignment
from pmgui.ui.dialogs import preset_names
from pmgui.ui.handle import EngineHandle
from pmgui.ui.theme import THEMES

if TYPE_CHECKING:
    from pmgui.ui.main_window import UiSettings

Send = Callable[[Command, Callable[[CommandResult | None, str | None], None]], bool]
Ask = Callable[[Command, Callable[[object, str | None], None]], bool]
Rules = dict[str, tuple[str, dict[str, Scalar]]]

PRESET_COLUMNS = ("Symbol", "Preset", "Overrides (rule.param=value, …)", "Status")


def parse_overrides(text: str) -> dict[str, Scalar]:
    """`rule.param=value` items separated by commas or newlines → validated overrides.

    Each item goes through the catalogue (`parse_assignment`), so an unknown name, a wrong
    type or an out-of-range value is a ValidationError naming it; a name given twice is
    an error too (which one was meant?).
    """
    out: dict[str, Scalar] = {}
    for item in re.split(r"[,\n;]", text):
        item = item.strip()
        if not item:
            continue
        name, value = parse_assignment(item)
        if name in out:
            raise ValidationError(f"{name} is given twice", field=name)
        out[name] = value
    return out


def format_overrides(overrides: Mapping[str, Scalar]) -> str:
    """The inverse of parse_overrides, sorted by name (bools as true/false). A float is
    written exactly (its shortest round-trip digits) and without an exponent: rounded to
    6 digits ("0.0123457"), it parsed back to another value, and the next Apply sent that
    value as a change the trader never made."""
    def fmt(v: Scalar) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float):
            if not math.isfinite(v):
                return str(v)
            text = repr(v)  # the shortest digits that read back as `v`
            return format(Decimal(text), "f") if "e" in text or "E" in text else text
        return str(v)

    return ", ".join(f"{k}={fmt(v)}" for k, v in sorted(overrides.items()))


class SettingsDialog(QDialog):
    """Settings; `apply_ui(settings)` applies and persists behaviour changes in the window."""

    rulesLoaded = Signal()
    rulesApplied = Signal(str, bool)  # symbol, accepted
    _answer = Signal(object, object, object)  # callback, value, error (cross-thread)

    def __init__(self, engine: EngineHandle, settings: UiSettings,
                 apply_ui: Callable[[UiSettings], None], send: Send, *,
                 ask: Ask | None = None, keyring_backend: object | None = None,
                 error_colour: str = "#d73a49",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("settingsDialog")
        self.setWindowTitle("pmgui settings")
        self.setMinimumSize(760, 460)
        self._engine = engine
        self._settings = dataclasses.replace(settings)
        self._apply_ui = apply_ui
        self._send = send
        self._ask_engine = ask
        self._keyring = keyring_backend
        self._keyring_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="pmgui-keyring")
        self.paper = engine.exchange_id == "paper"
        self._keyring_jobs = 0
        self._error_colour = error_colour
        self._answer.connect(lambda cb, value, err: cb(value, err))

        self.tabs = QTabWidget()
        self.tabs.setObjectName("settingsTabs")
        self.tabs.addTab(self._exchange_tab(), "Exchange")
        self.tabs.addTab(self._presets_tab(), "Presets")
        self.tabs.addTab(self._behaviour_tab(), "Behaviour")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(self.tabs)
        lay.addWidget(buttons)

        if not self.paper:
            self.refresh_credentials_state()
            self._ask(GetEngineInfo(), self._on_demo)
        self.load_rules()

    # -- engine requests and keyring calls, answered in the GUI thread ----------------------
    def _ask(self, req: Command, done: Callable[[object, str | None], None]) -> None:
        if self._ask_engine is None:
            done(None, "this engine cannot be asked")
            return
        self._ask_engine(req, done)

    def _off_thread(self, fn: Callable[[], object],
                    done: Callable[[object, str | None], None]) -> None:
        """Run a keyring call on the worker thread; `done(value, error)` in the GUI thread."""
        try:
            fut = self._keyring_pool.submit(fn)
        except RuntimeError:  # the dialog is closing
            return
        self._keyring_jobs += 1

        def finish(value: object, err: str | None) -> None:
            self._keyring_jobs -= 1
            done(value, err)

        def complete(f: concurrent.futures.Future) -> None:
            try:
                value, err = f.result(), None
            except Exception as e:
                value, err = None, str(e) or type(e).__name__
            try:
                self._answer.emit(finish, value, err)
            except RuntimeError:  # the dialog was closed meanwhile
                pass

        fut.add_done_callback(complete)

    def done(self, r: int) -> None:
        self._keyring_pool.shutdown(wait=False, cancel_futures=True)
        super().done(r)

    @property
    def keyring_busy(self) -> bool:
        return self._keyring_jobs > 0

    # -- exchange ---------------------------------------------------------------------------
    def _exchange_tab(self) -> QWidget:
        w = QWidget()
        w.setObjectName("exchangeTab")
        form = QFormLayout()
        ex = self._engine.exchange_id
        self.exchange_label = QLabel(ex)
        self.exchange_label.setObjectName("exchangeId")
        self.demo_label = QLabel("paper trading (simulated)" if ex == "paper" else "…")
        self.demo_label.setObjectName("demoMode")
        form.addRow("Exchange", self.exchange_label)
        form.addRow("Demo / testnet", self.demo_label)
        note = QLabel("The exchange and demo mode come from config.toml ([exchange] id, demo); "
                      "pmgui never writes that file. Edit it and restart to change them.")
        note.setWordWrap(True)
        note.setObjectName("configNote")

        self.api_key_edit = QLineEdit()
        self.api_key_edit.setObjectName("apiKey")
        self.secret_edit = QLineEdit()
        self.secret_edit.setObjectName("apiSecret")
        self.password_edit = QLineEdit()
        self.password_edit.setObjectName("apiPassword")
        for e, ph in ((self.api_key_edit, "API key"), (self.secret_edit, "API secret"),
                      (self.password_edit, "passphrase (OKX and a few others; else empty)")):
            e.setEchoMode(QLineEdit.EchoMode.Password)  # never readable in a screenshot
            e.setPlaceholderText(ph)
            e.setAccessibleName(ph)
        creds = QFormLayout()
        creds.addRow("API key", self.api_key_edit)
        creds.addRow("Secret", self.secret_edit)
        creds.addRow("Passphrase", self.password_edit)
        self.cred_state = QLabel()
        self.cred_state.setObjectName("credentialsState")
        self.cred_error = QLabel()
        self.cred_error.setObjectName("credentialsError")
        self.cred_error.setWordWrap(True)
        self.cred_error.setTextFormat(Qt.TextFormat.PlainText)
        self.save_creds = QPushButton("Save to OS keyring")
        self.save_creds.setObjectName("saveCredentials")
        self.save_creds.clicked.connect(self.save_credentials)
        self.delete_creds = QPushButton("Remove from keyring")
        self.delete_creds.setObjectName("deleteCredentials")
        self.delete_creds.clicked.connect(self.remove_credentials)
        row = QHBoxLayout()
        row.addWidget(self.cred_state, 1)
        row.addWidget(self.delete_creds)
        row.addWidget(self.save_creds)
        restart = QLabel(f"Stored in the OS keyring (service \"pmgui\", user \"{ex}\"), never "
                         "in pmgui's files. Restart pmgui to connect with new credentials.")
        restart.setWordWrap(True)
        restart.setObjectName("restartNote")

        lay = QVBoxLayout(w)
        lay.addLayout(form)
        lay.addWidget(note)
        lay.addSpacing(10)
        self.credentials_box = QWidget()
        self.credentials_box.setObjectName("credentialsBox")
        box = QVBoxLayout(self.credentials_box)
        box.setContentsMargins(0, 0, 0, 0)
        box.addLayout(creds)
        box.addLayout(row)
        box.addWidget(self.cred_error)
        box.addWidget(restart)
        lay.addWidget(self.credentials_box)
        self.paper_note = QLabel("Paper trading is simulated: it needs no API key. Set an "
                                 "exchange id in config.toml to trade on a real venue.")
        self.paper_note.setObjectName("paperNote")
        self.paper_note.setWordWrap(True)
        lay.addWidget(self.paper_note)
        self.credentials_box.setVisible(ex != "paper")
        self.paper_note.setVisible(ex == "paper")
        lay.addStretch(1)
        return w

    def _on_demo(self, value: object, err: str | None) -> None:
        if self.paper:
            return
        demo = value.demo if isinstance(value, EngineInfo) else None
        if err is not None or not isinstance(demo, bool):
            self.demo_label.setText("unknown (the engine did not say)")
        else:
            self.demo_label.setText("on (demo / testnet)" if demo else "off (LIVE trading)")

    def _cred_problem(self, message: str) -> None:
        self.cred_error.setText(f"✖ {message}")
        self.cred_error.setStyleSheet(f"color: {self._error_colour};")

    def _cred_note(self, message: str) -> None:
        self.cred_error.setText(message)
        self.cred_error.setStyleSheet("")

    def refresh_credentials_state(self) -> None:
        """Whether the keyring holds a key for this exchange; never its content."""
        self.cred_state.setText("API key: checking the OS keyring…")
        ex, backend = self._engine.exchange_id, self._keyring
        self._off_thread(lambda: credentials_stored(ex, backend=backend), self._on_stored)

    def _on_stored(self, stored: object, err: str | None) -> None:
        if err is not None:
            self.cred_state.setText("API key: keyring unavailable")
            self._cred_problem(err)
            self.save_creds.setEnabled(True)  # trying again names the reason again
            self.delete_creds.setEnabled(False)
            return
        self.cred_state.setText("API key: stored in the OS keyring" if stored
                                else "API key: not stored")
        self.delete_creds.setEnabled(bool(stored))

    def save_credentials(self) -> bool:
        """Store the typed key in the keyring (off the GUI thread), then clear the fields
        (nothing is shown back). False when the input is refused before trying."""
        self.cred_error.clear()
        key, secret = self.api_key_edit.text().strip(), self.secret_edit.text().strip()
        password = self.password_edit.text().strip() or None
        if not key or not secret:
            self._cred_problem("both the API key and the secret are required")
            return False
        for e in (self.api_key_edit, self.secret_edit, self.password_edit):
            e.clear()
        ex, backend = self._engine.exchange_id, self._keyring
        creds = Credentials(key, secret, password, source="settings")
        self._cred_note("Saving to the OS keyring…")
        self._off_thread(lambda: store_credentials(ex, creds, backend=backend), self._on_saved)
        return True

    def _on_saved(self, _value: object, err: str | None) -> None:
        if err is not None:
            self._cred_problem(err)
            return
        self.refresh_credentials_state()
        self._cred_note("✔ Saved. Restart pmgui to use the new credentials.")

    def remove_credentials(self) -> bool:
        self.cred_error.clear()
        ex, backend = self._engine.exchange_id, self._keyring
        self._off_thread(lambda: delete_credentials(ex, backend=backend), self._on_removed)
        return True

    def _on_removed(self, removed: object, err: str | None) -> None:
        if err is not None:
            self._cred_problem(err)
            return
        self.refresh_credentials_state()
        self._cred_note("✔ Removed from the keyring." if removed else "Nothing was stored.")

    # -- presets ----------------------------------------------------------------------------
    def _presets_tab(self) -> QWidget:
        w = QWidget()
        w.setObjectName("presetsTab")
        self.rules_table = QTableWidget(0, len(PRESET_COLUMNS))
        self.rules_table.setObjectName("symbolRules")
        self.rules_table.setAccessibleName("Preset and overrides per symbol")
        self.rules_table.setHorizontalHeaderLabels(list(PRESET_COLUMNS))
        self.rules_table.verticalHeader().setVisible(False)
        self.rules_table.verticalHeader().setDefaultSectionSize(28)
        self.rules_table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        hdr = self.rules_table.horizontalHeader()
        hdr.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        hdr.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        hdr.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        hdr.setSectionResizeMode(3, QHeaderView.ResizeMode.Interactive)
        self.rules_table.setColumnWidth(3, 200)
        self.rules_state = QLabel("Loading…")
        self.rules_state.setObjectName("rulesState")
        self.rules_state.setWordWrap(True)
        self.apply_rules_button = QPushButton("Apply")
        self.apply_rules_button.setObjectName("applyRules")
        self.apply_rules_button.clicked.connect(self.apply_rules)
        note = QLabel("For new and adopted positions of each symbol. Stored in pmgui's database "
                      "on top of config.toml. Open positions keep their preset (change it from "
                      "the position's context menu).")
        note.setWordWrap(True)
        bottom = QHBoxLayout()
        bottom.addWidget(self.rules_state, 1)
        bottom.addWidget(self.apply_rules_button)
        lay = QVBoxLayout(w)
        lay.addWidget(note)
        lay.addWidget(self.rules_table, 1)
        lay.addLayout(bottom)
        self._rules: Rules = {}
        self._rows: dict[str, int] = {}
        return w

    def load_rules(self) -> None:
        self._ask(GetSymbolRules(), self._on_rules)

    def _on_rules(self, value: object, err: str | None) -> None:
        if err is not None or not isinstance(value, SymbolRulesSnapshot):
            self.rules_state.setText(f"✖ Could not read the symbols' rules: "
                                     f"{err or 'no answer'}")
            self.apply_rules_button.setEnabled(False)
            return
        self._rules = {str(s): (str(p), dict(o)) for s, (p, o) in value.rules.items()}
        t = self.rules_table
        t.setRowCount(len(self._rules))
        self._rows = {}
        names = list(value.presets) or list(preset_names())
        for row, (symbol, (preset, overrides)) in enumerate(self._rules.items()):
            self._rows[symbol] = row
            item = QTableWidgetItem(symbol)
            item.setFlags(Qt.ItemFlag.ItemIsEnabled)
            t.setItem(row, 0, item)
            combo = QComboBox()
            combo.setObjectName(f"preset:{symbol}")
            combo.addItems(names if preset in names else [*names, preset])
            combo.setCurrentText(preset)
            combo.setAccessibleName(f"{symbol} preset")
            t.setCellWidget(row, 1, combo)
            edit = QLineEdit(format_overrides(overrides))
            edit.setObjectName(f"overrides:{symbol}")
            edit.setAccessibleName(f"{symbol} overrides")
            edit.setPlaceholderText("e.g. trailing.distance=0.015, stop_loss.pct=0.01")
            t.setCellWidget(row, 2, edit)
            status = QLabel()
            status.setObjectName(f"status:{symbol}")
            status.setWordWrap(True)
            status.setTextFormat(Qt.TextFormat.PlainText)
            status.setContentsMargins(4, 0, 4, 0)
            t.setCellWidget(row, 3, status)
        self.rules_state.setText(f"{len(self._rules)} symbols" if self._rules
                                 else "No symbols known yet")
        self.apply_rules_button.setEnabled(bool(self._rules))
        self.rulesLoaded.emit()

    def preset_combo(self, symbol: str) -> QComboBox:
        return self.rules_table.cellWidget(self._rows[symbol], 1)  # type: ignore[return-value]

    def overrides_edit(self, symbol: str) -> QLineEdit:
        return self.rules_table.cellWidget(self._rows[symbol], 2)  # type: ignore[return-value]

    def row_status(self, symbol: str) -> QLabel:
        return self.rules_table.cellWidget(self._rows[symbol], 3)  # type: ignore[return-value]

    def _set_status(self, symbol: str, text: str, ok: bool) -> None:
        lab = self.row_status(symbol)
        lab.setText(text)
        lab.setToolTip(text)
        lab.setStyleSheet("" if ok else f"color: {self._error_colour}; font-weight: bold;")
        row = self._rows[symbol]  # room for a long reason, never less than the default
        need = lab.heightForWidth(self.rules_table.columnWidth(3) - 8) + 8
        self.rules_table.setRowHeight(row, max(28, need))

    def apply_rules(self) -> int:
        """Send SetSymbolRules for each changed row; returns how many were sent."""
        sent = 0
        for symbol, (preset, overrides) in self._rules.items():
            new_preset = self.preset_combo(symbol).currentText()
            try:
                new_overrides = parse_overrides(self.overrides_edit(symbol).text())
            except ValidationError as e:
                self._set_status(symbol, f"✖ {e}", False)
                continue
            if new_preset == preset and new_overrides == overrides:
                if self.row_status(symbol).text().startswith("✖"):
                    # the refused input is gone (the stored rules are back): so is the refusal
                    self._set_status(symbol, "", True)
                continue
            self._set_status(symbol, "sending…", True)
            cmd = SetSymbolRules(symbol, new_preset, new_overrides)
            if self._send(cmd, lambda res, err, s=symbol, c=cmd: self._rules_done(s, c, res,
                                                                                  err)):
                sent += 1
        if sent == 0:
            self.rules_state.setText("Nothing changed")
        return sent

    def _rules_done(self, symbol: str, cmd: SetSymbolRules, res: CommandResult | None,
                    err: str | None) -> None:
        if err is not None:
            self._set_status(symbol, f"✖ {err}", False)
            self.rulesApplied.emit(symbol, False)
            return
        self._rules[symbol] = (cmd.preset or "", dict(cmd.overrides))
        self._set_status(symbol, "✔ saved", True)
        self.rules_state.setText(res.message if res is not None and res.message else "Saved")
        self.rulesApplied.emit(symbol, True)

    # -- behaviour --------------------------------------------------------------------------
    def _behaviour_tab(self) -> QWidget:
        w = QWidget()
        w.setObjectName("behaviourTab")
        s = self._settings
        self.theme_combo = QComboBox()
        self.theme_combo.setObjectName("themeCombo")
        self.theme_combo.addItems(list(THEMES))
        self.theme_combo.setCurrentText(s.theme)
        self.theme_combo.currentTextChanged.connect(lambda _t: self._behaviour_changed())

        def box(name: str, text: str, checked: bool) -> QCheckBox:
            b = QCheckBox(text)
            b.setObjectName(name)
            b.setChecked(checked)
            b.toggled.connect(lambda _c: self._behaviour_changed())
            return b

        self.colour_blind_box = box("colourBlindBox", "Colour-blind-safe palette "
                                    "(blue/orange instead of green/red)", s.colour_blind)
        self.red_up_box = box("redUpBox", "Red means up (East-Asian convention)", s.red_up)
        self.confirm_drags_box = box("confirmDragsBox", "Confirm or discard after dragging "
                                     "an SL/TP line (instead of sending at once)",
                                     s.confirm_drags)
        self.drag_modifier_box = box("dragModifierBox", "Require Shift to drag SL/TP lines",
                                     s.drag_modifier)
        self.sound_box = box("soundBox", "Sound on closes and emergency stops",
                             s.sound_alerts)
        form = QFormLayout()
        form.addRow("Theme", self.theme_combo)
        lay = QVBoxLayout(w)
        lay.addLayout(form)
        for b in (self.colour_blind_box, self.red_up_box, self.confirm_drags_box,
                  self.drag_modifier_box, self.sound_box):
            lay.addWidget(b)
        note = QLabel("Applied at once and remembered with the window layout.")
        note.setWordWrap(True)
        lay.addWidget(note)
        lay.addStretch(1)
        return w

    def show_behaviour(self, settings: UiSettings) -> None:
        """Reflect settings changed elsewhere (toolbar, menu) without re-applying them."""
        self._settings = dataclasses.replace(settings)
        pairs = ((self.colour_blind_box, settings.colour_blind), (self.red_up_box, settings.red_up),
                 (self.confirm_drags_box, settings.confirm_drags),
                 (self.drag_modifier_box, settings.drag_modifier),
                 (self.sound_box, settings.sound_alerts))
        for w in (self.theme_combo, *(b for b, _ in pairs)):
            w.blockSignals(True)
        try:
            self.theme_combo.setCurrentText(settings.theme)
            for b, on in pairs:
                b.setChecked(on)
        finally:
            for w in (self.theme_combo, *(b for b, _ in pairs)):
                w.blockSignals(False)

    def _behaviour_changed(self) -> None:
        self._settings = dataclasses.replace(
            self._settings, theme=self.theme_combo.currentText(),
            colour_blind=self.colour_blind_box.isChecked(), red_up=self.red_up_box.isChecked(),
            confirm_drags=self.confirm_drags_box.isChecked(),
            drag_modifier=self.drag_modifier_box.isChecked(),
            sound_alerts=self.sound_box.isChecked())
        self._apply_ui(dataclasses.replace(self._settings))
