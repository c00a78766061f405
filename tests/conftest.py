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

from collections.abc import AsyncIterator  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

import pytest  # noqa: E402

if TYPE_CHECKING:
    from tests.fakes.binance_server import BinanceServer


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "pmgui.db"


@pytest.fixture
async def server() -> AsyncIterator[BinanceServer]:
    """The local Binance USDⓈ-M emulator (tests.fakes.binance_server), started for the test
    and stopped after it. A test file of another venue, or of an emulator set up otherwise,
    defines a `server` of its own."""
    from tests.fakes.binance_server import BinanceServer

    srv = BinanceServer()
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture(autouse=True)
def _unfrozen_heap():
    """Every test leaves the heap unfrozen, as the next one expects: the window freezes a
    bulk of new rows (`gc.freeze`), the engine's thread its start-up state and `pmgui replay`
    its ticks, and a test that ran one of them in this process left the next test a frozen
    heap — `test_replay_fast`'s check that the command unfreezes what it froze failed in the
    suite, after a window test, though it passed alone."""
    import gc

    yield
    if gc.get_freeze_count():
        gc.unfreeze()
