"""How the engine's work that can wait shares the loop with the ticks that cannot.

The loop runs one task's step to its next `await` without a break: a step that does several
commits' worth of CPU holds up every tick that falls due meanwhile — a stop's crossing on its
way to being booked among them. Work that can wait (a re-placement beside the stream, whose
old order protects meanwhile; the housekeeping pass) is cut into steps that hand the loop over
with `let_due_work_first` in between.
"""

from __future__ import annotations

import asyncio


async def let_due_work_first() -> None:
    """Hand the loop over until everything that is due now has run: the ticks whose socket
    or timer is ready, a stop's fill on its way to being booked. One `sleep(0)` lets only
    what is queued already go first: the caller's continuation would run at the front of the
    next round, before the events and timers that round's poll finds; the second `sleep(0)`
    puts it behind them."""
    await asyncio.sleep(0)
    await asyncio.sleep(0)
