"""A closed position corrected after it was booked reaches the window at once, through the
event path everything else uses: the bridge carries `PositionCorrected` (never coalesced,
never dropped), the History view shows the corrected row and the "Today" figure the
corrected realised P/L without a manual refresh, and the metrics follow with a re-query
through the non-blocking request path.

Real parts: a real SQLite journal, the real ledger correcting a closed position's row on it
(the venue's fee for an estimate, a stop re-booked at the venue's price), the real bridge and
window offscreen; the engine's history answers are computed from the same file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from PySide6.QtWidgets import QTableWidget

from pmgui.domain.enums import OrderRole, OrderSide, OrderStatus, OrderType, PositionStatus, Side
from pmgui.domain.models import Fill, Order, OrderRequest, Position
from pmgui.engine import queries
from pmgui.engine.commands import GetHistory
from pmgui.engine.events import ErrorEvent, PositionCorrected, PositionRemoved
from pmgui.engine.ledger import OrderLedger
from pmgui.engine.outbox import Outbox
from pmgui.store.db import Store
from pmgui.ui.bridge import Bridge
from pmgui.ui.history import HistoryPanel
from pmgui.ui.main_window import MainWindow
from pmgui.ui.runner import CommandRunner
from tests.ui_doubles import BTC, ETH, T0, EngineDouble, position, tick

NOW = T0 + 7200  # the engine double's clock for its history answers
CLOSED_AT = NOW - 200  # today, whatever the local time zone
PNL_COL = 6


def closed(pid: str, symbol: str, entry: float, exit_: float, pnl: float, fees: float
           ) -> Position:
    p = position(pid, symbol, Side.LONG, qty=1.0, entry=entry, sl=entry * 0.98, tp=None)
    return p.evolve(status=PositionStatus.CLOSED, closed_at=CLOSED_AT, exit_price=exit_,
                    exit_reason="manual", realized_pnl=pnl, fees_paid=fees, qty=0.0)


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    """Two positions closed today: ETH, and BTC closed by a market order booked with an
    estimated fee of 20 (its venue's commission not known yet)."""
    path = tmp_path / "pmgui.db"
    st = Store.open(path)
    try:
        st.save_position(closed("eth", ETH.symbol, 3_000.0, 3_030.0, 25.0, 5.0))
        st.save_position(closed("btc", BTC.symbol, 40_000.0, 41_000.0, 960.0, 40.0))
        st.record_equity(NOW - 600, 10_000.0, 10_000.0)
    finally:
        st.close()
    return path


class Venue:
    """The engine's ledger on the journal: the BTC close's market order, booked with an
    estimated fee, whose fee the venue tells later (`commission`)."""

    def __init__(self, path: Path, outbox: Outbox) -> None:
        self.ledger = OrderLedger(Store.open(path), outbox, lambda: NOW)
        self.ledger.load()
        req = OrderRequest("pmg-c", BTC.symbol, OrderSide.SELL, OrderType.MARKET, 1.0,
                           reduce_only=True, position_id="btc", role=OrderRole.REDUCE,
                           reason="manual")
        order = self.ledger.journal(req)
        self.ledger.mark_sent("pmg-c")
        self.done: Order = replace(order, status=OrderStatus.FILLED, filled=1.0,
                                   average=41_000.0, exchange_id="1")
        self.fill = Fill("b:1", "pmg-c", BTC.symbol, OrderSide.SELL, 1.0, 41_000.0, 20.0,
                         CLOSED_AT)
        self.ledger.apply(self.done, (self.fill,))

    def commission(self, fee: float) -> None:
        self.ledger.apply(self.done, (replace(self.fill, fee=fee),))

    def close(self) -> None:
        self.ledger.store.close()


def pnl_of(table: QTableWidget, symbol: str) -> str:
    for r in range(table.rowCount()):
        if table.item(r, 1).text() == symbol:
            return table.item(r, PNL_COL).text()
    raise AssertionError(f"no row of {symbol}")


def test_the_bridge_carries_every_correction_in_order(qtbot) -> None:
    ob = Outbox()
    br = Bridge(ob)
    got: list[PositionCorrected] = []
    br.positionCorrected.connect(got.append)
    a = closed("btc", BTC.symbol, 40_000.0, 41_000.0, 960.0, 40.0)
    first = PositionCorrected(a.evolve(realized_pnl=970.0), NOW, "fee")
    second = PositionCorrected(a.evolve(realized_pnl=965.0), NOW + 1, "price")
    ob.publish(first)
    for i in range(50):  # a burst of prices between them: they coalesce, corrections do not
        ob.publish(tick(BTC.symbol, 40_000.0 + i, T0 + i))
    ob.publish(second)
    ob.publish(PositionRemoved(position("other"), NOW))
    br.pump()
    assert got == [first, second]  # both, in publish order, the same objects
    ob.publish(ErrorEvent("unrelated", NOW))
    br.pump()
    assert got == [first, second]  # handed on once


def test_the_window_shows_a_closed_positions_correction_without_a_refresh(
        qtbot, journal: Path) -> None:
    eng = EngineDouble(db=journal)
    win = MainWindow(eng, start=False, wall_clock=lambda: NOW)
    qtbot.addWidget(win)
    win.resize(1500, 900)
    with qtbot.waitSignal(win.history.loaded, timeout=10_000):
        assert win.history.refresh()
    table = win.history.table
    today = win.account.labels["today"]
    assert pnl_of(table, BTC.symbol) == "+$960.00"
    assert today.text() == "Today +$985.00"
    assert "Total P/L +$985.00" in win.history.metrics_label.text()
    asked = len(eng.submitted)

    venue = Venue(journal, eng.outbox)
    try:
        win.bridge.start()  # the window's own drain (no refresh asked for)
        venue.commission(12.5)  # the venue's fee: 7.50 less than the estimate
        qtbot.waitUntil(lambda: pnl_of(table, BTC.symbol) == "+$967.50", timeout=10_000)
        assert today.text() == "Today +$992.50"
        # the metrics and equity (the store's sums) follow, asked for once, not blocking
        qtbot.waitUntil(lambda: "Total P/L +$992.50" in win.history.metrics_label.text(),
                        timeout=10_000)
        assert [c for c in eng.submitted[asked:] if isinstance(c, GetHistory)] \
            == [GetHistory()]
        assert pnl_of(table, ETH.symbol) == "+$25.00"  # the other row as it was
        assert today.text() == "Today +$992.50"  # (the answer agrees)
        win.show()
        win.history_dock.raise_()
        qtbot.waitUntil(lambda: win.history.isVisible(), timeout=10_000)
        table.scrollToItem(table.item(0, PNL_COL + 2))  # the P/L column in view
        win.grab().save("/tmp/hist22.png")
        win.history_dock.setFloating(True)  # the whole History view, every column
        win.history_dock.resize(1000, 420)
        win.history_dock.grab().save("/tmp/hist22-history.png")
    finally:
        win.bridge.stop()
        venue.close()


def test_an_answer_asked_for_before_the_correction_does_not_undo_it(
        qtbot, journal: Path) -> None:
    """The history was asked for just before the correction committed, and its answer (the
    row as booked) comes after the correction was shown: the correction stays on it, and
    the history is asked for again."""
    eng = EngineDouble(db=journal)
    panel = HistoryPanel(CommandRunner(eng).request, eng.market, wall_clock=lambda: NOW)
    qtbot.addWidget(panel)
    with qtbot.waitSignal(panel.loaded, timeout=10_000):
        assert panel.refresh()
    seen: list[float] = []
    panel.loaded.connect(lambda d: seen.append(d.realized_today))
    reader = Store.open(journal, readonly=True)
    try:
        before = queries.history_from_store(reader, GetHistory(), lambda: NOW)
    finally:
        reader.close()
    eng.hold = eng.hold_requests = True
    assert panel.refresh()  # in flight
    outbox = Outbox()
    bridge = Bridge(outbox)
    bridge.positionCorrected.connect(panel.on_position_corrected)
    venue = Venue(journal, outbox)
    try:
        venue.commission(12.5)
        bridge.pump()
        assert pnl_of(panel.table, BTC.symbol) == "+$967.50" and seen == [992.5]
        eng.held.pop(0).set_result(before)  # the answer computed before the commit
        qtbot.waitUntil(lambda: len(seen) == 2, timeout=10_000)
        assert seen[-1] == pytest.approx(992.5)
        assert pnl_of(panel.table, BTC.symbol) == "+$967.50"
        # asked again, since that answer may predate it: the journal's own word now
        qtbot.waitUntil(lambda: len(eng.held) == 1, timeout=10_000)
        eng.hold = eng.hold_requests = False
        eng.held.pop(0).set_result(eng._request(GetHistory()))
        qtbot.waitUntil(lambda: len(seen) == 3, timeout=10_000)
        assert pnl_of(panel.table, BTC.symbol) == "+$967.50" and seen[-1] == 992.5
        assert "Total P/L +$992.50" in panel.metrics_label.text()
    finally:
        venue.close()


def test_a_remote_windows_resync_asks_for_the_history_again(qtbot) -> None:
    """A resync (a reconnection, a backlog the server dropped) loses the corrections sent
    meanwhile: the window on a remote engine asks for its history again, once."""
    from pmgui.ui.remote import attach_remote

    class Link:  # what the indicator reads of a RemoteEngine
        url = "ws://127.0.0.1:9"
        link = "connected"
        link_detail = ""
        scope = "read"
        syncs = 1

    eng = EngineDouble()
    win = MainWindow(eng, start=False)
    qtbot.addWidget(win)
    link = Link()
    indicator = attach_remote(win, link)

    def asked() -> int:
        return sum(isinstance(c, GetHistory) for c in eng.submitted)

    indicator.refresh()
    assert asked() == 0  # the first full state: nothing lost
    link.syncs = 2
    qtbot.waitUntil(lambda: asked() == 1, timeout=10_000)
    indicator.refresh()
    assert asked() == 1
