"""Everything pmgui ships besides code: bundled market data, icons, themes, the default
configuration.

One mechanism for all of them: `importlib.resources`, anchored at this package. A source
checkout, an editable install, a wheel and the frozen app (PyInstaller) all find the files
the same way; nothing computes paths from `__file__`. The files are declared as package
data in pyproject.toml, so the wheel carries them.

    data/      real recorded prices for `pmgui replay` and the replay feed (see its README)
    icons/     the application icon: pmgui.svg (the source) and PNGs 16…512 rendered from it
    themes/    the colour themes (TOML, one file per theme)
    config/    default.toml — every configuration key with its default value
"""

from __future__ import annotations

import atexit
from contextlib import ExitStack
from importlib.resources import as_file, files
from importlib.resources.abc import Traversable
from pathlib import Path

_extracted = ExitStack()  # resources copied out of a zipped install, removed at exit
atexit.register(_extracted.close)


def resource(*parts: str) -> Traversable:
    """The bundled resource at `parts` (e.g. `resource("data", "BTCUSD-1d-coinbase.csv")`)."""
    return files(__name__).joinpath(*parts)


def resource_path(*parts: str) -> Path:
    """A real file-system path of a bundled file, for APIs that need one (Qt, csv readers).

    Installed packages (wheel, editable, frozen) live on disk, so this is the file itself;
    from a zipped install the file is extracted once and kept until the process exits.
    """
    t = resource(*parts)
    if isinstance(t, Path):
        return t
    return _extracted.enter_context(as_file(t))


def read_text(*parts: str) -> str:
    return resource(*parts).read_text(encoding="utf-8")


def read_bytes(*parts: str) -> bytes:
    return resource(*parts).read_bytes()


def names(*parts: str, suffix: str = "") -> list[str]:
    """Sorted names of the files in the bundled folder `parts` ending with `suffix`."""
    folder = resource(*parts)
    if not folder.is_dir():
        return []
    return sorted(t.name for t in folder.iterdir() if t.is_file() and t.name.endswith(suffix))
