"""A position's changed peaks are written behind every `save_interval`, and in a book too
large for that within `save_budget` saves a second, as often as the budget allows
(`EngineCore.save_every`): the writes a tick pays for do not grow with the book."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from pmgui.domain.enums import PositionStatus, Side
from pmgui.domain.models import Position, Tick
from pmgui.engine.runtime import PositionRuntime
from pmgui.engine.settings import EngineSettings
from tests.engine_support import SYMBOL, Harness, one_long_open

T0 = 1_700_000_000.0


def _settings(budget: float) -> EngineSettings:
    return EngineSettings(default_preset="manual", protect_throttle=0.0, save_interval=5.0,
                          save_budget=budget)


def _saved_best(h: Harness, pid: str) -> float | None:
    h.store.flush_behind()
    row = h.store.db.conn.execute("SELECT best_price FROM positions WHERE id = ?",
                                  (pid,)).fetchone()
    return row[0]


@pytest.mark.parametrize(("budget", "every"), [(100.0, 5.0), (0.5, 6.0), (0.0, 5.0),
                                               (math.inf, 5.0)])
def test_save_every_is_the_interval_until_the_budget_cannot_keep_it(
        tmp_path: Path, budget: float, every: float) -> None:
    """Three positions: 5 s while 3 / budget <= 5 s; at 0.5 saves a second saving them all
    takes 6 s; 0 (no budget) and inf keep the interval."""
    h = Harness(tmp_path / "x.db", [], _settings(budget))
    for i in range(3):
        h.engine.book.add(PositionRuntime(Position(f"P{i}", SYMBOL, Side.LONG, 100.0, 1.0,
                                                   1.0, 100.0, T0,
                                                   status=PositionStatus.OPEN), {}))
    assert h.engine.save_every() == pytest.approx(every)
    h.store.close()


@pytest.mark.parametrize(("budget", "due"), [(100.0, 5.0), (0.1, 10.0)])
async def test_changed_peaks_are_saved_once_save_every_has_passed(
        tmp_path: Path, budget: float, due: float) -> None:
    """A new best price changes the position; its row follows once `save_every()` has
    passed since it was saved (at the open): at 5 s with the default budget, at 10 s when
    the budget allows one position a save every 10 s — and not before."""
    h, rt = await one_long_open(tmp_path / "x.db", _settings(budget), at=T0)
    engine = h.engine
    assert rt.saved is rt.position and rt.saved_at == T0
    best = 60_400.0
    await h.paper.deliver(Tick(SYMBOL, best, T0 + 1), engine)
    assert rt.position.best_price == best and rt.saved is not rt.position
    # ticks before the position is due leave the row as saved at the open
    for t in (2.0, 4.5, due - 0.5):
        await h.paper.deliver(Tick(SYMBOL, best - 1.0, T0 + t), engine)
        assert rt.saved is not rt.position, t
    assert _saved_best(h, rt.id) != best
    await h.paper.deliver(Tick(SYMBOL, best - 1.0, T0 + due + 0.5), engine)
    assert rt.saved is rt.position and rt.saved_at == T0 + due + 0.5
    assert _saved_best(h, rt.id) == best
    await engine.shutdown()
