"""Shared test set-up. Qt runs offscreen: this must happen before anything imports Qt."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PMGUI_NO_KEYRING", "1")  # tests never touch the user's keyring

import pytest  # noqa: E402


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "pmgui.db"
