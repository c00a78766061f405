"""Quiet bands (DESIGN §10): deciding with bands is identical to evaluating every tick.

Two drivers walk the same random path: one runs observe + evaluate on every tick, the other
evaluates only when the position's band does not hold (recomputing it after every evaluation,
every position change and every candle close). Their actions and positions must be equal on
every tick. Every band is also probed directly: prices inside it (edges included) at times
before its timer never make the rules act nor observe record anything.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from pmgui.domain.enums import ActionType, PositionStatus, Reason, Side, StopKind
from pmgui.domain.models import Action, Indicators, Market, MarketState, Position, Tranche
from pmgui.rules import bands as bands_mod
from pmgui.rules.bands import BandGate, QuietBand, quiet_band
from pmgui.rules.params import resolve_params
from pmgui.rules.policy import evaluate, observe
from pmgui.rules.presets import PRESETS

SYMBOL = "BTC/USDT:USDT"
MARKETS = [
    Market(SYMBOL, 0.01, 0.001, min_amount=0.001),
    Market(SYMBOL, 0.5, 0.1, min_amount=0.2),
    Market(SYMBOL, 0.0, 0.0),
]
FLAGS = ["tp1_done", "tp2_done", "breakeven_set", "booked_50", "booked_75", "scaled",
         "tp_extended", "tp_pulled_in", "add_on_executed"]

maybe = st.one_of(st.none(), st.floats(-0.05, 0.05))
indicators = st.builds(
    Indicators,
    ema9=st.one_of(st.none(), st.floats(90.0, 112.0)),
    atr=st.one_of(st.none(), st.floats(0.1, 4.0)),
    highest_high=st.one_of(st.none(), st.floats(95.0, 115.0)),
    lowest_low=st.one_of(st.none(), st.floats(85.0, 105.0)),
    rsi=st.one_of(st.none(), st.floats(0.0, 100.0)),
    volatility=st.one_of(st.none(), st.sampled_from([0.005, 0.01, 0.02, 0.03, 0.05])),
    momentum=maybe,
    volume=st.one_of(st.none(), st.sampled_from([5e4, 1e5, 5e5])),
    trend=maybe,
    last_change=maybe,
    swing_highs=st.lists(st.floats(95.0, 120.0), max_size=3).map(tuple),
    swing_lows=st.lists(st.floats(80.0, 105.0), max_size=3).map(tuple),
)
steps = st.lists(
    st.tuples(
        st.one_of(st.just(0.0), st.floats(-0.002, 0.002), st.floats(-0.03, 0.03)),  # return
        st.sampled_from([0.0, 1.0, 1.0, 30.0, 600.0, 3600.0]),  # seconds to the next tick
        st.booleans() | st.just(False),  # a candle closes before this tick
    ),
    min_size=5, max_size=70)
overrides = st.fixed_dictionaries({}, optional={
    "emergency.enabled": st.booleans(),
    "smart_tp.enabled": st.booleans(),
    "momentum_loss.enabled": st.booleans(),
    "trailing.enabled": st.booleans(),
    "trailing.mode": st.sampled_from(["fixed", "adaptive", "chandelier"]),
    "trailing.min_step": st.sampled_from([0.0, 0.001]),
    "trailing.after_breakeven": st.booleans(),
    "tightening.enabled": st.booleans(),
    "tightening.start_hours": st.sampled_from([0.0, 0.2, 2.0]),
    "dynamic_tp.enabled": st.booleans(),
    "dynamic_tp.stale_hours": st.sampled_from([0.1, 24.0]),
    "r_targets.enabled": st.booleans(),
    "profit_booking.enabled": st.booleans(),
    "profit_booking.level1_min_age": st.sampled_from([60.0, 1800.0]),
    "breakeven_plus.enabled": st.booleans(),
    "add_on.enabled": st.booleans(),
    "add_on.max_wait": st.sampled_from([1, 6]),
    "scaling.enabled": st.booleans(),
    "scaling.max_age": st.sampled_from([900.0, 1e6]),
    "tranches.enabled": st.booleans(),
    "take_profit.instant": st.booleans(),
})
scenario = st.fixed_dictionaries({
    "preset": st.sampled_from(sorted(PRESETS)),
    "overrides": overrides,
    "side": st.sampled_from([Side.LONG, Side.SHORT]),
    "leverage": st.sampled_from([1.0, 3.0, 10.0, 50.0]),
    "fee": st.sampled_from([0.0, 0.0005, 0.002]),
    "sl_pct": st.one_of(st.none(), st.floats(0.003, 0.2)),
    "tp_pct": st.one_of(st.none(), st.floats(0.003, 0.4)),
    "flags": st.frozensets(st.sampled_from(FLAGS), max_size=3),
    "add_on_open": st.booleans(),
    "tranches": st.booleans(),
    # the second tranche without a TP of its own (opened before the position had its TP):
    # it exits at the position's TP (`exits.tranche_targets`)
    "tranche_own_tp": st.booleans(),
    "automation": st.booleans(),
    "age": st.sampled_from([0.0, 100.0, 7000.0, 200000.0]),
    "market": st.sampled_from(MARKETS),
    "indicators": st.lists(indicators, min_size=1, max_size=4),
    "steps": steps,
    "probe": st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4),
})


def apply(pos: Position, actions: list[Action], ts: float) -> Position:
    """Actions as the engine carries them out (fills at once, a limit add rests)."""
    for a in actions:
        flags = pos.flags | a.flags
        if a.type is ActionType.MOVE_SL:
            kind = a.stop_kind or StopKind.MANUAL
            pos = replace(pos, sl=a.sl, sl_kind=kind, flags=flags)
        elif a.type is ActionType.MOVE_TP:
            pos = replace(pos, tp=a.tp, flags=flags)
        elif a.type is ActionType.REDUCE:
            assert a.qty is not None
            pos = replace(pos, qty=round(pos.qty - a.qty, 9), flags=flags)
        elif a.type is ActionType.ADD:
            assert a.qty is not None
            if a.limit:  # rests: add_on_open:<ts> stays until a cancel
                pos = replace(pos, flags=flags)
            else:
                pos = replace(pos, qty=round(pos.qty + a.qty, 9), flags=flags)
        elif a.type is ActionType.CANCEL:
            pos = replace(pos, flags=frozenset(f for f in flags
                                               if not f.startswith("add_on_open:")))
        elif a.type is ActionType.CLOSE:
            pos = replace(pos, qty=0.0, status=PositionStatus.CLOSED, closed_at=ts,
                          exit_price=a.price, flags=flags)
    return pos


def _params(s: dict):
    try:
        return resolve_params(s["preset"], s["overrides"])
    except Exception:  # an inconsistent override combination: the preset alone
        return resolve_params(s["preset"], {})


def _start(s: dict) -> Position:
    side: Side = s["side"]
    d, entry = side.dir, 100.0
    sl = None if s["sl_pct"] is None else round(entry * (1 - d * s["sl_pct"]), 2)
    tp = None if s["tp_pct"] is None else round(entry * (1 + d * s["tp_pct"]), 2)
    flags = set(s["flags"])
    if s["add_on_open"]:
        flags.add(f"add_on_open:{-50.0!r}")
    tranches: tuple[Tranche, ...] = ()
    if s["tranches"]:
        tranches = (Tranche("t1", 0.6, entry, 0.0, sl=sl, tp=tp),
                    Tranche("t2", 0.4, entry, 0.0,
                            sl=None if sl is None else round(sl - d * 0.5, 2),
                            tp=None if tp is None or not s.get("tranche_own_tp", True)
                            else round(tp + d * 0.7, 2)))
    return Position("p1", SYMBOL, side, 1.0, entry, s["leverage"], -s["age"], 1.0, sl=sl,
                    tp=tp, initial_sl=sl, fee_rate=s["fee"], automation=s["automation"],
                    best_price=entry, flags=frozenset(flags), tranches=tranches,
                    preset=s["preset"])


def _probe(band: QuietBand, pos: Position, mkt: MarketState, params, fractions) -> None:
    """The contract, directly: inside the band nothing is recorded and nothing acts."""
    lo = band.lo if math.isfinite(band.lo) else mkt.price * 0.5
    hi = band.hi if math.isfinite(band.hi) else mkt.price * 1.5
    prices = [math.nextafter(band.lo, math.inf), math.nextafter(band.hi, -math.inf),
              mkt.price, *(lo + (hi - lo) * f for f in fractions)]
    horizon = band.until if math.isfinite(band.until) else mkt.ts + 1e6
    times = [mkt.ts, math.nextafter(band.until, -math.inf) if math.isfinite(band.until)
             else mkt.ts + 1e6, mkt.ts + (horizon - mkt.ts) * fractions[0]]
    for p in prices:
        for ts in times:
            if not band.holds(p, ts) or not p > 0:
                continue
            assert observe(pos, p) is pos, (band, p)
            got = evaluate(pos, replace(mkt, price=p, ts=ts), params)
            assert got == [], (band, p, ts, got)


def ticks(s: dict) -> Iterator[tuple[float, float, MarketState, bool]]:
    """The scenario's path, tick by tick: (price, time, the market then, whether a candle
    closed at it: the next indicators)."""
    market: Market = s["market"]
    snaps = s["indicators"]
    price, ts, k = 100.0, 0.0, 0
    for ret, dt, candle in s["steps"]:
        price = max(price * (1 + ret), 1.0)
        if market.tick_size > 0 and ret and dt >= 30:
            price = market.round_price(price)
        ts += dt
        if candle:
            k += 1
        yield price, ts, MarketState(SYMBOL, price, ts, market, snaps[k % len(snaps)]), candle


def _run(s: dict) -> tuple[int, int]:
    params = _params(s)
    full = banded = _start(s)
    band: QuietBand | None = None
    gate = BandGate()  # the same band, computed lazily: must agree tick by tick
    quiet = evaluated = 0
    for price, ts, mkt, candle in ticks(s):
        if candle:  # indicators changed: the band of the same position with them, at this
            # tick, not evaluated (the engine's way: settled at the close)
            band = quiet_band(banded, mkt, params)
            gate.settle(banded, mkt, params)
            if band is not None:
                _probe(band, banded, mkt, params, s["probe"])
        # every tick, in full
        full = observe(full, price)
        acts_full = evaluate(full, mkt, params)
        full = apply(full, acts_full, ts)
        # the engine's way
        assert gate.quiet(price, ts) == (band is not None and band.holds(price, ts))
        if band is not None and band.holds(price, ts):
            quiet += 1
            acts = []
        else:
            evaluated += 1
            obs = observe(banded, price)
            acts = evaluate(obs, mkt, params)
            banded = apply(obs, acts, ts)
            band = quiet_band(banded, mkt, params)
            gate.settle(banded, mkt, params)
            if band is not None:
                _probe(band, banded, mkt, params, s["probe"])
        assert acts == acts_full
        assert banded == full
        if not full.is_open:
            break
    return quiet, evaluated


# The properties' searches (of these rule tests and test_rules_lane's): long scenarios, no
# deadline and no health check on their size or speed.
PROPERTY = settings(deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# The mutation checks need a failing example, not a minimal one: no shrinking, and the same
# examples every run (a random search took 33 s in one run and passed pytest's 120 s timeout
# in another, on a busy machine).
MUTATION = settings(PROPERTY, database=None, report_multiple_bugs=False, derandomize=True,
                    phases=(Phase.explicit, Phase.generate))


@settings(PROPERTY, max_examples=600)
@given(scenario)
def test_decisions_with_bands_equal_full_evaluation(s):
    _run(s)


@settings(MUTATION, max_examples=600)
@given(scenario)
def _mutant(s):
    _run(s)


def test_the_property_catches_a_band_that_is_too_wide(monkeypatch):
    """Mutation check: widening every band by a few ticks makes the property fail."""
    real = bands_mod.QuietBand

    def wide(lo, hi, until):
        return real(lo - 0.05 * abs(lo) if math.isfinite(lo) else lo,
                    hi + 0.05 * abs(hi) if math.isfinite(hi) else hi, until)

    monkeypatch.setattr(bands_mod, "QuietBand", wide)
    with pytest.raises(AssertionError):
        _mutant()


def test_the_property_catches_a_late_timer(monkeypatch):
    """Mutation check: timers that fire late are caught."""
    real = bands_mod.QuietBand
    monkeypatch.setattr(bands_mod, "QuietBand",
                        lambda lo, hi, until: real(lo, hi, until + 7200.0))
    with pytest.raises(AssertionError):
        _mutant()


def test_the_property_catches_a_band_kept_across_a_candle_close(monkeypatch):
    """Mutation check: a gate that keeps the band of the old indicators when a close
    settles the same position again is caught."""
    real = BandGate.settle

    def stale(self, pos, mkt, params):
        last = self._last
        if last is not None and last[0] is pos and mkt.indicators is not last[1].indicators:
            return  # the old band stays
        real(self, pos, mkt, params)

    monkeypatch.setattr(BandGate, "settle", stale)
    with pytest.raises(AssertionError):
        _mutant()


# --------------------------------------------------------------------------- concrete vectors

MARKET = MARKETS[0]


def _pos(side: Side = Side.LONG, **kw) -> Position:
    base = dict(id="p1", symbol=SYMBOL, side=side, qty=1.0, entry=100.0, leverage=5.0,
                opened_at=0.0, initial_qty=1.0, best_price=100.0)
    base.update(kw)
    return Position(**base)


def _band(pos: Position, price: float, preset: str = "manual", ts: float = 10.0,
          ind: Indicators | None = None, **ov) -> QuietBand | None:
    params = resolve_params(preset, ov)
    mkt = MarketState(SYMBOL, price, ts, MARKET, ind or Indicators())
    pos = observe(pos, price)
    return quiet_band(pos, mkt, params)


def test_long_with_stop_and_target_is_quiet_between_the_stop_and_the_best_price():
    b = _band(_pos(sl=95.0, tp=110.0), 100.0)
    assert b is not None
    assert b.lo == 95.0
    assert 100.0 * (1 - 1e-8) < b.hi <= math.nextafter(100.0, math.inf)
    assert b.until == math.inf
    assert b.holds(99.0, 1e9) and b.holds(95.01, 10.0)
    assert not b.holds(95.0, 10.0) and not b.holds(100.5, 10.0)


def test_after_a_pull_back_the_band_reaches_the_best_price_and_the_stop():
    b = _band(_pos(sl=95.0, tp=110.0, best_price=104.0, peak_roi=0.2), 101.0)
    assert b is not None and b.lo == 95.0
    assert 104.0 * (1 - 1e-8) < b.hi <= math.nextafter(104.0, math.inf)


def test_short_mirrors_the_long():
    b = _band(_pos(Side.SHORT, sl=105.0, tp=90.0, best_price=97.0, peak_roi=0.15), 99.0)
    assert b is not None and b.hi == 105.0
    assert math.nextafter(97.0, -math.inf) <= b.lo < 97.0 * (1 + 1e-8)


def test_take_profit_bounds_the_band_when_the_best_price_is_beyond_it():
    b = _band(_pos(sl=95.0, tp=103.0, best_price=104.0, peak_roi=0.2), 101.0)
    assert b is not None and (b.lo, b.hi) == (95.0, 103.0)


def test_emergency_tier_is_a_price_edge():
    # guardian at 10x: -15% ROI after fees is about 1.5% below the entry
    p = _pos(leverage=10.0, sl=None, tp=None, fee_rate=0.0005)
    b = _band(p, 100.0, "manual", **{"emergency.enabled": True})
    assert b is not None
    from pmgui.domain.money import price_at_roi
    edge = price_at_roi(Side.LONG, 100.0, -0.15, 10.0, 0.0005)
    assert edge is not None and edge < b.lo + 1e-6 and b.lo < edge * (1 + 1e-6)


def test_paused_automation_keeps_only_protection():
    b = _band(_pos(sl=95.0, tp=110.0, automation=False, best_price=None), 100.0, "guardian",
              **{"emergency.enabled": False, "smart_tp.enabled": False})
    assert b is not None and (b.lo, b.hi, b.until) == (95.0, 110.0, math.inf)


def test_paused_automation_keeps_the_emergency_caps_in_the_band():
    """DESIGN §4: emergency stops override everything, paused automation included: the band
    of a paused guardian position ends where the first loss cap fires (-15 % ROI at 5x:
    a price of ~97), not at its stop at 95."""
    from pmgui.domain.money import price_at_roi

    b = _band(_pos(sl=95.0, tp=110.0, automation=False, best_price=None), 100.0, "guardian")
    edge = price_at_roi(Side.LONG, 100.0, -0.15, 5.0, 0.0005)
    assert b is not None and edge is not None and 95.0 < edge
    assert edge < b.lo + 1e-6 and b.lo < edge * (1 + 1e-6) and b.hi <= 110.0


def test_profit_booking_age_is_a_timer():
    p = _pos(sl=98.5, tp=130.0, leverage=10.0)  # above the 2% trail: trailing is quiet
    b = _band(p, 100.0, "active", ts=100.0)
    assert b is not None and 1799.0 < b.until < 1800.0


def test_add_on_expiry_is_a_timer():
    p = _pos(sl=95.0, tp=130.0, flags=frozenset({"add_on_open:0.0", "add_on_executed"}))
    b = _band(p, 100.0, "breakout", ts=100.0, ind=Indicators(ema9=100.0))
    assert b is not None and 6 * 3600 - 1 < b.until < 6 * 3600


def test_no_band_for_closed_or_unusable_positions_or_a_price_that_acts():
    params = resolve_params("manual", {})
    m = MarketState(SYMBOL, 100.0, 1.0, MARKET)
    assert quiet_band(_pos(status=PositionStatus.CLOSED), m, params) is None
    assert quiet_band(_pos(qty=0.0), m, params) is None
    assert quiet_band(_pos(sl=101.0), m, params) is None  # the stop is crossed
    assert quiet_band(_pos(best_price=None), m, params) is None  # observe records


def test_policy_exports_quiet_band():
    from pmgui.rules.policy import quiet_band as exported
    assert exported is quiet_band


def test_band_gate_computes_the_band_only_when_a_tick_needs_it(monkeypatch):
    calls = []
    real = bands_mod.quiet_band
    in_lane = bands_mod._band_in_lane  # a band the trend lane's families start
    monkeypatch.setattr(bands_mod, "quiet_band", lambda *a: calls.append(a) or real(*a))
    monkeypatch.setattr(bands_mod, "_band_in_lane", lambda *a: calls.append(a) or in_lane(*a))
    params = resolve_params("manual", {})
    pos = _pos(sl=95.0, tp=110.0)
    gate = BandGate()
    gate.settle(pos, MarketState(SYMBOL, 100.0, 1.0, MARKET), params)
    assert not gate.quiet(100.5, 2.0) and calls == []  # a new best: no band computed
    assert gate.quiet(99.0, 2.0) and len(calls) == 1  # now computed, once
    assert gate.quiet(98.0, 3.0) and not gate.quiet(95.0, 3.0) and len(calls) == 1
    assert gate.band == real(pos, MarketState(SYMBOL, 100.0, 1.0, MARKET), params)
    gate.clear()
    assert not gate.quiet(99.0, 4.0) and gate.band is None


def test_every_rule_of_the_policy_has_a_band_family():
    """A rule added to the policy without its band family would make bands wrong: the
    pipeline's functions are pinned here, and an unknown enabled rule gives no band."""
    from pmgui.rules import policy
    from pmgui.rules.bands import HANDLED_RULES
    from pmgui.rules.params import RULE_IDS
    assert {rule for rule, _, _ in policy._PIPELINE} <= HANDLED_RULES
    assert set(RULE_IDS) <= HANDLED_RULES
    assert [fn.__name__ for _, fn, _ in policy._PIPELINE] == [
        "emergency", "stop_loss", "tranche_stops", "take_profit", "tranche_targets",
        "smart_tp", "momentum_loss", "r_targets", "profit_booking", "breakeven_after_tp1",
        "breakeven_plus", "trailing", "dynamic_tp", "add_on", "add_on_cancel", "scaling"]


def test_an_enabled_rule_without_a_family_gives_no_band(monkeypatch):
    from pmgui.rules import bands
    monkeypatch.setattr(bands, "HANDLED_RULES", bands.HANDLED_RULES - {"stop_loss"})
    assert _band(_pos(sl=95.0, tp=110.0), 100.0) is None


# ------------------------------------------------------- caches of the trailing arithmetic

from pmgui.rules import stops as stops_mod  # noqa: E402
from pmgui.rules.common import action as make_action  # noqa: E402
from pmgui.rules.common import make_ctx  # noqa: E402

_POOL = [Indicators(volatility=v, momentum=m)
         for v in (None, 0.005, 0.02, 0.05, math.nan) for m in (None, -0.03, 0.0, 0.01, 0.03)]
"""Shared indicator objects: a candle close hands the rules a new object (a cache miss),
the ticks between closes the same one again (a hit)."""

cached_steps = st.lists(st.tuples(
    st.integers(0, len(_POOL) - 1),  # the indicators in force
    st.booleans(),  # an equal copy instead of the shared object
    st.floats(80.0, 125.0),  # price
    st.floats(0.0, 30.0),  # how far the best price is beyond the price (%)
    st.sampled_from([0.0, 3000.0, 9000.0, 90000.0]),  # age
    st.booleans(),  # the other side (the positions of a book share a Params)
), min_size=1, max_size=25)


def _trailing_through_action(ctx) -> list[Action]:
    """`stops.trailing` the plain way: `trailing_level`'s inputs through `move_or_close`
    (and so `action`, which cleans every value)."""
    c = stops_mod.trailing_config(ctx.params)
    if c.after_breakeven and not stops_mod.breakeven_reached(ctx):
        return []
    level, info = stops_mod.trailing_level(ctx)
    if level is None or level <= 0:
        return []
    info = {**info, "level": level, "previous_sl": ctx.pos.sl}
    return stops_mod.move_or_close(ctx, level, Reason.TRAILING, "trailing", StopKind.TRAILING,
                                   info, min_step=c.min_step)


def _check_cached_equal_fresh(s: dict, steps) -> None:
    params = _params(s)  # one Params for the whole path: its caches live across ticks
    fresh_of = lambda: type(params)(params.as_dict(), params.preset)  # noqa: E731 - no caches
    for k, copy, price, beyond, age, other in steps:
        ind = _POOL[k]
        if copy:
            ind = replace(ind)
        side: Side = s["side"]
        pos = _start(s)
        if other:
            side = Side.SHORT if side is Side.LONG else Side.LONG
            pos = replace(pos, side=side, sl=None, tp=None, initial_sl=None, tranches=())
        best = price * (1 + side.dir * beyond / 100)
        pos = replace(pos, best_price=best, peak_roi=0.3, opened_at=-age)
        mkt = MarketState(SYMBOL, price, 0.0, s["market"], ind)
        fresh = fresh_of()
        ctx, ref = make_ctx(pos, mkt, params), make_ctx(pos, mkt, fresh)
        moved = stops_mod.trailing(ctx)
        assert moved == stops_mod.trailing(ref) == _trailing_through_action(ref)
        assert [list(a.inputs) for a in moved] == [
            list(a.inputs) for a in _trailing_through_action(ref)]
        assert stops_mod.trailing_level(ctx) == stops_mod.trailing_level(ref)
        level, info = stops_mod.trailing_level(ref)
        assert stops_mod.trailing_line(pos, mkt, params) == (level, info.get("distance"))
        reps = params.memo(bands_mod._trailing_reps, bands_mod._trailing_reps)[1]
        if reps:
            assert stops_mod.trailing_stop_levels_at(ctx, reps) == \
                stops_mod.trailing_stop_levels(ref, reps)
        assert quiet_band(pos, mkt, params) == quiet_band(pos, mkt, fresh)
        assert evaluate(pos, mkt, params) == evaluate(pos, mkt, fresh)


@settings(PROPERTY, max_examples=200)
@given(scenario, cached_steps)
def test_cached_trailing_arithmetic_equals_a_fresh_computation(s, steps):
    """What is kept per Params between ticks (the indicator multipliers, the distances of
    the band's ROI regions) gives what a Params without caches computes, tick by tick."""
    _check_cached_equal_fresh(s, steps)


@settings(MUTATION, max_examples=300,
          phases=(Phase.generate,))  # a mutant only has to fail: no shrinking
@given(scenario, cached_steps)
def _cached_mutant(s, steps):
    _check_cached_equal_fresh(s, steps)


def test_the_cache_property_catches_stale_indicator_parts(monkeypatch):
    """Mutation check: indicator multipliers kept across a candle close are caught."""
    real = stops_mod._indicator_parts

    def stale(params, mkt, c, d):  # the parts of the first indicators, kept with the Params
        return params.memo("stale parts", lambda p: real(params, mkt, c, d))

    monkeypatch.setattr(stops_mod, "_indicator_parts", stale)
    with pytest.raises(AssertionError):
        _cached_mutant()


def _kept_by_identity(params, name: str, obj: object, compute):
    """A mutant's cache on `params` (its memo `name`): what `compute()` gave for `obj`,
    kept by `obj`'s identity alone."""
    kept = params.memo(name, lambda p: {})
    hit = kept.get(id(obj))
    if hit is None or hit[0] is not obj:
        hit = kept[id(obj)] = (obj, compute())
    return hit[1]


def _both_sides_on_one_params() -> None:
    """A long and a short of one symbol share the indicators and the Params: each side gets
    its own multipliers (strong momentum for the long is weak for the short)."""
    params = resolve_params("guardian")
    ind = Indicators(volatility=0.02, momentum=0.03)
    for side in (Side.LONG, Side.SHORT, Side.LONG):
        pos = _pos(side, best_price=100.0, peak_roi=0.0)
        mkt = MarketState(SYMBOL, 100.0, 10.0, MARKET, ind)
        fresh = resolve_params("guardian")
        level, info = stops_mod.trailing_level(make_ctx(pos, mkt, fresh))
        assert stops_mod.trailing_level(make_ctx(pos, mkt, params)) == (level, info)
        assert stops_mod.trailing_line(pos, mkt, params) == (level, info["distance"])


def test_indicator_parts_are_kept_per_side():
    _both_sides_on_one_params()


def test_the_side_check_catches_parts_kept_across_sides(monkeypatch):
    """Mutation check: multipliers of the side that asked first given to the other."""
    real = stops_mod._indicator_parts

    def keyed_without_side(params, mkt, c, d):
        return _kept_by_identity(params, "parts by indicators", mkt.indicators,
                                 lambda: real(params, mkt, c, d))

    monkeypatch.setattr(stops_mod, "_indicator_parts", keyed_without_side)
    with pytest.raises(AssertionError):
        _both_sides_on_one_params()


def _moves_in_each_profit_region() -> None:
    """One Params and one indicators object, trailing moves at ROIs in each profit region:
    each move's inputs (profit multiplier, raw distance) are its own."""
    params = resolve_params("guardian")
    ind = Indicators(volatility=0.02, momentum=0.01)
    seen = set()
    for price in (100.2, 101.0, 101.5, 103.0, 101.0, 100.2):
        pos = _pos(best_price=price, peak_roi=0.0, sl=90.0)
        ctx = make_ctx(pos, MarketState(SYMBOL, price, 10.0, MARKET, ind), params)
        moved = stops_mod.trailing(ctx)
        want = _trailing_through_action(ctx)
        assert moved == want and list(moved[0].inputs) == list(want[0].inputs)
        seen.add(moved[0].inputs["profit_mult"])
    assert len(seen) == 4  # every region's multiplier, twice over


def test_trailing_moves_carry_their_own_region_inputs():
    _moves_in_each_profit_region()


def test_the_region_check_catches_inputs_kept_across_roi_regions(monkeypatch):
    """Mutation check: a trailing move's kept inputs reused at another profit multiplier."""
    real = stops_mod._inputs_prefix

    def per_parts(params, c, parts, terms):
        return _kept_by_identity(params, "prefix by parts", parts,
                                 lambda: real(params, c, parts, terms))

    monkeypatch.setattr(stops_mod, "_inputs_prefix", per_parts)
    with pytest.raises(AssertionError):
        _moves_in_each_profit_region()


def test_the_cache_property_catches_stale_region_distances(monkeypatch):
    """Mutation check: band region distances reused for other indicators are caught."""
    real = stops_mod.trailing_stop_levels_at

    def first_distances(ctx, rois):
        real(ctx, rois)
        return ctx.params.memo(stops_mod._distances_cache, stops_mod._distances_cache)[0][4]

    def stale(ctx, rois):  # the distances of the first indicators, kept with the Params
        c = stops_mod.trailing_config(ctx.params)
        if c.tightening or c.mode == "chandelier":
            return real(ctx, rois)
        dists = ctx.params.memo("stale distances", lambda p: first_distances(ctx, rois))
        return [ctx.best * (1 - ctx.dir * d) for d in dists]

    monkeypatch.setattr(stops_mod, "trailing_stop_levels_at", stale)
    with pytest.raises(AssertionError):
        _cached_mutant()


def test_the_cache_property_catches_stale_region_distances_in_bands(monkeypatch):
    """Mutation check: the band regions' distances (`stops.region_distances`, what the
    band's trailing family reads) kept across a candle close are caught."""
    real = stops_mod.region_distances

    def stale(params, mkt, c, d, rois):
        return params.memo("stale region distances", lambda p: real(params, mkt, c, d, rois))

    monkeypatch.setattr(stops_mod, "region_distances", stale)
    with pytest.raises(AssertionError):
        _cached_mutant()


def _band_distances_per_indicators() -> None:
    """One position and one Params, the indicators changing (a candle close) and coming
    back: each band is the one a Params without caches gives, and the trailing regions'
    distances make the bands differ (the multipliers differ between the indicators)."""
    ov = {"momentum_loss.enabled": False, "dynamic_tp.enabled": False,
          "smart_tp.enabled": False, "emergency.enabled": False}
    params = resolve_params("guardian", ov)
    for side in (Side.LONG, Side.SHORT):
        d = side.dir
        pos = _pos(side, sl=100.0, best_price=100 * (1 + d * 0.02), peak_roi=0.3)
        seen = set()
        for ind in [*_POOL, *reversed(_POOL), *_POOL[::3]]:
            mkt = MarketState(SYMBOL, 100 * (1 + d * 0.003), 10.0, MARKET, ind)
            got = quiet_band(pos, mkt, params)
            assert got == quiet_band(pos, mkt, resolve_params("guardian", ov)), ind
            seen.add(got)
        assert len(seen - {None}) >= 3


def test_band_distances_are_kept_per_indicators():
    _band_distances_per_indicators()


def test_the_band_distances_check_catches_distances_kept_across_indicators(monkeypatch):
    """Mutation check: the distances a position's `_Fixed` keeps for its bands
    (`_trailing_distances`) served for other indicators are caught."""
    real = bands_mod._trailing_distances

    def stale(fx, ctx, p, c, reps):
        return fx.t_dists or real(fx, ctx, p, c, reps)

    monkeypatch.setattr(bands_mod, "_trailing_distances", stale)
    with pytest.raises(AssertionError):
        _band_distances_per_indicators()


@given(st.dictionaries(st.text(min_size=1, max_size=5), st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.booleans(), st.none(),
    st.text(max_size=3), st.just(Side.LONG), st.just((1, 2))), max_size=6),
    st.sampled_from([(), ("tp1_done",), ["a", "b"]]))
def test_actions_are_built_as_the_dataclass_builds_them(inputs, flags):
    """`action` builds its Action through the slot descriptors: the same object, field by
    field, as `Action(...)` with `frozen_map` of the cleaned inputs."""
    from pmgui.domain.enums import Priority, Reason
    from pmgui.domain.models import frozen_map
    from pmgui.rules.common import clean
    pos = _pos(sl=95.0, tp=110.0)
    ctx = make_ctx(pos, MarketState(SYMBOL, 101.0, 5.0, MARKET), resolve_params("manual"))
    got = make_action(ctx, ActionType.MOVE_SL, Reason.TRAILING, "trailing",
                      Priority.STOP_ADJUST, sl=99.0, inputs=inputs, flags=flags,
                      stop_kind=StopKind.TRAILING)
    raw = {"price": 101.0, "roi": ctx.roi, "peak": ctx.peak, "move": ctx.move, **inputs}
    want = Action(type=ActionType.MOVE_SL, reason=Reason.TRAILING, position_id="p1",
                  price=101.0, sl=99.0, rule="trailing", priority=int(Priority.STOP_ADJUST),
                  ts=5.0, inputs=frozen_map({k: clean(v) for k, v in raw.items()}),
                  flags=frozenset(flags), stop_kind=StopKind.TRAILING)
    assert got == want
    assert type(got.priority) is int and type(got.flags) is frozenset
    assert all(v is None or isinstance(v, (str, int)) or math.isfinite(v)
               for v in got.inputs.values())


# ------------------------------------------- the fixed parts kept per position (`_Fixed`)

_FIXED_FIELDS = ("side", "entry", "tp", "leverage", "fee_rate")


def _positions_sharing_all_but_one() -> list[Position]:
    """Positions that differ from one another in one of `_FIXED_FIELDS` at a time, each
    an evolution of one base (the engine's way: the other fields are the same objects)."""
    out = []
    for side in (Side.LONG, Side.SHORT):
        d = side.dir
        base = _pos(side, sl=100.0 * (1 - d * 0.04), tp=100.0 * (1 + d * 0.06),
                    best_price=100.0 * (1 + d * 0.05), peak_roi=0.3, fee_rate=0.0005)
        out += [base, base.evolve(entry=100.4), base.evolve(tp=100.0 * (1 + d * 0.045)),
                base.evolve(leverage=12.0), base.evolve(fee_rate=0.002),
                base.evolve(tp=None)]  # the same values but the side as the other side's
    return out


_STATIC_ONLY = {"trailing.enabled": False, "momentum_loss.enabled": False,
                "dynamic_tp.enabled": False, "stop_loss.enabled": False}


def _check_fixed_parts(order: list[int]) -> None:
    """One Params for many positions, asked in `order`: each band is the one a Params
    without caches gives. With emergency and smart TP alone each position's band is its
    own (every field changes it); guardian's own adds the trailing regions' prices."""
    ind = Indicators(volatility=0.02, momentum=0.01)
    for ov in (_STATIC_ONLY, {}):
        params = resolve_params("guardian", ov)  # one Params: its caches live across calls
        positions = _positions_sharing_all_but_one()
        seen = set()
        for i in order:
            pos = positions[i % len(positions)]
            mkt = MarketState(SYMBOL, 100.0 * (1 + pos.side.dir * 0.02), 10.0, MARKET, ind)
            got = quiet_band(pos, mkt, params)
            assert got == quiet_band(pos, mkt, resolve_params("guardian", ov)), (i, pos)
            seen.add(got)
        if ov is _STATIC_ONLY:
            assert None not in seen and len(seen) == len(positions)


def _fixed_kept_by(key):
    """A mutant `bands._fixed`: a position's `_Fixed` kept by `key(pos)`."""
    def fixed(holder, pos):
        k = key(pos)
        fx = holder[1].get(k)
        if fx is None:
            fx = holder[1][k] = bands_mod._Fixed(pos)
        holder[0] = fx
        return fx

    return fixed


def _fixed_order() -> list[int]:
    """Every position right after one that differs from it in a single field (the last
    one used is checked first), then all of them again in a stride."""
    n = len(_positions_sharing_all_but_one())
    half = n // 2
    pairs = [i for b in (0, half) for k in range(1, half) for i in (b, b + k, b)]
    return [*pairs, half - 1, n - 1, half - 1, *range(0, 3 * n, 7)]


def test_fixed_parts_are_kept_per_side_entry_tp_leverage_and_fees():
    _check_fixed_parts(_fixed_order())


def test_the_fixed_parts_of_a_large_book_are_kept_for_all_its_positions(monkeypatch):
    """One Params (a preset without overrides) serves a whole book: the fixed parts of
    each of 5,000 positions with entries of their own are built once, not again each time
    the book goes round (kept for a few hundred positions, a 2,000-position book built
    one for every band it computed, its emergency and ROI sets with it)."""
    made = 0
    make = bands_mod._Fixed

    def counted(pos):
        nonlocal made
        made += 1
        return make(pos)

    monkeypatch.setattr(bands_mod, "_Fixed", counted)
    params = resolve_params("guardian", _STATIC_ONLY)
    ind = Indicators(volatility=0.02, momentum=0.01)
    base = _pos(Side.LONG, sl=96.0, tp=106.0, best_price=101.0, peak_roi=0.3)
    book = [base.evolve(entry=100.0 + k / 1000) for k in range(5000)]
    mkt = MarketState(SYMBOL, 102.0, 10.0, MARKET, ind)
    for _ in range(2):
        for pos in book:
            quiet_band(pos, mkt, params)
    assert made == len(book)


@pytest.mark.parametrize("field", _FIXED_FIELDS)
def test_the_fixed_parts_check_catches_a_key_without(monkeypatch, field):
    """Mutation check: `_Fixed` kept by a key that omits one of its inputs is caught."""
    monkeypatch.setattr(bands_mod, "_fixed", _fixed_kept_by(
        lambda pos: tuple(getattr(pos, f) for f in _FIXED_FIELDS if f != field)))
    with pytest.raises(AssertionError):
        _check_fixed_parts(_fixed_order())


def _check_leverage_true_and_one() -> None:
    """A leverage of True equals 1.0 (and hashes alike) but is no usable leverage: no
    band with automation on (no ROI to bound), while 1.0 has one — on one Params, in
    either order, by identity misses (distinct objects) and by value."""
    params = resolve_params("guardian", _STATIC_ONLY)
    one = _pos(sl=96.0, tp=106.0, best_price=105.0, peak_roi=0.3, leverage=1.0)
    mkt = MarketState(SYMBOL, 102.0, 10.0, MARKET, Indicators())
    for pos in (one.evolve(leverage=True), one, one.evolve(leverage=True), one):
        assert quiet_band(pos, mkt, params) == quiet_band(
            pos, mkt, resolve_params("guardian", _STATIC_ONLY)), pos.leverage
    assert quiet_band(one, mkt, params) is not None


def test_fixed_parts_tell_a_leverage_of_true_from_one():
    _check_leverage_true_and_one()


def test_the_leverage_check_catches_a_key_by_value_alone(monkeypatch):
    """Mutation check: `_Fixed` kept by values without their types is caught."""
    monkeypatch.setattr(bands_mod, "_fixed", _fixed_kept_by(
        lambda pos: tuple(getattr(pos, f) for f in _FIXED_FIELDS)))
    with pytest.raises(AssertionError):
        _check_leverage_true_and_one()


def test_the_cache_property_catches_a_trailing_table_kept_across_indicators(monkeypatch):
    """Mutation check: the trailing fast path's table (`stops._trail_table`: each profit
    region's distance and inputs) kept with the Params across a candle close."""
    real = stops_mod._trail_table

    def stale(hot, p, mkt, ind, tind, d):  # the first table of each side, whatever the
        kept = p.memo("stale tables", lambda p: {})  # indicators
        if d not in kept:
            kept[d] = real(hot, p, mkt, ind, tind, d)
        hot[0] = kept[d]
        return kept[d]

    monkeypatch.setattr(stops_mod, "_trail_table", stale)
    with pytest.raises(AssertionError):
        _cached_mutant()


def test_the_cache_property_catches_a_trailing_table_kept_across_sides(monkeypatch):
    """Mutation check: the table of the side that asked first given to the other."""
    real = stops_mod._trail_table

    def sideless(hot, p, mkt, ind, tind, d):
        table = real(hot, p, mkt, ind, tind, 1)
        table.d = d  # served as this side's
        return table

    monkeypatch.setattr(stops_mod, "_trail_table", sideless)
    with pytest.raises(AssertionError):
        _both_sides_on_one_params_moving()


def _both_sides_on_one_params_moving() -> None:
    """A long and a short of one symbol, one Params and one indicators object, each moving
    its trailing stop: each side's move is the general path's (`stops._trailing`)."""
    params = resolve_params("guardian")
    ind = Indicators(volatility=0.02, momentum=0.03)
    for side in (Side.LONG, Side.SHORT, Side.LONG, Side.SHORT):
        pos = _pos(side, best_price=100.0, peak_roi=0.0, sl=80.0 if side is Side.LONG else 120.0)
        ctx = make_ctx(pos, MarketState(SYMBOL, 100.0, 10.0, MARKET, ind), params)
        moved = stops_mod.trailing(ctx)
        assert moved and moved == stops_mod._trailing(ctx) == _trailing_through_action(ctx)


def test_trailing_moves_of_both_sides_on_one_params():
    _both_sides_on_one_params_moving()


def test_the_region_check_catches_a_template_shared_across_regions(monkeypatch):
    """Mutation check: the fast path's inputs template of one profit region reused in
    another (the record would carry the other region's multiplier and raw distance)."""
    real = stops_mod._inputs_template
    first: list[dict] = []

    def shared(prefix):
        if not first:
            first.append(real(prefix))
        return first[0]

    monkeypatch.setattr(stops_mod, "_inputs_template", shared)
    with pytest.raises(AssertionError):
        _moves_in_each_profit_region()


def test_the_pull_in_zone_bounds_the_band_when_rsi_is_stretched():
    """Dynamic TP's pull-in (fading momentum, RSI stretched, no extension) acts from just
    above the entry up to the freeze: below the entry the band must stop where that zone
    starts, not at the best price beyond it (`_dynamic_tp` reads the rule's kept gates)."""
    params = resolve_params("manual", {"dynamic_tp.enabled": True})
    ind = Indicators(momentum=None, trend=None, last_change=-0.002, rsi=80.0)
    roi_at_best = (105.0 - 100.0) / 100.0
    pos = Position("g", SYMBOL, Side.LONG, 1.0, 100.0, 1.0, 0.0, 1.0, tp=110.0,
                   fee_rate=0.0, best_price=105.0, peak_roi=roi_at_best)
    mkt = MarketState(SYMBOL, 99.5, 60.0, MARKET, ind)
    assert evaluate(pos, mkt, params) == []
    band = quiet_band(pos, mkt, params)
    assert band is not None and band.lo < 99.5 < band.hi <= 100.0 + 1e-6
    inside_zone = replace(mkt, price=100.5)
    assert [a.reason for a in evaluate(pos, inside_zone, params)] == [Reason.DYNAMIC_TP]


def _tightening_moves_on_their_own_timeframe() -> None:
    """A fixed trail tightened on another timeframe than the trail's: a candle close of
    tightening's timeframe alone (its volatility high, then low) changes the distance,
    and each move is the general path's (`stops._trailing`) and the plain one's."""
    params = resolve_params("active", {"trailing.timeframe": "1h", "tightening.timeframe": "1d"})
    trail = Indicators(volatility=0.01)
    for vol in (0.05, 0.001, 0.05):
        frames = {"1h": trail, "1d": Indicators(volatility=vol)}
        pos = _pos(best_price=100.0, peak_roi=0.0, sl=80.0, opened_at=0.0)
        ctx = make_ctx(pos, MarketState(SYMBOL, 100.0, 10.0, MARKET, trail, frames), params)
        moved = stops_mod.trailing(ctx)
        assert moved and moved == stops_mod._trailing(ctx) == _trailing_through_action(ctx)
        assert list(moved[0].inputs) == list(_trailing_through_action(ctx)[0].inputs)


def test_tightening_moves_read_tightening_s_own_indicators():
    _tightening_moves_on_their_own_timeframe()


def test_the_tightening_check_catches_a_table_kept_across_tightening_s_indicators(
        monkeypatch):
    """Mutation check: the fast path's table kept by the trail's indicators alone (a candle
    close of tightening's timeframe would leave the previous distance in force)."""
    real = stops_mod._trail_table

    def by_trail_alone(hot, p, mkt, ind, tind, d):
        kept = p.memo("tables by the trail's indicators", lambda p: {})
        if (id(ind), d) not in kept:
            kept[id(ind), d] = real(hot, p, mkt, ind, tind, d)
        table = kept[id(ind), d]
        table.tind = tind  # served as these indicators' table
        hot[0] = table
        return table

    monkeypatch.setattr(stops_mod, "_trail_table", by_trail_alone)
    with pytest.raises(AssertionError):
        _tightening_moves_on_their_own_timeframe()


def test_the_cache_property_catches_a_table_used_once_tightening_s_hours_started(monkeypatch):
    """Mutation check: the fast path's table (distances before tightening's hours start)
    used for an aged, profitable position."""
    real = stops_mod._trail_hot

    def never_aged(p):
        hot = real(p)
        if hot is not None:
            hot[4] = math.inf
        return hot

    monkeypatch.setattr(stops_mod, "_trail_hot", never_aged)
    with pytest.raises(AssertionError):
        _cached_mutant()


def _tightened_bands_per_volatility() -> None:
    """A young position under a fixed trail with tightening, one Params, a candle close
    that starts tightening's volatility step and one that ends it: each band is the one a
    Params without caches gives, and the step decides whether the trail can tighten the
    stop (its level 98.5 with the step, 98.0 without; the stop at 98.2)."""
    ov = {"breakeven_plus.enabled": False, "profit_booking.enabled": False,
          "scaling.enabled": False}
    params = resolve_params("active", ov)
    pos = _pos(sl=98.2, best_price=100.0, peak_roi=0.0, opened_at=0.0)
    seen = set()
    for vol in (0.05, 0.01, 0.05, 0.01):
        mkt = MarketState(SYMBOL, 99.9, 10.0, MARKET, Indicators(volatility=vol))
        got = quiet_band(pos, mkt, params)
        assert got == quiet_band(pos, mkt, resolve_params("active", ov)), vol
        seen.add(got)
    assert len(seen) == 2


def test_tightened_band_distances_follow_tightening_s_volatility():
    _tightened_bands_per_volatility()


def test_the_band_distances_check_catches_distances_kept_across_tightening_s_volatility(
        monkeypatch):
    """Mutation check: band region distances kept by the trail's multipliers alone (a
    candle whose volatility starts or ends tightening's step leaves them stale)."""
    real = stops_mod.region_distances

    def without_high_vol(params, mkt, c, d, rois):
        parts = stops_mod._indicator_parts(params, mkt, c, d)
        kept = params.memo("distances by the trail's multipliers", lambda p: {})
        key = (id(rois), parts[1], parts[3])
        if key not in kept:
            kept[key] = real(params, mkt, c, d, rois)
        return kept[key]

    monkeypatch.setattr(stops_mod, "region_distances", without_high_vol)
    with pytest.raises(AssertionError):
        _tightened_bands_per_volatility()


def _breakeven_plus_bands_per_position() -> None:
    """Breakeven+ alone on one Params for positions that differ in one of the side, entry,
    leverage and fees: each band is the one a Params without caches gives, and the level
    (kept in the position's `_Fixed`) decides whether the rule can tighten the stop."""
    ov = {"trailing.enabled": False, "tightening.enabled": False,
          "profit_booking.enabled": False, "scaling.enabled": False,
          "take_profit.enabled": False}
    params = resolve_params("active", ov)
    seen = set()
    for side in (Side.LONG, Side.SHORT):
        d = side.dir
        base = _pos(side, sl=100.0 * (1 + d * 0.0045), best_price=100.0 * (1 + d * 0.05),
                    peak_roi=0.5, fee_rate=0.0005)
        for pos in (base, base.evolve(leverage=12.0), base, base.evolve(fee_rate=0.002),
                    base.evolve(entry=99.5), base):
            mkt = MarketState(SYMBOL, 100.0 * (1 + d * 0.005), 10.0, MARKET, Indicators())
            got = quiet_band(pos, mkt, params)
            assert got == quiet_band(pos, mkt, resolve_params("active", ov)), pos
            seen.add(got)
    assert len(seen - {None}) >= 4


def test_breakeven_plus_levels_are_kept_per_position():
    _breakeven_plus_bands_per_position()


def test_the_breakeven_plus_check_catches_a_level_kept_across_positions(monkeypatch):
    """Mutation check: breakeven+'s level and edge of the first position kept for all."""
    real = bands_mod._breakeven_plus_fixed

    def first_only(ctx, p):
        return p.memo("first breakeven+ level", lambda q: real(ctx, p))

    monkeypatch.setattr(bands_mod, "_breakeven_plus_fixed", first_only)
    with pytest.raises(AssertionError):
        _breakeven_plus_bands_per_position()
