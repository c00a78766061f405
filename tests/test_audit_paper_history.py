"""Audit of the paper venue's candle history (DESIGN §4 indicators, §7 chart): a coarse
timeframe's warm-up joins the venue's own finer candles without a jump that never traded
(a fake gap is a wrong true range in ATR, a wrong chandelier stop, a false chart)."""

from __future__ import annotations

import itertools

from pmgui.exchange.demo import DEMO_MARKETS, demo_feed
from pmgui.exchange.paper import PaperExchange

BTC = "BTC/USDT:USDT"


async def test_hourly_history_after_the_minute_warm_up_has_no_fake_gap():
    feed = demo_feed(7, realtime=False, start_ts=1_700_000_000.0)
    ex = PaperExchange(dict(DEMO_MARKETS), feed, realtime=False)
    await ex.connect()
    minutes = await ex.fetch_ohlcv(BTC, "1m", 500)  # the chart's and the rules' first read
    hours = await ex.fetch_ohlcv(BTC, "1h", 30)
    assert len(hours) == 30 and hours[-1].close == minutes[-1].close == 87_500.0
    assert all(b.ts - a.ts == 3600 for a, b in itertools.pairwise(hours))
    # each hour opens where the one before closed (the walk is continuous), to a tick's
    # rounding; the seam between the coarse warm-up and the merged minutes was a 11 % jump
    tick = DEMO_MARKETS[BTC].tick_size
    jumps = [(a.ts, a.close, b.open) for a, b in itertools.pairwise(hours)
             if abs(b.open - a.close) > 2 * tick]
    assert jumps == []
    # the merged minutes themselves are the venue's own candles, unchanged
    first_own = next(h for h in hours if h.ts >= minutes[0].ts - 3600 and
                     h.ts <= minutes[0].ts)
    assert first_own.open == minutes[0].open
    assert all(c.low <= min(c.open, c.close) and c.high >= max(c.open, c.close)
               for c in hours)


async def test_a_longer_request_extends_the_past_it_served_instead_of_inventing_another():
    feed = demo_feed(7, realtime=False, start_ts=1_700_000_000.0)
    ex = PaperExchange(dict(DEMO_MARKETS), feed, realtime=False)
    await ex.connect()
    tick = DEMO_MARKETS[BTC].tick_size
    # the rules load 300 hourly candles; the chart then asks one more (its forming candle)
    rules = await ex.fetch_ohlcv(BTC, "1h", 300)
    chart = await ex.fetch_ohlcv(BTC, "1h", 301)
    assert chart[1:] == rules  # the same past, one candle further back
    # minutes: the 500 kept at the first read, then a longer window
    short = await ex.fetch_ohlcv(BTC, "1m", 500)
    long = await ex.fetch_ohlcv(BTC, "1m", 1200)
    assert len(long) == 1200 and long[-500:] == short
    for series in (chart, long):
        assert [(a.ts, a.close, b.open) for a, b in itertools.pairwise(series)
                if abs(b.open - a.close) > 2 * tick] == []
