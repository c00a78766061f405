"""The chart's rule line (`pmgui.engine.indicator_line.current`) is the rules' own level.

`current` takes the trailing level and distance by a short path (`stops.trailing_line`, no
evaluation context, no inputs record) and builds its RuleIndicator through the slot
descriptors: both must give exactly what the plain way gives — `trailing_level` of a full
context, and the dataclass's own constructor — on random positions, prices and presets.
"""

from __future__ import annotations

import math
from dataclasses import fields, replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmgui.domain import money
from pmgui.domain.enums import Side
from pmgui.domain.models import Indicators, Market, MarketState, Position
from pmgui.domain.timeframes import seconds
from pmgui.engine import indicator_line
from pmgui.engine.events import RuleIndicator
from pmgui.engine.marketdata import MarketData
from pmgui.engine.outbox import Outbox
from pmgui.engine.settings import EngineSettings
from pmgui.rules.common import make_ctx
from pmgui.rules.params import resolve_params
from pmgui.rules.policy import indicator_spec
from pmgui.rules.presets import PRESETS
from pmgui.rules.stops import trailing_level

SYMBOL = "ETH/USDT:USDT"
MARKET = Market(SYMBOL, 0.01, 0.001, min_amount=0.001)

maybe = st.one_of(st.none(), st.floats(-0.05, 0.05), st.just(math.nan))
indicators = st.builds(
    Indicators,
    ema9=st.one_of(st.none(), st.floats(90.0, 112.0), st.just(math.nan)),
    atr=st.one_of(st.none(), st.floats(0.1, 4.0)),
    highest_high=st.one_of(st.none(), st.floats(95.0, 115.0)),
    lowest_low=st.one_of(st.none(), st.floats(85.0, 105.0)),
    volatility=st.one_of(st.none(), st.sampled_from([0.005, 0.01, 0.02, 0.03, 0.05])),
    momentum=maybe,
)
case = st.fixed_dictionaries({
    "preset": st.sampled_from(sorted(PRESETS)),
    "overrides": st.fixed_dictionaries({}, optional={
        "trailing.enabled": st.booleans(),
        "trailing.mode": st.sampled_from(["fixed", "adaptive", "chandelier"]),
        "tightening.enabled": st.booleans(),
        "tightening.start_hours": st.sampled_from([0.0, 0.2, 2.0]),
        "add_on.enabled": st.booleans(),
    }),
    "side": st.sampled_from([Side.LONG, Side.SHORT]),
    "leverage": st.sampled_from([1.0, 5.0, 50.0, math.inf]),
    "fee": st.sampled_from([0.0, 0.0005]),
    "entry": st.sampled_from([100.0, math.nan]),
    "best": st.one_of(st.none(), st.floats(80.0, 125.0)),
    "peak": st.sampled_from([0.0, 0.2, math.nan]),
    "age": st.sampled_from([0.0, 100.0, 9000.0, 200000.0, -50.0]),
    "price": st.floats(80.0, 125.0),
    "ind": indicators,
    "frame": st.one_of(st.none(), indicators),
})


def _params(c: dict):
    try:
        return resolve_params(c["preset"], c["overrides"])
    except Exception:  # an inconsistent combination: the preset alone
        return resolve_params(c["preset"], {})


def _frames_and_position(c: dict, params) -> tuple[dict, Position]:
    """A case's rule-timeframe indicators (its frame under the line's timeframes) and its
    position."""
    frames = {}
    if c["frame"] is not None:
        frames = {str(params["trailing.timeframe"]): c["frame"],
                  str(params["add_on.timeframe"]): c["frame"]}
    pos = Position("p1", SYMBOL, c["side"], 1.0, c["entry"], c["leverage"], -c["age"],
                   1.0, fee_rate=c["fee"], best_price=c["best"], peak_roi=c["peak"],
                   preset=c["preset"])
    return frames, pos


def _plain(market: MarketData, pos: Position, mkt: MarketState, params,
           spec) -> RuleIndicator | None:
    """The line the plain way: a full context's `trailing_level` and the dataclass."""
    desc = indicator_line.describe(params)
    if desc is None:
        return None
    mode, tf, name, need = desc
    step = mode in ("chandelier", "ema")
    have, since = 0, mkt.ts
    if tf:
        series = market.series(pos.symbol, tf)
        have = series.indicator_set(spec).count
        if step:
            since = series.window[-1].ts + seconds(tf) if series.window else 0.0
    if mode == "ema":
        level, distance = mkt.indicators_for(tf).ema9, None
    else:
        level, info = trailing_level(make_ctx(pos, mkt, params))
        d = info.get("distance")
        distance = float(d) if isinstance(d, (int, float)) else None
    value = level if money.valid_price(level) else None
    return RuleIndicator(name, tf, value, since, step, have, need, distance)


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(case, min_size=1, max_size=6))
def test_the_line_is_the_rules_trailing_level(cases):
    market = MarketData(Outbox(), EngineSettings(), lambda: 0.0)
    params_of: dict[str, object] = {}
    for c in cases:  # Params shared along the list, as the book shares them
        params = params_of.setdefault(repr(sorted(c["overrides"].items())) + c["preset"],
                                      _params(c))
        spec = indicator_spec(params)
        frames, pos = _frames_and_position(c, params)
        mkt = MarketState(SYMBOL, c["price"], 0.0, MARKET, c["ind"], frames)
        got = indicator_line.current(market, pos, mkt, params, spec)
        want = _plain(market, pos, mkt, params, spec)
        assert got == want
        if want is not None:
            assert type(got) is RuleIndicator
            for f in fields(RuleIndicator):  # the same values, of the same types
                assert type(getattr(got, f.name)) is type(getattr(want, f.name)), f.name


later = st.tuples(
    st.floats(80.0, 125.0),  # price
    st.sampled_from([0.0, 30.0, 800.0, 9000.0, 400000.0]),  # time
    st.one_of(st.none(), st.floats(80.0, 125.0)),  # the position's best price then
    st.sampled_from([0.0, 0.3, math.nan]),  # its peak ROI then
    st.sampled_from([None, "entry", "leverage", "fee_rate", "opened_at", "side"]),  # changed
)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case, st.lists(later, min_size=1, max_size=5))
def test_a_prepared_line_is_the_line_at_each_later_tick(c, ticks):
    """`line_at(prepare(…), best_price, price, ts)` — the engine keeps what `prepare` read
    between ticks while the Params object, the candles and the position's fields it reads
    (`reads`) are the same — is `current` for the position as it is at that tick: its
    best price, peak and stop moved, the trail's level, distance and time follow; any field
    `prepare` reads changed, `reads` says so."""
    market = MarketData(Outbox(), EngineSettings(), lambda: 0.0)
    params = _params(c)
    spec = indicator_spec(params)
    frames, pos = _frames_and_position(c, params)
    prep = indicator_line.prepare(market, pos, MarketState(SYMBOL, c["price"], 0.0, MARKET,
                                                           c["ind"], frames), params, spec)
    other = {"entry": 101.0, "leverage": 3.0, "fee_rate": 0.001, "opened_at": -7.0,
             "side": Side.SHORT if c["side"] is Side.LONG else Side.LONG}
    for price, ts, best, peak, changed in ticks:
        now = replace(pos, best_price=best, peak_roi=peak, sl=best,
                      **({changed: other[changed]} if changed else {}))
        if changed is not None:
            assert indicator_line.reads(pos) != indicator_line.reads(now)
            continue
        assert indicator_line.reads(pos) == indicator_line.reads(now)
        mkt = MarketState(SYMBOL, price, ts, MARKET, c["ind"], frames)
        got = indicator_line.line_at(prep, now.best_price, price, ts)
        want = indicator_line.current(market, now, mkt, params, spec)
        assert got == want
        assert want == _plain(market, now, mkt, params, spec)
