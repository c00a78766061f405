"""The configuration file (DESIGN §9): TOML, validated on load, never written over.

Every problem names the key and the line in the file, and stops start-up before anything
is touched.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pmgui import identity, resources
from pmgui.domain.errors import ConfigError, ValidationError
from pmgui.domain.models import EMPTY, Scalar, frozen_map
from pmgui.engine.settings import EngineSettings, SymbolRules
from pmgui.service.settings import NotifyConfig, ServiceConfig, parse_notify, parse_service

APP = identity.NAME
MAX_CONFIG_BYTES = 1 << 20  # a pmgui config is a few KB; /dev/zero or a log file is not one


def default_config_path() -> Path:
    return Path(os.environ.get("PMGUI_CONFIG_DIR") or identity.user_config_dir()) / "config.toml"


def default_db_path() -> Path:
    return Path(os.environ.get("PMGUI_DATA_DIR") or identity.user_data_dir()) / "pmgui.db"


@dataclass(frozen=True, slots=True)
class ExchangeConfig:
    id: str = "paper"
    demo: bool = False
    options: Mapping[str, Any] = field(default_factory=lambda: EMPTY)


@dataclass(frozen=True, slots=True)
class UiConfig:
    theme: str = "dark"
    confirm_drags: bool = False
    colorblind: bool = False
    red_up: bool = False
    drag_modifier: bool = False


@dataclass(frozen=True, slots=True)
class PaperConfig:
    balance: float = 10_000.0
    seed: int | None = None  # None: a new random walk every start
    funding_rate: float = 0.0001  # per 8 h of the position's value; longs pay when positive


@dataclass(frozen=True, slots=True)
class Config:
    exchange: ExchangeConfig = field(default_factory=ExchangeConfig)
    paper: PaperConfig = field(default_factory=PaperConfig)
    engine: EngineSettings = field(default_factory=EngineSettings)
    ui: UiConfig = field(default_factory=UiConfig)
    path: Path | None = None
    service: ServiceConfig = field(default_factory=ServiceConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)


_SCHEMA: dict[str, set[str]] = {
    "": {"exchange", "rules", "symbols", "ui", "paper", "service", "notify"},
    "exchange": {"id", "demo", "options"},
    "rules": {"preset", "set"},
    "ui": {"theme", "confirm_drags", "colorblind", "red_up", "drag_modifier"},
    "paper": {"balance", "seed", "demo_positions", "funding_rate"},
    "symbol": {"preset", "set"},
}


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SPACE = " \t"


def _toml_key(s: str, i: int = 0) -> tuple[tuple[str, ...], int] | None:
    """The (dotted) TOML key at `s[i:]`: its parts and the index after it; None where no key
    starts (bare, "basic" or 'literal' parts, spaces around the dots)."""
    parts: list[str] = []
    n = len(s)
    while True:
        while i < n and s[i] in _SPACE:
            i += 1
        if i >= n:
            return None
        if s[i] == '"':
            j = i + 1
            while j < n and s[j] != '"':
                j += 2 if s[j] == "\\" else 1
            if j >= n:
                return None
            try:  # TOML's escapes are JSON's (and \U, rare in a key)
                parts.append(json.loads(s[i:j + 1]))
            except ValueError:
                parts.append(s[i + 1:j])
            i = j + 1
        elif s[i] == "'":
            j = s.find("'", i + 1)
            if j < 0:
                return None
            parts.append(s[i + 1:j])
            i = j + 1
        else:
            m = _BARE_KEY.match(s, i)
            if m is None:
                return None
            parts.append(m.group())
            i = m.end()
        while i < n and s[i] in _SPACE:
            i += 1
        if i < n and s[i] == ".":
            i += 1
            continue
        return tuple(parts), i


def _key_path(key: str) -> tuple[str, ...] | None:
    """The parts of a key as messages write it (`symbols."BTC/USDT:USDT".preset`)."""
    k = _toml_key(key)
    return k[0] if k is not None and k[1] == len(key) else None


def _line_of_path(text: str, path: tuple[str, ...]) -> int | None:
    """The line where the key `path` (its parts from the document's root) is set: a
    `key = value` line in its own table (or a dotted key leading to it), the inline table
    that holds it, or its table's header. Tables are followed, so a key that several tables
    have (`preset`, `stale_after`) is found in the right one. None where not found."""
    if not path:
        return None
    table: tuple[str, ...] = ()
    inside: str | None = None  # the delimiter of a multi-line string being skipped
    first_in: int | None = None  # the first key set inside `path` (a table without a header)
    for n, line in enumerate(text.splitlines(), 1):
        if inside is not None:
            if line.count(inside) % 2:
                inside = None
            continue
        s = line.lstrip(_SPACE)
        if s.startswith("["):
            k = _toml_key(s, 2 if s.startswith("[[") else 1)
            if k is not None:
                table = k[0]
                if table == path:
                    return n
            continue
        k = _toml_key(s)
        if k is None or not s[k[1]:].startswith("="):
            continue
        full = table + k[0]
        value = s[k[1] + 1:].lstrip(_SPACE)
        if full == path or (value.startswith("{") and path[:len(full)] == full):
            return n
        if first_in is None and full[:len(path)] == path:
            first_in = n
        for delim in ('"""', "'''"):
            if value.startswith(delim) and value.count(delim) == 1:
                inside = delim
    return first_in


def _line_of(text: str, key: str) -> int | None:
    pat = re.compile(rf'^\s*(\[+[^\]]*)?["\']?{re.escape(key)}["\']?\s*(=|\]|\.)', re.M)
    m = pat.search(text)
    if m is None:
        pat = re.compile(rf'["\']?{re.escape(key)}["\']?\s*=', re.M)
        m = pat.search(text)
    return None if m is None else text.count("\n", 0, m.start()) + 1


class _Reader:
    def __init__(self, path: Path, text: str) -> None:
        self.path, self.text = path, text

    def fail(self, key: str, message: str, search: str | None = None,
             path: tuple[str, ...] | None = None) -> ConfigError:
        """`path`: the key's parts from the root (default: read from `key`), to find its
        line in its own table; `search`: the text to find the line by where that fails
        (default: the key's last part)."""
        if path is None:
            path = _key_path(key)
        line = _line_of_path(self.text, path) if path else None
        if line is None:
            leaf = search or key.split(".")[-1].strip('"')
            line = _line_of(self.text, leaf)
        where = f"{self.path}:{line}" if line else str(self.path)
        return ConfigError(f"{where}: {key}: {message}")

    def check_keys(self, table: Mapping[str, Any], allowed: set[str], prefix: str,
                   at: tuple[str, ...] | None = None) -> None:
        """`at`: the table's parts from the root (default: read from `prefix`)."""
        for k in table:
            if k not in allowed:
                name = f"{prefix}.{k}" if prefix else k
                base = at if at is not None else _key_path(prefix) if prefix else ()
                raise self.fail(name, f"unknown key (allowed: {', '.join(sorted(allowed))})",
                                path=None if base is None else (*base, k))

    def get(self, table: Mapping[str, Any], key: str, typ: type | tuple[type, ...],
            prefix: str, default: Any, at: tuple[str, ...] | None = None) -> Any:
        if key not in table:
            return default
        v = table[key]
        ok = isinstance(v, typ) and not (isinstance(v, bool) and typ in (int, float, (int, float)))
        if not ok:
            names = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
            raise self.fail(f"{prefix}.{key}" if prefix else key,
                            f"must be {names}, got {type(v).__name__} {v!r}",
                            path=None if at is None else (*at, key))
        return v


# ccxt's constructor keys that carry secrets (`Exchange.requiredCredentials`). In
# `[exchange.options]` they would sit in a plain file, and the keyring's or environment's
# credentials would silently replace them anyway (DESIGN §9: never the config file).
CREDENTIAL_KEYS = frozenset({"apiKey", "secret", "password", "uid", "login", "twofa",
                             "privateKey", "walletAddress", "token"})


def ccxt_exchange_ids() -> frozenset[str]:
    """The exchange ids ccxt offers (`ccxt.exchanges`), read from ccxt's package source
    without running it: importing ccxt takes most of a second, and the configuration is
    read before the window shows. Where that source cannot be read (a frozen app), ccxt is
    imported."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec("ccxt")
    try:
        origin = Path(spec.origin) if spec is not None and spec.origin else None
        if origin is not None and origin.suffix == ".py":
            for node in ast.parse(origin.read_text(encoding="utf-8")).body:
                if (isinstance(node, ast.Assign) and len(node.targets) == 1
                        and isinstance(node.targets[0], ast.Name)
                        and node.targets[0].id == "exchanges"):
                    ids = ast.literal_eval(node.value)
                    if ids and all(isinstance(i, str) for i in ids):
                        return frozenset(ids)
    except (OSError, SyntaxError, ValueError, TypeError, UnicodeDecodeError):
        pass
    import ccxt

    return frozenset(ccxt.exchanges)


def load_config(path: Path | None) -> Config:
    """Read and validate `path` (None or missing default file → defaults: paper mode)."""
    explicit = path is not None
    path = path or default_config_path()
    if not path.exists():
        if explicit:
            raise ConfigError(f"{path}: config file not found")
        return default_config()
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB, not a pmgui "
                          "configuration file")
    try:
        # "utf-8-sig": a byte order mark at the start (Windows Notepad writes one) is not
        # part of the text; tomllib would refuse it as an "invalid statement" at 1:1
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") \
            from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return parse_config(data, path, text)


def default_config() -> Config:
    """What runs without a config file: the bundled pmgui/resources/config/default.toml
    (paper mode with demo positions)."""
    text = resources.read_text("config", "default.toml")
    cfg = parse_config(tomllib.loads(text), Path("<bundled default.toml>"), text)
    return replace(cfg, path=None)


def parse_config(data: Mapping[str, Any], path: Path, text: str = "") -> Config:
    from pmgui.rules.params import resolve_params  # rules validate their own parameters

    r = _Reader(path, text)
    r.check_keys(data, _SCHEMA[""], "")
    ex = data.get("exchange", {})
    if not isinstance(ex, dict):
        raise r.fail("exchange", "must be a table")
    r.check_keys(ex, _SCHEMA["exchange"], "exchange")
    ex_id = r.get(ex, "id", str, "exchange", "paper").strip()
    if not ex_id:
        raise r.fail("exchange.id", "must not be empty")
    if ex_id != "paper":
        if ex_id not in ccxt_exchange_ids():
            raise r.fail("exchange.id", f"unknown exchange {ex_id!r} (not a ccxt exchange id)")
    demo = r.get(ex, "demo", bool, "exchange", False)
    options = r.get(ex, "options", dict, "exchange", {})
    for key in options:
        if key in CREDENTIAL_KEYS:
            raise r.fail(f"exchange.options.{key}",
                         "credentials are never read from the config file: store them in the "
                         f"OS keyring (service 'pmgui', user '{ex_id}') or set PMGUI_API_KEY, "
                         "PMGUI_API_SECRET and PMGUI_API_PASSWORD",
                         path=("exchange", "options", key))

    rules = data.get("rules", {})
    if not isinstance(rules, dict):
        raise r.fail("rules", "must be a table")
    r.check_keys(rules, _SCHEMA["rules"], "rules")
    preset = r.get(rules, "preset", str, "rules", "guardian")
    overrides = r.get(rules, "set", dict, "rules", {})
    try:
        resolve_params(preset, overrides)
    except ValidationError as exc:
        raise _override_error(r, "rules.set", preset, overrides, exc,
                              ("rules", "set")) from exc

    symbols: dict[str, SymbolRules] = {}
    sym_tab = data.get("symbols", {})
    if not isinstance(sym_tab, dict):
        raise r.fail("symbols", "must be a table")
    for sym, spec in sym_tab.items():
        prefix = f'symbols."{sym}"'
        at = ("symbols", sym)
        if not isinstance(spec, dict):
            raise r.fail(sym, "must be a table", path=at)
        r.check_keys(spec, _SCHEMA["symbol"], prefix, at)
        sp = r.get(spec, "preset", str, prefix, None, at)
        so = r.get(spec, "set", dict, prefix, {}, at)
        merged = dict(overrides)
        merged.update(so)
        try:
            resolve_params(sp or preset, merged)
        except ValidationError as exc:
            if exc.field in so:
                raise _override_error(r, f"{prefix}.set", sp or preset, so, exc,
                                      (*at, "set")) from exc
            if exc.field == "preset" and sp is not None:  # the symbol's own preset
                raise r.fail(f"{prefix}.preset", str(exc), path=(*at, "preset")) from exc
            raise r.fail(sym, str(exc), path=at) from exc
        symbols[sym] = SymbolRules(sp, frozen_map(_scalars(so)))

    paper = data.get("paper", {})
    if not isinstance(paper, dict):
        raise r.fail("paper", "must be a table")
    r.check_keys(paper, _SCHEMA["paper"], "paper")
    demo_positions = r.get(paper, "demo_positions", bool, "paper", ex_id == "paper")
    balance = float(r.get(paper, "balance", (int, float), "paper", 10_000.0))
    if not 0 < balance < 1e12:
        raise r.fail("paper.balance", f"must be positive, got {balance:g}")
    seed = r.get(paper, "seed", int, "paper", None)
    funding_rate = float(r.get(paper, "funding_rate", (int, float), "paper", 0.0001))
    if not -0.01 < funding_rate < 0.01:
        raise r.fail("paper.funding_rate", f"must be between -0.01 and 0.01 (a fraction per "
                                           f"8 h), got {funding_rate:g}")

    ui = data.get("ui", {})
    if not isinstance(ui, dict):
        raise r.fail("ui", "must be a table")
    r.check_keys(ui, _SCHEMA["ui"], "ui")
    theme = r.get(ui, "theme", str, "ui", "dark")
    if theme not in ("dark", "light"):
        raise r.fail("ui.theme", f"must be 'dark' or 'light', got {theme!r}")
    ui_cfg = UiConfig(theme=theme,
                      confirm_drags=r.get(ui, "confirm_drags", bool, "ui", False),
                      colorblind=r.get(ui, "colorblind", bool, "ui", False),
                      red_up=r.get(ui, "red_up", bool, "ui", False),
                      drag_modifier=r.get(ui, "drag_modifier", bool, "ui", False))
    engine = EngineSettings(default_preset=preset, overrides=frozen_map(_scalars(overrides)),
                            symbols=frozen_map_any(symbols), demo_positions=demo_positions)
    return Config(ExchangeConfig(ex_id, demo, frozen_map_any(options)),
                  PaperConfig(balance, seed, funding_rate), engine, ui_cfg, path,
                  parse_service(r, data, path.parent), parse_notify(r, data))


def _override_error(r: _Reader, table: str, preset: str, overrides: Mapping[str, Any],
                    exc: ValidationError, at: tuple[str, ...]) -> ConfigError:
    """Name the override that is wrong (its own key and line), not the preset. `at`: the
    table's parts from the root."""
    from pmgui.rules.params import resolve_params

    key = exc.field if exc.field in overrides else None
    if key is None:  # the message does not say: the override that fails on its own
        for k, v in overrides.items():
            try:
                resolve_params(preset, {k: v})
            except ValidationError:
                key = k
                break
    if key is None:
        return r.fail(f"{table.rsplit('.', 1)[0]}.preset", str(exc), path=(*at[:-1], "preset"))
    return r.fail(f"{table}.{key}", str(exc), search=str(key), path=(*at, str(key)))


def _scalars(d: Mapping[str, Any]) -> dict[str, Scalar]:
    return {str(k): v for k, v in d.items()}


def frozen_map_any(d: Mapping[str, Any]) -> Mapping[str, Any]:
    from types import MappingProxyType

    return MappingProxyType(dict(d))
