"""asyncio helpers shared by the engine and the venues."""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait until `event` is set or `timeout` seconds pass; True if it was set.

    Not `asyncio.wait_for(event.wait(), timeout)`: on Python 3.11 that swallows a cancel of
    the caller which arrives as the event is set (it returns the finished wait's result; fixed
    in 3.12). The paper venue's stream waits like this between its time steps, so a stop that
    cancelled it at that instant was lost: the stream ran on and the engine's shutdown waited
    for it for good (seen as a 30 s stop and no error reported)."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait((waiter,), timeout=timeout)
    finally:
        waiter.cancel()
    return event.is_set()
