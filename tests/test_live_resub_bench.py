"""pmgui.bench.live_resub measures what it says: on a small book, the stuck symbol's
connection alone is re-dialled and counted, the healthy symbols' prices are all offered and
received, the window never showed an uninterrupted symbol as down, and stale symbols are
counted as polled in one batch request (no timings asserted: only that they were taken)."""

from __future__ import annotations

import math

from pmgui.bench.live_resub import run_silent, run_stale


async def test_silent_scenario_counts_one_redial_and_no_healthy_loss() -> None:
    res = await run_silent(symbols=8, rate=80.0, window=4.0, resubscribe_after=1.0)
    assert res.connections == 8  # one symbol a connection (ccxt.pro: 50 streams)
    assert res.redialled >= 1 and res.healthy_interrupted == 0
    assert res.healthy_offered > 0 and res.healthy_unsent == 0
    assert res.healthy_received >= res.healthy_offered
    assert res.shown_down_uninterrupted == 0
    assert 0 < res.stuck_back_s < math.inf and res.all_back_s == res.stuck_back_s
    assert res.cpu_s > 0 and res.window_s >= 4.0


async def test_stale_scenario_counts_the_rest_requests() -> None:
    res = await run_stale(symbols=12)
    assert res.move_to_all_s is not None and res.move_to_all_s > 0
    assert res.rest_requests >= 1 and res.rest_per_symbol == 0
