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


@pytest.mark.parametrize("body,line,key", [
    # the symbol's own `preset` (line 4), not [rules]' preset on line 2
    ('[rules]\npreset = "guardian"\n[symbols."BTC/USDT:USDT"]\npreset = 5\n',
     4, 'symbols."BTC/USDT:USDT".preset'),
    ('[rules]\npreset = "guardian"\n[symbols."BTC/USDT:USDT"]\npreset = "gardian"\n',
     4, 'symbols."BTC/USDT:USDT".preset'),
    # the symbol's inline override (line 6), not the valid one of [rules.set] on line 4
    ('[rules]\npreset = "manual"\n[rules.set]\n"trailing.distance" = 0.5\n'
     '[symbols."ETH/USDT:USDT"]\nset = { "trailing.distance" = 7 }\n',
     6, 'symbols."ETH/USDT:USDT".set.trailing.distance'),
    # a key both [service] and [notify] have
    ('[service]\nstale_after = 5\n\n[notify]\nstale_after = -1\n', 5, "notify.stale_after"),
    # an unknown key named like a known one elsewhere
    ('[ui]\ntheme = "dark"\n[symbols."BTC/USDT:USDT"]\ntheme = "dark"\n',
     4, 'symbols."BTC/USDT:USDT".theme'),
    # dotted keys and a symbol with a dot in its name
    ('[symbols]\n"1000PEPE/USDT:USDT".preset = "monitor"\n'
     '"1000.X/USDT:USDT".set = { "stop_loss.pct" = 2 }\n',
     3, 'symbols."1000.X/USDT:USDT".set.stop_loss.pct'),
])
def test_the_line_is_the_one_of_the_key_in_its_own_table(tmp_path, body, line, key):
    cfg = _write(tmp_path, body)
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert str(e.value).startswith(f"{cfg}:{line}: {key}: "), str(e.value)


@pytest.mark.parametrize("key", ["min_interval", "stale_after"])
def test_a_nan_notify_interval_is_refused(tmp_path, key):
    """`min_interval = nan` passed `< 0` (every comparison with NaN is false): the alerts'
    de-duplication never held; `stale_after = nan` never told a stale feed."""
    cfg = _write(tmp_path, f'[notify]\nurls = ["json://localhost"]\n{key} = nan\n')
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert str(e.value).startswith(f"{cfg}:3: notify.{key}: must be "), str(e.value)


@pytest.mark.parametrize("key", ["apiKey", "secret", "password"])
def test_credentials_in_exchange_options_are_refused_by_key_and_line(tmp_path, key):
    """DESIGN §9: credentials never come from the config file. `[exchange.options]` is passed
    to ccxt unchanged, so an API key there sat in a plain file and was then silently replaced
    by the keyring's or the environment's: the trader believed one key was trading."""
    cfg = _write(tmp_path, '[exchange]\nid = "binanceusdm"\n\n[exchange.options]\n'
                           f'timeout = 5000\n{key} = "abc"\n')
    before = cfg.read_bytes()
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    msg = str(err.value)
    assert msg.startswith(f"{cfg}:6: exchange.options.{key}: credentials are never read")
    assert "keyring" in msg and "PMGUI_API_KEY" in msg and "abc" not in msg
    assert cfg.read_bytes() == before


def test_other_exchange_options_still_pass(tmp_path):
    cfg = _write(tmp_path, '[exchange]\nid = "binanceusdm"\n\n[exchange.options]\n'
                           'timeout = 5000\n[exchange.options.options]\nrecvWindow = 9000\n')
    c = load_config(cfg)
    assert c.exchange.options["timeout"] == 5000
