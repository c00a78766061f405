"""Running as a systemd user service: sd_notify, JSON logs, the unit file.

sd_notify is one datagram to $NOTIFY_SOCKET (no dependency): READY=1 once the engine is
connected and reconciled, WATCHDOG=1 every half watchdog period while the manager thread
answers, STOPPING=1 on the way out. systemd restarts a hung engine (WatchdogSec) and a dead
one (Restart=always).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import shutil
import socket
import sys
import time
from pathlib import Path

from pmgui.domain.errors import PmguiError

UNIT_NAME = "pmgui.service"


def sd_notify(state: str) -> bool:
    """Send `state` to the service manager; False when not run by one."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(state.encode())
        return True
    except OSError:
        return False


def watchdog_interval() -> float | None:
    """Half the watchdog period systemd asked for (seconds), or None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(0.5, int(usec) / 2_000_000)
    except ValueError:
        return None


class Watchdog:
    """Pings systemd while `alive()` says the engine still answers."""

    def __init__(self, alive) -> None:
        self.interval = watchdog_interval()
        self._alive = alive
        self._next = 0.0

    def tick(self) -> None:
        if self.interval is None:
            return
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.interval
        if self._alive():
            sd_notify("WATCHDOG=1")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": round(record.created, 3), "level": record.levelname,
                 "logger": record.name, "msg": record.getMessage(),
                 "pid": record.process, "thread": record.threadName}
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def add_json_log(path: Path, max_bytes: int = 10_000_000, backups: int = 5) -> logging.Handler:
    """Structured logs (one JSON object per line) to `path`, rotated at `max_bytes`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes,
                                                   backupCount=backups, encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    from pmgui.redact import REDACTOR  # API secrets and tokens never reach the file

    handler.addFilter(REDACTOR)
    logging.getLogger().addHandler(handler)
    return handler


def user_unit_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


def unit_text(exec_args: list[str], watchdog: int = 60) -> str:
    cmd = " ".join(_quote(a) for a in exec_args)
    return f"""[Unit]
Description=pmgui engine: manages crypto-futures positions around the clock

[Service]
Type=notify
NotifyAccess=main
ExecStart={cmd}
Restart=always
RestartSec=5
WatchdogSec={watchdog}
TimeoutStopSec=60
KillSignal=SIGTERM
Environment=PYTHONUNBUFFERED=1

[Install]
WantedBy=default.target
"""


def _quote(arg: str) -> str:
    """One ExecStart argument: `%` and `$` doubled (systemd specifiers and environment
    variables are expanded even inside quotes), quoted when needed."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if not arg or any(c in arg for c in " \t\"'\\$;"):
        return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return arg


def install_user_unit(listen: str, db: Path | None, config: Path | None,
                      log_json: Path | None, *, force: bool = False) -> Path:
    """Write the unit for the current user; the caller tells them the systemctl commands.

    An existing unit that differs (another database, address or configuration) is kept and
    PmguiError says so, unless `force`: a second install never replaces the first silently.
    """
    exe = shutil.which("pmgui")
    args = [exe] if exe else [sys.executable, "-m", "pmgui"]
    args += ["--headless", "--listen", listen]
    if db is not None:
        args += ["--db", str(db.resolve())]
    if config is not None:
        args += ["--config", str(config.resolve())]
    if log_json is not None:
        args += ["--log-json", str(log_json.resolve())]
    target = user_unit_dir() / UNIT_NAME
    text = unit_text(args)
    try:
        existing = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        existing = None
    except (OSError, UnicodeDecodeError) as e:
        raise PmguiError(f"cannot read the existing unit {target}: {e}") from None
    if existing is not None and existing != text and not force:
        old = next((line for line in existing.splitlines() if line.startswith("ExecStart=")),
                   "(no ExecStart)")
        raise PmguiError(f"{target} already exists with another setup ({old}); not replaced. "
                         "Add --force to replace it, or edit it by hand")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target
