"""The indicator a position's rules follow, as a thin line on the chart (no Qt).

The engine computes it (pmgui.engine.indicator_line) on the rule's own timeframe from its own
candles and sends it: the current value rides on each PositionSnapshot (`indicator`), the
past is answered by a GetIndicatorLine request when the position is shown. This module only
accumulates those values into a line; the GUI thread computes no indicator.
- a stepped line (chandelier, EMA): each value holds from the close of the candle that
  produced it until the next one (the newest runs to the last candle);
- a trail (fixed / adaptive): the values as they came, at most two per `bucket` seconds.
Until the rule's timeframe is warm there is no line, only a `note`
(`Chandelier 22×3 on 4h candles: 3 of 22 so far`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pmgui.domain.money import valid_price
from pmgui.engine.commands import IndicatorHistory
from pmgui.engine.events import RuleIndicator

MAX_POINTS = 5000


@dataclass(frozen=True, slots=True)
class IndicatorLine:
    name: str  # "Chandelier 22×3 · 4h", "Trail 2%", "EMA 9 · 1h"
    xs: tuple[float, ...]
    ys: tuple[float, ...]
    step: bool = False  # changes only when a candle of the rule's timeframe completes
    note: str = ""  # why there is no line yet

    @property
    def last(self) -> float | None:
        return self.ys[-1] if self.ys else None


def warming_note(ind: RuleIndicator) -> str:
    if ind.value is not None or not ind.need:
        return ""
    return f"{ind.name.replace(' · ', ' on ')} candles: {ind.have} of {ind.need} so far"


class IndicatorFeed:
    """The engine's values of one position's line, accumulated (reset per position and
    whenever the line itself changes, e.g. another preset)."""

    def __init__(self, bucket: float = 60.0) -> None:
        self.bucket = bucket
        self.position_id: str | None = None
        self.current: RuleIndicator | None = None
        self._points: list[tuple[float, float]] = []
        self._line: IndicatorLine | None = None
        self._end = 0.0

    def reset(self, position_id: str | None) -> None:
        self.position_id = position_id
        self.current = None
        self._points = []
        self._line = None

    def _same_line(self, ind: RuleIndicator) -> bool:
        c = self.current
        return c is not None and (c.name, c.timeframe, c.step) == (ind.name, ind.timeframe,
                                                                   ind.step)

    def on_value(self, ind: RuleIndicator | None) -> bool:
        """A snapshot's value; True when the line changed."""
        if ind is None:
            changed = self.current is not None
            self.current, self._points = None, []
            self._line = None
            return changed
        if not self._same_line(ind):
            self._points = []
        if ind == self.current:
            return False
        self.current = ind
        self._add(ind)
        self._line = None
        return True

    def _add(self, ind: RuleIndicator) -> None:
        if not valid_price(ind.value):  # None while warming; NaN, inf, ≤ 0 never drawn
            return
        pts = self._points
        if pts and ind.since < pts[-1][0]:
            return  # older than what we have
        b = self.bucket
        if pts and pts[-1][0] == ind.since:
            pts[-1] = (ind.since, ind.value)
        elif not ind.step and len(pts) >= 2 and pts[-2][0] // b == ind.since // b:
            pts[-1] = (ind.since, ind.value)  # a trail: the first and the newest per bucket
        else:
            pts.append((ind.since, ind.value))
        del pts[:-MAX_POINTS]

    def on_history(self, hist: IndicatorHistory) -> bool:
        """The engine's answer to GetIndicatorLine: its past under what came since."""
        if hist.position_id != self.position_id:
            return False
        ind = hist.indicator if isinstance(hist.indicator, RuleIndicator) else None
        if ind is not None and (self.current is None or not self._same_line(ind)):
            self.current = ind
            self._points = []
        if self.current is None:
            return False
        past = [p for p in hist.points if valid_price(p[1]) and math.isfinite(p[0])]
        newer = [p for p in self._points if not past or p[0] > past[-1][0]]
        self._points = [*past, *newer][-MAX_POINTS:]
        self._line = None
        return True

    def line(self, end: float = 0.0) -> IndicatorLine | None:
        """The line to draw; a stepped one runs its newest step to `end` (the newest
        candle's close)."""
        ind = self.current
        if ind is None:
            return None
        if self._line is not None and end == self._end:
            return self._line
        self._end = end
        pts = self._points
        if not pts:
            note = warming_note(ind)
            self._line = IndicatorLine(ind.name, (), (), ind.step, note) if note else None
            return self._line
        if not ind.step:
            xs = tuple(t for t, _v in pts)
            ys = tuple(v for _t, v in pts)
        else:
            xl: list[float] = []
            yl: list[float] = []
            for i, (t, v) in enumerate(pts):
                nxt = pts[i + 1][0] if i + 1 < len(pts) else max(end, t)
                xl += [t, nxt]
                yl += [v, v]
            xs, ys = tuple(xl), tuple(yl)
        self._line = IndicatorLine(ind.name, xs, ys, ind.step)
        return self._line
