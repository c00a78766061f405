"""Numbers in logs, engine messages and the CLI: the market's precision, never `:g` artefacts."""

from __future__ import annotations

import math

from hypothesis import example, given
from hypothesis import strategies as st

from pmgui.domain.models import Market
from pmgui.domain.numbers import DASH, plain_price, plain_qty

BTC = Market("BTC/USDT:USDT", tick_size=0.1, amount_step=0.001)
DOGE = Market("DOGE/USDT:USDT", tick_size=0.00001, amount_step=1.0)
SHIB = Market("1000SHIB/USDT:USDT", tick_size=0.000001, amount_step=1.0)


def test_prices_to_the_tick_and_quantities_to_the_step():
    assert plain_price(87125.7208, BTC) == "87125.7"
    assert plain_price(0.31702905600000003, DOGE) == "0.31703"
    assert plain_price(50000, BTC) == "50000.0"
    assert plain_qty(0.02, BTC) == "0.020"
    assert plain_qty(1_000_000, SHIB) == "1000000"  # `:g` printed 1e+06


def test_without_a_market_about_six_significant_digits():
    assert plain_price(87125.7208) == "87125.7"
    assert plain_price(0.31702905600000003) == "0.317029"
    assert plain_qty(0.30000000000000004) == "0.3"


@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.none()))
@example(1.7976931348623157e308)  # too large to count in ticks: shown, never an error
def test_never_nan_inf_or_exponent(value):
    for text in (plain_price(value, BTC), plain_price(value), plain_qty(value, SHIB),
                 plain_qty(value)):
        assert "nan" not in text.lower() and "inf" not in text.lower()
        if value is None or not math.isfinite(value):
            assert text == DASH
        elif abs(value) < 1e15:
            assert "e" not in text.lower()


def test_plain_number_writes_numbers_in_full_without_exponents():
    """Texts whose market is not at hand (validation messages, the ledger's notes in the
    action log) wrote 0.00001 as 1e-05 and 101234.5 as 101234 (`:g`)."""
    from pmgui.domain.numbers import plain_number

    assert plain_number(0.00001) == "0.00001"
    assert plain_number(0.00001234) == "0.00001234"
    assert plain_number(101234.5) == "101234.5"
    assert plain_number(1e6) == "1000000"
    assert plain_number(0.1 + 0.2) == "0.3"
    assert plain_number(-2.5) == "-2.5"
    assert plain_number(float("nan")) == "—"


def test_the_ledgers_notes_write_small_quantities_plainly():
    from pmgui.engine.ledger import Correction, _cause

    c = Correction("pmg1", "p1", False, 0.00001, 0.00001234, 0.00001233, 0.0, 0.0, 0.0)
    text = _cause(c)
    assert "e-0" not in text and "0.00001 of order pmg1" in text and "0.00001234" in text
