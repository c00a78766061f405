"""Long/short symmetry of the rules (DESIGN §3-4): a short on the mirrored price path decides
what the long decides, mirrored.

Mirror: p' = 2·entry − p, with every price-like indicator mirrored too (EMA, channel, swings:
highs ↔ lows), signed changes negated (momentum, trend, last change), RSI → 100 − RSI, and
the unsigned ones kept (ATR, volatility, volume). Fees are 0 (a fee is paid on the notional,
which the mirror does not keep) and prices lie on a binary grid (entry 1024, steps of 1/4),
so the ROI, the move and R of the two sides are the same floats.

The rules whose definitions are additive in price mirror exactly: emergency tiers, SL/TP,
momentum loss, R targets with breakeven, profit booking, breakeven+, the chandelier trail,
dynamic TP, scaling, and smart TP without a TP (it then reads only the move). Left out, by
their definitions (a fraction *of a price*, which the mirror does not keep): the fixed and
adaptive trails (best·(1 ∓ d)), smart TP's distance to a TP ((tp − p)/p) and the add-on's
distance to the EMA (|p − EMA|/EMA).
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmgui.domain.enums import Side
from pmgui.domain.models import Action, Indicators, Market, MarketState, Position
from pmgui.rules.params import RULE_IDS, resolve_params
from pmgui.rules.policy import evaluate, observe
from tests.rules_support import apply, pos

E = 1024.0
MARKET = Market(symbol="BTC/USDT:USDT", tick_size=0.25, amount_step=0.125, min_amount=0.125)
MIRRORED_RULES = ("emergency", "stop_loss", "take_profit", "smart_tp", "momentum_loss",
                  "r_targets", "profit_booking", "breakeven_plus", "trailing", "dynamic_tp",
                  "scaling")


def _m(x: float | None) -> float | None:
    return None if x is None else 2 * E - x


def _grid(lo: int, hi: int) -> st.SearchStrategy[float]:
    """A price offset from the entry on the 1/4 grid, in [lo, hi] quarters."""
    return st.integers(lo, hi).map(lambda k: k / 4)


indicators = st.fixed_dictionaries({
    "ema9": st.one_of(st.none(), _grid(-200, 200)),
    "atr": st.one_of(st.none(), _grid(1, 40)),
    "hh": _grid(0, 200),
    "ll": _grid(-200, 0),
    "rsi": st.one_of(st.none(), st.integers(0, 200).map(lambda k: k / 2)),
    "volatility": st.one_of(st.none(), st.sampled_from([0.005, 0.02, 0.04])),
    "momentum": st.one_of(st.none(), st.sampled_from([-0.05, -0.01, 0.0, 0.01, 0.03, 0.06])),
    "volume": st.one_of(st.none(), st.sampled_from([5e4, 5e5])),
    "trend": st.one_of(st.none(), st.sampled_from([-0.02, 0.0, 0.02])),
    "last_change": st.one_of(st.none(), st.sampled_from([-0.01, 0.0, 0.01])),
    "highs": st.lists(_grid(-100, 300), max_size=3),
    "lows": st.lists(_grid(-300, 100), max_size=3),
})

scenario = st.fixed_dictionaries({
    "rules": st.sets(st.sampled_from(MIRRORED_RULES), min_size=1),
    "after_breakeven": st.booleans(),
    "leverage": st.sampled_from([1.0, 2.0, 4.0, 8.0, 16.0]),
    "qty": st.sampled_from([1.0, 2.0, 0.5, 4.0]),
    "sl": st.one_of(st.none(), _grid(8, 160)),  # below a long's entry by this much
    "tp": st.one_of(st.none(), _grid(8, 400)),  # above it by this much
    "drift": st.sampled_from([0, 8, -8, 20]),  # quarters per step: trends, both ways
    "steps": st.lists(st.tuples(st.integers(-48, 48), indicators), min_size=1, max_size=40),
})


def _long_indicators(i: dict) -> Indicators:
    hh, ll = E + i["hh"], E + i["ll"]
    return Indicators(
        ema9=None if i["ema9"] is None else E + i["ema9"], atr=i["atr"], highest_high=hh,
        lowest_low=ll, rsi=i["rsi"], volatility=i["volatility"], momentum=i["momentum"],
        volume=i["volume"], trend=i["trend"], last_change=i["last_change"],
        swing_highs=tuple(E + h for h in i["highs"]), swing_lows=tuple(E + x for x in i["lows"]))


def _mirrored(ind: Indicators) -> Indicators:
    def neg(x: float | None) -> float | None:
        return None if x is None else -x

    return Indicators(
        ema9=_m(ind.ema9), atr=ind.atr, highest_high=_m(ind.lowest_low),
        lowest_low=_m(ind.highest_high), rsi=None if ind.rsi is None else 100.0 - ind.rsi,
        volatility=ind.volatility, momentum=neg(ind.momentum), volume=ind.volume,
        trend=neg(ind.trend), last_change=neg(ind.last_change),
        swing_highs=tuple(_m(x) for x in ind.swing_lows),  # type: ignore[misc]
        swing_lows=tuple(_m(x) for x in ind.swing_highs))  # type: ignore[misc]


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= 1e-9 * max(1.0, abs(a))


def _same_decision(long: Action, short: Action) -> bool:
    return (long.type is short.type and long.reason is short.reason and long.rule == short.rule
            and long.priority == short.priority and long.flags == short.flags
            and long.stop_kind is short.stop_kind and long.limit == short.limit
            and _close(long.qty, short.qty) and _close(_m(long.sl), short.sl)
            and _close(_m(long.tp), short.tp) and _close(_m(long.price), short.price))


def _mirror_position(p: Position) -> Position:
    return replace(p, side=Side.SHORT, sl=_m(p.sl), tp=_m(p.tp), initial_sl=_m(p.initial_sl))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario)
def test_a_short_on_the_mirrored_path_decides_the_mirror_of_the_long(s):
    rules = set(s["rules"])
    tp = None if s["tp"] is None or "smart_tp" in rules else E + s["tp"]
    overrides: dict[str, object] = {f"{r}.enabled": (r in rules) for r in RULE_IDS}
    overrides.update({"trailing.mode": "chandelier",
                      "trailing.after_breakeven": s["after_breakeven"]})
    params = resolve_params("manual", overrides)
    sl = None if s["sl"] is None else E - s["sl"]
    long = pos(Side.LONG, entry=E, qty=s["qty"], leverage=s["leverage"], sl=sl, tp=tp,
               initial_sl=sl)
    short = _mirror_position(long)
    price, ts = E, 0.0
    for move, raw in s["steps"]:
        price = max(E / 2, price + (move + s["drift"]) / 4)
        ts += 300.0
        ind = _long_indicators(raw)
        lp, sp = observe(long, price), observe(short, _m(price))  # type: ignore[arg-type]
        assert lp.peak_roi == sp.peak_roi
        la = evaluate(lp, MarketState(symbol=MARKET.symbol, price=price, ts=ts, market=MARKET,
                                      indicators=ind), params)
        sa = evaluate(sp, MarketState(symbol=MARKET.symbol, price=_m(price), ts=ts,
                                      market=MARKET, indicators=_mirrored(ind)), params)
        assert len(la) == len(sa) and all(map(_same_decision, la, sa)), (la, sa)
        long, short = apply(lp, la, ts), apply(sp, sa, ts)
        if not long.is_open:
            assert not short.is_open
            break
