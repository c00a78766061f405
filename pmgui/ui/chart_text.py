"""What the chart writes (no Qt): line tags, the crosshair read-out, action explanations."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

from pmgui.domain.enums import ActionType
from pmgui.domain.models import Market
from pmgui.domain.money import valid_price
from pmgui.engine.events import ActionTaken
from pmgui.ui.chart_drag import (
    LINE_TITLES,
    DragContext,
    consequence,
    created_kind,
    trigger_reason,
)
from pmgui.ui.chart_state import LineMachine, LineState
from pmgui.ui.fmt import fmt_price, fmt_qty

DRAGGABLE = ("sl", "tp")
NOTES = {LineState.PROPOSED: "confirm or discard", LineState.PENDING: "pending…",
         LineState.CONFIRMED: "✔ on exchange"}


def tag_text(kind: str, level: float, ctx: DragContext | None, m: LineMachine, *,
             automation: bool, market: Market | None, entry_note: str = "") -> str:
    """`SL 41,250 · −1.8% · −$92 · −0.9R · pending…`: the level, what it gives, its state.

    `entry_note` is what the entry line offers (`drag for SL`) or says during that drag.
    """
    if kind in DRAGGABLE and ctx is not None:
        text = consequence(kind, level, ctx)
    else:
        text = f"{LINE_TITLES[kind]} {fmt_price(level, market)}"
    st = m.state
    if st is LineState.DRAGGING:
        if ctx is not None and trigger_reason(kind, level, ctx):
            text += " · ✖ would trigger now"
        return text
    if kind == "entry" and entry_note:
        return f"{text} · {entry_note}"
    if st in NOTES:
        text += f" · {NOTES[st]}"
    elif st is LineState.LOCAL_ONLY:
        text += f" · ⚠ local only: {short(m.reason)}"
    elif st is LineState.REJECTED:
        text += f" · ✖ {short(m.reason)}"
    elif m.auto:
        text += f" · ◆ {m.auto}"
    if kind in DRAGGABLE and not automation:
        text += " · ‖ paused"
    return text


def crosshair_text(x: float, level: float, ctx: DragContext | None,
                   market: Market | None) -> str:
    """`30 Nov 14:32 · 41,250.0 · SL here · −1.8% · −$92 · −0.9R`: the time and price under
    the cursor and what a stop or target there would give (net of fees)."""
    if ctx is None or not valid_price(level) or not math.isfinite(x):
        return " "
    when = time.strftime("%d %b %H:%M", time.localtime(x)) if 0 < x < 1e11 else ""
    price = ctx.price if ctx.price is not None else ctx.entry
    kind = created_kind(ctx.side, price, level)
    what = consequence(kind, level, ctx).split(" · ", 1)
    tail = f" · {what[1]}" if len(what) > 1 else ""
    return f"{when} · {fmt_price(level, market)} · {LINE_TITLES[kind]} here{tail}"


def explain_action(ev: ActionTaken, market: Market | None) -> str:
    """A marker's tooltip: reason and what was done, the price and rule, the inputs."""
    a = ev.action
    head = f"{a.reason.value.replace('_', ' ')} · {a.type.value.replace('_', ' ')}"
    if a.type is ActionType.MOVE_SL and a.sl is not None:
        head += f" → {fmt_price(a.sl, market)}"
    elif a.type is ActionType.MOVE_TP and a.tp is not None:
        head += f" → {fmt_price(a.tp, market)}"
    elif a.qty is not None:
        head += f" {fmt_qty(a.qty, market)}"
    lines = [head, f"at {fmt_price(a.price, market)}" + (f" · rule {a.rule}" if a.rule else "")]
    if a.inputs:
        lines.append(inputs_text(a.inputs, market))
    if ev.detail:
        lines.append(ev.detail)
    if not ev.ok:
        lines.append("FAILED")
    return "\n".join(lines)


def inputs_text(inputs: Mapping[str, object], market: Market | None) -> str:
    parts = []
    for k, v in inputs.items():
        if isinstance(v, float):
            s = fmt_price(v, market) if abs(v) >= 100 else f"{v:.4g}"
        else:
            s = str(v)
        parts.append(f"{k.replace('_', ' ')} {s}")
    return " · ".join(parts)


def short(text: str, n: int = 48) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
