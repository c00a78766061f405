"""The layer contract of DESIGN §1, checked on the source (every import, also inside functions).

    domain ← indicators ← rules ← engine → exchange, store;  ui only via engine commands/events

A layer may import itself and the layers listed for it, nothing else from pmgui. The few
exceptions are named with their reason; adding one is a design decision, not a quick fix.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "pmgui"

# layer → the pmgui modules (prefixes) it may import besides itself
ALLOWED: dict[str, tuple[str, ...]] = {
    "domain": (),
    "indicators": ("pmgui.domain",),
    "rules": ("pmgui.domain", "pmgui.indicators"),
    "exchange": ("pmgui.domain",),
    "store": ("pmgui.domain",),
    "engine": ("pmgui.domain", "pmgui.indicators", "pmgui.rules", "pmgui.exchange",
               "pmgui.store", "pmgui.config"),
    # the UI knows the engine only by its messages: commands (incl. requests and their
    # snapshots), events, and the outbox they travel in
    "ui": ("pmgui.domain", "pmgui.engine.commands", "pmgui.engine.events",
           "pmgui.engine.outbox", "pmgui.identity"),
}

# (importing module, imported name): why it is allowed
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("pmgui.ui.settings_dialog", "pmgui.exchange.credentials"):
        "the trader's API key goes from the Settings dialog to the OS keyring (worker "
        "thread); the engine reads it from there at start-up, secrets never travel as commands",
    ("pmgui.ui.settings_dialog", "pmgui.rules.params"):
        "parse_assignment: the catalogue's pure parser checks `rule.param=value` beside the "
        "field before a SetSymbolRules is sent (the engine validates again)",
    ("pmgui.ui.dialogs", "pmgui.rules.presets"):
        "preset names for menus before the engine has answered GetEngineInfo (pure data)",
    ("pmgui.ui.app", "pmgui.engine.build"):
        "the application's composition root builds the engine it then only talks to by "
        "commands and events",
    ("pmgui.ui.app", "pmgui.config"): "the composition root reads the configuration",
    ("pmgui.ui.about", "pmgui.config"): "About shows the configuration and database paths "
                                        "in use (read-only path helpers)",
}

# the package itself (its data directory, its version) and its cross-cutting helpers
# (secret redaction in logs, bundled resources, identity, the interpreter's collection
# thresholds that the engine's booking and the paper venue's matching defer together, the
# asyncio waits that keep a cancel) belong to no layer
PACKAGE = {"pmgui", "pmgui.__version__"}
SHARED = ("pmgui.redact", "pmgui.resources", "pmgui.identity", "pmgui.collection",
          "pmgui.aio")


def module_name(path: Path, root: Path = ROOT) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    return ".".join(rel.parts)


def pmgui_imports(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    me = module_name(path, root).split(".")
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("pmgui")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this package
                keep = len(me) - node.level + (path.name == "__init__.py")
                base = me[:keep]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.startswith("pmgui"):
                if name == "pmgui" or name.count(".") == 1:  # `from pmgui.engine import x`
                    out += [(node.lineno, f"{name}.{a.name}") for a in node.names]
                else:
                    out.append((node.lineno, name))
    return out


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in ALLOWED else None


def violations(root: Path = ROOT) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        mod = module_name(path, root)
        layer = layer_of(mod)
        if layer is None:
            continue
        own = f"pmgui.{layer}"
        allowed = (own, *ALLOWED[layer])
        for line, name in pmgui_imports(path, root):
            if name in PACKAGE or any(name == m or name.startswith(m + ".") for m in SHARED):
                continue
            if any(name == a or name.startswith(a + ".") for a in allowed):
                continue
            if any(mod == m and (name == n or name.startswith(n + "."))
                   for (m, n) in EXCEPTIONS):
                continue
            found.append(f"{path.relative_to(root.parent)}:{line}: {layer} imports {name}")
    return found


def test_no_layer_imports_past_the_design():
    assert violations() == []


def test_the_check_catches_a_ui_module_opening_the_store(tmp_path):
    pkg = tmp_path / "pmgui"
    (pkg / "ui").mkdir(parents=True)
    (pkg / "rules").mkdir()
    (pkg / "ui" / "panel.py").write_text(
        "from pmgui.engine.commands import GetHistory\n"
        "def f():\n    from pmgui.store.db import Store\n    return Store\n")
    (pkg / "rules" / "x.py").write_text("import pmgui.engine.core\nfrom PySide6 import QtCore\n")
    found = violations(pkg)
    assert found == ["pmgui/rules/x.py:1: rules imports pmgui.engine.core",
                     "pmgui/ui/panel.py:3: ui imports pmgui.store.db"]


@pytest.mark.parametrize("layer", ["domain", "indicators", "rules"])
def test_core_layers_import_no_qt_asyncio_ccxt_or_sqlite(layer):
    banned = ("PySide6", "pyqtgraph", "asyncio", "ccxt", "sqlite3", "sqlite_utils", "qasync")
    bad = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{path.name}:{node.lineno}: {n}" for n in names
                    if n.split(".")[0] in banned]
    assert bad == []
