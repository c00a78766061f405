"""A stop's close acknowledged before the engine booked it: SIGKILL in that window loses
nothing and duplicates nothing.

The engine announces a close the venue carried out as soon as the venue reported its fill
(the venue committed it first), and books it after, in one commit (`EngineCore.apply_order`).
A real process is killed the moment the close is published: the venue holds the fill, the
engine's journal still has the position open and its stop resting. The next start books the
close from the venue's word, once."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from pmgui.domain.enums import OrderRole, OrderStatus
from pmgui.store.db import Store
from tests.engine_support import SYMBOL, Harness

ROOT = Path(__file__).resolve().parent.parent
STOP_FILL = 58_400.0  # the crossing tick (no slippage): the stop fills there

CHILD = """
import asyncio, os, signal, sys
from pathlib import Path
from pmgui.domain.enums import ActionType, OrderRole
from pmgui.domain.models import Tick
from pmgui.engine.events import ActionTaken
from tests.engine_support import SYMBOL, one_long_open

async def main(db):
    h, rt = await one_long_open(Path(db))
    stop = next(o for o in rt.pending() if o.role is OrderRole.STOP_LOSS)
    print(rt.id, stop.client_id, flush=True)

    def listen(ev):
        if isinstance(ev, ActionTaken) and ev.action.type is ActionType.CLOSE:
            print("acknowledged", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    h.outbox.add_listener(listen)
    await h.paper.deliver(Tick(SYMBOL, float(sys.argv[2]), 1_700_000_060.0), h.engine)
    print("not killed", flush=True)

asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.timeout(120)
async def test_sigkill_right_after_the_close_is_acknowledged_books_it_once_at_restart(
        tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    proc = subprocess.run([sys.executable, "-c", CHILD, str(db), repr(STOP_FILL)], cwd=ROOT,
                          capture_output=True, text=True, timeout=100)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    pid, stop_id, said = proc.stdout.split()
    assert said == "acknowledged"

    # the window: the venue committed the stop's fill; the engine's booking never was
    with Store.open(db, readonly=True) as reader:
        assert reader.load_position(pid).is_open
        assert reader.order(stop_id).status is OrderStatus.OPEN
        assert len(reader.fills(pid)) == 1  # the entry's only
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        venue_fills = conn.execute("SELECT price FROM paper_fills WHERE order_client_id = ?",
                                   (stop_id,)).fetchall()
        assert venue_fills == [(STOP_FILL,)]
        assert conn.execute("SELECT count(*) FROM paper_positions").fetchone() == (0,)

    h = Harness(db, [])
    await h.engine.start()  # reconciliation: the stop looked up by its client id
    assert pid not in h.engine.positions
    closed = h.store.load_position(pid)
    assert not closed.is_open
    assert closed.exit_price == pytest.approx(STOP_FILL)
    assert h.store.order(stop_id).status is OrderStatus.FILLED
    stop_fills = [f for f in h.store.fills(pid) if f.order_client_id == stop_id]
    assert [f.price for f in stop_fills] == [pytest.approx(STOP_FILL)]
    assert sum(1 for a in h.store.actions(pid) if a["type"] == "close") == 1
    assert await h.paper.fetch_positions() == []
    # nothing of the closed position rests on the venue (its take-profit went with it)
    assert not [o for o in await h.paper.fetch_open_orders(SYMBOL)
                if o.role in (OrderRole.STOP_LOSS, OrderRole.TAKE_PROFIT)]
    await h.engine.shutdown()

    h2 = Harness(db, [])  # and a second start books nothing again
    await h2.engine.start()
    assert sum(1 for a in h2.store.actions(pid) if a["type"] == "close") == 1
    assert len([f for f in h2.store.fills(pid) if f.order_client_id == stop_id]) == 1
    await h2.engine.shutdown()
