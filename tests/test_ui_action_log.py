"""The action log and the bridge in a storm: batches, a bounded pump, a capped log that never
drops what the trader must see (errors, failures, closes, fills)."""

from __future__ import annotations

import pytest

from pmgui.domain.enums import ActionType, Reason
from pmgui.engine.events import ErrorEvent
from pmgui.engine.outbox import Outbox
from pmgui.ui.action_log import MAX_LOG_ROWS, TRIM_SLACK, ActionLogPanel
from pmgui.ui.bridge import MAX_LOG_PER_PUMP, Bridge
from pmgui.ui.theme import make_theme
from tests.ui_doubles import BTC, T0, action

N = 10_000


def storm(ob: Outbox) -> tuple[list[str], list[float]]:
    """10,000 trailing moves; an error every 1,000 and a close every 2,500 among them.
    Returns the error messages and the close prices, in publish order."""
    errors, closes = [], []
    for i in range(N):
        ts = T0 + i * 0.002
        ob.publish(action(f"p{i % 500}", BTC.symbol, ActionType.MOVE_SL, Reason.TRAILING,
                          40_000.0 + i, ts, sl=39_000.0 + i))
        if i % 1000 == 999:
            errors.append(f"SL order rejected #{i}")
            ob.publish(ErrorEvent(errors[-1], ts, f"p{i % 500}"))
        if i % 2500 == 1249:
            closes.append(41_000.0 + i)
            ob.publish(action(f"p{i % 500}", BTC.symbol, ActionType.CLOSE, Reason.STOP_LOSS,
                              closes[-1], ts, qty=0.01))
    return errors, closes


@pytest.fixture
def rig(qtbot):
    ob = Outbox(max_unkeyed=2 * N)
    br = Bridge(ob)
    log = ActionLogPanel(br, lambda _s: BTC, make_theme("dark"), lambda _pid: BTC.symbol)
    qtbot.addWidget(log)
    return ob, br, log


def test_a_pump_hands_on_a_bounded_batch_in_order_and_the_rest_later(rig):
    ob, br, _log = rig
    errors, _closes = storm(ob)
    got: list = []
    br.actions.connect(lambda evs: got.append(("actions", [e.action.price for e in evs])))
    br.error.connect(lambda ev: got.append(("error", ev.message)))
    br.pump()
    handed = sum(len(v) if k == "actions" else 1 for k, v in got)
    assert handed == MAX_LOG_PER_PUMP
    assert br.waiting == N + len(errors) + 4 - MAX_LOG_PER_PUMP
    pumps = 1
    while br.waiting:
        br.pump()
        pumps += 1
    assert pumps == -(-(N + len(errors) + 4) // MAX_LOG_PER_PUMP)
    # every error arrived, in order, and between the actions around it
    assert [m for k, m in got if k == "error"] == errors
    assert got[0][1][:3] == [40_000.0, 40_001.0, 40_002.0]
    first_error = next(i for i, (k, _m) in enumerate(got) if k == "error")
    before = [p for k, v in got[:first_error] if k == "actions" for p in v]
    assert before[-1] == 40_999.0  # the action published just before the first error


def test_ten_thousand_actions_fill_the_log_to_its_cap_keeping_errors_and_closes(rig):
    ob, br, log = rig
    errors, closes = storm(ob)
    br.flush_now()
    assert br.waiting == 0 and log.pending == 0
    assert log.rowCount() == MAX_LOG_ROWS
    rows = [(log.text(r, 2), log.text(r, 3)) for r in range(log.rowCount())]
    # nothing the trader must see was pushed out by the trailing moves …
    shown_errors = [d for reason, d in rows if reason == "⚠ error"]
    assert shown_errors == list(reversed(errors))  # newest first
    shown_closes = [d for reason, d in rows if reason == "stop_loss"]
    assert len(shown_closes) == len(closes)
    assert all(d.startswith("close @") for d in shown_closes)
    # … the newest trailing moves are all there, newest first, the oldest ones trimmed
    moves = [d for reason, d in rows if reason == "trailing"]
    assert len(moves) == MAX_LOG_ROWS - len(errors) - len(closes)
    assert moves[0] == f"move_sl @ {40_000.0 + N - 1:,.1f} SL → {39_000.0 + N - 1:,.1f}"
    assert log.log_model.trimmed == N + len(errors) + len(closes) - MAX_LOG_ROWS
    for r in range(log.rowCount()):  # errors are shown as warnings
        assert log.is_warning(r) == (rows[r][0] == "⚠ error")


def test_live_rows_wait_for_the_commit_and_the_same_action_is_shown_once(rig):
    ob, br, log = rig
    ev = action("p1", BTC.symbol, ActionType.MOVE_SL, Reason.TRAILING, 40_100.0, T0,
                sl=39_900.0)
    ob.publish(ev)
    br.pump()
    assert log.rowCount() == 0 and log.pending == 1  # collected, not yet shown
    log.commit()
    assert log.rowCount() == 1
    assert log.log_action(ev, newest=False) is False  # stored copy of a shown action
    ob.publish(ErrorEvent("exchange down", T0 + 1, "p1"))
    br.flush_now()  # a flush shows everything at once
    assert [log.text(r, 2) for r in range(log.rowCount())] == ["⚠ error", "trailing"]
    assert log.tooltip(0, 3) == "exchange down"


def test_a_stored_close_is_kept_when_trailing_moves_filled_the_log_first(rig):
    ob, br, log = rig
    for i in range(MAX_LOG_ROWS + TRIM_SLACK):  # the storm reached the log before the history
        ob.publish(action(f"p{i % 500}", BTC.symbol, ActionType.MOVE_SL, Reason.TRAILING,
                          40_000.0 + i, T0 + i * 0.002, sl=39_000.0 + i))
    br.flush_now()
    assert log.rowCount() == MAX_LOG_ROWS + TRIM_SLACK  # full
    stored = action("p7", BTC.symbol, ActionType.CLOSE, Reason.STOP_LOSS, 38_000.0,
                    T0 - 60, qty=0.01)
    assert log.log_action(stored, newest=False) is True
    assert log.rowCount() == MAX_LOG_ROWS  # trimmed: routine moves made room for it
    rows = [(log.text(r, 2), log.text(r, 3)) for r in range(log.rowCount())]
    assert rows[-1] == ("stop_loss", "close @ 38,000.0 qty 0.010")
    assert log.log_action(stored, newest=False) is False  # shown once


def test_a_commit_makes_the_cells_of_the_rows_on_screen_only_and_a_scroll_makes_the_rest(
        rig, qtbot):
    """In a storm every row on screen is new at each commit: cells are made for the rows on
    screen and one beyond, not for rows the next commit pushes off screen unseen; a row
    scrolled into view gets its cells before it is painted, coloured and flagged as any."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QColor

    from pmgui.ui.action_log import FILL_MARGIN

    ob, br, log = rig
    log.resize(700, 400)
    log.show()
    qtbot.waitExposed(log)
    for i in range(150):
        ok = i != 10  # one failed action: a warning row
        ob.publish(action(f"p{i}", BTC.symbol, ActionType.MOVE_SL, Reason.TRAILING,
                          40_000.0 + i, T0 + i, sl=39_000.0 + i, ok=ok))
    br.flush_now()
    model = log.log_model
    last = log.rowAt(log.viewport().height() - 1)
    assert 0 < last < 100
    made = [r for r in range(model.rowCount()) if model.item(r, 0) is not None]
    assert made == list(range(last + 1 + FILL_MARGIN))
    assert FILL_MARGIN <= 1
    qtbot.waitUntil(lambda: log.verticalScrollBar().maximum() >= 130)  # (laid out)
    log.verticalScrollBar().setValue(130)  # the failed action (row 139) comes into view
    first, last = log.rowAt(0), log.rowAt(log.viewport().height() - 1)
    assert first <= 139 <= last
    for r in range(first, last + 1):
        for c in range(4):
            it = model.item(r, c)
            assert it is not None and it.text() == log.text(r, c)
            assert not it.flags() & Qt.ItemFlag.ItemIsEditable
            assert it.flags() & Qt.ItemFlag.ItemIsSelectable
    warn = QColor(make_theme("dark").warning)
    assert log.is_warning(139)
    assert all(model.item(139, c).foreground().color() == warn for c in range(4))
    assert model.item(138, 0).foreground().style() == Qt.BrushStyle.NoBrush


def test_the_live_commit_trims_the_log_to_its_cap_on_a_turn_after_it(qtbot, monkeypatch):
    """The live commit (on its turn) puts the new rows on top and leaves the trim to the cap
    for a later turn: a timer due during the commit runs between the two. Once trimmed the
    log is at its cap with the newest rows on top and the must-see rows kept."""
    from PySide6.QtCore import QTimer

    from pmgui.ui import action_log

    monkeypatch.setattr(action_log, "COMMIT_MS", 0)
    cap = 50
    ob = Outbox(max_unkeyed=2 * N)
    br = Bridge(ob)
    log = ActionLogPanel(br, lambda _s: BTC, make_theme("dark"), lambda _pid: BTC.symbol,
                         max_rows=cap)
    qtbot.addWidget(log)
    model = log.log_model
    order: list[str] = []
    keep: list[QTimer] = []
    real_commit, real_trim = log.commit, model.trim

    def commit() -> None:
        if log.pending:
            order.append("commit")
            t = QTimer()  # due during the commit
            t.setSingleShot(True)
            t.setInterval(0)
            t.timeout.connect(lambda: order.append("beat"))
            t.start()
            keep.append(t)
        real_commit()

    def trim() -> None:
        order.append(f"trim {model.rowCount()}")
        real_trim()

    monkeypatch.setattr(log, "commit", commit)
    monkeypatch.setattr(model, "trim", trim)
    n = cap + TRIM_SLACK + 30
    ob.publish(action("p0", BTC.symbol, ActionType.CLOSE, Reason.STOP_LOSS, 39_000.0, T0,
                      qty=0.01))
    for i in range(1, n):
        ob.publish(action(f"p{i}", BTC.symbol, ActionType.MOVE_SL, Reason.TRAILING,
                          40_000.0 + i, T0 + i, sl=39_000.0 + i))
    br.pump()  # the commit's timer starts; the commit and the trim run on turns
    qtbot.waitUntil(lambda: model.rowCount() == cap)
    assert order == ["commit", "beat", f"trim {n}"]
    assert log.text(0, 3).startswith("move_sl @ ") and f"{40_000.0 + n - 1:,.1f}" in log.text(0, 3)
    assert log.text(cap - 1, 2) == "stop_loss"  # the close kept, routine rows dropped
