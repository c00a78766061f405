"""Audit of per-tranche protective orders (pmgui/engine/protection.py): the real engine over
the real paper exchange on a real SQLite file, the `monitor` preset (seed 002 tranches)."""

from __future__ import annotations

import pytest

from pmgui.domain.enums import ActionType, OrderType, Protection, Reason, Side
from pmgui.domain.models import Action, Market, Tick
from pmgui.engine import commands as cmd
from pmgui.engine.core import EngineCore
from pmgui.engine.outbox import Outbox
from pmgui.engine.settings import EngineSettings
from pmgui.exchange.paper import PaperExchange
from pmgui.store.db import Store

SYMBOL = "BTC/USDT:USDT"
T0 = 1_700_000_000.0
# the minimum order (0.01) is ten amount steps (0.001)
COARSE = Market(SYMBOL, tick_size=0.1, amount_step=0.001, min_amount=0.01, min_notional=5.0)


async def _stops(paper: PaperExchange) -> list[tuple[float, float]]:
    return sorted((o.trigger_price, o.amount) for o in await paper.fetch_open_orders(SYMBOL)
                  if o.type is OrderType.STOP_MARKET)


async def test_a_refused_tranche_stop_does_not_strip_the_stop_that_still_protects_it(db_path):
    """Two tranches (0.02 from 60 000, 0.01 added at 60 600), then half closed: the oldest
    tranche keeps 0.005, below the venue's minimum order, so its own new stop is refused.
    The stop that protected it until then (0.02 at its level, reduce-only) must stay: the
    engine cancelled it anyway, leaving that part with no stop on the exchange."""
    store = Store.open(db_path)
    paper = PaperExchange({SYMBOL: COARSE}, None, realtime=False, db=store.db)
    engine = EngineCore(paper, store, Outbox(),
                        EngineSettings(default_preset="monitor", protect_throttle=0.0),
                        clock=paper.now)
    await engine.start()
    await paper.deliver(Tick(SYMBOL, 60_000.0, T0), engine)
    res = await engine.handle(cmd.OpenPosition(SYMBOL, Side.LONG, 0.02, 5, preset="monitor"))
    pid = res.position_id
    await paper.deliver(Tick(SYMBOL, 60_600.0, T0 + 1), engine)
    assert await engine.execute(Action(ActionType.ADD, Reason.MANUAL, pid, 60_600.0, qty=0.01,
                                       rule="manual", ts=T0 + 1))
    await paper.deliver(Tick(SYMBOL, 60_610.0, T0 + 2), engine)
    before = await _stops(paper)
    assert [qty for _, qty in before] == [pytest.approx(0.02), pytest.approx(0.01)]
    (first_sl, _), (second_sl, _) = before
    closed = await engine.handle(cmd.ClosePosition(pid, 0.5))
    assert closed.ok, closed.message
    pos = engine.positions[pid]
    assert [t.qty for t in pos.tranches] == [pytest.approx(0.005), pytest.approx(0.01)]
    await paper.deliver(Tick(SYMBOL, 60_620.0, T0 + 3), engine)
    await engine.periodic()
    stops = await _stops(paper)
    # the first tranche's 0.005 is still guarded on the exchange at its level
    assert any(trigger == first_sl and qty >= 0.005 - 1e-9 for trigger, qty in stops), stops
    assert (second_sl, pytest.approx(0.01)) in stops
    # and the price falling through both levels leaves nothing open
    await paper.deliver(Tick(SYMBOL, second_sl - 10.0, T0 + 4), engine)
    await paper.deliver(Tick(SYMBOL, first_sl - 10.0, T0 + 5), engine)
    assert await paper.fetch_positions() == []
    assert pid not in engine.positions
    await engine.shutdown()


async def test_a_preset_change_realigns_the_exchange_orders_and_the_badge(db_path):
    """A tranched position (`monitor`: one SL/TP per tranche) switched to `manual` by the
    trader: its levels are now the position's, one SL and one TP for all of it. The engine
    changed the preset and left the per-tranche orders on the exchange for good: the badge
    said "local only" while nothing ever re-placed them."""
    store = Store.open(db_path)
    paper = PaperExchange({SYMBOL: COARSE}, None, realtime=False, db=store.db)
    engine = EngineCore(paper, store, Outbox(),
                        EngineSettings(default_preset="monitor", protect_throttle=0.0),
                        clock=paper.now)
    await engine.start()
    await paper.deliver(Tick(SYMBOL, 60_000.0, T0), engine)
    pid = (await engine.handle(cmd.OpenPosition(SYMBOL, Side.LONG, 0.02, 5,
                                                preset="monitor"))).position_id
    await paper.deliver(Tick(SYMBOL, 60_600.0, T0 + 1), engine)
    assert await engine.execute(Action(ActionType.ADD, Reason.MANUAL, pid, 60_600.0, qty=0.01,
                                       rule="manual", ts=T0 + 1))
    await paper.deliver(Tick(SYMBOL, 60_610.0, T0 + 2), engine)
    assert len(await _stops(paper)) == 2  # one per tranche
    res = await engine.handle(cmd.SetPreset(pid, "manual"))
    assert res.ok
    await paper.deliver(Tick(SYMBOL, 60_620.0, T0 + 3), engine)
    await engine.periodic()
    pos = engine.positions[pid]
    assert await _stops(paper) == [(pos.sl, pytest.approx(0.03))]
    assert engine.protection(pos) is Protection.ON_EXCHANGE
    await engine.shutdown()
