"""The journal cannot be written (disk full, I/O error): nothing is sent, and the trader is
told (DESIGN §6 "an intended order is journaled and synced before it is sent"; the brief of
§2: a command's result and the events tell the truth).

The failure is made real inside SQLite: a trigger that aborts every insert into the
journal's tables with SQLite's own error, as a full disk would abort the write. The paper
venue keeps its own tables in the same file and is not affected."""

from __future__ import annotations

from pathlib import Path

from pmgui.domain.models import Tick
from pmgui.engine.events import ErrorEvent
from pmgui.engine.settings import EngineSettings
from tests.engine_support import SYMBOL, one_long_open

FAIL = ("CREATE TRIGGER {t}_fails BEFORE INSERT ON {t} "
        "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")


async def test_a_rule_close_the_journal_refuses_is_not_sent_and_is_told(
        tmp_path: Path) -> None:
    """A local stop crossed while the journal cannot be written: no close is sent, the
    trader gets an error saying so, and the engine goes on taking ticks (the venue's stream
    is not ended by the failure)."""
    h, rt = await one_long_open(tmp_path / "full.db", EngineSettings(
        default_preset="manual", protect_throttle=0.0, protect_on_exchange=False))
    for table in ("actions", "orders"):
        h.store.db.conn.execute(FAIL.format(t=table))
    seen = len(h.events)
    await h.paper.deliver(Tick(SYMBOL, 58_400.0, 1_700_000_010.0), h.engine)  # below the SL
    await h.paper.deliver(Tick(SYMBOL, 58_300.0, 1_700_000_011.0), h.engine)
    assert h.engine.market.price(SYMBOL) == 58_300.0
    errors = [e for e in h.events[seen:] if isinstance(e, ErrorEvent)]
    assert errors, "the trader was not told"
    assert all(e.position_id == rt.id for e in errors)
    assert "cannot be written" in errors[0].message
    assert "nothing was sent" in errors[0].message
    assert len(errors) == 1  # told once, not on every tick that tries again
    assert [p.qty for p in await h.paper.fetch_positions()] == [0.01]  # nothing sent
    assert rt.position.is_open


async def test_levels_written_behind_that_cannot_be_written_are_told_and_kept(
        tmp_path: Path) -> None:
    """A trailing stop's moves are written behind; when that write fails, the ticks go on,
    the trader is told, and the moves wait to be written once the disk has room."""
    settings = EngineSettings(default_preset="manual", protect_throttle=0.0,
                              protect_on_exchange=False, write_behind=0.0,
                              overrides={"trailing.enabled": True, "trailing.mode": "fixed",
                                         "trailing.distance": 0.01})
    h, rt = await one_long_open(tmp_path / "full.db", settings)
    h.store.db.conn.execute(FAIL.format(t="actions"))
    seen = len(h.events)
    prices = [60_000.0 + 100.0 * i for i in range(1, 6)] + [60_450.0] * 3  # then no move:
    for i, price in enumerate(prices):  # the tick path writes what waits behind
        await h.paper.deliver(Tick(SYMBOL, price, 1_700_000_010.0 + i), h.engine)
    assert h.engine.market.price(SYMBOL) == 60_450.0
    moved = rt.position.sl
    assert moved == 60_500.0 * 0.99
    errors = [e for e in h.events[seen:] if isinstance(e, ErrorEvent)]
    assert len(errors) == 1 and "cannot be written" in errors[0].message
    assert h.store.behind  # kept for the next window
    h.store.db.conn.execute("DROP TRIGGER actions_fails")  # room again
    await h.paper.deliver(Tick(SYMBOL, 60_440.0, 1_700_000_030.0), h.engine)
    assert not h.store.behind
    assert len([a for a in h.store.actions(rt.id) if a["type"] == "move_sl"]) == 5
