"""How the engine's work that can wait shares the loop with the ticks that cannot.

The loop runs one task's step to its next `await` without a break: a step that does several
commits' worth of CPU holds up every tick that falls due meanwhile — a stop's crossing on its
way to being booked among them. Work that can wait (a re-placement beside the stream, whose
old order protects meanwhile; the housekeeping pass) is cut into steps that hand the loop over
with `let_due_work_first` in between.
"""

from __future__ import annotations

import asyncio
from collections import deque


async def let_due_work_first() -> None:
    """Hand the loop over until everything that is due now has run: the ticks whose socket
    or timer is ready, a stop's fill on its way to being booked. One `sleep(0)` lets only
    what is queued already go first: the caller's continuation would run at the front of the
    next round, before the events and timers that round's poll finds; the second `sleep(0)`
    puts it behind them."""
    await asyncio.sleep(0)
    await asyncio.sleep(0)


class TurnShare:
    """At most one step per loop round among the tasks that share it.

    `let_due_work_first` puts a step behind what is due, but not behind its peers: a burst
    of re-placements beside the stream (the budget's bucket full, a market-wide move: ten
    tasks at once) resumes together, each task's step lands in the same round as the
    others', and a tick due meanwhile waits for all of them — ten steps of ~0.3 ms,
    3-6 ms that the storm saw as one stretch of the loop. Through `turn()` one of them goes
    on per round, in the order they asked; the round between two of them polls the sockets
    and runs the timers (the ticks). Nothing is dropped or reordered: a task waits for its
    turn, never longer than the rounds its peers ahead of it take.
    """

    def __init__(self) -> None:
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._taken = False  # a step was let through in the current round
        self._loop: asyncio.AbstractEventLoop | None = None

    async def turn(self) -> None:
        """Return once this task may run its step: at once when no peer ran one this round
        and none waits, else in a later round, first come first served."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a loop that ended with a turn taken hands none on
            self._loop, self._taken = loop, False
            self._waiters.clear()
        if not self._taken and not self._waiters:
            self._take()
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut in self._waiters:
                self._waiters.remove(fut)
            raise

    def _take(self) -> None:
        self._taken = True
        asyncio.get_running_loop().call_soon(self._pass)

    def _pass(self) -> None:
        # Runs behind the step just let through, in its round. What fell due during that
        # step (a tick's timer, a socket) joins the next round's queue behind what this round
        # queued, so the next peer is let through there and goes on one round later still,
        # behind it (as `let_due_work_first`'s second `sleep(0)`).
        asyncio.get_running_loop().call_soon(self._next)

    def _next(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # its task resumes in the round after this one
                self._take()
                return
        self._taken = False
