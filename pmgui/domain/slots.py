"""Straight-line constructors and copiers for the frozen, slotted dataclasses of the hot path.

A frozen dataclass's own `__init__` and `dataclasses.replace` set each field through
`object.__setattr__` in a Python loop with keyword handling; positions, actions and the
chart's indicator line are made on most ticks of a storm. The functions made here set each
slot as generated straight-line code (built from the class's own field names, nothing
else), for classes without `__post_init__` — the caller passes every field value it wants,
so nothing is validated that `__init__` would have validated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any


def _check(cls: type) -> tuple[str, ...]:
    if not hasattr(cls, "__slots__") or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: only slotted dataclasses without __post_init__")
    return tuple(f.name for f in fields(cls))


def _generate(cls: type, args: list[str], value_of: Callable[[str], str]) -> Callable[..., Any]:
    """`def make(*args)`: a new `cls` whose every slot is set to the expression
    `value_of(field name)`.

    Through the class's plain twin when it has one (`_twin`): the instance is made as the
    twin, its slots stored by plain attribute stores (the interpreter's fastest store: no
    frozen `__setattr__` on the twin), then given its real class — about three times faster
    than one descriptor call per slot, which is the way taken otherwise."""
    names = _check(cls)
    twin = _twin(cls, names)
    env: dict[str, object] = {"_new": object.__new__, "_cls": cls, "_twin": twin}
    lines = [f"def make({', '.join(args)}):"]
    if twin is not None:
        lines.append("    new = _twin()")  # the class call: no `object.__new__` argument checks
        lines += [f"    new.{name} = {value_of(name)}" for name in names]
        lines.append("    new.__class__ = _cls")
    else:
        lines.append("    new = _new(_cls)")
        for i, name in enumerate(names):
            env[f"_s{i}"] = getattr(cls, name).__set__
            lines.append(f"    _s{i}(new, {value_of(name)})")
    lines.append("    return new")
    exec("\n".join(lines), env)  # code built from the class's own field names
    return env["make"]  # type: ignore[return-value]


_TWINS: dict[type, type | None] = {}


def slots_in_base(cls: type) -> type:
    """Class decorator, applied under `@dataclass(frozen=True, slots=True)`: the fields'
    slots go on a plain base class (`_<Name>Slots`, nothing else in it), so the dataclass
    adds none of its own (it skips slots a base already has) and the base is the class's
    twin (`_twin`).

    Why: switching an instance from a twin to the class by `__class__` assignment makes
    CPython check that both have the same layout; for two classes on `object` it compares
    their slot-name tuples element by element (about 900 instructions for Position's 34
    slots, on every copy of a position), for a class that adds nothing to its base it only
    walks up to that base."""
    names = tuple(cls.__annotations__)  # the fields, in order (this module's classes: no
    # ClassVar or InitVar among them; `_twin` checks the result against `fields`)
    base = type(f"_{cls.__name__}Slots", (), {"__slots__": names,
                                              "__module__": cls.__module__})
    ns = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
    return type(cls.__name__, (base,), ns)


def _twin(cls: type, names: tuple[str, ...]) -> type | None:
    """A plain class with exactly `cls`'s memory layout — the same `__slots__` in the same
    order on the same base, nothing else — so that an instance built as the twin can become
    a `cls` by `__class__` assignment (Python allows it only between such layouts and
    checks it); for a `slots_in_base` class, that base itself. None when `cls` has another
    base, other slots, or refuses the assignment."""
    if cls in _TWINS:
        return _TWINS[cls]
    twin: type | None = None
    candidate: type | None = None
    bases = cls.__bases__
    if bases == (object,) and getattr(cls, "__slots__", None) == names:
        candidate = type(f"_{cls.__name__}Twin", (), {"__slots__": names})
    elif (len(bases) == 1 and bases[0].__bases__ == (object,)
          and bases[0].__dict__.get("__slots__") == names
          and cls.__dict__.get("__slots__") == ()):  # `slots_in_base`: the base itself
        candidate = bases[0]
    if candidate is not None:
        try:
            object.__new__(candidate).__class__ = cls  # the layout check, made once
            twin = candidate
        except TypeError:
            twin = None
    _TWINS[cls] = twin
    return twin


def slot_constructor(cls: type) -> Callable[..., Any]:
    """`fn(*values)` = `cls(*values)`, every field given in field order."""
    return _generate(cls, list(_check(cls)), lambda name: name)


def slot_copier(cls: type, names: tuple[str, ...]) -> Callable[..., Any]:
    """`fn(obj, *values)` = `dataclasses.replace(obj, **dict(zip(names, values)))`.
    TypeError when a name is not a field or is repeated."""
    if len(set(names)) != len(names) or not set(names) <= set(_check(cls)):
        raise TypeError(f"{cls.__name__} has no field among {names!r} (or one is repeated)")
    given = {name: f"v{i}" for i, name in enumerate(names)}
    return _generate(cls, ["obj", *given.values()], lambda name: given.get(name, f"obj.{name}"))
