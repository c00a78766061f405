"""Candles for display (no Qt): the engine's window, the forming candle, timeframes.

The engine publishes a window of base candles (1-minute by default; a replayed file may be
hourly) only when a candle completes. Between those events the chart builds the forming
candle from ticks itself, so the last price never floats away from the last candle. Each
symbol's series keeps what it has seen beyond the engine's window (up to `MAX_CANDLES`), so
coarser timeframes fill up over a session. Timeframe buckets are aligned to UTC.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence

from pmgui.domain.candles import merge_buckets
from pmgui.domain.models import Candle
from pmgui.domain.money import valid_price
from pmgui.domain.timeframes import bucket_start

TIMEFRAMES: dict[str, float] = {"1m": 60.0, "5m": 300.0, "15m": 900.0, "1h": 3600.0,
                                "4h": 14_400.0, "1d": 86_400.0}
MAX_CANDLES = 10_000


def valid_candle(c: Candle) -> bool:
    return (all(valid_price(v) for v in (c.open, c.high, c.low, c.close))
            and math.isfinite(c.ts) and math.isfinite(c.volume) and c.volume >= 0)


def base_seconds(candles: Sequence[Candle], default: float = 60.0) -> float:
    """The candles' own interval: the median gap between neighbours."""
    gaps = sorted(b.ts - a.ts for a, b in itertools.pairwise(candles) if b.ts > a.ts)
    return gaps[len(gaps) // 2] if gaps else default


class CandleSeries:
    """One symbol's candles: merged engine windows plus the forming candle from ticks."""

    def __init__(self, max_len: int = MAX_CANDLES) -> None:
        self.max_len = max_len
        self.base = 60.0
        self._candles: list[Candle] = []
        self._cache: dict[float, tuple[int, list[Candle]]] = {}  # seconds → (version, agg)
        self._history: dict[float, list[Candle]] = {}  # seconds → the engine's older candles
        self._version = 0  # bumps when anything but the last candle changes
        self.forming = False  # the last candle was built or extended from ticks

    @property
    def version(self) -> int:
        return self._version

    @property
    def candles(self) -> tuple[Candle, ...]:
        """Base candles, oldest first; the last one may still be forming."""
        return tuple(self._candles)

    def merge(self, candles: Sequence[Candle]) -> None:
        """The engine's window: it replaces what overlaps; older history and a newer
        tick-built candle are kept."""
        new = [c for c in candles if valid_candle(c)]
        new.sort(key=lambda c: c.ts)
        if not new:
            return
        if len(new) > 1:
            self.base = base_seconds(new, self.base)
        old = self._candles
        first, last = new[0].ts, new[-1].ts
        merged = [c for c in old if c.ts < first] + new + [c for c in old if c.ts > last]
        self._candles = merged[-self.max_len:]
        self._version += 1
        self.forming = bool(old) and old[-1].ts > last

    def set_history(self, seconds: float, candles: Sequence[Candle]) -> None:
        """Completed candles of `seconds` from the engine (GetCandles): shown before what
        the base candles cover, for display only."""
        self._history[seconds] = sorted((c for c in candles if valid_candle(c)),
                                        key=lambda c: c.ts)
        self._version += 1

    def history(self, seconds: float) -> list[Candle]:
        return list(self._history.get(seconds, ()))

    def _with_history(self, seconds: float, head: list[Candle]) -> list[Candle]:
        hist = self._history.get(seconds)
        if not hist:
            return head
        first = self._candles[0].ts if self._candles else math.inf
        start = bucket_start(first, seconds) if math.isfinite(first) else math.inf
        cut = first if first == start else start + seconds  # the first complete bucket
        older = [c for c in hist if c.ts < cut]
        if not older:
            return head
        return older + [c for c in head if c.ts > older[-1].ts]

    def on_tick(self, price: float, ts: float) -> bool:
        """Extend the forming candle (or open the next one). False: nothing changed."""
        if not valid_price(price) or not math.isfinite(ts):
            return False
        cs = self._candles
        if not cs:
            cs.append(Candle(bucket_start(ts, self.base), price, price, price, price, 0.0))
            self._version += 1
            self.forming = True
            return True
        last = cs[-1]
        if ts < last.ts:
            return False
        if ts < last.ts + self.base:
            if last.low <= price <= last.high and price == last.close:
                return False
            cs[-1] = Candle(last.ts, last.open, max(last.high, price), min(last.low, price),
                            price, last.volume)
            self.forming = True
            return True
        start = last.ts + math.floor((ts - last.ts) / self.base) * self.base
        cs.append(Candle(start, price, price, price, price, 0.0))
        del cs[:-self.max_len]
        self._version += 1
        self.forming = True
        return True

    def fold(self, ticks: Iterable[tuple[float, float]]) -> None:
        """`on_tick(price, ts)` for each tick in order, making each candle once instead of
        once per tick (the ticks of the symbols not shown wait and are folded in batches:
        in a storm that is nearly every tick). The same candles, version and `forming`."""
        cs = self._candles
        base = self.base
        have = bool(cs)
        t0 = o = hi = lo = cl = vol = 0.0
        if have:
            last = cs[-1]
            t0, o, hi, lo, cl, vol = (last.ts, last.open, last.high, last.low, last.close,
                                      last.volume)
        dirty = False  # the last candle (t0, o, hi, lo, cl, vol) is not in `cs` yet
        for price, ts in ticks:
            if not valid_price(price) or not math.isfinite(ts):
                continue
            if not have:
                cs.append(Candle(bucket_start(ts, base), price, price, price, price, 0.0))
                t0, o, hi, lo, cl, vol = cs[-1].ts, price, price, price, price, 0.0
                have = True
                self._version += 1
                self.forming = True
                continue
            if ts < t0:
                continue
            if ts < t0 + base:
                if lo <= price <= hi and price == cl:
                    continue
                hi, lo, cl = max(hi, price), min(lo, price), price
                dirty = True
                self.forming = True
                continue
            if dirty:
                cs[-1] = Candle(t0, o, hi, lo, cl, vol)
                dirty = False
            t0 = t0 + math.floor((ts - t0) / base) * base
            o = hi = lo = cl = price
            vol = 0.0
            cs.append(Candle(t0, price, price, price, price, 0.0))
            del cs[:-self.max_len]
            self._version += 1
            self.forming = True
        if dirty:
            cs[-1] = Candle(t0, o, hi, lo, cl, vol)

    def timeframes(self) -> list[str]:
        """The timeframes these candles can be shown at (none finer than the base)."""
        return [name for name, sec in TIMEFRAMES.items() if sec >= self.base - 1e-9]

    def view(self, seconds: float, limit: int | None = None) -> list[Candle]:
        """The newest `limit` candles at `seconds` (the last one possibly forming). The
        completed part is cached, so a tick re-aggregates only the newest bucket."""
        cs = self._candles
        if not cs:
            return self.history(seconds)[-limit:] if limit else self.history(seconds)
        if seconds <= self.base + 1e-9:
            return cs[-limit:] if limit else list(cs)
        cached = self._cache.get(seconds)
        if cached is None or cached[0] != self._version:
            head = self._with_history(seconds, merge_buckets(cs[:-1], seconds))
            self._cache[seconds] = (self._version, head)
        else:
            head = cached[1]
        out = head[-limit:] if limit else list(head)
        c = cs[-1]
        start = bucket_start(c.ts, seconds)
        if out and out[-1].ts == start:
            p = out[-1]
            out[-1] = Candle(start, p.open, max(p.high, c.high), min(p.low, c.low), c.close,
                             p.volume + c.volume)
        else:
            out.append(Candle(start, c.open, c.high, c.low, c.close, c.volume))
        return out[-limit:] if limit else out
