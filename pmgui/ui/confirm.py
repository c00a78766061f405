"""Confirmation for destructive actions (emergency close, close all).

The dialog states exactly what will happen, its default button is *Cancel* (so an Enter
key repeat or a stray double click never confirms), and the confirm button disables itself
on first use so a second click cannot send a second command.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)


class ConfirmDialog(QDialog):
    confirmed = Signal()

    def __init__(self, title: str, text: str, confirm_text: str,
                 parent: QWidget | None = None, *, object_name: str = "confirmDialog") -> None:
        super().__init__(parent)
        self.setObjectName(object_name)
        self.setWindowTitle(title)
        self.setWindowModality(Qt.WindowModality.WindowModal)
        self.label = QLabel(text)
        self.label.setObjectName("confirmText")
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        self.buttons = QDialogButtonBox()
        self.cancel_button: QPushButton = self.buttons.addButton(
            QDialogButtonBox.StandardButton.Cancel)
        self.cancel_button.setObjectName("confirmCancel")
        self.confirm_button = QPushButton(confirm_text)
        self.confirm_button.setObjectName("confirmButton")
        self.confirm_button.setAccessibleName(confirm_text)
        self.confirm_button.setAutoDefault(False)
        self.confirm_button.setDefault(False)
        self.cancel_button.setDefault(True)
        self.buttons.addButton(self.confirm_button, QDialogButtonBox.ButtonRole.DestructiveRole)
        self.confirm_button.clicked.connect(self._confirm)
        self.buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(self.label)
        lay.addWidget(self.buttons)
        self._done = False
        self.position_id: str | None = None  # the position the question is about

    def position_gone(self, text: str) -> None:
        """The position closed while the question was open: nothing is left to confirm."""
        if self._done:
            return
        self._done = True
        self.confirm_button.setEnabled(False)
        self.label.setText(text)
        self.cancel_button.setText("Close")

    def _confirm(self) -> None:
        if self._done:
            return
        self._done = True
        self.confirm_button.setEnabled(False)
        self.confirmed.emit()
        self.accept()


class DragConfirmBar(QFrame):
    """The confirm/discard step after a drag (when the `confirm_drags` setting is on).

    Shown above the chart, never modal: the chart keeps updating while the trader decides.
    Esc discards; Apply must be clicked (Enter does not apply by accident).
    """

    applied = Signal(str, str, float)  # position id, kind, level
    discarded = Signal(str, str, float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("dragConfirmBar")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.label = QLabel()
        self.label.setObjectName("dragConfirmText")
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        self.apply_button = QPushButton("Apply")
        self.apply_button.setObjectName("dragApply")
        self.apply_button.setAutoDefault(False)
        self.discard_button = QPushButton("Discard (Esc)")
        self.discard_button.setObjectName("dragDiscard")
        self.discard_button.setAutoDefault(False)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(8, 4, 8, 4)
        lay.addWidget(self.label, 1)
        lay.addWidget(self.apply_button)
        lay.addWidget(self.discard_button)
        self.apply_button.clicked.connect(self.apply)
        self.discard_button.clicked.connect(self.discard)
        self._esc = QAction(self)
        self._esc.setShortcut(QKeySequence(Qt.Key.Key_Escape))
        self._esc.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        self._esc.triggered.connect(self.discard)
        self._esc.setEnabled(False)
        self.addAction(self._esc)
        self.proposal: tuple[str, str, float] | None = None
        self.hide()

    def ask(self, position_id: str, kind: str, level: float, text: str) -> None:
        # another level's proposal is discarded; the same line re-dragged replaces its own
        # (discarding it would restore the line that now shows the new proposal)
        if self.proposal is not None and self.proposal[:2] != (position_id, kind):
            self.discard()
        self.proposal = (position_id, kind, level)
        self.label.setText(text)
        self._esc.setEnabled(True)
        self.show()

    def apply(self) -> None:
        p = self._take()
        if p is not None:
            self.applied.emit(*p)

    def discard(self) -> None:
        p = self._take()
        if p is not None:
            self.discarded.emit(*p)

    def _take(self) -> tuple[str, str, float] | None:
        p, self.proposal = self.proposal, None
        self._esc.setEnabled(False)
        self.hide()
        return p
