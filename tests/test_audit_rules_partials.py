"""Property: the partial exits of every seed together never close more than the position holds.

R targets (TP1 50 %, TP2 25 % of the original, seed 001), profit booking (50 % then 75 % of
the original, seed 004), tranche exits (seed 002) and the adds that grow the position (the
add-on, scaling) run together here on one position, on markets whose minimum amount raises
a small partial: summed over the whole path, what is closed never exceeds what was opened
plus what was added, each decision's quantity is positive and finite, and a position once
flat is never closed again.
"""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmgui.domain.enums import ActionType, Side
from pmgui.domain.models import Indicators, Market, MarketState, Tranche
from pmgui.rules.params import resolve_params
from pmgui.rules.policy import evaluate, observe
from tests.rules_support import apply, pos

MARKETS = [
    Market(symbol="BTC/USDT:USDT", tick_size=0.01, amount_step=0.001, min_amount=0.001),
    Market(symbol="BTC/USDT:USDT", tick_size=0.5, amount_step=0.1, min_amount=0.3),
    Market(symbol="BTC/USDT:USDT", tick_size=0.0, amount_step=0.0),
]

scenario = st.fixed_dictionaries({
    "side": st.sampled_from([Side.LONG, Side.SHORT]),
    "leverage": st.sampled_from([1.0, 5.0, 20.0]),
    "qty": st.sampled_from([1.0, 0.4, 0.7, 3.0]),
    "tranches": st.booleans(),
    "market": st.sampled_from(MARKETS),
    "min_age": st.sampled_from([0.0, 1800.0]),
    "returns": st.lists(st.floats(-0.03, 0.03, allow_nan=False), min_size=3, max_size=60),
    "drift": st.sampled_from([0.0, 0.005, -0.005, 0.015]),
    "ema_gap": st.sampled_from([0.0, 0.002, 0.02]),
    "momentum": st.sampled_from([None, 0.03, -0.03]),
})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario)
def test_partials_together_never_close_more_than_was_opened(s):
    side: Side = s["side"]
    d = side.dir
    params = resolve_params("manual", {
        "r_targets.enabled": True, "profit_booking.enabled": True, "add_on.enabled": True,
        "scaling.enabled": True, "tranches.enabled": s["tranches"],
        "profit_booking.level1_min_age": s["min_age"], "scaling.max_age": 1e6})
    market: Market = s["market"]
    entry, qty = 100.0, s["qty"]
    sl = 100.0 - d * 2.0
    tranches = ()
    if s["tranches"]:  # two fills with their own levels
        first = round(qty * 0.6, 6)
        tranches = (Tranche("t1", first, entry, 0.0, sl=sl, tp=100.0 + d * 3.0),
                    Tranche("t2", round(qty - first, 6), entry, 1.0, sl=100.0 - d * 1.0,
                            tp=None))
    p = pos(side, entry=entry, qty=qty, leverage=s["leverage"], sl=sl, initial_sl=sl,
            tp=100.0 + d * 6.0, tranches=tranches)
    opened, closed = qty, 0.0
    price, t = entry, 0.0
    for r in s["returns"]:
        price = max(1.0, round(price * (1 + r + s["drift"]), 2))
        t += 600.0
        ema = price * (1 - d * s["ema_gap"])
        ind = Indicators(ema9=ema, momentum=s["momentum"], volume=5e5)
        before = observe(p, price)
        acts = evaluate(before, MarketState(symbol=market.symbol, price=price, ts=t,
                                            market=market, indicators=ind), params)
        for a in acts:
            if a.qty is not None:
                assert math.isfinite(a.qty) and a.qty > 0, a
            if a.type in (ActionType.REDUCE, ActionType.CLOSE):
                assert a.qty is not None and a.qty <= before.qty + 1e-9, a
                closed += a.qty
            elif a.type is ActionType.ADD:
                assert a.qty is not None
                opened += a.qty
        assert closed <= opened + 1e-9, (closed, opened, acts)
        p = apply(before, acts, t)
        assert p.qty >= -1e-9
        if not p.is_open:
            break
    if p.is_open:
        assert abs((opened - closed) - p.qty) <= 1e-6
