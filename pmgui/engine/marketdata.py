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
once by `ensure_frames`; only candles whose end has passed, the venue's forming one seeds the
bucket in progress) and continues with the stream's completed candles aggregated into it
(`CandleBuilder`); a timeframe finer than the stream's candles is built from ticks. A bucket
is complete when the stream candle that ends it arrives (or a later one).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

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


@dataclass(eq=False)
class CandleSeries:
    """Completed candles of one symbol and timeframe, and the indicator sets read from them."""

    window: deque[Candle]
    indicators: dict[IndicatorSpec, IndicatorSet] = field(default_factory=dict)

    def append(self, candle: Candle) -> bool:
        if self.window and candle.ts <= self.window[-1].ts:
            return False
        self.window.append(candle)
        for ind in self.indicators.values():
            ind.update(candle)
        return True

    def indicator_set(self, spec: IndicatorSpec) -> IndicatorSet:
        ind = self.indicators.get(spec)
        if ind is None:
            ind = self.indicators[spec] = IndicatorSet.from_candles(spec, list(self.window))
        return ind


class MarketData:
    def __init__(self, outbox: Outbox, settings: EngineSettings,
                 clock: Callable[[], float]) -> None:
        self.outbox = outbox
        self.settings = settings
        self.clock = clock
        self.markets: dict[str, Market] = {}
        self.last: dict[str, Tick] = {}
        self._series: dict[tuple[str, str], CandleSeries] = {}
        self._forming: dict[str, Candle] = {}
        self._stale_reported: set[str] = set()
        self._builders: dict[tuple[str, str], CandleBuilder] = {}  # rule timeframes
        self._history_due: set[tuple[str, str]] = set()
        self._stream_gap: dict[str, float] = {}  # the stream's candle length, as seen

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
        if not money.valid_price(tick.price):
            log.warning("ignoring invalid price %r for %s", tick.price, tick.symbol)
            return False
        prev = self.last.get(tick.symbol)
        if prev is not None and tick.ts < prev.ts:
            return False  # out of order: never let an older price replace a newer one
        self.last[tick.symbol] = tick
        self._update_forming(tick)
        self._frames_tick(tick)
        self.outbox.publish(TickEvent(tick.symbol, tick.price, tick.ts))
        return True

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

    def _update_forming(self, tick: Tick) -> None:
        tf = self.settings.candle_timeframe
        bucket = tick.ts - (tick.ts % tf)
        cur = self._forming.get(tick.symbol)
        if cur is None or bucket > cur.ts:
            cur = Candle(bucket, tick.price, tick.price, tick.price, tick.price, tick.volume)
        else:
            cur = Candle(cur.ts, cur.open, max(cur.high, tick.price), min(cur.low, tick.price),
                         tick.price, cur.volume + tick.volume)
        self._forming[tick.symbol] = cur

    def on_candle(self, symbol: str, candle: Candle, closed: bool) -> None:
        if not closed:
            self._forming[symbol] = candle
            return
        self.close_candle(symbol, candle)

    def close_candle(self, symbol: str, candle: Candle, timeframe: str = STREAM) -> None:
        if not self.series(symbol, timeframe).append(candle):
            return
        if timeframe == STREAM:
            self._frames_candle(symbol, candle)
            forming = self._forming.get(symbol)
            if forming is not None and forming.ts <= candle.ts:
                del self._forming[symbol]
            self.publish_candles(symbol)

    def publish_candles(self, symbol: str) -> None:
        candles = self.candles(symbol)
        forming = self._forming.get(symbol)
        if forming is not None and (not candles or forming.ts > candles[-1].ts):
            candles = (*candles, forming)
        self.outbox.publish(CandlesEvent(symbol, candles))

    async def load_history(self, exchange: Exchange, symbol: str) -> None:
        try:
            history = await exchange.fetch_ohlcv(symbol, "1m", self.settings.candle_window)
        except (ExchangeError, NotImplementedError) as exc:
            log.warning("no candle history for %s: %s", symbol, exc)
            history = []
        series = self.series(symbol)
        for c in history:
            series.append(c)
        self.publish_candles(symbol)

    # ---------------------------------------------------------------- rule timeframes

    def want(self, symbol: str, timeframe: str) -> None:
        """Keep candles of `timeframe` for `symbol` from now on (history loaded by
        `ensure_frames`)."""
        key = (symbol, timeframe)
        if key not in self._builders:
            self._builders[key] = CandleBuilder(seconds(timeframe))
            self._history_due.add(key)
            self.series(symbol, timeframe)

    def frames(self, symbol: str, spec: IndicatorSpec,
               timeframes: Iterable[str]) -> dict[str, Indicators]:
        """The indicators of `spec` on each of `timeframes` (completed candles only)."""
        out: dict[str, Indicators] = {}
        for tf in timeframes:
            self.want(symbol, tf)
            out[tf] = self.series(symbol, tf).indicator_set(spec).snapshot()
        return out

    async def ensure_frames(self, exchange: Exchange, symbol: str,
                            timeframes: Iterable[str]) -> None:
        """Load the venue's history of each timeframe not loaded yet (once per timeframe)."""
        for tf in timeframes:
            self.want(symbol, tf)
            key = (symbol, tf)
            if key in self._history_due:
                self._history_due.discard(key)
                await self._load_frame(exchange, symbol, tf)

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
        series.indicators.clear()  # rebuilt from the window when next read
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
        for (sym, tf), builder in self._builders.items():
            if sym == symbol and builder.tf >= interval - 1e-9:
                for done in builder.add_candle(candle, interval):
                    self.series(sym, tf).append(done)

    def _frames_tick(self, tick: Tick) -> None:
        interval = self._interval(tick.symbol)
        for (sym, tf), builder in self._builders.items():
            if sym == tick.symbol and builder.tf < interval - 1e-9:
                for done in builder.add_tick(tick.price, tick.ts, tick.volume):
                    self.series(sym, tf).append(done)

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
