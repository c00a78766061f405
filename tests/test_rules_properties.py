"""Property tests over random price paths, every preset, both sides, leverage and fees."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmgui.domain.enums import ActionType, Reason, Side
from pmgui.domain.models import Action, Candle, Market, MarketState, Position
from pmgui.indicators import IndicatorSet, IndicatorSpec
from pmgui.rules.params import resolve_params
from pmgui.rules.policy import evaluate, initial_targets, observe
from pmgui.rules.presets import PRESETS
from tests.rules_support import apply, pos

EMERGENCY_REASONS = tuple(r for r in Reason if r.value.startswith("emergency_stop"))

MARKET = Market(symbol="BTC/USDT:USDT", tick_size=0.01, amount_step=0.001, min_amount=0.001)
MARKETS = [
    MARKET,
    Market(symbol="BTC/USDT:USDT", tick_size=0.5, amount_step=0.1, min_amount=0.2),
    Market(symbol="BTC/USDT:USDT", tick_size=0.0, amount_step=0.0),
]
SPEC = IndicatorSpec(ema_period=3, atr_period=4, channel_period=4, rsi_period=3,
                     volatility_window=3, momentum_window=2, volume_window=2)

paths = st.lists(st.floats(min_value=-0.04, max_value=0.04, allow_nan=False), min_size=5,
                 max_size=80)
scenario = st.fixed_dictionaries({
    "preset": st.sampled_from(sorted(PRESETS)),
    "side": st.sampled_from([Side.LONG, Side.SHORT]),
    "leverage": st.sampled_from([1.0, 3.0, 10.0, 25.0]),
    "fee": st.sampled_from([0.0, 0.0002, 0.0005]),
    "sl_pct": st.one_of(st.none(), st.floats(min_value=0.005, max_value=0.2)),
    "tp_pct": st.one_of(st.none(), st.floats(min_value=0.005, max_value=0.5)),
    "trailing": st.sampled_from([None, "fixed", "adaptive", "chandelier"]),
    "automation": st.booleans(),
    "returns": paths,
    "drift": st.sampled_from([0.0, 0.004, -0.004, 0.012, -0.012]),
    "market": st.sampled_from(MARKETS),
    "qty": st.sampled_from([1.0, 0.3, 2.5]),
})


def _finite_action(a: Action) -> bool:
    nums = [a.price, a.qty, a.sl, a.tp, a.ts]
    nums += [v for v in a.inputs.values() if isinstance(v, float)]
    return all(v is None or math.isfinite(v) for v in nums)


def _run(s: dict) -> None:
    side: Side = s["side"]
    d = side.dir
    overrides: dict[str, object] = {}
    if s["trailing"]:
        overrides.update({"trailing.enabled": True, "trailing.mode": s["trailing"]})
    params = resolve_params(s["preset"], overrides)
    entry = 100.0
    sl = None if s["sl_pct"] is None else round(entry * (1 - d * s["sl_pct"]), 2)
    tp = None if s["tp_pct"] is None else round(entry * (1 + d * s["tp_pct"]), 2)
    market: Market = s["market"]
    auto_sl, auto_tp = initial_targets(side, entry, params, market)
    sl = sl if sl is not None else auto_sl
    tp = tp if tp is not None else auto_tp
    p: Position = pos(side, entry=entry, qty=s["qty"], leverage=s["leverage"], fee=s["fee"],
                      sl=sl, tp=tp, initial_sl=sl, automation=s["automation"])
    ind = IndicatorSet(SPEC)
    price = entry
    t = 0.0
    for r in s["returns"]:
        prev = price
        price = max(0.5, round(price * (1 + r + s["drift"]), 2))
        t += 600.0
        hi, lo = max(prev, price) * 1.002, min(prev, price) * 0.998
        ind.update(Candle(ts=t, open=prev, high=hi, low=lo, close=price, volume=5000.0))
        state = MarketState(symbol=market.symbol, price=price, ts=t, market=market,
                            indicators=ind.snapshot())
        before = observe(p, price)
        acts = evaluate(before, state, params)
        closing = [a for a in acts if a.is_closing]
        assert len(closing) <= 1
        if closing:
            c = closing[0]
            i = acts.index(c)
            # the close comes last, but for the breakeven move that rides with TP1
            assert all(a.type is ActionType.MOVE_SL and a.inputs.get("follows") == c.reason
                       and c.type is ActionType.REDUCE for a in acts[i + 1:])
            # before it only higher-priority adjustments (and the cancel of a resting add)
            assert all(a.priority < c.priority or a.type is ActionType.CANCEL
                       for a in acts[:i])
            assert c.qty is not None and 0 < c.qty <= before.qty + 1e-12
            if c.type is ActionType.CLOSE:
                assert c.qty == before.qty
            else:  # a partial goes through the market's precision and minimum
                assert c.qty >= market.min_amount
                if market.amount_step > 0:
                    steps = c.qty / market.amount_step
                    assert abs(steps - round(steps)) < 1e-6
        last_sl = before.sl
        for a in acts:
            assert _finite_action(a), a
            if a.type is ActionType.MOVE_SL:
                assert a.sl is not None
                if last_sl is not None:
                    assert (a.sl - last_sl) * d > 0, "moves on one tick must only tighten"
                last_sl = a.sl
            assert a.rule and a.priority >= 1 and "price" in a.inputs
            if a.type is ActionType.MOVE_SL:
                assert a.sl is not None
                # never loosens, never through the price
                if before.sl is not None:
                    assert (a.sl - before.sl) * d > 0
                assert (price - a.sl) * d > 0
            if a.type is ActionType.ADD:
                assert a.qty is not None and a.qty > 0
            if not before.automation:  # protection and the loss caps (DESIGN §4)
                assert a.reason in (Reason.STOP_LOSS, Reason.TRAILING_STOP,
                                    Reason.BREAKEVEN_STOP, Reason.TAKE_PROFIT,
                                    *EMERGENCY_REASONS)
        after = apply(before, acts, t)
        if before.sl is not None and after.sl is not None:
            assert (after.sl - before.sl) * d >= 0, "a stop loosened"
        if before.trailing is not None and after.trailing is not None:
            assert (after.trailing - before.trailing) * d >= 0, "trailing went backwards"
        assert after.qty >= -1e-12
        p = after
        if not p.is_open:
            break


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario)
def test_policy_invariants_on_random_paths(s):
    _run(s)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(PRESETS)), st.sampled_from([Side.LONG, Side.SHORT]),
       st.sampled_from([0.0, -1.0, math.nan, math.inf, -math.inf]))
def test_invalid_prices_never_act(preset, side, bad):
    p = pos(side, sl=95.0 if side is Side.LONG else 105.0, initial_sl=95.0, leverage=10)
    state = MarketState(symbol=MARKET.symbol, price=bad, ts=1.0, market=MARKET)
    assert evaluate(p, state, resolve_params(preset)) == []
    assert observe(p, bad) is p
