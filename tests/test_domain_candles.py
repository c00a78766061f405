"""`merge_buckets`: the one way candles become coarser ones, for the paper venue's history
and the chart's timeframes."""

from __future__ import annotations

from pmgui.domain.candles import merge_buckets
from pmgui.domain.models import Candle
from pmgui.indicators import aggregate


def test_merges_open_first_close_last_extremes_and_volume():
    minute = [Candle(0.0, 10.0, 12.0, 9.0, 11.0, 1.0), Candle(60.0, 11.0, 15.0, 10.5, 14.0, 2.0),
              Candle(120.0, 14.0, 14.5, 8.0, 9.0, 3.0), Candle(180.0, 9.0, 9.5, 8.5, 9.2, 4.0),
              Candle(240.0, 9.2, 9.9, 9.1, 9.8, 5.0)]
    assert merge_buckets(minute, 180.0) == [
        Candle(0.0, 10.0, 15.0, 8.0, 9.0, 6.0),
        Candle(180.0, 9.0, 9.9, 8.5, 9.8, 9.0),  # still forming: kept
    ]


def test_keeps_the_forming_bucket_the_rules_aggregate_leaves_out():
    minute = [Candle(60.0 * k, 100.0 + k, 101.0 + k, 99.0 + k, 100.5 + k, 1.0) for k in range(7)]
    merged = merge_buckets(minute, 300.0)
    assert [c.ts for c in merged] == [0.0, 300.0]
    assert merged[:1] == aggregate(minute, 60.0, 300.0)  # the completed ones agree


def test_candles_already_that_coarse_come_back_as_they_are():
    hours = [Candle(3600.0 * k, 1.0, 2.0, 0.5, 1.5, 7.0) for k in range(3)]
    assert merge_buckets(hours, 3600.0) == hours
    assert merge_buckets([], 60.0) == []
