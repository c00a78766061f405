"""The wire format: generated from the dataclasses, strict on the way in."""

from __future__ import annotations

import dataclasses
import json
import math
import typing

import pytest

from pmgui.domain.enums import (
    ActionType,
    OrderRole,
    OrderSide,
    OrderStatus,
    OrderType,
    PositionStatus,
    Protection,
    Reason,
    Side,
    StopKind,
)
from pmgui.domain.models import Action, Fill, Order, Position, frozen_map
from pmgui.engine import commands as cmd
from pmgui.engine.events import (
    ActionTaken,
    OrderSnapshot,
    PositionCorrected,
    PositionRemoved,
    PositionSnapshot,
)
from pmgui.service import protocol
from pmgui.service.protocol import ProtocolError, decode, encode


def roundtrip(value):
    wire = json.loads(json.dumps(encode(value), allow_nan=False))
    return decode(wire)


def position(**kw) -> Position:
    base = dict(id="p1", symbol="BTC/USDT:USDT", side=Side.LONG, qty=0.5, entry=100.0,
                leverage=5.0, opened_at=1.0, initial_qty=0.5, sl=95.0, tp=110.0,
                overrides=frozen_map({"trailing.atr": 2.5}), flags=frozenset({"tp1_done"}))
    base.update(kw)
    return Position(**base)


def test_every_command_and_event_type_is_on_the_wire():
    reg = protocol.registry()
    for t in protocol.command_types() + protocol.event_types():
        assert reg[t.__name__] is t
    assert cmd.CommandResult.__name__ in reg and cmd.ProtectionOutcome.__name__ in reg


@pytest.mark.parametrize("value", [
    cmd.SetTargets("p1", sl=99.5),
    cmd.SetTargets("p1", sl=None, tp=cmd.KEEP),
    cmd.ClosePosition("p1", 0.25, "manual"),
    cmd.CloseAll(),
    cmd.SetAutomation(None, False),
    cmd.SetPreset("p1", "guardian", frozen_map({"breakeven.at_r": 1.0})),
    cmd.OpenPosition("ETH/USDT:USDT", Side.SHORT, 2.0, 3.0, sl=3300.0),
    cmd.SetSymbolRules("ETH/USDT:USDT", None),
    cmd.CommandResult(True, "ok", "p1", fills=(Fill("f1", "c1", "BTC/USDT:USDT", OrderSide.SELL,
                                                    0.5, 101.0, 0.01, 2.0),),
                      outcomes=(cmd.ProtectionOutcome("sl", 95.0, "on_exchange"),),
                      realized_pnl=-1.5),
    PositionSnapshot(position(), 101.0, 0.5, 0.01, 0.2, Protection.ON_EXCHANGE, False, 3.0),
    PositionRemoved(position(closed_at=9.0, exit_reason="stop_loss"), 9.0),
    PositionCorrected(position(qty=0.0, closed_at=9.0, exit_price=94.5, realized_pnl=-2.75,
                               status=PositionStatus.CLOSED), 12.0,
                      "0.5 of order c1 booked at 95 re-booked at the venue's price 94.5"),
    OrderSnapshot(Order("c1", "BTC/USDT:USDT", OrderSide.SELL, OrderType.STOP_MARKET, 0.5,
                        OrderStatus.OPEN, trigger_price=95.0, reduce_only=True,
                        role=OrderRole.STOP_LOSS)),
    ActionTaken(Action(ActionType.MOVE_SL, Reason.TRAILING, "p1", 101.0, sl=99.0,
                       inputs=frozen_map({"atr": 1.2}), stop_kind=StopKind.TRAILING),
                "BTC/USDT:USDT"),
])
def test_roundtrip_gives_back_an_equal_value(value):
    back = roundtrip(value)
    assert back == value and type(back) is type(value)


def test_request_commands_roundtrip_too():
    # requests with required fields
    needed = {"GetCandles": ("BTC/USDT:USDT", "4h", 120), "GetIndicatorLine": ("p1",)}
    for t in protocol.read_only_types():
        value = t(*needed.get(t.__name__, ()))
        assert roundtrip(value) == value


def test_non_finite_floats_and_sets_and_mappings_survive():
    pos = position(liquidation=math.inf, peak_roi=-math.inf)
    back = roundtrip(pos)
    assert back.liquidation == math.inf and back.peak_roi == -math.inf
    assert back.flags == frozenset({"tp1_done"}) and dict(back.overrides) == {"trailing.atr": 2.5}
    nan = roundtrip(PositionSnapshot(pos, math.nan, 0.0, 0.0, None, Protection.LOCAL_ONLY,
                                     True, 1.0))
    assert math.isnan(nan.mark)
    with pytest.raises(TypeError):  # mappings come back read-only
        back.overrides["x"] = 1  # type: ignore[index]


def wire(value) -> dict:
    return json.loads(json.dumps(encode(value)))


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(__t="DropDatabase"), "unknown type 'DropDatabase'"),
    (lambda d: d.update(evil=1), "SetTargets has no field 'evil'"),
    (lambda d: d.pop("position_id"), "SetTargets.position_id is required"),
    (lambda d: d.update(sl=[1, 2]), "SetTargets.sl: expected float | str | None, got tuple"),
    (lambda d: d.update(position_id=7), "SetTargets.position_id: expected str, got int"),
    (lambda d: d.update(sl={"x": 1}), "without a known tag"),
])
def test_bad_payloads_are_refused_with_the_reason(mutate, message):
    d = wire(cmd.SetTargets("p1", sl=99.0))
    mutate(d)
    with pytest.raises(ProtocolError) as e:
        decode(d)
    assert message in str(e.value)


def test_wrong_enum_values_and_bool_for_number_are_refused():
    d = wire(cmd.OpenPosition("X", Side.LONG, 1.0))
    d["side"]["v"] = "sideways"
    with pytest.raises(ProtocolError, match="'sideways' is not a Side"):
        decode(d)
    d = wire(cmd.ClosePosition("p1"))
    d["fraction"] = True
    with pytest.raises(ProtocolError, match="ClosePosition.fraction: expected float"):
        decode(d)


def test_only_commands_are_accepted_as_commands():
    with pytest.raises(ProtocolError, match="PositionSnapshot is not accepted here"):
        protocol.decode_payload(
            wire(PositionSnapshot(position(), 1.0, 0, 0, None, Protection.ON_EXCHANGE, False, 1)),
            "cmd", protocol.command_types())


@pytest.mark.parametrize("text, code", [
    ("{not json", "malformed"),
    ("[1, 2]", "malformed"),
    ('{"v": 2, "op": "submit"}', "version"),
    ('{"op": "submit"}', "version"),
    ('{"v": 1}', "malformed"),
    ("[" * 100_000 + "]" * 100_000, "malformed"),
])
def test_envelopes_are_checked(text, code):
    with pytest.raises(ProtocolError) as e:
        protocol.loads(text)
    assert e.value.code == code


def test_schema_lists_every_field_and_changes_with_the_dataclasses(monkeypatch):
    s = protocol.schema()
    fields = {f["name"]: f for f in s["types"]["SetTargets"]["fields"]}
    assert fields["position_id"]["required"] and fields["sl"]["default"] == "keep"
    assert s["types"]["Side"]["enum"] == [m.value for m in Side]
    for t in protocol.registry().values():
        if dataclasses.is_dataclass(t):
            assert [f["name"] for f in s["types"][t.__name__]["fields"]] == \
                [f.name for f in dataclasses.fields(t) if f.init]
    before = protocol._schema_hash()

    @dataclasses.dataclass(frozen=True)
    class Extra:
        x: int

    Extra.__module__ = "pmgui.engine.commands"
    monkeypatch.setitem(protocol._TYPES, "Extra", Extra)
    assert protocol._schema_hash() != before


def test_union_aliases_are_what_the_registry_serves():
    # Command and Event are unions of registered dataclasses, nothing else
    for alias in (cmd.Command,):
        for t in typing.get_args(alias):
            assert dataclasses.is_dataclass(t)
