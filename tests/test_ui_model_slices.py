"""An update of many rows is applied a slice per event-loop turn (PositionsModel.apply_later):
no row lost, the newest snapshot wins, the view is told of every slice, and sorting stays
consistent while an update is partly applied."""

from __future__ import annotations

from collections import deque

import pytest
from PySide6.QtCore import Qt

from pmgui.ui.positions_model import (
    ID_ROLE,
    SORT_ROLE,
    PositionsModel,
    PositionsProxy,
    column_index,
)
from tests.ui_doubles import T0, EngineDouble, position, shown_window, snapshot

DISPLAY = Qt.ItemDataRole.DisplayRole
N = 500


def mark(model, row: int) -> str:
    return model.data(model.index(row, column_index("mark")), DISPLAY)


def price_text(p: float) -> str:
    return f"{p:,.1f}"  # BTC: tick 0.1


class FakeTurns:
    """The window's `Turns` as the model sees it: jobs run one per `turn()`, a key waiting
    is queued once (here: one key, the model's next slice)."""

    def __init__(self) -> None:
        self.jobs: deque = deque()

    def later(self, job) -> None:
        if job not in self.jobs:
            self.jobs.append(job)

    def turn(self) -> bool:
        if not self.jobs:
            return False
        self.jobs.popleft()()
        return True

    def drain(self) -> int:
        n = 0
        while self.turn():
            n += 1
        return n


@pytest.fixture
def sliced(qtbot):
    model = PositionsModel(EngineDouble().market, clock=lambda: T0)
    turns = FakeTurns()
    model.update([snapshot(position(f"p{i}"), 40_000.0) for i in range(N)])  # listed
    model.apply_later = turns.later
    model.rows_per_slice = 64
    return model, turns


def test_an_update_of_every_row_is_applied_over_several_turns_with_no_row_lost(sliced):
    model, turns = sliced
    changed: set[int] = set()
    model.dataChanged.connect(lambda tl, br, _r=None: changed.update(range(tl.row(),
                                                                         br.row() + 1)))
    model.update([snapshot(position(f"p{i}"), 41_000.0 + i / 10, T0 + 1) for i in range(N)])
    # the first slice now, the rest waiting for later turns
    assert model.waiting == N - 64
    assert mark(model, 0) == price_text(41_000.0)
    assert mark(model, N - 1) == price_text(40_000.0)  # not applied yet
    assert turns.drain() == -(-(N - 64) // 64)  # one turn per further slice
    assert model.waiting == 0
    assert [mark(model, r) for r in range(N)] == [price_text(41_000.0 + i / 10)
                                                  for i in range(N)]
    model.send_changes()  # (the last slice's, told on its own turn by the window)
    assert changed == set(range(N))  # the view was told of every row


def test_a_newer_snapshot_of_a_waiting_row_takes_its_place_and_wins(sliced):
    model, turns = sliced
    model.update([snapshot(position(f"p{i}"), 41_000.0, T0 + 1) for i in range(N)])
    turns.turn()  # partly applied: rows 0..127 done
    assert model.waiting == N - 128
    # a newer batch before the rest was applied: every row moves again
    model.update([snapshot(position(f"p{i}"), 42_000.0, T0 + 2) for i in range(N)])
    # the rows waiting kept their place (the oldest waiting goes first) and took the newer
    # value; the rows applied already wait again, behind them
    assert model.snapshot("p200").mark == 42_000.0  # the newest, though not shown yet
    assert mark(model, 200) == price_text(40_000.0)
    turns.drain()
    assert model.waiting == 0
    assert {mark(model, r) for r in range(N)} == {price_text(42_000.0)}
    assert all(model.snapshot_at(r).ts == T0 + 2 for r in range(N))


def test_with_a_view_the_rows_on_screen_show_everything_after_the_last_slice(sliced):
    model, turns = sliced
    model.visible = lambda: [0, 1, N - 2, N - 1]  # rows on screen: first and last slice
    model.update([snapshot(position(f"p{i}"), 41_000.0, T0 + 1) for i in range(N)])
    turns.drain()
    pnl = model.data(model.index(0, column_index("pnl")), DISPLAY)
    assert model.data(model.index(N - 1, column_index("pnl")), DISPLAY) == pnl
    assert mark(model, N - 1) == price_text(41_000.0)
    # the rows off screen: their price now, the rest when they come into view
    assert {mark(model, r) for r in range(N)} == {price_text(41_000.0)}
    model.refresh_rows([250])
    assert model.data(model.index(250, column_index("pnl")), DISPLAY) == pnl


def test_sorting_during_a_partly_applied_update_stays_consistent(sliced):
    model, turns = sliced
    proxy = PositionsProxy()
    proxy.setSourceModel(model)
    mk = column_index("mark")
    proxy.sort(mk, Qt.SortOrder.DescendingOrder)

    def order_is_consistent() -> None:
        shown = [proxy.data(proxy.index(r, mk), DISPLAY) for r in range(proxy.rowCount())]
        values = [float(t.replace(",", "")) for t in shown]
        assert values == sorted(values, reverse=True)
        assert proxy.rowCount() == N
        assert {proxy.data(proxy.index(r, 0), ID_ROLE) for r in range(N)} == {
            f"p{i}" for i in range(N)}

    model.update([snapshot(position(f"p{i}"), 40_000.0 + i, T0 + 1) for i in range(N)])
    turns.turn()
    model.send_changes()  # the window tells the view of each slice on its own turn
    order_is_consistent()  # half-applied: sorted on what each row shows
    proxy.sort(mk, Qt.SortOrder.AscendingOrder)  # the trader re-sorts meanwhile
    while turns.turn():
        model.send_changes()
    values = [float(proxy.data(proxy.index(r, mk), DISPLAY).replace(",", ""))
              for r in range(N)]
    assert values == [40_000.0 + i for i in range(N)]  # every row, in order of its newest


def test_a_position_removed_while_its_snapshot_waits_is_not_brought_back(sliced):
    model, turns = sliced
    model.update([snapshot(position(f"p{i}"), 41_000.0, T0 + 1) for i in range(N)])
    assert model.snapshot("p400") is not None and model.waiting
    assert model.remove("p400") is True
    assert model.snapshot("p400") is None
    turns.drain()
    assert model.rowCount() == N - 1 and "p400" not in model.position_ids()
    assert {mark(model, r) for r in range(N - 1)} == {price_text(41_000.0)}


def test_finish_applies_every_waiting_snapshot_at_once(sliced):
    model, turns = sliced
    model.update([snapshot(position(f"p{i}"), 41_000.0, T0 + 1) for i in range(N)])
    model.finish()
    assert model.waiting == 0
    assert {mark(model, r) for r in range(N)} == {price_text(41_000.0)}
    turns.drain()  # the slice asked for earlier finds nothing left
    assert model.waiting == 0


def test_the_window_applies_a_flush_of_every_row_over_turns_and_flush_now_at_once(qtbot):
    win = shown_window(qtbot)
    win.model.update([snapshot(position(f"w{i}"), 40_000.0) for i in range(N)])
    turns = win.bridge.turns
    runs = turns.runs
    win.bridge.positionsChanged.emit(
        [snapshot(position(f"w{i}"), 41_000.0, T0 + 1) for i in range(N)])
    assert 0 < win.model.waiting < N  # a slice applied, the rest on later turns
    qtbot.waitUntil(lambda: win.model.waiting == 0, timeout=5000)
    assert turns.runs - runs >= -(-N // win.model.rows_per_slice) - 1
    assert {mark(win.model, r) for r in range(N)} == {price_text(41_000.0)}
    # a flush_now (start-up, a screenshot) shows every row at once
    win.bridge.positionsChanged.emit(
        [snapshot(position(f"w{i}"), 42_000.0, T0 + 2) for i in range(N)])
    assert win.model.waiting
    win.bridge.flush_now()
    assert win.model.waiting == 0
    assert {mark(win.model, r) for r in range(N)} == {price_text(42_000.0)}


def test_the_rows_on_screen_are_in_the_first_slice(sliced):
    model, turns = sliced
    on_screen = [300, 301, 302, 499]
    model.visible = lambda: on_screen
    model.update([snapshot(position(f"p{i}"), 41_000.0, T0 + 1) for i in range(N)])
    assert model.waiting == N - 64
    pnl = column_index("pnl")
    for r in on_screen:  # applied and written in full, though last in the batch's order
        assert mark(model, r) == price_text(41_000.0)
        assert model.data(model.index(r, pnl), DISPLAY) == model.data(
            model.index(on_screen[0], pnl), DISPLAY)
    assert model.snapshot_at(0).ts == T0 + 1  # then the batch's order
    assert model.snapshot_at(64).ts == T0  # (its slice is to come)
    turns.drain()
    assert {mark(model, r) for r in range(N)} == {price_text(41_000.0)}


def test_the_view_is_told_of_the_first_slice_and_then_of_the_rest_at_the_last(sliced):
    """The rows on screen are in the first slice: the view is told of it at once (on the
    turn after it); the slices between change rows off screen and are told with the last
    (one repaint and re-sort for them, not one per slice). No row is left untold."""
    model, turns = sliced
    model.visible = lambda: [0, 1, 2]
    told: list[int] = []
    rows: set[int] = set()
    model.signal_later = lambda send: told.append(turns_run[0])
    model.dataChanged.connect(lambda tl, br, _r=None: rows.update(range(tl.row(),
                                                                      br.row() + 1)))
    turns_run = [0]
    model.update([snapshot(position(f"p{i}"), 41_000.0, T0 + 1) for i in range(N)])
    model.send_changes()  # (the window's turn for it)
    while turns.turn():
        turns_run[0] += 1
    assert told == [0, turns_run[0] - 1]  # the first slice, then the last
    model.send_changes()
    assert rows == set(range(N))


def test_with_a_view_every_rows_price_is_written_at_once_the_rest_in_its_slice(sliced):
    """The price column is what the trader follows: a batch writes every row's mark on its
    first turn; the rest of a row (its snapshot, P/L, ...) follows in its slice, and the
    slice does not write the mark again."""
    model, turns = sliced
    model.visible = lambda: [0, 1]
    model.update([snapshot(position(f"p{i}"), 41_000.0 + i / 10, T0 + 1) for i in range(N)])
    assert model.waiting == N - 64
    assert [mark(model, r) for r in range(N)] == [price_text(41_000.0 + i / 10)
                                                  for i in range(N)]
    assert model.snapshot_at(N - 1).ts == T0  # the row itself waits for its slice
    turns.drain()
    assert all(model.snapshot_at(r).ts == T0 + 1 for r in range(N))
    assert [mark(model, r) for r in range(N)] == [price_text(41_000.0 + i / 10)
                                                  for i in range(N)]
    pnl = column_index("pnl")
    model.refresh_rows(None)
    assert model.data(model.index(N - 1, pnl), DISPLAY) != model.data(
        model.index(0, pnl), DISPLAY)  # its own P/L, from its own (newest) snapshot


def test_sorting_by_the_price_waits_for_the_slices(sliced):
    """Sorted by the mark, a row's price and its sort value go together: written in its
    slice, not ahead of it."""
    model, turns = sliced
    model.visible = lambda: [0, 1]
    model.prepare_sort(column_index("mark"))
    model.update([snapshot(position(f"p{i}"), 41_000.0, T0 + 1) for i in range(N)])
    assert mark(model, N - 1) == price_text(40_000.0)
    turns.drain()
    assert {mark(model, r) for r in range(N)} == {price_text(41_000.0)}
    assert model.data(model.index(N - 1, column_index("mark")), SORT_ROLE) == 41_000.0


def test_the_price_of_the_rows_left_for_later_slices_is_written_on_the_next_turn(sliced):
    """With `marks_later` (the window's turns) the first slice's turn applies the slice only;
    the price of every row left for later slices is written by a job of its own, before
    those slices, and the view is told of both at once."""
    model, turns = sliced
    model.visible = lambda: [0, 1]
    marks: list = []
    model.marks_later = marks.append
    rows: set[int] = set()
    model.dataChanged.connect(lambda tl, br, _r=None: rows.update(range(tl.row(),
                                                                      br.row() + 1)))
    model.update([snapshot(position(f"p{i}"), 41_000.0 + i / 10, T0 + 1) for i in range(N)])
    assert model.waiting == N - 64
    assert mark(model, 0) == price_text(41_000.0)  # in the first slice
    assert mark(model, N - 1) == price_text(40_000.0)  # left for the job
    assert len(marks) == 1 and len(turns.jobs) == 1  # the job, and the next slice
    marks.pop()()  # the job's turn, ahead of the slices
    assert [mark(model, r) for r in range(N)] == [price_text(41_000.0 + i / 10)
                                                  for i in range(N)]
    assert model.snapshot_at(N - 1).ts == T0  # the row itself still waits for its slice
    model.send_changes()  # the view told once, of the slice and the prices
    assert rows >= set(range(N - 64, N)) | {0, 1}
    turns.drain()
    assert not marks  # one job per batch
    assert all(model.snapshot_at(r).ts == T0 + 1 for r in range(N))
