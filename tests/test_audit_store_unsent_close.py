"""A close journaled but never sent (the engine killed between its journal and its send):
the next start finds it never reached the exchange. The trader, whose log says "close",
must be told that the position was NOT closed — on that position, as an error — not by an
anonymous note about an order id filed as a stop move (DESIGN §2: the log and the results
tell the truth; §6: journal before acting, reconcile after a crash)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pmgui.engine.events import ErrorEvent
from tests.audit_trail_support import killed_child
from tests.engine_support import SYMBOL, Harness

CHILD = """
import asyncio, os, signal, sys
from pathlib import Path
from pmgui.domain.models import Tick
from pmgui.engine import commands as cmd
from tests.engine_support import SYMBOL, one_long_open

async def main(db):
    h, rt = await one_long_open(Path(db))
    await h.paper.deliver(Tick(SYMBOL, 60_200.0, 1_700_000_005.0), h.engine)

    async def killed_before_sending(req):  # journaled and synced: killed before the venue
        print(rt.id, req.client_id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    h.paper.create_order = killed_before_sending
    await h.engine.handle(cmd.ClosePosition(rt.id))

asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.timeout(120)
async def test_a_close_that_never_reached_the_exchange_is_told_on_its_position(
        tmp_path: Path) -> None:
    db = tmp_path / "unsent.db"
    pid, close_id = killed_child(CHILD, db)

    h = Harness(db, [])
    await h.engine.start()
    assert h.engine.positions[pid].is_open  # nothing was sent: still open
    assert [p.qty for p in await h.paper.fetch_positions()] == [0.01]
    errors = [e for e in h.of(ErrorEvent) if close_id in e.message]
    assert len(errors) == 1
    assert errors[0].position_id == pid
    assert SYMBOL in errors[0].message and "not closed" in errors[0].message
    lines = [a for a in h.store.actions(pid) if a["reason"] == "reconcile"]
    assert [(a["type"], a["ok"]) for a in lines] == [("reduce", False)]
    assert close_id in lines[0]["detail"]
    # nothing filed as a stop move
    assert not [a for a in h.store.actions() if a["type"] == "move_sl"
                and close_id in (a.get("detail") or "") + str(a.get("inputs"))]
    await h.engine.shutdown()
