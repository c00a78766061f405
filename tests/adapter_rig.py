"""The ccxt adapter (binanceusdm) running over the local Binance emulator (the `server`
fixture of tests/conftest.py) with a recording sink: what the adapter's stream, storm-path
and health tests share."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from pmgui.exchange.ccxt_adapter import AdapterSettings, CcxtExchange
from pmgui.exchange.retry import Backoff
from tests.binance_rig import BTC
from tests.fakes.recording_sink import RecordingSink

# short timings: a silent stream is found, and REST polled, within about a second
FAST_STREAMS = AdapterSettings(stale_after=0.6, poll_interval=0.2, resubscribe_after=1.5,
                               order_poll_interval=0.3, supervisor_interval=0.05,
                               order_stream_check=0.1, backoff=Backoff(0.05, 2.0, 0.3, 0.0))


@contextlib.asynccontextmanager
async def running(ex: CcxtExchange, prices: bool = True
                  ) -> AsyncIterator[tuple[CcxtExchange, RecordingSink]]:
    """`ex` connected, subscribed to BTC and running into a RecordingSink, once its order
    stream (and, unless `prices` is False, its price stream) says it is up; the run is
    cancelled and `ex` closed after."""
    await ex.connect()
    ex.subscribe([BTC])
    sink = RecordingSink()
    task = asyncio.create_task(ex.run(sink))
    try:
        await sink.wait_for(lambda: sink.connections and sink.connections[-1].orders
                            and (sink.connections[-1].market_data or not prices))
        yield ex, sink
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await ex.close()
