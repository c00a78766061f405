"""The engine's hot path takes shortcuts that must give what the plain way gives."""

from __future__ import annotations

from dataclasses import fields, replace

from pmgui.domain.enums import ActionType, Reason, StopKind
from pmgui.domain.models import Action, frozen_map
from pmgui.engine.core import _action_with


def test_action_copy_is_dataclasses_replace():
    a = Action(ActionType.MOVE_SL, Reason.TRAILING, "p1", 101.5, qty=None, sl=99.0, tp=None,
               rule="trailing", priority=7, ts=12.5, inputs=frozen_map({"level": 99.0}),
               flags=frozenset({"x"}), stop_kind=StopKind.TRAILING, limit=False)
    for changes in ({"sl": 98.0, "tp": 110.0}, {"ts": 13.0}, {}):
        got, want = _action_with(a, **changes), replace(a, **changes)
        assert got == want and got is not a
        for f in fields(Action):
            assert getattr(got, f.name) is getattr(want, f.name), f.name
