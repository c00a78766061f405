"""Crash recovery of the write-behind journal watermark (DESIGN §6: "a crash at any instant
loses nothing").

A position row carries the id of the last action logged when it was saved
(`level_action_id`); on load the store replays the rule moves logged after it. Log lines
written behind may be lost in a crash while a row saved synchronously already carries a
watermark past them. The ids handed out after the restart must still be above every
watermark on disk, or the moves logged then are taken for moves already in the row and a
trailing stop comes back looser after the next crash.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from pmgui.domain.enums import ActionType, Reason, Side, StopKind
from pmgui.domain.models import Action, Position
from pmgui.store import Store

CHILD = textwrap.dedent("""
    import os, signal, sys
    from pmgui.domain.enums import ActionType, Reason, Side, StopKind
    from pmgui.domain.models import Action, Position
    from pmgui.store import Store

    path, step = sys.argv[1], sys.argv[2]
    store = Store.open(path)

    def move(pid, sl):
        store.record_action_behind(Action(
            type=ActionType.MOVE_SL, reason=Reason.TRAILING, position_id=pid, price=sl + 5,
            sl=sl, stop_kind=StopKind.TRAILING, rule="trailing"), symbol="BTC/USDT:USDT")

    if step == "first":
        pos = Position(id="p1", symbol="BTC/USDT:USDT", side=Side.LONG, qty=1.0,
                       entry=100.0, leverage=5, opened_at=1.0, initial_qty=1.0, sl=90.0)
        store.save_position(pos)
        # another position's trail: its lines wait behind and never reach the disk
        for i in range(5):
            move("p2", 80.0 + i)
        store.save_position(pos.evolve(best_price=101.0))  # synced: watermark past them
    else:
        # after the restart: p1's trail moves, its line is written behind, the row is not
        move("p1", 95.0)
        store.flush_behind()
    print("ready", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def _run(path: Path, step: str) -> None:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), step], env=env,
                         capture_output=True, text=True, timeout=120)
    assert "ready" in out.stdout, out.stderr
    assert out.returncode == -9


def test_a_trail_logged_after_a_crash_is_replayed_after_the_next_crash(tmp_path: Path) -> None:
    path = tmp_path / "pm.db"
    _run(path, "first")
    _run(path, "second")
    with Store.open(path, readonly=True) as store:
        pos = store.load_position("p1")
    assert pos is not None
    assert pos.sl == 95.0  # the stop the trail reached; 90 would be a loosened stop


def test_action_ids_after_reopen_stay_above_every_watermark(tmp_path: Path) -> None:
    """Without a second crash: a move logged after the restart is replayed over the row."""
    path = tmp_path / "pm.db"
    pos = Position(id="p1", symbol="BTC/USDT:USDT", side=Side.LONG, qty=1.0, entry=100.0,
                   leverage=5, opened_at=1.0, initial_qty=1.0, sl=90.0)
    _run(path, "first")
    with Store.open(path) as store:
        assert store.load_position("p1") == pos.evolve(best_price=101.0)
        store.record_action_behind(Action(
            type=ActionType.MOVE_SL, reason=Reason.TRAILING, position_id="p1", price=97.0,
            sl=92.0, stop_kind=StopKind.TRAILING, rule="trailing"), symbol="BTC/USDT:USDT")
        store.flush_behind()
        assert store.load_position("p1").sl == 92.0
