"""Databases pmgui cannot trust (DESIGN §6): refused at open with a specific error and left
exactly as they were, instead of failing at the first fill or order after one was sent."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from pmgui.domain.errors import StoreError
from pmgui.store import Store
from pmgui.store import migrations as mig
from pmgui.store.sqlite_lib import Database


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _damaged(path: Path, sql: str) -> str:
    with Store.open(path):
        pass
    conn = sqlite3.connect(path)
    conn.execute(sql)
    conn.commit()
    conn.close()
    return _digest(path)


@pytest.mark.parametrize("readonly", [False, True])
@pytest.mark.parametrize(("sql", "missing"), [
    ("DROP TABLE fills", "fills"),
    ("DROP TABLE order_links", "order_links"),
    ("ALTER TABLE positions DROP COLUMN level_action_id", "positions.level_action_id"),
    ("ALTER TABLE orders DROP COLUMN error", "orders.error"),
])
def test_a_missing_table_or_column_is_refused_and_unchanged(tmp_path: Path, sql: str,
                                                            missing: str,
                                                            readonly: bool) -> None:
    path = tmp_path / "pm.db"
    before = _damaged(path, sql)
    with pytest.raises(StoreError, match=rf"{missing}.*not modified"):
        Store.open(path, readonly=readonly)
    assert _digest(path) == before
    assert not (tmp_path / "pm.db-wal").exists()


def test_an_older_schema_missing_a_table_is_refused_before_it_is_migrated(
        tmp_path: Path) -> None:
    path = tmp_path / "pm.db"
    raw = Database(sqlite3.connect(path))
    mig.migrate(raw, list(mig.MIGRATIONS[:1]))
    raw.execute("DROP TABLE actions")
    raw.conn.commit()
    raw.close()
    before = _digest(path)
    with pytest.raises(StoreError, match=r"actions.*not modified"):
        Store.open(path)
    assert _digest(path) == before


def test_an_intact_database_of_every_version_opens(tmp_path: Path) -> None:
    for version in range(mig.SCHEMA_VERSION + 1):
        path = tmp_path / f"v{version}.db"
        raw = Database(sqlite3.connect(path))
        mig.migrate(raw, list(mig.MIGRATIONS[:version]))
        raw.conn.commit()
        raw.close()
        with Store.open(path) as store:
            assert store.schema_version == mig.SCHEMA_VERSION
