"""Shared test set-up. Qt runs offscreen: this must happen before anything imports Qt."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PMGUI_NO_KEYRING", "1")  # tests never touch the user's keyring
# Nor the user's window layout or config: each test run gets its own throwaway folder.
_scratch = tempfile.mkdtemp(prefix="pmgui-tests-")
os.environ.setdefault("PMGUI_UI_SETTINGS", os.path.join(_scratch, "ui.ini"))
os.environ.setdefault("PMGUI_CONFIG_DIR", os.path.join(_scratch, "config"))
# The pmgui processes the tests start (`python -m pmgui …`, the fork server, a live bench's
# engine: about a hundred a run) keep the bytecode they compile, in the checkout's
# __pycache__ folders (git-ignored), as any pmgui install does: with PYTHONDONTWRITEBYTECODE
# set in the environment (as on the CI host) each of them compiled pmgui's sources again,
# ~15 % of their CPU (test_cli, test_cli_hardening, test_startup: 49/45 -> 41/39 s CPU).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

import pytest  # noqa: E402


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "pmgui.db"
