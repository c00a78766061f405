"""A stop moved by cancel-and-replace, the engine killed between the two (DESIGN §5/§6).

The engine places the new stop first, then cancels the old one. Killed right after the
venue cancelled the old one, the journal still holds it open; the next start looks it up
and finds it cancelled — by pmgui itself, superseded by the new stop the journal holds. The
trader must not be alarmed that a stop was "cancelled outside pmgui", and the venue must
keep exactly one stop, at the new level.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pmgui.domain.enums import OrderRole, OrderStatus, OrderType
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
    old = next(o for o in rt.pending() if o.role.value == "stop_loss")
    print(old.client_id, flush=True)
    cancel = h.paper.cancel_order

    async def cancelled_then_killed(order):
        res = await cancel(order)
        os.kill(os.getpid(), signal.SIGKILL)
        return res

    h.paper.cancel_order = cancelled_then_killed
    await h.engine.handle(cmd.SetTargets(rt.id, sl=59_500.0))

asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.timeout(120)
async def test_the_old_stop_cancelled_by_pmgui_before_a_crash_is_not_reported_lost(
        tmp_path: Path) -> None:
    db = tmp_path / "replace.db"
    old_id = killed_child(CHILD, db)[0]

    h = Harness(db, [])
    await h.engine.start()
    await h.engine.protector.settle_background()
    (pos,) = h.engine.positions.values()
    assert pos.sl == 59_500.0
    assert h.store.order(old_id).status is OrderStatus.CANCELED
    alarms = [e.message for e in h.of(ErrorEvent) if "outside pmgui" in e.message]
    assert alarms == []
    stops = [o for o in await h.paper.fetch_open_orders(SYMBOL)
             if o.type is OrderType.STOP_MARKET]
    assert [(o.role, o.trigger_price) for o in stops] == [(OrderRole.STOP_LOSS, 59_500.0)]
    await h.engine.shutdown()
