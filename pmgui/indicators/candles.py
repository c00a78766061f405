"""Candles of a rule's timeframe built from ticks or from shorter completed candles.

Why here (pure): the live engine and `pmgui replay` must cut time into the same candles, or a
replay would not show what the engine does. A candle is handed out only once it is complete:
for ticks, when a price of a later bucket arrives (or the clock passes the bucket's end,
`close_until`); for shorter candles, when the one that ends the bucket arrives (or a later one).
Buckets are UTC-aligned (`pmgui.domain.timeframes.bucket_start`), like every venue's candles.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from pmgui.domain.errors import ValidationError
from pmgui.domain.models import Candle
from pmgui.domain.timeframes import bucket_start, describe


class CandleBuilder:
    """Completed candles of one timeframe (`tf_seconds`), fed oldest first."""

    __slots__ = ("_cur", "_last", "tf")

    def __init__(self, tf_seconds: float) -> None:
        if not (isinstance(tf_seconds, (int, float)) and math.isfinite(tf_seconds)
                and tf_seconds > 0):
            raise ValidationError(f"timeframe must be a positive number of seconds "
                                  f"(got {tf_seconds!r})", field="timeframe")
        self.tf = float(tf_seconds)
        self._cur: Candle | None = None
        self._last: float | None = None  # open time of the last completed candle

    @property
    def forming(self) -> Candle | None:
        """The candle still being built (for charts; never for indicators)."""
        return self._cur

    def _roll(self, bucket: float) -> list[Candle]:
        cur = self._cur
        if cur is not None and bucket > cur.ts:
            self._cur = None
            self._last = cur.ts
            return [cur]
        return []

    def _late(self, bucket: float) -> bool:
        return self._last is not None and bucket <= self._last

    def add_tick(self, price: float, ts: float, volume: float = 0.0) -> list[Candle]:
        """Add one price; returns the candle this price completed (if any)."""
        b = bucket_start(ts, self.tf)
        out = self._roll(b)
        if self._late(b) or (self._cur is not None and b < self._cur.ts):
            return out  # older than what is already built: ignored, never rewrites history
        cur = self._cur
        if cur is None:
            self._cur = Candle(b, price, price, price, price, volume)
        else:
            self._cur = Candle(cur.ts, cur.open, max(cur.high, price), min(cur.low, price),
                               price, cur.volume + volume)
        return out

    def add_candle(self, candle: Candle, interval: float) -> list[Candle]:
        """Add one completed candle of length `interval` (at most the timeframe); returns the
        candles it completed (the previous bucket, this bucket, or both)."""
        if interval > self.tf + 1e-9:
            raise ValidationError(
                f"a {describe(interval)} candle cannot build {describe(self.tf)} candles",
                field="timeframe")
        b = bucket_start(candle.ts, self.tf)
        out = self._roll(b)
        if self._late(b) or (self._cur is not None and b < self._cur.ts):
            return out
        cur = self._cur
        if cur is None:
            cur = Candle(b, candle.open, candle.high, candle.low, candle.close, candle.volume)
        else:
            cur = Candle(cur.ts, cur.open, max(cur.high, candle.high), min(cur.low, candle.low),
                         candle.close, cur.volume + candle.volume)
        self._cur = cur
        if candle.ts + interval >= b + self.tf - 1e-9:
            self._cur = None
            self._last = cur.ts
            out.append(cur)
        return out

    def start_after(self, ts: float) -> None:
        """Candles up to the one opening at `ts` are known already (history): never build
        them again, and drop a forming candle of such a bucket."""
        self._last = ts if self._last is None else max(self._last, ts)
        if self._cur is not None and self._cur.ts <= ts:
            self._cur = None

    def seed_forming(self, candle: Candle) -> None:
        """Start the forming candle from the venue's partial one (what happened in this bucket
        before pmgui was watching); later candles or ticks extend it."""
        b = bucket_start(candle.ts, self.tf)
        if self._late(b):
            return
        cur = self._cur
        if cur is None or cur.ts < b:
            self._cur = Candle(b, candle.open, candle.high, candle.low, candle.close,
                               candle.volume)
        elif cur.ts == b:
            # the venue's count of the bucket includes the ticks seen so far (a snapshot
            # older than some of them counts less: the ticks' count stands then)
            self._cur = Candle(b, candle.open, max(cur.high, candle.high),
                               min(cur.low, candle.low), cur.close,
                               max(cur.volume, candle.volume))

    def close_until(self, now: float) -> list[Candle]:
        """Complete the forming candle once the clock has passed its end."""
        cur = self._cur
        if cur is not None and now >= cur.ts + self.tf:
            self._cur = None
            self._last = cur.ts
            return [cur]
        return []


def aggregate(candles: Iterable[Candle], interval: float, tf_seconds: float) -> list[Candle]:
    """The completed `tf_seconds` candles made of `candles` (each `interval` long, oldest
    first); a last bucket still missing candles is left out."""
    b = CandleBuilder(tf_seconds)
    out: list[Candle] = []
    for c in candles:
        out += b.add_candle(c, interval)
    return out
