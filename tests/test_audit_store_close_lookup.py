"""A market close sent just before a crash, whose lookup fails at the next start (the venue
rate-limits, the network is down): the position is gone from the venue, but the journal
still holds our close, unresolved. Reconciliation must not book it as "closed outside
pmgui" at the last price with none of the close's profit or loss, and then drop the close's
fill when its lookup succeeds; it waits for the lookup and books the close from its fill
(DESIGN §6: a crash at any instant loses nothing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pmgui.domain.errors import ExchangeError
from tests.audit_trail_support import killed_child
from tests.engine_support import Harness

CHILD = """
import asyncio, os, signal, sys
from pathlib import Path
from pmgui.domain.models import Tick
from pmgui.engine import commands as cmd
from tests.engine_support import SYMBOL, one_long_open

async def main(db):
    h, rt = await one_long_open(Path(db))
    await h.paper.deliver(Tick(SYMBOL, 60_200.0, 1_700_000_005.0), h.engine)
    create = h.paper.create_order

    async def filled_then_killed(req):
        await create(req)  # the venue closed the position
        print(rt.id, req.client_id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    h.paper.create_order = filled_then_killed
    await h.engine.handle(cmd.ClosePosition(rt.id))

asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.timeout(120)
async def test_a_close_whose_lookup_fails_at_start_is_booked_from_its_fill_later(
        tmp_path: Path) -> None:
    db = tmp_path / "lookup.db"
    pid, close_id = killed_child(CHILD, db)

    h = Harness(db, [])
    lookup = h.paper.fetch_order_by_client_id

    async def unavailable(client_id, symbol=None):
        raise ExchangeError("429 Too Many Requests")

    h.paper.fetch_order_by_client_id = unavailable  # type: ignore[method-assign]
    await h.engine.start()
    stored = h.store.load_position(pid)
    assert stored.is_open or stored.exit_reason != "reconcile", \
        "booked as closed outside pmgui while our own close was unresolved"

    h.paper.fetch_order_by_client_id = lookup  # type: ignore[method-assign]
    await h.engine.reconcile()
    closed = h.store.load_position(pid)
    assert not closed.is_open
    assert closed.exit_price == pytest.approx(60_200.0)
    # the entry's fee, the close's fee and the 200 × 0.01 gain
    fills = h.store.fills(pid)
    assert sorted(f.order_client_id == close_id for f in fills) == [False, True]
    assert closed.fees_paid == pytest.approx(sum(f.fee for f in fills))
    assert closed.realized_pnl == pytest.approx(2.0 - closed.fees_paid)
    await h.engine.shutdown()
