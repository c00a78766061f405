"""A batch of new table rows leaves the cyclic collector's generations (MainWindow)."""

from __future__ import annotations

import gc

from pmgui.ui.main_window import BULK_ROWS
from tests.ui_doubles import position, shown_window, snapshot


def _in_generations(obj: object) -> bool:
    return any(o is obj for o in gc.get_objects())


def test_a_batch_of_new_rows_is_frozen_a_single_row_ages_as_usual(qtbot):
    """The book listed at once is ~20 Qt items a row with their wrappers, lines and figures,
    as long-lived as the positions: left young, the next young and middle collections walked
    them all with the interpreter lock held (the GUI storm's longest stretch). A single new
    row is left to the generations, as any object."""
    win = shown_window(qtbot)
    win.model.update([snapshot(position(f"b{i}"), 40_000.0 + i) for i in range(BULK_ROWS)])
    batch_item = win.model.item(0, 0)  # the wrapper the model keeps for the row's cell
    assert win.model.rowCount() == BULK_ROWS
    assert gc.is_tracked(batch_item) and not _in_generations(batch_item)
    win.model.update([snapshot(position("single"), 41_000.0)])
    single_item = win.model.item(BULK_ROWS, 0)
    assert _in_generations(single_item)
