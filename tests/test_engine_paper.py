"""The engine end to end on the real paper exchange and a real SQLite file."""

from __future__ import annotations

import asyncio

import pytest

from pmgui.domain.enums import ActionType, OrderRole, OrderStatus, Protection, Reason, Side
from pmgui.domain.errors import ValidationError
from pmgui.domain.models import Tick
from pmgui.engine import commands as cmd
from pmgui.engine.events import ActionTaken, PositionRemoved, PositionSnapshot
from pmgui.engine.settings import EngineSettings
from pmgui.store.db import Store
from tests.engine_support import SYMBOL, Harness

T0 = 1_700_000_000.0


async def _tick(h: Harness, price: float, i: int) -> None:
    await h.paper.deliver(Tick(SYMBOL, price, T0 + i), h.engine)


async def _open(h: Harness, side=Side.LONG, qty=0.01, lev=10, sl=59_000.0, tp=62_000.0,
                **kw) -> str:
    await h.engine.start()
    await _tick(h, 60_000.0, 0)
    res = await h.engine.handle(cmd.OpenPosition(SYMBOL, side, qty, lev, sl=sl, tp=tp, **kw))
    assert res.ok
    return res.position_id


async def test_open_places_protective_orders_on_exchange(db_path):
    h = Harness(db_path, [])
    pid = await _open(h)
    pos = h.engine.positions[pid]
    assert pos.qty == pytest.approx(0.01) and pos.sl == 59_000.0 and pos.tp == 62_000.0
    open_orders = await h.paper.fetch_open_orders(SYMBOL)
    kinds = sorted((o.type.value, o.trigger_price, o.reduce_only) for o in open_orders)
    assert kinds == [("stop_market", 59_000.0, True), ("take_profit_market", 62_000.0, True)]
    assert h.engine.protection(pos) is Protection.ON_EXCHANGE
    linked = {o.role for o in h.store.linked_orders(pid)}
    assert {OrderRole.STOP_LOSS, OrderRole.TAKE_PROFIT} <= linked
    await h.engine.shutdown()


async def test_stop_crossed_closes_journals_and_publishes(db_path):
    h = Harness(db_path, [])
    pid = await _open(h)
    await _tick(h, 59_500.0, 1)
    assert h.engine.positions[pid].is_open
    await _tick(h, 58_900.0, 2)  # crosses the SL: the exchange's stop order fills
    assert pid not in h.engine.positions
    closed = h.store.load_position(pid)
    assert not closed.is_open and closed.exit_reason == "stop_loss"
    assert closed.realized_pnl < 0
    assert (await h.paper.fetch_positions()) == []
    assert await h.paper.fetch_open_orders(SYMBOL) == []  # the TP was cancelled
    removed = h.of(PositionRemoved)
    assert [e.position.id for e in removed] == [pid]
    closes = [e for e in h.of(ActionTaken) if e.action.type is ActionType.CLOSE]
    assert closes and closes[-1].action.reason is Reason.STOP_LOSS
    logged = [a for a in h.store.actions(pid) if a["type"] == "close"]
    assert logged and logged[0]["reason"] == "stop_loss"
    assert len(h.store.fills(pid)) == 2  # entry and stop
    await h.engine.shutdown()


async def test_short_take_profit(db_path):
    h = Harness(db_path, [])
    pid = await _open(h, side=Side.SHORT, sl=61_000.0, tp=58_000.0)
    await _tick(h, 57_990.0, 1)
    closed = h.store.load_position(pid)
    assert closed.exit_reason == "take_profit" and closed.realized_pnl > 0
    await h.engine.shutdown()


async def test_fixed_trailing_ratchets_and_moves_exchange_stop(db_path):
    settings = EngineSettings(default_preset="manual", protect_throttle=0.0,
                              overrides={"trailing.enabled": True, "trailing.mode": "fixed",
                                         "trailing.distance": 0.01})
    h = Harness(db_path, [], settings)
    pid = await _open(h, sl=58_000.0, tp=70_000.0)
    for i, p in enumerate([60_500.0, 61_000.0, 60_800.0, 60_900.0], start=1):
        await _tick(h, p, i)
    pos = h.engine.positions[pid]
    assert pos.sl == pytest.approx(61_000.0 * 0.99, abs=0.1)  # best 61 000, never lowered
    stops = [o for o in await h.paper.fetch_open_orders(SYMBOL) if o.type.value == "stop_market"]
    assert len(stops) == 1 and stops[0].trigger_price == pytest.approx(pos.sl)
    await _tick(h, 60_300.0, 10)
    closed = h.store.load_position(pid)
    assert closed.exit_reason == "trailing_stop"
    await h.engine.shutdown()


async def test_restart_restores_everything_without_duplicates(db_path):
    h = Harness(db_path, [])
    pid = await _open(h)
    orders_before = sorted(o.client_id for o in await h.paper.fetch_open_orders(SYMBOL))
    await h.engine.shutdown()

    h2 = Harness(db_path, [])
    await h2.engine.start()
    pos = h2.engine.positions[pid]
    assert pos.sl == 59_000.0 and pos.tp == 62_000.0 and pos.qty == pytest.approx(0.01)
    orders_after = sorted(o.client_id for o in await h2.paper.fetch_open_orders(SYMBOL))
    assert orders_after == orders_before
    await _tick(h2, 60_100.0, 5)
    assert sorted(o.client_id for o in await h2.paper.fetch_open_orders(SYMBOL)) == orders_before
    await h2.engine.shutdown()


async def test_unsent_journal_entry_is_resolved_on_restart(db_path):
    h = Harness(db_path, [])
    pid = await _open(h)
    from pmgui.domain.enums import OrderSide, OrderType
    from pmgui.domain.models import OrderRequest

    # A crash right after journaling, before sending: the order must not be sent on restart.
    h.store.journal_order(OrderRequest("pmgcrash0001", SYMBOL, OrderSide.SELL, OrderType.MARKET,
                                       0.01, reduce_only=True, position_id=pid), T0)
    await h.engine.shutdown()
    h2 = Harness(db_path, [])
    await h2.engine.start()
    o = h2.store.order("pmgcrash0001")
    assert o.status is OrderStatus.REJECTED
    assert h2.engine.positions[pid].qty == pytest.approx(0.01)
    await h2.engine.shutdown()


async def test_set_targets_validates_and_changes_nothing_on_error(db_path):
    h = Harness(db_path, [])
    pid = await _open(h)
    with pytest.raises(ValidationError, match="below the current price"):
        await h.engine.handle(cmd.SetTargets(pid, sl=60_500.0))
    assert h.engine.positions[pid].sl == 59_000.0
    res = await h.engine.handle(cmd.SetTargets(pid, sl=59_512.34))
    assert res.ok and h.engine.positions[pid].sl == 59_512.3  # snapped to the tick
    stops = [o for o in await h.paper.fetch_open_orders(SYMBOL) if o.type.value == "stop_market"]
    assert [o.trigger_price for o in stops] == [59_512.3]
    assert Store.open  # the store persisted it
    assert h.store.load_position(pid).sl == 59_512.3
    await h.engine.shutdown()


async def test_emergency_close_is_idempotent(db_path):
    h = Harness(db_path, [])
    pid = await _open(h)
    results = await asyncio.gather(h.engine.handle(cmd.ClosePosition(pid)),
                                   h.engine.handle(cmd.ClosePosition(pid)),
                                   return_exceptions=True)
    assert any(getattr(r, "ok", False) for r in results)
    reduces = [o for o in h.store.linked_orders(pid) if o.role is OrderRole.REDUCE]
    assert len(reduces) == 1
    assert h.store.load_position(pid).exit_reason == "manual"
    await h.engine.shutdown()


async def test_close_all_flattens_and_rechecks(db_path):
    h = Harness(db_path, [])
    a = await _open(h)
    b = (await h.engine.handle(cmd.OpenPosition(SYMBOL, Side.SHORT, 0.02, 10, sl=61_000.0,
                                                tp=58_000.0))).position_id
    res = await h.engine.handle(cmd.CloseAll())
    assert res.ok and res.residual == ()
    assert not h.engine.positions
    assert await h.paper.fetch_positions() == []
    assert await h.paper.fetch_open_orders() == []
    for pid in (a, b):
        assert not h.store.load_position(pid).is_open
    await h.engine.shutdown()


async def test_partial_close_updates_protective_quantity(db_path):
    h = Harness(db_path, [])
    pid = await _open(h, qty=0.02)
    await h.engine.handle(cmd.ClosePosition(pid, 0.5))
    pos = h.engine.positions[pid]
    assert pos.qty == pytest.approx(0.01)
    await _tick(h, 60_010.0, 3)
    await h.engine.periodic()
    stops = [o for o in await h.paper.fetch_open_orders(SYMBOL) if o.type.value == "stop_market"]
    assert len(stops) == 1 and stops[0].amount == pytest.approx(0.01)
    await h.engine.shutdown()


async def test_snapshots_are_finite_and_follow_ticks(db_path):
    h = Harness(db_path, [])
    pid = await _open(h)
    await _tick(h, 60_600.0, 1)
    snaps = [e for e in h.of(PositionSnapshot) if e.position.id == pid]
    last = snaps[-1]
    assert last.mark == 60_600.0
    assert last.roi == pytest.approx(10 * (600 - 0.0005 * (60_000 + 60_600)) / 60_000, rel=1e-3)
    assert last.r == pytest.approx(600 / 1000)


async def test_stale_price_falls_back_to_rest_and_never_acts_on_old_prices(db_path,
                                                                         monkeypatch):
    h = Harness(db_path, [])
    pid = await _open(h)
    clock = {"now": T0 + 100.0}  # 100 s after the last tick: stale (max age 5 s)
    h.engine.clock = lambda: clock["now"]
    h.engine.params(h.engine.positions[pid])  # resolved
    await h.engine.on_tick(Tick(SYMBOL, 58_000.0, T0 + 1))  # an old tick through the SL
    assert h.engine.positions[pid].is_open  # never acted on: too old
    snap = h.engine.snapshot(h.engine.positions[pid])
    assert snap.stale
    import pmgui.engine.core as core_mod
    from pmgui.engine.events import ErrorEvent

    sleeps: list[float] = []

    async def no_sleep(s):
        sleeps.append(s)

    monkeypatch.setattr(core_mod.asyncio, "sleep", no_sleep)
    await h.engine.periodic()  # REST has only the old price: reported once
    await h.engine.periodic()
    monkeypatch.undo()
    assert sleeps[:2] == [0.5, 1.0]  # 3 tries, backoff 0.5·2ⁿ
    errors = [e for e in h.of(ErrorEvent) if "no fresh price" in e.message]
    assert len(errors) == 1
    assert h.engine.positions[pid].is_open


async def test_symbol_rules_from_the_app_apply_to_new_positions_and_persist(db_path):
    h = Harness(db_path, [])
    await h.engine.start()
    await _tick(h, 60_000.0, 0)
    with pytest.raises(ValidationError, match="unknown preset"):
        await h.engine.handle(cmd.SetSymbolRules(SYMBOL, "gardian"))
    await h.engine.handle(cmd.SetSymbolRules(SYMBOL, "monitor",
                                             {"stop_loss.pct": 0.01, "take_profit.pct": 0.02}))
    res = await h.engine.handle(cmd.OpenPosition(SYMBOL, Side.LONG, 0.01, 5))
    pos = h.engine.positions[res.position_id]
    assert pos.preset == "monitor"
    assert pos.sl == pytest.approx(pos.entry * 0.99, abs=0.1)
    assert pos.tp == pytest.approx(pos.entry * 1.02, abs=0.1)
    await h.engine.shutdown()
    h2 = Harness(db_path, [])
    await h2.engine.start()
    assert h2.engine.settings.preset_for(SYMBOL) == "monitor"
    await h2.engine.shutdown()


async def test_actions_are_stamped_when_decided_not_with_an_older_tick(db_path):
    """A tick that waited in the feed while positions were being opened predates the open
    it is evaluated after (the paper demo: five opens, then the ticks queued meanwhile;
    guardian trails and re-targets on the first): its actions carry the engine's time of
    decision, so the action log never lists them before the open they follow."""
    h = Harness(db_path, [], EngineSettings(default_preset="guardian", protect_throttle=0.0))
    await h.engine.start()
    await _tick(h, 60_000.0, 0)
    h.engine.clock = lambda: T0 + 0.75  # the open comes 0.75 s after the last tick
    res = await h.engine.handle(cmd.OpenPosition(SYMBOL, Side.LONG, 0.01, 3, sl=57_600.0,
                                                 tp=64_800.0))
    assert res.ok
    h.engine.clock = lambda: T0 + 1.0
    await h.paper.deliver(Tick(SYMBOL, 60_010.0, T0 + 0.5), h.engine)  # queued before the open
    taken = [e.action for e in h.of(ActionTaken) if e.action.position_id == res.position_id]
    assert taken[0].type is ActionType.OPEN
    assert len(taken) > 1, "guardian decided nothing at the open: the test shows nothing"
    assert [a.ts for a in taken] == [T0 + 0.75] + [T0 + 1.0] * (len(taken) - 1)


async def test_a_due_window_is_built_on_one_tick_and_written_on_the_next(db_path):
    """The tick that finds the written-behind window due builds its chunk's log lines and
    writes nothing; a later tick writes them (two loop steps, not one: `build_behind`)."""
    from pmgui.domain.enums import StopKind
    from pmgui.domain.models import Action

    h = Harness(db_path, [])
    pid = await _open(h)
    store = h.store
    store.flush_behind()
    store.record_action_behind(
        Action(type=ActionType.MOVE_SL, reason=Reason.TRAILING, position_id=pid,
               price=60_000.0, sl=59_100.0, rule="trailing", ts=T0 + 1,
               stop_kind=StopKind.TRAILING), symbol=SYMBOL)
    store._behind_since -= 3600.0  # the window is due (white-box: no waiting)
    store._behind_resume = 0.0
    await _tick(h, 60_000.0, 1)
    assert store.behind == 1 and store._behind_actions[0].__class__ is tuple  # built only
    await _tick(h, 60_000.0, 2)
    assert store.behind == 0
    assert [a["sl"] for a in store.actions(pid) if a["type"] == "move_sl"] == [59_100.0]
    await h.engine.shutdown()


async def test_housekeeping_builds_each_chunk_in_a_step_before_writing_it(db_path, monkeypatch):
    """A housekeeping pass writes what waits behind a chunk at a time; each chunk's log lines
    are built first and the loop handed over before its write (build and write: two steps)."""
    import pmgui.engine.core as core_mod
    from pmgui.domain.enums import StopKind
    from pmgui.domain.models import Action

    h = Harness(db_path, [])
    pid = await _open(h)
    store = h.store
    store.flush_behind()
    store.behind_chunk = 4
    for i in range(6):
        store.record_action_behind(
            Action(type=ActionType.MOVE_SL, reason=Reason.TRAILING, position_id=pid,
                   price=60_000.0, sl=59_100.0 + i, rule="trailing", ts=T0 + 1 + i,
                   stop_kind=StopKind.TRAILING), symbol=SYMBOL)
    store._behind_since -= 3600.0  # the window is due (white-box: no waiting)
    steps: list[str] = []
    real_yield, real_flush = core_mod.let_due_work_first, store.flush_behind

    async def handed_over() -> None:
        steps.append("yield")
        await real_yield()

    def flush(older_than: float = 0.0) -> int:
        built = sum(r.__class__ is tuple for r in store._behind_actions[:store.behind_chunk])
        n = real_flush(older_than)
        if n:
            steps.append(f"write {n} built {built}")
        return n

    monkeypatch.setattr(core_mod, "let_due_work_first", handed_over)
    monkeypatch.setattr(store, "flush_behind", flush)
    await h.engine.periodic()
    writes = [i for i, s in enumerate(steps) if s.startswith("write")]
    assert [steps[i] for i in writes] == ["write 4 built 4", "write 2 built 2"]
    assert all(steps[i - 1] == "yield" for i in writes)
    monkeypatch.undo()
    assert [a["sl"] for a in store.actions(pid) if a["type"] == "move_sl"] == \
        [59_100.0 + i for i in range(5, -1, -1)]
    await h.engine.shutdown()


def _row_sl(db_path, pid: str) -> float | None:
    """The stop in the position's row as it is on disk (no replay)."""
    import sqlite3

    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT sl FROM positions WHERE id = ?", (pid,)).fetchone()[0]
    finally:
        conn.close()


async def test_trailing_moves_rewrite_no_row_yet_every_reader_gets_the_last_one(db_path):
    """A rule's level move is logged (behind) but its row is rewritten only with the next
    save: on disk the row keeps an older stop, and whoever loads the position — another
    process now, the engine after a crash — gets the last move, replayed from the log."""
    settings = EngineSettings(default_preset="manual", protect_on_exchange=False,
                              overrides={"trailing.enabled": True, "trailing.mode": "fixed",
                                         "trailing.distance": 0.01})
    h = Harness(db_path, [], settings)
    pid = await _open(h, sl=58_000.0, tp=70_000.0)
    h.store.flush_behind()
    before = _row_sl(db_path, pid)
    for i, p in enumerate([60_500.0, 61_000.0, 61_400.0], start=1):
        await _tick(h, p, i)
    sl = h.engine.positions[pid].sl
    assert sl == pytest.approx(61_400.0 * 0.99, abs=0.1)
    moves = [e for e in h.of(ActionTaken) if e.action.type is ActionType.MOVE_SL]
    assert len(moves) == 3
    h.store.flush_behind()  # the window's write: the log lines, no row
    assert _row_sl(db_path, pid) == before != sl
    with Store.open(db_path, readonly=True) as reader:
        got = reader.load_position(pid)
        assert (got.sl, got.trailing) == (sl, sl)
    await h.engine.shutdown()  # the shutdown saves the book: the row holds it now
    assert _row_sl(db_path, pid) == sl


async def test_an_order_placed_after_moves_lands_with_the_levels_it_was_placed_at(db_path):
    """The exchange stop re-placed after a trailing move is journaled together with the
    position's row at the new stop (not only its log line): an order is never on disk
    without the levels it was placed at."""
    settings = EngineSettings(default_preset="manual", protect_throttle=0.0,
                              overrides={"trailing.enabled": True, "trailing.mode": "fixed",
                                         "trailing.distance": 0.01})
    h = Harness(db_path, [], settings)
    pid = await _open(h, sl=58_000.0, tp=70_000.0)
    await _tick(h, 61_000.0, 1)
    sl = h.engine.positions[pid].sl
    stops = [o for o in await h.paper.fetch_open_orders(SYMBOL) if o.type.value == "stop_market"]
    assert len(stops) == 1 and stops[0].trigger_price == pytest.approx(sl)
    assert _row_sl(db_path, pid) == sl  # no window written: the order's commit carried it
    await h.engine.shutdown()


async def test_a_symbols_new_overrides_reach_its_open_positions_now_not_after_a_restart(
        db_path):
    """A symbol's overrides are under its open positions' own: the running engine kept
    their old rules (cached) until a restart, which then changed them behind the trader's
    back. They follow at once now, and the exchange orders are re-aligned."""
    h = Harness(db_path, [])
    pid = await _open(h)
    rt = h.engine.book.runtime(pid)
    assert h.engine.params(rt.position)["trailing.distance"] != 0.031
    await h.engine.handle(cmd.SetSymbolRules(SYMBOL, None, {"trailing.distance": 0.031}))
    assert h.engine.params(rt.position)["trailing.distance"] == 0.031
    assert rt.protect_dirty
    await h.engine.shutdown()
    h2 = Harness(db_path, [])  # the same after a restart
    await h2.engine.start()
    rt2 = h2.engine.book.runtime(pid)
    assert h2.engine.params(rt2.position)["trailing.distance"] == 0.031
    await h2.engine.shutdown()
