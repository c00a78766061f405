"""R targets with breakeven, profit booking, dynamic TP, add-on and scaling."""

from __future__ import annotations

import pytest

from pmgui.domain import money
from pmgui.domain.enums import ActionType, Reason, Side, StopKind
from pmgui.domain.models import Market
from pmgui.rules.policy import evaluate
from tests.rules_support import MARKET, mkt, pos, rules_only, step

L, S = Side.LONG, Side.SHORT


# R targets ---------------------------------------------------------------------------------

@pytest.mark.parametrize("side", [L, S])
def test_r_targets_full_cycle(side):
    d = side.dir
    params = rules_only("stop_loss", "r_targets", "trailing", trailing__mode="chandelier",
                        trailing__after_breakeven=True)
    p = pos(side, qty=2.0, leverage=5, fee=0.0005, sl=100.0 - d * 2.0,
            initial_sl=100.0 - d * 2.0)  # R = 2
    ind = {"atr": 0.5, "highest_high": 104.5, "lowest_low": 95.5}
    p, acts = step(p, 100.0 + d * 1.99, params, **ind)
    assert [a for a in acts if a.is_closing] == []
    # chandelier gated before breakeven
    assert [a for a in acts if a.type is ActionType.MOVE_SL] == []
    p, acts = step(p, 100.0 + d * 2.0, params, **ind)
    # TP1, and in the same evaluation the stop to breakeven + fees (after the reduction)
    [tp1, be] = acts
    assert tp1.type is ActionType.REDUCE and tp1.reason is Reason.TP1 and tp1.qty == 1.0
    assert tp1.flags == {"tp1_done"} and tp1.inputs["r"] == pytest.approx(1.0)
    assert p.qty == 1.0
    assert be.reason is Reason.BREAKEVEN and be.sl == pytest.approx(100.0 + d * 0.1)
    assert be.stop_kind is StopKind.BREAKEVEN and p.sl_kind is StopKind.BREAKEVEN
    assert "breakeven_set" in p.flags and be.inputs["follows"] == "tp1"
    p, acts = step(p, 100.0 + d * 2.5, params, **ind)  # chandelier 103 / 97: beyond price
    assert [a.reason for a in acts] == [Reason.TRAILING_STOP]  # due: closes at market
    p = pos(side, qty=1.0, initial_qty=2.0, leverage=5, fee=0.0005, sl=100.0 + d * 0.1,
            initial_sl=100.0 - d * 2.0, sl_kind=StopKind.BREAKEVEN,
            flags=frozenset({"tp1_done", "breakeven_set"}), best_price=100.0 + d * 2.5)
    # once breakeven is set the chandelier trails: HH − 3·ATR = 103 / LL + 3·ATR = 97
    p, acts = step(p, 100.0 + d * 3.99, params, **ind)
    [mv] = acts
    assert mv.stop_kind is StopKind.TRAILING and mv.sl == pytest.approx(100.0 + d * 3.0)
    # TP2 only at 2R: 25% of the original qty; a trailing move on that tick is held back
    ind = {"atr": 0.5, "highest_high": 105.0, "lowest_low": 95.0}
    p, acts = step(p, 100.0 + d * 4.0, params, **ind)
    [tp2] = acts
    assert tp2.reason is Reason.TP2 and tp2.qty == 0.5 and p.qty == 0.5
    p, acts = step(p, 100.0 + d * 4.0, params, **ind)
    [mv] = acts
    assert mv.sl == pytest.approx(100.0 + d * 3.5)
    # retrace through the trailed stop: trailing_stop
    p, acts = step(p, 100.0 + d * 3.4, params, **ind)
    assert acts[-1].reason is Reason.TRAILING_STOP and not p.is_open


def test_r_targets_need_an_initial_stop():
    assert evaluate(pos(L, sl=98.0), mkt(110.0), rules_only("r_targets")) == []


def test_tp2_waits_for_tp1():
    p = pos(L, initial_sl=98.0)
    [a, be] = evaluate(p, mkt(104.0), rules_only("r_targets"))
    assert a.reason is Reason.TP1  # a gap straight to 2R takes TP1 first
    assert be.reason is Reason.BREAKEVEN


def test_breakeven_after_an_earlier_tp1_moves_or_closes_when_due():
    # TP1 taken without its breakeven move (e.g. an older journal): the move comes now, or,
    # when the price is already back through the level, the position closes at market
    p = pos(L, sl=98.0, initial_sl=98.0, flags=frozenset({"tp1_done"}))
    [c] = evaluate(p, mkt(100.05), rules_only("r_targets"))  # below entry·1.001
    assert c.type is ActionType.CLOSE and c.reason is Reason.BREAKEVEN_STOP and c.priority == 2
    assert c.inputs["level"] == pytest.approx(100.1)
    [a] = evaluate(p, mkt(100.2), rules_only("r_targets"))
    assert a.sl == pytest.approx(100.1)
    assert evaluate(p, mkt(100.105), rules_only("r_targets")) == []  # within a tick: wait


# Profit booking ----------------------------------------------------------------------------

@pytest.mark.parametrize("side", [L, S])
@pytest.mark.parametrize(("roi", "age", "flags", "qty", "new_flags"), [
    (0.1499, 3600.0, (), None, None),
    (0.15, 1799.0, (), None, None),             # too young for level 1
    (0.15, 1800.0, (), 0.5, {"booked_50"}),
    (0.2499, 7200.0, ("booked_50",), None, None),
    (0.25, 60.0, (), 0.75, {"booked_50", "booked_75"}),  # level 2 at any age, from nothing
    (0.25, 7200.0, ("booked_50",), 0.25, {"booked_50", "booked_75"}),
    (0.40, 7200.0, ("booked_50", "booked_75"), None, None),  # each level once
])
def test_profit_booking(side, roi, age, flags, qty, new_flags):
    lev = 10
    target = roi + (1e-9 if qty is not None else 0.0)
    price = money.price_at_roi(side, 100.0, target, lev, 0.0005)
    p = pos(side, qty=1.0, leverage=lev, fee=0.0005, flags=frozenset(flags))
    acts = evaluate(p, mkt(price, ts=age), rules_only("profit_booking"))
    if qty is None:
        assert acts == []
    else:
        [a] = acts
        assert a.type is ActionType.REDUCE and a.reason is Reason.PROFIT_BOOKING
        assert a.qty == pytest.approx(qty) and a.flags == new_flags and a.priority == 6


def test_profit_booking_uses_original_quantity_after_level1():
    p = pos(L, qty=0.5, initial_qty=1.0, leverage=10, flags=frozenset({"booked_50"}))
    [a] = evaluate(p, mkt(103.0, ts=10.0), rules_only("profit_booking"))
    assert a.qty == pytest.approx(0.25)


# Dynamic TP --------------------------------------------------------------------------------

@pytest.mark.parametrize("side", [L, S])
def test_dynamic_tp_extends_on_strong_momentum_and_trend(side):
    d = side.dir
    p = pos(side, tp=100.0 + d * 10.0)
    params = rules_only("dynamic_tp")
    [a] = evaluate(p, mkt(100.0 + d * 6.99, momentum=d * 0.02, trend=d * 0.001), params)
    assert a.type is ActionType.MOVE_TP and a.reason is Reason.DYNAMIC_TP
    assert a.tp == pytest.approx(100.0 + d * 12.5) and a.flags == {"tp_extended"}
    # weak momentum or a trend against: nothing
    assert evaluate(p, mkt(100.0 + d * 5, momentum=d * 0.0199, trend=d * 0.01), params) == []
    assert evaluate(p, mkt(100.0 + d * 5, momentum=d * 0.05, trend=-d * 0.01), params) == []
    # once only
    assert evaluate(p.evolve(flags=frozenset({"tp_extended"})),
                    mkt(100.0 + d * 5, momentum=d * 0.05, trend=d * 0.01), params) == []


@pytest.mark.parametrize("side", [L, S])
def test_dynamic_tp_freezes_at_70_percent(side):
    d = side.dir
    p = pos(side, tp=100.0 + d * 10.0)
    params = rules_only("dynamic_tp")
    strong = {"momentum": d * 0.1, "trend": d * 0.1}
    assert evaluate(p, mkt(100.0 + d * 7.0, **strong), params) == []
    assert evaluate(p, mkt(100.0 + d * 9.0, last_change=0.0, rsi=50 + d * 40), params) == []


@pytest.mark.parametrize("side", [L, S])
def test_dynamic_tp_pulls_in_when_momentum_fades_and_rsi_stretched(side):
    d = side.dir
    p = pos(side, tp=100.0 + d * 10.0)
    params = rules_only("dynamic_tp")
    stretched = 70.01 if side is L else 29.99
    [a] = evaluate(p, mkt(100.0 + d * 4.0, last_change=0.0, rsi=stretched), params)
    assert a.tp == pytest.approx(100.0 + d * 7.0) and a.flags == {"tp_pulled_in"}
    assert a.inputs["change"] == "pull_in" and a.priority == 8
    edge = 70.0 if side is L else 30.0
    assert evaluate(p, mkt(100.0 + d * 4.0, last_change=0.0, rsi=edge), params) == []
    assert evaluate(p, mkt(100.0 + d * 4.0, last_change=d * 0.01, rsi=stretched), params) == []
    # not while losing
    assert evaluate(p, mkt(100.0 - d * 1.0, last_change=0.0, rsi=stretched), params) == []


# Add-on ------------------------------------------------------------------------------------

@pytest.mark.parametrize("side", [L, S])
@pytest.mark.parametrize(("r", "ema_off", "fires"), [
    (0.5, 0.0, True), (0.4999, 0.0, False), (1.0, 0.005, True), (1.0, -0.005, True),
    (1.0, 0.00501, False),
])
def test_add_on(side, r, ema_off, fires):
    d = side.dir
    price = 100.0 + d * 2.0 * r  # R = 2
    ema = price / (1 + ema_off)  # |p − ema|/ema = ema_off
    if fires and ema_off:
        ema = price / (1 + ema_off * (1 - 1e-9))
    p = pos(side, qty=2.0, initial_sl=100.0 - d * 2.0)
    acts = evaluate(p, mkt(price, ema9=ema), rules_only("add_on"))
    if fires:
        [a] = acts
        assert a.type is ActionType.ADD and a.reason is Reason.ADD_ON and a.limit
        assert a.qty == 1.0 and a.price == pytest.approx(round(ema, 2))
        assert a.flags == {"add_on_executed", "add_on_open:1.0"} and a.priority == 9
    else:
        assert acts == []


def test_add_on_once_and_not_without_ema():
    p = pos(L, initial_sl=98.0, flags=frozenset({"add_on_executed"}))
    assert evaluate(p, mkt(101.0, ema9=101.0), rules_only("add_on")) == []
    assert evaluate(pos(L, initial_sl=98.0), mkt(101.0), rules_only("add_on")) == []


# Scaling -----------------------------------------------------------------------------------

@pytest.mark.parametrize("side", [L, S])
@pytest.mark.parametrize(("roi", "mom", "vol", "age", "fires"), [
    (0.05, 0.0201, 100001.0, 899.0, True),
    (0.0499, 0.0201, 100001.0, 899.0, False),
    (0.05, 0.02, 100001.0, 899.0, False),    # momentum must exceed 2%
    (0.05, 0.0201, 100000.0, 899.0, False),  # volume must exceed 100k
    (0.05, 0.0201, 100001.0, 900.0, False),  # younger than 15 min only
    (0.05, None, 100001.0, 60.0, False),
])
def test_scaling(side, roi, mom, vol, age, fires):
    d = side.dir
    lev = 5
    price = money.price_at_roi(side, 100.0, roi + (1e-9 if fires else 0.0), lev, 0.0)
    p = pos(side, qty=1.0, leverage=lev)
    m = None if mom is None else d * mom
    acts = evaluate(p, mkt(price, ts=age, momentum=m, volume=vol), rules_only("scaling"))
    if fires:
        [a] = acts
        assert a.type is ActionType.ADD and a.reason is Reason.SCALING and not a.limit
        assert a.qty == pytest.approx(0.25) and a.flags == {"scaled"}
    else:
        assert acts == []


def test_scaling_capped_by_max_size_and_minimum():
    params = rules_only("scaling", scaling__max_size_mult=1.1)
    p = pos(L, qty=1.0, leverage=5)
    [a] = evaluate(p, mkt(101.0, ts=10.0, momentum=0.05, volume=1e6), params)
    assert a.qty == pytest.approx(0.1)
    full = pos(L, qty=1.1, initial_qty=1.0, leverage=5)
    assert evaluate(full, mkt(101.0, ts=10.0, momentum=0.05, volume=1e6), params) == []
    big_min = Market(symbol="BTC/USDT:USDT", tick_size=0.01, amount_step=0.001, min_amount=0.5)
    assert evaluate(p, mkt(101.0, ts=10.0, market=big_min, momentum=0.05, volume=1e6),
                    rules_only("scaling")) == []


def test_dynamic_tp_ignores_a_tp_on_the_loss_side():
    p = pos(L, tp=95.0)
    assert evaluate(p, mkt(94.0, momentum=0.1, trend=0.1), rules_only("dynamic_tp")) == []


# dynamic TP's indicator gates, kept per Params (`targets._gates`) -------------------------

import itertools  # noqa: E402
from dataclasses import fields as _fields  # noqa: E402

from pmgui.domain.models import Indicators, MarketState  # noqa: E402
from pmgui.rules import targets as targets_mod  # noqa: E402
from pmgui.rules.common import Ctx, make_ctx  # noqa: E402
from pmgui.rules.params import resolve_params  # noqa: E402

_GATE_POOL = [Indicators(momentum=m, trend=t, last_change=lc, rsi=r, swing_highs=(130.0,),
                         swing_lows=(70.0,))
              for m, t, lc, r in itertools.product((0.03, -0.03, None), (0.01, -0.01),
                                                   (-0.002, 0.002, None), (80.0, 20.0, 50.0))]
"""Indicators that open (and close) the extension and the pull-in for one side or the
other: a long's strong momentum is a short's fade, a long's stretched RSI is not a short's."""


def _dynamic_tp_on_one_params() -> None:
    """One Params for a path of indicator objects and both sides: each tick's dynamic TP
    is the one a Params without kept gates decides."""
    params = rules_only("dynamic_tp")
    n = 0
    for i, ind in enumerate(_GATE_POOL * 2):
        side = Side.LONG if (i // 3) % 2 == 0 else Side.SHORT
        d = side.dir
        p = pos(side, tp=100.0 * (1 + d * 0.1), sl=100.0 * (1 - d * 0.05), opened_at=0.0)
        m = MarketState(p.symbol, 100.0 + d * 2.0, 60.0, MARKET, ind)
        got = targets_mod.dynamic_tp(make_ctx(p, m, params))
        want = targets_mod.dynamic_tp(make_ctx(p, m, rules_only("dynamic_tp")))
        assert got == want
        # DESIGN §4 with the defaults (strong momentum .02, trend >= 0, fade <= 0, RSI
        # 70/30); the TP 10% away, the price 2% on the way, no level in between
        mom, trend, last, rsi = ind.momentum, ind.trend, ind.last_change, ind.rsi
        extend = mom is not None and trend is not None and d * mom >= 0.02 and d * trend >= 0
        pull = last is not None and d * last <= 0 and rsi is not None and (
            rsi > 70 if d > 0 else rsi < 30)
        assert [a.inputs["change"] for a in got] == (
            ["extend"] if extend else ["pull_in"] if pull else [])
        n += bool(got)
    assert n > 10  # both changes act on this path


def test_dynamic_tp_gates_kept_per_params_equal_a_fresh_computation():
    _dynamic_tp_on_one_params()


def test_the_gate_check_catches_gates_kept_across_indicators(monkeypatch):
    """Mutation check: the gates of the first indicators kept for every later candle."""
    real = targets_mod._gates

    def stale(hot, ind, d):
        first = hot[2].setdefault("first", {})
        if d not in first:
            first[d] = real(hot, ind, d)
        gates = (ind, d, *first[d][2:])
        hot[1] = gates
        return gates

    monkeypatch.setattr(targets_mod, "_gates", stale)
    with pytest.raises(AssertionError):
        _dynamic_tp_on_one_params()


def test_the_gate_check_catches_gates_kept_across_sides(monkeypatch):
    """Mutation check: the long's gates given to a short on the same indicators."""
    real = targets_mod._gates

    def sideless(hot, ind, d):
        gates = (ind, d, *real(hot, ind, 1)[2:])
        hot[1] = gates
        return gates

    monkeypatch.setattr(targets_mod, "_gates", sideless)
    with pytest.raises(AssertionError):
        _dynamic_tp_on_one_params()


def test_make_ctx_sets_every_field_of_the_context():
    """`make_ctx` stores the context's slots itself (not through `Ctx(...)`): each field is
    set, to what the rules read (a missing store would be an AttributeError on a read)."""
    params = resolve_params("guardian")
    p = pos(Side.SHORT, entry=100.0, leverage=5.0, fee=0.001, best_price=97.0,
            peak_roi=0.02, opened_at=10.0)
    ctx = make_ctx(p, MarketState(p.symbol, 98.0, 70.0, MARKET, Indicators()), params)
    values = {f.name: getattr(ctx, f.name) for f in _fields(Ctx)}
    roi = 5.0 * (-(98.0 - 100.0) - 0.001 * (100.0 + 98.0)) / 100.0
    assert values == {"pos": p, "mkt": ctx.mkt, "params": params, "price": 98.0, "roi": roi,
                      "peak": max(0.02, roi), "move": -(98.0 - 100.0) / 100.0, "best": 97.0,
                      "age": 60.0, "side": Side.SHORT, "dir": -1, "tick": MARKET.tick_size}


# dynamic TP's skip of an extension a level stops (`targets._extension_idle`) -------------

import random  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pmgui.rules.common import FLAG_TP_EXTENDED, FLAG_TP_PULLED_IN  # noqa: E402

_TICKS = (0.01, 0.5, 1.0)
_SKIP_PARAMS = (rules_only("dynamic_tp"), resolve_params("guardian"))


def _skip_case(side: Side, tp_dist: float, progress: float, tick: float,
               levels: list[tuple[str, float]], mom: float | None, trend: float,
               last: float | None, rsi: float, flags: frozenset[str], age_h: float,
               guardian: bool) -> None:
    """One position and tick: dynamic TP with the skip decides what it decides when the
    slow path is always taken (the rule before the skip). `levels` are swing levels as
    (where, offset): around the TP in ticks (the cap's edge) or around the price."""
    d = side.dir
    market = Market(symbol=MARKET.symbol, tick_size=tick, amount_step=0.001,
                    min_amount=0.001)
    tp = market.round_price(100.0 + d * tp_dist)
    price = 100.0 + progress * (tp - 100.0)
    at = {"tp": tp, "price": price, "ext": 100.0 + d * 1.25 * tp_dist}
    swings = [round(at[where] + off * tick, 6) for where, off in levels]
    ind = Indicators(momentum=None if mom is None else d * mom, trend=d * trend,
                     last_change=None if last is None else d * last, rsi=rsi,
                     swing_highs=tuple(s for s in swings if s > 0),
                     swing_lows=tuple(s for s in swings if s > 0))
    p = pos(side, tp=tp, sl=100.0 * (1 - d * 0.05), opened_at=0.0, flags=flags)
    m = MarketState(p.symbol, price, age_h * 3600.0, market, ind)
    params = _SKIP_PARAMS[guardian]
    got = targets_mod.dynamic_tp(make_ctx(p, m, params))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(targets_mod, "_extension_idle", lambda ctx, tp, ind: False)
        want = targets_mod.dynamic_tp(make_ctx(p, m, params))
    assert got == want
    assert [a.inputs for a in got] == [a.inputs for a in want]
    assert [list(a.inputs) for a in got] == [list(a.inputs) for a in want]  # key order


_LEVEL = st.tuples(st.sampled_from(("tp", "price", "ext")), st.integers(-3, 3))


@settings(max_examples=800, deadline=None, database=None)
@given(side=st.sampled_from((Side.LONG, Side.SHORT)), tp_dist=st.floats(0.5, 20.0),
       progress=st.floats(-0.5, 0.9), tick=st.sampled_from(_TICKS),
       levels=st.lists(_LEVEL, max_size=4),
       mom=st.sampled_from((None, 0.05, 0.02, 0.0199, -0.05)),
       trend=st.sampled_from((0.01, 0.0, -0.01)),
       last=st.sampled_from((None, -0.002, 0.0, 0.002)), rsi=st.sampled_from((20.0, 50.0, 80.0)),
       flags=st.sampled_from((frozenset(), frozenset({FLAG_TP_EXTENDED}),
                              frozenset({FLAG_TP_PULLED_IN}))),
       age_h=st.sampled_from((0.0, 1.0, 23.99, 24.0, 100.0)), guardian=st.booleans())
def test_dynamic_tp_skip_decides_as_the_slow_path(side, tp_dist, progress, tick, levels, mom,
                                                  trend, last, rsi, flags, age_h, guardian):
    _skip_case(side, tp_dist, progress, tick, levels, mom, trend, last, rsi, flags, age_h,
               guardian)


def _random_skip_cases(n: int) -> None:
    rng = random.Random(7)
    for _ in range(n):
        _skip_case(rng.choice((Side.LONG, Side.SHORT)), rng.uniform(0.5, 20.0),
                   rng.uniform(-0.5, 0.9), rng.choice(_TICKS),
                   [(rng.choice(("tp", "price", "ext")), rng.randint(-3, 3))
                    for _ in range(rng.randint(0, 4))],
                   rng.choice((None, 0.05, 0.02)), 0.01, rng.choice((None, 0.002)), 50.0,
                   frozenset(), rng.choice((0.0, 1.0)), rng.random() < 0.5)


def test_the_skip_cases_pass_unmutated():
    _random_skip_cases(300)


@pytest.mark.parametrize("broken", [
    lambda ctx, tp, ind: targets_mod.barrier(ind, ctx.price, ctx.dir) is not None,
    lambda ctx, tp, ind: targets_mod.extended_tp(
        ctx, tp, ctx.params.f("dynamic_tp.extend"),
        targets_mod.barrier(ind, ctx.price - ctx.dir * 4 * ctx.tick, ctx.dir)) is None,
], ids=["any-level", "level-seen-4-ticks-back"])
def test_the_skip_check_catches_a_wrong_skip(monkeypatch, broken):
    """Mutation check: a skip taken where the extension acts (any level in the way; the
    barrier looked up from a few ticks behind the price) changes decisions."""
    monkeypatch.setattr(targets_mod, "_extension_idle", broken)
    with pytest.raises(AssertionError):
        _random_skip_cases(300)
