"""Audit of the trader's closes (pmgui/engine/manual.py, `EngineCore.reduce`): the real
engine over the real paper exchange on a real SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from pmgui.domain.enums import OrderType, Side
from pmgui.domain.models import Market, Tick
from pmgui.engine import commands as cmd
from pmgui.engine.core import EngineCore
from pmgui.engine.outbox import Outbox
from pmgui.engine.settings import EngineSettings
from pmgui.exchange.paper import PaperExchange
from pmgui.store.db import Store

SYMBOL = "BTC/USDT:USDT"
T0 = 1_700_000_000.0
# a market whose minimum order (0.01) is ten amount steps (0.001), as many venues list
COARSE = Market(SYMBOL, tick_size=0.1, amount_step=0.001, min_amount=0.01, min_notional=5.0)


async def _engine(db: Path, market: Market = COARSE) -> tuple[EngineCore, PaperExchange]:
    store = Store.open(db)
    paper = PaperExchange({SYMBOL: market}, None, realtime=False, db=store.db)
    engine = EngineCore(paper, store, Outbox(),
                        EngineSettings(default_preset="manual", protect_throttle=0.0),
                        clock=paper.now)
    await engine.start()
    await paper.deliver(Tick(SYMBOL, 60_000.0, T0), engine)
    return engine, paper


async def test_a_partial_close_never_leaves_a_remainder_below_the_minimum_order(db_path):
    """0.015 open, half asked: 0.0075 is raised to the minimum 0.01, which would leave 0.005
    — a position no order can close or protect (every order of it is below the minimum).
    The close takes all of it instead, and nothing is left on the venue."""
    engine, paper = await _engine(db_path)
    res = await engine.handle(cmd.OpenPosition(SYMBOL, Side.LONG, 0.015, 10, sl=59_000.0,
                                               tp=62_000.0))
    pid = res.position_id
    closed = await engine.handle(cmd.ClosePosition(pid, 0.5))
    assert closed.ok, closed.message
    assert sum(f.qty for f in closed.fills) == pytest.approx(0.015)
    assert pid not in engine.positions
    assert not engine.store.load_position(pid).is_open
    assert await paper.fetch_positions() == []
    assert await paper.fetch_open_orders(SYMBOL) == []
    await engine.shutdown()


async def test_a_partial_close_with_a_closable_remainder_stays_partial(db_path):
    """The other side of the same rule: a remainder at or above the minimum stays open,
    protected on the exchange at its new size."""
    engine, paper = await _engine(db_path)
    res = await engine.handle(cmd.OpenPosition(SYMBOL, Side.SHORT, 0.03, 10, sl=61_000.0,
                                               tp=58_000.0))
    pid = res.position_id
    closed = await engine.handle(cmd.ClosePosition(pid, 0.5))
    assert closed.ok, closed.message
    assert sum(f.qty for f in closed.fills) == pytest.approx(0.015)
    assert engine.positions[pid].qty == pytest.approx(0.015)
    await engine.periodic()
    stops = [o for o in await paper.fetch_open_orders(SYMBOL)
             if o.type is OrderType.STOP_MARKET]
    assert [o.amount for o in stops] == [pytest.approx(0.015)]
    await engine.shutdown()


async def test_a_second_emergency_close_after_the_first_answers_with_the_close(db_path):
    """The emergency close clicked twice, the second arriving after the first was done (a
    double click on a fast venue, or the position's stop filling first): the answer is the
    close that happened, not an error; nothing more is sent."""
    engine, _paper = await _engine(db_path)
    pid = (await engine.handle(cmd.OpenPosition(SYMBOL, Side.LONG, 0.02, 10, sl=59_000.0,
                                                tp=62_000.0))).position_id
    first = await engine.handle(cmd.ClosePosition(pid))
    assert first.ok and pid not in engine.positions
    sent = len(engine.store.linked_orders(pid))
    again = await engine.handle(cmd.ClosePosition(pid))
    assert again.ok and again.position_id == pid
    assert "already closed" in again.message and again.fills == ()
    assert len(engine.store.linked_orders(pid)) == sent  # nothing sent
    await engine.shutdown()


async def test_flatten_of_a_position_closed_by_its_stop_meanwhile_is_no_error(db_path):
    """Flatten lists the open positions, then asks the venue for its positions: a stop
    that fills in that instant closes one of them. The flatten's answer must still say
    everything is flat, not report that position as an error."""
    engine, paper = await _engine(db_path)
    a = (await engine.handle(cmd.OpenPosition(SYMBOL, Side.LONG, 0.02, 10, sl=59_000.0,
                                              tp=62_000.0))).position_id
    fetch = paper.fetch_positions

    async def stop_fills_first(*args: object, **kw: object) -> object:
        paper.fetch_positions = fetch  # once: the venue's stop fills as it is asked
        await paper.deliver(Tick(SYMBOL, 58_900.0, T0 + 1), engine)
        assert a not in engine.positions
        return await fetch(*args, **kw)

    paper.fetch_positions = stop_fills_first  # type: ignore[method-assign]
    res = await engine.handle(cmd.CloseAll())
    assert res.ok, res.message
    assert res.residual == ()
    assert engine.store.load_position(a).exit_reason == "stop_loss"
    await engine.shutdown()
