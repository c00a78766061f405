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
    liquidation_reason,
    trigger_reason,
)
from pmgui.ui.chart_state import LineMachine, LineState
from pmgui.ui.fmt import DASH, fmt_price, fmt_qty

DRAGGABLE = ("sl", "tp")
NOTES = {LineState.PROPOSED: "confirm or discard", LineState.PENDING: "pending…",
         LineState.CONFIRMED: "✔ on exchange"}


def tag_text(kind: str, level: float, ctx: DragContext | None, m: LineMachine, *,
             automation: bool, market: Market | None, entry_note: str = "",
             unguarded: bool = False) -> str:
    """`SL 41,250 · −1.8% · −$92 · −0.9R · pending…`: the level, what it gives, its state.

    `entry_note` is what the entry line offers (`drag for SL`) or says during that drag;
    `unguarded`: the engine reports no stop order on the exchange for the position (its
    protection is local only), said on the SL's tag while no change of it is under way.
    """
    if kind in DRAGGABLE and ctx is not None:
        text = consequence(kind, level, ctx)
    else:
        text = f"{LINE_TITLES[kind]} {fmt_price(level, market)}"
    st = m.state
    if st is LineState.DRAGGING or (st is LineState.PROPOSED and ctx is not None
                                    and trigger_reason(kind, level, ctx)):
        # held, or awaiting Apply, where the price (or the liquidation) refuses it
        if ctx is not None and liquidation_reason(kind, level, ctx):
            text += " · ✖ beyond liquidation"
        elif ctx is not None and trigger_reason(kind, level, ctx):
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
    if kind == "sl" and unguarded and st is LineState.IDLE:
        text += " · ⚠ local only (no order on the exchange)"
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


# An action's explanation kept as plain values in one flat tuple: kind, reason, price, qty,
# sl, tp, rule, detail, ok, symbol, then the inputs as name, value, name, value… A tuple of
# strings, numbers and None is one the garbage collector stops tracking at the first
# collection it lives through (a nested one takes a collection per level), where the action
# itself is four objects it walks at every full collection. The chart keeps hundreds of
# markers per position for a session.
ActionFacts = tuple[object, ...]


def action_facts(ev: ActionTaken) -> ActionFacts:
    """What `explain_facts` says of `ev`, as plain values."""
    a = ev.action
    flat: list[object] = [a.type.value, a.reason.value, a.price, a.qty, a.sl, a.tp, a.rule,
                          ev.detail, ev.ok, ev.symbol]
    for kv in a.inputs.items():
        flat.extend(kv)
    return tuple(flat)


def explain_action(ev: ActionTaken, market: Market | None) -> str:
    """A marker's tooltip: reason and what was done, the price and rule, the inputs."""
    return explain_facts(action_facts(ev), market)


def explain_facts(facts: ActionFacts, market: Market | None) -> str:
    """`explain_action` of the action these facts were taken from."""
    kind, reason, price, qty, sl, tp, rule, detail, ok, _symbol = facts[:10]
    inputs = dict(zip(facts[10::2], facts[11::2], strict=True))
    head = f"{reason.replace('_', ' ')} · {kind.replace('_', ' ')}"
    if kind == ActionType.MOVE_SL and sl is not None:
        head += f" → {fmt_price(sl, market)}"
    elif kind == ActionType.MOVE_TP and tp is not None:
        head += f" → {fmt_price(tp, market)}"
    elif qty is not None:
        head += f" {fmt_qty(qty, market)}"
    lines = [head, f"at {fmt_price(price, market)}" + (f" · rule {rule}" if rule else "")]
    if inputs:
        lines.append(inputs_text(inputs, market))
    if detail:
        lines.append(detail)
    if not ok:
        lines.append("FAILED")
    return "\n".join(lines)


def inputs_text(inputs: Mapping[str, object], market: Market | None) -> str:
    """`roi 0.0523 · ema 0.0000123 · tp distance —`: what a rule saw. A missing or
    non-finite value is a dash (not "None" or "nan"); a small number is written out in
    plain decimals (a fine-ticked market's price was "1.23e-05")."""
    parts = []
    for k, v in inputs.items():
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            s = DASH
        elif isinstance(v, float):
            s = fmt_price(v, market) if abs(v) >= 100 else _plain(v)
        else:
            s = str(v)
        parts.append(f"{k.replace('_', ' ')} {s}")
    return " · ".join(parts)


def _plain(v: float, digits: int = 4) -> str:
    """`v` to `digits` significant digits, never in scientific notation (|v| < 100)."""
    if v == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(v))))
    text = f"{v:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def short(text: str, n: int = 48) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
