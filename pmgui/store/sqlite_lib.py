"""sqlite-utils, loaded without pandas and numpy.

sqlite-utils imports both when they are installed, only to map their value types
(pandas.Timestamp, numpy's integers and floats) to column types where it infers a table's
columns from values. pmgui declares every column (`pmgui.store.schema`) and stores plain
Python values, so neither is needed: loading them was 0.3-0.6 s (pandas) and 0.1-0.2 s
(numpy) of every command that opens a store before doing anything — `pmgui replay`, the
headless engine, `pmgui positions`. While sqlite-utils loads, their import is refused, and
allowed again after it for anyone who really wants them (a module already loaded is used
as it is: nothing to save).

Refused only on the thread that loads sqlite-utils: the window's chart imports numpy
(pyqtgraph) on the GUI thread while the engine's thread opens the store, and that import
must not fail because the two overlapped.
"""

from __future__ import annotations

import importlib.abc
import sys
import threading
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

NOT_LOADED_WITH_IT = ("pandas", "numpy")


class RefusedOnThisThread(importlib.abc.MetaPathFinder):
    """A finder, first on `sys.meta_path`, that makes importing one of `names` (top-level
    modules not loaded yet) fail with ModuleNotFoundError on the thread that made it, as if
    it were not installed; any other thread, and any other module, is not affected."""

    def __init__(self, names: Sequence[str]) -> None:
        self._names = frozenset(names)
        self._thread = threading.get_ident()

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname in self._names and threading.get_ident() == self._thread:
            raise ModuleNotFoundError(f"No module named {fullname!r} (not loaded with "
                                      "sqlite-utils: pmgui stores no values of its types)",
                                      name=fullname)
        return None  # the next finder decides


def _load() -> type:
    if "sqlite_utils.db" not in sys.modules:
        finder = RefusedOnThisThread(NOT_LOADED_WITH_IT)
        sys.meta_path.insert(0, finder)
        try:
            import sqlite_utils.db  # noqa: F401  (loaded here, with the finder in place)
        finally:
            sys.meta_path.remove(finder)
    from sqlite_utils import Database

    return Database


Database = _load()

__all__ = ["NOT_LOADED_WITH_IT", "Database", "RefusedOnThisThread"]
