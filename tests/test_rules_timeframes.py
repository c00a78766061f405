"""Issue 11: every indicator-reading rule reads its own timeframe; stops that are due act at
once; breakeven rides with TP1; breakeven+ as ROI; dynamic TP with support/resistance and time
in position; the add-on lifecycle."""

from __future__ import annotations

import pytest

from pmgui.domain.enums import ActionType, Reason, Side, StopKind
from pmgui.domain.errors import ValidationError
from pmgui.domain.models import Candle, Indicators, MarketState
from pmgui.exchange.csvdata import candle_path_ticks
from pmgui.rules.params import PARAMS, TIMEFRAME_RULES, resolve_params
from pmgui.rules.policy import evaluate, indicator_frames
from tests.rules_support import MARKET, apply, mkt, pos, rules_only, step

L, S = Side.LONG, Side.SHORT
DEFAULTS = {"trailing": "4h", "tightening": "4h", "dynamic_tp": "4h", "add_on": "1h",
            "scaling": "1h"}


def framed(price: float, tf: str, ts: float = 1.0, **ind: float | None) -> MarketState:
    """The rule's own timeframe carries `ind`; every other timeframe (and the fallback) says
    the opposite, so reading the wrong frame fails the test."""
    other = Indicators()
    frames = {name: other for name in ("1m", "5m", "15m", "1h", "4h", "1d")}
    frames[tf] = Indicators(**ind)  # type: ignore[arg-type]
    return MarketState(symbol=MARKET.symbol, price=price, ts=ts, market=MARKET,
                       indicators=other, frames=frames)


# Parameters --------------------------------------------------------------------------------

def test_timeframe_params_defaults_and_validation():
    for rule, tf in DEFAULTS.items():
        assert PARAMS[f"{rule}.timeframe"].default == tf
    assert set(TIMEFRAME_RULES) == set(DEFAULTS)
    assert resolve_params("breakout")["trailing.timeframe"] == "1h"  # the chandelier's
    with pytest.raises(ValidationError, match=r"trailing.timeframe = '2h' is not allowed.*1m, "
                                              r"5m, 15m, 1h, 4h, 1d"):
        resolve_params("guardian", {"trailing.timeframe": "2h"})
    with pytest.raises(ValidationError, match="scaling.timeframe"):
        resolve_params("active", {"scaling.timeframe": "60"})
    assert resolve_params("active", {"scaling.timeframe": " 5m "})["scaling.timeframe"] == "5m"
    with pytest.raises(ValidationError, match="buffer.*below.*min_roi"):
        resolve_params("active", {"breakeven_plus.buffer": 0.1})


def test_indicator_frames_name_only_rules_that_read_indicators():
    assert indicator_frames(resolve_params("manual")) == {}
    assert indicator_frames(resolve_params("monitor")) == {}
    # a fixed trailing stop alone reads nothing; with tightening it reads the volatility
    assert indicator_frames(rules_only("trailing")) == {}
    assert indicator_frames(resolve_params("active")) == {"4h": ("tightening",),
                                                         "1h": ("scaling",)}
    assert indicator_frames(resolve_params("guardian")) == {"4h": ("trailing", "dynamic_tp")}
    assert indicator_frames(resolve_params("breakout")) == {"1h": ("trailing", "add_on")}
    assert indicator_frames(resolve_params("guardian", {"dynamic_tp.timeframe": "1d"})) == {
        "4h": ("trailing",), "1d": ("dynamic_tp",)}


# Each default timeframe, both sides of its thresholds ---------------------------------------

@pytest.mark.parametrize(("vol", "mult"), [(0.03, 1.3), (0.0299, 1.0), (0.0101, 1.0),
                                           (0.01, 0.7)])
def test_adaptive_volatility_on_trailing_timeframe(vol, mult):
    params = rules_only("trailing", trailing__mode="adaptive")
    [a] = evaluate(pos(L, best_price=100.0), framed(100.0, "4h", volatility=vol), params)
    assert a.inputs["volatility_mult"] == mult and a.inputs["timeframe"] == "4h"


@pytest.mark.parametrize("side", [L, S])
@pytest.mark.parametrize(("mom", "mult"), [(0.02, 1.2), (0.0199, 1.0), (0.0001, 1.0),
                                           (0.0, 0.8)])
def test_adaptive_momentum_on_trailing_timeframe(side, mom, mult):
    params = rules_only("trailing", trailing__mode="adaptive")
    [a] = evaluate(pos(side, best_price=100.0), framed(100.0, "4h", momentum=side.dir * mom),
                   params)
    assert a.inputs["momentum_mult"] == mult


@pytest.mark.parametrize(("vol", "distance"), [(0.0301, 0.015), (0.03, 0.02)])
def test_tightening_volatility_on_its_timeframe(vol, distance):
    params = rules_only("trailing", "tightening", trailing__distance=0.02)
    [a] = evaluate(pos(L, best_price=100.0), framed(100.0, "4h", volatility=vol), params)
    assert a.inputs["distance"] == pytest.approx(distance)


def test_chandelier_on_trailing_timeframe():
    params = rules_only("trailing", trailing__mode="chandelier", trailing__timeframe="1h")
    [a] = evaluate(pos(L), framed(100.0, "1h", atr=1.5, highest_high=104.0), params)
    assert a.sl == pytest.approx(99.5) and a.inputs["timeframe"] == "1h"
    assert evaluate(pos(L), framed(100.0, "4h", atr=1.5, highest_high=104.0), params) == []


@pytest.mark.parametrize("side", [L, S])
@pytest.mark.parametrize(("off", "fires"), [(0.005, True), (0.00502, False)])
def test_add_on_ema_on_its_timeframe(side, off, fires):
    d = side.dir
    price = 100.0 + d * 1.0  # 0.5R with R = 2
    ema = price / (1 + off * (1 - 1e-9 if fires else 1))
    p = pos(side, qty=2.0, initial_sl=100.0 - d * 2.0)
    acts = evaluate(p, framed(price, "1h", ema9=ema), rules_only("add_on"))
    assert [a.type for a in acts] == ([ActionType.ADD] if fires else [])


@pytest.mark.parametrize("side", [L, S])
@pytest.mark.parametrize(("mom", "fires"), [(0.0201, True), (0.02, False)])
def test_scaling_momentum_on_its_timeframe(side, mom, fires):
    p = pos(side, qty=1.0, leverage=10)
    price = 100.0 + side.dir * 0.6  # 6% ROI
    acts = evaluate(p, framed(price, "1h", ts=60.0, momentum=side.dir * mom, volume=2e5),
                    rules_only("scaling"))
    assert [a.reason for a in acts] == ([Reason.SCALING] if fires else [])


@pytest.mark.parametrize("side", [L, S])
@pytest.mark.parametrize(("mom", "fires"), [(0.02, True), (0.0199, False)])
def test_dynamic_tp_momentum_on_its_timeframe(side, mom, fires):
    d = side.dir
    p = pos(side, tp=100.0 + d * 10)
    acts = evaluate(p, framed(100.0 + d * 2, "4h", momentum=d * mom, trend=d * 0.01),
                    rules_only("dynamic_tp"))
    assert [a.inputs.get("change") for a in acts] == (["extend"] if fires else [])


# Breakeven without a gap -------------------------------------------------------------------

@pytest.mark.parametrize("side", [L, S])
def test_breakeven_after_tp1_then_gap_back_closes_at_breakeven_ticks(side):
    d = side.dir
    params = resolve_params("breakout")
    p = pos(side, qty=2.0, sl=100.0 - d * 2.0, initial_sl=100.0 - d * 2.0)  # R = 2
    p, acts = step(p, 100.0 + d * 2.0, params)  # 1R: TP1 books half, breakeven now
    assert [a.reason for a in acts] == [Reason.TP1, Reason.BREAKEVEN]
    assert p.sl == pytest.approx(100.0 + d * 0.1) and p.qty == 1.0
    p, acts = step(p, 100.0 + d * 0.05, params)  # already back below entry + 0.1 %
    [c] = acts
    assert c.type is ActionType.CLOSE and c.reason is Reason.BREAKEVEN_STOP and c.qty == 1.0
    assert not p.is_open


@pytest.mark.parametrize("side", [L, S])
def test_breakeven_inside_one_candle_that_hits_tp1(side):
    # a falling (long) / rising (short) candle whose extreme hits TP1 and closes near the
    # original stop: replayed open → extreme → other extreme → close
    d = side.dir
    params = resolve_params("breakout")
    p = pos(side, qty=2.0, sl=100.0 - d * 2.0, initial_sl=100.0 - d * 2.0)
    hi, lo = (102.5, 98.2) if side is L else (101.8, 97.5)
    candle = Candle(0.0, 101.0 if side is L else 99.0, hi, lo, 98.3 if side is L else 101.7)
    reasons = []
    for price in candle_path_ticks(candle):
        p, acts = step(p, price, params)
        reasons += [a.reason for a in acts]
        if not p.is_open:
            break
    assert reasons == [Reason.TP1, Reason.BREAKEVEN, Reason.BREAKEVEN_STOP]
    assert p.exit_reason == "breakeven_stop"  # not the original stop_loss


@pytest.mark.parametrize("side", [L, S])
def test_breakeven_plus_due_when_leverage_makes_roi_level_crossed(side):
    # an adopted position whose stop is far away: at 12% ROI the +2% ROI level is below the
    # price, placed at once
    d = side.dir
    p = pos(side, leverage=20, sl=100.0 - d * 5)
    [a] = evaluate(p, mkt(100.0 + d * 0.6), rules_only("breakeven_plus"))
    assert a.type is ActionType.MOVE_SL and a.sl == pytest.approx(100.0 + d * 0.1)


# Dynamic TP: support/resistance and time in position ----------------------------------------

def test_dynamic_tp_extension_stops_at_resistance():
    params = rules_only("dynamic_tp")
    strong = {"momentum": 0.05, "trend": 0.01}
    # no level: 110 + 0.25·10 = 112.5
    [a] = evaluate(pos(L, tp=110.0), framed(102.0, "4h", **strong), params)
    assert a.tp == pytest.approx(112.5) and a.inputs["resistance"] is None
    # a swing high at 111.2 caps it
    [b] = evaluate(pos(L, tp=110.0), framed(102.0, "4h", swing_highs=(101.0, 111.2, 115.0),
                                            **strong), params)
    assert b.tp == pytest.approx(111.2) and b.inputs["capped_by_level"] is True
    assert b.inputs["resistance"] == 111.2
    # resistance inside the TP: no extension at all
    assert evaluate(pos(L, tp=110.0), framed(102.0, "4h", swing_highs=(105.0,), **strong),
                    params) == []
    # short: support below
    [c] = evaluate(pos(S, tp=90.0), framed(98.0, "4h", swing_lows=(88.8, 99.0),
                                           momentum=-0.05, trend=-0.01), params)
    assert c.tp == pytest.approx(88.8) and c.inputs["support"] == 88.8
    assert c.inputs["resistance"] is None


def test_dynamic_tp_time_in_position():
    params = rules_only("dynamic_tp")
    faded = {"last_change": -0.001, "rsi": 55.0}
    young = pos(L, tp=110.0, opened_at=0.0)
    assert evaluate(young, framed(104.0, "4h", ts=23.9 * 3600, **faded), params) == []
    [a] = evaluate(young, framed(104.0, "4h", ts=24 * 3600, **faded), params)
    assert a.inputs["change"] == "pull_in" and a.inputs["stale"] is True
    assert a.tp == pytest.approx(107.0) and a.inputs["age_hours"] == pytest.approx(24.0)
    # stale: no more extensions even on strong momentum
    assert evaluate(young, framed(102.0, "4h", ts=25 * 3600, momentum=0.05, trend=0.01),
                    params) == []
    # a pull-in with resistance between the price and the pulled target takes profit there
    [b] = evaluate(young, framed(104.0, "4h", ts=24 * 3600, swing_highs=(105.5,), **faded),
                   params)
    assert b.tp == pytest.approx(105.5) and b.inputs["at_level"] is True


# Add-on lifecycle --------------------------------------------------------------------------

def _resting(side: Side = L, since: float = 0.0, **kw: object):
    d = side.dir
    return pos(side, qty=2.0, initial_sl=100.0 - d * 2.0, sl=100.0 - d * 2.0,
               flags=frozenset({"add_on_executed", f"add_on_open:{since!r}"}), **kw)


@pytest.mark.parametrize("side", [L, S])
def test_add_on_cancelled_when_price_runs_away_from_ema(side):
    d = side.dir
    params = rules_only("stop_loss", "add_on")
    ema = 101.0 if side is L else 99.0
    assert evaluate(_resting(side), framed(ema * (1 + d * 0.015), "1h", ema9=ema),
                    params) == []
    [c] = evaluate(_resting(side), framed(ema * (1 + d * 0.0151), "1h", ema9=ema), params)
    assert c.type is ActionType.CANCEL and c.reason is Reason.ADD_ON_CANCEL
    assert c.inputs["why"] == "price_away" and c.inputs["cancel_band"] == 0.015


def test_add_on_cancelled_after_max_wait_candles_of_its_timeframe():
    params = rules_only("add_on", add_on__max_wait=3)
    near = {"ema9": 101.0}
    assert evaluate(_resting(since=3600.0), framed(101.2, "1h", ts=3600.0 * 3.99, **near),
                    params) == []
    [c] = evaluate(_resting(since=3600.0), framed(101.2, "1h", ts=3600.0 * 4, **near), params)
    assert c.inputs["why"] == "expired" and c.inputs["candles_waited"] == pytest.approx(3.0)


def test_add_on_cancelled_at_breakeven_and_when_closing():
    params = resolve_params("breakout")
    # TP1 (a reduction): the resting add is withdrawn first, then TP1, then breakeven
    acts = evaluate(_resting(), framed(102.0, "1h", ema9=101.9), params)
    assert [a.type for a in acts] == [ActionType.CANCEL, ActionType.REDUCE, ActionType.MOVE_SL]
    assert acts[0].inputs["why"] == "closing" and acts[0].inputs["closing_reason"] == "tp1"
    after = apply(_resting(), acts)
    assert not any(f.startswith("add_on_open:") for f in after.flags)
    # at breakeven (stop at the entry or better)
    be = _resting().evolve(sl=100.1, sl_kind=StopKind.BREAKEVEN)
    [c] = evaluate(be, framed(101.0, "1h", ema9=101.0), rules_only("add_on"))
    assert c.inputs["why"] == "breakeven"
    # stop loss hit: cancel, then close
    acts = evaluate(_resting(), framed(97.9, "1h", ema9=98.0), params)
    assert [a.type for a in acts] == [ActionType.CANCEL, ActionType.CLOSE]
    # nothing resting: nothing to cancel
    none = pos(L, qty=2.0, initial_sl=98.0, sl=98.0, flags=frozenset({"add_on_executed"}))
    assert evaluate(none, framed(105.0, "1h", ema9=101.0), rules_only("add_on")) == []


# Tranche protection on the exchange ----------------------------------------------------------

def test_protective_orders_one_pair_per_tranche_group():
    from pmgui.domain.models import Market, Tranche
    from pmgui.rules.tranches import protective_orders

    m = Market("BTC/USDT:USDT", tick_size=0.5, amount_step=0.001)
    t = (Tranche("a", 1.0, 100.0, 0.0, sl=99.0, tp=102.0),
         Tranche("b", 0.5, 100.2, 1.0, sl=99.2, tp=102.3),  # within a tick of a: shared
         Tranche("c", 0.25, 104.0, 2.0, sl=103.0, tp=106.0))
    p = pos(L, qty=1.75, entry=100.9, sl=98.0, tp=110.0, tranches=t)
    orders = protective_orders(p, m)
    assert [(o.role, o.trigger, o.qty, o.tranche_ids) for o in orders] == [
        ("sl", 99.0, 1.5, ("a", "b")), ("tp", 102.0, 1.5, ("a", "b")),
        ("sl", 103.0, 0.25, ("c",)), ("tp", 106.0, 0.25, ("c",))]
    assert sum(o.qty for o in orders if o.role == "sl") == pytest.approx(p.qty)
    # a trailing stop above every tranche's own SL protects them all: one group per TP
    trailed = p.evolve(sl=103.5)
    assert [(o.role, o.trigger, o.qty) for o in protective_orders(trailed, m)] == [
        ("sl", 103.5, 1.5), ("tp", 102.0, 1.5), ("sl", 103.5, 0.25), ("tp", 106.0, 0.25)]
    # no tranches, or tranches that do not add up (reconciled outside): whole position
    assert [(o.role, o.qty) for o in protective_orders(p.evolve(tranches=()), m)] == [
        ("sl", 1.75), ("tp", 1.75)]
    assert [o.qty for o in protective_orders(p.evolve(qty=3.0), m)] == [3.0, 3.0]
    assert [o.trigger for o in protective_orders(p, m, per_tranche=False)] == [98.0, 110.0]


def test_nothing_is_tracked_while_automation_is_paused():
    # a run-up and fall while paused must not make the resumed trailing stop "due"
    params = rules_only("trailing", "stop_loss", trailing__distance=0.02)
    p = pos(L, sl=95.0, best_price=100.0, automation=False)
    p, acts = step(p, 110.0, params)
    assert acts == [] and p.best_price == 100.0 and p.peak_roi == 0.0
    p, acts = step(p.evolve(automation=True), 103.0, params)
    [a] = acts
    assert a.type is ActionType.MOVE_SL and a.sl == pytest.approx(103.0 * 0.98)
