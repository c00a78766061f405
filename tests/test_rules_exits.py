"""Emergency stops, smart profit taking, momentum loss, tranches, scale-out and priorities."""

from __future__ import annotations

import pytest

from pmgui.domain import money
from pmgui.domain.enums import ActionType, Reason, Side, StopKind
from pmgui.domain.errors import ValidationError
from pmgui.domain.models import Market, Tranche
from pmgui.rules.params import resolve_params
from pmgui.rules.policy import evaluate, scale_out
from tests.rules_support import MARKET, mkt, pos, rules_only

L, S = Side.LONG, Side.SHORT
FEE = 0.0005


def _price_for_roi(side, roi, lev, fee=FEE, entry=100.0):
    p = money.price_at_roi(side, entry, roi, lev, fee)
    assert p is not None
    return p


# Emergency ---------------------------------------------------------------------------------

@pytest.mark.parametrize("side", [L, S])
@pytest.mark.parametrize(("roi", "reason"), [
    (-0.1499, None),
    (-0.15, Reason.EMERGENCY_STOP_EXCESSIVE_LOSS),
    (-0.2499, Reason.EMERGENCY_STOP_EXCESSIVE_LOSS),
    (-0.25, Reason.EMERGENCY_STOP_SEVERE_LOSS),
    (-0.3999, Reason.EMERGENCY_STOP_SEVERE_LOSS),
    (-0.40, Reason.EMERGENCY_STOP_LIQUIDATION_RISK),
    (-0.9, Reason.EMERGENCY_STOP_LIQUIDATION_RISK),
])
def test_emergency_tiers_with_leverage_and_fees(side, roi, reason):
    params = rules_only("emergency")
    # aim a hair inside the tier so float rounding of the price cannot cross the boundary
    target = roi - 1e-9 if reason is not None else roi + 1e-9
    price = _price_for_roi(side, target, 10)
    p = pos(side, leverage=10, fee=FEE)
    acts = evaluate(p, mkt(price), params)
    if reason is None:
        assert acts == []
    else:
        [a] = acts
        assert a.type is ActionType.CLOSE and a.reason is reason and a.priority == 1
        assert a.qty == p.qty and a.inputs["roi"] == pytest.approx(roi, abs=1e-6)


def test_emergency_fee_makes_the_difference():
    # 10x long, price −1.45%: −14.5% without fees, −15.5…% with 5 bp per side → tier 3
    p_nofee = pos(L, leverage=10, fee=0.0)
    p_fee = pos(L, leverage=10, fee=FEE)
    params = rules_only("emergency")
    assert evaluate(p_nofee, mkt(98.55), params) == []
    [a] = evaluate(p_fee, mkt(98.55), params)
    assert a.reason is Reason.EMERGENCY_STOP_EXCESSIVE_LOSS


# Smart profit taking -----------------------------------------------------------------------

@pytest.mark.parametrize("side", [L, S])
@pytest.mark.parametrize(("move", "tp_dist", "fires", "tier"), [
    (0.20, 0.0, True, "always"),
    (0.1999, 0.0201, True, "t1"),
    (0.15, 0.0201, True, "t1"),
    (0.15, 0.02, False, None),       # d must be strictly greater
    (0.1499, 0.0201, True, "t2"),    # still ≥ .10 with d > .02
    (0.10, 0.0201, True, "t2"),
    (0.0999, 0.0301, True, "t3"),
    (0.0999, 0.03, False, None),
    (0.08, 0.0301, True, "t3"),
    (0.0799, 0.0501, True, "t4"),
    (0.0799, 0.05, False, None),
    (0.05, 0.0501, True, "t4"),
    (0.0499, 0.5, False, None),
    (0.05, None, True, "t4"),        # no TP: distance is infinite
    (0.0499, None, False, None),
])
def test_smart_tp_tiers(side, move, tp_dist, fires, tier):
    d = side.dir
    price = 100.0 * (1 + d * move)
    tp = None if tp_dist is None else price * (1 + d * tp_dist)
    # nudge so that float error cannot put the boundary on the wrong side
    if tp is not None:
        tp += d * (1e-9 if fires else -1e-9) * price
    price_adj = price + d * (1e-9 if fires else -1e-9) if move in (0.20, 0.15, 0.10, 0.08,
                                                                   0.05) else price
    params = rules_only("smart_tp")
    acts = evaluate(pos(side, tp=tp, leverage=3, fee=FEE), mkt(price_adj), params)
    if fires:
        [a] = acts
        assert a.reason is Reason.SMART_TAKE_PROFIT and a.type is ActionType.CLOSE
        assert a.inputs["tier"] == tier and a.priority == 4
    else:
        assert acts == []


# Momentum loss -----------------------------------------------------------------------------

@pytest.mark.parametrize("side", [L, S])
@pytest.mark.parametrize(("peak", "roi", "fires", "test"), [
    (0.0299, -0.5, False, None),            # peak below 3%: not watched
    (0.03, 0.0150 - 1e-9, True, "giveback"),  # exactly 50% given back
    (0.03, 0.0151, False, None),            # 49.7% given back, roi below the band
    (0.40, 0.2001, False, None),            # 49.97%, roi above the band
    (0.40, 0.20 - 1e-9, True, "giveback"),
    (0.20, 0.14 - 1e-9, True, "band"),      # 30% given back, roi 14% inside [3%, 15%]
    (0.20, 0.1401, False, None),            # 29.95%
    (0.20, 0.15, False, None),              # 25% given back, band needs 30%
    (0.10, 0.07 - 1e-9, True, "band"),
    (0.10, 0.0701, False, None),
    (0.05, 0.03 + 1e-9, True, "band"),      # 40% give-back at the band's lower edge
    (0.05, 0.0299, False, None),            # below the band and under 50%: no exit
    (0.25, 0.15 - 1e-9, True, "band"),      # band's upper edge, 40% given back
    (0.25, 0.1501, False, None),            # just above the band, 39.96%
])
def test_momentum_loss(side, peak, roi, fires, test):
    lev = 10
    price = _price_for_roi(side, roi, lev)
    p = pos(side, leverage=lev, fee=FEE, peak_roi=peak)
    acts = evaluate(p, mkt(price), rules_only("momentum_loss"))
    if fires:
        [a] = acts
        assert a.reason is Reason.MOMENTUM_LOSS and a.inputs["test"] == test
        assert a.inputs["peak"] == peak and a.priority == 5
    else:
        assert acts == []


# Tranches ----------------------------------------------------------------------------------

def _tranched(side=L):
    ts = (Tranche(id="a", qty=1.0, entry=100.0, opened_at=0.0, sl=99.0, tp=102.0),
          Tranche(id="b", qty=0.5, entry=101.0, opened_at=10.0, sl=99.99, tp=103.02))
    if side is S:
        ts = (Tranche(id="a", qty=1.0, entry=100.0, opened_at=0.0, sl=101.0, tp=98.0),
              Tranche(id="b", qty=0.5, entry=99.0, opened_at=10.0, sl=99.99, tp=97.02))
    return pos(side, qty=1.5, entry=100.333, tranches=ts)


def test_tranche_stop_reduces_only_that_tranche():
    p = _tranched()
    params = rules_only("tranches", "take_profit")
    assert evaluate(p, mkt(100.5), params) == []
    [a] = evaluate(p, mkt(99.99), params)
    assert a.type is ActionType.REDUCE and a.qty == 0.5 and a.reason is Reason.STOP_LOSS
    assert a.flags == frozenset({"tranche_closed:b"}) and a.rule == "tranches"
    [b] = evaluate(p, mkt(98.0), params)  # both tranches: the whole position
    assert b.type is ActionType.CLOSE and b.qty == 1.5
    [c] = evaluate(p, mkt(102.0), params)
    assert c.type is ActionType.REDUCE and c.qty == 1.0 and c.reason is Reason.TAKE_PROFIT
    assert c.flags == frozenset({"tranche_closed:a"})


def test_tranche_short_and_paused_protection():
    p = _tranched(S).evolve(automation=False)
    params = rules_only("tranches", "take_profit")
    [a] = evaluate(p, mkt(99.99), params)
    assert a.type is ActionType.REDUCE and a.qty == 0.5 and a.reason is Reason.STOP_LOSS
    [b] = evaluate(p, mkt(97.5), params)
    assert b.type is ActionType.REDUCE and b.qty == 1.0 and b.reason is Reason.TAKE_PROFIT


def test_position_stop_outranks_tranche_stop():
    p = _tranched().evolve(sl=99.5)
    [a] = evaluate(p, mkt(99.4), rules_only("stop_loss", "tranches"))
    assert a.type is ActionType.CLOSE and a.rule == "stop_loss"


# Scale-out ---------------------------------------------------------------------------------

def test_scale_out_seed_rules():
    m = Market(symbol="X", tick_size=0.1, amount_step=0.01, min_amount=0.05)
    assert scale_out(0.237, 1.0, m) == (0.23, False)      # floored to the step
    assert scale_out(0.02, 1.0, m) == (0.05, False)       # raised to the minimum
    assert scale_out(0.02, 0.05, m) == (0.05, True)       # raised to the minimum = all
    assert scale_out(0.02, 0.04, m) == (0.04, True)       # minimum beyond the position
    assert scale_out(1.5, 1.0, m) == (1.0, True)          # never more than the position
    assert scale_out(0.999, 1.0, m) == (0.99, False)
    no_min = Market(symbol="X", tick_size=0.1, amount_step=0.01)
    assert scale_out(0.004, 1.0, no_min) == (0.01, False)  # below one step → one step
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValidationError):
            scale_out(bad, 1.0, m)
    with pytest.raises(ValidationError):
        scale_out(0.1, 0.0, m)


# Priority conflicts ------------------------------------------------------------------------

def test_emergency_and_tp1_on_the_same_tick():
    # 100x long with the initial SL 0.2% away: 1R = 0.2%; a fee-heavy position can be at −15%
    # ROI while pnl_r ≥ 1: choose a case where both fire (fees dominate).
    p = pos(L, leverage=100, fee=0.002, initial_sl=99.9, sl=None)  # R = 0.1
    price = 100.1  # pnl_r = 1.0; roi = 100·(0.1 − 0.002·200.1)/100 = −0.30
    params = resolve_params("breakout", {"emergency.enabled": True})
    acts = evaluate(p, mkt(price), params)
    assert [a.reason for a in acts] == [Reason.EMERGENCY_STOP_SEVERE_LOSS]


def test_stop_hit_suppresses_lower_priority_moves_and_partials():
    p = pos(L, sl=99.0, initial_sl=99.0, best_price=120.0)
    params = rules_only("stop_loss", "r_targets", "trailing", "add_on")
    acts = evaluate(p, mkt(98.9, ema9=98.9), params)
    assert [a.type for a in acts] == [ActionType.CLOSE]


def test_partial_with_earlier_adjustments_only():
    # TP1 (priority 6) on the same tick as a trailing move (7) and an add (9): only TP1 and
    # the breakeven move that rides with it (after it, same evaluation)
    p = pos(L, sl=95.0, initial_sl=95.0)
    params = rules_only("stop_loss", "r_targets", "trailing", trailing__distance=0.01)
    acts = evaluate(p, mkt(105.0), params)
    assert [a.reason for a in acts] == [Reason.TP1, Reason.BREAKEVEN]
    assert acts[1].sl == pytest.approx(100.1) and acts[1].inputs["follows"] == "tp1"


@pytest.mark.parametrize("side", [L, S])
def test_stop_moves_on_one_tick_only_tighten_in_order(side):
    # breakeven+ and trailing on one tick: both reported, loosest first
    d = side.dir
    p = pos(side, sl=100.0 - d * 10, best_price=100.0 + d * 15)
    params = rules_only("breakeven_plus", "trailing", trailing__distance=0.02)
    acts = evaluate(p, mkt(100.0 + d * 15), params)
    assert [a.reason for a in acts] == [Reason.BREAKEVEN, Reason.TRAILING]
    assert acts[0].sl == pytest.approx(100.0 + d * 2) and "breakeven_set" in acts[0].flags
    trail = 115.0 * 0.98 if side is L else 85.0 * 1.02
    assert acts[1].sl == pytest.approx(trail) and acts[1].stop_kind is StopKind.TRAILING
    # the same level from two rules: one move, both flags; a looser one after a tighter: dropped
    from pmgui.domain.models import Action
    from pmgui.rules.policy import select

    def mv(sl, reason, flags=()):
        return Action(type=ActionType.MOVE_SL, reason=reason, position_id="p1", price=100.0,
                      sl=sl, priority=7, flags=frozenset(flags))

    out = select([mv(100.0 - d, Reason.BREAKEVEN, {"breakeven_set"}),
                  mv(100.0 - d, Reason.TRAILING, {"x"}), mv(100.0 - 2 * d, Reason.TRAILING)],
                 side)
    assert [(a.sl, a.reason) for a in out] == [(100.0 - 2 * d, Reason.TRAILING),
                                               (100.0 - d, Reason.BREAKEVEN)]
    assert out[1].flags == {"breakeven_set", "x"}


def test_every_action_explains_itself():
    p = pos(L, sl=95.0, tp=130.0, leverage=5, fee=FEE, peak_roi=0.5)
    params = resolve_params("guardian")
    [a] = evaluate(p, mkt(106.0, volatility=0.02, momentum=0.01, rsi=60.0), params)
    for key in ("price", "roi", "peak", "move"):
        assert key in a.inputs
    assert a.rule and a.reason and a.priority and a.position_id == "p1" and a.ts == 1.0


def test_closes_never_exceed_the_position():
    p = pos(L, qty=0.003, initial_qty=0.01, initial_sl=95.0)
    [a] = evaluate(p, mkt(105.0), rules_only("r_targets"))
    assert a.type is ActionType.CLOSE and a.qty == 0.003  # 50% of 0.01 > what is left
    assert MARKET.min_amount == 0.001


def test_thresholds_met_exactly_by_prices():
    # a threshold that holds on paper holds despite float error (and a strict one does not)
    # d = (110.25 − 105)/105 = 0.05 exactly on paper: "d > 5%" is false, tier 4 stays quiet
    assert evaluate(pos(L, tp=110.25), mkt(105.0), rules_only("smart_tp")) == []
    # progress (102.8 − 100)/(104 − 100) = 0.7 on paper (0.69999… in floats): frozen
    assert evaluate(pos(L, tp=104.0), mkt(102.8, momentum=0.1, trend=0.1),
                    rules_only("dynamic_tp")) == []
    # ROI 10·(103.3 − 100)/100 = 33%, peak 66%: exactly 50% given back
    [a] = evaluate(pos(L, leverage=10, peak_roi=0.66), mkt(103.3), rules_only("momentum_loss"))
    assert a.reason is Reason.MOMENTUM_LOSS


def test_tranche_helpers():
    from pmgui.rules.tranches import order_groups, reduce_tranches, tranche_levels

    m = resolve_params("monitor")
    assert tranche_levels(L, 101.0, m, MARKET) == (99.99, 103.02)
    assert tranche_levels(S, 100.0, m, MARKET) == (101.0, 98.0)
    assert tranche_levels(L, 100.0, resolve_params("manual"), MARKET) == (None, None)
    with pytest.raises(ValidationError):
        tranche_levels(L, float("nan"), m, MARKET)
    ts = (Tranche(id="a", qty=1.0, entry=100.0, opened_at=0.0, sl=99.0, tp=102.0),
          Tranche(id="b", qty=0.5, entry=100.005, opened_at=1.0, sl=99.01, tp=102.01),
          Tranche(id="c", qty=0.25, entry=101.0, opened_at=2.0, sl=99.99, tp=103.02))
    groups = order_groups(ts, 0.01)
    assert [g.tranche_ids for g in groups] == [("a", "b"), ("c",)]
    assert groups[0].qty == 1.5 and groups[0].sl == 99.0
    assert [g.tranche_ids for g in order_groups(ts, 0.001)] == [("a",), ("b",), ("c",)]
    # a flagged tranche goes first and whole; the rest is FIFO
    left = reduce_tranches(ts, 0.25, frozenset({"tranche_closed:c"}))
    assert [(t.id, t.qty) for t in left] == [("a", 1.0), ("b", 0.5)]
    left = reduce_tranches(ts, 1.2)
    assert [(t.id, t.qty) for t in left] == [("b", pytest.approx(0.3)), ("c", 0.25)]
    # a flagged tranche is not hit twice while the engine catches up
    p = _tranched().evolve(flags=frozenset({"tranche_closed:b"}))
    assert evaluate(p, mkt(99.99), rules_only("tranches")) == []


def test_the_emergency_caps_still_close_a_paused_position():
    """DESIGN §4: emergency stops override everything. A trader who paused a guardian
    position's rules to manage it by hand was left without the loss caps: at -30 % ROI the
    position stayed open until its stop (or liquidation)."""
    for side, price in ((Side.LONG, 97.0), (Side.SHORT, 103.0)):
        p = pos(side, leverage=10.0, sl=90.0 if side is Side.LONG else 110.0,
                automation=False)
        [a] = evaluate(p, mkt(price), resolve_params("guardian"))
        assert a.type is ActionType.CLOSE and a.reason is Reason.EMERGENCY_STOP_SEVERE_LOSS
    # the trader's other rules stay paused: no smart take-profit
    p = pos(leverage=10.0, tp=200.0, automation=False)
    assert evaluate(p, mkt(125.0), resolve_params("guardian")) == []
