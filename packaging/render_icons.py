"""Render the application icon's PNG sizes from its SVG source with Qt's QSvgRenderer.

    QT_QPA_PLATFORM=offscreen python packaging/render_icons.py

Writes pmgui/resources/icons/pmgui-<N>.png for N in SIZES (committed; the freedesktop
hicolor theme, the window icon and the Windows/macOS icon files are made from them).
"""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICONS = Path(__file__).resolve().parent.parent / "pmgui" / "resources" / "icons"


def render(svg: bytes, size: int) -> QImage:
    renderer = QSvgRenderer(svg)
    if not renderer.isValid():
        raise ValueError("the icon SVG does not parse")
    img = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    img.fill(Qt.GlobalColor.transparent)
    p = QPainter(img)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(p, QRectF(0, 0, size, size))
    p.end()
    return img


def main() -> int:
    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    svg = (ICONS / "pmgui.svg").read_bytes()
    for size in SIZES:
        out = ICONS / f"pmgui-{size}.png"
        if not render(svg, size).save(str(out)):
            print(f"could not write {out}", file=sys.stderr)
            return 1
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
