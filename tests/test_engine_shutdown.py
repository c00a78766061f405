"""The engine's shutdown saves its whole book in one synced commit, read back from the file."""

from __future__ import annotations

import threading
import time

from pmgui.domain.enums import Side
from pmgui.domain.models import Market, Tick
from pmgui.engine import commands as cmd
from pmgui.engine.core import EngineCore
from pmgui.engine.outbox import Outbox
from pmgui.engine.settings import EngineSettings
from pmgui.exchange.paper import PaperExchange
from pmgui.store.db import CommitAudit, Store

SYMBOLS = [f"S{i:02d}/USDT:USDT" for i in range(6)]


async def test_shutdown_saves_the_book_in_one_synced_commit(db_path):
    store = Store.open(db_path)
    markets = {s: Market(s, tick_size=0.01, amount_step=0.001, min_amount=0.001,
                         min_notional=0.0) for s in SYMBOLS}
    paper = PaperExchange(markets, None, realtime=True, db=store.db, balance=1e9)
    settings = EngineSettings(default_preset="manual", protect_throttle=600.0)
    engine = EngineCore(paper, store, Outbox(), settings)
    await engine.start()
    for s in SYMBOLS:
        await paper.deliver(Tick(s, 100.0, time.time()), engine)
        for side in (Side.LONG, Side.SHORT):
            d = side.dir
            await engine.handle(cmd.OpenPosition(s, side, 1.0, 5, sl=100 * (1 - d * .05),
                                                 tp=100 * (1 + d * .05)))
    for i, s in enumerate(SYMBOLS):  # new peaks and best prices: in memory, not yet saved
        await paper.deliver(Tick(s, 101.0 + i / 10, time.time()), engine)
    book = dict(engine.book)
    assert len(book) == 2 * len(SYMBOLS)
    assert any(p != store.load_position(pid) for pid, p in book.items())  # the save matters
    conn = store.db.conn
    audit = CommitAudit(int(conn.execute("PRAGMA synchronous").fetchone()[0]))
    conn.set_trace_callback(audit.statement)  # the connection closes with the store
    await engine.shutdown()
    # the book's save is the shutdown's only synced commit on this thread (one per position
    # before); the venue's prices and the written-behind rows are relaxed commits
    assert audit.synced(threading.get_ident()) == 1
    with Store.open(db_path, readonly=True) as reader:
        assert {p.id: p for p in reader.load_open_positions()} == book
