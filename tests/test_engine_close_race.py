"""A close the engine decided races the exchange's own stop (issue 9, the crash loop's
"ReduceOnly Order is rejected").

A trailing stop moved locally; the exchange still holds the old stop (its re-placement is in
flight, or held back by the throttle). The price crosses the new level: the engine closes at
market — it looked the old stop up (open) and the position up (held) first. The market keeps
falling through the old stop, which fills on the venue in the instant between that lookup and
the close reaching it: the venue refuses the reduce-only close (nothing left to reduce).

What the trader must see is the truth: the position was closed by its stop on the exchange —
the stop's fill booked once (not lost, not twice when the stream reports it late), no "close
failed", no order left on the venue, no close re-sent. Real paper venue and engine; the venue's
stream is held back (its reports recorded and delivered late) to make the interleaving exact.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from pmgui.domain.enums import ActionType, OrderRole, OrderStatus, OrderType, Side
from pmgui.domain.errors import InvalidOrder
from pmgui.domain.models import Market, Tick
from pmgui.engine import commands as cmd
from pmgui.engine.core import EngineCore
from pmgui.engine.events import ActionTaken, ErrorEvent
from pmgui.engine.outbox import Outbox
from pmgui.engine.settings import EngineSettings
from pmgui.exchange.paper import PaperExchange
from pmgui.store.db import Store
from tests.paper_support import RecordingSink

A = "AAA/USDT:USDT"


async def _trailing_long(db_path, throttle: float) -> tuple[EngineCore, PaperExchange, Outbox]:
    store = Store.open(db_path)
    market = Market(A, tick_size=0.01, amount_step=0.001, min_amount=0.001, min_notional=0.0)
    paper = PaperExchange({A: market}, None, realtime=True, db=store.db, balance=1e9)
    settings = EngineSettings(default_preset="manual", protect_throttle=throttle,
                              overrides={"trailing.enabled": True, "trailing.mode": "fixed",
                                         "trailing.distance": 0.01})
    outbox = Outbox()
    engine = EngineCore(paper, store, outbox, settings)
    await engine.start()
    await paper.deliver(Tick(A, 100.0, time.time()), engine)
    await engine.handle(cmd.OpenPosition(A, Side.LONG, 1.0, 5, sl=95.0, tp=150.0))
    return engine, paper, outbox


async def _race(db_path, in_flight: bool):
    """The race, played exactly: returns (engine, paper, events, position id, old stop, the
    orders the engine sent)."""
    engine, paper, outbox = await _trailing_long(db_path, throttle=0.0 if in_flight else 600.0)
    pid = engine.book.find(A, Side.LONG).id
    old_stop = next(o for o in engine.orders.values() if o.role is OrderRole.STOP_LOSS)
    outbox.drain()

    gate = asyncio.Event()
    late = RecordingSink()  # the venue's stream while the close is on its way: held back
    sent: list[str] = []
    create = paper.create_order

    async def venue_create(req):
        sent.append(f"{req.type.value} {req.role.value}")
        if req.type is OrderType.STOP_MARKET:
            await gate.wait()  # the new stop's create is in flight
        if req.type is OrderType.MARKET and req.reduce_only:
            # between the engine's lookup and its close reaching the venue, the market
            # falls through the old stop: the venue fills it (its report is on its way)
            await paper.deliver(Tick(A, 94.0, time.time()), late)
        return await create(req)

    paper.create_order = venue_create  # type: ignore[method-assign]

    await paper.deliver(Tick(A, 104.0, time.time()), engine)  # the stop trails to 102.96
    assert engine.positions[pid].sl == pytest.approx(102.96)
    # the price falls under the new level (the venue's last price: 102.5)
    await paper.deliver(Tick(A, 102.5, time.time()), engine)
    if in_flight:
        # the tick waited for the re-placement; the venue refuses the new stop (through the
        # price already) and the re-placement closes at market
        gate.set()
        await engine.protector.settle_background()
    await asyncio.sleep(0)
    # the lookup after the refusal found the stop filled (by its client id) and booked it,
    # before the stream said anything
    assert pid not in engine.positions
    for update in late.updates():  # the stream's reports arrive after all
        await engine.on_order_update(update)
    await paper.flush(engine)

    return engine, paper, outbox.drain(), pid, old_stop, sent


@pytest.mark.parametrize("how", ["re-placement in flight", "re-placement throttled"])
async def test_a_close_refused_because_the_old_stop_filled_first_books_the_stop(db_path, how):
    engine, paper, events, pid, old_stop, sent = await _race(
        db_path, in_flight=how == "re-placement in flight")
    errors = [e.message for e in events if isinstance(e, ErrorEvent)]
    assert errors == []  # no "close failed": the stop did close it
    assert sent.count(f"{OrderType.MARKET.value} {OrderRole.REDUCE.value}") == 1  # not re-sent
    pos = engine.store.load_position(pid)
    assert pos is not None and not pos.is_open
    assert pos.exit_price == pytest.approx(94.0, abs=0.1)  # the stop's fill (a gap: at 94)
    assert pos.exit_reason == "trailing_stop"
    fills = engine.store.fills(pid)
    closing = [f for f in fills if f.order_client_id == old_stop.client_id]
    assert len(closing) == 1 and closing[0].qty == pytest.approx(1.0)  # booked once
    assert len(fills) == 2  # the entry and the stop: no fill of a close, no duplicate
    # booked once on the position: the entry's fee, the stop's loss and its fee
    entry = fills[0]
    assert pos.realized_pnl == pytest.approx(
        (closing[0].price - entry.price) - entry.fee - closing[0].fee, abs=1e-6)
    # the close the engine decided is reported as what it was: not needed, the stop closed it
    taken = [e for e in events if isinstance(e, ActionTaken)
             and e.action.type is ActionType.CLOSE and e.action.rule != "exchange"]
    assert len(taken) == 1 and taken[0].ok, taken
    assert "stop" in taken[0].detail and "closed" in taken[0].detail, taken[0].detail
    # the stop's own close is in the log once
    by_venue = [e for e in events if isinstance(e, ActionTaken) and e.action.rule == "exchange"]
    assert len(by_venue) == 1
    # nothing left: no position, no order on the venue, nothing live in the ledger
    assert await paper.fetch_positions() == []
    assert await paper.fetch_open_orders(A) == []
    assert not [o for o in engine.orders.values() if o.status is OrderStatus.OPEN]
    assert pid not in engine.positions
    await engine.shutdown()


async def test_a_late_stream_report_after_a_lookup_does_not_duplicate_the_fill(db_path):
    """The lookup after the refusal books the stop's fill from the order (a synthesized
    fill record); the stream's report with the venue's own fill record comes after: the
    position is booked once, and its fills list the stop's exit once."""
    engine, _, _, pid, old_stop, _ = await _race(db_path, in_flight=True)
    closing = [f for f in engine.store.fills(pid) if f.order_client_id == old_stop.client_id]
    assert len(closing) == 1, closing
    await engine.shutdown()


async def test_a_close_refused_while_the_venue_still_holds_the_position_fails_loudly(db_path):
    """The other side of the rule: a refusal the lookup does not explain (the venue still
    holds the position) is the close failing, and the trader is told so; nothing is
    re-sent."""
    engine, paper, outbox = await _trailing_long(db_path, throttle=600.0)
    pid = engine.book.find(A, Side.LONG).id
    create = paper.create_order
    sent: list[str] = []

    async def refusing_create(req):
        sent.append(req.type.value)
        if req.type is OrderType.MARKET and req.reduce_only:
            raise InvalidOrder("the venue refuses: market closed for maintenance")
        return await create(req)

    paper.create_order = refusing_create  # type: ignore[method-assign]
    outbox.drain()
    await paper.deliver(Tick(A, 104.0, time.time()), engine)
    await paper.deliver(Tick(A, 102.5, time.time()), engine)  # the local stop: a close
    events = outbox.drain()
    errors = [e.message for e in events if isinstance(e, ErrorEvent)]
    assert len(errors) == 1 and "trailing_stop failed" in errors[0], errors
    taken = [e for e in events if isinstance(e, ActionTaken)
             and e.action.type is ActionType.CLOSE]
    assert len(taken) == 1 and not taken[0].ok
    assert sent.count(OrderType.MARKET.value) == 1
    assert pid in engine.positions and engine.positions[pid].is_open
    await engine.shutdown()
