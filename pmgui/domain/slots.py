"""Straight-line constructors and copiers for the frozen, slotted dataclasses of the hot path.

A frozen dataclass's own `__init__` and `dataclasses.replace` set each field through
`object.__setattr__` in a Python loop with keyword handling; positions, actions and the
chart's indicator line are made on most ticks of a storm. The functions made here set each
slot through its descriptor, as generated straight-line code (built from the class's own
field names, nothing else), for classes without `__post_init__` — the caller passes every
field value it wants, so nothing is validated that `__init__` would have validated.
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
    """`def make(*args)`: a new `cls` whose every slot is set, through its descriptor, to the
    expression `value_of(field name)`."""
    env: dict[str, object] = {"_new": object.__new__, "_cls": cls}
    lines = [f"def make({', '.join(args)}):", "    new = _new(_cls)"]
    for i, name in enumerate(_check(cls)):
        env[f"_s{i}"] = getattr(cls, name).__set__
        lines.append(f"    _s{i}(new, {value_of(name)})")
    lines.append("    return new")
    exec("\n".join(lines), env)  # code built from the class's own field names
    return env["make"]  # type: ignore[return-value]


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
