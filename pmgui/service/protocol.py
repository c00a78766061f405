"""The engine service's wire format: versioned JSON generated from the dataclasses (DESIGN §11).

One generic mechanism, no per-type code: every frozen dataclass and enum defined in the
modules listed in `MODULES` is registered by its class name, and values are encoded by
walking them:

    dataclass  → {"__t": "SetTargets", "position_id": "p1", "sl": 101.5, "tp": "keep"}
    enum       → {"__e": "Side", "v": "long"}
    tuple/list → [ ... ]                    (decoded as a tuple: snapshots are immutable)
    frozenset  → {"__s": [ ... ]}
    mapping    → {"__m": [[key, value], ...]}  (decoded read-only)
    nan / ±inf → {"__f": "nan" | "inf" | "-inf"}  (the JSON itself stays strict)

Decoding is strict: an unknown type, enum value or field, a missing required field, or a
value that does not match the field's annotation raises `ProtocolError` naming the field,
so a hostile or outdated peer gets a clear refusal and nothing is constructed.

`schema()` describes every registered type (fields, annotations, defaults) and
`SCHEMA_HASH` fingerprints it: peers exchange it in their hello, so two builds whose
dataclasses differ notice at once instead of misreading each other.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import importlib
import json
import math
import types
import typing
from collections.abc import Mapping
from typing import Any

VERSION = 1  # bump on any incompatible change of the envelope or the encoding

MODULES = (
    "pmgui.domain.enums",
    "pmgui.domain.models",
    "pmgui.store.metrics",
    "pmgui.engine.commands",
    "pmgui.engine.events",
)


class ProtocolError(ValueError):
    """A frame the other side sent that we cannot accept (the message says why)."""

    def __init__(self, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.code = code


# -- the registry ----------------------------------------------------------------------------

_TYPES: dict[str, type] = {}
_HINTS: dict[type, dict[str, Any]] = {}


def registry() -> dict[str, type]:
    """Every wire type by name (built once from `MODULES`)."""
    if not _TYPES:
        found: dict[str, type] = {}
        for modname in MODULES:
            mod = importlib.import_module(modname)
            for name, obj in vars(mod).items():
                if not isinstance(obj, type) or obj.__module__ != modname:
                    continue
                if not (dataclasses.is_dataclass(obj) or issubclass(obj, enum.Enum)):
                    continue
                if name in found and found[name] is not obj:
                    raise RuntimeError(f"two wire types named {name}: "
                                       f"{found[name].__module__} and {modname}")
                found[name] = obj
        _TYPES.update(found)
    return _TYPES


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = typing.get_type_hints(cls)
        _HINTS[cls] = hints
    return hints


def _fields(cls: type) -> tuple[dataclasses.Field, ...]:
    return tuple(f for f in dataclasses.fields(cls) if f.init)


# -- encoding --------------------------------------------------------------------------------

def encode(value: Any) -> Any:
    """`value` as plain JSON-able data (see the module docstring)."""
    if isinstance(value, enum.Enum):  # before str/int: StrEnum and IntEnum are both
        name = type(value).__name__
        if registry().get(name) is not type(value):
            raise TypeError(f"{name} is not a wire type")
        return {"__e": name, "v": value.value}
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return {"__f": "nan" if value != value else ("inf" if value > 0 else "-inf")}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        name = cls.__name__
        if registry().get(name) is not cls:
            raise TypeError(f"{name} is not a wire type")
        out: dict[str, Any] = {"__t": name}
        for f in _fields(cls):
            out[f.name] = encode(getattr(value, f.name))
        return out
    if isinstance(value, (tuple, list)):
        return [encode(v) for v in value]
    if isinstance(value, (frozenset, set)):
        items = [encode(v) for v in value]
        try:
            items.sort(key=lambda v: json.dumps(v, sort_keys=True))
        except TypeError:
            pass
        return {"__s": items}
    if isinstance(value, Mapping):
        return {"__m": [[encode(k), encode(v)] for k, v in value.items()]}
    raise TypeError(f"cannot encode a {type(value).__name__}")


def dumps(message: Mapping[str, Any]) -> str:
    """An envelope (already plain data, with encoded payloads) as strict JSON."""
    return json.dumps({"v": VERSION, **message}, allow_nan=False, separators=(",", ":"))


# -- decoding --------------------------------------------------------------------------------

def decode(data: Any, where: str = "value") -> Any:
    """The value `data` encodes; ProtocolError (naming `where`) when it is not acceptable."""
    if data is None or isinstance(data, (bool, str, int, float)):
        return data
    if isinstance(data, list):
        return tuple(decode(v, f"{where}[{i}]") for i, v in enumerate(data))
    if not isinstance(data, dict):
        raise ProtocolError(f"{where}: unexpected {type(data).__name__}")
    if "__t" in data:
        return _decode_dataclass(data, where)
    if "__e" in data:
        if set(data) != {"__e", "v"}:
            raise ProtocolError(f"{where}: an enum value has exactly the keys __e and v")
        cls = registry().get(data["__e"]) if isinstance(data["__e"], str) else None
        if cls is None or not issubclass(cls, enum.Enum):
            raise ProtocolError(f"{where}: unknown enum {data['__e']!r}", "unknown_type")
        try:
            return cls(data["v"])
        except ValueError:
            allowed = ", ".join(str(m.value) for m in cls)
            raise ProtocolError(f"{where}: {data['v']!r} is not a {cls.__name__} "
                                f"(one of {allowed})") from None
    if set(data) == {"__s"} and isinstance(data["__s"], list):
        items = decode(data["__s"], where)
        try:
            return frozenset(items)
        except TypeError:
            raise ProtocolError(f"{where}: set members must be hashable") from None
    if set(data) == {"__m"} and isinstance(data["__m"], list):
        out: dict[Any, Any] = {}
        for i, pair in enumerate(data["__m"]):
            if not (isinstance(pair, list) and len(pair) == 2):
                raise ProtocolError(f"{where}: mapping entry {i} is not a [key, value] pair")
            key = decode(pair[0], f"{where} key {i}")
            try:
                out[key] = decode(pair[1], f"{where}[{key!r}]")
            except TypeError:
                raise ProtocolError(f"{where}: mapping key {i} is not hashable") from None
        return types.MappingProxyType(out)
    if set(data) == {"__f"} and data["__f"] in ("nan", "inf", "-inf"):
        return float(data["__f"])
    raise ProtocolError(f"{where}: an object without a known tag "
                        f"(keys: {', '.join(sorted(map(str, data)))})")


def _decode_dataclass(data: dict[str, Any], where: str) -> Any:
    name = data["__t"]
    cls = registry().get(name) if isinstance(name, str) else None
    if cls is None or not dataclasses.is_dataclass(cls):
        raise ProtocolError(f"{where}: unknown type {name!r}", "unknown_type")
    fields = {f.name: f for f in _fields(cls)}
    unknown = sorted(k for k in data if k != "__t" and k not in fields)
    if unknown:
        raise ProtocolError(f"{where}: {name} has no field {', '.join(map(repr, unknown))} "
                            f"(fields: {', '.join(fields) or 'none'})", "unknown_field")
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for fname, f in fields.items():
        if fname not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ProtocolError(f"{where}: {name}.{fname} is required")
            continue
        value = decode(data[fname], f"{name}.{fname}")
        hint = hints.get(fname, Any)
        if not _conforms(value, hint):
            raise ProtocolError(f"{name}.{fname}: expected {_hint_name(hint)}, "
                                f"got {type(value).__name__} {_short(value)}")
        kwargs[fname] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ProtocolError(f"{where}: not a valid {name}: {e}") from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _conforms(value: Any, hint: Any) -> bool:
    """Does `value` match the annotation `hint`? Unknown forms of annotation are accepted."""
    if hint is Any or hint is object:
        return True
    if hint is None or hint is type(None):
        return value is None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return any(_conforms(value, a) for a in args)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is bool or hint is str:
        return isinstance(value, hint)
    if isinstance(hint, type) and origin is None:
        if hint in (tuple, frozenset, dict):
            return isinstance(value, (tuple, frozenset, Mapping))
        return isinstance(value, hint)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_conforms(v, args[0]) for v in value)
        if not args:
            return True
        return len(args) == len(value) and all(_conforms(v, a) for v, a in zip(value, args,
                                                                                 strict=True))
    if origin in (frozenset, set):
        return isinstance(value, frozenset) and (not args or all(_conforms(v, args[0])
                                                                 for v in value))
    if origin in (Mapping, dict, typing.Mapping):
        if not isinstance(value, Mapping):
            return False
        if len(args) != 2:
            return True
        return all(_conforms(k, args[0]) and _conforms(v, args[1]) for k, v in value.items())
    return True


def _hint_name(hint: Any) -> str:
    if isinstance(hint, type) and typing.get_origin(hint) is None:
        return hint.__name__
    text = str(hint)
    for prefix in ("typing.", "collections.abc.", "pmgui.domain.enums.", "pmgui.domain.models.",
                   "pmgui.engine.commands.", "pmgui.engine.events."):
        text = text.replace(prefix, "")
    return text.replace("NoneType", "None")


def loads(text: str | bytes) -> dict[str, Any]:
    """One envelope from the wire: a JSON object with our protocol version."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise ProtocolError(f"not JSON: {e}", "malformed") from None
    if not isinstance(data, dict):
        raise ProtocolError("a frame must be a JSON object", "malformed")
    version = data.get("v")
    if version != VERSION:
        raise ProtocolError(f"protocol version {version!r} is not supported "
                            f"(this side speaks version {VERSION})", "version")
    op = data.get("op")
    if not isinstance(op, str):
        raise ProtocolError("a frame needs an 'op' string", "malformed")
    return data


def decode_payload(data: Any, where: str, allowed: tuple[type, ...]) -> Any:
    """Decode `data` and check it is an instance of one of `allowed`."""
    try:
        value = decode(data, where)
    except RecursionError:
        raise ProtocolError(f"{where}: nested too deeply", "malformed") from None
    if not isinstance(value, allowed):
        names = ", ".join(sorted(c.__name__ for c in allowed))
        got = type(value).__name__
        raise ProtocolError(f"{where}: a {got} is not accepted here (expected one of {names})",
                            "unknown_type")
    return value


# -- the schema ------------------------------------------------------------------------------

def schema() -> dict[str, Any]:
    """Every wire type: dataclasses with their fields, enums with their values."""
    out: dict[str, Any] = {}
    for name, cls in sorted(registry().items()):
        if issubclass(cls, enum.Enum):
            out[name] = {"enum": [m.value for m in cls]}
            continue
        hints = _hints(cls)
        fields = []
        for f in _fields(cls):
            entry: dict[str, Any] = {"name": f.name, "type": _hint_name(hints.get(f.name, Any))}
            if f.default is not dataclasses.MISSING:
                try:
                    entry["default"] = encode(f.default)
                except TypeError:
                    entry["default"] = repr(f.default)
            elif f.default_factory is not dataclasses.MISSING:
                entry["default"] = encode(f.default_factory())
            else:
                entry["required"] = True
            fields.append(entry)
        out[name] = {"fields": fields}
    return {"version": VERSION, "types": out}


def _schema_hash() -> str:
    text = json.dumps(schema(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


_HASH: list[str] = []


def schema_hash() -> str:
    if not _HASH:
        _HASH.append(_schema_hash())
    return _HASH[0]


# -- what may travel where -------------------------------------------------------------------

def command_types() -> tuple[type, ...]:
    from pmgui.engine import commands

    return typing.get_args(commands.Command)


def read_only_types() -> tuple[type, ...]:
    """Commands a read-scoped token may send: the read-only requests."""
    from pmgui.engine import commands

    return tuple(getattr(commands, "REQUESTS", ()))


def event_types() -> tuple[type, ...]:
    from pmgui.engine import events

    return typing.get_args(events.Event)
