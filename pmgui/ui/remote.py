"""The window attached to a remote engine: a link indicator in the status bar.

The remote engine's client runs on its own thread and only sets plain attributes
(`link`, `link_detail`); the indicator reads them on a GUI timer, so no Qt object is touched
from another thread. Disconnected is shown in red with the reason; commands are refused by
the client while disconnected (never queued), and reconnecting resyncs the full state.
A resync (a reconnection, or a backlog the server dropped) replaces the positions (those
gone are told as closed), but the corrections of closed positions sent meanwhile are lost
with the backlog: the window's history is asked for again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QDialogButtonBox, QLabel, QMainWindow, QPushButton

LINK_TEXT = {
    "connected": "● engine {url}",
    "connecting": "◌ connecting to {url}…",
    "disconnected": "✖ ENGINE DISCONNECTED — reconnecting to {url}",
    "refused": "✖ ENGINE REFUSED — {detail}",
    "stopped": "✖ engine link stopped",
}


class RemoteLinkIndicator(QLabel):
    def __init__(self, remote: Any, parent: QMainWindow | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("remoteLink")
        self.remote = remote
        self.state = ""
        self._syncs = getattr(remote, "syncs", 0)  # full states received (RemoteEngine)
        self._timer = QTimer(self)
        self._timer.setInterval(200)
        self._timer.timeout.connect(self.refresh)
        self._timer.start()
        self._title = parent.windowTitle() if parent is not None else ""
        self.refresh()

    def refresh(self) -> None:
        syncs = getattr(self.remote, "syncs", 0)
        if syncs != self._syncs:
            self._syncs = syncs
            history = getattr(self.window(), "history", None)
            if history is not None:
                history.refresh_soon()
        state, detail = self.remote.link, self.remote.link_detail
        if state == self.state and detail == self.toolTip():
            return
        self.state = state
        text = LINK_TEXT.get(state, state).format(url=self.remote.url, detail=detail)
        scope = getattr(self.remote, "scope", "")
        if state == "connected" and scope == "read":
            text += " (read-only)"
        self.setText(text)
        self.setToolTip(detail)
        ok = state == "connected"
        self.setStyleSheet("" if ok else "QLabel { color: white; background: #b3261e; "
                                         "font-weight: bold; padding: 0 6px; }")
        win = self.window()
        if isinstance(win, QMainWindow) and self._title:
            win.setWindowTitle(self._title + (" — remote" if ok else " — DISCONNECTED"))


def attach_indicator(window: QMainWindow, remote: Any) -> RemoteLinkIndicator:
    label = RemoteLinkIndicator(remote, window)
    window.statusBar().addPermanentWidget(label)
    window.remote_link = label  # type: ignore[attr-defined]
    return label


def attach_remote(window: Any, remote: Any) -> RemoteLinkIndicator:
    """The window on a remote engine: the link indicator, and no quit question (closing the
    window stops nothing: the engine keeps managing the positions)."""
    window.ask_before_quit = False
    return attach_indicator(window, remote)


HANDOFF_TEXT = ("Or keep protecting: a background pmgui engine on this computer takes over "
                "the rules and trailing stops; the next pmgui you start attaches to it.")


def offer_background_engine(window: Any, on_handoff: Callable[[], None]) -> None:
    """Add "Keep protecting in the background" to the window's quit question."""

    def extend(dlg: Any) -> None:
        button = QPushButton("Keep protecting in the background")
        button.setObjectName("quitHandoff")
        button.setAutoDefault(False)
        dlg.buttons.addButton(button, QDialogButtonBox.ButtonRole.AcceptRole)
        dlg.label.setText(dlg.label.text() + "\n\n" + HANDOFF_TEXT)
        dlg.handoff_button = button

        def chosen() -> None:
            on_handoff()
            dlg.confirm_button.click()  # then quit as confirmed

        button.clicked.connect(chosen)

    window.quit_dialog_hooks.append(extend)
