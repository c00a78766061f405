"""Themes and palettes.

A `Theme` is plain data (colours as hex strings) so it can be chosen from config, compared
in tests and applied to both Qt widgets and pyqtgraph items. The semantic colours (up/down,
line kinds) live here and nowhere else: the colour-blind-safe option (Okabe–Ito blue and
orange instead of green/red) and the red-up option (East-Asian convention) are just
different values of the same fields.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from PySide6.QtGui import QColor, QFont, QFontDatabase, QPalette
from PySide6.QtWidgets import QApplication

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
    ok: str
    marker: str
    colour_blind: bool = False
    red_up: bool = False


_DARK = Theme(
    name="dark", dark=True, window="#1b1e23", base="#14161a", alt_base="#1a1d22",
    text="#e6e8eb", muted="#9aa3ad", grid="#2c3138", highlight="#2f5d8a",
    up="#26a69a", down="#ef5350", entry="#c9d1d9", sl="#ff6b6b", tp="#4cd694",
    trailing="#f0b429", liquidation="#c77dff", last="#58a6ff", warning="#ffb020",
    ok="#4cd694", marker="#ffd166",
)

_LIGHT = Theme(
    name="light", dark=False, window="#f3f4f6", base="#ffffff", alt_base="#f6f8fa",
    text="#1f2328", muted="#57606a", grid="#d0d7de", highlight="#9cc3ef",
    up="#0b8a5f", down="#cf222e", entry="#424a53", sl="#cf222e", tp="#0b8a5f",
    trailing="#9a6700", liquidation="#8250df", last="#0969da", warning="#9a6700",
    ok="#0b8a5f", marker="#bc4c00",
)

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


def tabular_font(base: QFont | None = None) -> QFont:
    """A font whose digits all have one width, so columns of numbers line up."""
    f = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
    if base is not None:
        f.setPointSizeF(base.pointSizeF() if base.pointSizeF() > 0 else f.pointSizeF())
    return f


def apply_theme(app: QApplication, theme: Theme) -> None:
    """Fusion style plus a palette built from `theme` (consistent on every platform)."""
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
