"""Package data (issue 14): everything pmgui reads at run time lives in pmgui/resources/,
is declared as package data, and is read through importlib.resources (pmgui.resources)."""

from __future__ import annotations

import ast
import dataclasses
import fnmatch
import tomllib
from pathlib import Path

from pmgui import resources
from pmgui.config import Config, default_config, load_config
from pmgui.engine.settings import EngineSettings
from pmgui.exchange.feeds import bundled_data
from pmgui.ui.theme import THEMES, Theme, make_theme

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "pmgui"


def test_every_resource_file_is_declared_as_package_data():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    include = cfg["package-data"]["pmgui.resources"]
    exclude = cfg["exclude-package-data"]["pmgui.resources"]
    base = PKG / "resources"
    files = [p.relative_to(base).as_posix() for p in base.rglob("*")
             if p.is_file() and "__pycache__" not in p.parts and p.name != "__init__.py"]
    assert len(files) > 15
    for f in files:
        if any(fnmatch.fnmatch(f, x) for x in exclude):
            assert f.endswith(".py"), f
            continue
        assert any(fnmatch.fnmatch(f, pat) for pat in include), f"{f} would miss the wheel"


def test_no_module_finds_files_relative_to_its_source():
    """One mechanism: no `__file__` path math in the package (the data folder's rebuild
    script, a developer tool, excepted)."""
    offenders = []
    for py in PKG.rglob("*.py"):
        if "data" in py.relative_to(PKG).parts:
            continue
        tree = ast.parse(py.read_text(), str(py))
        if any(isinstance(n, ast.Name) and n.id == "__file__" for n in ast.walk(tree)):
            offenders.append(str(py.relative_to(ROOT)))
    assert offenders == []


def test_resources_are_read_through_importlib_resources():
    assert resources.resource("data", "README.md").is_file()
    p = resources.resource_path("icons", "pmgui-16.png")
    assert p.is_file() and p.parent.parent == resources.resource_path()
    assert resources.names("themes", suffix=".toml") == ["dark.toml", "light.toml"]
    assert resources.names("nope") == []
    assert [p.name for p in bundled_data()] == resources.names("data", suffix=".csv")


def test_themes_come_from_their_files():
    assert tuple(n.removesuffix(".toml") for n in resources.names("themes")) == THEMES
    fields = {f.name for f in dataclasses.fields(Theme)} - {"name", "colour_blind", "red_up"}
    for name in THEMES:
        data = tomllib.loads(resources.read_text("themes", f"{name}.toml"))
        assert set(data) == fields, name
        t = make_theme(name)
        assert all(getattr(t, k) == v for k, v in data.items())


def test_default_config_is_the_bundled_file_and_matches_the_built_in_defaults(tmp_path,
                                                                            monkeypatch):
    monkeypatch.setenv("PMGUI_CONFIG_DIR", str(tmp_path / "none"))
    cfg = load_config(None)
    assert cfg == default_config()
    assert cfg == Config(engine=EngineSettings(demo_positions=True))
    assert cfg.exchange.id == "paper" and cfg.engine.demo_positions and cfg.path is None
    # the bundled file, copied as a user's config, means the same
    user = tmp_path / "config.toml"
    user.write_text(resources.read_text("config", "default.toml"))
    assert dataclasses.replace(load_config(user), path=None) == cfg
