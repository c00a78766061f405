"""A rule's level move applied to a position: one function for the engine, which applies
each move as it is decided, and for the store, which replays on load the moves logged after
a position's row was last written (DESIGN §6: rebuildable state is written behind)."""

from __future__ import annotations

from collections.abc import Set

from pmgui.domain.enums import ActionType, StopKind
from pmgui.domain.models import Position, evolver

# a rule's stop move: the new stop, its kind, the trailing level, R's stop, the flags
_MOVE_STOP = evolver("sl", "sl_kind", "trailing", "initial_sl", "flags")
_MOVE_TP = evolver("tp", "flags")


def rule_level_move(pos: Position, kind: ActionType, sl: float | None, tp: float | None,
                    stop_kind: StopKind | None, flags: Set[str]) -> Position | None:
    """`pos` after a rule's MOVE_SL (to `sl`, set by `stop_kind`) or MOVE_TP (to `tp`),
    with the action's `flags` added; None when the move names no level (nothing moves).
    A trailing stop's move is also the trailing level; the first stop a position gets is
    also its R stop (`initial_sl`)."""
    new_flags = pos.flags | flags if flags else pos.flags
    if kind is ActionType.MOVE_SL:
        if sl is None:
            return None
        sk = stop_kind or StopKind.MANUAL
        return _MOVE_STOP(pos, sl, sk, sl if sk is StopKind.TRAILING else pos.trailing,
                          pos.initial_sl if pos.initial_sl is not None else sl, new_flags)
    if kind is ActionType.MOVE_TP:
        return None if tp is None else _MOVE_TP(pos, tp, new_flags)
    raise ValueError(f"{kind} is not a level move")
