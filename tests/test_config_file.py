"""The configuration file as editors write it (DESIGN §9): validated on load, every error
naming the key and its line, the file never written."""

from __future__ import annotations

from pathlib import Path

import pytest

from pmgui.config import load_config
from pmgui.domain.errors import ConfigError
from tests.test_cli import pmgui

BOM = b"\xef\xbb\xbf"


def _write(tmp_path: Path, body: str, *, bom: bool = False, crlf: bool = False) -> Path:
    cfg = tmp_path / "config.toml"
    text = body.replace("\n", "\r\n") if crlf else body
    cfg.write_bytes((BOM if bom else b"") + text.encode("utf-8"))
    return cfg


@pytest.mark.parametrize("crlf", [False, True])
def test_a_byte_order_mark_is_read_as_the_editor_meant(tmp_path, crlf):
    """Windows Notepad starts a UTF-8 file with a BOM; tomllib refuses it ("Invalid
    statement (at line 1, column 1)"), which named neither a key nor anything to fix."""
    cfg = _write(tmp_path, '[ui]\ntheme = "light"\n[rules]\npreset = "monitor"\n', bom=True,
                 crlf=crlf)
    c = load_config(cfg)
    assert c.ui.theme == "light" and c.engine.default_preset == "monitor"


def test_a_bad_value_after_a_byte_order_mark_names_its_key_and_line(tmp_path):
    cfg = _write(tmp_path, '[exchange]\nid = "paper"\n\n[ui]\ntheme = "blue"\n', bom=True)
    before = cfg.read_bytes()
    r = pmgui("--config", str(cfg), "--headless", "--exit-after", "1",
              "--db", str(tmp_path / "x.db"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        f"pmgui: error: {cfg}:5: ui.theme: must be 'dark' or 'light', got 'blue'"]
    assert cfg.read_bytes() == before and not (tmp_path / "x.db").exists()


def test_a_bom_elsewhere_is_still_an_error(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_bytes(b'[ui]\n' + BOM + b'theme = "light"\n')
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(cfg)
