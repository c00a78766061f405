"""Store.open: creation, WAL, migrations, and refusing (without touching) files it cannot use."""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
from pathlib import Path

import pytest
from sqlite_utils import Database

from pmgui.domain.enums import Side
from pmgui.domain.errors import StoreError
from pmgui.domain.models import Position
from pmgui.store import Store
from pmgui.store import db as store_db
from pmgui.store import migrations as mig


def pos(pid: str = "p1") -> Position:
    return Position(id=pid, symbol="BTC/USDT:USDT", side=Side.LONG, qty=0.5, entry=40000.0,
                    leverage=10, opened_at=1.0, initial_qty=0.5, sl=39000.0)


def digest(path: Path) -> tuple[str, int]:
    data = path.read_bytes()
    return hashlib.sha256(data).hexdigest(), len(data)


def fresh_db(path: Path) -> None:
    """A closed, checkpointed pmgui database holding one position."""
    with Store.open(path) as s:
        s.save_position(pos())


def set_meta(path: Path, key: str, value: str) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))
    conn.close()


# ---------------------------------------------------------------- creation, WAL

def test_creates_folders_wal_foreign_keys_and_current_schema(tmp_path):
    path = tmp_path / "a" / "b" / "pmgui.db"
    with Store.open(path) as s:
        assert path.exists()
        assert s.db.journal_mode == "wal"
        assert s.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert s.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert s.schema_version == Store.SCHEMA_VERSION == mig.SCHEMA_VERSION
        names = set(s.db.table_names())
        assert {"meta", "positions", "tranches", "orders", "order_links", "fills", "actions",
                "equity", "settings"} <= names
        assert s.db["orders"].pks == ["client_id"]
        assert s.db["fills"].pks == ["id"]
        app = s.db.execute("SELECT value FROM meta WHERE key='app'").fetchone()[0]
        assert app == "pmgui"
    # WAL is a property of the file: a new plain connection sees it too
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_reopen_keeps_data_and_does_not_migrate_again(db_path):
    fresh_db(db_path)
    with Store.open(db_path) as s:
        assert s.load_position("p1") == pos()
        created = s.db.execute("SELECT value FROM meta WHERE key='created_at'").fetchone()
        assert s.db.execute("SELECT count(*) FROM meta").fetchone()[0] == 3
    with Store.open(db_path) as s:
        assert s.db.execute("SELECT value FROM meta WHERE key='created_at'").fetchone() == created


def test_empty_file_is_version_zero_and_is_migrated(db_path):
    db_path.write_bytes(b"")
    with Store.open(db_path) as s:
        assert s.schema_version == Store.SCHEMA_VERSION
        s.save_position(pos())
        assert s.load_position("p1") == pos()


def test_foreign_keys_enforced(db_path):
    with Store.open(db_path) as s, pytest.raises(sqlite3.IntegrityError):
        s.db.execute("INSERT INTO tranches (position_id, id, seq, qty, entry, opened_at, "
                     "source) VALUES ('nope', 't', 0, 1, 1, 1, 'entry')")


# ---------------------------------------------------------------- refusing bad files

@pytest.mark.parametrize("readonly", [False, True])
def test_random_bytes_refused_and_unchanged(db_path, readonly):
    db_path.write_bytes(random.Random(7).randbytes(8192))
    before = digest(db_path)
    with pytest.raises(StoreError, match="not a SQLite database or is corrupt"):
        Store.open(db_path, readonly=readonly)
    assert digest(db_path) == before
    assert not Path(f"{db_path}-wal").exists()


def test_tiny_garbage_refused(db_path):
    db_path.write_bytes(b"hello")
    with pytest.raises(StoreError, match="not a SQLite database"):
        Store.open(db_path)
    assert db_path.read_bytes() == b"hello"


@pytest.mark.parametrize("readonly", [False, True])
def test_corrupt_pages_with_valid_header_refused_and_unchanged(db_path, readonly):
    with Store.open(db_path) as s:  # enough rows to span many pages
        with s.transaction():
            for i in range(300):
                s.save_position(pos(f"p{i}"))
    data = bytearray(db_path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    assert len(data) > 4 * page
    rnd = random.Random(3)
    for off in range(page, len(data)):  # keep page 1 (header + schema), scramble the rest
        data[off] = rnd.randrange(256)
    db_path.write_bytes(bytes(data))
    before = digest(db_path)
    with pytest.raises(StoreError, match="corrupt|cannot be read"):
        Store.open(db_path, readonly=readonly)
    assert digest(db_path) == before


@pytest.mark.parametrize("readonly", [False, True])
def test_newer_schema_refused_and_unchanged(db_path, readonly):
    fresh_db(db_path)
    set_meta(db_path, "schema_version", "7")
    before = digest(db_path)
    with pytest.raises(StoreError) as ei:
        Store.open(db_path, readonly=readonly)
    assert str(ei.value) == (
        f"database was written by a newer pmgui (schema 7, this version supports "
        f"{Store.SCHEMA_VERSION}); it was not modified")
    assert digest(db_path) == before


def test_unreadable_schema_version_refused(db_path):
    fresh_db(db_path)
    set_meta(db_path, "schema_version", "seven")
    before = digest(db_path)
    with pytest.raises(StoreError, match="unreadable schema version"):
        Store.open(db_path)
    assert digest(db_path) == before


def test_other_programs_database_refused_and_unchanged(db_path):
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO photos (name) VALUES ('cat')")
    conn.close()
    before = digest(db_path)
    with pytest.raises(StoreError, match="not a pmgui database"):
        Store.open(db_path)
    assert digest(db_path) == before


def test_unwritable_path_refused(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create the folder"):
        Store.open(blocker / "sub" / "pmgui.db")
    assert blocker.read_text() == "x"
    with pytest.raises(StoreError, match="is a directory"):
        Store.open(tmp_path)


def test_second_writer_detected(db_path, monkeypatch):
    fresh_db(db_path)
    monkeypatch.setattr(store_db, "BUSY_TIMEOUT_MS", 50)
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with pytest.raises(StoreError, match="cannot write the database.*locked"):
            Store.open(db_path)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with Store.open(db_path) as s:
        assert s.load_position("p1") == pos()


# ---------------------------------------------------------------- read-only

def test_readonly_never_writes(db_path):
    fresh_db(db_path)
    before = digest(db_path)
    mtime = db_path.stat().st_mtime_ns
    with Store.open(db_path, readonly=True) as s:
        assert s.readonly
        assert s.load_open_positions() == [pos()]
        assert s.positions_report()[0]["id"] == "p1"
        assert s.trade_metrics().count == 0
        with pytest.raises(StoreError, match="read-only"):
            s.save_position(pos("p2"))
        with pytest.raises(StoreError, match="read-only"):
            s.set_setting("k", 1)
        with pytest.raises(StoreError, match="read-only"), s.transaction():
            pass
        # even bypassing the Store, SQLite itself refuses (mode=ro)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            s.db.execute("DELETE FROM positions")
    assert digest(db_path) == before
    assert db_path.stat().st_mtime_ns == mtime


def test_readonly_missing_file_is_not_created(tmp_path):
    path = tmp_path / "none.db"
    with pytest.raises(StoreError, match="no pmgui database"):
        Store.open(path, readonly=True)
    assert not path.exists()


def test_readonly_refuses_old_schema_without_migrating(db_path):
    db_path.write_bytes(b"")
    with pytest.raises(StoreError, match="needs an upgrade"):
        Store.open(db_path, readonly=True)
    assert db_path.read_bytes() == b""


def test_readonly_reader_sees_writer_commits(db_path):
    with Store.open(db_path) as writer:
        writer.save_position(pos("a"))
        with Store.open(db_path, readonly=True) as reader:
            assert [p.id for p in reader.load_open_positions()] == ["a"]
            writer.save_position(pos("b"))
            assert [p.id for p in reader.load_open_positions()] == ["a", "b"]


# ---------------------------------------------------------------- migration mechanism

def _v1_to_v2(db: Database) -> None:
    """A synthetic next version: a new column with a default, and a new table."""
    db["positions"].add_column("note", str, not_null_default="")
    db["alerts"].create({"id": int, "text": str}, pk="id")


def _broken_step(db: Database) -> None:
    db["half_done"].create({"id": int}, pk="id")
    raise RuntimeError("disk on fire")


def test_v0_migrates_step_by_step_to_a_later_version(db_path):
    n = mig.SCHEMA_VERSION  # the synthetic step below is version n + 1
    raw = Database(sqlite3.connect(db_path))
    assert mig.read_version(raw) == 0
    assert mig.migrate(raw, [*mig.MIGRATIONS]) == (0, n)
    raw.execute("INSERT INTO meta (key, value) VALUES ('probe', 'kept')")
    assert mig.migrate(raw, [*mig.MIGRATIONS, _v1_to_v2]) == (n, n + 1)
    assert mig.read_version(raw) == n + 1
    assert "note" in raw["positions"].columns_dict and "alerts" in raw.table_names()
    assert raw.execute("SELECT value FROM meta WHERE key='probe'").fetchone()[0] == "kept"
    assert mig.migrate(raw, [*mig.MIGRATIONS, _v1_to_v2]) == (n + 1, n + 1)  # nothing to do
    raw.close()
    # this pmgui only knows schema n: the migrated file is now "newer" and left alone
    before = digest(db_path)
    with pytest.raises(StoreError, match=rf"newer pmgui \(schema {n + 1}"):
        Store.open(db_path)
    assert digest(db_path) == before


def _old_file(db_path: Path, version: int, **columns) -> Database:
    """A file left by the pmgui of schema `version`, holding one open position 'old' with
    its required columns (and `columns`)."""
    raw = Database(sqlite3.connect(db_path))
    mig.migrate(raw, list(mig.MIGRATIONS[:version]))
    raw["positions"].insert({
        "id": "old", "symbol": "BTC/USDT:USDT", "side": "long", "status": "open", "qty": 0.5,
        "entry": 40000.0, "leverage": 5.0, "opened_at": 1.0, "initial_qty": 0.5,
        "sl_kind": "initial", "fee_rate": 0.0005, "contract_size": 1.0, "preset": "manual",
        "overrides": "{}", "automation": 1, "peak_roi": 0.0, "flags": "[]",
        "realized_pnl": 0.0, "fees_paid": 0.0, "exchange": "paper", "updated_at": 1.0,
        **columns})
    return raw


def test_schema_1_database_gains_the_funding_column_and_keeps_its_positions(db_path):
    raw = _old_file(db_path, 1)  # a file written before per-position funding
    raw.conn.commit()
    raw.close()
    with Store.open(db_path) as s:
        assert s.schema_version == mig.SCHEMA_VERSION
        (pos,) = s.load_open_positions()
        assert pos.id == "old" and pos.qty == 0.5 and pos.funding is None
        s.save_position(pos.evolve(funding=-1.5))
        assert s.load_position("old").funding == -1.5


def test_schema_2_database_gains_the_journal_watermark_and_replays_nothing(db_path):
    """A file of schema 2 (every rule move rewrote the row): its rows get a NULL watermark,
    so the moves already in the log are not applied again; a row saved after the upgrade
    carries one."""
    raw = _old_file(db_path, 2, sl=39500.0, sl_kind="trailing", preset="guardian")
    raw.execute("INSERT INTO actions (id, ts, position_id, symbol, type, reason, price, sl, "
                "rule, priority, inputs, flags, stop_kind, is_limit, ok, detail) VALUES "
                "(1, 1, 'old', 'BTC/USDT:USDT', 'move_sl', 'trailing_stop', 40100, 39000, "
                "'trailing', 7, '{}', '[]', 'trailing', 0, 1, '')")
    raw.conn.commit()
    raw.close()
    with Store.open(db_path) as s:
        assert s.schema_version == mig.SCHEMA_VERSION
        assert s.db["positions"].columns_dict["level_action_id"] is int
        (old,) = s.load_open_positions()
        assert old.sl == 39500.0  # the row, not the older move in the log
        s.save_position(old.evolve(best_price=40200.0))
        assert s.db.execute("SELECT level_action_id FROM positions").fetchone()[0] == 1
        assert s.load_position("old").sl == 39500.0


def test_v1_database_with_data_migrates_and_keeps_data(db_path):
    fresh_db(db_path)  # a v1 file with a position in it
    raw = Database(sqlite3.connect(db_path))
    mig.migrate(raw, [*mig.MIGRATIONS, _v1_to_v2])
    row = raw.execute("SELECT id, qty, note FROM positions").fetchone()
    raw.close()
    assert row == ("p1", 0.5, "")


def test_failed_migration_step_is_rolled_back(db_path):
    fresh_db(db_path)
    raw = Database(sqlite3.connect(db_path))
    n = mig.SCHEMA_VERSION
    with pytest.raises(StoreError, match=f"from schema {n} to {n + 1} failed: disk on fire"):
        mig.migrate(raw, [*mig.MIGRATIONS, _broken_step])
    assert mig.read_version(raw) == n
    assert "half_done" not in raw.table_names()
    assert not raw.conn.in_transaction
    raw.close()
    with Store.open(db_path) as s:
        assert s.load_position("p1") == pos()


def test_failed_first_migration_leaves_empty_file_at_v0(db_path):
    raw = Database(sqlite3.connect(db_path))
    with pytest.raises(StoreError, match="from schema 0 to 1 failed"):
        mig.migrate(raw, [_broken_step])
    assert raw.table_names() == []
    raw.close()


def test_migrate_refuses_newer(db_path):
    fresh_db(db_path)
    set_meta(db_path, "schema_version", "5")
    raw = Database(sqlite3.connect(db_path))
    with pytest.raises(StoreError, match="newer pmgui"):
        mig.migrate(raw)
    raw.close()


def test_file_permissions_untouched_on_refusal(db_path):
    fresh_db(db_path)
    set_meta(db_path, "schema_version", "9")
    os.chmod(db_path, 0o640)
    with pytest.raises(StoreError):
        Store.open(db_path)
    assert (db_path.stat().st_mode & 0o777) == 0o640


# ---------------------------------------------------------------- one writer

def test_second_writable_open_refused_until_the_first_closes(db_path):
    first = Store.open(db_path)
    try:
        first.save_position(pos())
        with pytest.raises(StoreError, match=rf"already open in another pmgui \(process "
                                             rf"{os.getpid()}\)"):
            Store.open(db_path)
        with Store.open(db_path, readonly=True) as reader:  # readers are always welcome
            assert reader.load_position("p1") == pos()
        first.save_position(pos("p2"))  # the refused open disturbed nothing
    finally:
        first.close()
    with Store.open(db_path) as again:
        assert {p.id for p in again.load_open_positions()} == {"p1", "p2"}


def test_lock_held_by_another_process_and_released_when_it_dies(db_path):
    import signal
    import subprocess
    import sys

    fresh_db(db_path)
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom pmgui.store import Store\n"
         "s = Store.open(sys.argv[1])\nprint('ready', flush=True)\ntime.sleep(60)\n",
         str(db_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        with pytest.raises(StoreError, match=f"process {child.pid}"):
            Store.open(db_path)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    with Store.open(db_path) as s:  # the OS dropped the dead writer's lock
        assert s.load_position("p1") == pos()
