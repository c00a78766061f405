"""A rule's stop move re-places the exchange order beside the stream, not in the tick path.

Journaling the new order (its fsync), the venue's answer and the cancel of the old one hold up
only the moved position; every other symbol's ticks go on meanwhile, and the old order keeps
protecting until the new one is acknowledged. (In simulated time — replay — the re-placement
stays in line: `test_engine_paper.test_fixed_trailing_ratchets_and_moves_exchange_stop`.)
"""

from __future__ import annotations

import asyncio
import time

import pytest

from pmgui.domain.enums import OrderType, Side
from pmgui.domain.models import Market, Tick
from pmgui.engine import commands as cmd
from pmgui.engine.core import EngineCore
from pmgui.engine.outbox import Outbox
from pmgui.engine.settings import EngineSettings
from pmgui.exchange.paper import PaperExchange
from pmgui.store.db import Store

A, B = "AAA/USDT:USDT", "BBB/USDT:USDT"


def _market(symbol: str) -> Market:
    return Market(symbol, tick_size=0.01, amount_step=0.001, min_amount=0.001, min_notional=0.0)


async def _stops(paper: PaperExchange, symbol: str) -> list[float]:
    return sorted(o.trigger_price for o in await paper.fetch_open_orders(symbol)
                  if o.type is OrderType.STOP_MARKET)


async def _two_trailing_longs(db_path) -> tuple[EngineCore, PaperExchange]:
    """The engine over the paper venue in real time: a long at 100 on A and on B, each with
    its stop at 95 on the venue and a 1 % fixed trail."""
    store = Store.open(db_path)
    paper = PaperExchange({A: _market(A), B: _market(B)}, None, realtime=True, db=store.db,
                          balance=1e9)
    settings = EngineSettings(default_preset="manual", protect_throttle=0.0,
                              overrides={"trailing.enabled": True, "trailing.mode": "fixed",
                                         "trailing.distance": 0.01})
    engine = EngineCore(paper, store, Outbox(), settings)
    await engine.start()
    for s in (A, B):
        await paper.deliver(Tick(s, 100.0, time.time()), engine)
        await engine.handle(cmd.OpenPosition(s, Side.LONG, 1.0, 5, sl=95.0, tp=150.0))
    return engine, paper


async def test_a_trailing_move_is_re_placed_beside_the_stream(db_path):
    engine, paper = await _two_trailing_longs(db_path)
    assert await _stops(paper, A) == [95.0]

    gate = asyncio.Event()  # the venue's answer to the new order waits for the test
    create = paper.create_order

    async def slow_create(req):
        await gate.wait()
        return await create(req)

    paper.create_order = slow_create  # type: ignore[method-assign]
    await asyncio.wait_for(paper.deliver(Tick(A, 104.0, time.time()), engine), 10)
    moved = engine.positions[engine.book.find(A, Side.LONG).id].sl
    assert moved == pytest.approx(104.0 * 0.99)
    # The re-placement of A's stop waits for the venue; B's ticks are taken meanwhile.
    for price in (100.5, 100.7, 100.9):
        await asyncio.wait_for(paper.deliver(Tick(B, price, time.time()), engine), 10)
    assert engine.market.price(B) == 100.9
    assert await _stops(paper, A) == [95.0]  # the old stop protects until then
    gate.set()
    await engine.protector.settle_background()
    assert await _stops(paper, A) == [pytest.approx(moved)]  # new first, then the old cancelled
    await engine.shutdown()


async def test_a_re_placement_beside_the_stream_lets_due_ticks_in_between_its_venue_calls(
        db_path):
    """Each venue call of a re-placement is a commit or two of CPU: a tick that is due
    meanwhile (here B's, streaming all along) is taken between placing the new stop and
    cancelling the old one, not only once the whole re-placement is done."""
    engine, paper = await _two_trailing_longs(db_path)
    await paper.deliver(Tick(B, 99.9, time.time()), engine)  # B's stop trails to 99 once
    await engine.protector.settle_background()
    seen: list[str] = []
    create, cancel = paper.create_order, paper.cancel_order

    async def logged_create(req):
        seen.append(f"create {req.symbol} {req.role.value}")
        return await create(req)

    async def logged_cancel(order):
        seen.append(f"cancel {order.symbol} {order.role.value}")
        return await cancel(order)

    paper.create_order = logged_create  # type: ignore[method-assign]
    paper.cancel_order = logged_cancel  # type: ignore[method-assign]
    streaming = True

    async def stream_b() -> None:  # under B's best price: its stop stays
        while streaming:
            await paper.deliver(Tick(B, 99.9, time.time()), engine)
            seen.append("tick B")
            await asyncio.sleep(0)

    stream = asyncio.create_task(stream_b())
    await paper.deliver(Tick(A, 104.0, time.time()), engine)  # A's trailing stop moves
    await engine.protector.settle_background()
    streaming = False
    await stream
    calls = [e for e in seen if e != "tick B"]
    assert calls == [f"create {A} stop_loss", f"cancel {A} stop_loss"]
    placed, cancelled = seen.index(calls[0]), seen.index(calls[1])
    assert "tick B" in seen[placed:cancelled]
    assert await _stops(paper, A) == [pytest.approx(104.0 * 0.99)]
    await engine.shutdown()


async def test_an_open_lets_due_ticks_in_between_its_stop_and_its_take_profit(db_path):
    """An open places its stop and take-profit in line (the command waits for them), but
    the stream goes on beside it: a tick that is due meanwhile (here B's) is taken between
    the stop's answer and the take-profit's journal, not only once both are placed."""
    store = Store.open(db_path)
    paper = PaperExchange({A: _market(A), B: _market(B)}, None, realtime=True, db=store.db,
                          balance=1e9)
    engine = EngineCore(paper, store, Outbox(), EngineSettings(default_preset="manual"))
    await engine.start()
    await paper.deliver(Tick(B, 100.0, time.time()), engine)
    await engine.handle(cmd.OpenPosition(B, Side.LONG, 1.0, 5, sl=95.0, tp=150.0))
    seen: list[str] = []
    create, journal = paper.create_order, engine.ledger.journal

    async def logged_create(req):
        result = await create(req)
        seen.append(f"answered {req.symbol} {req.role.value}")
        return result

    def logged_journal(req, **kw):
        seen.append(f"journal {req.symbol} {req.role.value}")
        return journal(req, **kw)

    paper.create_order = logged_create  # type: ignore[method-assign]
    engine.ledger.journal = logged_journal  # type: ignore[method-assign]
    streaming = True

    async def stream_b() -> None:
        while streaming:
            await paper.deliver(Tick(B, 99.9, time.time()), engine)
            seen.append("tick B")
            await asyncio.sleep(0)

    stream = asyncio.create_task(stream_b())
    await paper.deliver(Tick(A, 100.0, time.time()), engine)
    await engine.handle(cmd.OpenPosition(A, Side.SHORT, 1.0, 5, sl=105.0, tp=90.0))
    streaming = False
    await stream
    calls = [e for e in seen if e != "tick B"]
    assert calls == [f"journal {A} entry", f"answered {A} entry",
                     f"journal {A} stop_loss", f"answered {A} stop_loss",
                     f"journal {A} take_profit", f"answered {A} take_profit"]
    stop_answered = seen.index(f"answered {A} stop_loss")
    assert "tick B" in seen[stop_answered:seen.index(f"journal {A} take_profit")]
    await engine.shutdown()
