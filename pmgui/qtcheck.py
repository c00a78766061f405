"""Before Qt starts on Linux: are the system libraries it needs there?

The PySide6 wheels carry Qt itself but not the X11/OpenGL system libraries Qt links
against. Without them Qt aborts inside QApplication ("could not load the Qt platform plugin
xcb ... Aborted (core dumped)") or the import of QtGui fails with a bare ImportError. pmgui
checks first and stops with one line naming the Debian/Ubuntu packages to install — before
any database is created (the CLI calls `check_qt_libraries` before building the engine).

The lookup is the dynamic linker's own (`ctypes.CDLL(soname)`), plus the frozen app's
folder, where PyInstaller may have bundled some of them. Tests pass their own `load`.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from pmgui.domain.errors import PmguiError

# soname → Debian/Ubuntu package. QtGui/QtWidgets and every platform plugin (offscreen too):
CORE_LIBRARIES: Mapping[str, str] = {
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libX11.so.6": "libx11-6",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
}
# ... and the xcb platform plugin (an X11 or XWayland display); libqxcb.so and
# libQt6XcbQpa.so.6 link all of these (tests/test_qtcheck.py reads the real plugin's list).
XCB_LIBRARIES: Mapping[str, str] = {
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libdbus-1.so.3": "libdbus-1-3",
}

Loader = Callable[[str], object]


class MissingQtLibraries(PmguiError):
    def __init__(self, platform: str, missing: list[str], packages: list[str]) -> None:
        self.platform, self.missing, self.packages = platform, missing, packages
        hint = "" if platform != "xcb" else ", or run with --headless"
        super().__init__(
            f"Qt cannot start ({platform} display): missing system libraries "
            f"{', '.join(missing)}; install them with: sudo apt-get install "
            f"{' '.join(packages)}{hint}")


def qt_platform(env: Mapping[str, str]) -> str | None:
    """The Qt platform plugin that will start: `QT_QPA_PLATFORM`'s first choice, else xcb on
    an X11 display, wayland on a Wayland one; None without any display."""
    chosen = env.get("QT_QPA_PLATFORM", "").strip()
    if chosen:
        return chosen.split(";")[0].split(":")[0].strip() or None
    if env.get("WAYLAND_DISPLAY") or env.get("XDG_SESSION_TYPE") == "wayland":
        return "wayland"
    if env.get("DISPLAY"):
        return "xcb"
    return None


def _default_load(soname: str) -> object:
    try:
        return ctypes.CDLL(soname)
    except OSError:
        bundle = getattr(sys, "_MEIPASS", None)  # the frozen app's own folder
        if bundle is None:
            raise
        for folder in (Path(bundle), Path(bundle, "PySide6", "Qt", "lib")):
            if (folder / soname).is_file():
                return ctypes.CDLL(str(folder / soname))
        raise


def missing_libraries(names: Mapping[str, str], load: Loader | None = None) -> list[str]:
    load = load or _default_load
    missing = []
    for soname in names:
        try:
            load(soname)
        except OSError:
            missing.append(soname)
    return missing


def check_qt_libraries(env: Mapping[str, str] | None = None, *, load: Loader | None = None,
                       system: str | None = None) -> None:
    """Raise `MissingQtLibraries` (one line naming the packages) when Qt would fail to start
    for lack of a system library. Linux only; elsewhere Qt ships what it needs."""
    if (system or sys.platform) != "linux":
        return
    env = os.environ if env is None else env
    platform = qt_platform(env) or "xcb"
    names = dict(CORE_LIBRARIES)
    if platform == "xcb":
        names.update(XCB_LIBRARIES)
    missing = missing_libraries(names, load)
    if missing:
        packages = list(dict.fromkeys(names[m] for m in missing))
        raise MissingQtLibraries(platform, missing, packages)
