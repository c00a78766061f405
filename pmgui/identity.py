"""Who pmgui is, in one place: name, organisation, version, licence, application id.

QSettings, the per-user folders (platformdirs), the About dialog, `pmgui --version`, the
.desktop file and the AppStream metadata all take their names from here (the last two are
static files; tests/test_identity.py checks they agree with this module). Plain data and
the standard library only, so it is safe to import from anywhere, before Qt.
"""

from __future__ import annotations

from pathlib import Path

NAME = "pmgui"  # distribution, command, settings and folder name
DISPLAY_NAME = "pmgui"
SUMMARY = "Live position monitor and manager for crypto-futures traders"
ORGANISATION = "pmgui"  # QSettings organisation and platformdirs app author
APP_ID = "io.github.pmgui.pmgui"  # reverse-DNS id: .desktop file, AppStream, Wayland app id
LICENSE = "MIT"
COPYRIGHT = "Copyright (c) 2026 The pmgui authors"

# The version of this source tree; pyproject.toml reads it from here (dynamic version), so
# the installed metadata and this line cannot disagree after an install.
__version__ = "0.1.0"


def version() -> str:
    """The installed distribution's version (importlib.metadata), or this module's
    `__version__` where no metadata exists (a bare source tree, a frozen app built without
    its dist-info)."""
    from importlib import metadata

    try:
        return metadata.version(NAME)
    except metadata.PackageNotFoundError:
        return __version__


def version_line() -> str:
    """`pmgui --version`: this version and the ones a bug report needs (from the installed
    metadata, so nothing heavy is imported)."""
    import platform
    from importlib import metadata

    parts = [f"Python {platform.python_version()}"]
    for dist in ("ccxt", "PySide6-Essentials"):
        try:
            parts.append(f"{dist.split('-')[0]} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    return f"{NAME} {version()} ({', '.join(parts)})"


def user_config_dir() -> Path:
    """The per-user configuration folder (config.toml, the window layout)."""
    import platformdirs

    return Path(platformdirs.user_config_dir(NAME, ORGANISATION))


def user_data_dir() -> Path:
    """The per-user data folder (the database)."""
    import platformdirs

    return Path(platformdirs.user_data_dir(NAME, ORGANISATION))
