"""Row ↔ domain-object conversion for the store.

Why a separate module: every table row is a flat dict of SQLite values (TEXT, REAL, INTEGER,
NULL) while the domain objects carry enums, frozensets, read-only mappings and tuples. Keeping
both directions side by side makes the exact round trip (every field, including None) easy to
check and to test.

Conventions:
- Enums are stored as their string values, booleans as 0/1.
- Mappings (`overrides`, `inputs`) and sets (`flags`) are stored as JSON text (sorted keys,
  sorted flag lists) so equal objects give byte-identical rows.
- Every float that reaches SQLite must be finite: SQLite silently stores NaN as NULL, which would
  turn a bug into a plausible-looking "no stop loss". A non-finite value is refused with a
  `ValidationError` naming the field, and nothing is written.
- Action `inputs` are explanatory only; a non-finite input (e.g. "distance to TP = ∞" when there
  is no TP) is stored as null rather than refusing the whole action record, so the action log
  never holds NaN/inf and logging a decision never fails because of one odd input.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Iterable, Mapping
from itertools import compress
from typing import Any

from pmgui.domain.enums import (
    ActionType,
    OrderRole,
    OrderSide,
    OrderStatus,
    OrderType,
    PositionStatus,
    Reason,
    Side,
    StopKind,
)
from pmgui.domain.errors import ValidationError
from pmgui.domain.models import Action, Fill, Order, Position, Scalar, Tranche, frozen_map

Row = dict[str, Any]


# --------------------------------------------------------------------------- helpers

def _finite(value: object, field: str, what: str) -> float:
    """A finite float, or a ValidationError naming `what.field`."""
    if value.__class__ is float and value - value == 0.0:  # type: ignore[operator]
        return value  # type: ignore[return-value]  # the usual case (NaN/inf fail the test)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"{what}.{field} must be a number, got {value!r}", field=field)
    f = float(value)
    if not math.isfinite(f):
        raise ValidationError(f"{what}.{field} is {value!r}; only finite numbers can be stored",
                              field=field)
    return f


def _opt_finite(value: object, field: str, what: str) -> float | None:
    if value is None:
        return None
    if value.__class__ is float and value - value == 0.0:  # type: ignore[operator]
        return value  # type: ignore[return-value]
    return _finite(value, field, what)


def _opt_float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _text(value: object, field: str, what: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{what}.{field} must be text, got {value!r}", field=field)
    return value


def _opt_text(value: object, field: str, what: str) -> str | None:
    return None if value is None else _text(value, field, what)


# one encoder (json.dumps with non-default options builds a new one per call)
_ENCODER = json.JSONEncoder(sort_keys=True, allow_nan=False, separators=(",", ":"))


try:  # the C encoder itself, for flat maps of plain values already checked (no recursion)
    from json.encoder import c_make_encoder as _c_make_encoder
    from json.encoder import encode_basestring_ascii as _c_ascii
except ImportError:  # pragma: no cover - CPython always has it
    _c_make_encoder = None
_FLAT = None if _c_make_encoder is None else _c_make_encoder(
    None, _ENCODER.default, _c_ascii, None, ":", ",", True, False, False)


def _flat_json(value: dict[str, Scalar] | list[str]) -> str:
    """`dumps_json` of a flat dict of finite plain scalars (or a list of text): the same
    text, without building an encoder per call."""
    if _FLAT is None:
        return dumps_json(value)
    return "".join(_FLAT(value, 0))


def dumps_json(value: object, field: str = "value") -> str:
    """JSON text with sorted keys; refuses NaN/inf and objects JSON cannot represent."""
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError) as e:
        raise ValidationError(f"{field} cannot be stored as JSON: {e}", field=field) from e


def _scalar_map(m: Mapping[str, Scalar], field: str, what: str) -> str:
    if not m:
        return "{}"  # most positions have no overrides
    for k, v in m.items():
        if not isinstance(k, str):
            raise ValidationError(f"{what}.{field} keys must be text, got {k!r}", field=field)
        if v is not None and not isinstance(v, (str, bool, int, float)):
            raise ValidationError(f"{what}.{field}[{k!r}] must be a number, text, bool or None, "
                                  f"got {v!r}", field=field)
    return dumps_json(dict(m), f"{what}.{field}")


# Action inputs: per key set met (in the mapping's order), the getter of the values in sorted
# key order, the JSON text before each value, and the last inputs of that key set written
# (`_Memo`); the text of floats met lately (a trailing move's inputs repeat their
# parameters, and its previous level was the level of the move before). All only speed up
# `_sanitized_inputs`: its text is `dumps_json`'s, byte for byte.
_INPUT_TEMPLATES: dict[tuple[str, ...], tuple[Any, int, list[tuple]]] = {}
_FLOAT_TEXT: dict[float, str] = {}
_float_repr = float.__repr__
_is_not = operator.is_not


def _template(keys: tuple) -> tuple[Any, int, list] | None:
    if not keys or any(k.__class__ is not str for k in keys):
        return None
    order = sorted(keys)
    get = operator.itemgetter(*order)
    getter = get if len(order) > 1 else (lambda m: (get(m),))
    # the memo: [(the values last written (None: none yet), that text's parts — each
    # value's head then its text, a value's text at 2·i + 1 — and "}")], one pair replaced
    # at once (two stores stay consistent whichever thread writes the next)
    parts: list[str] = []
    for i, k in enumerate(order):
        parts += [("{" if i == 0 else ",") + _c_ascii(k) + ":", ""]
    parts.append("}")
    if len(_INPUT_TEMPLATES) >= 256:
        _INPUT_TEMPLATES.clear()
    t = _INPUT_TEMPLATES[keys] = (getter, len(order), [(None, parts)])
    return t


def _plain_inputs(m: Mapping[str, Scalar]) -> str | None:
    """`_flat_json` of inputs whose keys are text and values plain finite scalars (exact
    types), None for anything else (the general path decides).

    Only the values that are not the very objects the last inputs of the same keys held
    are converted (their texts are kept with them: an object held is not freed, so its id
    is not reused, and these scalars are immutable): a trailing move's 19 inputs carry
    the rule's parameters (11 of them the same objects move after move: session 27's
    storm) beside the tick's values. Converting every value cost ~3.6 µs a move."""
    keys = tuple(m)
    t = _INPUT_TEMPLATES.get(keys)
    if t is None:
        t = _template(keys)
        if t is None:
            return None
    getter, n, memo = t
    vals = getter(m)
    last, parts = memo[0]
    parts = parts.copy()
    floats = _FLOAT_TEXT
    for i in range(n) if last is None else compress(range(n), map(_is_not, vals, last)):
        v = vals[i]
        c = v.__class__
        if c is float:
            text = floats.get(v)
            if text is None:
                if v - v != 0.0:
                    return None  # NaN or infinite: stored as null by the general path
                text = _float_repr(v)
                if v != 0.0:  # 0.0 and -0.0 are equal keys with different texts
                    if len(floats) >= 4096:
                        floats.clear()
                    floats[v] = text
        elif c is str:
            text = _c_ascii(v)
        elif v is None:
            text = "null"
        elif c is bool:
            text = "true" if v else "false"
        elif c is int:
            text = int.__repr__(v)
        else:
            return None
        parts[2 * i + 1] = text
    memo[0] = (vals, parts)
    return "".join(parts)


def _sanitized_inputs(m: Mapping[str, Scalar]) -> str:
    if not m:
        return "{}"
    if _c_make_encoder is not None:
        text = _plain_inputs(m)
        if text is not None:
            return text
    clean: dict[str, Scalar] = {}
    plain = True
    for k, v in m.items():
        t = v.__class__
        if k.__class__ is str and (t is str or t is int or t is bool or v is None
                                   or (t is float and v - v == 0.0)):  # type: ignore[operator]
            clean[k] = v  # the usual plain, finite value
            continue
        plain = False
        if isinstance(v, float) and not math.isfinite(v):
            clean[str(k)] = None
        elif v is None or isinstance(v, (str, bool, int, float)):
            clean[str(k)] = v
        else:
            clean[str(k)] = str(v)
    if plain:
        return _flat_json(clean)
    return dumps_json(clean, "action.inputs")


_FLAGS_JSON: dict[frozenset[str], str] = {frozenset(): "[]"}  # flag sets met so far


def _flags(flags: Iterable[str], what: str) -> str:
    if flags.__class__ is frozenset:
        hit = _FLAGS_JSON.get(flags)  # type: ignore[call-overload]
        if hit is not None:
            return hit  # an equal set was checked and encoded before (sets are immutable)
    out = []
    for f in flags:
        if not isinstance(f, str):
            raise ValidationError(f"{what}.flags must be text, got {f!r}", field="flags")
        out.append(f)
    text = dumps_json(sorted(out), f"{what}.flags")
    if flags.__class__ is frozenset:
        if len(_FLAGS_JSON) >= 4096:
            _FLAGS_JSON.clear()
            _FLAGS_JSON[frozenset()] = "[]"
        _FLAGS_JSON[flags] = text  # type: ignore[index]
    return text


def _enum_value(enum_cls: type, value: object, field: str, what: str) -> str:
    if value.__class__ is enum_cls:
        return value._value_  # type: ignore[attr-defined]  # a member: its (str) value
    try:
        return str(enum_cls(value).value)
    except ValueError as e:
        raise ValidationError(f"{what}.{field} has an unknown value {value!r}", field=field) from e


# --------------------------------------------------------------------------- positions

_POS_REQUIRED_FLOATS = ("qty", "entry", "leverage", "opened_at", "initial_qty", "fee_rate",
                        "contract_size", "peak_roi", "realized_pnl", "fees_paid")
_POS_OPTIONAL_FLOATS = ("sl", "tp", "initial_sl", "trailing", "liquidation", "best_price",
                        "closed_at", "exit_price", "funding")


def position_to_row(pos: Position, updated_at: float) -> Row:
    """The `positions` row of `pos` (tranches go to their own table)."""
    w = "position"
    row: Row = {
        "id": _text(pos.id, "id", w),
        "symbol": _text(pos.symbol, "symbol", w),
        "side": _enum_value(Side, pos.side, "side", w),
        "sl_kind": _enum_value(StopKind, pos.sl_kind, "sl_kind", w),
        "status": _enum_value(PositionStatus, pos.status, "status", w),
        "preset": _text(pos.preset, "preset", w),
        "overrides": _scalar_map(pos.overrides, "overrides", w),
        "automation": 1 if pos.automation else 0,
        "flags": _flags(pos.flags, w),
        "exit_reason": _opt_text(pos.exit_reason, "exit_reason", w),
        "exchange": _text(pos.exchange, "exchange", w),
        "updated_at": float(updated_at),
    }
    if not pos.id:
        raise ValidationError("position.id must not be empty", field="id")
    for f in _POS_REQUIRED_FLOATS:
        row[f] = _finite(getattr(pos, f), f, w)
    for f in _POS_OPTIONAL_FLOATS:
        row[f] = _opt_finite(getattr(pos, f), f, w)
    return row


def same_value(a: object, b: object) -> bool:
    """The same stored value (type included: 1 and 1.0 or 0.0 and -0.0 are not)."""
    if a is b:
        return True
    if a.__class__ is not b.__class__ or a != b:
        return False
    return a.__class__ is not float or a != 0.0 or math.copysign(1.0, a) == math.copysign(  # type: ignore[arg-type]
        1.0, b)  # type: ignore[arg-type]


def _id_text(value: object, field: str, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError(f"{what}.{field} must be non-empty text, got {value!r}",
                              field=field)
    return value


def _enum_conv(enum_cls: type) -> Any:
    return lambda value, field, what: _enum_value(enum_cls, value, field, what)


# The stored fields of a Position (all but `tranches`, `margin_mode`, `hedge`) and how each
# becomes its column's value (validating it), in the column order of `position_to_row`.
_POS_CONVERT: tuple[tuple[str, Any], ...] = (
    ("id", _id_text),
    ("symbol", _text),
    ("side", _enum_conv(Side)),
    ("sl_kind", _enum_conv(StopKind)),
    ("status", _enum_conv(PositionStatus)),
    ("preset", _text),
    ("overrides", _scalar_map),
    ("automation", lambda v, f, w: 1 if v else 0),
    ("flags", lambda v, f, w: _flags(v, w)),
    ("exit_reason", _opt_text),
    ("exchange", _text),
    *((f, _finite) for f in _POS_REQUIRED_FLOATS),
    *((f, _opt_finite) for f in _POS_OPTIONAL_FLOATS),
)


def _changed(name: str, conv: Any, a: object, b: object, cols: list[str],
             vals: list[Any]) -> None:
    v = conv(b, name, "position")
    if not same_value(conv(a, name, "position"), v):
        cols.append(name)
        vals.append(v)


def _changes_fn() -> Any:
    """`position_changes` as straight-line code: one identity test per stored field; a
    number field's new finite float that differs from the old one (the usual level move)
    taken inline — `_changed` would convert both to themselves and find them different."""
    lines = ["def position_changes(prev, pos):", "    cols = []", "    vals = []"]
    env: dict[str, object] = {"_changed": _changed, "_float": float}
    numbers = {*_POS_REQUIRED_FLOATS, *_POS_OPTIONAL_FLOATS}
    for i, (name, conv) in enumerate(_POS_CONVERT):
        env[f"_c{i}"] = conv
        # the fields are read into locals only when they differ (most do not: storing and
        # loading 30 pairs of locals was ~0.1 µs of each level move's ~0.85, session 27)
        lines += [f"    if prev.{name} is not pos.{name}:",
                  f"        a = prev.{name}", f"        b = pos.{name}"]
        if name in numbers:
            lines += ["        if b.__class__ is _float and a.__class__ is _float"
                      " and b - b == 0.0 and a - a == 0.0 and a != b:",
                      f"            cols.append({name!r})",
                      "            vals.append(b)",
                      "        else:",
                      f"            _changed({name!r}, _c{i}, a, b, cols, vals)"]
        else:
            lines.append(f"        _changed({name!r}, _c{i}, a, b, cols, vals)")
    lines.append("    return tuple(cols), vals")
    exec("\n".join(lines), env)  # code built from the field names above
    return env["position_changes"]


# `position_changes(prev, pos) -> (columns, values)`: the columns of `pos`'s row whose value
# differs from `prev`'s (a Position of the same id already validated), with their new values.
# Only the fields that are not the very object `prev` holds are converted — and thereby
# validated: a level move checks and converts its few new values, not the whole row (`prev`'s
# objects were checked when `prev` was). Equal values (`same_value`) are left out. Tranches
# are not compared.
position_changes: Any = _changes_fn()


def tranche_rows(pos: Position) -> list[Row]:
    """The `tranches` rows of `pos` (validated; tranche ids unique within the position)."""
    rows = [tranche_to_row(pos.id, i, t) for i, t in enumerate(pos.tranches)]
    if len(rows) > 1 and len({t["id"] for t in rows}) != len(rows):
        raise ValidationError(f"position {pos.id} has two tranches with the same id",
                              field="tranches")
    return rows


def same_rows(a: list[Row], b: list[Row]) -> bool:
    """Rows that store the very same values (`same_value`, column by column)."""
    return len(a) == len(b) and all(
        ra.keys() == rb.keys() and all(same_value(v, rb[k]) for k, v in ra.items())
        for ra, rb in zip(a, b, strict=True))


def tranche_to_row(position_id: str, seq: int, t: Tranche) -> Row:
    w = "tranche"
    if not isinstance(t.id, str) or not t.id:
        raise ValidationError(f"tranche id must be non-empty text, got {t.id!r}", field="id")
    return {
        "position_id": position_id,
        "id": t.id,
        "seq": seq,
        "qty": _finite(t.qty, "qty", w),
        "entry": _finite(t.entry, "entry", w),
        "opened_at": _finite(t.opened_at, "opened_at", w),
        "sl": _opt_finite(t.sl, "sl", w),
        "tp": _opt_finite(t.tp, "tp", w),
        "source": _text(t.source, "source", w),
    }


def tranche_from_row(r: Row) -> Tranche:
    return Tranche(
        id=r["id"], qty=float(r["qty"]), entry=float(r["entry"]),
        opened_at=float(r["opened_at"]), sl=_opt_float(r["sl"]), tp=_opt_float(r["tp"]),
        source=r["source"],
    )


def position_from_row(r: Row, tranches: Iterable[Tranche]) -> Position:
    return Position(
        id=r["id"], symbol=r["symbol"], side=Side(r["side"]), qty=float(r["qty"]),
        entry=float(r["entry"]), leverage=float(r["leverage"]), opened_at=float(r["opened_at"]),
        initial_qty=float(r["initial_qty"]), sl=_opt_float(r["sl"]), tp=_opt_float(r["tp"]),
        initial_sl=_opt_float(r["initial_sl"]), sl_kind=StopKind(r["sl_kind"]),
        trailing=_opt_float(r["trailing"]), liquidation=_opt_float(r["liquidation"]),
        fee_rate=float(r["fee_rate"]), contract_size=float(r["contract_size"]),
        preset=r["preset"], overrides=frozen_map(json.loads(r["overrides"])),
        automation=bool(r["automation"]), status=PositionStatus(r["status"]),
        peak_roi=float(r["peak_roi"]), best_price=_opt_float(r["best_price"]),
        flags=frozenset(json.loads(r["flags"])), realized_pnl=float(r["realized_pnl"]),
        fees_paid=float(r["fees_paid"]), tranches=tuple(tranches),
        closed_at=_opt_float(r["closed_at"]), exit_price=_opt_float(r["exit_price"]),
        exit_reason=r["exit_reason"], exchange=r["exchange"],
        funding=_opt_float(r.get("funding")),
    )


# --------------------------------------------------------------------------- orders

def order_to_row(o: Order) -> Row:
    w = "order"
    if not isinstance(o.client_id, str) or not o.client_id:
        raise ValidationError(f"order client id must be non-empty text, got {o.client_id!r}",
                              field="client_id")
    return {
        "client_id": o.client_id,
        "symbol": _text(o.symbol, "symbol", w),
        "side": _enum_value(OrderSide, o.side, "side", w),
        "type": _enum_value(OrderType, o.type, "type", w),
        "amount": _finite(o.amount, "amount", w),
        "status": _enum_value(OrderStatus, o.status, "status", w),
        "exchange_id": _opt_text(o.exchange_id, "exchange_id", w),
        "price": _opt_finite(o.price, "price", w),
        "trigger_price": _opt_finite(o.trigger_price, "trigger_price", w),
        "filled": _finite(o.filled, "filled", w),
        "average": _opt_finite(o.average, "average", w),
        "reduce_only": 1 if o.reduce_only else 0,
        "position_id": _opt_text(o.position_id, "position_id", w),
        "role": _enum_value(OrderRole, o.role, "role", w),
        "reason": _opt_text(o.reason, "reason", w),
        "created_at": _finite(o.created_at, "created_at", w),
        "updated_at": _finite(o.updated_at, "updated_at", w),
        "error": _opt_text(o.error, "error", w),
    }


def order_from_row(r: Row) -> Order:
    return Order(
        client_id=r["client_id"], symbol=r["symbol"], side=OrderSide(r["side"]),
        type=OrderType(r["type"]), amount=float(r["amount"]), status=OrderStatus(r["status"]),
        exchange_id=r["exchange_id"], price=_opt_float(r["price"]),
        trigger_price=_opt_float(r["trigger_price"]), filled=float(r["filled"]),
        average=_opt_float(r["average"]), reduce_only=bool(r["reduce_only"]),
        position_id=r["position_id"], role=OrderRole(r["role"]), reason=r["reason"],
        created_at=float(r["created_at"]), updated_at=float(r["updated_at"]), error=r["error"],
    )


# --------------------------------------------------------------------------- fills

def fill_to_row(f: Fill, position_id: str | None) -> Row:
    w = "fill"
    if not isinstance(f.id, str) or not f.id:
        raise ValidationError(f"fill id must be non-empty text, got {f.id!r}", field="id")
    return {
        "id": f.id,
        "order_client_id": _opt_text(f.order_client_id, "order_client_id", w),
        "position_id": _opt_text(position_id, "position_id", w),
        "symbol": _text(f.symbol, "symbol", w),
        "side": _enum_value(OrderSide, f.side, "side", w),
        "qty": _finite(f.qty, "qty", w),
        "price": _finite(f.price, "price", w),
        "fee": _finite(f.fee, "fee", w),
        "ts": _finite(f.ts, "ts", w),
        "exchange_order_id": _opt_text(f.exchange_order_id, "exchange_order_id", w),
        "liquidation": 1 if f.liquidation else 0,
    }


def fill_from_row(r: Row) -> Fill:
    return Fill(
        id=r["id"], order_client_id=r["order_client_id"], symbol=r["symbol"],
        side=OrderSide(r["side"]), qty=float(r["qty"]), price=float(r["price"]),
        fee=float(r["fee"]), ts=float(r["ts"]), exchange_order_id=r["exchange_order_id"],
        liquidation=bool(r["liquidation"]),
    )


# --------------------------------------------------------------------------- actions

def action_to_row(a: Action, *, symbol: str, ok: bool, detail: str) -> Row:
    w = "action"
    return {
        "ts": _finite(a.ts, "ts", w),
        "position_id": _text(a.position_id, "position_id", w),
        "symbol": _text(symbol, "symbol", w),
        "type": _enum_value(ActionType, a.type, "type", w),
        "reason": _enum_value(Reason, a.reason, "reason", w),
        "price": _finite(a.price, "price", w),
        "qty": _opt_finite(a.qty, "qty", w),
        "sl": _opt_finite(a.sl, "sl", w),
        "tp": _opt_finite(a.tp, "tp", w),
        "rule": _text(a.rule, "rule", w),
        "priority": int(a.priority),
        "inputs": _sanitized_inputs(a.inputs),
        "flags": _flags(a.flags, w),
        "stop_kind": None if a.stop_kind is None
        else _enum_value(StopKind, a.stop_kind, "stop_kind", w),
        "is_limit": 1 if a.limit else 0,
        "ok": 1 if ok else 0,
        "detail": _text(detail, "detail", w),
    }


ACTION_COLUMNS = ("id", "ts", "position_id", "symbol", "type", "reason", "price", "qty", "sl",
                  "tp", "rule", "priority", "inputs", "flags", "stop_kind", "is_limit", "ok",
                  "detail")


def _plain_level(v: object) -> bool:
    return v is None or (v.__class__ is float and v - v == 0.0)  # type: ignore[operator]


def plain_action(a: Action, symbol: str, detail: str) -> bool:
    """Whether `a` is the usual action (plain finite floats, members of the enums, text):
    then its row cannot fail to build except for its flags (`action_flags`), and
    `action_values` takes it without checking field by field."""
    ts, price, sk = a.ts, a.price, a.stop_kind
    return (ts.__class__ is float and ts - ts == 0.0 and price.__class__ is float
            and price - price == 0.0 and _plain_level(a.qty) and _plain_level(a.sl)
            and _plain_level(a.tp) and a.type.__class__ is ActionType
            and a.reason.__class__ is Reason and (sk is None or sk.__class__ is StopKind)
            and a.position_id.__class__ is str and symbol.__class__ is str
            and a.rule.__class__ is str and detail.__class__ is str
            and a.priority.__class__ is int)


def action_flags(a: Action) -> str:
    """The `flags` column of `a` (ValidationError for a flag that is not text)."""
    return _flags(a.flags, "action")


def action_values(a: Action, row_id: int, *, symbol: str, ok: bool, detail: str) -> tuple:
    """The `actions` row of `a` as values in `ACTION_COLUMNS` order: `action_to_row` with
    its id, the usual action (`plain_action`) checked inline instead of field by field."""
    if plain_action(a, symbol, detail):
        return plain_action_values(a, row_id, symbol, ok, detail)
    row = action_to_row(a, symbol=symbol, ok=ok, detail=detail)
    return (row_id, *(row[c] for c in ACTION_COLUMNS[1:]))


def plain_action_values(a: Action, row_id: int, symbol: str, ok: bool, detail: str) -> tuple:
    """`action_values` of an action `plain_action` accepted (checked by the caller, e.g.
    when it was queued: an Action is immutable)."""
    sk, inputs, flags = a.stop_kind, a.inputs, a.flags
    # `_sanitized_inputs` and `_flags` with their usual cases inline (a call each less)
    text = (_plain_inputs(inputs) if inputs and _c_make_encoder is not None else None) \
        or _sanitized_inputs(inputs)
    return (row_id, a.ts, a.position_id, symbol, a.type._value_, a.reason._value_, a.price,
            a.qty, a.sl, a.tp, a.rule, a.priority, text,
            (_FLAGS_JSON.get(flags) if flags.__class__ is frozenset else None)
            or _flags(flags, "action"), None if sk is None else sk._value_,
            1 if a.limit else 0, 1 if ok else 0, detail)


def action_record(r: Row) -> dict[str, Any]:
    """An `actions` row as a plain JSON-able dict (what `Store.actions` returns)."""
    return {
        "id": int(r["id"]),
        "ts": float(r["ts"]),
        "position_id": r["position_id"],
        "symbol": r["symbol"],
        "type": r["type"],
        "reason": r["reason"],
        "price": float(r["price"]),
        "qty": _opt_float(r["qty"]),
        "sl": _opt_float(r["sl"]),
        "tp": _opt_float(r["tp"]),
        "rule": r["rule"],
        "priority": int(r["priority"]),
        "inputs": json.loads(r["inputs"]),
        "flags": json.loads(r["flags"]),
        "stop_kind": r["stop_kind"],
        "limit": bool(r["is_limit"]),
        "ok": bool(r["ok"]),
        "detail": r["detail"],
    }


def action_from_record(d: Mapping[str, Any]) -> Action:
    """Rebuild the Action from a dict returned by `Store.actions` (e.g. for chart markers)."""
    return Action(
        type=ActionType(d["type"]), reason=Reason(d["reason"]), position_id=d["position_id"],
        price=float(d["price"]), qty=d["qty"], sl=d["sl"], tp=d["tp"], rule=d["rule"],
        priority=int(d["priority"]), ts=float(d["ts"]), inputs=frozen_map(d["inputs"]),
        flags=frozenset(d["flags"]),
        stop_kind=None if d["stop_kind"] is None else StopKind(d["stop_kind"]),
        limit=bool(d["limit"]),
    )
