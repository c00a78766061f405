"""The memory rows measure what they say: the engine's bytes per position told apart from its
symbol's market data (loaded at open by the warm-up) and from the paper venue's own book.
Sizes only as relations, never as figures."""

from __future__ import annotations

from pmgui.bench.misc import bytes_per_position


def test_bytes_per_position_tells_the_market_data_and_the_venue_apart():
    b = bytes_per_position(4, 20)
    assert b.bare > 0
    assert b.own > b.bare  # the book, the runtime and the orders beside the values
    # the warm-ups were waited for: each symbol's candles and indicator sets are in
    assert b.market > 0
    assert b.venue > 0  # the paper venue's orders and positions
    assert b.engine == b.own + b.market and b.with_venue == b.engine + b.venue
