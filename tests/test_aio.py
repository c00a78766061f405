"""pmgui.aio: waits that keep a cancel."""

from __future__ import annotations

import asyncio

import pytest

from pmgui.aio import wait_event


async def _cancelled_as_the_event_is_set(wait) -> bool:
    """Whether a task waiting with `wait(event, timeout)` ends cancelled when its cancel and
    the event come in the same loop round (the paper venue's stream stopped as an order
    update woke it)."""
    ev = asyncio.Event()
    task = asyncio.ensure_future(wait(ev, 10.0))
    await asyncio.sleep(0)  # the task waits
    ev.set()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        return True
    return False


async def test_wait_event_keeps_a_cancel_that_comes_with_the_event():
    assert await _cancelled_as_the_event_is_set(wait_event)


async def test_wait_event_says_whether_the_event_came():
    ev = asyncio.Event()
    assert await wait_event(ev, 0.0) is False
    asyncio.get_running_loop().call_soon(ev.set)
    assert await wait_event(ev, 30.0) is True


@pytest.mark.skipif(__import__("sys").version_info >= (3, 12),
                    reason="wait_for keeps the cancel from Python 3.12 on")
async def test_wait_for_loses_that_cancel_on_python_3_11():
    """Why wait_event exists: asyncio.wait_for returns the finished wait instead."""
    async def wait_for(ev: asyncio.Event, timeout: float) -> None:
        await asyncio.wait_for(ev.wait(), timeout)

    assert not await _cancelled_as_the_event_is_set(wait_for)
