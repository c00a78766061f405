"""One writer per database: an OS advisory lock on `<db>.lock`.

Why: two pmgui instances writing the same database would each believe they manage the same
positions and would place protective orders twice. SQLite's own locking only serialises single
transactions, so the store additionally holds an exclusive, non-blocking OS lock for as long as a
writable `Store` is open. The OS releases it when the process dies (even by SIGKILL), so a crash
never leaves a stale lock behind. Read-only opens (`pmgui positions`, the history tab) do not
take it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO

from pmgui.domain.errors import StoreError

if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fh: IO[str]) -> None:
        fh.seek(0)
        msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)

    def _unlock(fh: IO[str]) -> None:
        fh.seek(0)
        msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _try_lock(fh: IO[str]) -> None:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fh: IO[str]) -> None:
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def lock_path(db_path: Path) -> Path:
    """The lock file of the database at `db_path`: beside the file itself, symbolic links
    followed, so every name of one database (the file, a link to it) shares one lock."""
    real = db_path.resolve() if db_path.is_symlink() else db_path
    return real.with_name(real.name + ".lock")


class WriterLock:
    """Held by a writable Store; `release()` is idempotent."""

    def __init__(self, db_path: Path) -> None:
        self.path = lock_path(db_path)
        existed = self.path.exists()
        try:
            fh = open(self.path, "a+", encoding="utf-8")  # held until release()
        except OSError as e:
            raise StoreError(f"cannot create the lock file {self.path}: {e.strerror or e}") from e
        try:
            _try_lock(fh)
        except OSError as e:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            raise StoreError(
                f"the database {db_path} is already open in another pmgui (process {holder}); "
                "close that one first") from e
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(str(os.getpid()))
            fh.flush()
        except OSError as e:  # a full disk: leave nothing behind
            with contextlib.suppress(OSError):
                _unlock(fh)
            with contextlib.suppress(OSError):
                fh.close()
            if not existed:
                with contextlib.suppress(OSError):
                    self.path.unlink()
            raise StoreError(f"cannot write the lock file {self.path}: {e.strerror or e}") \
                from e
        self._fh: IO[str] | None = fh

    def release(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            try:
                _unlock(fh)
            finally:
                fh.close()
