"""The pmgui database: one SQLite file (WAL) written only by the manager thread (DESIGN §6).

Why it is built this way:
- **Nothing is ever written to a file we do not understand.** `Store.open` first looks at an
  existing file through a separate read-only connection: the SQLite header, `PRAGMA
  quick_check`, the pmgui `meta` table and its schema version. A corrupt file, another
  program's database or one written by a newer pmgui raises `StoreError` and the file's bytes
  stay exactly as they were. Only then is the file opened for writing, switched to WAL and
  migrated forward.
- **Every acknowledged write survives a crash.** Each public write method runs in its own
  transaction (`sqlite_utils.Database.atomic`) that is committed before the method returns,
  with `synchronous=FULL`, so a SIGKILL (or power loss) right after a call loses nothing.
  Several writes can be grouped with `transaction()`; they then commit together at the end of the
  outermost block (nested blocks become savepoints), or not at all.
- **Written behind, never for an order.** State that can be rebuilt from the journal and
  the venue (peaks, trailing levels, a rule's level moves and their log lines) may be queued
  (`save_position_behind`, `record_action_behind`) and written once its short window is due
  (`flush_behind`), in chunks of at most `behind_chunk` rows per call so that no commit of a
  large backlog holds up the loop; any read and `close()` write the whole queue first. A
  synced write carries only what waits behind for its own position (an order journaled for
  a position is never on disk without the levels it was placed at), so it never queues
  behind the backlog; a log line's id is taken when it is recorded, so the log keeps the
  order of the decisions whichever commit writes them. A rule's level move is only its log
  line: each position row carries the journal watermark it was saved at
  (`level_action_id`, the last action id logged then), and every load replays over it the
  position's moves logged after (`_replay_moves`), so the engine rewrites the row with its
  next save instead of at every move of a trail. Venue reports and such windows may be
  committed `relaxed()` (WAL, not fsynced: a killed process loses nothing; the next synced
  commit syncs them). Hot-path writes use prepared SQL (sqlite-utils keeps schema and
  migrations). The store remembers the Position it last wrote for each id (the engine's
  own immutable object, not a copy of its row): a level move validates, converts and
  updates only the columns whose objects changed (queued moves: one UPDATE statement per
  set of changed columns) and leaves the tranches alone when they are the same (a rollback
  forgets it all, so nothing undone is taken for written).
- **The journal comes first.** `journal_order` stores an intended order in status `pending`
  before the engine sends it; whatever is still `pending` after a restart (`pending_orders`) is
  an order whose fate is unknown and must be looked up on the exchange by its client id, never
  blindly re-sent. The engine journals it relaxed and awaits `wal_synced` before sending: the
  fsync runs on the store's one sync thread (`pmgui.store.walsync`), where the journals of a
  burst share one (group commit: a sync that started after a commit covers it).
- **Idempotent fills.** A fill is keyed by its id; recording it twice is a no-op that returns
  False, so the engine can apply a fill's effect only when `record_fill` returns True.
- **One writer.** A writable Store holds an OS lock on `<db>.lock` (pmgui.store.lock), so a
  second pmgui on the same database is refused instead of managing the same positions twice.
  The connection is created with `check_same_thread=False` so the engine may
  open the store on one thread and hand it to the manager thread, but it must then be used from
  that one thread only. Readers in other processes (`pmgui positions`) open with
  `readonly=True` (SQLite `mode=ro`); WAL lets them read while the engine writes.

Bad input (a NaN price, an unknown enum value, a value JSON cannot hold) raises
`ValidationError` naming the field, and nothing is written. SQLite failures (disk full, I/O
error, locked by another writer) are raised as `StoreError` with the operation named.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
import os
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, ParamSpec, TypeVar

from pmgui.domain.enums import ActionType, OrderRole, OrderStatus, PositionStatus, StopKind
from pmgui.domain.errors import StoreError, ValidationError
from pmgui.domain.levels import rule_level_move
from pmgui.domain.models import Action, Fill, Order, OrderRequest, Position
from pmgui.domain.slots import slot_constructor
from pmgui.store import migrations as mig
from pmgui.store.lock import WriterLock, lock_path
from pmgui.store.metrics import TradeMetrics, compute_metrics
from pmgui.store.serialize import (
    ACTION_COLUMNS,
    Row,
    action_flags,
    action_record,
    action_values,
    dumps_json,
    fill_from_row,
    fill_to_row,
    order_from_row,
    order_to_row,
    plain_action,
    plain_action_values,
    position_changes,
    position_from_row,
    position_to_row,
    same_rows,
    tranche_from_row,
    tranche_rows,
)
from pmgui.store.sqlite_lib import Database
from pmgui.store.walsync import WalSyncer

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

SQLITE_HEADER = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 5000
_UPSERT_SQL: dict[tuple, str] = {}  # prepared once per table and column set
_INSERT_SQL: dict[tuple, str] = {}
_UPDATE_SQL: dict[tuple, str] = {}
_ORDER_UPDATE_SQL: dict[tuple[str, ...], str] = {}  # per set of changed columns


_LIVE_STATUSES = (OrderStatus.PENDING.value, OrderStatus.OPEN.value)
# WAL checkpoints (see `Store.checkpoint_in_background`): a background PASSIVE checkpoint once
# this many pages wait in the WAL; SQLite's own inline checkpoint only as a backstop.
CHECKPOINT_PAGES = 1000
BACKSTOP_PAGES = 20000
FOLLOW_UPS = 4  # checkpoints right after one that left frames waiting (`_Checkpointer`)
RESTART_PAGES = 4000  # ... once the WAL holds this many frames: it starts over (~16 MB)
# s: a relaxed block trusts the NORMAL level it set itself this long (`Store.relaxed`), then
# sets it again (someone else sharing the connection may have changed it)
LEVEL_RECHECK = 0.25
BEHIND_CHUNK = 32  # rows written behind per commit of a due window (`Store.flush_behind`)
# The tick path's chunks are spaced (`Store.behind_due`): after a chunk that took d seconds,
# the next one waits BEHIND_PACE·d, so written-behind commits take at most 1/(1+BEHIND_PACE)
# of the loop during a storm instead of a run of chunks on consecutive ticks (a backlog every
# tick behind it waits out); a queue past BEHIND_BACKLOG rows is written without pauses.
BEHIND_PACE = 4.0
BEHIND_BACKLOG = 4096
# A chunked write's next pass (its positions in their rows' order, `Store._pass_take`) is
# prepared by the tick path's build steps (`Store.build_behind`), at most this many rowids
# looked up per step, the sort in a step of its own: never all of it in one tick (a pass
# over a 2,000-position book cost one tick 1.5-2.8 ms)
PASS_STEP = 256
_PROTECTIVE_ROLES = (OrderRole.STOP_LOSS.value, OrderRole.TAKE_PROFIT.value)


# a state's column changes against the Position they were computed from (that Position,
# the columns, their values)
_Prep = tuple[Position, tuple[str, ...], list[Any]]
# a position waiting behind: the state, its updated_at, its column changes, its journal
# watermark (`_watermark`)
_Queued = tuple[Position, float, "_Prep | None", int]


@dataclass(frozen=True, slots=True)
class _LaterRow:
    """A log line waiting behind whose row is built when written (`record_action_behind`):
    the usual action (`plain_action`), checked when recorded, so building its row cannot
    fail and needs no second check. Built in the window's batch, not on the tick that
    recorded it: the same text, and the serializing code runs hot in a loop instead of
    cold between two ticks."""

    row_id: int
    action: Action
    symbol: str
    ok: bool
    detail: str

    def row(self) -> tuple:
        return plain_action_values(self.action, self.row_id, self.symbol, self.ok,
                                   self.detail)


_later_row = slot_constructor(_LaterRow)  # `_LaterRow(...)` without the frozen __init__


def _action_rows(queued: list) -> list[tuple]:
    """The rows (`ACTION_COLUMNS` values) of queued log lines, built or waiting."""
    return [r if r.__class__ is tuple else r.row() for r in queued]


_ACTION_INSERT = (f"INSERT INTO actions ({', '.join(ACTION_COLUMNS)}) "
                  f"VALUES ({', '.join('?' * len(ACTION_COLUMNS))})")


# a position's rule level moves logged after its row's journal watermark, in order
# (`Store._replay_moves`; the per-position index serves it)
_MOVES_AFTER = ("SELECT type, sl, tp, stop_kind, flags FROM actions WHERE position_id = ? "
                "AND id > ? AND type IN ('move_sl', 'move_tp') AND reason != 'manual' "
                "AND ok = 1 ORDER BY id")


def _update_sql(cols: tuple[str, ...]) -> str:
    """UPDATE of a position's changed columns, its updated_at and its journal watermark
    (params: values, updated_at, level_action_id, id)."""
    sql = _UPDATE_SQL.get(cols)
    if sql is None:
        sets = ", ".join(f"{c} = ?" for c in (*cols, "updated_at", "level_action_id"))
        sql = _UPDATE_SQL[cols] = f"UPDATE positions SET {sets} WHERE id = ?"
    return sql


@dataclass(frozen=True, slots=True)
class RestoredState:
    """Everything the engine needs from the store on start-up, read in one go."""

    positions: tuple[Position, ...]
    open_orders: tuple[Order, ...]  # PENDING or OPEN, including the pending journal
    pending_orders: tuple[Order, ...]  # journaled but never acknowledged: look them up first


def _guard(fn: Callable[P, T]) -> Callable[P, T]:
    """Turn a raw sqlite3 failure, or a stored value that cannot be decoded (an unknown enum
    value, broken JSON), into a StoreError that names the operation. Input errors are
    ValidationError (not a ValueError) and pass through unchanged."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except (sqlite3.Error, ValueError, KeyError) as e:
            raise _guarded(fn.__name__, e) from e

    return wrapper


def _guarded(name: str, e: Exception) -> StoreError:
    """`_guard`'s StoreError for `e` raised inside the operation `name` (for the hot
    write-behind calls, which translate their errors inline: a wrapper's frame and its
    keyword arguments packed again cost ~0.3 µs of each level move's two calls)."""
    if isinstance(e, sqlite3.Error):
        return StoreError(f"database error in {name}: {e}")
    return StoreError(f"the database holds data {name} cannot read: {e!r}")


def _fill_span(fill_id: str, qty: float) -> tuple[float, float] | None:
    """The part of its order's execution a fill record describes, (filled before, filled
    after), read off its id: the ledger's own `<client id>#<filled>`, a venue adapter's
    `<venue>:<order key>:<filled>`. None: an id that does not say it (the paper venue's)."""
    cut = max(fill_id.rfind("#"), fill_id.rfind(":"))
    try:
        end = float(fill_id[cut + 1:]) if cut >= 0 else math.nan
    except ValueError:
        return None
    return (end - qty, end) if math.isfinite(end) else None


def _check_header(path: Path) -> int:
    """Size of the file; StoreError if it is non-empty and not a SQLite database."""
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(len(SQLITE_HEADER))
    except OSError as e:
        raise StoreError(f"cannot read the database file {path}: {e.strerror or e}") from e
    if size == 0:
        return 0
    if size < 100 or head != SQLITE_HEADER:
        raise StoreError(f"{path} is not a SQLite database or is corrupt; it was not modified")
    return size


def _ro_uri(path: Path, immutable: bool = False) -> str:
    return path.resolve().as_uri() + ("?immutable=1" if immutable else "?mode=ro")


def check_db_path(path: Path | str) -> Path:
    """A database path a user can see and type: no control characters (a newline or an
    escape sequence in a file name hides what is really opened)."""
    text = str(path)
    bad = [c for c in text if ord(c) < 32 or ord(c) == 127]
    if bad:
        raise StoreError(f"the database name {text!r} contains control characters; "
                         "choose a plain file name")
    if not text.strip():
        raise StoreError("the database path is empty")
    return Path(path)


def _side_files(path: Path) -> list[Path]:
    return [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]


@contextmanager
def _leave_no_side_files(path: Path) -> Iterator[None]:
    """On failure, remove the -wal/-shm files SQLite created beside `path` meanwhile (a
    refused database keeps exactly the files it had)."""
    before = {f for f in _side_files(path) if f.exists()}
    try:
        yield
    except BaseException:
        for f in _side_files(path):
            if f not in before:
                with contextlib.suppress(OSError):
                    f.unlink()
        raise


def _connect_ro(path: Path) -> sqlite3.Connection:
    """A read-only connection. On read-only media SQLite cannot create the WAL index
    (-shm) that `mode=ro` needs, so the file is then opened `immutable=1` (nothing can
    change it there anyway)."""
    last: sqlite3.Error | None = None
    for immutable in (False, True):
        try:
            conn = sqlite3.connect(_ro_uri(path, immutable), uri=True, check_same_thread=False,
                                   timeout=BUSY_TIMEOUT_MS / 1000)
        except sqlite3.Error as e:
            last = e
            continue
        try:
            conn.execute("PRAGMA schema_version").fetchone()  # really opens the file
        except sqlite3.OperationalError as e:
            conn.close()
            last = e
            if "unable to open" in str(e) or "readonly" in str(e) or "read-only" in str(e):
                continue
            break
        except sqlite3.DatabaseError:
            return conn  # not a database: _inspect says so with its own words
        return conn
    raise StoreError(f"cannot open the database {path} for reading: {last}") from last


def _inspect(conn: sqlite3.Connection, path: Path) -> int:
    """quick_check + schema version of an open (read-only) connection; StoreError if unusable."""
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
    except sqlite3.OperationalError as e:  # locked, unreadable, out of memory: not corruption
        raise StoreError(f"cannot read the database {path} ({e}); it was not modified") from e
    except sqlite3.DatabaseError as e:
        raise StoreError(f"{path} is corrupt ({e}); it was not modified") from e
    problems = [str(r[0]) for r in rows if r and r[0] != "ok"]
    if problems:
        raise StoreError(f"{path} is corrupt ({'; '.join(problems[:3])}); "
                         "it was not modified")
    try:
        db = Database(conn, recursive_triggers=False, execute_plugins=False)
        version = mig.read_version(db)
        mig.check_tables(db, version)
        return version
    except sqlite3.DatabaseError as e:
        raise StoreError(f"{path} cannot be read ({e}); it was not modified") from e


_JOURNAL_TABLES = ("positions", "orders", "fills", "actions")


def discard_unused(path: Path) -> bool:
    """Remove a database this run created when it journaled nothing (a start-up that failed,
    e.g. on a full disk), with its -wal/-shm/lock files. A database holding any position,
    order, fill or action is kept: it may be the only record of an order sent."""
    p = Path(path)
    if not p.exists():
        return False
    try:
        conn = sqlite3.connect(_ro_uri(p), uri=True)
        try:
            for table in _JOURNAL_TABLES:
                with contextlib.suppress(sqlite3.OperationalError):  # no such table: empty
                    if conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone():
                        return False
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    for f in (p, *_side_files(p), p.with_name(p.name + ".lock")):
        with contextlib.suppress(OSError):
            f.unlink()
    return True


class Store:
    """Persistence of trading state. See the module docstring for the guarantees.

    `db` (a `sqlite_utils.Database`) is public so the paper exchange can keep its own
    `paper_*` tables in the same file. Group such writes with `db.atomic()` (or
    `Store.transaction()`), never `with db.conn:` — the sqlite3 context manager commits
    whatever transaction is open, which would break an enclosing `transaction()`.
    """

    SCHEMA_VERSION: int = mig.SCHEMA_VERSION

    def __init__(self, db: Database, path: Path, *, readonly: bool,
                 lock: WriterLock | None = None) -> None:
        """Use `Store.open`; this only wires an already validated connection."""
        self.db = db
        self.path = path
        self.readonly = readonly
        self._lock = lock
        self._closed = False
        # Write-behind (DESIGN §6): state that can be rebuilt (peaks, trailing levels, rule
        # level moves and their log lines) waits here and is written in chunks once its
        # window is due (`flush_behind`), before any read; a synced write takes along only
        # what waits for its own position.
        # per position: (the Position, its updated_at, its column changes against the
        # state written when it was queued, or None) — rows are built when written
        self._behind_positions: dict[str, _Queued] = {}
        self._behind_actions: list[tuple | _LaterRow] = []  # `ACTION_COLUMNS` values
        self._behind_since: float | None = None
        self.behind_chunk = BEHIND_CHUNK
        # the queued positions of the chunked write under way, in their rows' order in the
        # table, the next one last (`_pass_take`); the rowids that order them, learnt once
        self._behind_pass: list[str] = []
        self._rowids: dict[str, int] = {}
        # the pass after it, prepared ahead by `build_behind` (in its order), and the
        # preparation under way: [its ids, the ids whose rowids are still to look up]
        self._next_pass: list[str] | None = None
        self._pass_prep: tuple[list[str], list[str]] | None = None
        self._behind_resume = 0.0  # monotonic time before which a due chunk waits (paced)
        self._built_cost = 0.0  # s spent building the next chunk's rows (`build_behind`)
        self._next_action_id: int | None = None  # ids are taken when a line is recorded
        # rows taken from the queue by the open transaction (queued again if it rolls back)
        self._carried_positions: dict[str, _Queued] = {}
        self._carried_actions: list[tuple | _LaterRow] = []
        self._normal = False  # synchronous=NORMAL in force (inside `relaxed()`)
        # until then (monotonic s) the level is NORMAL as this store last set it: a relaxed
        # block sets nothing (`relaxed`); 0: set it again
        self._normal_until = 0.0
        self._wal_fd: int | None = None  # for `sync_wal` (fsync off the event loop)
        self._syncer: WalSyncer | None = None  # `wal_synced`: its thread, started on demand
        self._sp = 0  # savepoints open (`_tx`): the next one's depth
        self._whole = False  # inside `transaction(whole=True)`: writes open no savepoints
        self._doomed: BaseException | None = None  # what failed inside that block
        self._checkpointer: _Checkpointer | None = None
        # per position: the Position this connection last wrote (positions are immutable;
        # usually the very object the engine holds, so remembering it costs a dict entry).
        # A write updates only the columns whose objects differ from it and leaves the
        # tranches alone when they are the same (a level move changes a few columns;
        # rewriting the row would touch every index of the table). A state of the same id
        # validated before also makes validation cheap: only the new objects are checked.
        # Forgotten whenever a transaction rolls back (`_forget_written`).
        self._written: dict[str, Position] = {}

    # ------------------------------------------------------------------ opening / closing

    @classmethod
    def open(cls, path: Path | str, *, readonly: bool = False) -> Store:
        """Open (creating it if missing, unless `readonly`) and migrate the database at `path`.

        Raises StoreError for a file that is not SQLite or is corrupt, another program's
        database, one written by a newer pmgui, or a path that cannot be created or written.
        Such files are never modified. `readonly` opens with SQLite `mode=ro`, never migrates
        and refuses a database that needs an upgrade.
        """
        p = check_db_path(path).expanduser()
        if p.is_dir():
            raise StoreError(f"{p} is a directory, not a database file")
        if readonly:
            return cls._open_readonly(p)
        return cls._open_writable(p)

    @classmethod
    def _open_readonly(cls, p: Path) -> Store:
        if not p.exists():
            raise StoreError(f"there is no pmgui database at {p}")
        _check_header(p)
        with _leave_no_side_files(p):
            return cls._readonly_from(p)

    @classmethod
    def _readonly_from(cls, p: Path) -> Store:
        conn = _connect_ro(p)
        try:
            version = _inspect(conn, p)
            mig.check_supported(version, cls.SCHEMA_VERSION)
            if version < cls.SCHEMA_VERSION:
                raise StoreError(
                    f"the database {p} has schema {version} and needs an upgrade to "
                    f"{cls.SCHEMA_VERSION}; start pmgui once with it (not read-only) to upgrade")
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            db = Database(conn, execute_plugins=False)
        except BaseException:
            conn.close()
            raise
        return cls(db, p, readonly=True)

    @classmethod
    def _open_writable(cls, p: Path) -> Store:
        created = not p.exists()
        lock_file = lock_path(p)
        lock_existed = lock_file.exists()
        try:
            with _leave_no_side_files(p):
                return cls._writable_at(p)
        except BaseException as e:
            # e.g. a full disk: no empty database or lock file left behind
            for f, made in ((p, created), (lock_file, not lock_existed)):
                if made and f.exists():
                    with contextlib.suppress(OSError):
                        f.unlink()
            if created and isinstance(e, StoreError) and isinstance(e.__cause__, sqlite3.Error):
                raise StoreError(f"cannot create the database {p}: {e.__cause__}; nothing "
                                 "was left behind") from e
            raise

    @classmethod
    def _writable_at(cls, p: Path) -> Store:
        if p.exists():
            if _check_header(p) > 0:
                # Look before touching: a separate read-only connection cannot write, not even
                # a WAL checkpoint, so a refused file keeps its exact bytes.
                conn = _connect_ro(p)
                try:
                    mig.check_supported(_inspect(conn, p), cls.SCHEMA_VERSION)
                finally:
                    conn.close()
        else:
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot create the folder for the database {p}: "
                                 f"{e.strerror or e}") from e
        lock = WriterLock(p)
        try:
            conn = sqlite3.connect(str(p), check_same_thread=False,
                                   timeout=BUSY_TIMEOUT_MS / 1000)
        except sqlite3.Error as e:
            lock.release()
            raise StoreError(f"cannot create or open the database {p}: {e}") from e
        try:
            db = Database(conn, execute_plugins=False)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys = ON")
            db.enable_wal()
            if db.journal_mode != "wal":
                raise StoreError(f"the database {p} could not be switched to WAL mode")
            conn.execute("PRAGMA synchronous = FULL")
            # Probe for write access now (read-only file, another process holding the write
            # lock) rather than failing on the first trade.
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            mig.migrate(db)
        except sqlite3.Error as e:
            conn.close()
            lock.release()
            raise StoreError(f"cannot write the database {p}: {e}") from e
        except BaseException:
            conn.close()
            lock.release()
            raise
        return cls(db, p, readonly=False, lock=lock)

    def close(self) -> None:
        """Close the connection (idempotent). Committed data is already on disk."""
        if not self._closed:
            try:
                if not self.readonly:
                    self.flush_behind()
            except StoreError:
                log.warning("closing: state written behind could not be saved", exc_info=True)
            self._closed = True
            if self._checkpointer is not None:  # first: the last connection removes the WAL
                self._checkpointer.stop()
                self._checkpointer = None
            if self._syncer is not None:  # the syncs asked for are done first
                self._syncer.stop()
            if self._wal_fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._wal_fd)
                self._wal_fd = None
            try:
                self.db.close()
            finally:
                if self._lock is not None:
                    self._lock.release()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return mig.read_version(self.db)

    @contextmanager
    def transaction(self, *, whole: bool = False) -> Iterator[Store]:
        """Group several writes: all are committed at the end of the outermost block, or none.

        Nesting-safe: an inner block is a savepoint, rolled back alone if it raises.

        `whole` (an outermost block; nested, the flag changes nothing): the block commits
        whole or not at all, whatever its body catches. The writes inside open no savepoints
        of their own — two statements each (~16 µs of SQLite and the Python around them):
        a stop's close is booked with five, a venue's order report with two — and a write
        that fails inside dooms the block: it rolls back at its end and raises StoreError,
        even if the body caught the error and went on. For bookings whose parts mean nothing
        apart (an order report, its fills, the close they make)."""
        self._writable()
        whole = whole and not self.db.conn.in_transaction
        try:
            with self._tx():
                if not whole:
                    yield self
                    return
                self._whole, self._doomed = True, None
                try:
                    yield self
                    if self._doomed is not None:
                        raise StoreError("a write failed inside a block that commits whole "
                                         f"({self._doomed!r}); nothing of it was written")
                finally:
                    self._whole, self._doomed = False, None
        except sqlite3.Error as e:  # e.g. the final COMMIT failing on a full disk
            raise StoreError(f"database error in transaction: {e}") from e

    @contextmanager
    def relaxed(self) -> Iterator[Store]:
        """Commits inside are written but not fsynced (`synchronous=NORMAL`): in WAL mode a
        killed process loses none of them; only a power cut can lose the newest, and the next
        synced commit (an order journaled) syncs them too. For what the venue can tell again
        (its order reports) and state that can be rebuilt. Never held across an `await`.
        An intended order journaled inside is still synced (see `journal_order`).

        The level is not put back to FULL on the way out, and a block that finds NORMAL set
        by this store less than `LEVEL_RECHECK` s ago sets nothing: every commit that must
        be synced sets FULL itself first (`_synced`). A relaxed block used to cost two
        PRAGMA statements, each a read transaction of its own on the shared memory (four
        `fcntl` locks): ~15 % of the CPU of a stop's close (booked in two relaxed blocks)
        and part of every tick that writes behind. Whoever else sets the level on the
        shared connection (a bench's set-up) is corrected within `LEVEL_RECHECK` s."""
        conn = self.db.conn
        toggle = not self._normal and not conn.in_transaction and not self.readonly \
            and not self._closed
        if toggle:
            now = time.monotonic()
            if now >= self._normal_until:
                conn.execute("PRAGMA synchronous = NORMAL")
                self._normal_until = now + LEVEL_RECHECK
            self._normal = True
        try:
            yield self
        finally:
            if toggle:
                self._normal = False

    def forget_level(self) -> None:
        """Someone else set `PRAGMA synchronous` on this connection (a bench's set-up, bulk
        loading at OFF then back to FULL): the next relaxed block sets NORMAL again instead
        of trusting the level this store set less than `LEVEL_RECHECK` s ago. Without it,
        every relaxed commit of those up to 0.25 s is fsynced on the writing thread: ~70-90
        fsyncs at the start of each 500-position storm (session 18, a trace of the commits)."""
        self._normal_until = 0.0

    @contextmanager
    def audit_commits(self) -> Iterator[CommitAudit]:
        """Count the commits made on this connection inside the block, by thread and by
        whether SQLite fsyncs them (`synchronous` FULL or EXTRA at the COMMIT): a probe for
        tests and benches (a Python callback on every statement: not for production). The
        level is followed through every `PRAGMA synchronous` statement the connection runs,
        whoever runs it (this store, the paper venue, a bench)."""
        conn = self.db.conn
        audit = CommitAudit(int(conn.execute("PRAGMA synchronous").fetchone()[0]))
        conn.set_trace_callback(audit.statement)
        try:
            yield audit
        finally:
            conn.set_trace_callback(None)

    def _synced(self) -> None:
        """The next commit is fsynced (`synchronous=FULL`): called before every commit that
        is not `relaxed()` (a relaxed block leaves the connection at NORMAL). Set every time,
        never taken from a remembered level: whoever else shares the connection (the paper
        venue, a bench's set-up) may have changed it meanwhile; a synced commit pays an
        fsync anyway, so the statement costs nothing that shows."""
        conn = self.db.conn
        if not self._normal and not conn.in_transaction and not self.readonly \
                and not self._closed:
            conn.execute("PRAGMA synchronous = FULL")
            self._normal_until = 0.0  # the next relaxed block sets NORMAL again

    @property
    def can_sync_wal(self) -> bool:
        """`sync_wal` is available (a writable database in WAL mode whose -wal file is
        there) and would cover the next commit (no transaction is open that would commit
        only later)."""
        if self.readonly or self._closed or self.db.conn.in_transaction:
            return False
        if self._wal_fd is None:
            try:
                self._wal_fd = os.open(str(self.path) + "-wal", os.O_RDONLY)
            except OSError:
                return False
        return True

    def sync_wal(self) -> None:
        """fsync the WAL: every commit made before the call is on disk when it returns.
        Touches no SQLite object, so it may run in a worker thread while the engine's loop
        goes on (check `can_sync_wal` first, on the engine's thread)."""
        fd = self._wal_fd
        if fd is None:
            raise StoreError("the journal cannot be synced: no WAL file is open")
        try:
            os.fsync(fd)
        except OSError as e:
            raise StoreError(f"the journal could not be synced to disk: {e}") from e

    def wal_synced(self) -> asyncio.Future[None]:
        """`sync_wal` on the store's own sync thread, for the running event loop: the
        future completes once every commit made before this call is on disk (it fails with
        `StoreError` as `sync_wal` would). Group commit (`WalSyncer`): a sync that started
        after a commit covers it, so the journals of one burst share one fsync — one
        thread, not the default executor's workers each taking the GIL from the loop. Check
        `can_sync_wal` first, on the engine's thread."""
        if self._syncer is None:
            self._syncer = WalSyncer(lambda: self.sync_wal)
        return self._syncer.synced()

    def checkpoint_in_background(self, pages: int = CHECKPOINT_PAGES,
                                 interval: float = 0.25) -> bool:
        """Move WAL checkpoints off the writing thread (the engine's loop).

        SQLite checkpoints inline: the commit that fills the WAL past 1000 pages copies them
        into the database and fsyncs both files before it returns — a stall of the engine's
        loop at an arbitrary commit, e.g. the one booking a close. Here a daemon thread with
        its own connection runs a PASSIVE checkpoint (it never blocks the writer, and the
        writer never waits for it) once `pages` wait in the WAL; the inline checkpoint stays
        only as a backstop at `BACKSTOP_PAGES`. Durability does not change: a commit is as
        durable as its own sync made it, whoever copies it into the database later.
        Returns False (nothing started) for a read-only or closed store."""
        if self.readonly or self._closed:
            return False
        if self._checkpointer is None:
            try:
                conn = sqlite3.connect(str(self.path), check_same_thread=False,
                                       timeout=BUSY_TIMEOUT_MS / 1000)
            except sqlite3.Error as exc:
                log.warning("no background WAL checkpoints (%s): SQLite checkpoints inline",
                            exc)
                return False
            # the inline checkpoint becomes a backstop only once its replacement can run
            self.db.conn.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")
            self._checkpointer = _Checkpointer(conn, self.path, pages, interval)
            self._checkpointer.start()
        return True

    @contextmanager
    def _durable(self) -> Iterator[None]:
        """The enclosed commit is fsynced, even inside `relaxed()`."""
        conn = self.db.conn
        if not self._normal:
            yield
            return
        if conn.in_transaction:
            raise StoreError("an intended order cannot be journaled inside a transaction "
                             "that is not synced; nothing was written")
        conn.execute("PRAGMA synchronous = FULL")
        try:
            yield
        finally:
            if not self._closed:
                conn.execute("PRAGMA synchronous = NORMAL")
                self._normal_until = time.monotonic() + LEVEL_RECHECK

    @contextmanager
    def _tx(self) -> Iterator[None]:
        """A transaction, or a savepoint inside one (sqlite-utils' `atomic` without its random
        savepoint names, which cost a urandom read each).

        A savepoint is named by its nesting depth, so the same few statements come back and
        stay prepared in the connection's statement cache. Names unique per savepoint (a
        counter, until session 13) were compiled afresh each time (~30 µs a statement) and,
        ten new ones per close, flushed the cache's 128 entries: the hot path's INSERTs were
        compiled again too. SQLite finds a savepoint by its name on the transaction's stack
        (the innermost of that name), so equal names at different depths never meet."""
        conn = self.db.conn
        if conn.in_transaction:
            if self._whole:  # no savepoint: a failure dooms the block (`transaction(whole)`)
                try:
                    yield
                except BaseException as exc:
                    if self._doomed is None:
                        self._doomed = exc
                    raise
                return
            self._sp += 1
            name = f"pmgui_sp{self._sp}"
            carried = len(self._carried_positions), len(self._carried_actions)
            try:
                conn.execute(f"SAVEPOINT {name}")
                try:
                    yield
                except BaseException:
                    self._forget_written()  # what the rollback undid is unknown here
                    if conn.in_transaction:
                        conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
                        conn.execute(f"RELEASE SAVEPOINT {name}")
                    self._requeue_carried(*carried)
                    raise
                else:
                    conn.execute(f"RELEASE SAVEPOINT {name}")
            finally:
                self._sp -= 1
            return
        self._synced()
        conn.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._forget_written()
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._requeue_carried()
            raise
        try:
            conn.execute("COMMIT")
        except BaseException:
            self._forget_written()
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._requeue_carried()
            raise
        self._carried_positions.clear()
        self._carried_actions.clear()

    def _forget_written(self) -> None:
        self._written.clear()

    def _requeue_carried(self, positions: int = 0, actions: int = 0) -> None:
        """A rolled-back transaction had taken rows from the write-behind queue: they wait
        there again (newer states queued meanwhile win). A savepoint rolled back gives back
        only what was taken inside it (the carried rows after the first `positions` and
        `actions`): the enclosing transaction may still commit, and would otherwise take
        the undone rows for written."""
        carried_p, carried_a = self._carried_positions, self._carried_actions
        undone_p = list(carried_p.items())[positions:] if positions else list(carried_p.items())
        undone_a = carried_a[actions:]
        for pid, rows in undone_p:
            self._behind_positions.setdefault(pid, rows)
            del carried_p[pid]
        self._behind_actions[:0] = undone_a
        del carried_a[actions:]
        if (undone_p or undone_a) and self._behind_since is None:
            self._behind_since = time.monotonic()

    @contextmanager
    def _atomic(self, position_id: str | None = None) -> Iterator[None]:
        """One write transaction that first writes what waits behind for `position_id` (an
        order or a fill of a position is never on disk without the position's newer levels);
        the rest of the queue waits for its window."""
        with self._tx():
            taken = None
            if position_id is not None:
                taken = self._behind_positions.pop(position_id, None)
            try:
                if taken is not None:
                    self._write_position(*taken)
                    self._carried_positions[position_id] = taken  # type: ignore[index]
                yield
            except BaseException:
                if taken is not None:  # rolled back: it waits behind again
                    self._behind_positions.setdefault(position_id, taken)  # type: ignore[arg-type]
                    if self._behind_since is None:
                        self._behind_since = time.monotonic()
                raise
            if not self._behind_positions and not self._behind_actions:
                self._behind_since = None

    # ------------------------------------------------------------------ write-behind

    def save_position_behind(self, pos: Position) -> None:
        """`save_position` written behind: validated now, stored with the next window.
        (`_guard`ed inline: see `_guarded`.)"""
        try:
            self._writable()
            prep = self._validate(pos)
            self._behind_positions[pos.id] = (pos, time.time(), prep, self._watermark())
            if self._behind_since is None:
                self._behind_since = time.monotonic()
        except (sqlite3.Error, ValueError, KeyError) as e:
            raise _guarded("save_position_behind", e) from e

    def record_action_behind(self, action: Action, *, symbol: str, ok: bool = True,
                             detail: str = "") -> None:
        """`record_action` written behind (a decision that sends no order: a rule's level
        move). Validated now; its row id comes with the write. (`_guard`ed inline: see
        `_guarded`.)"""
        try:
            self._writable()
            if action.inputs.__class__ is MappingProxyType \
                    and plain_action(action, symbol, detail):
                action_flags(action)  # the one part that can still be refused: checked now
                row_id = self._take_action_id()
                self._behind_actions.append(_later_row(row_id, action, symbol, ok, detail))
            else:
                self._behind_actions.append(self._action_row(action, symbol, ok, detail))
            if self._behind_since is None:
                self._behind_since = time.monotonic()
        except (sqlite3.Error, ValueError, KeyError) as e:
            raise _guarded("record_action_behind", e) from e

    def behind_due(self, older_than: float) -> bool:
        """Whether the tick path should call `flush_behind(older_than)` now (a cheap test):
        the window is due and the pause after the last chunk (`BEHIND_PACE`) is over."""
        since = self._behind_since
        if since is None:
            return False
        now = time.monotonic()
        return now - since >= older_than and now >= self._behind_resume

    def build_behind(self) -> int:
        """Build the rows of the log lines the next chunk of `flush_behind(older_than)` will
        write, without writing anything; returns how many were built (0: the next chunk's
        are built already, flush it). The tick path calls it on the due tick and flushes on
        a later one, so a chunk's Python work (~0.4 ms of a ~1.5 ms chunk in a storm at 500
        positions, most of it the inputs' JSON) and its SQL and commit are two loop steps
        instead of one that every tick behind it waits out. The queue is the same (each line
        is replaced in place by its row, the same values `_LaterRow.row` gives when written):
        what is written, when, in which commit and order, does not change."""
        start = time.monotonic()
        actions = self._behind_actions
        limit = max(1, self.behind_chunk)
        n_a = self._chunk_actions(limit)
        built = 0
        for i in range(n_a):
            r = actions[i]
            if r.__class__ is not tuple:
                actions[i] = r.row()
                built += 1
        if len(self._behind_positions) + len(actions) > limit and limit > n_a:
            built += self._prepare_pass(limit - n_a)
        if built:  # part of the chunk's cost: the pause after it (`BEHIND_PACE`) covers it
            self._built_cost += time.monotonic() - start
        return built

    def _prepare_pass(self, need: int) -> int:
        """A build step for the positions of the next chunk (`need` of them): when the pass
        under way cannot fill it, the next pass is prepared — its rowids looked up at most
        PASS_STEP per step, then sorted in a step of its own (small passes: all in one) — so
        that the chunk's write finds it ready (`_pass_take`) instead of preparing it inline.
        Returns the work done (0: nothing to prepare, the chunk can be written)."""
        prep = self._pass_prep
        if prep is None:
            if self._next_pass is not None:
                return 0
            positions, order = self._behind_positions, self._behind_pass
            rest: set[str] = set()
            for i in range(len(order) - 1, -1, -1):
                pid = order[i]
                if pid in positions:
                    rest.add(pid)
                    if len(rest) >= need:
                        return 0  # the pass under way fills it
            if len(positions) <= len(rest):
                return 0
            ids = [pid for pid in positions if pid not in rest]
            rowids = self._rowids
            prep = self._pass_prep = (ids, [pid for pid in ids if pid not in rowids])
        ids, unknown = prep
        looked = 0
        if unknown:
            part = unknown[-PASS_STEP:]
            del unknown[-PASS_STEP:]
            self._learn_rowids(part)
            looked = len(part)
            if unknown or len(ids) > PASS_STEP:
                return looked  # the sort in the next step
        self._next_pass = self._sorted_by_row(ids)
        self._pass_prep = None
        return looked + len(ids)

    def _chunk_actions(self, limit: int | None) -> int:
        """How many queued log lines the next chunk of at most `limit` rows takes (with
        positions waiting too, half the chunk at most: neither starves)."""
        n_p, n_a = len(self._behind_positions), len(self._behind_actions)
        if limit is None or n_p + n_a <= limit:
            return n_a
        return min(n_a, limit // 2 if n_p else limit)

    @property
    def behind(self) -> int:
        """How many rows wait to be written behind."""
        return len(self._behind_positions) + len(self._behind_actions)

    @_guard
    def flush_behind(self, older_than: float = 0.0) -> int:
        """Write what waits behind (not fsynced: see `relaxed`); returns the rows written.

        With `older_than` (the window, from the tick path): nothing until the oldest row
        waited that long, then at most `behind_chunk` rows per call, one commit each, until
        the queue is empty — a large backlog (a storm's level moves over thousands of
        positions) is spread over the next ticks instead of one long commit that every tick
        behind it waits for. Without it: everything, in one transaction. A chunk sets the
        pause `behind_due` keeps before the next (`BEHIND_PACE` times its own duration): the
        chunks are spread between the ticks, not written on consecutive ones."""
        if self._behind_since is None or self._closed:
            return 0
        limit = None
        if older_than > 0:
            if time.monotonic() - self._behind_since < older_than:
                return 0
            limit = max(1, self.behind_chunk)
        start = time.monotonic()
        with self.relaxed(), self._tx():
            written = self._write_behind(limit)
        if limit is not None:
            end = time.monotonic()
            cost, self._built_cost = end - start + self._built_cost, 0.0
            self._behind_resume = end + BEHIND_PACE * cost \
                if self.behind < BEHIND_BACKLOG else 0.0
        return written

    def _write_behind(self, limit: int | None = None) -> int:
        """Write up to `limit` rows of the queue (all without); the rest stays queued."""
        if self._behind_since is None:
            return 0
        positions, actions = self._behind_positions, self._behind_actions
        if limit is None or len(positions) + len(actions) <= limit:
            taken_p, taken_a = positions, actions
            self._behind_positions, self._behind_actions = {}, []
            self._behind_pass, self._next_pass, self._pass_prep = [], None, None
        else:
            n_a = self._chunk_actions(limit)
            taken_a, self._behind_actions = actions[:n_a], actions[n_a:]
            taken_p = {}
            for pid in self._pass_take(positions, limit - n_a):
                taken_p[pid] = positions.pop(pid)
        since = self._behind_since
        if not self._behind_positions and not self._behind_actions:
            self._behind_since = None
        try:
            self._write_positions(taken_p)
            if taken_a:
                self.db.conn.executemany(_ACTION_INSERT, _action_rows(taken_a))
        except BaseException:
            # not written: kept for the next try (newer states queued meanwhile win)
            for pid, rows in taken_p.items():
                self._behind_positions.setdefault(pid, rows)
            self._behind_actions[:0] = taken_a
            self._behind_since = since
            raise
        self._carried_positions.update(taken_p)  # until the transaction commits
        self._carried_actions.extend(taken_a)
        return len(taken_p) + len(taken_a)

    def _pass_take(self, positions: dict[str, _Queued], n: int) -> list[str]:
        """The next `n` queued positions of a chunked write: a pass takes the positions
        queued when it began in the order of their rows in the table, so each chunk's
        rows sit on neighbouring pages (a commit writes every page it touched once; in
        the queue's order a chunk of a 2,000-position book touched one page per row). A
        position queued after the pass began waits for the next one: no longer than one
        pass, as in the queue's order."""
        order = self._behind_pass
        taken: dict[str, None] = {}
        while len(taken) < n:
            if not order:
                order = self._next_pass  # prepared ahead (`build_behind`)
                self._next_pass = None
                if not order:
                    self._pass_prep = None  # this pass covers what it would have
                    order = self._row_order([pid for pid in positions if pid not in taken])
                self._behind_pass = order
                if not order:
                    break
            pid = order.pop()
            if pid in positions:
                taken[pid] = None
        return list(taken)

    def _row_order(self, ids: list[str]) -> list[str]:
        """`ids` in the reverse order of their rows' rowids (the next one last); a position
        without a row yet (written whole) comes after those with one."""
        rowids = self._rowids
        unknown = [pid for pid in ids if pid not in rowids]
        for i in range(0, len(unknown), 500):
            self._learn_rowids(unknown[i:i + 500])
        return self._sorted_by_row(ids)

    def _sorted_by_row(self, ids: list[str]) -> list[str]:
        rowids = self._rowids
        last = math.inf
        return sorted(ids, key=lambda pid: rowids.get(pid, last), reverse=True)

    def _learn_rowids(self, ids: list[str]) -> None:
        """Look up the rowids of the rows of `ids` (at most 500: one statement)."""
        if not ids:
            return
        rowids = self._rowids
        if len(rowids) + len(ids) > 65536:
            rowids.clear()  # a bound; the ids met are learnt again
        rowids.update(self.db.conn.execute(
            f"SELECT id, rowid FROM positions WHERE id IN ({', '.join('?' * len(ids))})", ids))

    def _action_row(self, action: Action, symbol: str, ok: bool, detail: str) -> tuple:
        """The action's row (`ACTION_COLUMNS` values) with its id taken now: the log keeps
        the order in which the decisions were recorded, whether a line is written at once
        or behind."""
        row = action_values(action, self._peek_action_id(), symbol=symbol, ok=ok,
                            detail=detail)
        self._take_action_id()  # taken once the row is built: a refused action takes none
        return row

    def _peek_action_id(self) -> int:
        """The id the next log line takes: above every id logged and every position row's
        journal watermark. Lines written behind can be lost in a crash while a row saved
        synced already names them (`_watermark`); an id handed out again after the restart
        would be taken on load for a move the row holds already, and not replayed."""
        row_id = self._next_action_id
        if row_id is None:
            last = self.db.execute(
                "SELECT MAX(COALESCE((SELECT MAX(id) FROM actions), 0), "
                "COALESCE((SELECT MAX(level_action_id) FROM positions), 0))").fetchone()[0]
            row_id = self._next_action_id = int(last or 0) + 1
        return row_id

    def _watermark(self) -> int:
        """The journal watermark of a position state saved now: the id of the last action
        logged so far, for any position. The engine applies a rule's level move to the
        position right after logging it, with nothing in between, so a state saved now
        holds every move logged before; the moves of its position logged after (a higher
        id) are not in its row yet, and `_positions` replays them."""
        return self._peek_action_id() - 1

    def _take_action_id(self) -> int:
        row_id = self._peek_action_id()
        self._next_action_id = row_id + 1
        return row_id

    def _upsert(self, table: str, row: Row, pk: str) -> None:
        cols = tuple(row)
        sql = _UPSERT_SQL.get((table, cols, pk))
        if sql is None:
            names = ", ".join(cols)
            updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c != pk)
            sql = _UPSERT_SQL[(table, cols, pk)] = (
                f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(cols))}) "
                f"ON CONFLICT({pk}) DO UPDATE SET {updates}")
        self.db.conn.execute(sql, tuple(row.values()))

    def _insert(self, table: str, row: Row) -> int | None:
        cols = tuple(row)
        sql = _INSERT_SQL.get((table, cols))
        if sql is None:
            sql = _INSERT_SQL[(table, cols)] = (
                f"INSERT INTO {table} ({', '.join(cols)}) "
                f"VALUES ({', '.join('?' * len(cols))})")
        return self.db.conn.execute(sql, tuple(row.values())).lastrowid

    def _validate(self, pos: Position) -> _Prep | None:
        """Check `pos` before it is queued or written (ValidationError naming the field;
        nothing changes). Against a state of the same id validated before (the one last
        written, else the one queued) only its new objects are checked (`position_changes`);
        against the one written, the column changes found are returned for the write. (The
        one written first, even with a newer state queued: the changes found are the
        write's, not found a second time when it is written — ~2,000 of a storm's 11,000
        level moves, session 27.)"""
        pid = pos.id
        if pid.__class__ is str:
            ref = written = self._written.get(pid)
            if ref is None:
                queued = self._behind_positions.get(pid)
                ref = None if queued is None else queued[0]
            if ref is not None:
                cols, vals = position_changes(ref, pos)
                if pos.tranches is not ref.tranches:
                    tranche_rows(pos)
                return (ref, cols, vals) if ref is written else None
        position_to_row(pos, 0.0)
        tranche_rows(pos)
        return None

    def _changes(self, prev: Position, pos: Position,
                 prep: _Prep | None) -> tuple[tuple[str, ...], list[Any]]:
        if prep is not None and prep[0] is prev:
            return prep[1], prep[2]
        return position_changes(prev, pos)

    def _remember(self, pos: Position) -> None:
        if len(self._written) >= 8192:
            self._written.clear()
        self._written[pos.id] = pos

    def _write_position(self, pos: Position, updated_at: float, prep: _Prep | None,
                        level: int) -> None:
        """Write `pos` (validated): the columns that changed since this connection last
        wrote it, or the whole row and its tranches."""
        prev = self._written.pop(pos.id, None)
        if prev is not None:
            cols, vals = self._changes(prev, pos, prep)
            cur = self.db.conn.execute(_update_sql(cols), (*vals, updated_at, level, pos.id))
            if cur.rowcount == 1:
                self._write_tranches(prev, pos)
                self._remember(pos)
                return
        self._write_whole(pos, updated_at, level)  # new to this connection, or row vanished

    def _write_positions(self, taken: dict[str, _Queued]) -> None:
        """Write queued positions: the level moves (the same few columns changed) as one
        UPDATE statement per set of changed columns."""
        groups: dict[tuple[str, ...], tuple[list[Position], list[tuple]]] = {}
        written = self._written
        for pid, (pos, updated_at, prep, level) in taken.items():
            prev = written.get(pid)
            if prev is None:
                self._write_whole(pos, updated_at, level)
                continue
            cols, vals = self._changes(prev, pos, prep)
            group = groups.get(cols)
            if group is None:
                group = groups[cols] = ([], [])
            group[0].append(pos)
            group[1].append((*vals, updated_at, level, pid))
            self._write_tranches(prev, pos)
        conn = self.db.conn
        for cols, (items, params) in groups.items():
            sql = _update_sql(cols)
            if conn.executemany(sql, params).rowcount != len(items):
                for pos, row in zip(items, params, strict=True):  # a row vanished: which
                    if conn.execute(sql, row).rowcount != 1:  # one? (equal re-writes)
                        self._write_whole(pos, row[-3], row[-2])
            for pos in items:
                self._remember(pos)

    def _write_whole(self, pos: Position, updated_at: float, level: int) -> None:
        row = position_to_row(pos, updated_at)
        row["level_action_id"] = level
        self._upsert("positions", row, "id")
        self._replace_tranches(pos, tranche_rows(pos))
        self._remember(pos)

    def _write_tranches(self, prev: Position, pos: Position) -> None:
        """The tranches of `pos`, unless those written (`prev`'s) store the same values."""
        if pos.tranches is prev.tranches:
            return  # a level move: the tranches on disk are these already
        trows = tranche_rows(pos)
        if not same_rows(tranche_rows(prev), trows):
            self._replace_tranches(pos, trows)

    def _replace_tranches(self, pos: Position, trows: list[Row]) -> None:
        conn = self.db.conn
        conn.execute("DELETE FROM tranches WHERE position_id = ?", (pos.id,))
        if trows:
            cols = tuple(trows[0])
            sql = _INSERT_SQL.get(("tranches", cols))
            if sql is None:
                sql = _INSERT_SQL[("tranches", cols)] = (
                    f"INSERT INTO tranches ({', '.join(cols)}) "
                    f"VALUES ({', '.join('?' * len(cols))})")
            conn.executemany(sql, [tuple(t.values()) for t in trows])

    # ------------------------------------------------------------------ helpers

    def _writable(self) -> None:
        if self._closed:
            raise StoreError("the database is closed")
        if self.readonly:
            raise StoreError("the database was opened read-only; nothing was written")

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        if self._closed:
            raise StoreError("the database is closed")
        cur = self.db.execute(sql, list(params))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def _tranches_for(self, ids: Sequence[str]) -> dict[str, list]:
        out: dict[str, list] = {i: [] for i in ids}
        for chunk_start in range(0, len(ids), 500):
            chunk = list(ids[chunk_start:chunk_start + 500])
            marks = ",".join("?" * len(chunk))
            for r in self._rows(f"SELECT * FROM tranches WHERE position_id IN ({marks}) "
                                "ORDER BY position_id, seq", chunk):
                out[r["position_id"]].append(tranche_from_row(r))
        return out

    def _positions(self, where: str, params: Sequence[Any], order: str,
                   limit: int | None = None) -> list[Position]:
        if self._behind_since is not None and not self.readonly:
            self.flush_behind()
        sql = f"SELECT * FROM positions WHERE {where} ORDER BY {order}"
        if limit is not None:
            sql += f" LIMIT {_check_limit(limit)}"
        rows = self._rows(sql, params)
        tranches = self._tranches_for([r["id"] for r in rows])
        return [self._replay_moves(r, position_from_row(r, tranches[r["id"]]))
                for r in rows]

    def _replay_moves(self, row: Row, pos: Position) -> Position:
        """`pos` as its row holds it, with the rules' level moves logged after the row was
        written (a higher id than its `level_action_id`) applied in order: the engine
        logs each move (behind, in the same windows as the rows) but rewrites the row only
        with its next save, so the journal holds the newer stop or target. Only while the
        position is open (a close is a synced save of the final state); rows of a schema
        before 3 (NULL) were rewritten at every move."""
        level = row.get("level_action_id")
        if level is None or pos.status is not PositionStatus.OPEN:
            return pos
        for r in self.db.conn.execute(_MOVES_AFTER, (pos.id, level)):
            kind, sl, tp, stop_kind, flags = r
            moved = rule_level_move(pos, ActionType(kind), sl, tp,
                                    None if stop_kind is None else StopKind(stop_kind),
                                    frozenset(json.loads(flags)))
            if moved is not None:
                pos = moved
        return pos

    # ------------------------------------------------------------------ positions

    @_guard
    def save_position(self, pos: Position) -> None:
        """Insert or replace the full state of `pos`, its tranches included."""
        self.save_positions((pos,))

    @_guard
    def save_positions(self, positions: Iterable[Position]) -> int:
        """`save_position` of several positions in one transaction: one synced commit for
        all of them (an engine's shutdown saves its whole book: one fsync, not one per
        position), all or none. Every position is validated before anything is written
        (ValidationError: nothing is); a write that fails midway (StoreError) rolls the
        whole batch back, so the file keeps exactly what it held before the call, and the
        states waiting behind for those positions wait there again. Returns how many were
        saved."""
        self._writable()
        items = [(pos, self._validate(pos)) for pos in positions]
        if not items:
            return 0
        updated_at, level = time.time(), self._watermark()
        # a state waiting behind is superseded by the newer one saved here ... unless the
        # write rolls back: then it waits again
        taken: dict[str, _Queued] = {}
        for pos, _ in items:
            queued = self._behind_positions.pop(pos.id, None)
            if queued is not None:
                taken.setdefault(pos.id, queued)
        self._carried_positions.update(taken)
        try:
            with self._tx():
                for pos, prep in items:
                    self._write_position(pos, updated_at, prep, level)
        except BaseException:
            for pid, queued in taken.items():
                self._behind_positions.setdefault(pid, queued)
            if taken and self._behind_since is None:
                self._behind_since = time.monotonic()
            raise
        return len(items)

    @_guard
    def load_open_positions(self) -> list[Position]:
        """Every open position, oldest first, exactly as saved."""
        return self._positions("status = ?", [PositionStatus.OPEN.value], "opened_at, id")

    @_guard
    def load_position(self, position_id: str) -> Position | None:
        found = self._positions("id = ?", [position_id], "id")
        return found[0] if found else None

    @_guard
    def closed_positions(self, limit: int | None = None) -> list[Position]:
        """Closed positions, most recently closed first."""
        return self._positions("status = ?", [PositionStatus.CLOSED.value],
                               "closed_at DESC, id", limit)

    # ------------------------------------------------------------------ orders / journal

    @_guard
    def journal_order(self, req: OrderRequest, ts: float, *, sync: bool = True) -> Order:
        """Record an intended order as PENDING before it is sent; returns that Order.

        The commit is fsynced before this returns. With `sync=False` it is only written (a
        killed process still keeps it) and the caller must call `sync_wal()` — off the event
        loop, in a worker thread — and wait for it before sending the order.

        Journaling the same request again while it is still PENDING (same client id and
        content, e.g. a retried step after a crash) returns the stored order unchanged — its
        fate is unknown, so look it up on the exchange before sending. A client id whose order
        was already acknowledged, or that belongs to a different order, is refused with
        ValidationError (client ids are unique; the exchange deduplicates on them).
        The order is linked to `req.position_id` with `req.role` when it has one.
        """
        self._writable()
        order = Order.from_request(req, ts)
        row = order_to_row(order)
        with (self._durable() if sync else self.relaxed()), self._atomic(req.position_id):
            existing = self._order(req.client_id)
            if existing is not None:
                if existing.status is not OrderStatus.PENDING:
                    raise ValidationError(
                        f"order {req.client_id} was already sent (status "
                        f"{existing.status.value}); it is not journaled again",
                        field="client_id")
                if _same_request(existing, order):
                    return existing
                raise ValidationError(
                    f"client order id {req.client_id} is already used by another order",
                    field="client_id")
            self._insert("orders", row)
            if order.position_id:
                self._link(order.position_id, order.client_id, order.role.value, ts)
        return order

    @_guard
    def save_order(self, order: Order, *, relink: bool = False,
                   journaled: Order | None = None) -> None:
        """Insert or update an order by client id (status, exchange id, fills, error...).

        It is linked to its position (if any) with its role; an existing link keeps its role
        unless `relink` (an entry bound to the position it opened, an adopted order: the
        order's role is the one it plays now). `relink` is `link_order` in the same write,
        without its lookup of the order just saved (a SELECT and a row parsed, an INSERT
        more: ~0.1 ms of an open's booking step).

        `journaled`: the order as this store last wrote it (the ledger's copy). Only the
        columns that differ are written: a venue's report changes the status, the fill and
        the exchange id, and the upsert of every column rewrote the entries of all three
        of the table's indexes (~70 µs of a stop fill's booking, between the fill and the
        close acknowledged). A row that is not there is written whole."""
        self._writable()
        row = order_to_row(order)
        with self._atomic(order.position_id):
            if journaled is None or not self._update_order(row, journaled):
                self._upsert("orders", row, "client_id")
            if order.position_id:
                self._link(order.position_id, order.client_id, order.role.value,
                           order.updated_at, update_role=relink)

    def _update_order(self, row: Row, journaled: Order) -> bool:
        """Write the columns of `row` that differ from `journaled`'s; False when nothing
        was updated (no change to write, or no such row): the caller writes it whole."""
        if journaled.client_id != row["client_id"]:
            return False
        old = order_to_row(journaled)
        cols = tuple(c for c, v in row.items() if v != old[c])
        if not cols:
            return False
        sql = _ORDER_UPDATE_SQL.get(cols)
        if sql is None:
            sets = ", ".join(f"{c} = ?" for c in cols)
            sql = _ORDER_UPDATE_SQL[cols] = f"UPDATE orders SET {sets} WHERE client_id = ?"
        cur = self.db.conn.execute(sql, (*(row[c] for c in cols), row["client_id"]))
        return cur.rowcount == 1

    @_guard
    def pending_orders(self) -> list[Order]:
        """Journaled orders never acknowledged by the exchange (crash recovery), oldest first."""
        rows = self._rows("SELECT * FROM orders WHERE status = ? ORDER BY created_at, client_id",
                          [OrderStatus.PENDING.value])
        return [order_from_row(r) for r in rows]

    @_guard
    def open_orders(self, position_id: str | None = None) -> list[Order]:
        """Orders PENDING or OPEN, optionally only those of one position (own or linked)."""
        sql = "SELECT * FROM orders WHERE status IN (?, ?)"
        params: list[Any] = list(_LIVE_STATUSES)
        if position_id is not None:
            sql += (" AND (position_id = ? OR client_id IN "
                    "(SELECT client_id FROM order_links WHERE position_id = ?))")
            params += [position_id, position_id]
        rows = self._rows(sql + " ORDER BY created_at, client_id", params)
        return [order_from_row(r) for r in rows]

    @_guard
    def order(self, client_id: str) -> Order | None:
        return self._order(client_id)

    def _order(self, client_id: str) -> Order | None:
        rows = self._rows("SELECT * FROM orders WHERE client_id = ?", [client_id])
        return order_from_row(rows[0]) if rows else None

    @_guard
    def link_order(self, position_id: str, client_id: str, role: OrderRole) -> None:
        """Tie a journaled order to a position with the role it plays (updates the role)."""
        self._writable()
        if not isinstance(position_id, str) or not position_id:
            raise ValidationError("position id must be non-empty text", field="position_id")
        try:
            role_value = OrderRole(role).value
        except ValueError as e:
            raise ValidationError(f"unknown order role {role!r}", field="role") from e
        self._synced()
        with self.db.atomic():
            if self._order(client_id) is None:
                raise ValidationError(f"order {client_id} is not in the journal; journal it "
                                      "before linking it", field="client_id")
            self._link(position_id, client_id, role_value, time.time())

    def _link(self, position_id: str, client_id: str, role: str, ts: float,
              *, update_role: bool = True) -> None:
        action = "UPDATE SET role = excluded.role" if update_role else "NOTHING"
        self.db.execute(
            "INSERT INTO order_links (position_id, client_id, role, created_at) "
            f"VALUES (?, ?, ?, ?) ON CONFLICT(position_id, client_id) DO {action}",
            [position_id, client_id, role, ts])

    @_guard
    def linked_orders(self, position_id: str) -> list[Order]:
        """Every order linked to the position (any status), oldest first."""
        rows = self._rows(
            "SELECT o.* FROM orders o JOIN order_links l ON l.client_id = o.client_id "
            "WHERE l.position_id = ? ORDER BY o.created_at, o.client_id", [position_id])
        return [order_from_row(r) for r in rows]

    # ------------------------------------------------------------------ fills

    @_guard
    def record_fill(self, fill: Fill, position_id: str | None) -> bool:
        """Store a fill once. Returns False (and changes nothing) for a fill id already stored.

        Exception: a fill first stored without a position (e.g. seen before the position
        existed) gets its position id filled in; it still returns False.
        """
        self._writable()
        row = fill_to_row(fill, position_id)
        cols = list(row)
        with self._atomic(position_id):
            cur = self.db.execute(
                f"INSERT INTO fills ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
                "ON CONFLICT(id) DO NOTHING", [row[c] for c in cols])
            if cur.rowcount == 1:
                return True
            if position_id is not None:
                self.db.execute("UPDATE fills SET position_id = ? "
                                "WHERE id = ? AND position_id IS NULL", [position_id, fill.id])
        log.debug("fill %s already recorded; ignored", fill.id)
        return False

    @_guard
    def fill_fee_differs(self, fill: Fill) -> float | None:
        """The fee stored for the fill record `fill.id` when it is the same fill (its
        quantity and price) told with another fee (the venue's, after an estimate); None:
        no such record, another fill under that id, or the same fee."""
        row = self.db.conn.execute("SELECT qty, price, fee FROM fills WHERE id = ?",
                                   (fill.id,)).fetchone()
        if row is None:
            return None
        qty, price, fee = float(row[0]), float(row[1]), float(row[2])
        if abs(qty - fill.qty) > 1e-9 * max(1.0, qty) or \
                abs(price - fill.price) > 1e-9 * max(1.0, price) or \
                abs(fee - fill.fee) <= 1e-12 * max(1.0, abs(fee)):
            return None
        return fee

    @_guard
    def set_fill_fee(self, fill_id: str, fee: float) -> None:
        """The fee of a stored fill record (the venue's, after an estimate); inside the
        caller's transaction when one is open (the report's)."""
        self._writable()
        with self._tx():
            self.db.conn.execute("UPDATE fills SET fee = ? WHERE id = ?",
                                 (_num(fee, "fee"), fill_id))

    @_guard
    def absorb_synthesized_fills(self, client_id: str, qty: float
                                 ) -> tuple[float, float, list[str]]:
        """The venue's own fill records of `qty` of the order `client_id` arrived after a
        lookup had booked that quantity with a synthesized record (`<client id>#<filled>`,
        `OrderLedger.apply` without the venue's records): remove that much of the
        synthesized records, oldest first (a record partly covered keeps the rest, its fee in
        proportion), so the order's records are not counted twice. Returns the quantity
        removed, the fee it carried (estimated) and the ids of the records touched. Writes
        inside the caller's transaction when one is open (the report's)."""
        self._writable()
        prefix = client_id + "#"
        rows = self._rows("SELECT id, qty, price, fee FROM fills WHERE order_client_id = ? "
                          "AND substr(id, 1, ?) = ? ORDER BY ts, id",
                          [client_id, len(prefix), prefix])
        removed, fee, _value, ids = self._trim_fills(rows, _num(qty, "qty"))
        return removed, fee, ids

    @_guard
    def absorb_fills(self, client_id: str, filled: float, keep: Collection[str]
                     ) -> tuple[float, float, float, list[str]]:
        """The order `client_id`'s fill records brought down to `filled` (what the ledger
        booked of it) when they add up to more: a report described again quantity already
        recorded (a record of all the order filled, told after a restart, beside the records
        of its trades or a lookup's record of our own). The records in `keep` (that report's)
        stay; of the others the excess is removed — our own synthesized records
        (`<client id>#…`) first, those whose part of the order's execution (`_fill_span`:
        the filled their ids name) the kept records describe first among them, then the
        oldest — a record partly covered keeping the rest, its fee in proportion. Returns
        the quantity removed, the fee and the value (quantity × price) it carried, and the
        ids of the records it touched. One indexed sum when nothing is in excess. Writes
        inside the caller's transaction when one is open."""
        self._writable()
        left = self.fill_qty(client_id) - _num(filled, "filled")
        if left <= 1e-9 * max(1.0, abs(filled)):
            return 0.0, 0.0, 0.0, []
        prefix = client_id + "#"
        rows = self._rows("SELECT id, qty, price, fee FROM fills WHERE order_client_id = ? "
                          "ORDER BY ts, id", [client_id])
        said = [span for r in rows if r["id"] in keep
                if (span := _fill_span(str(r["id"]), float(r["qty"]))) is not None]

        def overlap(r: Row) -> float:  # how much of it the kept records describe
            span = _fill_span(str(r["id"]), float(r["qty"]))
            return 0.0 if span is None else sum(
                max(0.0, min(span[1], b) - max(span[0], a)) for a, b in said)

        # ours first, those the kept records describe first among them (by the order's
        # filled their ids name: a lookup's record of the same trades, not an earlier one)
        others = sorted((r for r in rows if r["id"] not in keep),
                        key=lambda r: (not str(r["id"]).startswith(prefix), -overlap(r)))
        return self._trim_fills(others, left)

    def _trim_fills(self, rows: list[Row], left: float
                    ) -> tuple[float, float, float, list[str]]:
        """Remove `left` of quantity from the fill records `rows` (id, qty, price, fee), in
        their order: a record covered whole is deleted, one covered in part keeps the rest,
        its fee in proportion. Returns the quantity removed, the fee and the value (quantity
        × price) it carried, and the ids of the records touched. In the caller's transaction
        when one is open."""
        removed = fee = value = 0.0
        touched: list[str] = []
        with self._tx():
            for r in rows:
                if left <= 1e-12:
                    break
                q, f = float(r["qty"]), float(r["fee"])
                if q <= left + 1e-12:
                    self.db.conn.execute("DELETE FROM fills WHERE id = ?", (r["id"],))
                    take = q
                else:
                    take, rest = left, q - left
                    self.db.conn.execute("UPDATE fills SET qty = ?, fee = ? WHERE id = ?",
                                         (rest, f * rest / q, r["id"]))
                left -= take
                removed += take
                fee += f * take / q if q > 0 else 0.0
                value += take * float(r["price"])
                touched.append(str(r["id"]))
        return removed, fee, value, touched

    @_guard
    def fill_qty(self, client_id: str) -> float:
        """The quantity the order `client_id`'s fill records add up to (one indexed sum)."""
        return float(self.db.conn.execute(
            "SELECT COALESCE(SUM(qty), 0) FROM fills WHERE order_client_id = ?",
            (client_id,)).fetchone()[0])

    @_guard
    def claim_fills(self, client_id: str, position_id: str) -> int:
        """The order's fill records stored before it had a position take its position id:
        a market entry's fill comes with the create answer, before the position it opens
        exists (`Store.fills(position_id)` — the history's per-position trades — would miss
        it). Returns how many. Inside the caller's transaction when one is open."""
        self._writable()
        with self._tx():
            cur = self.db.conn.execute(
                "UPDATE fills SET position_id = ? WHERE order_client_id = ? "
                "AND position_id IS NULL", (position_id, client_id))
        return cur.rowcount

    @_guard
    def fill(self, fill_id: str) -> Fill | None:
        """The fill record stored under `fill_id`, if any."""
        rows = self._rows("SELECT * FROM fills WHERE id = ?", [fill_id])
        return fill_from_row(rows[0]) if rows else None

    @_guard
    def fills(self, position_id: str | None = None) -> list[Fill]:
        if position_id is None:
            rows = self._rows("SELECT * FROM fills ORDER BY ts, id")
        else:
            rows = self._rows("SELECT * FROM fills WHERE position_id = ? ORDER BY ts, id",
                              [position_id])
        return [fill_from_row(r) for r in rows]

    # ------------------------------------------------------------------ actions

    @_guard
    def record_action(self, action: Action, *, symbol: str, ok: bool = True,
                      detail: str = "") -> int:
        """Log a decision (rule, manual command, reconciliation); returns its row id.

        `ok=False` with a `detail` records a decision that could not be carried out.
        Non-finite `inputs` are stored as null (see serialize).
        """
        self._writable()
        row = self._action_row(action, symbol, ok, detail)
        with self._atomic(action.position_id):
            rowid = self.db.conn.execute(_ACTION_INSERT, row).lastrowid
        if rowid is None:  # pragma: no cover - sqlite always reports the rowid of an insert
            raise StoreError("the action was not recorded")
        return int(rowid)

    @_guard
    def actions(self, position_id: str | None = None, limit: int = 500) -> list[dict]:
        """Logged actions, newest first, as JSON-able dicts (`serialize.action_from_record`
        rebuilds the Action)."""
        n = _check_limit(limit)
        if self._behind_since is not None and not self.readonly:
            self.flush_behind()
        if position_id is None:
            rows = self._rows(f"SELECT * FROM actions ORDER BY id DESC LIMIT {n}")
        else:
            rows = self._rows(f"SELECT * FROM actions WHERE position_id = ? "
                              f"ORDER BY id DESC LIMIT {n}", [position_id])
        return [action_record(r) for r in rows]

    # ------------------------------------------------------------------ equity

    @_guard
    def record_equity(self, ts: float, equity: float, balance: float) -> None:
        """One point of the equity curve (a second point at the same ts replaces the first).

        Market data the venue can tell again, not a decision: committed without an fsync of
        its own (`relaxed`; a killed process still keeps it), so it never stalls the loop."""
        self._writable()
        row = {"ts": _num(ts, "ts"), "equity": _num(equity, "equity"),
               "balance": _num(balance, "balance")}
        with self.relaxed(), self._tx():
            self._upsert("equity", row, "ts")

    @_guard
    def equity_curve(self, since: float | None = None) -> list[tuple[float, float]]:
        if since is None:
            rows = self._rows("SELECT ts, equity FROM equity ORDER BY ts")
        else:
            rows = self._rows("SELECT ts, equity FROM equity WHERE ts >= ? ORDER BY ts",
                              [_num(since, "since")])
        return [(float(r["ts"]), float(r["equity"])) for r in rows]

    # ------------------------------------------------------------------ settings

    @_guard
    def get_setting(self, key: str, default: object = None) -> object:
        rows = self._rows("SELECT value FROM settings WHERE key = ?", [key])
        return json.loads(rows[0]["value"]) if rows else default

    @_guard
    def set_setting(self, key: str, value: object) -> None:
        """Store any JSON value (tuples come back as lists; NaN/inf are refused)."""
        self._writable()
        if not isinstance(key, str) or not key:
            raise ValidationError("a setting needs a non-empty text key", field="key")
        text = dumps_json(value, f"setting {key!r}")
        self._synced()
        with self.db.atomic():
            self.db["settings"].upsert({"key": key, "value": text}, pk="key")

    # ------------------------------------------------------------------ history / reports

    @_guard
    def trade_metrics(self) -> TradeMetrics:
        """Closed-trade metrics for the history tab (definitions in pmgui.store.metrics)."""
        closed = self.closed_positions()
        reasons: dict[str, set[str]] = {}
        for r in self._rows(
                "SELECT DISTINCT a.position_id, a.reason FROM actions a "
                "JOIN positions p ON p.id = a.position_id "
                "WHERE a.ok = 1 AND p.status = ?", [PositionStatus.CLOSED.value]):
            reasons.setdefault(r["position_id"], set()).add(r["reason"])
        return compute_metrics(closed, reasons)

    @_guard
    def positions_report(self) -> list[dict]:
        """Open positions with their live protective orders, for `pmgui positions --json`."""
        out: list[dict] = []
        for pos in self.load_open_positions():
            rows = self._rows(
                "SELECT o.*, l.role AS link_role FROM order_links l "
                "JOIN orders o ON o.client_id = l.client_id "
                "WHERE l.position_id = ? AND o.status IN (?, ?) AND l.role IN (?, ?) "
                "ORDER BY o.created_at, o.client_id",
                [pos.id, *_LIVE_STATUSES, *_PROTECTIVE_ROLES])
            out.append({
                "id": pos.id, "symbol": pos.symbol, "side": pos.side.value, "qty": pos.qty,
                "entry": pos.entry, "leverage": pos.leverage, "sl": pos.sl, "tp": pos.tp,
                "trailing": pos.trailing, "liquidation": pos.liquidation,
                "preset": pos.preset, "automation": pos.automation,
                "opened_at": pos.opened_at, "exchange": pos.exchange,
                "orders": [{
                    "client_id": r["client_id"], "role": r["link_role"], "type": r["type"],
                    "side": r["side"], "amount": r["amount"],
                    "trigger_price": r["trigger_price"], "status": r["status"],
                    "exchange_id": r["exchange_id"],
                } for r in rows],
            })
        return out

    @_guard
    def restore(self) -> RestoredState:
        """The engine's start-up state: open positions, live orders, the pending journal."""
        return RestoredState(
            positions=tuple(self.load_open_positions()),
            open_orders=tuple(self.open_orders()),
            pending_orders=tuple(self.pending_orders()),
        )


_LEVELS = {"OFF": 0, "NORMAL": 1, "FULL": 2, "EXTRA": 3}


class CommitAudit:
    """What `Store.audit_commits` saw: `commits[(thread ident, synced)]` = how many."""

    def __init__(self, level: int) -> None:
        self.level = level  # the connection's synchronous level, as last set
        self.commits: dict[tuple[int, bool], int] = {}

    def statement(self, sql: str) -> None:
        head = sql.lstrip()[:18].upper()
        if head.startswith("PRAGMA SYNCHRONOUS"):
            value = sql.rsplit("=", 1)[-1].strip().strip(";").upper() if "=" in sql else ""
            if value:
                self.level = _LEVELS[value] if value in _LEVELS else int(value)
        elif head.startswith("COMMIT") or head.startswith("END"):
            key = (threading.get_ident(), self.level >= 2)
            self.commits[key] = self.commits.get(key, 0) + 1

    def synced(self, thread: int | None = None) -> int:
        """Fsynced commits (on `thread` only, when given)."""
        return sum(n for (t, synced), n in self.commits.items()
                   if synced and (thread is None or t == thread))

    def total(self, thread: int | None = None) -> int:
        return sum(n for (t, _), n in self.commits.items() if thread is None or t == thread)


class _Checkpointer(threading.Thread):
    """PASSIVE WAL checkpoints on a connection of its own (`Store.checkpoint_in_background`).

    How many pages wait is read from the WAL index (the -shm file's documented header:
    mxFrame at byte 16, the checkpoint's nBackfill at byte 96, native byte order); it only
    decides *when* to checkpoint, so a torn read costs at most one checkpoint too many or
    too few (the inline backstop remains)."""

    def __init__(self, conn: sqlite3.Connection, path: Path, pages: int,
                 interval: float) -> None:
        super().__init__(name="pmgui-checkpoint", daemon=True)
        self.conn, self.path, self.pages, self.interval = conn, path, pages, interval
        self._stop_event = threading.Event()
        self.checkpoints = 0
        self.restart_pages = max(pages, RESTART_PAGES)

    def frames(self, shm: int) -> tuple[int, int]:
        """(frames in the WAL since it last started over, frames of them not yet copied)."""
        head = os.pread(shm, 100, 0)
        if len(head) < 100:
            return 0, 0
        mx_frame = struct.unpack_from("=I", head, 16)[0]
        backfilled = struct.unpack_from("=I", head, 96)[0]
        return mx_frame, max(0, mx_frame - backfilled)

    def waiting(self, shm: int) -> int:
        return self.frames(shm)[1]

    def run_pass(self, shm: int) -> None:
        """A PASSIVE checkpoint; once the WAL holds `RESTART_PAGES` frames, another at once
        while frames still wait, up to `FOLLOW_UPS` more. The WAL starts over (the writer
        writes from its beginning again) only when the writer opens a transaction after a
        checkpoint that left nothing in it; under a steady writer (a storm: a commit every
        few ms) a pass, which copies ~1000 pages and fsyncs the database, almost never
        does, so the WAL grew to the inline backstop (`BACKSTOP_PAGES`, ~80 MB), whose
        checkpoint — a copy of the pages and two fsyncs — then ran on the engine's loop.
        The follow-ups copy only what the writer appended meanwhile (a few commits): one of
        them usually finishes between two commits. Not before `RESTART_PAGES`: each start
        over costs the writer an fsync of the WAL's new header (SQLite's, on the engine's
        loop), so the WAL starts over every ~16 MB, not every 4."""
        for follow_up in range(1 + FOLLOW_UPS):
            if follow_up:
                size, waiting = self.frames(shm)
                if self._stop_event.is_set() or waiting == 0 or size < self.restart_pages:
                    return
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.checkpoints += 1

    def run(self) -> None:
        conn = self.conn
        shm: int | None = None
        failing = False  # told once per streak: the WAL grows towards the inline backstop
        try:
            while not self._stop_event.wait(self.interval):
                try:
                    if shm is None:
                        shm = os.open(str(self.path) + "-shm", os.O_RDONLY)
                    if self.waiting(shm) < self.pages:
                        continue
                    self.run_pass(shm)
                    failing = False
                except (OSError, sqlite3.Error, struct.error) as exc:
                    if not failing:
                        log.warning("background WAL checkpoint failed (%s); retrying", exc)
                    failing = True
        finally:
            if shm is not None:
                with contextlib.suppress(OSError):
                    os.close(shm)
            conn.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10.0)


def _same_request(a: Order, b: Order) -> bool:
    keys = ("symbol", "side", "type", "amount", "price", "trigger_price", "reduce_only",
            "position_id", "role", "reason")
    return all(getattr(a, k) == getattr(b, k) for k in keys)


def _num(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value):
        raise ValidationError(f"{field} must be a finite number, got {value!r}", field=field)
    return float(value)


def _check_limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValidationError(f"limit must be a non-negative whole number, got {limit!r}",
                              field="limit")
    return limit
