"""Audit of the monitor preset (seed 002) against DESIGN §4: per-tranche TP/SL with instant TP.

A tranche the engine opens without a TP of its own (a position that arrives without levels
and gets the preset's `take_profit.pct` on the position) is protected by the position's TP:
that is the TP order the exchange holds for it (`rules.tranches.effective_tranches`), and it
is the TP the instant-TP rule must close at when the price passes it.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from pmgui.domain.enums import ActionType, Reason, Side
from pmgui.domain.models import MarketState, Tick, Tranche
from pmgui.engine import commands as cmd
from pmgui.engine.settings import EngineSettings
from pmgui.rules.bands import quiet_band, trend_lane
from pmgui.rules.params import resolve_params
from pmgui.rules.policy import evaluate, observe
from pmgui.rules.tranches import effective_tranches
from tests.engine_support import MARKET, SYMBOL, Harness
from tests.rules_support import mkt, pos

T0 = 1_700_000_000.0


async def test_a_monitor_position_opened_without_levels_takes_its_tp_at_once(db_path):
    """The engine opens a monitor long at 60,000 with no SL/TP: the preset gives the
    position SL 59,400 and TP 61,200, its tranche keeps none of its own. A price past the
    TP must close it at market (instant TP, seed 002) as the exchange's TP order would."""
    h = Harness(db_path, [], EngineSettings(default_preset="monitor", protect_throttle=0.0))
    await h.engine.start()
    try:
        await h.paper.deliver(Tick(SYMBOL, 60_000.0, T0), h.engine)
        res = await h.engine.handle(cmd.OpenPosition(SYMBOL, Side.LONG, 0.1, 5,
                                                     preset="monitor"))
        assert res.ok
        opened = h.engine.positions[res.position_id]
        params = h.engine.params(opened)
    finally:
        await h.engine.shutdown()
    assert opened.tp == pytest.approx(61_200.0) and opened.tranches
    # what the exchange is told to hold for the tranche: the position's TP
    assert [t.tp for t in effective_tranches(opened)] == [pytest.approx(61_200.0)]
    state = MarketState(symbol=SYMBOL, price=61_250.0, ts=T0 + 5, market=MARKET)
    acts = evaluate(observe(opened, 61_250.0), state, params)
    closing = [a for a in acts if a.is_closing]
    assert len(closing) == 1, acts
    assert closing[0].reason is Reason.TAKE_PROFIT
    assert closing[0].qty == pytest.approx(opened.qty)


@pytest.mark.parametrize("side", [Side.LONG, Side.SHORT])
def test_a_tranche_without_a_tp_of_its_own_exits_at_the_positions_tp(side):
    """Two tranches: one with its own TP, one without. Past the position's TP (short of the
    first tranche's) only the second is taken; past both, both."""
    d = side.dir
    m = resolve_params("monitor")
    t = (Tranche(id="t1", qty=1.0, entry=100.0, opened_at=0.0, sl=100 - d * 1.0,
                 tp=100 + d * 4.0),
         Tranche(id="t2", qty=0.5, entry=100.0, opened_at=1.0, sl=100 - d * 1.0, tp=None))
    p = pos(side, qty=1.5, sl=100 - d * 1.0, tp=100 + d * 2.0, tranches=t)
    assert evaluate(p, mkt(100 + d * 1.9), m) == []
    [r] = evaluate(p, mkt(100 + d * 2.1), m)
    assert r.type is ActionType.REDUCE and r.reason is Reason.TAKE_PROFIT
    assert r.qty == pytest.approx(0.5) and r.flags == {"tranche_closed:t2"}
    [c] = evaluate(p, mkt(100 + d * 4.2), m)
    assert c.type is ActionType.CLOSE and c.qty == pytest.approx(1.5)
    # the trend lane (ticks beyond the best price that run trailing and the stop alone)
    # ends at the position's TP, and the quiet band at the best price before it
    at = observe(p, 100 + d * 1.0)
    lane = trend_lane(at, mkt(100 + d * 1.0), m)
    assert lane is not None and lane.holds(100 + d * 1.5, 1.0)
    assert not lane.holds(100 + d * 2.0, 1.0) and not lane.holds(100 + d * 2.1, 1.0)
    band = quiet_band(at, mkt(100 + d * 1.0), m)
    assert band is not None and not band.holds(100 + d * 2.0, 1.0)
    # without take_profit on, the position's TP is not the tranche's: nothing closes there
    off = resolve_params("monitor", {"take_profit.enabled": False})
    assert evaluate(replace(p, tp=100 + d * 2.0), mkt(100 + d * 2.1), off) == []
