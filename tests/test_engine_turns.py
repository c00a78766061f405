"""`TurnShare`: of the tasks sharing it, one step per loop round — a burst of re-placements
beside the stream no longer runs all its steps in one round while a due tick waits."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from pmgui.domain.enums import OrderType, Side
from pmgui.domain.models import Market, Tick
from pmgui.engine import commands as cmd
from pmgui.engine.core import EngineCore
from pmgui.engine.loop import TurnShare
from pmgui.engine.outbox import Outbox
from pmgui.engine.settings import EngineSettings
from pmgui.exchange.paper import PaperExchange
from pmgui.store.db import Store


class _Rounds:
    """Counts the loop's rounds: a callback that re-schedules itself runs once a round."""

    def __init__(self) -> None:
        self.n = 0
        self._on = True
        asyncio.get_running_loop().call_soon(self._tick)

    def _tick(self) -> None:
        if self._on:
            self.n += 1
            asyncio.get_running_loop().call_soon(self._tick)

    def stop(self) -> None:
        self._on = False


async def test_peers_asking_together_get_their_turns_in_distinct_rounds_in_order() -> None:
    share, rounds = TurnShare(), _Rounds()
    got: list[tuple[int, int]] = []

    async def step(k: int) -> None:
        await share.turn()
        got.append((k, rounds.n))

    await asyncio.gather(*(step(k) for k in range(6)))
    rounds.stop()
    assert [k for k, _ in got] == list(range(6))  # all of them, first come first served
    at = [r for _, r in got]
    assert all(b > a for a, b in itertools.pairwise(at)), at  # never two in a round


async def test_a_timer_due_runs_between_two_turns() -> None:
    """What the storm's ticks are: a timer due now runs before the next peer's step."""
    share = TurnShare()
    seen: list[str] = []
    loop = asyncio.get_running_loop()

    async def step(k: int) -> None:
        await share.turn()
        seen.append(f"step {k}")
        loop.call_later(0.0, seen.append, f"due after {k}")

    await asyncio.gather(*(step(k) for k in range(3)))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    steps = [i for i, e in enumerate(seen) if e.startswith("step")]
    assert [seen[i] for i in steps] == ["step 0", "step 1", "step 2"]
    assert seen.index("due after 0") < steps[1] and seen.index("due after 1") < steps[2]


async def test_a_cancelled_waiter_does_not_hold_up_the_others() -> None:
    share = TurnShare()
    done: list[int] = []

    async def step(k: int) -> None:
        await share.turn()
        done.append(k)

    await share.turn()  # this round's turn is taken: the next ones wait
    tasks = [asyncio.create_task(step(k)) for k in range(4)]
    await asyncio.sleep(0)  # all four are waiting now
    tasks[1].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert done == [0, 2, 3]
    assert tasks[1].cancelled()
    await asyncio.wait_for(share.turn(), 5)  # and the share is free again afterwards


def _market(symbol: str) -> Market:
    return Market(symbol, tick_size=0.01, amount_step=0.001, min_amount=0.001, min_notional=0.0)


MOVED = [f"M{i}/USDT:USDT" for i in range(4)]
STREAM = "BBB/USDT:USDT"


async def test_a_burst_of_re_placements_takes_turns_with_the_stream_and_each_completes(
        db_path) -> None:
    """Four trailing stops move on one step of the feed (the budget's bucket is full): each
    re-placement beside the stream journals, places and cancels as before — one stop per
    position at its new level, no order lost or doubled — but their steps no longer land in
    one round: between any two of their venue calls the stream's due tick is taken."""
    store = Store.open(db_path)
    symbols = [*MOVED, STREAM]
    paper = PaperExchange({s: _market(s) for s in symbols}, None, realtime=True, db=store.db,
                          balance=1e9)
    settings = EngineSettings(default_preset="manual", protect_throttle=0.0,
                              overrides={"trailing.enabled": True, "trailing.mode": "fixed",
                                         "trailing.distance": 0.01})
    engine = EngineCore(paper, store, Outbox(), settings)
    await engine.start()
    for s in symbols:
        await paper.deliver(Tick(s, 100.0, time.time()), engine)
        await engine.handle(cmd.OpenPosition(s, Side.LONG, 1.0, 5, sl=95.0, tp=150.0))
    await engine.protector.settle_background()
    seen: list[str] = []
    create, cancel, journal = paper.create_order, paper.cancel_order, engine.ledger.journal

    async def logged_create(req):
        seen.append(f"create {req.symbol}")
        return await create(req)

    async def logged_cancel(order):
        seen.append(f"cancel {order.symbol}")
        return await cancel(order)

    def logged_journal(req, **kw):
        seen.append(f"journal {req.symbol}")
        return journal(req, **kw)

    paper.create_order = logged_create  # type: ignore[method-assign]
    paper.cancel_order = logged_cancel  # type: ignore[method-assign]
    engine.ledger.journal = logged_journal  # type: ignore[method-assign]
    streaming = True

    async def stream() -> None:  # under its best price: its stop stays
        while streaming:
            await paper.deliver(Tick(STREAM, 99.9, time.time()), engine)
            seen.append("tick")
            await asyncio.sleep(0)

    streamer = asyncio.create_task(stream())
    for s in MOVED:  # one step of the feed: every trailing stop moves at once
        await paper.deliver(Tick(s, 104.0, time.time()), engine)
    await engine.protector.settle_background()
    streaming = False
    await streamer
    calls = [e for e in seen if e != "tick"]
    for s in MOVED:  # each re-placement complete and in its order: journal, place, cancel
        assert [c for c in calls if c.endswith(s)] == [f"journal {s}", f"create {s}",
                                                       f"cancel {s}"]
        stops = sorted(o.trigger_price for o in await paper.fetch_open_orders(s)
                       if o.type is OrderType.STOP_MARKET)
        assert stops == [pytest.approx(104.0 * 0.99)]
    for a, b in itertools.pairwise(seen):
        if a != "tick" and b != "tick" and a.split()[1] != b.split()[1]:
            pytest.fail(f"two re-placements' steps in one round: {a!r} then {b!r} ({seen})")
    await engine.shutdown()


def test_a_loop_that_ended_with_a_turn_taken_does_not_hold_up_the_next_one() -> None:
    """The round that would have handed the turn on never comes once its loop is gone."""
    share = TurnShare()

    async def take() -> None:
        await share.turn()  # taken; the hand-on is scheduled on this loop, which then ends

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(take())  # stops in the round of the turn: no hand-on ran
    finally:
        loop.close()
    asyncio.run(asyncio.wait_for(share.turn(), 5))
