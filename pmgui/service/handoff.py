"""One engine per database: the endpoint file, attaching to a running engine, handing over.

A headless engine that listens writes `<db>.service.json` (mode 0600) beside its database:
its pid, URL and a session token valid while that process lives. The next pmgui started on
the same database finds it (the file exists, the process is alive and the database's writer
lock is held) and attaches its window instead of opening the database a second time.

`start_background_engine(db, config)` is what the quit dialog calls to keep protection
running after the window closes: it starts `pmgui --headless --listen 127.0.0.1:0` on the
same database, detached from the window's process, which waits until the window's own
engine has released the database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pmgui.domain.errors import StoreError


@dataclass(frozen=True, slots=True)
class Endpoint:
    url: str
    token: str
    pid: int


def endpoint_path(db: Path) -> Path:
    return db.with_name(db.name + ".service.json")


def write_endpoint(db: Path, url: str, token: str) -> Path:
    path = endpoint_path(db)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"pid": os.getpid(), "url": url, "token": token, "started": time.time()}, fh)
    os.replace(tmp, path)
    return path


def remove_endpoint(db: Path) -> None:
    path = endpoint_path(db)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def db_locked(db: Path) -> bool:
    """Is a writable store open on `db` (in any process)?"""
    from pmgui.store.lock import WriterLock

    if not db.exists():
        return False
    try:
        lock = WriterLock(db)
    except StoreError:
        return True
    lock.release()
    return False


def find_running(db: Path) -> Endpoint | None:
    """The engine serving `db`, if one runs (stale files are ignored)."""
    try:
        data = json.loads(endpoint_path(db).read_text(encoding="utf-8"))
        ep = Endpoint(str(data["url"]), str(data["token"]), int(data["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if ep.pid == os.getpid() or not _alive(ep.pid) or not db_locked(db):
        return None
    return ep


def wait_for_db(db: Path, timeout: float) -> bool:
    """Wait until no writer holds `db` (the window handing over is still closing it)."""
    deadline = time.monotonic() + timeout
    while db_locked(db):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


_REQUEST: list[bool] = []


def request_background_engine() -> None:
    """The quit dialog's "keep protecting in the background": once the window and its engine
    have stopped, pmgui starts a headless engine on the same database and configuration."""
    _REQUEST[:] = [True]


def take_request() -> bool:
    requested = bool(_REQUEST)
    _REQUEST.clear()
    return requested


def start_background_engine(db: Path, config: Path | None = None, *,
                            log_path: Path | None = None,
                            wait: float = 60.0) -> subprocess.Popen:
    """Start a headless engine on `db` that outlives this process (quit-with-positions).

    Returns at once; the new process waits up to `wait` seconds for this one to release the
    database, then serves on a free loopback port recorded in `<db>.service.json`. Its log
    goes to `log_path` (default `<db>.service.log`).
    """
    program = [sys.executable] if getattr(sys, "frozen", False) else [sys.executable, "-m",
                                                                       "pmgui"]
    cmd = [*program, "--headless", "--listen", "127.0.0.1:0", "--db", str(db),
           "--wait-for-db", f"{wait:g}"]
    if config is not None:
        cmd += ["--config", str(config)]
    log_file = log_path or db.with_name(db.name + ".service.log")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        kwargs: dict = {"stdin": subprocess.DEVNULL, "stdout": out, "stderr": out}
        if os.name == "nt":  # pragma: no cover
            kwargs["creationflags"] = (subprocess.DETACHED_PROCESS  # type: ignore[attr-defined]
                                       | subprocess.CREATE_NEW_PROCESS_GROUP)
        else:
            kwargs["start_new_session"] = True  # not killed with the window's terminal
        return subprocess.Popen(cmd, **kwargs)
