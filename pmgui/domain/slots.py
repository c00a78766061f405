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


def slot_constructor(cls: type) -> Callable[..., Any]:
    """`fn(*values)` = `cls(*values)`, every field given in field order."""
    names = _check(cls)
    env: dict[str, object] = {"_new": object.__new__, "_cls": cls}
    lines = [f"def make({', '.join(names)}):", "    new = _new(_cls)"]
    for i, name in enumerate(names):
        env[f"_s{i}"] = getattr(cls, name).__set__
        lines.append(f"    _s{i}(new, {name})")
    lines.append("    return new")
    exec("\n".join(lines), env)  # code built from the class's own field names
    return env["make"]  # type: ignore[return-value]


def slot_copier(cls: type, names: tuple[str, ...]) -> Callable[..., Any]:
    """`fn(obj, *values)` = `dataclasses.replace(obj, **dict(zip(names, values)))`.
    TypeError when a name is not a field or is repeated."""
    all_names = _check(cls)
    if len(set(names)) != len(names) or not set(names) <= set(all_names):
        raise TypeError(f"{cls.__name__} has no field among {names!r} (or one is repeated)")
    args = [f"v{i}" for i in range(len(names))]
    given = dict(zip(names, args, strict=True))
    env: dict[str, object] = {"_new": object.__new__, "_cls": cls}
    lines = [f"def copy(obj, {', '.join(args)}):" if args else "def copy(obj):",
             "    new = _new(_cls)"]
    for i, name in enumerate(all_names):
        env[f"_s{i}"] = getattr(cls, name).__set__
        lines.append(f"    _s{i}(new, {given.get(name, f'obj.{name}')})")
    lines.append("    return new")
    exec("\n".join(lines), env)  # code built from the class's own field names
    return env["copy"]  # type: ignore[return-value]
