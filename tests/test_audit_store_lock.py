"""One writer per database file, whatever path names it (DESIGN §6, `pmgui.store.lock`).

Two engines writing one file would each manage the same positions and place their
protective orders twice. The lock must follow the file, not the name it was opened by: a
symbolic link to the database (a data folder shared through a link, `--db` given the link
once and the file once) is the same database."""

from __future__ import annotations

from pathlib import Path

import pytest

from pmgui.domain.errors import StoreError
from pmgui.store import Store


def test_a_second_writer_through_a_symlink_to_the_file_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "data" / "pm.db"
    real.parent.mkdir()
    with Store.open(real):
        pass
    link = tmp_path / "pm-link.db"
    link.symlink_to(real)
    with Store.open(real) as first:
        with pytest.raises(StoreError, match="already open in another pmgui"):
            Store.open(link)
        first.set_setting("still", "mine")
    with Store.open(link) as second:  # once the first has closed
        assert second.get_setting("still") == "mine"
