"""Themes and palettes.

A `Theme` is plain data (colours as hex strings) so it can be chosen from config, compared
in tests and applied to both Qt widgets and pyqtgraph items. The semantic colours (up/down,
line kinds) live here and nowhere else: the colour-blind-safe option (Okabe–Ito blue and
orange instead of green/red) and the red-up option (East-Asian convention) are just
different values of the same fields.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace

from PySide6.QtGui import QColor, QFont, QFontDatabase, QPalette
from PySide6.QtWidgets import QApplication

from pmgui import resources

THEMES = ("dark", "light")


@dataclass(frozen=True, slots=True)
class Theme:
    name: str
    dark: bool
    window: str
    base: str
    alt_base: str
    text: str
    muted: str
    grid: str
    highlight: str
    up: str
    down: str
    entry: str
    sl: str
    tp: str
    trailing: str
    liquidation: str
    last: str
    warning: str
    error: str
    ok: str
    marker: str
    colour_blind: bool = False
    red_up: bool = False


def _load(name: str) -> Theme:
    """A theme from its bundled file (pmgui/resources/themes/NAME.toml)."""
    return Theme(name=name, **tomllib.loads(resources.read_text("themes", f"{name}.toml")))


_DARK = _load("dark")

_LIGHT = _load("light")

# Okabe–Ito: distinguishable with every common colour-vision deficiency.
_CB_UP, _CB_DOWN = "#0072b2", "#e69f00"
_CB_UP_DARK, _CB_DOWN_DARK = "#56b4e9", "#e69f00"


def make_theme(name: str = "dark", *, colour_blind: bool = False, red_up: bool = False) -> Theme:
    """The theme `name` with the palette options applied. Unknown names are an error."""
    if name not in THEMES:
        raise ValueError(f"unknown theme {name!r}: choose one of {', '.join(THEMES)}")
    t = _DARK if name == "dark" else _LIGHT
    if colour_blind:
        up, down = (_CB_UP_DARK, _CB_DOWN_DARK) if t.dark else (_CB_UP, _CB_DOWN)
        t = replace(t, up=up, down=down, tp=up, sl=down, ok=up, colour_blind=True)
    if red_up:
        t = replace(t, up=t.down, down=t.up, red_up=True)
    return t


def error_style() -> str:
    """The style sheet of an error line in the applied theme's error colour. Dialogs do not
    hold the theme: the application's palette tells which one is applied. One red for both
    (#ff6b6b) read on the light theme's white at a contrast of 2.5:1, where WCAG asks 4.5:1
    of text."""
    light = QApplication.palette().color(QPalette.ColorRole.Window).lightness() >= 128
    return f"color: {(_LIGHT if light else _DARK).error};"


def tabular_font(base: QFont | None = None) -> QFont:
    """A font whose digits all have one width, so columns of numbers line up."""
    f = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
    if base is not None:
        f.setPointSizeF(base.pointSizeF() if base.pointSizeF() > 0 else f.pointSizeF())
    return f


def apply_theme(app: QApplication, theme: Theme) -> None:
    """Fusion style plus a palette built from `theme` (consistent on every platform).

    The style is set once: replacing it deletes the old QStyle while widgets being torn down
    (a closed window's, deleted later) may still reach for it — a crash in Qt."""
    if app.style().objectName().lower() != "fusion":
        app.setStyle("Fusion")
    pal = QPalette()
    role = QPalette.ColorRole
    pal.setColor(role.Window, QColor(theme.window))
    pal.setColor(role.WindowText, QColor(theme.text))
    pal.setColor(role.Base, QColor(theme.base))
    pal.setColor(role.AlternateBase, QColor(theme.alt_base))
    pal.setColor(role.Text, QColor(theme.text))
    pal.setColor(role.Button, QColor(theme.window))
    pal.setColor(role.ButtonText, QColor(theme.text))
    pal.setColor(role.ToolTipBase, QColor(theme.base))
    pal.setColor(role.ToolTipText, QColor(theme.text))
    pal.setColor(role.Highlight, QColor(theme.highlight))
    pal.setColor(role.HighlightedText, QColor("#ffffff" if theme.dark else "#000000"))
    pal.setColor(role.PlaceholderText, QColor(theme.muted))
    pal.setColor(role.Link, QColor(theme.last))
    for r in (role.WindowText, role.Text, role.ButtonText):
        pal.setColor(QPalette.ColorGroup.Disabled, r, QColor(theme.muted))
    app.setPalette(pal)
