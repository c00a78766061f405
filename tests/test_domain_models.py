"""`Position.evolve`: the same new position as `dataclasses.replace`, by generated code."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmgui.domain.enums import PositionStatus, Side, StopKind
from pmgui.domain.models import Position, Tranche

BASE = Position("p1", "BTC/USDT:USDT", Side.LONG, 1.0, 100.0, 5.0, 0.0, 1.0, sl=95.0,
                tp=110.0, best_price=101.0, flags=frozenset({"tp1_done"}),
                tranches=(Tranche("t1", 1.0, 100.0, 0.0),))
VALUES = {
    "qty": st.floats(0.0, 10.0), "sl": st.none() | st.floats(1.0, 200.0),
    "tp": st.none() | st.floats(1.0, 200.0), "peak_roi": st.floats(-1.0, 1.0),
    "best_price": st.none() | st.floats(1.0, 200.0),
    "sl_kind": st.sampled_from(list(StopKind)), "status": st.sampled_from(list(PositionStatus)),
    "flags": st.frozensets(st.sampled_from(["a", "b", "tp1_done"])),
    "automation": st.booleans(), "tranches": st.just(()), "exit_reason": st.none() | st.text(),
}


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({}, optional=VALUES))
def test_evolve_is_replace(changes):
    got = BASE.evolve(**changes)
    want = replace(BASE, **changes)
    assert got == want and type(got) is Position
    for f in fields(Position):  # every field, by identity where it was not changed
        if f.name not in changes:
            assert getattr(got, f.name) is getattr(BASE, f.name)
    assert BASE == Position(**{f.name: getattr(BASE, f.name) for f in fields(Position)})


def test_evolve_rejects_what_replace_rejects():
    with pytest.raises(TypeError):
        BASE.evolve(no_such_field=1)
    assert BASE.evolve() == BASE and BASE.evolve() is not BASE
    # the order of the keywords does not matter
    assert BASE.evolve(sl=90.0, tp=120.0) == BASE.evolve(tp=120.0, sl=90.0)


def test_evolver_is_evolve_without_keywords():
    from pmgui.domain.models import evolver
    fn = evolver("sl", "sl_kind", "flags")
    assert fn(BASE, 96.0, StopKind.TRAILING, frozenset()) == BASE.evolve(
        sl=96.0, sl_kind=StopKind.TRAILING, flags=frozenset())
    with pytest.raises(TypeError):
        evolver("sl", "no_such_field")
    with pytest.raises(TypeError):
        evolver("sl", "sl")
