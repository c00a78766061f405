"""sqlite-utils is loaded without pandas and numpy (`pmgui.store.sqlite_lib`), and the
refusal touches only the thread that loads it."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import threading

import pytest

from pmgui.store.sqlite_lib import RefusedOnThisThread

# A fresh interpreter takes the path of `pmgui replay` and of the headless engine: the store
# opened, a database created and written; then numpy is imported as the chart does.
PROBE = r"""
import json, sys, tempfile
from pathlib import Path
import pmgui.engine.replay
from pmgui.store import Store
from pmgui.store.sqlite_lib import RefusedOnThisThread
with tempfile.TemporaryDirectory() as tmp:
    store = Store.open(Path(tmp) / "probe.db")
    store.set_setting("probe", {"ok": True})
    saved = store.get_setting("probe")
    store.close()
loaded = sorted(m for m in ("pandas", "numpy") if m in sys.modules)
finders = [f for f in sys.meta_path if isinstance(f, RefusedOnThisThread)]
import numpy
print(json.dumps({"loaded": loaded, "finders": len(finders), "saved": saved,
                  "numpy": numpy.__version__}))
"""


def test_opening_a_store_loads_neither_pandas_nor_numpy_and_leaves_them_importable():
    pytest.importorskip("numpy")
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    report = json.loads(out.strip().splitlines()[-1])
    assert report["loaded"] == []
    assert report["finders"] == 0  # removed once sqlite-utils is loaded
    assert report["saved"] == {"ok": True}
    assert report["numpy"]  # imported afterwards, on the same thread


def test_the_refusal_is_only_for_the_thread_that_made_it(tmp_path, monkeypatch):
    name = "pmgui_refusal_probe_module"
    (tmp_path / f"{name}.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    importlib.invalidate_caches()
    finder = RefusedOnThisThread([name])
    sys.meta_path.insert(0, finder)
    try:
        with pytest.raises(ModuleNotFoundError, match=name):
            importlib.import_module(name)
        assert name not in sys.modules
        other: dict[str, object] = {}

        def elsewhere() -> None:  # the GUI thread importing while the engine's loads
            try:
                other["value"] = importlib.import_module(name).VALUE
            except BaseException as exc:  # reported to the test below
                other["error"] = exc

        t = threading.Thread(target=elsewhere)
        t.start()
        t.join()
        assert other == {"value": 42}
        # loaded now: this thread takes the module as it is, the finder is not asked
        assert importlib.import_module(name).VALUE == 42
        assert importlib.import_module("colorsys") is not None  # other names: untouched
    finally:
        sys.meta_path.remove(finder)
        sys.modules.pop(name, None)
