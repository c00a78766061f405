"""Confirmation for destructive actions (emergency close, close all).

The dialog states exactly what will happen, its default button is *Cancel* (so an Enter
key repeat or a stray double click never confirms), and the confirm button disables itself
on first use so a second click cannot send a second command.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
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

    def _confirm(self) -> None:
        if self._done:
            return
        self._done = True
        self.confirm_button.setEnabled(False)
        self.confirmed.emit()
        self.accept()
