"""Candles merged into coarser buckets.

The paper venue answers a history request for a coarser timeframe from its finer candles,
and the chart shows a coarser view of the candles it holds: both merge the same way, here."""

from __future__ import annotations

from collections.abc import Iterable

from pmgui.domain.models import Candle
from pmgui.domain.timeframes import bucket_start


def merge_buckets(candles: Iterable[Candle], seconds: float) -> list[Candle]:
    """`candles` (oldest first) merged into `seconds` buckets: the open of the first, the
    close of the last, the extremes and the summed volume. A last bucket still forming is
    kept (`pmgui.indicators.aggregate` leaves it out: the rules read completed candles
    only); candles already at least that coarse come back as they are."""
    out: list[Candle] = []
    for c in candles:
        start = bucket_start(c.ts, seconds)
        if out and out[-1].ts == start:
            last = out[-1]
            out[-1] = Candle(start, last.open, max(last.high, c.high), min(last.low, c.low),
                             c.close, last.volume + c.volume)
        else:
            out.append(Candle(start, c.open, c.high, c.low, c.close, c.volume))
    return out
