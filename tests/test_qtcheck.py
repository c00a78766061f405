"""A missing Qt system library on Linux gives one pmgui line naming the package to install,
before any database is created (issue 14 / issue 12 item 8)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pmgui import qtcheck
from pmgui.cli import main
from pmgui.qtcheck import (
    CORE_LIBRARIES,
    XCB_LIBRARIES,
    MissingQtLibraries,
    check_qt_libraries,
    missing_libraries,
    qt_platform,
)


def lacking(*absent: str):
    """A library lookup that finds everything except `absent` (and records each call)."""
    seen: list[str] = []

    def load(soname: str) -> object:
        seen.append(soname)
        if soname in absent:
            raise OSError(f"{soname}: cannot open shared object file")
        return object()

    load.seen = seen  # type: ignore[attr-defined]
    return load


@pytest.mark.parametrize("env,expected", [
    ({}, None),
    ({"DISPLAY": ":0"}, "xcb"),
    ({"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"}, "wayland"),
    ({"XDG_SESSION_TYPE": "wayland", "DISPLAY": ":0"}, "wayland"),
    ({"QT_QPA_PLATFORM": "offscreen", "DISPLAY": ":0"}, "offscreen"),
    ({"QT_QPA_PLATFORM": "xcb:nomitshm"}, "xcb"),
    ({"QT_QPA_PLATFORM": "wayland;xcb"}, "wayland"),
])
def test_platform_that_qt_will_start(env, expected):
    assert qt_platform(env) == expected


def test_missing_xcb_libraries_name_the_debian_packages():
    load = lacking("libxcb-cursor.so.0", "libxkbcommon-x11.so.0", "libEGL.so.1")
    with pytest.raises(MissingQtLibraries) as e:
        check_qt_libraries({"DISPLAY": ":0"}, load=load, system="linux")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.endswith("install them with: sudo apt-get install libegl1 libxkbcommon-x11-0 "
                        "libxcb-cursor0, or run with --headless")
    assert e.value.missing == ["libEGL.so.1", "libxkbcommon-x11.so.0", "libxcb-cursor.so.0"]
    assert set(load.seen) == set(CORE_LIBRARIES) | set(XCB_LIBRARIES)


def test_one_package_named_once_for_two_of_its_libraries():
    load = lacking("libglib-2.0.so.0", "libgthread-2.0.so.0")
    with pytest.raises(MissingQtLibraries) as e:
        check_qt_libraries({"QT_QPA_PLATFORM": "offscreen"}, load=load, system="linux")
    assert e.value.packages == ["libglib2.0-0"]


def test_offscreen_and_wayland_do_not_need_xcb():
    load = lacking(*XCB_LIBRARIES)
    check_qt_libraries({"QT_QPA_PLATFORM": "offscreen"}, load=load, system="linux")
    check_qt_libraries({"WAYLAND_DISPLAY": "wayland-0"}, load=load, system="linux")
    assert set(load.seen) == set(CORE_LIBRARIES)


def test_nothing_missing_or_not_linux_passes():
    check_qt_libraries({"DISPLAY": ":0"}, load=lacking(), system="linux")
    load = lacking("libEGL.so.1")
    check_qt_libraries({"DISPLAY": ":0"}, load=load, system="win32")
    check_qt_libraries({"DISPLAY": ":0"}, load=load, system="darwin")
    assert load.seen == []


def test_cli_says_one_line_before_creating_the_database(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(qtcheck, "_default_load", lacking("libxcb-icccm.so.4"))
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("XDG_SESSION_TYPE", raising=False)
    monkeypatch.setenv("DISPLAY", ":99")
    db = tmp_path / "pmgui.db"
    assert main(["--paper", "--db", str(db)]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == ["pmgui: error: Qt cannot start (xcb display): missing system libraries "
                   "libxcb-icccm.so.4; install them with: sudo apt-get install libxcb-icccm4, "
                   "or run with --headless"]
    assert list(tmp_path.iterdir()) == []  # no database, no -wal/-shm, no lock


def test_headless_needs_no_qt_libraries(monkeypatch, tmp_path):
    monkeypatch.setattr(qtcheck, "_default_load", lacking(*CORE_LIBRARIES, *XCB_LIBRARIES))
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    assert main(["--paper", "--headless", "--exit-after", "0.1",
                 "--db", str(tmp_path / "h.db")]) == 0


def _needed(lib: Path) -> set[str]:
    out = subprocess.run(["readelf", "-d", str(lib)], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    return {line.split("[")[1].split("]")[0] for line in out.splitlines() if "(NEEDED)" in line}


@pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("readelf") is None,
                    reason="reads the ELF dependencies of the installed Qt (Linux, binutils)")
def test_tables_cover_what_the_installed_qt_links():
    import PySide6

    qt = Path(PySide6.__file__).parent / "Qt"
    ours = {"libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1", "libpthread.so.0",
            "libdl.so.2", "librt.so.1", "ld-linux-x86-64.so.2", "libz.so.1", "libzstd.so.1"}
    for lib, table in ((qt / "lib" / "libQt6Gui.so.6", CORE_LIBRARIES),
                       (qt / "lib" / "libQt6Widgets.so.6", CORE_LIBRARIES),
                       (qt / "plugins" / "platforms" / "libqoffscreen.so", CORE_LIBRARIES),
                       (qt / "plugins" / "platforms" / "libqxcb.so",
                        {**CORE_LIBRARIES, **XCB_LIBRARIES}),
                       (qt / "lib" / "libQt6XcbQpa.so.6", {**CORE_LIBRARIES, **XCB_LIBRARIES}),
                       (qt / "lib" / "libQt6DBus.so.6", {**CORE_LIBRARIES, **XCB_LIBRARIES})):
        system = {n for n in _needed(lib) if not n.startswith(("libQt6", "libicu"))} - ours
        assert system <= set(table), f"{lib.name}: not checked: {system - set(table)}"


def test_real_lookup_agrees_with_the_real_start(tmp_path):
    """On this machine: whatever the real loader reports missing, `pmgui` says so itself."""
    missing = missing_libraries({**CORE_LIBRARIES, **XCB_LIBRARIES})
    if not sys.platform.startswith("linux") or not missing:
        pytest.skip("every Qt system library is installed here")
    env = {"PATH": "/usr/bin:/bin", "DISPLAY": ":99", "PMGUI_DATA_DIR": str(tmp_path / "d"),
           "PMGUI_CONFIG_DIR": str(tmp_path / "c"), "PMGUI_NO_KEYRING": "1"}
    r = subprocess.run([sys.executable, "-m", "pmgui.cli", "--paper"], env=env,
                       capture_output=True, text=True, timeout=90)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert all(m in r.stderr for m in missing)
    assert not (tmp_path / "d").exists()


def test_documented_apt_lines_name_only_known_packages():
    import re

    known = set(CORE_LIBRARIES.values()) | set(XCB_LIBRARIES.values())
    root = Path(__file__).resolve().parent.parent
    for doc in (root / "README.md", root / "packaging" / "README.md"):
        text = doc.read_text().replace("\\\n", " ")
        lines = re.findall(r"sudo apt-get install ([^`\n]+)", text)
        assert lines, doc
        for line in lines:
            assert set(line.split()) <= known, (doc.name, set(line.split()) - known)
