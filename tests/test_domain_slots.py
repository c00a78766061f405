"""The straight-line constructors and copiers give what the dataclass's own ways give."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import pytest

from pmgui.domain.enums import ActionType, Reason, StopKind
from pmgui.domain.models import Action, frozen_map
from pmgui.domain.slots import slot_constructor, slot_copier
from pmgui.engine.events import RuleIndicator

ACTION = Action(ActionType.MOVE_SL, Reason.TRAILING, "p1", 101.5, qty=None, sl=99.0, tp=None,
                rule="trailing", priority=7, ts=12.5, inputs=frozen_map({"level": 99.0}),
                flags=frozenset({"x"}), stop_kind=StopKind.TRAILING, limit=False)


def test_constructor_equals_the_dataclass_init():
    values = [getattr(ACTION, f.name) for f in fields(Action)]
    made = slot_constructor(Action)(*values)
    assert made == ACTION and type(made) is Action and made is not ACTION
    with pytest.raises(TypeError):
        slot_constructor(Action)(*values[:-1])  # every field must be given


def test_constructor_of_the_indicator_line_equals_its_init():
    values = [f"v{i}" for i in range(len(fields(RuleIndicator)))]  # no validation to run
    assert slot_constructor(RuleIndicator)(*values) == RuleIndicator(*values)


def test_copier_equals_replace_and_refuses_unknown_or_repeated_names():
    for names, vals in ((("sl", "tp"), (98.0, 110.0)), (("ts",), (13.0,)), ((), ())):
        got = slot_copier(Action, names)(ACTION, *vals)
        assert got == replace(ACTION, **dict(zip(names, vals, strict=True)))
        assert got is not ACTION
    with pytest.raises(TypeError, match="no field"):
        slot_copier(Action, ("nope",))
    with pytest.raises(TypeError, match="no field"):
        slot_copier(Action, ("sl", "sl"))


def test_classes_that_validate_in_post_init_or_have_no_slots_are_refused():
    @dataclass(frozen=True, slots=True)
    class Checked:
        x: float

        def __post_init__(self) -> None:
            if self.x < 0:
                raise ValueError("x")

    @dataclass(frozen=True)
    class Plain:
        x: float

    for cls in (Checked, Plain):
        with pytest.raises(TypeError, match="slotted"):
            slot_constructor(cls)
        with pytest.raises(TypeError, match="slotted"):
            slot_copier(cls, ("x",))
