"""A market entry whose answer never reached the journal (DESIGN §2/§5/§6: "a crash at any
instant loses nothing").

The trader opens a long with its stop and target; the engine journals the entry, sends it,
and dies (SIGKILL) before it books the venue's answer. The venue holds the position. The
next start finds it and must take it over as the trader asked — with its stop and target,
preset and overrides, protected on the venue, its entry fill on it — not as a bare position
without a stop.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pmgui.domain.enums import OrderRole, OrderStatus, OrderType, Side
from tests.audit_trail_support import killed_child
from tests.engine_support import SYMBOL, Harness

CHILD = """
import asyncio, os, signal, sys
from pathlib import Path
from pmgui.domain.enums import Side
from pmgui.domain.models import Tick
from pmgui.engine import commands as cmd
from tests.engine_support import SYMBOL, Harness

async def main(db):
    h = Harness(Path(db), [])
    await h.engine.start()
    await h.paper.deliver(Tick(SYMBOL, 60_000.0, 1_700_000_000.0), h.engine)
    create = h.paper.create_order

    async def answered_then_killed(req):
        res = await create(req)  # the venue has it: filled
        print(req.client_id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        return res

    h.paper.create_order = answered_then_killed
    await h.engine.handle(cmd.OpenPosition(SYMBOL, Side.LONG, 0.01, 10, sl=58_500.0,
                                           tp=61_000.0, preset="monitor",
                                           overrides={"emergency.enabled": False}))

asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.timeout(120)
async def test_a_market_entry_killed_before_its_booking_is_taken_over_with_its_stop(
        tmp_path: Path) -> None:
    db = tmp_path / "entry.db"
    entry_id = killed_child(CHILD, db)[0]

    h = Harness(db, [])
    await h.engine.start()
    await h.engine.protector.settle_background()
    (pos,) = h.engine.positions.values()
    assert (pos.side, pos.qty, pos.entry) == (Side.LONG, 0.01, 60_000.0)
    assert (pos.sl, pos.tp, pos.initial_sl) == (58_500.0, 61_000.0, 58_500.0)
    assert pos.preset == "monitor"
    assert dict(pos.overrides) == {"emergency.enabled": False}
    resting = {o.role: o for o in await h.paper.fetch_open_orders(SYMBOL)
               if o.type in (OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET)}
    assert resting[OrderRole.STOP_LOSS].trigger_price == 58_500.0
    assert resting[OrderRole.TAKE_PROFIT].trigger_price == 61_000.0
    # the entry is the position's: its order and its fill (and its fee) are on it
    entry = h.store.order(entry_id)
    assert entry.status is OrderStatus.FILLED and entry.position_id == pos.id
    fills = h.store.fills(pos.id)
    assert [f.order_client_id for f in fills] == [entry_id]
    assert pos.fees_paid == pytest.approx(sum(f.fee for f in fills))
    assert pos.fees_paid > 0
    assert sum(1 for a in h.store.actions(pos.id) if a["type"] == "open") == 1
    await h.engine.shutdown()

    h2 = Harness(db, [])  # a second start changes nothing
    await h2.engine.start()
    (again,) = h2.engine.positions.values()
    assert (again.id, again.sl, again.tp) == (pos.id, 58_500.0, 61_000.0)
    assert sum(1 for a in h2.store.actions(pos.id) if a["type"] == "open") == 1
    await h2.engine.shutdown()


async def test_a_timed_out_market_entry_is_protected_at_the_next_lookup(tmp_path: Path) -> None:
    """The create timed out (the venue filled it): the housekeeping's lookup of the pending
    order finds it filled and the position is taken over with its stop and target then —
    not a minute later at the next full reconciliation, bare and unguarded meanwhile."""
    from pmgui.domain.models import Tick
    from pmgui.engine import commands as cmd
    from pmgui.exchange.retry import OrderStatusUnknown

    h = Harness(tmp_path / "timeout.db", [])
    await h.engine.start()
    await h.paper.deliver(Tick(SYMBOL, 60_000.0, 1_700_000_000.0), h.engine)
    create = h.paper.create_order

    async def timed_out(req):  # the venue takes it; its answer is lost on the way back
        await create(req)
        raise OrderStatusUnknown("no answer", req.client_id)

    h.paper.create_order = timed_out  # type: ignore[method-assign]
    with pytest.raises(OrderStatusUnknown):
        await h.engine.handle(cmd.OpenPosition(SYMBOL, Side.LONG, 0.01, 10, sl=58_500.0,
                                               tp=61_000.0))
    h.paper.create_order = create  # type: ignore[method-assign]
    await h.paper.deliver(Tick(SYMBOL, 60_010.0, 1_700_000_005.0), h.engine)
    await h.engine.periodic()  # its lookup of the pending entry
    await h.engine.protector.settle_background()
    (pos,) = h.engine.positions.values()
    assert (pos.qty, pos.sl, pos.tp) == (0.01, 58_500.0, 61_000.0)
    resting = {o.role: o.trigger_price for o in await h.paper.fetch_open_orders(SYMBOL)
               if o.type in (OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET)}
    assert resting == {OrderRole.STOP_LOSS: 58_500.0, OrderRole.TAKE_PROFIT: 61_000.0}
    await h.engine.shutdown()
