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
