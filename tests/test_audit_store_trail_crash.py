"""A trailing stop never loosens because of a crash (DESIGN §2/§5/§6).

A real engine process (the paper venue in the same SQLite file, simulated time) trails a
long's stop up a rising price path and re-places it on the venue; it is SIGKILLed at the
k-th event it publishes — between a move logged behind and its re-placement, between the
new stop's create and the old one's cancel, mid write-behind window. The next start must
hold a local stop no lower than the tightest stop resting on the venue at the crash, leave
exactly one stop on the venue at least as tight, and journal no order twice.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pmgui.domain.enums import OrderRole, OrderType, Side
from tests.audit_trail_support import SETTINGS, killed_child
from tests.engine_support import MARKET, SYMBOL, Harness

CHILD = """
import asyncio, os, signal, sys
from pathlib import Path
from pmgui.domain.enums import Side
from pmgui.domain.models import Tick
from pmgui.engine import commands as cmd
from tests.audit_trail_support import SETTINGS
from tests.engine_support import MARKET, SYMBOL, Harness
from tests.engine_support import SYMBOL, Harness

async def main(db, kill_at, first):
    h = Harness(Path(db), [], SETTINGS)
    await h.engine.start()
    t = 1_700_000_000.0
    if not h.engine.positions:
        await h.paper.deliver(Tick(SYMBOL, 60_000.0, t), h.engine)
        await h.engine.handle(cmd.OpenPosition(SYMBOL, Side.LONG, 0.01, 10, sl=58_000.0,
                                               tp=90_000.0))
    seen = 0

    def listen(ev):
        nonlocal seen
        seen += 1
        if seen == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    h.outbox.add_listener(listen)
    for i in range(first, first + 40):
        await h.paper.deliver(Tick(SYMBOL, 60_000.0 + 50.0 * i, t + i), h.engine)
    print("not killed", seen, flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


def _venue_stops(db: Path) -> list[tuple[str, float]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute(
            "SELECT client_id, trigger_price FROM paper_orders WHERE status = 'open' AND "
            "role = 'stop_loss' ORDER BY trigger_price").fetchall()


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("kill_at", "again_at"), [(3, None), (12, None), (25, 7),
                                                    (47, 3), (61, 22)])
async def test_sigkill_during_a_trail_never_loosens_the_stop(
        tmp_path: Path, kill_at: int, again_at: int | None) -> None:
    db = tmp_path / "trail.db"
    for kill, first in ((kill_at, 1), (again_at, 100)):  # and once more after a restart
        if kill is None:
            continue
        killed_child(CHILD, db, kill, first, timeout=200)
    stops = _venue_stops(db)
    assert stops, "no stop rested on the venue at the crash"
    tightest = max(p for _, p in stops)

    h = Harness(db, [], SETTINGS)
    await h.engine.start()
    await h.engine.protector.settle_background()
    (pos,) = h.engine.positions.values()
    assert pos.side is Side.LONG
    assert pos.sl is not None and pos.sl >= tightest - MARKET.tick_size / 2, \
        (pos.sl, stops)
    resting = [o for o in await h.paper.fetch_open_orders(SYMBOL)
               if o.type is OrderType.STOP_MARKET]
    assert len(resting) == 1, resting
    assert resting[0].trigger_price >= tightest - MARKET.tick_size / 2, (resting, stops)
    assert resting[0].role is OrderRole.STOP_LOSS
    # every order on the venue is journaled once under its client id
    ids = [o.client_id for o in h.store.linked_orders(pos.id)]
    assert len(ids) == len(set(ids))
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        venue_ids = {r[0] for r in conn.execute("SELECT client_id FROM paper_orders")}
        journal_ids = {r[0] for r in conn.execute("SELECT client_id FROM orders")}
    assert venue_ids <= journal_ids
    await h.engine.shutdown()
