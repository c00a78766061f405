"""`[service]` and `[notify]` configuration (read by pmgui.config, which owns the file)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_PORT = 8765


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    listen: str = f"127.0.0.1:{DEFAULT_PORT}"  # used when --listen has no address
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_msg_size: int = 64 * 1024  # bytes per incoming frame
    rate: float = 20.0  # incoming frames per second per connection (token bucket)
    burst: int = 40
    send_queue: int = 2000  # pending events per client before it is dropped to a resync
    stale_after: float = 30.0  # /healthz: market data older than this is unhealthy


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    urls: tuple[str, ...] = ()
    min_interval: float = 600.0  # the same alert again at most this often (seconds)
    max_per_hour: int = 30
    stale_after: float = 60.0  # market data / order stream down this long → alert
    daily_summary: str | None = "21:00"  # local time, "HH:MM"; None: off


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT`, `[v6]:PORT` or `:PORT` (loopback); ValueError with the reason."""
    text = text.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"port must be a number, got {port_text!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be 0-65535, got {port}")
    return host, port


def parse_service(r: Any, data: Mapping[str, Any], base: Path) -> ServiceConfig:
    """`r` is pmgui.config's reader (it reports file:line); relative paths are relative
    to the configuration file's directory."""
    tab = data.get("service", {})
    if not isinstance(tab, dict):
        raise r.fail("service", "must be a table")
    allowed = {"listen", "tls_cert", "tls_key", "max_msg_size", "rate", "burst", "send_queue",
               "stale_after"}
    r.check_keys(tab, allowed, "service")
    d = ServiceConfig()
    listen = r.get(tab, "listen", str, "service", d.listen)
    try:
        parse_listen(listen)
    except ValueError as e:
        raise r.fail("service.listen", str(e)) from None

    def path(key: str) -> Path | None:
        v = r.get(tab, key, str, "service", None)
        if v is None:
            return None
        p = Path(v).expanduser()
        return p if p.is_absolute() else base / p

    def positive(key: str, default: float, typ: Any = (int, float)) -> Any:
        v = r.get(tab, key, typ, "service", default)
        if not v > 0:
            raise r.fail(f"service.{key}", f"must be positive, got {v!r}")
        return v

    return ServiceConfig(listen, path("tls_cert"), path("tls_key"),
                         positive("max_msg_size", d.max_msg_size, int),
                         float(positive("rate", d.rate)), positive("burst", d.burst, int),
                         positive("send_queue", d.send_queue, int),
                         float(positive("stale_after", d.stale_after)))


def parse_notify(r: Any, data: Mapping[str, Any]) -> NotifyConfig:
    tab = data.get("notify", {})
    if not isinstance(tab, dict):
        raise r.fail("notify", "must be a table")
    r.check_keys(tab, {"urls", "min_interval", "max_per_hour", "stale_after", "daily_summary"},
                 "notify")
    d = NotifyConfig()
    urls = r.get(tab, "urls", list, "notify", [])
    for u in urls:
        if not isinstance(u, str) or "://" not in u:
            raise r.fail("notify.urls", f"each entry must be an apprise URL, got {u!r}")
    min_interval = float(r.get(tab, "min_interval", (int, float), "notify", d.min_interval))
    if not min_interval >= 0:  # (NaN-safe: NaN < 0 is false too)
        raise r.fail("notify.min_interval", "must be zero or positive")
    per_hour = r.get(tab, "max_per_hour", int, "notify", d.max_per_hour)
    if per_hour <= 0:
        raise r.fail("notify.max_per_hour", "must be positive")
    stale = float(r.get(tab, "stale_after", (int, float), "notify", d.stale_after))
    if not stale > 0:
        raise r.fail("notify.stale_after", "must be positive")
    summary = r.get(tab, "daily_summary", (str, bool), "notify", d.daily_summary)
    if summary is False:
        summary = None
    elif summary is True:
        summary = d.daily_summary
    elif summary is not None:
        try:
            hh, mm = summary.split(":")
            if not (0 <= int(hh) < 24 and 0 <= int(mm) < 60):
                raise ValueError
        except ValueError:
            raise r.fail("notify.daily_summary",
                         f"must be HH:MM or false, got {summary!r}") from None
    return NotifyConfig(tuple(urls), min_interval, per_hour, stale, summary)
