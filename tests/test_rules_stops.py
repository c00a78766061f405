"""Stop loss, take profit (instant TP), trailing stops (fixed/adaptive/chandelier), breakeven+,
tightening, initial targets, automation pause and price validation."""

from __future__ import annotations

import math

import pytest

from pmgui.domain import money
from pmgui.domain.enums import ActionType, Reason, Side, StopKind
from pmgui.domain.errors import ValidationError
from pmgui.domain.models import Market
from pmgui.rules.params import resolve_params
from pmgui.rules.policy import evaluate, initial_targets, observe, price_is_usable
from tests.rules_support import MARKET, mkt, pos, rules_only, step

L, S = Side.LONG, Side.SHORT


# Stop loss ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("side", "sl", "price", "hit"), [
    (L, 95.0, 95.01, False), (L, 95.0, 95.0, True), (L, 95.0, 90.0, True),
    (S, 105.0, 104.99, False), (S, 105.0, 105.0, True), (S, 105.0, 120.0, True),
])
def test_stop_loss_both_sides(side, sl, price, hit):
    p = pos(side, sl=sl, leverage=10, fee=0.0005)
    acts = evaluate(p, mkt(price), resolve_params("manual"))
    if hit:
        assert len(acts) == 1
        a = acts[0]
        assert a.type is ActionType.CLOSE and a.reason is Reason.STOP_LOSS
        assert a.qty == p.qty and a.rule == "stop_loss" and a.priority == 2
        assert a.inputs["sl"] == sl and a.inputs["price"] == price
    else:
        assert acts == []


@pytest.mark.parametrize(("kind", "reason"), [
    (StopKind.TRAILING, Reason.TRAILING_STOP), (StopKind.BREAKEVEN, Reason.BREAKEVEN_STOP),
    (StopKind.MANUAL, Reason.STOP_LOSS), (StopKind.INITIAL, Reason.STOP_LOSS),
])
def test_stop_reason_follows_sl_kind(kind, reason):
    p = pos(S, sl=101.0, sl_kind=kind)
    [a] = evaluate(p, mkt(101.5), resolve_params("manual"))
    assert a.reason is reason


@pytest.mark.parametrize(("side", "tp", "price", "hit"), [
    (L, 110.0, 109.99, False), (L, 110.0, 110.0, True), (L, 110.0, 125.0, True),
    (S, 90.0, 90.01, False), (S, 90.0, 90.0, True), (S, 90.0, 80.0, True),
])
def test_take_profit_instant(side, tp, price, hit):
    p = pos(side, tp=tp, leverage=5, fee=0.0005)
    acts = evaluate(p, mkt(price), resolve_params("manual"))
    if hit:
        [a] = acts
        assert a.type is ActionType.CLOSE and a.reason is Reason.TAKE_PROFIT
        assert a.qty == p.qty and a.priority == 3 and a.inputs["tp"] == tp
    else:
        assert acts == []


def test_instant_tp_off_leaves_it_to_the_exchange_order():
    p = pos(L, tp=110.0)
    assert evaluate(p, mkt(111.0), resolve_params("manual", {"take_profit.instant": False})) \
        == []


def test_protection_and_the_loss_caps_run_when_automation_paused_and_nothing_else_does():
    params = resolve_params("guardian")
    p = pos(L, sl=95.0, tp=120.0, automation=False, leverage=10)
    # the emergency caps override everything (DESIGN §4), paused automation included
    [a] = evaluate(p, mkt(94.0), params)
    assert a.reason is Reason.EMERGENCY_STOP_LIQUIDATION_RISK
    [a] = evaluate(p.evolve(leverage=1.0), mkt(94.0), params)  # -6 % ROI: no cap, the SL
    assert a.reason is Reason.STOP_LOSS
    assert evaluate(p, mkt(99.0), params) == []  # -10 % ROI: trailing and the rest paused
    [b] = evaluate(p, mkt(121.0), params)
    assert b.reason is Reason.TAKE_PROFIT
    # with automation on the emergency tier outranks the stop as well
    [c] = evaluate(pos(L, sl=95.0, leverage=10), mkt(94.0), params)
    assert c.reason is Reason.EMERGENCY_STOP_LIQUIDATION_RISK


def test_invalid_prices_and_closed_positions_do_nothing():
    params = resolve_params("guardian")
    p = pos(L, sl=95.0)
    for bad in (0.0, -1.0, math.nan, math.inf):
        assert evaluate(p, mkt(bad), params) == []
        assert observe(p, bad) is p
    from pmgui.domain.enums import PositionStatus
    assert evaluate(pos(L, sl=95.0, status=PositionStatus.CLOSED), mkt(90.0), params) == []
    with pytest.raises(ValidationError, match="ETH"):
        from pmgui.domain.models import MarketState
        evaluate(p, MarketState(symbol="ETH", price=90.0, ts=1.0, market=MARKET), params)


def test_price_is_usable():
    assert price_is_usable(100.0, 10.0, 14.0, 5.0)
    assert price_is_usable(100.0, 10.0, 15.0, 5.0)
    assert not price_is_usable(100.0, 10.0, 15.01, 5.0)
    assert price_is_usable(100.0, 20.0, 15.0, 5.0)  # clock skew
    for bad in (0.0, -3.0, math.nan, math.inf, None):
        assert not price_is_usable(bad, 10.0, 10.0, 5.0)
    assert not price_is_usable(100.0, None, 10.0, 5.0)
    assert not price_is_usable(100.0, math.nan, 10.0, 5.0)


# Fixed trailing (freqtrade-style: stop = best·(1 - d), ratcheting only) ---------------------

def _trail(side, path, d=0.05, sl=None):
    params = rules_only("stop_loss", "take_profit", "trailing", trailing__distance=d)
    p = pos(side, sl=sl)
    stops, best = [], p.entry
    for i, price in enumerate(path):
        p, acts = step(p, price, params, ts=float(i + 1))
        best = max(best, price) if side is L else min(best, price)
        stops.append(p.sl)
        if not p.is_open:
            return p, stops, acts
    return p, stops, []


def test_fixed_trailing_long_matches_reference():
    path = [100.0, 102.0, 101.0, 105.0, 104.0, 108.0, 107.5]
    p, stops, _ = _trail(L, path)
    best = 100.0
    for price, stop in zip(path, stops, strict=True):
        best = max(best, price)
        assert stop == pytest.approx(best * 0.95)
    assert p.sl_kind is StopKind.TRAILING and p.trailing == p.sl


def test_fixed_trailing_short_matches_reference():
    path = [100.0, 98.0, 99.0, 95.0, 96.0, 92.0]
    _, stops, _ = _trail(S, path)
    best = 100.0
    for price, stop in zip(path, stops, strict=True):
        best = min(best, price)
        assert stop == pytest.approx(best * 1.05)


def test_trailing_stop_hit_reports_trailing_stop():
    p, _, acts = _trail(L, [100.0, 110.0, 104.4], d=0.05)
    assert not p.is_open
    assert acts[-1].reason is Reason.TRAILING_STOP and acts[-1].inputs["sl"] == 104.5
    p, _, acts = _trail(S, [100.0, 90.0, 94.5], d=0.05)
    assert not p.is_open and acts[-1].reason is Reason.TRAILING_STOP


def test_trailing_never_loosens_existing_stop():
    params = rules_only("stop_loss", "trailing", trailing__distance=0.05)
    p = pos(L, sl=99.0)  # tighter than 100·0.95
    assert evaluate(observe(p, 100.0), mkt(100.0), params) == []
    p = pos(S, sl=101.0)
    assert evaluate(observe(p, 100.0), mkt(100.0), params) == []
    # any strict improvement moves (freqtrade); trailing.min_step suppresses small ones
    [a] = evaluate(pos(L, sl=94.995, best_price=100.0), mkt(100.0), params)
    assert a.sl == 95.0 and a.stop_kind is StopKind.TRAILING and a.reason is Reason.TRAILING
    coarse = rules_only("stop_loss", "trailing", trailing__distance=0.05,
                        trailing__min_step=0.0001)
    assert evaluate(pos(L, sl=94.995, best_price=100.0), mkt(100.0), coarse) == []
    assert evaluate(pos(L, sl=94.98, best_price=100.0), mkt(100.0), coarse)[0].sl == 95.0
    assert evaluate(pos(L, sl=95.0, best_price=100.0), mkt(100.0), params) == []


def test_trailing_move_carries_inputs():
    params = rules_only("trailing", trailing__distance=0.02)
    [a] = evaluate(pos(L, best_price=120.0), mkt(119.0), params)
    assert a.type is ActionType.MOVE_SL and a.sl == pytest.approx(117.6)
    assert a.inputs["best_price"] == 120.0 and a.inputs["distance"] == 0.02
    assert a.inputs["mode"] == "fixed" and a.priority == 7 and a.rule == "trailing"


@pytest.mark.parametrize("side", [L, S])
def test_trailing_never_placed_through_the_price_it_closes_instead(side):
    # best price far beyond (e.g. tracked while paused): the level would trigger at once, so
    # the stop is due: close at market with the trailing stop's reason, never a stop placed
    # through the price and never the old, looser stop kept
    d = side.dir
    params = rules_only("trailing", trailing__distance=0.02)
    [a] = evaluate(pos(side, best_price=100 + d * 20, sl=100 - d * 10), mkt(100 + d * 10),
                   params)
    assert a.type is ActionType.CLOSE and a.reason is Reason.TRAILING_STOP and a.qty == 1.0
    assert a.priority == 2 and a.inputs["due"] is True
    assert a.inputs["level"] == pytest.approx((100 + d * 20) * (1 - d * 0.02))
    # within one tick of the price but not crossed: refused, nothing happens
    p = pos(side, best_price=100.0, sl=100 - d * 10)
    assert evaluate(p, mkt(100 - d * 1.995), params) == []


# Adaptive trailing -------------------------------------------------------------------------

@pytest.mark.parametrize(("vol", "mom", "lev", "price", "expected"), [
    (None, None, 1, 100.0, 0.02),            # base
    (0.05, None, 1, 100.0, 0.026),           # high volatility ×1.3
    (0.005, None, 1, 100.0, 0.014),          # low volatility ×0.7
    (0.02, None, 1, 100.0, 0.02),            # medium: ×1
    (None, None, 10, 101.2, 0.01),           # roi 12% > 10% → ×0.5
    (None, None, 10, 100.6, 0.014),          # roi 6% → ×0.7
    (None, None, 10, 100.4, 0.017),          # roi 4% → ×0.85
    (None, 0.03, 1, 100.0, 0.024),           # strong momentum ×1.2
    (None, -0.01, 1, 100.0, 0.016),          # weak momentum ×0.8
    (0.05, 0.05, 1, 100.0, 0.0312),          # ×1.3 ×1.2
    (0.005, -0.01, 10, 101.2, 0.004),        # 0.02·0.7·0.5·0.8 = 0.0056 (within bounds)
])
def test_adaptive_distance(vol, mom, lev, price, expected):
    params = rules_only("trailing", trailing__mode="adaptive")
    p = pos(L, leverage=lev, best_price=price)
    acts = evaluate(p, mkt(price, volatility=vol, momentum=mom), params)
    [a] = acts
    if expected == 0.004:
        expected = 0.0056
    assert a.inputs["distance"] == pytest.approx(expected)
    assert a.sl == pytest.approx(price * (1 - expected))


def test_adaptive_bounds_and_short_momentum_sign():
    params = rules_only("trailing", trailing__mode="adaptive", trailing__distance=0.05)
    [a] = evaluate(pos(L, best_price=100.0), mkt(100.0, volatility=0.1), params)
    assert a.inputs["distance"] == pytest.approx(0.04)  # clamped to max
    params = rules_only("trailing", trailing__mode="adaptive", trailing__distance=0.005)
    [b] = evaluate(pos(S, best_price=100.0, leverage=20), mkt(99.0, volatility=0.001,
                                                           momentum=0.05), params)
    # short: +5% momentum is against the position → weak ×0.8; clamp to min 0.004
    assert b.inputs["momentum_mult"] == 0.8 and b.inputs["distance"] == pytest.approx(0.004)
    [c] = evaluate(pos(S, best_price=100.0), mkt(100.0, momentum=-0.05),
                   rules_only("trailing", trailing__mode="adaptive"))
    assert c.inputs["momentum_mult"] == 1.2


# Chandelier --------------------------------------------------------------------------------

def test_chandelier_long_and_short():
    params = rules_only("trailing", trailing__mode="chandelier", trailing__atr_mult=3.0)
    [a] = evaluate(pos(L), mkt(100.0, atr=1.5, highest_high=104.0, lowest_low=95.0), params)
    assert a.sl == pytest.approx(99.5) and a.inputs["atr"] == 1.5
    [b] = evaluate(pos(S), mkt(100.0, atr=1.5, highest_high=104.0, lowest_low=97.0), params)
    assert b.sl == pytest.approx(101.5) and b.inputs["lowest_low"] == 97.0
    assert evaluate(pos(L), mkt(100.0, atr=None, highest_high=104.0), params) == []
    # level above the price (sharp drop): never placed through the price; the stop is due
    [c] = evaluate(pos(L), mkt(99.0, atr=1.0, highest_high=104.0), params)
    assert c.type is ActionType.CLOSE and c.reason is Reason.TRAILING_STOP
    assert c.inputs["level"] == pytest.approx(101.0)


def test_breakout_chandelier_gated_until_breakeven():
    params = resolve_params("breakout")
    ind = {"atr": 1.0, "highest_high": 110.0, "lowest_low": 90.0}
    p = pos(L, sl=95.0, initial_sl=95.0)
    assert [a for a in evaluate(p, mkt(108.0, **ind), params) if a.rule == "trailing"] == []
    p2 = pos(L, sl=100.1, initial_sl=95.0, flags=frozenset({"tp1_done", "breakeven_set"}),
             sl_kind=StopKind.BREAKEVEN)
    [a] = [a for a in evaluate(p2, mkt(108.0, **ind), params) if a.type is ActionType.MOVE_SL]
    assert a.sl == pytest.approx(107.0) and a.stop_kind is StopKind.TRAILING


# Breakeven+ and tightening -----------------------------------------------------------------

@pytest.mark.parametrize(("side", "price", "lev", "fee", "expect"), [
    (L, 110.0, 1, 0.0, 102.0), (L, 109.9, 1, 0.0, None), (S, 90.0, 1, 0.0, 98.0),
    (S, 90.1, 1, 0.0, None),
    # 10% ROI at 10x is a 1% move: the stop goes where ROI = +2%, a 0.2% move (it used to
    # be entry + 2% of price, above the price, and nothing happened)
    (L, 101.0, 10, 0.0, 100.2), (S, 99.0, 10, 0.0, 99.8),
    (L, 103.0, 5, 0.0, 100.4), (L, 100.99, 10, 0.0, None),
    # after fees: roi(p) = 10·((p − 100) − 0.0005·(100 + p))/100 = 0.02
    (L, 101.2, 10, 0.0005, 100.30015007503751), (S, 98.8, 10, 0.0005, 99.7001499250375),
])
def test_breakeven_plus_buffer_is_roi_after_fees(side, price, lev, fee, expect):
    params = rules_only("breakeven_plus")
    p = pos(side, leverage=lev, fee=fee, sl=90.0 if side is L else 110.0)
    acts = evaluate(p, mkt(price), params)
    if expect is None:
        assert acts == []
    else:
        [a] = acts
        assert a.sl == pytest.approx(expect) and a.stop_kind is StopKind.BREAKEVEN
        assert money.roi(side, 100.0, a.sl, lev, fee) == pytest.approx(0.02)
        assert a.reason is Reason.BREAKEVEN and "breakeven_set" in a.flags
        assert a.inputs["buffer_roi"] == 0.02


def test_tightening_volatility_and_time():
    params = rules_only("trailing", "tightening", trailing__distance=0.02)
    base = pos(L, best_price=100.0, leverage=1, opened_at=0.0)
    [a] = evaluate(base, mkt(100.0, volatility=0.031), params)
    assert a.inputs["distance"] == pytest.approx(0.015)
    [b] = evaluate(base, mkt(100.0, volatility=0.03), params)
    assert b.inputs["distance"] == pytest.approx(0.02)  # "> 3%" strict
    # 4 h old and profitable: 2 h beyond → −0.004
    [c] = evaluate(pos(L, best_price=101.0), mkt(101.0, ts=4 * 3600.0), params)
    assert c.inputs["distance"] == pytest.approx(0.016)
    # not profitable: no time tightening
    [d] = evaluate(pos(L, best_price=101.0, fee=0.0), mkt(99.5, ts=4 * 3600.0), params)
    assert d.inputs["distance"] == pytest.approx(0.02)
    # never below 0.004
    [e] = evaluate(pos(S, best_price=100.0), mkt(99.0, ts=30 * 3600.0, volatility=0.2), params)
    assert e.inputs["distance"] == pytest.approx(0.004)
    assert e.sl == pytest.approx(99.396)  # best 99 · 1.004


# Initial targets ---------------------------------------------------------------------------

def test_initial_targets_monitor():
    params = resolve_params("monitor")
    assert initial_targets(L, 100.0, params, MARKET) == (99.0, 102.0)
    assert initial_targets(S, 100.0, params, MARKET) == (101.0, 98.0)
    m = Market(symbol="X", tick_size=0.5, amount_step=1.0)
    assert initial_targets(L, 100.3, params, m) == (99.5, 102.5)
    assert initial_targets(L, 100.0, resolve_params("guardian"), MARKET) == (None, None)
    with pytest.raises(ValidationError):
        initial_targets(L, 0.0, params, MARKET)
    with pytest.raises(ValidationError, match="short"):
        initial_targets(S, 100.0, resolve_params("monitor", {"take_profit.pct": 1.5}), MARKET)
    # tick larger than the distance: still one tick away
    big = Market(symbol="X", tick_size=5.0, amount_step=1.0)
    sl, tp = initial_targets(L, 100.0, params, big)
    assert sl == 95.0 and tp == 105.0


def test_protection_works_without_a_sane_leverage():
    params = resolve_params("guardian")
    for lev in (0.0, math.nan):
        [a] = evaluate(pos(L, sl=95.0, leverage=lev), mkt(94.0), params)
        assert a.reason is Reason.STOP_LOSS
        for x in evaluate(pos(L, sl=95.0, leverage=lev), mkt(99.0), params):
            assert all(not isinstance(v, float) or math.isfinite(v) for v in x.inputs.values())


@pytest.mark.parametrize("odd", [math.nan, math.inf, "x", 3, None])
def test_a_trailing_record_s_prefix_is_cleaned_as_every_action_input(odd):
    """The kept start of a trailing move's record (`_inputs_prefix`) holds each value as
    `clean` makes it (finite floats and plain scalars as they are, NaN/inf as None)."""
    from pmgui.rules import stops
    from pmgui.rules.common import clean

    params = resolve_params("guardian", {})
    c = stops.trailing_config(params)
    parts = (odd, 1.0, 0.004, 1.0, None, False)
    terms = stops._terms_of(c, (0.01, 1.0, 0.004, 1.0, None, False), 1.0, None)
    prefix = stops._inputs_prefix(params, c, parts, terms)
    head = stops._record_head(c, parts, terms)
    assert prefix == {k: clean(v) for k, v in head.items()}
    assert prefix["volatility"] == clean(odd)
