"""`let_due_work_first`: the engine's work that can wait goes behind what is due now."""

from __future__ import annotations

import asyncio

from pmgui.engine.loop import let_due_work_first


async def test_a_timer_due_now_runs_before_the_work_goes_on() -> None:
    """A timer (or a socket) found due by the loop's next poll runs first: one `sleep(0)`
    would go on at the front of that round, before it."""
    seen: list[str] = []
    asyncio.get_running_loop().call_later(0.0, seen.append, "due")
    await let_due_work_first()
    seen.append("work")
    assert seen == ["due", "work"]


async def test_what_is_queued_already_runs_before_the_work_goes_on() -> None:
    seen: list[str] = []
    asyncio.get_running_loop().call_soon(seen.append, "queued")
    await let_due_work_first()
    seen.append("work")
    assert seen == ["queued", "work"]


async def test_an_open_command_lets_due_work_run_before_placing_its_protection(
        tmp_path) -> None:
    """OpenPosition hands the loop over between the booked entry and its protective orders:
    what fell due meanwhile (a tick, another position's stop being booked) runs before the
    stop is journaled, instead of waiting for the command's whole step."""
    from pmgui.domain.enums import ActionType, OrderRole, Side
    from pmgui.domain.models import Tick
    from pmgui.engine import commands as cmd
    from pmgui.engine.events import ActionTaken
    from tests.engine_support import SYMBOL, Harness

    h = Harness(tmp_path / "o.db", [])
    await h.engine.start()
    await h.paper.deliver(Tick(SYMBOL, 60_000.0, 1_700_000_000.0), h.engine)
    seen: list[str] = []
    loop = asyncio.get_running_loop()

    def listen(ev: object) -> None:
        if isinstance(ev, ActionTaken) and ev.action.type is ActionType.OPEN:
            seen.append("booked")
            loop.call_soon(seen.append, "due work")  # falls due as the entry is booked

    h.outbox.add_listener(listen)
    journal = h.engine.ledger.journal

    def journaling(req, **kw):
        seen.append(f"journal {req.role.value}")
        return journal(req, **kw)

    h.engine.ledger.journal = journaling  # type: ignore[method-assign]
    res = await h.engine.handle(cmd.OpenPosition(SYMBOL, Side.LONG, 0.01, 10, sl=58_500.0,
                                                 tp=61_000.0))
    assert res.ok
    assert seen[:4] == ["journal entry", "booked", "due work",
                        f"journal {OrderRole.STOP_LOSS.value}"]
    h.store.close()
