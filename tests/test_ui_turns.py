"""The window's periodic jobs run one per event-loop turn (`pmgui.ui.turns.Turns`).

In the GUI storm the table's flush, the action log's commit, the account's sums and the
chart's redraw came due on timers of their own, often in one pass of Qt's timer list, and ran
back to back: one stretch of 15–25 ms of GUI CPU, which the engine's thread stretched to a
50–150 ms stall (it takes the interpreter lock from a stretch held past 5 ms). These tests
check the order of work, never its time: a timer that came due during a job runs before the
next job, and each panel's job is handed to the window's `Turns`, not run where it was asked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication, QWidget
from shiboken6 import delete

from pmgui.engine.outbox import Outbox
from pmgui.ui.bridge import Bridge
from pmgui.ui.turns import Turns
from tests.ui_doubles import (
    BTC,
    T0,
    EngineDouble,
    account_panel,
    action,
    position,
    shown_window,
    snapshot,
    tick,
)


def beat_between(order: list[str], name: str) -> QTimer:
    """A zero-interval timer (the GUI storm's heartbeat, an input's) started now: it is due
    during the job that starts it."""
    t = QTimer()
    t.setSingleShot(True)
    t.setInterval(0)
    t.timeout.connect(lambda: order.append(name))
    t.start()
    return t


class PaintSpy(QObject):
    """An event filter that calls `on_paint` for each paint event of the widget it filters."""

    def __init__(self, on_paint: Callable[[], None]) -> None:
        super().__init__()
        self._on_paint = on_paint

    def eventFilter(self, _obj, ev) -> bool:
        if ev.type() == QEvent.Type.Paint:
            self._on_paint()
        return False


def committed_log(qtbot):
    """An action log on screen with 40 actions committed and shown, and its bridge."""
    from pmgui.ui.action_log import ActionLogPanel
    from pmgui.ui.theme import make_theme

    br = Bridge(Outbox())
    log = ActionLogPanel(br, lambda _s: BTC, make_theme("dark"), lambda _pid: BTC.symbol)
    qtbot.addWidget(log)
    log.resize(470, 300)
    log.show()
    qtbot.waitExposed(log)
    log.on_actions([action(f"p{i}", BTC.symbol, price=40_000.0 + i, ts=T0 + i)
                    for i in range(40)])
    log.commit()
    qtbot.waitUntil(lambda: log.text(0, 3) != "")
    return log, br


def settled_chart(qtbot):
    """A window whose chart shows a position's candles and a first tick, its jobs all run and
    the chart's cool-down off (the next live change redraws at once)."""
    from pmgui.ui.main_window import UiSettings
    from tests.ui_doubles import candles, candles_event

    eng = EngineDouble()
    win = shown_window(qtbot, eng, size=(1400, 900), settings=UiSettings())
    pos = position()
    eng.outbox.publish(snapshot(pos, 40_500.0))
    eng.outbox.publish(candles_event(pos.symbol, candles(30, start=pos.entry,
                                                         step=pos.entry / 4000)))
    eng.outbox.publish(tick(pos.symbol, 40_500.0, T0))
    win.bridge.flush_now()
    qtbot.waitUntil(lambda: not win.bridge.turns._jobs)
    for _ in range(5):
        QApplication.processEvents()
    win.chart._cooldown.stop()
    return eng, win, pos


@dataclass
class WatchedChart:
    """A settled chart (`settled_chart`) whose viewport's paints are recorded in `order`;
    `keep` holds the timers a test starts, so they live until it ends."""

    eng: EngineDouble
    win: object
    pos: object
    order: list[str] = field(default_factory=list)
    keep: list[QTimer] = field(default_factory=list)

    @property
    def chart(self):
        return self.win.chart

    @property
    def vp(self):
        return self.win.chart.plot.viewport()


@pytest.fixture
def watched_chart(qtbot) -> Iterator[WatchedChart]:
    """`settled_chart` with a paint spy on the chart's viewport (each paint appends
    "paint" to `order`), taken off again when the test ends."""
    w = WatchedChart(*settled_chart(qtbot))
    probe = PaintSpy(lambda: w.order.append("paint"))
    vp = w.vp
    vp.installEventFilter(probe)
    yield w
    vp.removeEventFilter(probe)


def test_a_timer_due_during_a_job_runs_before_the_next_job(qtbot):
    turns = Turns()
    order: list[str] = []
    keep: list[QTimer] = []

    def first() -> None:
        order.append("first")
        keep.append(beat_between(order, "beat"))

    turns.later("a", first)
    turns.later("b", lambda: order.append("second"))
    qtbot.waitUntil(lambda: len(order) == 3)
    assert order == ["first", "beat", "second"]


def test_a_key_waiting_is_queued_once_and_can_be_cancelled(qtbot):
    turns = Turns()
    ran: list[str] = []
    turns.later("table", lambda: ran.append("table 1"))
    turns.later("table", lambda: ran.append("table 2"))  # the waiting job serves it
    turns.later("log", lambda: ran.append("log"))
    turns.later("gone", lambda: ran.append("gone"))
    turns.cancel("gone")
    assert turns.waiting("table") and not turns.waiting("gone")
    qtbot.waitUntil(lambda: not turns.waiting("log"))
    QApplication.processEvents()
    assert ran == ["table 1", "log"]
    assert turns.runs == 2


def test_the_table_flush_is_a_turn_of_its_own_after_the_pump(qtbot):
    ob = Outbox()
    br = Bridge(ob)
    got: list[list] = []
    br.positionsChanged.connect(got.append)
    ob.publish(snapshot(position(), 40_100.0, T0))
    for _ in range(br._table_every):  # the timer's pumps up to the table's
        br._on_timer()
    assert got == [] and br.turns.waiting("table")  # not inside the pump's call
    qtbot.waitUntil(lambda: len(got) == 1)
    assert [s.mark for s in got[0]] == [40_100.0]


def test_flush_now_flushes_the_table_at_once_and_leaves_no_turn_waiting(qtbot):
    ob = Outbox()
    br = Bridge(ob)
    got: list[list] = []
    br.positionsChanged.connect(got.append)
    ob.publish(snapshot(position(), 40_100.0, T0))
    for _ in range(br._table_every):
        br._on_timer()
    br.flush_now()
    assert len(got) == 1 and not br.turns.waiting("table")


def test_the_account_sums_wait_for_a_turn_not_the_tables_flush(qtbot):
    _eng, _br, panel = account_panel(qtbot)
    before = panel.text("upnl")
    panel.on_positions([snapshot(position(), 30_000.0)])  # a large loss
    assert panel.text("upnl") == before  # not summed inside the flush's call
    qtbot.waitUntil(lambda: panel.text("upnl") != before)
    assert "-" in panel.text("upnl") or "−" in panel.text("upnl")



def test_an_account_event_is_summed_on_the_accounts_turn_not_in_the_flush(qtbot):
    """A wallet change comes with the table's flush in a storm (fills): the sums over the
    positions changed meanwhile run on the account's turns, not inside that flush."""
    from pmgui.engine.events import AccountEvent

    ob = Outbox()
    _eng, br, panel = account_panel(qtbot, ob, wallet=None)
    before = panel.text("wallet")
    ob.publish(AccountEvent(12_345.0, 12_345.0, "USDT", T0))
    br.pump()
    br.flush_table()
    assert panel.text("wallet") == before  # not summed inside the flush's call
    assert br.turns.waiting(("account", id(panel)))
    qtbot.waitUntil(lambda: panel.text("wallet") == "Wallet 12,345.00")


def test_a_flush_now_shows_the_account_at_once(qtbot):
    ob = Outbox()
    _eng, br, panel = account_panel(qtbot, ob)
    before = panel.text("upnl")
    ob.publish(snapshot(position(), 30_000.0))
    br.flush_now()
    assert panel.text("upnl") != before


def test_the_logs_commit_waits_for_a_turn_after_its_timer(qtbot, monkeypatch):
    from pmgui.ui import action_log
    from pmgui.ui.action_log import ActionLogPanel
    from pmgui.ui.theme import make_theme

    monkeypatch.setattr(action_log, "COMMIT_MS", 0)
    ob = Outbox()
    br = Bridge(ob)
    log = ActionLogPanel(br, lambda _s: BTC, make_theme("dark"), lambda _pid: BTC.symbol)
    qtbot.addWidget(log)
    order: list[str] = []
    keep: list[QTimer] = []
    br.turns.later("other", lambda: keep.append(beat_between(order, "beat")))
    ob.publish(action("p1", BTC.symbol, price=40_100.0))
    br.pump()  # the commit's timer starts; the other job is ahead of it in the turns
    real = log.commit
    monkeypatch.setattr(log, "commit", lambda: (order.append("commit"), real()))
    qtbot.waitUntil(lambda: log.rowCount() == 1)
    assert order == ["beat", "commit"]


def test_the_charts_live_redraw_waits_for_its_turn_behind_the_window_jobs(qtbot, monkeypatch):
    eng, win, pos = settled_chart(qtbot)
    chart = win.chart
    order: list[str] = []
    keep: list[QTimer] = []
    real = chart.redraw_now
    monkeypatch.setattr(chart, "redraw_now", lambda: (order.append("redraw"), real()))
    eng.outbox.publish(tick(pos.symbol, 40_600.0, T0 + 5))
    win.bridge.pump()  # the chart's redraw is due on its zero timer
    win.bridge.turns.later("table", lambda: (order.append("table"),
                                             keep.append(beat_between(order, "beat"))))
    qtbot.waitUntil(lambda: "redraw" in order)
    assert order == ["table", "beat", "redraw"]
    assert chart.line("last").value() == 40_600.0


def test_the_table_flush_goes_ahead_of_the_jobs_waiting(qtbot):
    """The table's prices are what the trader reads (the displayed price's lag): its flush
    is not queued behind a chart redraw or a log commit waiting for their turn."""
    ob = Outbox()
    br = Bridge(ob)
    order: list[str] = []
    br.positionsChanged.connect(lambda _snaps: order.append("table"))
    br.turns.later("chart", lambda: order.append("chart"))
    br.turns.later("log", lambda: order.append("log"))
    ob.publish(snapshot(position(), 40_100.0, T0))
    for _ in range(br._table_every):
        br._on_timer()
    qtbot.waitUntil(lambda: len(order) == 3)
    assert order == ["table", "chart", "log"]


def test_a_job_whose_owner_is_deleted_is_dropped_and_the_next_one_runs(qtbot):
    turns = Turns()
    ran: list[str] = []
    gone, kept = QObject(), QObject()
    turns.later("gone", lambda: ran.append("gone"), owner=gone)
    turns.later("kept", lambda: ran.append("kept"), owner=kept)
    delete(gone)  # the window closed while its job waited
    qtbot.waitUntil(lambda: not turns.waiting("kept"))
    assert ran == ["kept"] and turns.runs == 1


def test_a_key_left_by_a_deleted_owner_does_not_hold_back_a_new_job(qtbot):
    turns = Turns()
    ran: list[str] = []
    old, new = QObject(), QObject()
    turns.later(("account", 1), lambda: ran.append("old"), owner=old)
    delete(old)  # and a new panel got the old one's id() for its key
    turns.later(("account", 1), lambda: ran.append("new"), owner=new)
    qtbot.waitUntil(lambda: bool(ran))
    QApplication.processEvents()
    assert ran == ["new"]


def test_the_account_sums_waiting_when_the_panel_is_deleted_are_dropped(qtbot):
    """The full suite's flake: a window closed with the account's sums waiting; the turn then
    ran them on the panel's deleted labels (RuntimeError in Qt's event loop)."""
    from pmgui.ui.panels import AccountPanel
    from pmgui.ui.theme import make_theme

    eng = EngineDouble()
    br = Bridge(Outbox())
    panel = AccountPanel(br, eng.market, make_theme("dark"))
    panel._wallet = 10_000.0
    panel.on_positions([snapshot(position(), 30_000.0)])
    assert br.turns.waiting(("account", id(panel)))
    delete(panel)
    qtbot.waitUntil(lambda: not br.turns._jobs)
    QApplication.processEvents()
    assert br.turns.runs == 0


def test_the_table_flush_waiting_when_the_bridge_is_deleted_is_dropped(qtbot):
    """The GUI bench's teardown: the window and its bridge deleted with the table's flush
    waiting; the turn then emitted from the deleted bridge ("Signal source has been
    deleted" in Qt's event loop)."""
    ob = Outbox()
    br = Bridge(ob)
    turns = br.turns
    ob.publish(snapshot(position(), 40_100.0, T0))
    for _ in range(br._table_every):
        br._on_timer()
    assert turns.waiting("table")
    delete(br)
    qtbot.waitUntil(lambda: not turns.waiting("table"))
    QApplication.processEvents()
    assert turns.runs == 0


def _table_panel(qtbot):
    from pmgui.ui.panels import PositionsPanel
    from pmgui.ui.theme import make_theme

    ob = Outbox()
    br = Bridge(ob)
    panel = PositionsPanel(br, lambda _s: BTC, make_theme("dark"))
    qtbot.addWidget(panel)
    panel.resize(1200, 300)
    panel.show()
    qtbot.waitExposed(panel)
    return ob, br, panel


def test_the_table_view_is_told_of_a_flush_on_the_turn_after_it(qtbot):
    """The flush writes the cells (the model is current at once); the view hears of it —
    and repaints — on a turn of its own: a timer that came due during the flush runs first."""
    from pmgui.ui.positions_model import column_index

    ob, br, panel = _table_panel(qtbot)
    pos = position()
    ob.publish(snapshot(pos, 40_000.0, T0))
    br.flush_now()
    model = panel.model
    order: list[str] = []
    keep: list[QTimer] = []
    model.dataChanged.connect(lambda *_a: order.append("told"))
    # connected after the panel: runs inside the flush, after the model's update
    br.positionsChanged.connect(lambda _s: (
        order.append("flushed"),
        order.append(model.item(0, column_index("mark")).text()),
        keep.append(beat_between(order, "beat"))))
    ob.publish(snapshot(pos, 40_100.0, T0 + 1))
    for _ in range(br._table_every):
        br._on_timer()
    qtbot.waitUntil(lambda: "told" in order)
    assert order[:4] == ["flushed", "40,100.0", "beat", "told"]


def test_flush_now_tells_the_table_view_at_once(qtbot):
    ob, br, panel = _table_panel(qtbot)
    pos = position()
    ob.publish(snapshot(pos, 40_000.0, T0))
    br.flush_now()
    told: list[int] = []
    panel.model.dataChanged.connect(lambda *_a: told.append(1))
    ob.publish(snapshot(pos, 40_100.0, T0 + 1))
    br.flush_now()
    assert told  # not waiting for a turn (start-up, a screenshot)


def test_a_change_not_told_yet_is_told_before_rows_are_removed(qtbot):
    """The rows a waiting change names are the rows before a removal: it is told first."""
    from pmgui.ui.positions_model import PositionsModel

    model = PositionsModel(lambda _s: BTC)
    waiting: list = []
    model.signal_later = waiting.append
    a, b = position("a"), position("b")
    model.update([snapshot(a, 40_000.0, T0), snapshot(b, 40_000.0, T0)])
    waiting.clear()
    events: list[tuple] = []
    model.dataChanged.connect(lambda tl, br_, *_r: events.append(("told", tl.row(), br_.row())))
    model.rowsAboutToBeRemoved.connect(lambda _p, f, _l: events.append(("removing", f)))
    model.update([snapshot(b, 40_100.0, T0 + 1)])  # row 1
    assert events == [] and len(waiting) == 1
    model.remove("a")
    told = [e for e in events if e[0] == "told"]  # (one per block of columns)
    assert set(told) == {("told", 1, 1)} and events == [*told, ("removing", 0)]
    waiting[0]()  # its turn comes: nothing is told twice
    assert events == [*told, ("removing", 0)]


def test_the_logs_commit_is_painted_after_it_not_beside_a_later_job(qtbot):
    """The rows a commit puts on top are laid out by the commit itself: Qt's view would lay
    them out on a timer of its own, later, and their repaint (every row on screen moved
    down) then ran beside whatever job that pass held — in the GUI storm, most often the
    table's flush. Laid out at once, the repaint follows the commit, before a timer that
    came due during it."""
    log, br = committed_log(qtbot)
    order: list[str] = []
    keep: list[object] = []
    probe = PaintSpy(lambda: order.append("paint"))
    log.viewport().installEventFilter(probe)
    for _ in range(5):
        QApplication.processEvents()
    order.clear()
    log.on_actions([action(f"q{i}", BTC.symbol, price=41_000.0 + i, ts=T0 + 100 + i)
                    for i in range(10)])

    def job() -> None:
        keep.append(beat_between(order, "beat"))  # due during the commit
        log.commit()

    br.turns.later("commit", job)
    qtbot.waitUntil(lambda: "beat" in order and "paint" in order)
    log.viewport().removeEventFilter(probe)
    assert order[0] == "paint"
    assert log.text(0, 1) == BTC.symbol and "41,009" in log.text(0, 3)


def test_the_pumps_timer_hands_the_pump_to_the_turns(qtbot):
    """The pump is a turn of its own: its timer and a job's came due in one pass of Qt's
    timers and ran back to back, in one stretch with the job's repaint."""
    ob = Outbox()
    br = Bridge(ob)
    order: list[str] = []
    br.ticks.connect(lambda _evs: order.append("pump"))
    br._chart_timer.timeout.connect(lambda: order.append("timer"))  # after the bridge's slot
    ob.publish(tick(BTC.symbol, 40_100.0, T0))
    br.start()
    qtbot.waitUntil(lambda: "pump" in order)
    br.stop()
    assert order[:2] == ["timer", "pump"]


def test_the_charts_repaint_waits_for_the_turn_after_its_redraw(qtbot, watched_chart,
                                                                 monkeypatch):
    """Qt paints a scene's changes in the posted call that processes them, before the timers
    of the next pass: the live redraw and its repaint held the GUI thread in one stretch
    (the GUI storm's longest). The viewport's updates are held through the redraw and let go
    on the next turn, so a timer that came due during the redraw runs between the two, and
    the repaint then shows the new state."""
    w = watched_chart
    chart, order, keep = w.chart, w.order, w.keep
    real = chart.redraw_now

    def redraw() -> None:
        order.append("redraw")
        keep.append(beat_between(order, "beat"))  # due during the redraw
        real()

    monkeypatch.setattr(chart, "redraw_now", redraw)
    w.eng.outbox.publish(tick(w.pos.symbol, 40_600.0, T0 + 5))
    w.win.bridge.pump()
    qtbot.waitUntil(lambda: "paint" in order)
    assert order[:3] == ["redraw", "beat", "paint"]
    assert w.vp.updatesEnabled()
    assert chart.line("last").value() == 40_600.0


def test_the_logs_live_commit_is_painted_on_the_turn_after_it(qtbot):
    """The live commit's repaint (every row on screen moved down) is held for the turn after
    the commit (`Turns.paint_later`): a timer that came due during the commit runs between
    the two, and the repaint then shows the new rows."""
    log, _ = committed_log(qtbot)
    order: list[str] = []
    keep: list[object] = []
    probe = PaintSpy(lambda: order.append("paint"))
    for _ in range(5):
        QApplication.processEvents()
    log.viewport().installEventFilter(probe)
    real = log.commit

    def commit() -> None:
        if log.pending:
            order.append("commit")
            keep.append(beat_between(order, "beat"))  # due during the commit
        real()

    log.commit = commit  # type: ignore[method-assign]
    try:
        log.on_actions([action(f"q{i}", BTC.symbol, price=41_000.0 + i, ts=T0 + 100 + i)
                        for i in range(10)])  # (the live commit comes on its timer)
        qtbot.waitUntil(lambda: "paint" in order)
    finally:
        log.viewport().removeEventFilter(probe)
        del log.commit
    assert order[:3] == ["commit", "beat", "paint"]
    assert log.viewport().updatesEnabled()
    assert log.text(0, 1) == BTC.symbol and "41,009" in log.text(0, 3)


def test_the_charts_redraw_finds_a_new_range_in_its_turn_not_in_the_paint(qtbot):
    """pyqtgraph re-ranges at the start of a paint, and a new range found there moves the axes
    and the tags and repaints the view a second time. The live redraw re-ranges in its own
    turn: the range holds the new price before any paint, and the held repaint draws it once."""
    eng, win, pos = settled_chart(qtbot)
    chart = win.chart
    far = chart.vb.viewRange()[1][1] * 1.2  # above the price range shown
    seen: list[tuple[float, float]] = []
    probe = PaintSpy(lambda: seen.append(tuple(chart.vb.viewRange()[1])))
    chart.plot.viewport().installEventFilter(probe)
    try:
        eng.outbox.publish(tick(pos.symbol, far, T0 + 5))
        win.bridge.pump()
        qtbot.waitUntil(lambda: chart.line("last").value() == far and len(seen) >= 1)
        for _ in range(5):
            QApplication.processEvents()
    finally:
        chart.plot.viewport().removeEventFilter(probe)
    y0, y1 = seen[0]
    assert y0 <= far <= y1  # the first paint already shows the new range
    assert len(seen) == 1  # and no second paint for it


def test_the_charts_live_redraw_draws_its_series_and_its_levels_on_two_turns(
        qtbot, watched_chart, monkeypatch):
    """A live redraw of the series (candles, indicator, markers) and of the rest (the levels,
    the last price, the tags, the auto-range) was one stretch of GUI CPU: the series are drawn
    on its turn, the rest on the next, a timer that came due between runs between them, and
    the held repaint comes after both, showing the new state."""
    w = watched_chart
    chart, order, keep = w.chart, w.order, w.keep
    real_candles, real_last = chart._render_candles, chart._update_last

    def candles_drawn() -> None:
        order.append("candles")
        keep.append(beat_between(order, "beat"))  # due during the first turn
        real_candles()

    def last_placed() -> None:
        order.append("last")
        real_last()

    monkeypatch.setattr(chart, "_render_candles", candles_drawn)
    monkeypatch.setattr(chart, "_update_last", last_placed)
    w.eng.outbox.publish(tick(w.pos.symbol, w.pos.entry * 1.01, T0 + 70))  # a new candle
    w.win.bridge.pump()
    qtbot.waitUntil(lambda: "paint" in order)
    assert order[:4] == ["candles", "beat", "last", "paint"]
    assert w.vp.updatesEnabled()
    assert chart.line("last").value() == w.pos.entry * 1.01
    assert not chart._layout_owed  # the tags were laid out by the second turn


class Painted(QWidget):
    """A plain widget that records each of its paints' rectangle, (top, height), in `order`."""

    def __init__(self, parent: QWidget, order: list) -> None:
        super().__init__(parent)
        self.order = order
        self.window_: QWidget | None = None

    def paintEvent(self, ev) -> None:
        self.order.append((ev.rect().top(), ev.rect().height()))


def painted_child(qtbot, height: int, order: list) -> Painted:
    """A `Painted` 200 × `height` inside a window on screen (as a view's viewport is), its
    first paints done (and not recorded)."""
    top = QWidget()
    qtbot.addWidget(top)
    top.resize(220, height + 20)
    w = Painted(top, order)
    w.window_ = top  # (kept alive with it)
    w.setGeometry(10, 10, 200, height)
    top.show()
    qtbot.waitExposed(top)
    qtbot.waitUntil(lambda: bool(order))
    for _ in range(5):
        QApplication.processEvents()
    order.clear()
    return w


def test_a_held_repaint_in_parts_paints_one_band_per_turn_top_first(qtbot, monkeypatch):
    """`paint_later(parts=2)`: the job's changes ask for no paint; the next turn paints the
    top half, a timer due during that turn runs, the turn after paints the bottom half;
    every row of the widget is painted once and its updates are on again."""
    turns = Turns()
    order: list = []
    keep: list[QTimer] = []
    w = painted_child(qtbot, 101, order)
    real = turns._paint_part

    def part(widget, i, parts) -> None:
        order.append(f"band {i}")
        if i == 0:
            keep.append(beat_between(order, "beat"))  # due during the first band's turn
        real(widget, i, parts)

    monkeypatch.setattr(turns, "_paint_part", part)

    def job() -> None:
        order.append("job")
        turns.paint_later(w, parts=2)
        w.update()  # the job's change: held

    turns.later("job", job)
    qtbot.waitUntil(lambda: (50, 51) in order)
    for _ in range(5):
        QApplication.processEvents()
    assert order == ["job", "band 0", (0, 50), "beat", "band 1", (50, 51)]
    assert w.updatesEnabled()


def test_a_widget_held_again_between_its_bands_is_painted_whole_after_the_new_job(
        qtbot, monkeypatch):
    """A widget held again before its last band: that band's turn turns its updates on as
    `paint_later` does (one repaint of all of it), it is not left held."""
    turns = Turns()
    order: list = []
    w = painted_child(qtbot, 100, order)
    real = turns._paint_part

    def part(widget, i, parts) -> None:
        real(widget, i, parts)
        if i == 0:  # held again before the bottom band (the bands are ahead of any job)
            turns.paint_later(w, parts=2)
            w.update()

    monkeypatch.setattr(turns, "_paint_part", part)
    turns.paint_later(w, parts=2)
    w.update()
    qtbot.waitUntil(lambda: (0, 100) in order and w.updatesEnabled())
    for _ in range(5):
        QApplication.processEvents()
    assert order[-1] == (0, 100) and (50, 50) not in order  # one repaint of all of it
    assert w.updatesEnabled() and not turns._jobs
