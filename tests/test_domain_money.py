"""Money math vectors (DESIGN §3), long and short, with leverage and fees, and bad prices."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pmgui.domain import money
from pmgui.domain.enums import Side
from pmgui.domain.models import Market

L, S = Side.LONG, Side.SHORT


def test_move_is_unleveraged_fraction_of_entry():
    assert money.move(L, 100.0, 110.0) == pytest.approx(0.10)
    assert money.move(S, 100.0, 110.0) == pytest.approx(-0.10)
    assert money.move(S, 100.0, 95.0) == pytest.approx(0.05)


def test_roi_without_fees_is_leverage_times_move():
    # DESIGN §3: a −10% ROI at 10x is a 1% price move
    assert money.roi(L, 50_000.0, 49_500.0, 10) == pytest.approx(-0.10)
    assert money.roi(S, 50_000.0, 50_500.0, 10) == pytest.approx(-0.10)
    assert money.roi(S, 50_000.0, 49_000.0, 5) == pytest.approx(0.10)


def test_roi_with_fees_charges_both_sides():
    # long 100 → 102 at 10x, fee 5 bp a side: 10·(2 − 0.0005·202)/100 = 0.18990
    assert money.roi(L, 100.0, 102.0, 10, 0.0005) == pytest.approx(0.1899)
    # short 100 → 98 at 20x: 20·(2 − 0.0005·198)/100 = 0.3802
    assert money.roi(S, 100.0, 98.0, 20, 0.0005) == pytest.approx(0.3802)
    # at the entry price a position is down exactly the round-trip fee × leverage
    assert money.roi(L, 100.0, 100.0, 10, 0.0005) == pytest.approx(-0.01)


def test_r_multiples_long_and_short():
    assert money.pnl_r(L, 100.0, 104.0, 98.0) == pytest.approx(2.0)
    assert money.pnl_r(L, 100.0, 99.0, 98.0) == pytest.approx(-0.5)
    assert money.pnl_r(S, 100.0, 97.0, 102.0) == pytest.approx(1.5)
    assert money.pnl_r(S, 100.0, 101.0, 102.0) == pytest.approx(-0.5)
    assert money.pnl_r(L, 100.0, 104.0, None) is None
    assert money.pnl_r(L, 100.0, 104.0, 100.0) is None  # zero risk: undefined, not inf


def test_unrealized_pnl_quote_with_contract_size_and_fees():
    # long 0.5 BTC 60 000 → 61 000: 500 gross, fees 0.0005·(30 000 + 30 500) = 30.25
    assert money.unrealized_pnl(L, 60_000, 61_000, 0.5, 1.0, 0.0005) == pytest.approx(469.75)
    # short 10 contracts of 0.01 ETH 3 000 → 2 900: 10·0.01·100 = 10 gross
    assert money.unrealized_pnl(S, 3_000, 2_900, 10, 0.01, 0.0) == pytest.approx(10.0)


def test_liquidation_isolated():
    assert money.liquidation_price(L, 100.0, 10, 0.004) == pytest.approx(90.4)
    assert money.liquidation_price(S, 100.0, 10, 0.004) == pytest.approx(109.6)
    assert money.liquidation_price(L, 100.0, 0.5, 0.004) is None


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf, -math.inf])
def test_bad_prices_never_give_nan_or_raise(bad):
    assert money.move(L, 100.0, bad) == 0.0
    assert money.move(L, bad, 100.0) == 0.0
    assert money.roi(S, bad, 100.0, 10, 0.0005) == 0.0
    assert money.roi(S, 100.0, bad, 10, 0.0005) == 0.0
    assert money.unrealized_pnl(L, 100.0, bad, 1.0) == 0.0
    assert money.pnl_r(L, 100.0, bad, 90.0) is None
    assert money.pnl_r(L, bad, 100.0, 90.0) is None
    assert money.liquidation_price(L, bad, 10, 0.004) is None
    assert not money.stop_hit(L, 90.0, bad)
    assert not money.target_hit(S, 90.0, bad)


def test_price_at_roi_inverts_roi():
    for side in (L, S):
        p = money.price_at_roi(side, 100.0, -0.25, 10, 0.0005)
        assert money.roi(side, 100.0, p, 10, 0.0005) == pytest.approx(-0.25)


def test_stop_and_target_crossing_semantics():
    assert money.stop_hit(L, 95.0, 95.0) and not money.stop_hit(L, 95.0, 95.01)
    assert money.stop_hit(S, 105.0, 105.0) and not money.stop_hit(S, 105.0, 104.99)
    assert money.target_hit(L, 110.0, 110.0) and not money.target_hit(L, 110.0, 109.9)
    assert money.target_hit(S, 90.0, 89.0) and not money.target_hit(S, 90.0, 90.5)


def test_tighter_stop_never_loosens():
    assert money.tighter_stop(L, 95.0, 94.0) == 95.0
    assert money.tighter_stop(L, 95.0, 96.0) == 96.0
    assert money.tighter_stop(S, 105.0, 106.0) == 105.0
    assert money.tighter_stop(S, 105.0, 104.0) == 104.0


def test_market_precision():
    m = Market("BTC/USDT:USDT", tick_size=0.1, amount_step=0.001)
    assert m.round_price(41_250.04) == 41_250.0
    assert m.round_price(41_250.06) == 41_250.1
    assert m.floor_amount(0.0129) == 0.012
    assert m.floor_amount(0.003) == 0.003  # no float flooring artefact (0.002999…)


def test_floor_amount_keeps_a_whole_number_of_many_small_steps():
    """2.3 / 1e-8 is 229999999.99999997 in floats: the absolute 1e-9 of a step that covered
    the division's error for a few steps did not for 2.3e8 of them, and 2.3 was floored to
    2.29999999 (a replay's stop closed all but 1e-8, which stayed open)."""
    m = Market("X/USDT:USDT", tick_size=0.01, amount_step=1e-8)
    for q in (2.3, 4.1, 1.15, 0.29, 1.00142604, 82.50615925, 9.7):
        assert m.floor_amount(q) == q, q
    qs = [round(i * 0.001, 3) for i in range(1, 20_000)] + \
        [round(i * 1.00000007e-3, 8) for i in range(1, 20_000)]
    assert [q for q in qs if m.floor_amount(q) != q] == []
    # still a floor: never more than asked
    assert m.floor_amount(2.299999995) == 2.29999999
    assert m.floor_amount(0.123456789) == 0.12345678


finite = st.floats(min_value=1e-6, max_value=1e7, allow_nan=False, allow_infinity=False)
anything = st.floats(allow_nan=True, allow_infinity=True)


@given(entry=anything, price=anything, lev=st.floats(1, 125), fee=st.floats(0, 0.01),
       side=st.sampled_from([L, S]))
def test_money_functions_are_always_finite(entry, price, lev, fee, side):
    for v in (money.move(side, entry, price), money.roi(side, entry, price, lev, fee),
              money.unrealized_pnl(side, entry, price, 1.0, 1.0, fee)):
        assert math.isfinite(v)
    r = money.pnl_r(side, entry, price, entry * 0.9 if math.isfinite(entry) else 1.0)
    assert r is None or math.isfinite(r)


@given(entry=finite, price=finite, lev=st.floats(1, 125), side=st.sampled_from([L, S]))
def test_roi_sign_matches_direction_without_fees(entry, price, lev, side):
    r = money.roi(side, entry, price, lev)
    assert math.copysign(1, r) == math.copysign(1, side.dir * (price - entry)) or r == 0


@pytest.mark.parametrize("value, ok", [
    (1.5, True), (math.nextafter(0.0, 1.0), True), (1e308, True), (3, True),
    (0.0, False), (-0.0, False), (-2.5, False), (math.nan, False), (math.inf, False),
    (-math.inf, False), (0, False), (-1, False), (True, False), (False, False),
    (None, False), ("1.5", False)])
def test_a_valid_price_is_a_finite_positive_number(value, ok):
    """The float fast path and the general test agree: finite and strictly positive numbers
    only (a bool is not a price)."""
    assert money.valid_price(value) is ok
