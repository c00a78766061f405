"""A partial take-profit filled on the venue, the engine killed before it booked it
(DESIGN §6: "a crash at any instant loses nothing and duplicates nothing").

TP1 closes half of the original quantity once (flag `tp1_done`). The flag is the action's,
set when its reduction is booked. Killed between the venue's fill and that booking, the
next start books the fill from the venue's word — and must book the flag with it, or TP1
fires a second time and closes the other half too (the runner the trader kept is gone).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pmgui.domain.enums import OrderStatus
from pmgui.domain.models import Tick
from tests.audit_trail_support import TP1_SETTINGS, killed_child
from tests.engine_support import SYMBOL, Harness

CHILD = """
import asyncio, os, signal, sys
from pathlib import Path
from pmgui.domain.enums import Side
from pmgui.domain.models import Tick
from pmgui.engine import commands as cmd
from tests.audit_trail_support import TP1_SETTINGS
from tests.engine_support import SYMBOL, Harness

async def main(db):
    h = Harness(Path(db), [], TP1_SETTINGS)
    await h.engine.start()
    await h.paper.deliver(Tick(SYMBOL, 60_000.0, 1_700_000_000.0), h.engine)
    res = await h.engine.handle(cmd.OpenPosition(SYMBOL, Side.LONG, 0.02, 10, sl=59_000.0,
                                                 tp=65_000.0))
    create = h.paper.create_order

    async def filled_then_killed(req):
        await create(req)  # the venue took TP1's reduction: filled
        print(res.position_id, req.client_id, req.amount, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    h.paper.create_order = filled_then_killed
    await h.paper.deliver(Tick(SYMBOL, 61_050.0, 1_700_000_010.0), h.engine)  # 1.05 R

asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.timeout(120)
async def test_tp1_filled_before_a_crash_is_booked_once_and_does_not_fire_again(
        tmp_path: Path) -> None:
    db = tmp_path / "tp1.db"
    pid, reduce_id, amount = killed_child(CHILD, db)
    assert float(amount) == 0.01

    h = Harness(db, [], TP1_SETTINGS)
    await h.engine.start()
    await h.engine.protector.settle_background()
    pos = h.engine.positions[pid]
    assert pos.qty == pytest.approx(0.01)  # the reduction, booked from the venue's word
    assert "tp1_done" in pos.flags
    assert h.store.order(reduce_id).status is OrderStatus.FILLED
    await h.paper.deliver(Tick(SYMBOL, 61_100.0, 1_700_000_020.0), h.engine)  # still ≥ 1 R
    await h.engine.protector.settle_background()
    assert h.engine.positions[pid].qty == pytest.approx(0.01)  # TP1 did not fire again
    assert [p.qty for p in await h.paper.fetch_positions()] == [pytest.approx(0.01)]
    reductions = [a for a in h.store.actions(pid) if a["type"] == "reduce"]
    assert len(reductions) == 1
    await h.engine.shutdown()

    h2 = Harness(db, [], TP1_SETTINGS)  # and it stays booked
    await h2.engine.start()
    assert "tp1_done" in h2.engine.positions[pid].flags
    assert h2.store.get_setting("ledger.reduce_flags", {}) in ({}, None)
    await h2.engine.shutdown()
