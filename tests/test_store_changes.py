"""`position_changes` (what a level move writes, validated) against whole rows.

The generated code takes a number field's new finite float inline; anything else goes
through `_changed`. Either way the columns and values must be those a comparison of the two
whole rows (`position_to_row`, `same_value`) gives, and a bad new value must be refused
with the same field named.
"""

from __future__ import annotations

import functools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pmgui.domain.enums import Side, StopKind
from pmgui.domain.errors import ValidationError
from pmgui.domain.models import Position
from pmgui.store.serialize import (
    _POS_CONVERT,
    _POS_OPTIONAL_FLOATS,
    _POS_REQUIRED_FLOATS,
    position_changes,
    position_to_row,
    same_value,
)

_GOOD = [100.0, 100.0 + 1e-9, 99.25, 0.0, -0.0, 1e300, 5e-324, 7, 0]
_BAD = [math.nan, math.inf, -math.inf, "1", None, True]

numbers = {*_POS_REQUIRED_FLOATS, *_POS_OPTIONAL_FLOATS}


@functools.cache  # one strategy per field and kind: hypothesis prepares a new strategy
def _value(name: str, good: bool) -> st.SearchStrategy:  # object on each of its draws
    options = list(_GOOD) + ([None] if name in _POS_OPTIONAL_FLOATS else [])
    if not good:
        options += [v for v in _BAD if not (v is None and name in _POS_OPTIONAL_FLOATS)]
    return st.one_of(st.sampled_from(options), st.floats(allow_nan=not good,
                                                         allow_infinity=not good))


def _base() -> Position:
    return Position("p1", "BTC/USDT:USDT", Side.LONG, 0.5, 43210.5, 10.0, 1_700_000_000.0,
                    0.5, sl=42000.0, tp=45000.0, initial_sl=42000.0, trailing=None,
                    best_price=43300.0, peak_roi=0.1)


@st.composite
def pairs(draw: st.DrawFn) -> tuple[Position, Position]:
    prev = _base()
    changes = draw(st.dictionaries(st.sampled_from(sorted(numbers)), st.just(None),
                                   max_size=6))
    prev = prev.evolve(**{n: draw(_value(n, True)) for n in changes})
    new = draw(st.dictionaries(st.sampled_from(sorted(numbers)), st.just(None), max_size=6))
    good = draw(st.booleans())
    kw = {n: draw(_value(n, good)) for n in new}
    if draw(st.booleans()):
        kw["sl_kind"] = draw(st.sampled_from([StopKind.TRAILING, StopKind.INITIAL, "trailing",
                                              "sideways"]))
    return prev, prev.evolve(**kw)


def _reference(prev: Position, pos: Position) -> tuple[tuple[str, ...], list]:
    a, b = position_to_row(prev, 0.0), position_to_row(pos, 0.0)
    cols = [name for name, _ in _POS_CONVERT if not same_value(a[name], b[name])]
    return tuple(cols), [b[c] for c in cols]


@settings(max_examples=500, deadline=None)
@given(pairs())
def test_position_changes_are_the_whole_rows_differences(pair) -> None:
    prev, pos = pair
    try:
        want = _reference(prev, pos)
    except ValidationError as exc:
        with pytest.raises(ValidationError) as got:
            position_changes(prev, pos)
        assert got.value.field == exc.field
        return
    cols, vals = position_changes(prev, pos)
    assert (cols, vals) == want
    assert [type(v) for v in vals] == [type(v) for v in want[1]]
    assert [math.copysign(1.0, v) for v in vals if isinstance(v, float)] \
        == [math.copysign(1.0, v) for v in want[1] if isinstance(v, float)]


def test_a_level_move_writes_its_changed_levels() -> None:
    prev = _base()
    moved = prev.evolve(sl=42100.5, trailing=42100.5, sl_kind=StopKind.TRAILING,
                        best_price=43400.25, peak_roi=0.1 + 1e-12)
    assert position_changes(prev, moved) == (
        ("sl_kind", "peak_roi", "sl", "trailing", "best_price"),
        ["trailing", 0.1 + 1e-12, 42100.5, 42100.5, 43400.25])
    # equal values in new objects, and 0.0 against -0.0
    same = prev.evolve(sl=float("42000.0"), peak_roi=float("0.1"))
    assert position_changes(prev, same) == ((), [])
    zero = prev.evolve(peak_roi=0.0)
    assert position_changes(zero, zero.evolve(peak_roi=-0.0)) == (("peak_roi",), [-0.0])
