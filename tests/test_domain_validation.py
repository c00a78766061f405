"""Validation (DESIGN §4): typed errors with messages a trader understands."""

from __future__ import annotations

import math

import pytest

from pmgui.domain.enums import Side
from pmgui.domain.errors import ValidationError
from pmgui.domain.models import Market, Position
from pmgui.domain.validation import (
    validate_close_qty,
    validate_leverage,
    validate_new_position,
    validate_sl_fraction,
    validate_targets,
)


def _pos(**kw) -> Position:
    base = dict(id="p1", symbol="BTC/USDT:USDT", side=Side.LONG, qty=1.0, entry=100.0,
                leverage=10, opened_at=0.0, initial_qty=1.0)
    base.update(kw)
    return Position(**base)


@pytest.mark.parametrize("amount,msg", [(0, "zero"), (-1, "negative"), (math.nan, "NaN"),
                                        (math.inf, "finite"), ("1", "number")])
def test_amount_must_be_positive_number(amount, msg):
    with pytest.raises(ValidationError, match=msg):
        validate_new_position("BTC/USDT:USDT", Side.LONG, amount, 10, [])


@pytest.mark.parametrize("lev", [0, 0.5, 126, math.nan])
def test_leverage_range(lev):
    with pytest.raises(ValidationError, match="leverage"):
        validate_leverage(lev)


def test_leverage_bounds_inclusive():
    assert validate_leverage(1) == 1
    assert validate_leverage(125) == 125


@pytest.mark.parametrize("pct", [0, 1, -0.1, 1.5])
def test_sl_fraction_open_interval(pct):
    with pytest.raises(ValidationError, match="stop-loss"):
        validate_sl_fraction(pct)


def test_one_position_per_symbol_and_side():
    existing = [_pos()]
    with pytest.raises(ValidationError, match="already open"):
        validate_new_position("BTC/USDT:USDT", Side.LONG, 1, 10, existing)
    validate_new_position("BTC/USDT:USDT", Side.SHORT, 1, 10, existing)  # hedge side is fine


def test_min_notional_and_amount():
    m = Market("BTC/USDT:USDT", 0.1, 0.001, min_amount=0.001, min_notional=5)
    with pytest.raises(ValidationError, match="below the minimum 5"):
        validate_new_position("BTC/USDT:USDT", Side.LONG, 0.001, 10, [], m, price=3000)
    with pytest.raises(ValidationError, match="below the minimum 0.001"):
        validate_new_position("BTC/USDT:USDT", Side.LONG, 0.0005, 10, [], m, price=60000)


def test_targets_on_correct_side():
    validate_targets(Side.LONG, 100, 95, 110)
    validate_targets(Side.SHORT, 100, 105, 90)
    with pytest.raises(ValidationError, match="below the current price"):
        validate_targets(Side.LONG, 100, 101, None)
    with pytest.raises(ValidationError, match="above the current price"):
        validate_targets(Side.LONG, 100, None, 99)
    with pytest.raises(ValidationError, match="above the current price"):
        validate_targets(Side.SHORT, 100, 99, None)
    with pytest.raises(ValidationError, match="liquidation"):
        validate_targets(Side.LONG, 100, 89, None, liquidation=90.4)
    with pytest.raises(ValidationError, match="NaN"):
        validate_targets(Side.LONG, 100, math.nan, None)


def test_close_quantity_never_exceeds_position():
    p = _pos(qty=0.5)
    assert validate_close_qty(0.5, p) == 0.5
    with pytest.raises(ValidationError, match="only 0.5"):
        validate_close_qty(0.6, p)


def test_messages_print_the_numbers_that_decide_in_full():
    """`:g` kept six significant digits: an SL a tenth under the price read as the price
    itself, a tiny coin's price came out as 1.234e-05, an order worth 4.996 as 5.00."""
    with pytest.raises(ValidationError) as e:
        validate_targets(Side.SHORT, 101234.6, 101234.5, None)
    assert str(e.value) == "SL 101234.5 must be above the current price 101234.6 for a short"
    with pytest.raises(ValidationError) as e:
        validate_targets(Side.LONG, 0.00001234, None, 0.00001233)
    assert str(e.value) == "TP 0.00001233 must be above the current price 0.00001234 for a long"
    with pytest.raises(ValidationError) as e:
        validate_targets(Side.LONG, 0.1 + 0.2, 0.31, None)
    assert str(e.value) == "SL 0.31 must be below the current price 0.3 for a long"
    m = Market("BTC/USDT:USDT", 0.1, 0.001, min_amount=0.001, min_notional=5)
    with pytest.raises(ValidationError) as e:
        validate_new_position("BTC/USDT:USDT", Side.LONG, 0.001, 10, [], m, price=4996.0)
    assert str(e.value) == "order value 4.996 is below the minimum 5 USDT for BTC/USDT:USDT"
