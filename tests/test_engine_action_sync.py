"""A rule's close is journaled without an fsync of its own on the loop's thread: the close
order's journal is synced (in a worker) before it is sent, and that sync covers the decision's
row too. The trader's own decisions stay synced."""

from __future__ import annotations

import time

from pmgui.domain.enums import Side
from pmgui.domain.models import Market, Tick
from pmgui.engine import commands as cmd
from pmgui.engine.core import EngineCore
from pmgui.engine.outbox import Outbox
from pmgui.engine.settings import EngineSettings
from pmgui.exchange.paper import PaperExchange
from pmgui.store.db import Store

A = "AAA/USDT:USDT"


def _level_before_action_rows(statements: list[str]) -> list[str]:
    """For each INSERT into actions: the last `PRAGMA synchronous` set before it in
    `statements` ("unset": none)."""
    out, level = [], "unset"
    for s in statements:
        u = " ".join(s.split()).upper()
        if u.startswith("PRAGMA SYNCHRONOUS"):
            level = u.split("=")[-1].strip()
        elif u.startswith("INSERT INTO ACTIONS") or u.startswith("INSERT INTO \"ACTIONS\""):
            out.append(level)
    return out


async def test_a_rules_close_is_journaled_relaxed_the_traders_synced(db_path):
    store = Store.open(db_path)
    market = Market(A, tick_size=0.01, amount_step=0.001, min_amount=0.001, min_notional=0.0)
    paper = PaperExchange({A: market}, None, realtime=True, db=store.db, balance=1e9)
    settings = EngineSettings(default_preset="manual", protect_throttle=600.0,
                              overrides={"trailing.enabled": True, "trailing.mode": "fixed",
                                         "trailing.distance": 0.01})
    engine = EngineCore(paper, store, Outbox(), settings)
    await engine.start()
    await paper.deliver(Tick(A, 100.0, time.time()), engine)
    await engine.handle(cmd.OpenPosition(A, Side.LONG, 1.0, 5, sl=95.0, tp=150.0))
    await paper.deliver(Tick(A, 104.0, time.time()), engine)  # the stop trails (not sent)
    seen: list[str] = []
    store.db.conn.set_trace_callback(seen.append)
    await paper.deliver(Tick(A, 102.5, time.time()), engine)  # the local stop: a rule's close
    store.db.conn.set_trace_callback(None)
    assert not engine.positions  # closed
    # no FULL set for its commit (a relaxed block sets NORMAL, or finds it set moments ago:
    # every FULL makes the next relaxed block set NORMAL again)
    assert _level_before_action_rows(seen)[:1] in (["NORMAL"], ["unset"]), seen
    # the trader's close: synced
    await paper.deliver(Tick(A, 100.0, time.time()), engine)
    res = await engine.handle(cmd.OpenPosition(A, Side.LONG, 1.0, 5, sl=95.0, tp=150.0))
    seen.clear()
    store.db.conn.set_trace_callback(seen.append)
    await engine.handle(cmd.ClosePosition(res.position_id))
    store.db.conn.set_trace_callback(None)
    assert _level_before_action_rows(seen)[:1] == ["FULL"], seen
    await engine.shutdown()
