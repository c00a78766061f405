"""The straight-line constructors and copiers give what the dataclass's own ways give."""

from __future__ import annotations

import copy
import sys
from dataclasses import FrozenInstanceError, dataclass, field, fields, replace

import pytest

from pmgui.domain.enums import ActionType, Reason, StopKind
from pmgui.domain.models import Action, Indicators, Market, MarketState, Position, Tick, frozen_map
from pmgui.domain.slots import _twin, slot_constructor, slot_copier, slots_in_base
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


def test_the_usual_classes_are_made_through_their_plain_twin_and_come_out_whole():
    """Position, Action and MarketState are built as a plain twin of the same slot layout and
    then given their class: the result is an instance of the class, equal to what its own
    constructor makes, and still frozen."""
    for cls in (Action, Position, MarketState):
        names = tuple(f.name for f in fields(cls))
        assert _twin(cls, names) is not None
    made = slot_constructor(Action)(*[getattr(ACTION, f.name) for f in fields(Action)])
    assert type(made) is Action and made == ACTION
    with pytest.raises(FrozenInstanceError):
        made.sl = 1.0  # type: ignore[misc]


def test_a_class_of_another_layout_is_made_slot_by_slot_all_the_same():
    """A weak-referenceable class has one slot more than its fields: no twin, and the
    constructor and copier still give what `__init__` and `replace` give."""
    @dataclass(frozen=True, slots=True, weakref_slot=True)
    class Referenced:
        x: float
        y: str = "a"

    assert _twin(Referenced, ("x", "y")) is None
    made = slot_constructor(Referenced)(1.5, "b")
    assert made == Referenced(1.5, "b") and type(made) is Referenced
    assert slot_copier(Referenced, ("y",))(made, "c") == replace(made, y="c")


def test_market_state_is_made_as_the_dataclass_would_make_it():
    """`MarketState(...)` builds itself in `__new__`: positional and keyword arguments, the
    shared defaults, `replace` and `copy` give the fields the dataclass's own `__init__`
    would have set."""
    market = Market("S/USDT:USDT", 0.01, 0.001)
    ind = Indicators(ema9=10.0)
    a = MarketState("S/USDT:USDT", 101.5, 7.0, market, ind, {"1h": ind})
    b = MarketState(symbol="S/USDT:USDT", price=101.5, ts=7.0, market=market, indicators=ind,
                    frames={"1h": ind})
    assert a == b and type(a) is MarketState
    assert [getattr(a, f.name) for f in fields(MarketState)] == [
        "S/USDT:USDT", 101.5, 7.0, market, ind, {"1h": ind}]
    bare = MarketState("S/USDT:USDT", 1.0, 2.0, market)
    assert bare.indicators == Indicators() and dict(bare.frames) == {}
    assert replace(a, price=99.0) == MarketState("S/USDT:USDT", 99.0, 7.0, market, ind,
                                                 {"1h": ind})
    assert copy.copy(a) == a
    with pytest.raises(FrozenInstanceError):
        a.price = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        MarketState("S/USDT:USDT", 1.0)  # type: ignore[call-arg]


def test_the_hot_classes_keep_their_slots_on_a_plain_base_that_is_their_twin():
    """Position, Action, MarketState and Indicators (made or copied on every evaluated tick)
    and Tick (made for every row of a replayed file) add no slot of their own: their fields'
    slots are on a plain base, which is their twin, so the class switch of every copy checks
    the layout by walking to that base instead of comparing slot-name tuples."""
    for cls in (Position, Action, MarketState, Indicators, Tick):
        names = tuple(f.name for f in fields(cls))
        (base,) = cls.__bases__
        assert cls.__dict__["__slots__"] == () and base.__slots__ == names
        assert base.__bases__ == (object,) and _twin(cls, names) is base


def test_slots_in_base_keeps_the_dataclass_as_it_was():
    """The same fields, defaults, equality, repr, frozenness and memory layout as the plain
    slotted dataclass; the constructor and copier give what `__init__` and `replace` give."""
    def declare(with_base: bool) -> type:
        class Thing:
            x: float
            tags: frozenset[str] = frozenset()
            extra: tuple[int, ...] = field(default_factory=tuple)

        return dataclass(frozen=True, slots=True)(slots_in_base(Thing) if with_base else Thing)

    plain, based = declare(False), declare(True)
    assert [(f.name, f.default) for f in fields(based)] == [
        (f.name, f.default) for f in fields(plain)]
    a = based(1.5)
    assert repr(a).endswith(repr(plain(1.5)).split(".")[-1])
    assert a == based(1.5, frozenset(), ()) and a != based(2.0)
    assert not hasattr(a, "__dict__") and sys.getsizeof(a) == sys.getsizeof(plain(1.5))
    with pytest.raises(FrozenInstanceError):
        a.x = 2.0  # type: ignore[misc]
    assert _twin(based, ("x", "tags", "extra")) is based.__bases__[0]
    made = slot_constructor(based)(3.0, frozenset({"t"}), (1,))
    assert type(made) is based and made == based(3.0, frozenset({"t"}), (1,))
    assert slot_copier(based, ("x",))(made, 4.0) == replace(made, x=4.0)
