"""The state of one chart line while the trader changes it (no Qt: tested on its own).

    idle ──start──▶ dragging ──drop──▶ proposed ──send──▶ pending ──result──▶ confirmed
      ▲               │ cancel            │ discard          │                local_only
      └───────────────┴───────────────────┘                  └──────────────▶ rejected

- `dragging`: the line follows the cursor (`level` is where it is now).
- `proposed`: dropped, waiting for the trader's decision (confirm setting) or for the
  owner to send it at once.
- `pending`: sent to the engine, waiting for the command result; not draggable.
- `confirmed`: the venue acknowledged a protective order at `level` (`on_exchange`).
- `local_only`: the engine accepted the level but the venue did not confirm an order for it;
  only pmgui's rules guard it (`reason` says why). Shown as a warning, never as success.
- `rejected`: the engine refused (`reason`); the line shows the engine's level again.

The three results last until the engine's next snapshot of the position (`settle`): from then
on the snapshot's level speaks, except that a `local_only` warning stays while the snapshot
still shows that level. Every state but `dragging` and `pending` may start a new drag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from pmgui.domain.models import Market
from pmgui.engine.commands import CommandResult
from pmgui.ui.fmt import fmt_price


class LineState(StrEnum):
    IDLE = "idle"
    DRAGGING = "dragging"
    PROPOSED = "proposed"
    PENDING = "pending"
    CONFIRMED = "confirmed"
    LOCAL_ONLY = "local_only"
    REJECTED = "rejected"


RESULTS = (LineState.CONFIRMED, LineState.LOCAL_ONLY, LineState.REJECTED)


class TransitionError(RuntimeError):
    """A step the state machine does not allow (a bug in the caller, never user input)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a command result means for one line."""

    state: LineState
    level: float | None
    reason: str = ""


def verdict(kind: str, sent: float, result: CommandResult | None, error: str | None) -> Verdict:
    """Read the command-result contract for `kind` ("sl"/"tp"): confirmed only for
    `on_exchange`; an accepted level without the venue's confirmation is `local_only`."""
    if error is not None or result is None or not result.ok:
        why = error or (result.message if result is not None else "") or "refused"
        return Verdict(LineState.REJECTED, None, why)
    out = result.outcome(kind)
    if out is None:
        return Verdict(LineState.LOCAL_ONLY, sent, "the engine reported no venue confirmation")
    level = out.level if out.level is not None and math.isfinite(out.level) else None
    if out.protection == "on_exchange" and level is not None:
        return Verdict(LineState.CONFIRMED, level)
    if level is None:
        return Verdict(LineState.LOCAL_ONLY, None, out.reason or "no level in force")
    return Verdict(LineState.LOCAL_ONLY, level, out.reason or out.protection.replace("_", " "))


class LineMachine:
    """One line's state; `level` is what the line shows while not idle."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.state = LineState.IDLE
        self.level: float | None = None
        self.start: float | None = None  # the level when the drag started (None: created)
        self.reason = ""
        self.since = 0.0  # snapshot time when the level was sent / resolved
        self.auto = ""  # reason of the last automated move of this level (shown as ◆)

    def __repr__(self) -> str:
        return f"LineMachine({self.kind}, {self.state.value}, {self.level})"

    @property
    def busy(self) -> bool:
        """Dragging or waiting: the engine's snapshots must not move the line."""
        return self.state in (LineState.DRAGGING, LineState.PROPOSED, LineState.PENDING)

    @property
    def can_drag(self) -> bool:
        return self.state not in (LineState.DRAGGING, LineState.PENDING)

    def _need(self, *states: LineState) -> None:
        if self.state not in states:
            raise TransitionError(f"{self.kind} line: cannot go from {self.state.value} "
                                  f"(allowed from {', '.join(s.value for s in states)})")

    def start_drag(self, level: float | None) -> None:
        if not self.can_drag:
            raise TransitionError(f"{self.kind} line: cannot start a drag while "
                                  f"{self.state.value}")
        self.state, self.start, self.level, self.reason = LineState.DRAGGING, level, level, ""
        self.auto = ""

    def memo(self) -> tuple:
        """What the line is now, for `restore` (taken before a drag starts)."""
        return (self.state, self.level, self.start, self.reason, self.since, self.auto)

    def restore(self, memo: tuple) -> None:
        """A drag cancelled or dropped where nothing changes: the line is again exactly
        what `memo` was — a result's warning ("local only") or the engine's ◆ note
        included, not a plain idle line."""
        self._need(LineState.DRAGGING)
        self.state, self.level, self.start, self.reason, self.since, self.auto = memo

    def move(self, level: float) -> None:
        self._need(LineState.DRAGGING)
        self.level = level

    def cancel(self) -> None:
        """Esc / right click / wrong side / dropped where it was: back to the engine's level."""
        self._need(LineState.DRAGGING, LineState.PROPOSED)
        self._reset()

    def drop(self, level: float) -> None:
        self._need(LineState.DRAGGING)
        self.state, self.level = LineState.PROPOSED, level

    def propose(self, level: float) -> None:
        """A level put forward from outside a drag (or re-proposed)."""
        self._need(LineState.IDLE, LineState.PROPOSED, *RESULTS)
        self.state, self.level, self.reason = LineState.PROPOSED, level, ""

    def discard(self) -> None:
        self._need(LineState.PROPOSED)
        self._reset()

    def send(self, level: float, snapshot_ts: float) -> None:
        self._need(LineState.IDLE, LineState.PROPOSED, *RESULTS)
        self.state, self.level, self.since, self.reason = (LineState.PENDING, level,
                                                           snapshot_ts, "")

    def resolve(self, v: Verdict, snapshot_ts: float) -> None:
        self._need(LineState.PENDING)
        self.state, self.reason = v.state, v.reason
        self.level = v.level if v.state is not LineState.REJECTED else None
        self.since = snapshot_ts

    def settle(self, snapshot_level: float | None, snapshot_ts: float, tol: float) -> None:
        """A newer snapshot of the position arrived: results give way to it."""
        if self.state not in RESULTS or snapshot_ts <= self.since:
            return
        if self.state is LineState.LOCAL_ONLY and _same(self.level, snapshot_level, tol):
            return  # still the level only pmgui guards: keep saying so
        self._reset()

    def reset(self) -> None:
        """Another position is shown: forget everything."""
        self._reset()
        self.auto = ""

    def _reset(self) -> None:
        self.state, self.level, self.start, self.reason = LineState.IDLE, None, None, ""


def _same(a: float | None, b: float | None, tol: float) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= tol


def verdict_message(name: str, sent: float, v: Verdict, market: Market | None = None) -> str:
    """The status line for a level change's result."""
    if v.state is LineState.CONFIRMED:
        return f"✔ {name} set to {fmt_price(v.level, market)} (order on the exchange)"
    if v.state is LineState.LOCAL_ONLY:
        lvl = fmt_price(v.level, market) if v.level is not None else "none"
        return f"⚠ {name} {lvl} is local only: {v.reason} — pmgui's rules guard it"
    return f"✖ {name} {fmt_price(sent, market)} rejected: {v.reason} — line restored"
