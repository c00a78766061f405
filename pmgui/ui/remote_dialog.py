""""Connect to engine…": pick a saved endpoint or enter one; the token goes to the OS keyring.

Endpoints (URLs only) are remembered in the UI settings; tokens never are: they live in the
OS keyring under the service name `pmgui-engine` and the endpoint URL.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QWidget,
)

from pmgui.ui.theme import error_style

log = logging.getLogger(__name__)
KEY = "remote/endpoints"
KEYRING_SERVICE = "pmgui-engine"


def keyring_token(url: str) -> str | None:
    """The token saved for `url` (the dialog runs before the window and its engine exist)."""
    try:
        import keyring

        return keyring.get_password(KEYRING_SERVICE, url)
    except Exception as e:  # no keyring backend on this machine
        log.debug("keyring unavailable: %s", e)
        return None


def saved_endpoints(settings: QSettings) -> list[str]:
    value = settings.value(KEY, [])
    if isinstance(value, str):
        value = [value]
    return [v for v in (value or []) if isinstance(v, str) and v]


class ConnectDialog(QDialog):
    def __init__(self, settings: QSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("connectDialog")
        self.setWindowTitle("Connect to engine")
        self.settings = settings
        form = QFormLayout(self)
        self.url = QComboBox(self)
        self.url.setEditable(True)
        self.url.addItems(saved_endpoints(settings))
        self.url.setEditText(self.url.itemText(0) if self.url.count() else "ws://127.0.0.1:8765")
        self.token = QLineEdit(self)
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setPlaceholderText("empty: the token saved in the keyring for this URL")
        self.remember = QCheckBox("Save the token in the OS keyring", self)
        self.remember.setChecked(True)
        self.error = QLabel("", self)
        self.error.setStyleSheet(error_style())
        form.addRow("Engine URL", self.url)
        form.addRow("Token", self.token)
        form.addRow("", self.remember)
        form.addRow(self.error)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel, parent=self)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Connect")
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.chosen: tuple[str, str] | None = None

    def _accept(self) -> None:
        url = self.url.currentText().strip()
        if not url.startswith(("ws://", "wss://")):
            self.error.setText("The URL must start with ws:// or wss://")
            return
        token = self.token.text().strip()
        if not token:
            token = keyring_token(url) or ""
        if not token:
            self.error.setText("Enter the engine's token (pmgui token create on the engine)")
            return
        if self.remember.isChecked() and self.token.text().strip():
            try:
                import keyring

                keyring.set_password(KEYRING_SERVICE, url, token)
            except Exception as e:  # no keyring backend: use it for this session only
                log.warning("could not save the token in the keyring: %s", e)
        endpoints = [url] + [u for u in saved_endpoints(self.settings) if u != url]
        self.settings.setValue(KEY, endpoints[:10])
        self.chosen = (url, token)
        self.accept()


def ask_endpoint() -> tuple[str, str] | None:
    """Show the dialog before the main window (pmgui --connect without a URL)."""
    import sys

    from pmgui.ui.app import settings_store

    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert app is not None
    dlg = ConnectDialog(settings_store())
    dlg.exec()
    return dlg.chosen
