"""Audit of the rule-timeframe candles (DESIGN §4: indicators see completed candles of the rule's
timeframe): the forming candle seeded from the venue's partial one at start-up.

The venue's partial candle is what happened in the bucket so far, before pmgui was watching
and since; ticks pmgui saw in the bucket before the history arrived are part of it. The
candle pmgui completes must keep the venue's count of the bucket (its volume feeds scaling's
mean quote volume, seed 004's "> 100K volume"), not only the ticks pmgui happened to see.
"""

from __future__ import annotations

import pytest

from pmgui.domain.models import Candle
from pmgui.indicators.candles import CandleBuilder

H = 3600.0
B = 1_700_000_000.0 - (1_700_000_000.0 % H)  # a bucket start


def test_the_venues_partial_candle_keeps_its_volume_when_ticks_came_first():
    builder = CandleBuilder(H)
    # pmgui watched two trades of the bucket before its history (and the venue's partial
    # candle of this bucket) arrived
    assert builder.add_tick(100.0, B + 1500.0, 0.5) == []
    assert builder.add_tick(100.4, B + 1600.0, 0.25) == []
    # the venue's partial candle: the bucket since its start, those two trades included
    builder.seed_forming(Candle(B, 99.0, 101.0, 98.5, 100.3, 40.0))
    assert builder.add_tick(100.6, B + 2000.0, 1.0) == []
    [done] = builder.add_tick(100.7, B + H + 1.0, 0.1)
    assert (done.ts, done.open, done.high, done.low, done.close) == (B, 99.0, 101.0, 98.5,
                                                                    100.6)
    # the venue's 40 for the bucket so far, then the 1.0 traded after it
    assert done.volume == pytest.approx(41.0)


def test_a_seed_after_ticks_never_takes_a_smaller_count_than_the_ticks_seen():
    """A venue snapshot taken before some of the ticks pmgui saw counts less than them:
    the ticks' count stands then (a lower bound either way)."""
    builder = CandleBuilder(H)
    builder.add_tick(100.0, B + 100.0, 3.0)
    builder.seed_forming(Candle(B, 99.5, 100.5, 99.0, 100.0, 2.0))
    [done] = builder.add_tick(101.0, B + H, 0.0)
    assert done.volume == pytest.approx(3.0)
    assert (done.open, done.high, done.low) == (99.5, 100.5, 99.0)
