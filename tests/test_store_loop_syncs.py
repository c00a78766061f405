"""No fsync on the engine loop's thread on the hot path (issue 9).

A storm's commits on the loop's thread — the venue's reports of fills and cancels, a stop's
close booked, an entry and its protection booked, rule moves written behind, the paper venue's
own state, equity points — are all relaxed (WAL, `synchronous=NORMAL`: a killed process loses
none of them, see test_store_crash); an intended order is journaled relaxed and fsynced in a
worker thread before it is sent (`OrderLedger.journal_synced`). These tests count what SQLite
does at each COMMIT (`Store.audit_commits`), not how long anything takes: a write that goes
back to syncing on the loop fails them whatever the host's disk."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from pmgui.domain.enums import ActionType, Reason, Side
from pmgui.domain.models import Market, Tick
from pmgui.engine import commands as cmd
from pmgui.engine.core import EngineCore
from pmgui.engine.events import ActionTaken
from pmgui.engine.outbox import Outbox
from pmgui.engine.settings import EngineSettings
from pmgui.exchange.paper import PaperExchange
from pmgui.store.db import CommitAudit, Store

SYMBOLS = [f"S{i}/USDT:USDT" for i in range(4)]
PROBE = "P0/USDT:USDT"
T0 = 1_700_000_000.0


async def _paper_storm(tmp_path: Path, ticks: int = 400, closes: int = 6, swing: float = 0.3
                       ) -> tuple[CommitAudit, list[int], int, int, int]:
    """A small storm as the app runs it (`engine.build`: the paper venue on the store's
    connection, its commits at the store's level): a long and a short on each symbol under
    the default preset (trailing moves, their protection re-placed), a probe whose stop is
    crossed `closes` times and that is re-opened each time by the OpenPosition command.
    `swing`: how far (in %) the main symbols' prices drift from the entries and back.
    Returns the audit of the measured part, the threads `sync_wal` ran on, the loop's
    thread, the probe closes acknowledged and the rules' closes, reductions and adds."""
    store = Store.open(tmp_path / "storm.db")
    markets = {s: Market(s, 1e-6, 0.001, min_notional=0.0) for s in [*SYMBOLS, PROBE]}
    now = [T0]
    paper = PaperExchange(markets, None, realtime=False, db=store.db, relaxed=store.relaxed,
                          balance=1e9, clock=lambda: now[0])
    core = EngineCore(paper, store, Outbox(buffered=False),
                      EngineSettings(protect_throttle=0.0), clock=lambda: now[0])
    synced_on: list[int] = []
    sync_wal = store.sync_wal

    def recording_sync() -> None:
        synced_on.append(threading.get_ident())
        sync_wal()

    store.sync_wal = recording_sync  # type: ignore[method-assign]
    closed: list[str] = []
    ruled: list[ActionType] = []

    def listen(ev: object) -> None:
        if not isinstance(ev, ActionTaken) or not ev.ok:
            return
        if ev.symbol == PROBE and ev.action.type is ActionType.CLOSE:
            closed.append(ev.action.position_id or "")
        elif ev.symbol != PROBE and ev.action.reason is not Reason.MANUAL \
                and ev.action.type in (ActionType.CLOSE, ActionType.REDUCE, ActionType.ADD):
            ruled.append(ev.action.type)

    core.outbox.add_listener(listen)

    async def tick(symbol: str, price: float) -> None:
        now[0] += 0.01
        await paper.deliver(Tick(symbol, price, now[0]), core)

    async def open_probe() -> None:
        await tick(PROBE, 100.0)
        await core.handle(cmd.OpenPosition(PROBE, Side.LONG, 1.0, 5, sl=99.0, tp=150.0,
                                           preset="manual"))

    try:
        await core.start()
        for s in SYMBOLS:
            await tick(s, 100.0)
            for side in (Side.LONG, Side.SHORT):
                await core.handle(cmd.OpenPosition(s, side, 1.0, 5.0,
                                                   sl=100 * (1 - side.dir * .05),
                                                   tp=100 * (1 + side.dir * .05)))
        await open_probe()
        loop_thread = threading.get_ident()
        synced_on.clear()
        with store.audit_commits() as audit:
            for i in range(ticks):
                s = SYMBOLS[i % len(SYMBOLS)]
                # a drift away from the entries and back (the bench's storm: within 0.3 %)
                await tick(s, 100.0 + swing * (i % 100) / 100 * (1 if i < ticks // 2 else -1))
                if i % (ticks // closes) == ticks // closes // 2 and len(closed) < closes:
                    await tick(PROBE, 98.5)  # through the probe's stop: the venue fills it
                    await open_probe()
                if i % 50 == 0:
                    await core.periodic()  # equity point, housekeeping
                    await asyncio.sleep(0)
            store.flush_behind()
        return audit, synced_on, loop_thread, len(closed), len(ruled)
    finally:
        await core.shutdown()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("swing", [0.3, 3.0])
async def test_a_paper_storm_fsyncs_nothing_on_the_loops_thread(tmp_path: Path,
                                                                 swing: float) -> None:
    """Within 0.3 % of the entries (the bench's storm: stop moves only), and swinging 3 %
    (the rules also take partial profits and close: their decisions are journaled relaxed,
    the orders that follow synced in a worker)."""
    audit, synced_on, loop_thread, closes, ruled = await _paper_storm(tmp_path, swing=swing)
    if swing > 1:
        assert ruled > 0  # the rules acted on the main positions, not only the venue
    assert closes >= 4  # stops crossed, closes booked, probes re-opened: the hot path ran
    assert audit.total(loop_thread) > 100  # ... and committed on the loop's thread
    assert audit.synced(loop_thread) == 0, audit.commits
    # every intended order (entries, stops and take-profits placed again) was synced — in
    # a worker thread, never the loop's
    assert len(synced_on) >= 2 * closes
    assert loop_thread not in synced_on
    assert len(set(synced_on)) == 1  # all of them on the store's one sync thread


def test_the_audit_follows_the_level_whoever_sets_it(tmp_path: Path) -> None:
    """`audit_commits` tells a commit SQLite fsyncs from one it does not, by the level in
    force at the COMMIT, on each thread."""
    store = Store.open(tmp_path / "a.db")
    try:
        with store.audit_commits() as audit:
            store.record_equity(1.0, 100.0, 100.0)  # relaxed
            store.set_setting("k", 1)  # synced
            store.db.conn.execute("PRAGMA synchronous = OFF")  # someone else's statement
            store.db.conn.execute("BEGIN")
            store.db.conn.execute("COMMIT")
            store.db.conn.execute("PRAGMA synchronous = 2")
            store.db.conn.execute("BEGIN")
            store.db.conn.execute("COMMIT")
            t = threading.Thread(target=store.record_equity, args=(2.0, 100.0, 100.0))
            t.start()
            t.join()
        me = threading.get_ident()
        assert audit.total(me) == 4 and audit.synced(me) == 2
        assert audit.total() == 5 and audit.synced() == 2  # the other thread's was relaxed
    finally:
        store.close()
