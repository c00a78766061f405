"""How the paper venue hands its feed's events to the sink (`PaperExchange.deliver`).

A calm tick — nothing queued, no order matched, its symbol wanted — is taken by the venue
when `deliver` is called, and the sink's own `on_tick` coroutine is what the caller
awaits: one coroutine per tick, not the venue's wrapped around the sink's (`pmgui replay`
delivers every row of a file this way). Everything else goes through the venue's own
coroutine, in the same order as before: queued updates, then the matched orders'
updates, then the tick."""

from __future__ import annotations

from pmgui.domain.enums import OrderType
from pmgui.domain.models import Candle, Tick
from pmgui.exchange.feeds import CandleClosed
from tests.paper_support import BTC, RecordingSink, req, venue

T0 = 1_700_000_000.0


async def test_a_calm_tick_is_delivered_as_the_sinks_own_coroutine() -> None:
    ex, sink = venue(), RecordingSink()
    await ex.deliver(Tick(BTC, 99.0, T0 - 1), sink)  # the first loads the venue
    sink.calls.clear()
    tick = Tick(BTC, 100.0, T0)
    delivered = ex.deliver(tick, sink)
    assert delivered.cr_code is RecordingSink.on_tick.__code__
    assert ex._last[BTC] is tick  # the venue's part: done when called
    assert sink.calls == []
    await delivered
    assert sink.calls == [("tick", tick)]


async def test_ticks_that_are_not_calm_keep_their_order_and_drops() -> None:
    ex, sink = venue(), RecordingSink()
    await ex.deliver(Tick(BTC, 100.0, T0), sink)
    await ex.create_order(req("s1", "sell", OrderType.STOP_MARKET, amount=0.1,
                              trigger_price=90.0, reduce_only=False))
    queued = list(ex._pending)
    assert queued  # the new order's update waits for the next event
    calm = Tick(BTC, 95.0, T0 + 1)
    await ex.deliver(calm, sink)
    assert sink.calls[1:] == [*[("update", u) for u in queued], ("tick", calm)]
    sink.calls.clear()
    through = Tick(BTC, 89.0, T0 + 2)  # triggers the stop: its fill, then the tick
    await ex.deliver(through, sink)
    assert [c[0] for c in sink.calls] == ["update", "tick"]
    assert sink.calls[0][1].order.client_id == "s1" and sink.calls[-1] == ("tick", through)
    sink.calls.clear()
    for dropped in (Tick(BTC, float("nan"), T0 + 3), Tick(BTC, -1.0, T0 + 3),
                    Tick("NOPE/USDT:USDT", 100.0, T0 + 3)):
        await ex.deliver(dropped, sink)
    candle = Candle(T0, 100.0, 101.0, 88.0, 89.0)
    await ex.deliver(CandleClosed(BTC, candle), sink)
    assert sink.calls == [("candle", BTC, candle, True)]


async def test_a_venue_without_a_database_keeps_no_prices_to_write() -> None:
    """The once-a-second price write's set of symbols that ticked is kept only with a
    database to write them to (a replay's venue has none)."""
    ex, sink = venue(), RecordingSink()
    for i in range(3):
        await ex.deliver(Tick(BTC, 100.0 + i, T0 + i), sink)
    assert ex._prices_dirty == set()
    assert ex._last[BTC].price == 102.0
