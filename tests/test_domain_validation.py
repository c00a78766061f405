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
