"""Seed-derived scenarios, one preset at a time, through the full policy."""

from __future__ import annotations

import pytest

from pmgui.domain import money
from pmgui.domain.enums import ActionType, Reason, Side, StopKind
from pmgui.domain.models import Tranche
from pmgui.rules.params import resolve_params
from pmgui.rules.policy import evaluate, indicator_spec, initial_targets, params_for
from tests.rules_support import MARKET, mkt, pos, step

L, S = Side.LONG, Side.SHORT


def test_guardian_seed_000():
    g = resolve_params("guardian")
    # emergency: 10x long, −1.5% price → −15% ROI (plus fees): excessive loss, over the SL
    p = pos(L, leverage=10, fee=0.0005, sl=97.0)
    [a] = evaluate(p, mkt(98.5), g)
    assert a.reason is Reason.EMERGENCY_STOP_EXCESSIVE_LOSS
    # smart TP: 20% price move always takes profit, even with TP far away
    [b] = evaluate(pos(S, tp=50.0, sl=110.0), mkt(80.0), g)
    assert b.reason is Reason.SMART_TAKE_PROFIT and b.inputs["tier"] == "always"
    # 8% move and TP 3.7% away → take profit (tier 3); TP 2.8% away → keep
    assert evaluate(pos(L, tp=112.0), mkt(108.0), g)[-1].reason is Reason.SMART_TAKE_PROFIT
    assert all(x.reason is not Reason.SMART_TAKE_PROFIT
               for x in evaluate(pos(L, tp=111.0), mkt(108.0), g))
    # momentum loss: peak 20% ROI at 5x, now 9% → 55% given back
    price = money.price_at_roi(L, 100.0, 0.09, 5, 0.0005)
    [c] = [x for x in evaluate(pos(L, leverage=5, fee=0.0005, peak_roi=0.20), mkt(price), g)
           if x.is_closing]
    assert c.reason is Reason.MOMENTUM_LOSS
    # adaptive trailing at 12% ROI (10x) with high volatility: 0.02·1.3·0.5 = 1.3%
    [d] = evaluate(pos(L, leverage=10, best_price=101.2), mkt(101.2, volatility=0.04), g)
    assert d.type is ActionType.MOVE_SL and d.inputs["distance"] == pytest.approx(0.013)
    # dynamic TP frozen at ≥ 70% progress even on strong momentum
    strong = {"momentum": 0.05, "trend": 0.01}
    assert [x for x in evaluate(pos(L, tp=104.0, sl=99.99), mkt(102.8, **strong), g)
            if x.type is ActionType.MOVE_TP] == []
    [e] = [x for x in evaluate(pos(L, tp=110.0, sl=99.99), mkt(102.0, **strong), g)
           if x.type is ActionType.MOVE_TP]
    assert e.tp == pytest.approx(112.5)


def test_breakout_seed_001():
    b = resolve_params("breakout")
    assert indicator_spec(b).ema_period == 9 and indicator_spec(b).atr_period == 22
    ind = {"atr": 1.0, "highest_high": 112.0, "lowest_low": 95.0, "ema9": 102.9}
    p = pos(L, qty=4.0, sl=95.0, initial_sl=95.0)  # R = 5
    p, acts = step(p, 102.6, b, **ind)  # 0.52R, 0.29% from the EMA: add-on at the EMA
    [add] = acts
    assert add.type is ActionType.ADD and add.limit and add.qty == 2.0 and add.price == 102.9
    p = p.evolve(qty=4.0)  # the limit did not fill in this test
    p = p.evolve(flags=p.flags - {f for f in p.flags if f.startswith("add_on_open:")})
    p, acts = step(p, 105.0, b, **ind)  # TP1 and, in the same evaluation, breakeven
    assert [x.reason for x in acts] == [Reason.TP1, Reason.BREAKEVEN] and acts[0].qty == 2.0
    assert acts[1].sl == pytest.approx(100.1)
    # chandelier now allowed: 107.5 − 3 = 104.5 trails
    p, acts = step(p, 106.0, b, **{**ind, "highest_high": 107.5})
    assert [x.reason for x in acts] == [Reason.TRAILING] and acts[0].sl == pytest.approx(104.5)
    p, acts = step(p, 110.0, b, **ind)
    assert [x.reason for x in acts] == [Reason.TP2] and acts[0].qty == 1.0
    p, acts = step(p, 110.0, b, **ind)
    assert acts[0].stop_kind is StopKind.TRAILING and acts[0].sl == pytest.approx(109.0)


def test_monitor_seed_002():
    m = resolve_params("monitor")
    assert initial_targets(L, 50000.0, m, MARKET) == (49500.0, 51000.0)
    assert initial_targets(S, 50000.0, m, MARKET) == (50500.0, 49000.0)
    ov = resolve_params("monitor", {"stop_loss.pct": 0.02, "take_profit.pct": 0.05})
    assert initial_targets(L, 100.0, ov, MARKET) == (98.0, 105.0)
    p = pos(L, sl=99.0, tp=102.0)
    assert evaluate(p, mkt(101.99), m) == []
    [a] = evaluate(p, mkt(102.5), m)  # spike past TP: instant close at market
    assert a.reason is Reason.TAKE_PROFIT and a.type is ActionType.CLOSE
    t = (Tranche(id="t1", qty=1.0, entry=100.0, opened_at=0.0, sl=99.0, tp=102.0),
         Tranche(id="t2", qty=1.0, entry=101.0, opened_at=5.0, sl=99.99, tp=103.02))
    tp_ = pos(L, qty=2.0, entry=100.5, sl=99.0, tp=103.02, tranches=t)
    [r] = evaluate(tp_, mkt(102.1), m)
    assert r.type is ActionType.REDUCE and r.qty == 1.0 and r.flags == {"tranche_closed:t1"}


def test_active_seed_004():
    a = resolve_params("active")
    # +1.5% at 10x = 15% ROI after 45 min: book 50%
    acts = evaluate(pos(L, leverage=10, qty=2.0), mkt(101.6, ts=45 * 60.0), a)
    [book] = [x for x in acts if x.is_closing]
    assert book.reason is Reason.PROFIT_BOOKING and book.qty == 1.0
    # 25% at any age: 75%
    acts = evaluate(pos(L, leverage=10, qty=2.0), mkt(102.6, ts=60.0), a)
    [book2] = [x for x in acts if x.is_closing]
    assert book2.qty == 1.5 and book2.flags == {"booked_50", "booked_75"}
    # 10% ROI at 2x = 5% move: breakeven+ stop where ROI = +2% (a 1% move at 2x, no fees;
    # trailing at 2% is tighter: 102.9)
    acts = evaluate(pos(L, leverage=2, sl=95.0, best_price=105.0), mkt(105.0, ts=60.0), a)
    assert [x.reason for x in acts] == [Reason.BREAKEVEN, Reason.TRAILING]
    assert acts[0].sl == pytest.approx(101.0) and "breakeven_set" in acts[0].flags
    assert acts[1].sl == pytest.approx(102.9)
    # scaling: 6% ROI, 3% momentum, 500k volume, 5 min old → add 25%
    acts = evaluate(pos(L, leverage=3, sl=97.0, best_price=102.0),
                    mkt(102.0, ts=300.0, momentum=0.03, volume=5e5), a)
    assert [x.type for x in acts] == [ActionType.MOVE_SL, ActionType.ADD]
    assert acts[-1].reason is Reason.SCALING and acts[-1].qty == 0.25
    # time tightening: 3 h old and profitable → trailing 1.8%
    [tt] = evaluate(pos(L, best_price=101.0), mkt(101.0, ts=3 * 3600.0), a)
    assert tt.inputs["distance"] == pytest.approx(0.018)


def test_manual_only_sl_tp():
    m = resolve_params("manual")
    p = pos(L, leverage=50, sl=90.0, tp=130.0, peak_roi=5.0)
    assert evaluate(p, mkt(95.0, momentum=0.1, volume=1e9, ema9=95.0), m) == []  # −250% ROI
    assert evaluate(p, mkt(125.0), m) == []
    assert evaluate(p, mkt(89.0), m)[0].reason is Reason.STOP_LOSS
    assert initial_targets(L, 100.0, m, MARKET) == (None, None)


def test_params_for_position_overrides_win():
    p = pos(L, preset="guardian", overrides={"trailing.distance": 0.03})
    params = params_for(p, {"trailing.distance": 0.01, "emergency.enabled": False})
    assert params["trailing.distance"] == 0.03 and params.enabled("emergency") is False
