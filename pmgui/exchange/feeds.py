"""Market simulators for the paper exchange: replay of recorded history, and a random walk.

A feed is an iterator of events: a `Tick`, or a `CandleClosed` when a candle is complete.
Indicators are built only from completed candles (DESIGN §8), so the feed — not the engine —
decides when a candle is done: for candle files that is after the candle's four path ticks,
for tick data and the random walk it is when the first tick of the next time bucket arrives.
Feeds are plain synchronous iterators; the paper exchange paces them.
"""

from __future__ import annotations

import math
import random
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import reduce
from itertools import chain, repeat
from operator import add, truediv
from pathlib import Path
from typing import Protocol

from pmgui import resources
from pmgui.domain.errors import ValidationError
from pmgui.domain.models import Candle, Market, Tick
from pmgui.exchange.csvdata import PriceData, TickColumns, candle_path_ticks, load_price_csv


@dataclass(frozen=True, slots=True)
class CandleClosed:
    """A completed candle of `symbol` (its `ts` is the candle's open time)."""

    symbol: str
    candle: Candle


FeedEvent = Tick | CandleClosed


@dataclass(frozen=True, slots=True)
class TickRun:
    """Consecutive ticks of one symbol inside one candle of a recorded file, in time order
    (strictly increasing), with their prices and volumes as columns (`volumes` None: every
    volume 0.0): what `ReplayFeed.runs` hands the paper venue, which takes a run at once
    when nothing can happen inside its price range (`PaperExchange.run`)."""

    symbol: str
    ticks: Sequence[Tick]
    prices: Sequence[float]
    volumes: Sequence[float] | None


class Feed(Protocol):
    """What the paper exchange consumes. `tick_interval` is the wall-clock pause between
    time steps in realtime mode (None: let the exchange choose)."""

    tick_interval: float | None

    def events(self) -> Iterator[FeedEvent]: ...

    def symbols(self) -> tuple[str, ...]: ...


def bundled_data() -> list[Path]:
    """The real price files shipped in `pmgui/resources/data/` (see its README for provenance)."""
    return [resources.resource_path("data", n) for n in resources.names("data", suffix=".csv")]


def bundled_feed(name: str = "BTCUSD-1h-coinbase-2019.csv", *, symbol: str | None = None,
                 tick_interval: float | None = 1.0,
                 clock: Callable[[], float] | None = None) -> ReplayFeed:
    """A replay of one bundled file (real history); `name` is a file name from
    `bundled_data()`. In realtime mode each path tick lasts `tick_interval` seconds; pass
    `clock=time.time` there so the ticks carry wall time."""
    for path in bundled_data():
        if path.name == name:
            return ReplayFeed.from_csv(path, symbol=symbol, tick_interval=tick_interval,
                                       clock=clock)
    names = ", ".join(p.name for p in bundled_data()) or "none"
    raise ValidationError(f"no bundled data file {name!r} (bundled: {names})", field="name")


def bucket_start(ts: float, timeframe: float) -> float:
    return math.floor(ts / timeframe) * timeframe


class CandleAggregator:
    """Builds `timeframe`-second candles from ticks, per symbol.

    `add` returns the previous candle of the tick's symbol when the tick opens a new bucket:
    the arrival of a later tick is what proves the bucket complete.
    """

    def __init__(self, timeframe: float = 60.0) -> None:
        if not (math.isfinite(timeframe) and timeframe > 0):
            raise ValidationError(f"timeframe must be a positive number of seconds "
                                  f"(got {timeframe!r})", field="timeframe")
        self.timeframe = float(timeframe)
        # per symbol the forming candle as [ts, open, high, low, close, volume, k + 1] with
        # ts = k · timeframe (mutable: a tick updates it in place; a Candle is built when it
        # completes). A tick opens a later bucket when floor(tick.ts / timeframe) > k, that
        # is tick.ts / timeframe >= k + 1: one division per tick, not `bucket_start`'s floor.
        self._open: dict[str, list[float]] = {}

    def add(self, tick: Tick) -> CandleClosed | None:
        price = tick.price
        cur = self._open.get(tick.symbol)
        if cur is None or tick.ts / self.timeframe >= cur[6]:
            k = math.floor(tick.ts / self.timeframe)  # `bucket_start`, with its k kept
            self._open[tick.symbol] = [k * self.timeframe, price, price, price, price,
                                       tick.volume, k + 1.0]
            return None if cur is None else CandleClosed(tick.symbol, Candle(*cur[:6]))
        if price > cur[2]:
            cur[2] = price
        if price < cur[3]:
            cur[3] = price
        cur[4] = price
        cur[5] = cur[5] + tick.volume
        return None

    def current(self, symbol: str) -> Candle | None:
        """The forming (incomplete) candle, for display only."""
        cur = self._open.get(symbol)
        return Candle(*cur[:6]) if cur is not None else None

    def flush(self) -> list[CandleClosed]:
        """Close every forming candle (end of data)."""
        out = [CandleClosed(s, Candle(*c[:6])) for s, c in self._open.items()]
        self._open.clear()
        return out


class ReplayFeed:
    """Replays a recorded file as ticks, deterministically.

    Candle data: each candle becomes four ticks along `candle_path_ticks` at the candle's open
    time, +1/3 and +2/3 of the interval, and the close just before the interval ends
    (interval − min(1 s, interval/100)); then `CandleClosed` with the candle as recorded.
    Tick data: ticks as recorded; candles aggregated at `timeframe` seconds, `CandleClosed`
    emitted (before the tick) when a tick opens a new bucket, and for the last bucket when the
    data end — the data ending is what completes it.

    With a `clock` (a realtime demo on recorded prices) every tick is stamped with `clock()`
    when it is produced, and each replayed candle with the time of its first tick, so price
    age checks see live prices; the prices and their order are unchanged.
    """

    def __init__(self, data: PriceData, *, symbol: str | None = None,
                 timeframe: float = 60.0, tick_interval: float | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        if len(data) == 0:
            raise ValidationError("price data has no rows", field="data")
        self.data = data
        self.symbol = symbol or data.symbol
        self.timeframe = float(timeframe)
        CandleAggregator(self.timeframe)  # validates the timeframe now, not mid-replay
        self.tick_interval = tick_interval
        self.clock = clock

    @classmethod
    def from_csv(cls, path: str | Path, *, symbol: str | None = None,
                 timeframe: float = 60.0, tick_interval: float | None = None,
                 clock: Callable[[], float] | None = None) -> ReplayFeed:
        return cls(load_price_csv(path, symbol), symbol=symbol, timeframe=timeframe,
                   tick_interval=tick_interval, clock=clock)

    def symbols(self) -> tuple[str, ...]:
        return (self.symbol,)

    def events(self) -> Iterator[FeedEvent]:
        if self.data.kind == "candles":
            return self._candle_events()
        return self._recorded_ticks() if self.clock is None else self._clocked_ticks()

    def _candle_events(self) -> Iterator[FeedEvent]:
        """Candle data: four path ticks per candle, then the candle (see the class)."""
        sym = self.symbol
        interval = self.data.interval
        close_at = interval - min(1.0, interval / 100.0)
        offsets = (0.0, interval / 3.0, 2.0 * interval / 3.0, close_at)
        last = -math.inf
        for c in self.data.candles:
            vol = c.volume / 4.0
            opened = c.ts
            for i, (off, price) in enumerate(zip(offsets, candle_path_ticks(c),
                                                 strict=True)):
                ts = c.ts + off
                if self.clock is not None:
                    ts = last = max(float(self.clock()), last)
                    opened = ts if i == 0 else opened
                # Inside a candle the path is continuous; its open may gap.
                yield Tick(sym, price, ts, vol, continuous=i > 0)
            yield CandleClosed(sym, c if self.clock is None else replace(c, ts=opened))

    def _clocked_ticks(self) -> Iterator[FeedEvent]:
        """Tick data stamped with `clock()` (a realtime demo): candles aggregated as they go."""
        assert self.clock is not None
        sym, clock = self.symbol, self.clock
        agg = CandleAggregator(self.timeframe)
        last = -math.inf
        for t in self.data.ticks:
            tick = t if t.symbol == sym else replace(t, symbol=sym)
            last = max(float(clock()), last)
            tick = replace(tick, ts=last)
            closed = agg.add(tick)
            if closed is not None:
                yield closed
            yield tick
        yield from agg.flush()

    def runs(self) -> Iterator[TickRun | CandleClosed] | None:
        """`events()` as runs — each candle's ticks as one `TickRun`, then its
        `CandleClosed` — for a tick file read a column at a time whose symbol the feed keeps
        (`_recorded_ticks`' fast case, without a clock); None for any other data (take
        `events()` then)."""
        data = self.data
        if data.kind != "ticks" or self.clock is not None or data.columns is None \
                or data.symbol != self.symbol:
            return None
        return _runs(data.ticks, data.columns, self.symbol, self.timeframe)

    def _recorded_ticks(self) -> Iterator[FeedEvent]:
        """Tick data in the data's own time: the events `CandleAggregator` makes of them,
        each candle cut from its rows when the tick that opens the next bucket arrives
        (the aggregator's test: `ts / timeframe` reaches the next bucket's index).

        A file read a column at a time (`PriceData.columns`: its times strictly increasing,
        every tick of the data's symbol) when the feed keeps that symbol: the cuts are found
        by bisection in the times and the candles made of the column slices, and the ticks
        between the cuts are handed on as slices of the data's tuple, chained by C code
        (`_runs`) — no Python step per tick: `pmgui replay` takes every row of a file
        through here. Any other tick data tick by tick (`_tick_by_tick`)."""
        data = self.data
        if data.columns is None or data.symbol != self.symbol:
            return self._tick_by_tick()
        return chain.from_iterable(map(_events_of, _runs(data.ticks, data.columns,
                                                          self.symbol, self.timeframe)))

    def _tick_by_tick(self) -> Iterator[FeedEvent]:
        """`_recorded_ticks` one tick at a time (the ticks renamed to the feed's symbol)."""
        sym, tf, ticks = self.symbol, self.timeframe, self.data.ticks
        k = math.floor(ticks[0].ts / tf)  # the bucket `ticks[start:]` fall in: [k·tf, (k+1)·tf)
        bound = k + 1.0
        start = 0
        for i, t in enumerate(ticks):
            if t.ts / tf >= bound:
                yield CandleClosed(sym, _candle_of(ticks, start, i, k * tf))
                k = math.floor(t.ts / tf)
                bound = k + 1.0
                start = i
            yield t if t.symbol == sym else replace(t, symbol=sym)
        yield CandleClosed(sym, _candle_of(ticks, start, len(ticks), k * tf))


def _runs(ticks: Sequence[Tick], columns: TickColumns, sym: str, tf: float
          ) -> Iterator[TickRun | CandleClosed]:
    """`_tick_by_tick`'s events as runs, for ticks of `sym` made of `columns`: each
    candle's ticks (a slice of `ticks`, as a `TickRun`), then its `CandleClosed`. The times
    increase, so `ts / tf` never decreases (a correctly rounded division by a positive
    number is monotonic): the first tick after a candle's first whose `ts / tf` reaches
    the next bucket's index — the one the per-tick test finds — is found by bisection."""
    ts, prices, volumes = columns
    q = list(map(truediv, ts, repeat(tf)))
    n = len(q)
    k = math.floor(q[0])
    bound = k + 1.0
    start = lo = 0
    while True:
        i = bisect_left(q, bound, lo)
        seg = prices[start:i]
        vols = volumes[start:i] if volumes is not None else None
        yield TickRun(sym, ticks[start:i], seg, vols)
        yield CandleClosed(sym, Candle(
            k * tf, seg[0], max(seg), min(seg), seg[-1],
            # the volumes summed in order, as the aggregator adds them (0.0: none in the file)
            reduce(add, vols) if vols is not None else 0.0))
        if i == n:
            return
        k = math.floor(q[i])
        bound = k + 1.0
        start, lo = i, i + 1


def _events_of(item: TickRun | CandleClosed) -> Sequence[FeedEvent]:
    """A run's ticks, or the candle close as a 1-tuple (`_recorded_ticks` chains them)."""
    return item.ticks if item.__class__ is TickRun else (item,)  # type: ignore[union-attr, return-value]


def _candle_of(ticks: Sequence[Tick], start: int, end: int, ts: float) -> Candle:
    """The candle of `ticks[start:end]` opened at `ts`, as `CandleAggregator` builds it from
    them one by one: high and low by the same comparisons (`max`/`min` keep the first of
    equal values and skip NaN as its tests do), the volume summed in order."""
    prices = [t.price for t in ticks[start:end]]
    return Candle(ts, prices[0], max(prices), min(prices), prices[-1],
                  reduce(add, [t.volume for t in ticks[start:end]]))


# --- random walk ---------------------------------------------------------------------------

REGIMES: tuple[str, ...] = ("calm", "normal", "wild")
_REGIME_VOL = {"calm": 0.5, "normal": 1.0, "wild": 2.5}
_REGIME_MEAN_SECONDS = {"calm": 600.0, "normal": 900.0, "wild": 180.0}
_REGIME_NEXT = {  # where a switch goes, with probabilities
    "calm": (("normal", 0.9), ("wild", 0.1)),
    "normal": (("calm", 0.6), ("wild", 0.4)),
    "wild": (("normal", 0.8), ("calm", 0.2)),
}
_JUMP_MEAN_SECONDS = 7200.0  # one jump per two hours on average
_REVERSION_SECONDS = 2 * 86_400.0  # weak pull back to the start level (stays realistic)
_DAY = 86_400.0

# Typical daily volatility by base asset; anything else gets the default.
DAILY_VOL: dict[str, float] = {"BTC": 0.03, "ETH": 0.04, "SOL": 0.06, "BNB": 0.035,
                               "XRP": 0.055, "DOGE": 0.065}
DEFAULT_DAILY_VOL = 0.05


def _base(symbol: str) -> str:
    return symbol.split("/")[0].upper()


@dataclass(slots=True)
class _Walker:
    """One symbol's random-walk state (mutable; private to the feed)."""

    symbol: str
    anchor: float  # start price: the level it reverts to
    price: float
    regime: str
    rng: random.Random
    daily_vol: float
    scale: float

    def step(self, dt: float) -> float:
        """Advance `dt` seconds; returns the new (unrounded) price."""
        rng = self.rng
        if rng.random() < min(1.0, dt / _REGIME_MEAN_SECONDS[self.regime]):
            u, acc = rng.random(), 0.0
            for nxt, p in _REGIME_NEXT[self.regime]:
                acc += p
                if u < acc:
                    self.regime = nxt
                    break
        sigma = self.daily_vol * self.scale * _REGIME_VOL[self.regime] * math.sqrt(dt / _DAY)
        drift = -math.log(self.price / self.anchor) * dt / _REVERSION_SECONDS
        r = drift - 0.5 * sigma * sigma + sigma * rng.gauss(0.0, 1.0)
        if rng.random() < min(1.0, dt / _JUMP_MEAN_SECONDS):
            size = self.daily_vol * self.scale * rng.uniform(0.1, 0.4)
            r += size if rng.random() < 0.5 else -size
        r = max(-0.5, min(0.5, r))  # never a one-step collapse to zero
        self.price *= math.exp(r)
        return self.price


class RandomWalkFeed:
    """A seeded, reproducible geometric random walk for several symbols.

    Per symbol: volatility regimes calm/normal/wild (×0.5/×1/×2.5 of the asset's typical
    daily volatility, Markov switching with mean durations 10/15/3 min), jumps of 0.1–0.4
    daily sigmas about every 2 hours, and a weak mean reversion to the start price (half-life
    of days) so levels stay realistic over a long session. Each symbol has its own RNG seeded
    from (seed, symbol): its path does not depend on which other symbols are walked.

    Every step emits one tick per symbol. Timestamps are `start_ts + n·tick_interval`, or
    `clock()` at generation when a clock is given (realtime: ticks carry wall time, so price
    age checks see fresh prices). Candles are aggregated at `timeframe` seconds.
    `volatility_scale` multiplies every volatility (a livelier demo).
    """

    def __init__(self, symbols: Mapping[str, float], seed: int, tick_interval: float = 1.0,
                 *, start_ts: float | None = None, clock: Callable[[], float] | None = None,
                 markets: Mapping[str, Market] | None = None,
                 daily_vol: Mapping[str, float] | None = None,
                 volatility_scale: float = 1.0, timeframe: float = 60.0) -> None:
        if not symbols:
            raise ValidationError("a random-walk feed needs at least one symbol",
                                  field="symbols")
        for sym, p in symbols.items():
            if not (isinstance(p, (int, float)) and math.isfinite(p) and p > 0):
                raise ValidationError(f"start price of {sym} must be a positive number "
                                      f"(got {p!r})", field="symbols")
        if not (math.isfinite(tick_interval) and tick_interval > 0):
            raise ValidationError(f"tick interval must be positive (got {tick_interval!r})",
                                  field="tick_interval")
        if not (math.isfinite(volatility_scale) and volatility_scale > 0):
            raise ValidationError("volatility scale must be positive", field="volatility_scale")
        self.start_prices = dict(symbols)
        self._resume: dict[str, float] = {}
        self.seed = int(seed)
        self.tick_interval: float | None = float(tick_interval)
        self.clock = clock
        now = clock() if clock is not None else time.time()
        self.start_ts = float(start_ts) if start_ts is not None else float(now)
        self.markets = dict(markets or {})
        self._vols = dict(daily_vol or {})
        self.volatility_scale = float(volatility_scale)
        self.timeframe = float(timeframe)
        CandleAggregator(self.timeframe)

    def symbols(self) -> tuple[str, ...]:
        return tuple(self.start_prices)

    def resume_from(self, prices: Mapping[str, float]) -> None:
        """Start the walk (and end the warm-up history) at these prices instead of the start
        prices — the venue's last prices after a restart, so open positions do not see a jump.
        The slow mean reversion still pulls towards the original levels. Unknown symbols and
        invalid prices are ignored; call before `events()`."""
        for sym, p in prices.items():
            if sym in self.start_prices and isinstance(p, (int, float)) and math.isfinite(p) \
                    and p > 0:
                self._resume[sym] = float(p)

    def start_price(self, symbol: str) -> float:
        """Where the walk of `symbol` begins (a resumed price, else the start price)."""
        return self._resume.get(symbol, float(self.start_prices[symbol]))

    def daily_vol(self, symbol: str) -> float:
        return self._vols.get(symbol, DAILY_VOL.get(_base(symbol), DEFAULT_DAILY_VOL))

    def _walker(self, symbol: str, salt: str = "") -> _Walker:
        p0 = float(self.start_prices[symbol])
        return _Walker(symbol=symbol, anchor=p0, price=self.start_price(symbol), regime="normal",
                       rng=random.Random(f"pmgui-walk:{self.seed}:{symbol}{salt}"),
                       daily_vol=self.daily_vol(symbol), scale=self.volatility_scale)

    def _round(self, symbol: str, price: float) -> float:
        m = self.markets.get(symbol)
        if m is not None and m.tick_size > 0:
            return max(m.round_price(price), m.tick_size)
        return float(f"{price:.8g}")

    def _volume(self, rng: random.Random, price: float, regime: str, dt: float) -> float:
        """Base-asset volume of one step: ~50k quote per second, busier in wild regimes."""
        quote = 50_000.0 * dt * _REGIME_VOL[regime] * rng.lognormvariate(0.0, 0.75)
        return float(f"{quote / price:.6g}")

    def events(self) -> Iterator[FeedEvent]:
        """Infinite: one tick per symbol per step; the first tick is the start price."""
        walkers = [self._walker(s) for s in self.start_prices]
        agg = CandleAggregator(self.timeframe)
        dt = float(self.tick_interval or 1.0)
        last_ts = -math.inf
        n = 0
        while True:
            if self.clock is not None:
                ts = max(float(self.clock()), last_ts)
            else:
                ts = self.start_ts + n * dt
            last_ts = ts
            for w in walkers:
                raw = w.price if n == 0 else w.step(dt)
                tick = Tick(w.symbol, self._round(w.symbol, raw), ts,
                            self._volume(w.rng, raw, w.regime, dt))
                closed = agg.add(tick)
                if closed is not None:
                    yield closed
                yield tick
            n += 1

    def history(self, symbol: str, n_candles: int,
                timeframe: float | None = None) -> list[Candle]:
        """`n_candles` completed warm-up candles before `start_ts`, the last closing at the
        start price, so a chart and the indicators have data on first start.

        Walked forward with the same model (12 sub-steps per candle, own RNG stream) and then
        scaled so the final close is the start price; deterministic for a seed. `timeframe`
        (seconds, default the feed's) walks candles of that length directly: a rule reading
        4h or daily candles gets its warm-up without walking every minute of it.
        """
        tf = float(timeframe) if timeframe else self.timeframe
        if symbol not in self.start_prices:
            raise ValidationError(f"{symbol} is not walked by this feed", field="symbol")
        if n_candles <= 0:
            return []
        sub = 12
        dt = tf / sub
        w = self._walker(symbol, ":history" if tf == self.timeframe else f":history{tf:g}")
        path: list[list[float]] = []
        vols: list[float] = []
        prev = w.price
        for _ in range(n_candles):
            seg = [prev]
            vol = 0.0
            for _ in range(sub):
                seg.append(w.step(dt))
                vol += self._volume(w.rng, w.price, w.regime, dt)
            prev = seg[-1]
            path.append(seg)
            vols.append(vol)
        scale = self.start_price(symbol) / path[-1][-1]
        first = bucket_start(self.start_ts, tf) - n_candles * tf
        out: list[Candle] = []
        rnd = self._round
        last = n_candles - 1
        for i, (seg, vol) in enumerate(zip(path, vols, strict=True)):
            if i == last:  # its close is the start price itself
                pts = [rnd(symbol, p * scale) for p in seg]
                pts[-1] = rnd(symbol, self.start_price(symbol))
                o, h, lo, c = pts[0], max(pts), min(pts), pts[-1]
            else:  # `_round` and the scaling never reverse an order: round the extremes
                o, c = rnd(symbol, seg[0] * scale), rnd(symbol, seg[-1] * scale)
                h, lo = rnd(symbol, max(seg) * scale), rnd(symbol, min(seg) * scale)
            out.append(Candle(first + i * tf, o, h, lo, c, float(f"{vol:.6g}")))
        return out
