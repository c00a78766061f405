"""Schema versions and forward migrations.

`MIGRATIONS[v]` turns a database at schema version `v` into version `v + 1`; the current version
is `len(MIGRATIONS)`. Version 0 is an empty file (no tables at all): a brand-new database and a
zero-byte file both start there. Each step runs in its own transaction together with the update of
`meta.schema_version`, so a crash or an error mid-migration leaves the database at the previous
version, never half-migrated. A database that reports a version above `len(MIGRATIONS)` was
written by a newer pmgui and is refused before anything is written (see `Store.open`).

To add version N+1: append a function here that alters the tables (sqlite-utils `transform`,
`add_column`, `create`), and extend the tests with a database at version N.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence

from pmgui.domain.errors import StoreError
from pmgui.store.schema import create_v1
from pmgui.store.sqlite_lib import Database

Migration = Callable[[Database], None]

APP_NAME = "pmgui"


def _v0_to_v1(db: Database) -> None:
    """Empty file → the first schema (DESIGN §6 tables) plus identification in `meta`."""
    create_v1(db)
    db["meta"].insert_all([
        {"key": "app", "value": APP_NAME},
        {"key": "created_at", "value": repr(time.time())},
    ])


def _v1_to_v2(db: Database) -> None:
    """Funding received (+) or paid (−) per position (NULL: the venue does not report it)."""
    db["positions"].add_column("funding", float)


def _v2_to_v3(db: Database) -> None:
    """The journal watermark of a position's row: the id of the last action logged (for any
    position) when the row's state was taken. A rule's level move is not written to the row
    each time: the moves logged after it are replayed on load (`Store._positions`). NULL
    (rows written before v3, when every move rewrote the row): nothing to replay."""
    db["positions"].add_column("level_action_id", int)


MIGRATIONS: tuple[Migration, ...] = (_v0_to_v1, _v1_to_v2, _v2_to_v3)
SCHEMA_VERSION = len(MIGRATIONS)


def read_version(db: Database) -> int:
    """The schema version of `db`; 0 for a database without any table.

    Raises StoreError for a SQLite file that has tables but no pmgui `meta` table (another
    program's database) or an unreadable version, so such a file is never "migrated".
    """
    names = set(db.table_names())
    if "meta" not in names:
        if names:
            raise StoreError(
                f"this SQLite file is not a pmgui database (it has tables "
                f"{', '.join(sorted(names)[:5])} but no pmgui meta table); it was not modified")
        return 0
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        raise StoreError("the pmgui database has no schema version; it was not modified")
    try:
        version = int(row[0])
    except (TypeError, ValueError) as e:
        raise StoreError(f"the pmgui database has an unreadable schema version {row[0]!r}; "
                         "it was not modified") from e
    if version < 0:
        raise StoreError(f"the pmgui database has an invalid schema version {version}; "
                         "it was not modified")
    return version


_EXPECTED: dict[int, Mapping[str, frozenset[str]]] = {}


def expected_columns(version: int) -> Mapping[str, frozenset[str]]:
    """The tables and columns a database of schema `version` has: those the migrations up
    to it create (built once per version in memory, so it can never disagree with them)."""
    found = _EXPECTED.get(version)
    if found is None:
        conn = sqlite3.connect(":memory:")
        try:
            db = Database(conn, execute_plugins=False)
            for step in MIGRATIONS[:version]:
                with db.atomic():
                    step(db)
            found = _EXPECTED[version] = {
                t: frozenset(r[1] for r in conn.execute(f"PRAGMA table_info([{t}])"))
                for t in db.table_names()}
        finally:
            conn.close()
    return found


def check_tables(db: Database, version: int) -> None:
    """Refuse a pmgui database of a known schema that lacks one of that schema's tables or
    columns (edited by hand, a partial restore): opened, it would fail at the first fill or
    order booked — after the order was sent — instead of now, before anything is written."""
    if version <= 0 or version > SCHEMA_VERSION:
        return
    names = set(db.table_names())
    missing: list[str] = []
    for table, columns in expected_columns(version).items():
        if table not in names:
            missing.append(f"table {table}")
            continue
        have = {r[1] for r in db.execute(f"PRAGMA table_info([{table}])").fetchall()}
        missing += [f"column {table}.{c}" for c in sorted(columns - have)]
    if missing:
        raise StoreError(f"the pmgui database (schema {version}) lacks "
                         f"{', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}; "
                         "it was damaged or edited outside pmgui and was not modified")


def check_supported(version: int, supported: int = SCHEMA_VERSION) -> None:
    """Refuse a database written by a newer pmgui (its tables may mean something else)."""
    if version > supported:
        raise StoreError(
            f"database was written by a newer pmgui (schema {version}, this version supports "
            f"{supported}); it was not modified")


def migrate(db: Database, migrations: Sequence[Migration] = MIGRATIONS) -> tuple[int, int]:
    """Apply every missing step, one transaction each. Returns (version before, version after).

    A failing step is rolled back completely and re-raised as StoreError; the steps before it
    stay committed (each one is a consistent schema on its own).
    """
    target = len(migrations)
    start = read_version(db)
    check_supported(start, target)
    version = start
    while version < target:
        step = migrations[version]
        try:
            with db.atomic():
                step(db)
                db["meta"].upsert({"key": "schema_version", "value": str(version + 1)},
                                  pk="key")
        except StoreError:
            raise
        except Exception as e:
            raise StoreError(f"upgrading the database from schema {version} to {version + 1} "
                             f"failed: {e}; it was left at schema {version}") from e
        version += 1
    return start, version
