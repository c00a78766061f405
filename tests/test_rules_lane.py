"""Trend lanes (`pmgui.rules.bands.trend_lane`): a tick in the lane, decided by observe +
`evaluate_trend` (trailing, momentum loss, the stop loss), decides exactly as observe +
`evaluate` (every rule), and a band the gate starts from its lane is the band `quiet_band`
computes.

The drivers of `test_rules_bands` walk the same random paths (every preset, overrides,
sides, flags, tranches, indicators, candle closes): one evaluates every tick in full, the
other as the bench and a gate run it — a quiet tick skipped, a lane tick through
`evaluate_trend`, any other tick through `evaluate`. Actions and positions must be equal
on every tick, and at more prices inside each lane the two functions are compared directly.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pmgui.domain.enums import ActionType, Priority, Reason, Side, StopKind
from pmgui.domain.models import Indicators, MarketState, Position
from pmgui.rules import bands as bands_mod
from pmgui.rules.bands import BandGate, quiet_band, trend_lane
from pmgui.rules.params import resolve_params
from pmgui.rules.policy import evaluate, evaluate_trend, observe
from tests.test_rules_bands import (
    MARKETS,
    MUTATION,
    PROPERTY,
    SYMBOL,
    _params,
    _start,
    apply,
    scenario,
    ticks,
)


def _probe_lane(gate: BandGate, pos: Position, mkt: MarketState, params, fractions) -> None:
    """The lane's contract, directly: at prices inside it that the gate admits for `pos`,
    observe + evaluate_trend decides as observe + evaluate."""
    lo, hi = gate._lane_lo, gate._lane_hi
    if not lo < hi:
        return
    lo = lo if math.isfinite(lo) else mkt.price * 0.5
    hi = hi if math.isfinite(hi) else mkt.price * 1.5
    for f in fractions:
        p = lo + (hi - lo) * f
        if gate.lane(p, mkt.ts):
            obs = observe(pos, p)
            at = replace(mkt, price=p)
            assert evaluate_trend(obs, at, params) == evaluate(obs, at, params), (p, gate)


def _run(s: dict) -> tuple[int, int, int]:
    params = _params(s)
    full = laned = _start(s)
    gate = BandGate()
    quiet = lane = evaluated = 0
    for price, ts, mkt, candle in ticks(s):
        if candle:  # indicators changed: the gate settles the same position with them at
            gate.settle(laned, mkt, params)  # this tick, not evaluated (the engine's way)
        full = observe(full, price)
        acts_full = evaluate(full, mkt, params)
        full = apply(full, acts_full, ts)
        is_quiet = gate.quiet(price, ts)
        if gate._pending is None and gate._last is not None:  # the band the gate computed
            assert gate._band == quiet_band(*gate._last)  # (from its lane: the same band)
        if is_quiet:
            quiet += 1
            acts = []
        else:
            in_lane = gate.lane(price, ts)
            if in_lane:
                lane += 1
            else:
                evaluated += 1
            obs = observe(laned, price)
            acts = (evaluate_trend if in_lane else evaluate)(obs, mkt, params)
            laned = apply(obs, acts, ts)
            gate.settle(laned, mkt, params)
            _probe_lane(gate, laned, mkt, params, s["probe"])
        assert acts == acts_full
        assert laned == full
        if not full.is_open:
            break
    return quiet, lane, evaluated


trend_steps = st.lists(
    st.tuples(
        st.one_of(st.floats(-0.0015, 0.0035), st.floats(-0.0015, 0.0035),
                  st.floats(-0.03, 0.03)),  # return, favourable on the whole
        st.sampled_from([1.0, 1.0, 1.0, 30.0, 600.0]),  # seconds to the next tick
        st.sampled_from([False] * 11 + [True]),  # a candle closes before this tick
    ),
    min_size=20, max_size=90)
trending = st.tuples(scenario, trend_steps, st.booleans()).map(
    lambda t: {**t[0], "automation": True, "add_on_open": t[2] and t[0]["add_on_open"],
               "tp_pct": None if t[0]["tp_pct"] is None else t[0]["tp_pct"] + 0.05,
               "steps": [(r * t[0]["side"].dir, dt, c) for r, dt, c in t[1]]})
"""The band property's scenarios on paths that trend the position's way (the lane's ticks:
new best prices), automation on, an add-on resting less often, targets further away."""


@settings(PROPERTY, max_examples=250)
@given(st.one_of(trending, scenario))
def test_decisions_with_trend_lanes_equal_full_evaluation(s):
    _run(s)


# Mutation checks: a failing example, not a minimal one, and the same examples every run.
@settings(MUTATION, max_examples=300)
@given(trending)
def _mutant(s):
    _run(s)


def test_the_property_catches_a_band_taken_from_the_lane_alone(monkeypatch):
    """Mutation check: a band of a lane's successor without the stop, observe's edge,
    momentum loss and trailing narrowing it is not `quiet_band`'s."""
    monkeypatch.setattr(bands_mod, "_band_in_lane", lambda lane, pos, mkt, params: lane)
    with pytest.raises(AssertionError):
        _mutant()


def test_the_property_catches_a_lane_that_is_too_wide(monkeypatch):
    """Mutation check: a lane widened by a few percent lets another rule's action be
    missed."""
    real = bands_mod.trend_lane

    def wide(pos, mkt, params):
        lane = real(pos, mkt, params)
        if lane is None:
            return None
        return bands_mod.QuietBand(lane.lo * 0.95, lane.hi * 1.05, lane.until)

    monkeypatch.setattr(bands_mod, "trend_lane", wide)
    with pytest.raises(AssertionError):
        _mutant()


def _lane_after_a_target_pulled_in() -> tuple[bool, list]:
    """A long whose instant TP is pulled in from 110 to 101 between two settles: at 101.5,
    is the tick in the gate's lane, and what does the full policy do there?"""
    params = resolve_params("monitor", {"trailing.enabled": True, "trailing.mode": "fixed"})
    pos = Position("p1", SYMBOL, Side.LONG, 1.0, 100.0, 10.0, 0.0, 1.0, sl=97.0, tp=110.0,
                   initial_sl=97.0, best_price=100.0, preset="monitor")
    mkt = MarketState(SYMBOL, 100.0, 1.0, MARKET, Indicators())
    gate = BandGate()
    gate.settle(pos, mkt, params)
    assert gate.lane(100.5, 2.0)  # the lane of the first position: up to its TP
    pulled = replace(pos, tp=101.0)
    gate.settle(pulled, mkt, params)
    return gate.lane(101.5, 3.0), evaluate(observe(pulled, 101.5),
                                           replace(mkt, price=101.5, ts=3.0), params)


def test_a_lane_ends_when_the_position_changes_in_more_than_its_stop(monkeypatch):
    """A lane is kept only for positions that differ in their stop, best price and peak:
    after the TP moved, the tick beyond it is evaluated in full and closes. Mutation check:
    a lane kept for any position misses the close."""
    in_lane, acts = _lane_after_a_target_pulled_in()
    assert not in_lane and [a.reason for a in acts] == [Reason.TAKE_PROFIT]
    monkeypatch.setattr(bands_mod, "_lane_successor", lambda *a: True)
    assert _lane_after_a_target_pulled_in()[0]


# --------------------------------------------------------------------------- concrete cases

MARKET = MARKETS[0]


def _trend(preset: str, overrides: dict | None = None, side: Side = Side.LONG,
           steps: int = 40, step: float = 0.0005) -> tuple[list, list, int]:
    """A steady trend, every tick a new best: (full decisions, gated decisions, lane ticks)."""
    params = resolve_params(preset, overrides or {})
    d = side.dir
    start = 100.0
    pos = Position("p1", SYMBOL, side, 1.0, start, 10.0, 0.0, 1.0,
                   sl=round(start * (1 - d * 0.03), 2), tp=round(start * (1 + d * 0.5), 2),
                   initial_sl=round(start * (1 - d * 0.03), 2), best_price=start,
                   preset=preset)
    ind = Indicators(volatility=0.01, momentum=0.0)
    full = laned = pos
    gate = BandGate()
    out_full, out_laned, lanes = [], [], 0
    price = start
    for i in range(steps):
        price = round(price * (1 + d * step), 2)
        mkt = MarketState(SYMBOL, price, float(i + 1), MARKET, ind)
        full = observe(full, price)
        acts = evaluate(full, mkt, params)
        out_full.append(acts)
        full = apply(full, acts, mkt.ts)
        if gate.quiet(price, mkt.ts):
            out_laned.append([])
            continue
        in_lane = gate.lane(price, mkt.ts)
        lanes += in_lane
        obs = observe(laned, price)
        acts = (evaluate_trend if in_lane else evaluate)(obs, mkt, params)
        out_laned.append(acts)
        laned = apply(obs, acts, mkt.ts)
        gate.settle(laned, mkt, params)
    return out_full, out_laned, lanes


@pytest.mark.parametrize("side", [Side.LONG, Side.SHORT])
def test_a_trend_runs_in_the_lane_and_moves_the_stop_as_in_full(side):
    full, laned, lanes = _trend("guardian", side=side)
    assert laned == full
    assert lanes >= 30  # one lane, computed once, serves the trend's ticks
    moves = [a for acts in full for a in acts]
    assert len(moves) >= 30 and {a.reason for a in moves} == {Reason.TRAILING}


def test_momentum_loss_that_acts_at_a_new_peak_allows_no_lane(monkeypatch):
    """A give-back threshold of (nearly) zero closes at a new peak ROI: such Params allow no
    lane. Mutation check: allowing it misses the close."""
    over = {"momentum_loss.giveback": 1e-11}
    full, laned, lanes = _trend("guardian", over)
    assert lanes == 0 and laned == full
    assert any(a.reason is Reason.MOMENTUM_LOSS for acts in full for a in acts)
    monkeypatch.setattr(bands_mod, "_lane_allowed", lambda params: True)
    full, laned, lanes = _trend("guardian", over)
    assert lanes > 0 and laned != full


def test_no_lane_while_an_add_on_rests():
    params = resolve_params("breakout", {})
    pos = Position("p1", SYMBOL, Side.LONG, 1.0, 100.0, 10.0, 0.0, 1.0, sl=97.0, tp=150.0,
                   initial_sl=97.0, best_price=100.0, preset="breakout",
                   flags=frozenset({"add_on_open:0.0"}))
    mkt = MarketState(SYMBOL, 100.0, 1.0, MARKET, Indicators(ema9=100.0))
    assert trend_lane(pos, mkt, params) is None
    assert trend_lane(replace(pos, flags=frozenset()), mkt, params) is not None


def test_the_lane_holds_across_the_stop_and_below_the_peak():
    """The lane holds for the settled position's successors wherever the price is inside
    it: across their stop (evaluate_trend runs the stop loss there) and below their peak
    ROI (momentum loss), deciding as evaluate does; a looser stop ends it."""
    params = resolve_params("guardian", {})
    pos = Position("p1", SYMBOL, Side.LONG, 1.0, 100.0, 10.0, 0.0, 1.0, sl=97.0, tp=150.0,
                   initial_sl=97.0, best_price=100.0, preset="guardian")
    mkt = MarketState(SYMBOL, 100.0, 1.0, MARKET, Indicators())
    at = replace(mkt, price=100.5, ts=2.0)
    gate = BandGate()
    gate.settle(pos, mkt, params)
    assert not gate.quiet(100.5, 2.0) and gate.lane(100.5, 2.0)
    # a successor whose stop is above the price: crossed, closed by the stop loss
    crossed = replace(pos, sl=100.6)
    gate.settle(crossed, mkt, params)
    assert gate._lane_of is not None and gate.lane(100.5, 2.0)
    acts = evaluate(observe(crossed, 100.5), at, params)
    assert [a.reason for a in acts] == [Reason.STOP_LOSS]
    assert evaluate_trend(observe(crossed, 100.5), at, params) == acts
    # a peak above the ROI at the price: still the lane (evaluate_trend runs momentum loss)
    gate.settle(replace(pos, peak_roi=0.5), mkt, params)
    assert gate._lane_of is not None and gate.lane(100.5, 2.0)
    # a looser stop ends the lane (a breakeven move it had silenced could act again)
    gate.settle(replace(pos, sl=90.0), mkt, params)
    assert gate._lane_of is None
    gate.clear()
    assert not gate.lane(100.5, 2.0)


def _pull_back(peak_roi: float, price: float) -> tuple[bool, list, list]:
    """A guardian long (a trail of 4 %) that peaked at `peak_roi`, settled at 104 with its
    lane: at `price` (below its best of 104.5, above the trail's level), is the tick in the
    lane, and what do evaluate_trend and evaluate decide there after observe?"""
    params = resolve_params("guardian", {"trailing.min": 0.04, "trailing.max": 0.04})
    pos = Position("p1", SYMBOL, Side.LONG, 1.0, 100.0, 10.0, 0.0, 1.0, sl=97.0, tp=150.0,
                   initial_sl=97.0, best_price=104.5, peak_roi=peak_roi, preset="guardian")
    mkt = MarketState(SYMBOL, 104.0, 1.0, MARKET, Indicators())
    gate = BandGate()
    gate.settle(pos, mkt, params)
    at = replace(mkt, price=price, ts=2.0)
    obs = observe(pos, price)
    return gate.lane(price, 2.0), evaluate_trend(obs, at, params), evaluate(obs, at, params)


@pytest.mark.parametrize("price", [102.0, 101.5, 101.0])
def test_a_pull_back_in_the_lane_decides_momentum_loss_as_in_full(price):
    """A pull-back below the peak ROI is in the lane; evaluate_trend runs momentum loss
    there and closes as the full policy does (fails when the gate asks for the peak, or
    when evaluate_trend runs trailing alone: mutation checked)."""
    in_lane, trend, full = _pull_back(0.45, price)
    assert in_lane
    assert [a.reason for a in full] == [Reason.MOMENTUM_LOSS]
    assert trend == full


def test_evaluate_trend_runs_trailing_momentum_loss_below_the_peak_and_a_crossed_stop():
    params = resolve_params("guardian", {"trailing.enabled": False})
    pos = Position("p1", SYMBOL, Side.LONG, 1.0, 100.0, 10.0, 0.0, 1.0, sl=97.0,
                   best_price=110.0, preset="guardian")
    mkt = MarketState(SYMBOL, 110.0, 1.0, MARKET, Indicators())
    assert evaluate_trend(pos, mkt, params) == []
    acts = evaluate_trend(pos, mkt, resolve_params("guardian", {}))
    assert [a.type for a in acts] == [ActionType.MOVE_SL]
    # below a peak ROI of 200 %, momentum loss closes
    acts = evaluate_trend(replace(pos, peak_roi=2.0), mkt, params)
    assert [a.reason for a in acts] == [Reason.MOMENTUM_LOSS]
    # across its stop, the stop loss closes
    acts = evaluate_trend(replace(pos, sl=110.0), mkt, params)
    assert [a.reason for a in acts] == [Reason.STOP_LOSS]


@pytest.mark.parametrize("kind", ["move", "follows", "no level", "close"])
def test_a_lone_candidate_is_decided_as_the_arbitration_does(monkeypatch, kind):
    """A lone candidate (the lane's usual one: a trailing move), in evaluate_trend and
    evaluate, is returned as `_decided`
    returns it: kept when `select` keeps it alone, dropped when it follows a close that is
    not there or moves the stop nowhere (fails when the shortcut keeps every lone
    candidate, or one that follows: mutation checked)."""
    from pmgui.rules import policy
    from pmgui.rules.common import action, make_ctx

    params = resolve_params("guardian", {})
    pos = Position("p1", SYMBOL, Side.LONG, 1.0, 100.0, 10.0, 0.0, 1.0, sl=97.0,
                   best_price=110.0, preset="guardian")
    mkt = MarketState(SYMBOL, 110.0, 1.0, MARKET, Indicators())
    ctx = make_ctx(pos, mkt, params)
    if kind == "close":
        cand = action(ctx, ActionType.CLOSE, Reason.MOMENTUM_LOSS, "momentum_loss",
                      Priority.MOMENTUM_LOSS, qty=1.0)
    else:
        cand = action(ctx, ActionType.MOVE_SL, Reason.TRAILING, "trailing",
                      Priority.STOP_ADJUST, sl=None if kind == "no level" else 105.0,
                      inputs={"follows": "tp1"} if kind == "follows" else None,
                      stop_kind=StopKind.TRAILING)

    def rule(c):
        return [cand]

    monkeypatch.setattr(policy, "_trend_rules", lambda p: ((rule,),) * 4)
    monkeypatch.setattr(policy, "_pipelines", lambda p: ((rule,), (rule,)))
    for decide in (evaluate_trend, evaluate):
        got = decide(pos, mkt, params)
        assert got == policy._decided([cand], ctx)
        assert got == ([] if kind in ("follows", "no level") else [cand])


@pytest.mark.parametrize("side", [Side.LONG, Side.SHORT])
def test_a_guardian_lane_band_needs_no_context(monkeypatch, side):
    """guardian's lane leaves out only momentum loss and an adaptive trail: a band started
    from its lane reads the peak, the ROI and the best price directly (`_band_in_lane`'s
    direct path, no `make_ctx`) and is `quiet_band`'s. Fails when each family is called
    with a context."""
    params = resolve_params("guardian", {})
    d = side.dir
    pos = Position("p1", SYMBOL, side, 1.0, 100.0, 10.0, 0.0, 1.0, sl=100.0 - d * 3.0,
                   tp=100.0 + d * 50.0, initial_sl=100.0 - d * 3.0, best_price=100.0,
                   preset="guardian")
    # a new best at 104 (after a pull-back from 104.5): trailing moves the stop
    pos = observe(pos, 100.0 + d * 4.5)
    mkt = MarketState(SYMBOL, 100.0 + d * 4.0, 1.0, MARKET,
                      Indicators(volatility=0.01, momentum=0.0))
    obs = observe(pos, mkt.price)
    pos = apply(obs, evaluate(obs, mkt, params), mkt.ts)
    expected = quiet_band(pos, mkt, params)
    lane = trend_lane(pos, mkt, params)
    assert expected is not None and lane is not None

    def no_context(*args):
        raise AssertionError("a context was made")

    monkeypatch.setattr(bands_mod, "make_ctx", no_context)
    assert bands_mod._band_in_lane(lane, pos, mkt, params) == expected


class _Read(tuple):
    """A tuple that records which items are read."""

    read: list[int]

    def __getitem__(self, k):  # type: ignore[override]
        self.read.append(k)
        return tuple.__getitem__(self, k)


@pytest.mark.parametrize("side", [Side.LONG, Side.SHORT])
@pytest.mark.parametrize("falling", [True, False])
def test_trailing_regions_below_a_silent_one_are_not_walked_when_distances_fall(side,
                                                                                 falling):
    """Right after a trailing move the stop is the current region's level: with distances
    that fall as the ROI grows no lower region can tighten it, so the band's trailing
    family reads none of them — and bounds the band as the full walk does (fails when the
    lower regions are walked anyway)."""
    d = side.dir
    regions = ((-math.inf, 0.03, 0.02), (0.03, 0.05, 0.04), (0.05, 0.10, 0.075),
               (0.10, math.inf, 1.1))
    prices = ((0.0, 100.6), (100.6, 101.0), (101.0, 102.0), (102.0, 1e9)) if d > 0 else (
        (99.4, 1e9), (99.0, 99.4), (98.0, 99.0), (0.0, 98.0))
    dists = (0.04, 0.034, 0.028, 0.02) if falling else (0.02, 0.034, 0.028, 0.02)
    best = 100.0 + d * 4.0
    sl = best * (1 - d * dists[3])  # the stop trailing just set in the top region
    pos = Position("p1", SYMBOL, side, 1.0, 100.0, 5.0, 0.0, 1.0, sl=sl, best_price=best,
                   preset="guardian")
    out = []
    for walk in (True, False):
        seq = _Read(dists)
        seq.read = []
        b = bands_mod._Builder(bands_mod._Fixed(pos), 100.0 + d * 3.9)
        bands_mod._fire_regions(b, regions, prices, seq, 0.19, best, d, sl,
                                falling and not walk)
        out.append((b.lo, b.hi, seq.read))
    assert out[0][:2] == out[1][:2]
    assert out[1][2] == ([3] if falling else [3, 2, 1, 0])
