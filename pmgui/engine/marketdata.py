"""Market data: the last price per symbol, candles per symbol and timeframe, indicators.

Completed candles come from the venue (`on_candle`): a replayed hourly file must not be cut
into minutes by the engine. The forming candle is built from ticks for the chart only.

Candles are kept per `(symbol, timeframe)` in a `CandleSeries` with its own indicator sets.
The venue's stream feeds `STREAM` (the base timeframe); another timeframe is one more series:
`series(symbol, "1h")` creates it, `close_candle(symbol, candle, timeframe="1h")` feeds it,
`indicator_set(symbol, spec, timeframe="1h")` reads it.

Rule timeframes (`1m` … `1d`, issue 11): `frames(symbol, spec, timeframes)` gives the rules
the indicators of each timeframe they read, from completed candles only. A rule timeframe's
series starts from the venue's history at that timeframe (`fetch_ohlcv(symbol, tf)`, loaded
once by `ensure_frames` — when a position is opened or restored (`EngineCore.warm_up`), else
on its first tick; only candles whose end has passed, the venue's forming one seeds the
bucket in progress) and continues with the stream's completed candles aggregated into it
(`CandleBuilder`); a timeframe finer than the stream's candles is built from ticks. A bucket
is complete when the stream candle that ends it arrives (or a later one).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import reduce
from operator import add
from types import MappingProxyType

from pmgui.domain import money
from pmgui.domain.errors import ExchangeError
from pmgui.domain.models import Candle, Indicators, Market, Tick
from pmgui.domain.timeframes import seconds
from pmgui.engine.events import CandlesEvent, ErrorEvent, TickEvent
from pmgui.engine.outbox import Outbox
from pmgui.engine.settings import EngineSettings
from pmgui.exchange.base import Exchange
from pmgui.indicators import CandleBuilder, IndicatorSet, IndicatorSpec

log = logging.getLogger("pmgui.engine.marketdata")

STREAM = "stream"  # the timeframe the venue's candle stream delivers
_INF = math.inf


@dataclass(eq=False)
class CandleSeries:
    """Completed candles of one symbol and timeframe, and the indicator sets read from them."""

    window: deque[Candle]
    indicators: dict[IndicatorSpec, IndicatorSet] = field(default_factory=dict)
    # each set's snapshot, taken once per completed candle (not once per tick)
    snapshots: dict[IndicatorSpec, Indicators] = field(default_factory=dict)

    def append(self, candle: Candle) -> bool:
        if self.window and candle.ts <= self.window[-1].ts:
            return False
        self.window.append(candle)
        self.snapshots.clear()
        for ind in self.indicators.values():
            ind.update(candle)
        return True

    def reset(self) -> None:
        """The window was replaced: every indicator set is rebuilt when next read."""
        self.indicators.clear()
        self.snapshots.clear()

    def indicator_set(self, spec: IndicatorSpec) -> IndicatorSet:
        ind = self.indicators.get(spec)
        if ind is None:
            ind = self.indicators[spec] = IndicatorSet.from_candles(spec, list(self.window))
        return ind

    def snapshot(self, spec: IndicatorSpec) -> Indicators:
        """`indicator_set(spec).snapshot()`, the same object until the next candle."""
        snap = self.snapshots.get(spec)
        if snap is None:
            snap = self.snapshots[spec] = self.indicator_set(spec).snapshot()
        return snap


class _Forming:
    """The candle forming from ticks (display only), kept mutable: one tick updates four
    numbers instead of building a candle."""

    __slots__ = ("close", "high", "low", "open", "ts", "volume")

    def __init__(self, ts: float, open_: float, high: float, low: float, close: float,
                 volume: float) -> None:
        self.ts, self.open, self.high, self.low, self.close = ts, open_, high, low, close
        self.volume = volume

    def candle(self) -> Candle:
        return Candle(self.ts, self.open, self.high, self.low, self.close, self.volume)


class MarketData:
    def __init__(self, outbox: Outbox, settings: EngineSettings,
                 clock: Callable[[], float]) -> None:
        self.outbox = outbox
        self.settings = settings
        self.clock = clock
        self.markets: dict[str, Market] = {}
        self.last: dict[str, Tick] = {}
        self._series: dict[tuple[str, str], CandleSeries] = {}
        self._forming: dict[str, Candle | _Forming] = {}
        self._stale_reported: set[str] = set()
        self._builders: dict[tuple[str, str], CandleBuilder] = {}  # rule timeframes
        self._builders_of: dict[str, list[tuple[str, CandleBuilder]]] = {}  # by symbol
        self._history_due: set[tuple[str, str]] = set()  # cleared when loaded, not before
        # the load of a (symbol, timeframe) under way: a second caller (the tick path
        # racing a position's warm-up) waits for it instead of fetching again
        self._loading: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._stream_gap: dict[str, float] = {}  # the stream's candle length, as seen
        # per symbol, bumped whenever a candle of any of its timeframes completes (or its
        # history is replaced): what the rules read from candles is unchanged while it is
        self.versions: dict[str, int] = {}  # (read-only outside; `version()` reads it)
        self._states: dict[tuple[str, int, tuple[str, ...]],
                           tuple[int, Indicators, Mapping[str, Indicators], IndicatorSpec]] = {}
        # while held (`hold()`), ticks are published once per symbol at `release()`
        self._held: dict[str, Tick] | None = None

    # ---------------------------------------------------------------- markets & prices

    def market(self, symbol: str) -> Market:
        m = self.markets.get(symbol)
        if m is None:
            m = Market(symbol, tick_size=1e-8, amount_step=1e-8)
        return m

    def price(self, symbol: str) -> float | None:
        t = self.last.get(symbol)
        return t.price if t else None

    def tick_age(self) -> float | None:
        newest = max((t.ts for t in self.last.values()), default=None)
        return max(0.0, self.clock() - newest) if newest is not None else None

    def on_tick(self, tick: Tick) -> bool:
        """Take a tick; False when it is invalid or older than the one we have."""
        price = tick.price
        # `money.valid_price`, its float case inline (every tick of every symbol)
        if not (0.0 < price < _INF if price.__class__ is float else money.valid_price(price)):
            log.warning("ignoring invalid price %r for %s", tick.price, tick.symbol)
            return False
        symbol = tick.symbol
        ts = tick.ts
        prev = self.last.get(symbol)
        if prev is not None and ts < prev.ts:
            return False  # out of order: never let an older price replace a newer one
        self.last[symbol] = tick
        # the forming candle, extended in place (most ticks fall inside the candle it builds;
        # `_forming_for` only when a new one starts or the venue's own is taken over)
        cur = self._forming.get(symbol)
        if cur.__class__ is not _Forming or ts - (ts % self.settings.candle_timeframe) > cur.ts:
            cur = self._forming_for(tick, cur)
        if price > cur.high:
            cur.high = price
        if price < cur.low:
            cur.low = price
        cur.close = price
        cur.volume += tick.volume
        if symbol in self._builders_of:
            self._frames_tick(tick)
        if self._held is not None:
            self._held[symbol] = tick
        else:
            self.outbox.publish(TickEvent(symbol, tick.price, tick.ts))
        return True

    def can_take_run(self, symbol: str, first: Tick, last: Tick, low: float,
                     high: float) -> bool:
        """Whether `take_run` of ticks of `symbol` from `first` to `last` (strictly
        increasing times, prices from `low` to `high`) does what `on_tick` of each would:
        every price valid, none older than the last price, all inside the forming candle
        (none starts a new one), no timeframe built from ticks (`_frames_tick`), and
        prices published coalesced (`hold()`: the last one is what is published)."""
        if self._held is None or not (0.0 < low and high < _INF):
            return False
        prev = self.last.get(symbol)
        if prev is not None and first.ts < prev.ts:
            return False
        cur = self._forming.get(symbol)
        ts = last.ts
        if cur.__class__ is not _Forming or ts - (ts % self.settings.candle_timeframe) > cur.ts:
            return False
        if symbol in self._builders_of:
            interval = self._interval(symbol)
            if any(b.tf < interval - 1e-9 for _, b in self._builders_of[symbol]):
                return False
        return True

    def take_run(self, ticks: Sequence[Tick], low: float, high: float,
                 volumes: Sequence[float] | None) -> None:
        """`on_tick` of each of `ticks` (`can_take_run` said it may): the last price, the
        forming candle extended by the run (its volumes added in order, as tick by tick)."""
        last = ticks[-1]
        symbol = last.symbol
        self.last[symbol] = last
        cur = self._forming[symbol]
        if high > cur.high:
            cur.high = high
        if low < cur.low:
            cur.low = low
        cur.close = last.price
        if volumes is not None:
            cur.volume = reduce(add, volumes, cur.volume)
        else:
            cur.volume += 0.0
        self._held[symbol] = last  # type: ignore[index]  (`can_take_run`: held)

    def hold(self) -> None:
        """Publish prices coalesced from now on: the last tick per symbol at `release()`."""
        if self._held is None:
            self._held = {}

    def release(self, keep_holding: bool = False) -> None:
        held, self._held = self._held, ({} if keep_holding else None)
        for tick in (held or {}).values():
            self.outbox.publish(TickEvent(tick.symbol, tick.price, tick.ts))

    def version(self, symbol: str) -> int:
        """Changes whenever a candle of `symbol` (any timeframe) completes."""
        return self.versions.get(symbol, 0)

    def _changed(self, symbol: str) -> None:
        self.versions[symbol] = self.versions.get(symbol, 0) + 1

    def state(self, symbol: str, spec: IndicatorSpec, timeframes: tuple[str, ...]
              ) -> tuple[Indicators, Mapping[str, Indicators]]:
        """The indicators the rules read: `spec` on the stream's candles and on each of
        `timeframes` — computed once per completed candle of the symbol, not per tick."""
        # keyed by the spec object (the engine keeps one per Params): hashing the spec's
        # fields on every tick costs more than the rest of the lookup; `hit[3] is spec`
        # (which also keeps the spec alive, so its id is not reused)
        key = (symbol, id(spec), timeframes)
        version = self.versions.get(symbol, 0)
        hit = self._states.get(key)
        if hit is not None and hit[0] == version and hit[3] is spec:
            return hit[1], hit[2]
        base = self.series(symbol).snapshot(spec)
        frames = MappingProxyType(self.frames(symbol, spec, timeframes))
        version = self.versions.get(symbol, 0)  # a frame created just now may have bumped it
        if len(self._states) > 4096:
            self._states.clear()
        self._states[key] = (version, base, frames, spec)
        return base, frames

    # ---------------------------------------------------------------- candles

    def series(self, symbol: str, timeframe: str = STREAM) -> CandleSeries:
        key = (symbol, timeframe)
        s = self._series.get(key)
        if s is None:
            s = self._series[key] = CandleSeries(deque(maxlen=self.settings.candle_window))
        return s

    def candles(self, symbol: str, timeframe: str = STREAM) -> tuple[Candle, ...]:
        s = self._series.get((symbol, timeframe))
        return tuple(s.window) if s else ()

    def indicator_set(self, symbol: str, spec: IndicatorSpec,
                      timeframe: str = STREAM) -> IndicatorSet:
        return self.series(symbol, timeframe).indicator_set(spec)

    def _forming_for(self, tick: Tick, cur: Candle | _Forming | None) -> _Forming:
        """The mutable candle `tick` extends: a new one (empty volume, opened at its price)
        when `tick` starts a later bucket than `cur` (or there is none), else `cur` itself,
        copied into a `_Forming` if it is the venue's own forming candle."""
        tf = self.settings.candle_timeframe
        bucket = tick.ts - (tick.ts % tf)
        if cur is None or bucket > cur.ts:
            p = tick.price
            new = self._forming[tick.symbol] = _Forming(bucket, p, p, p, p, 0.0)
            return new
        if not isinstance(cur, _Forming):
            cur = self._forming[tick.symbol] = _Forming(cur.ts, cur.open, cur.high, cur.low,
                                                        cur.close, cur.volume)
        return cur

    def on_candle(self, symbol: str, candle: Candle, closed: bool) -> None:
        if not closed:
            self._forming[symbol] = candle
            return
        self.close_candle(symbol, candle)

    def _append(self, symbol: str, timeframe: str, candle: Candle) -> bool:
        if not self.series(symbol, timeframe).append(candle):
            return False
        self.versions[symbol] = self.versions.get(symbol, 0) + 1
        return True

    def close_candle(self, symbol: str, candle: Candle, timeframe: str = STREAM) -> None:
        if not self._append(symbol, timeframe, candle):
            return
        if timeframe == STREAM:
            self._frames_candle(symbol, candle)
            forming = self._forming.get(symbol)
            if forming is not None and forming.ts <= candle.ts:
                del self._forming[symbol]
            self.publish_candles(symbol)

    def publish_candles(self, symbol: str) -> None:
        if not self.outbox.wants(CandlesEvent):  # (a replay: nobody takes the candles)
            return
        candles = self.candles(symbol)
        forming = self._forming.get(symbol)
        if forming is not None and (not candles or forming.ts > candles[-1].ts):
            candles = (*candles, forming.candle() if isinstance(forming, _Forming) else forming)
        self.outbox.publish(CandlesEvent(symbol, candles))

    async def load_history(self, exchange: Exchange, symbol: str) -> None:
        try:
            history = await exchange.fetch_ohlcv(symbol, "1m", self.settings.candle_window)
        except (ExchangeError, NotImplementedError) as exc:
            log.warning("no candle history for %s: %s", symbol, exc)
            history = []
        for c in history:
            self._append(symbol, STREAM, c)
        self.publish_candles(symbol)

    # ---------------------------------------------------------------- rule timeframes

    def want(self, symbol: str, timeframe: str) -> None:
        """Keep candles of `timeframe` for `symbol` from now on (history loaded by
        `ensure_frames`)."""
        key = (symbol, timeframe)
        if key not in self._builders:
            builder = self._builders[key] = CandleBuilder(seconds(timeframe))
            self._builders_of.setdefault(symbol, []).append((timeframe, builder))
            self._history_due.add(key)
            self.series(symbol, timeframe)

    def frames(self, symbol: str, spec: IndicatorSpec,
               timeframes: Iterable[str]) -> dict[str, Indicators]:
        """The indicators of `spec` on each of `timeframes` (completed candles only)."""
        out: dict[str, Indicators] = {}
        for tf in timeframes:
            self.want(symbol, tf)
            out[tf] = self.series(symbol, tf).snapshot(spec)
        return out

    def frames_ready(self, symbol: str, timeframes: Iterable[str]) -> bool:
        """Whether `ensure_frames` has nothing to do (each timeframe wanted, its history
        loaded): the tick path then skips it and its coroutine. A load under way is not
        ready: the rules must not read a timeframe whose history is still to come."""
        builders, due = self._builders, self._history_due
        for tf in timeframes:
            key = (symbol, tf)
            if key not in builders or key in due:
                return False
        return True

    async def ensure_frames(self, exchange: Exchange, symbol: str,
                            timeframes: Iterable[str]) -> None:
        """Load the venue's history of each timeframe not loaded yet (once per timeframe).

        Called by a position's warm-up (`EngineCore.warm_up`, off the tick path) and, as the
        fallback, by the tick path and the indicator query: whoever comes second while a
        load is under way waits for that one (one fetch per timeframe), and returns only
        once the history is in — never with half of it."""
        for tf in timeframes:
            self.want(symbol, tf)
            key = (symbol, tf)
            while key in self._history_due:
                pending = self._loading.get(key)
                if pending is not None:
                    # shielded: a waiter cancelled must not cancel the load others wait on
                    await asyncio.shield(pending)
                    continue  # loaded, or its loader was cancelled: then load it here
                await self._load_once(exchange, symbol, tf)

    async def _load_once(self, exchange: Exchange, symbol: str, tf: str) -> None:
        """`_load_frame`, registered as the load under way of `(symbol, tf)`. Done once it
        returns or fails (a failed fetch is logged by `_load_frame` and not retried, as
        before); still due when cancelled (a warm-up stopped at shutdown loaded nothing)."""
        key = (symbol, tf)
        done = self._loading[key] = asyncio.get_running_loop().create_future()
        loaded = False
        try:
            await self._load_frame(exchange, symbol, tf)
            loaded = True
        except Exception:
            loaded = True  # raised to this caller once, as before; not fetched again
            raise
        finally:
            if loaded:
                self._history_due.discard(key)
            del self._loading[key]
            done.set_result(None)

    async def _load_frame(self, exchange: Exchange, symbol: str, tf: str) -> None:
        sec = seconds(tf)
        try:
            history = await exchange.fetch_ohlcv(symbol, tf, self.settings.candle_window)
        except (ExchangeError, NotImplementedError) as exc:
            log.warning("no %s candle history for %s: %s", tf, symbol, exc)
            return
        now = self.clock()
        done = sorted((c for c in history if c.ts + sec <= now), key=lambda c: c.ts)
        forming = [c for c in history if c.ts + sec > now]
        series = self.series(symbol, tf)
        newer = [c for c in series.window if not done or c.ts > done[-1].ts]
        series.window.clear()
        series.reset()  # rebuilt from the window when next read
        self._changed(symbol)
        for c in (*done, *newer):
            if not series.window or c.ts > series.window[-1].ts:
                series.window.append(c)
        builder = self._builders[(symbol, tf)]
        if series.window:
            builder.start_after(series.window[-1].ts)
        if forming:
            builder.seed_forming(max(forming, key=lambda c: c.ts))

    def _interval(self, symbol: str) -> float:
        """The length of the stream's candles: the smallest gap seen between two of them
        (a paper venue may stream a recorded file's hours), else the configured one."""
        return self._stream_gap.get(symbol, float(self.settings.candle_timeframe))

    def _frames_candle(self, symbol: str, candle: Candle) -> None:
        window = self.series(symbol).window
        if len(window) >= 2:
            gap = window[-1].ts - window[-2].ts
            if gap > 0 and gap < self._stream_gap.get(symbol, float("inf")):
                self._stream_gap[symbol] = gap
        interval = self._interval(symbol)
        for tf, builder in self._builders_of.get(symbol, ()):
            if builder.tf >= interval - 1e-9:
                for done in builder.add_candle(candle, interval):
                    self._append(symbol, tf, done)

    def _frames_tick(self, tick: Tick) -> None:
        interval = self._interval(tick.symbol)
        for tf, builder in self._builders_of.get(tick.symbol, ()):
            if builder.tf < interval - 1e-9:
                for done in builder.add_tick(tick.price, tick.ts, tick.volume):
                    self._append(tick.symbol, tf, done)

    # ---------------------------------------------------------------- stale prices

    async def refresh_stale(self, exchange: Exchange, wanted: Iterable[tuple[str, float, int,
                                                                              float]],
                            deliver: Callable[[Tick], Awaitable[None]]) -> None:
        """Seed 000 §4: on a gap in the stream, ask REST (`tries`, backoff `b·2ⁿ` s).

        `wanted`: (symbol, max_age, tries, backoff) for each symbol a position needs. A price
        that is still not fresh is never used: rules stay idle for that symbol and the trader
        is told once per gap (the table shows the staleness meanwhile).
        """
        for symbol, max_age, tries, backoff in wanted:
            last = self.last.get(symbol)
            if last is not None and self.clock() - last.ts <= max_age:
                self._stale_reported.discard(symbol)
                continue
            for attempt in range(tries):
                try:
                    tick = await exchange.fetch_price(symbol)
                except ExchangeError:
                    tick = None
                if tick is not None and money.valid_price(tick.price) \
                        and self.clock() - tick.ts <= max_age:
                    await deliver(tick)
                    self._stale_reported.discard(symbol)
                    break
                if attempt + 1 < tries:
                    await asyncio.sleep(backoff * 2 ** attempt)
            else:
                if symbol not in self._stale_reported:
                    self._stale_reported.add(symbol)
                    self.outbox.publish(ErrorEvent(
                        f"{symbol}: no fresh price (stream and REST); rules are paused for it "
                        "until prices return", self.clock()))
