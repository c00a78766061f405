"""A closed position corrected in a headless engine reaches a window attached over the
engine service: the server sends `PositionCorrected` like every unkeyed event, the remote
client publishes it into the window's outbox, and the window's History view and "Today"
figure show the corrected realised P/L without a refresh. The notifier's daily summary and
the headless console take it too.

A real paper engine served on 127.0.0.1, its own ledger correcting a closed position's row
on its own journal (the venue's commission for the estimated fee of the close), a real
RemoteEngine and window offscreen."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace

from pmgui.cli import console_listener
from pmgui.domain.enums import OrderRole, OrderSide, OrderStatus, OrderType, PositionStatus, Side
from pmgui.domain.models import Fill, OrderRequest, Position
from pmgui.engine.events import PositionCorrected, PositionRemoved
from pmgui.service.client import RemoteEngine
from pmgui.service.notify import Alert, Notifier
from pmgui.service.settings import NotifyConfig
from pmgui.ui.fmt import fmt_money
from pmgui.ui.main_window import MainWindow
from pmgui.ui.remote import attach_remote
from tests.service_support import served_engine

SYM = "BTC/USDT:USDT"
PID = "corrected-1"


def _closed(now: float) -> Position:
    return Position(PID, SYM, Side.LONG, 0.0, 40_000.0, 10.0, now - 600, 1.0, sl=39_200.0,
                    initial_sl=39_200.0, status=PositionStatus.CLOSED, exit_price=41_000.0,
                    exit_reason="manual", fees_paid=40.0, realized_pnl=960.0,
                    closed_at=now)


class Close:
    """The closed position's market order, booked by the engine's ledger with an
    estimated fee of 20, on the engine's thread (`engine.query`)."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.now = time.time()
        req = OrderRequest("pmg-corr", SYM, OrderSide.SELL, OrderType.MARKET, 1.0,
                           reduce_only=True, position_id=PID, role=OrderRole.REDUCE,
                           reason="manual")
        self.fill = Fill("v:corr", "pmg-corr", SYM, OrderSide.SELL, 1.0, 41_000.0, 20.0,
                         self.now)

        def book(core) -> None:
            order = core.ledger.journal(req)
            core.ledger.mark_sent(req.client_id)
            self.done = replace(order, status=OrderStatus.FILLED, filled=1.0,
                                average=41_000.0, exchange_id="v1")
            core.ledger.apply(self.done, (self.fill,))
            core.store.save_position(_closed(self.now))

        engine.query(book).result(20)

    def commission(self, fee: float) -> None:
        """The venue tells the fill again with its commission."""
        self.engine.query(
            lambda core: core.ledger.apply(self.done, (replace(self.fill, fee=fee),))
        ).result(20)

    def row(self) -> Position:
        return self.engine.query(lambda core: core.store.load_position(PID)).result(20)


def test_a_remote_window_shows_the_correction_of_a_closed_position(qtbot, tmp_path) -> None:
    with served_engine(tmp_path) as (engine, service, tokens):
        assert engine.market(SYM) is not None
        close = Close(engine)
        remote = RemoteEngine(service.url, tokens["read"])
        heard: list[PositionCorrected] = []
        got = threading.Event()

        def listen(ev) -> None:  # the client's thread
            if isinstance(ev, PositionCorrected):
                heard.append(ev)
                got.set()

        remote.outbox.add_listener(listen)
        remote.start(timeout=60)
        win = MainWindow(remote)
        qtbot.addWidget(win)
        attach_remote(win, remote)
        try:
            history, today = win.history, win.account.labels["today"]
            qtbot.waitUntil(lambda: history.data is not None and any(
                t.position.id == PID for t in history.data.closed), timeout=60_000)
            (row,) = [r for r, t in enumerate(history.data.closed) if t.position.id == PID]
            before = history.data.realized_today
            assert history.table.item(row, 6).text() == "+$960.00"
            assert today.text() == f"Today {fmt_money(before)}"

            close.commission(12.5)  # 7.50 less than the estimate
            assert got.wait(30)
            stored = close.row()
            assert stored.realized_pnl == 967.5 and stored.fees_paid == 32.5
            (ev,) = heard
            assert ev.position == stored and "the venue's fee" in ev.what
            qtbot.waitUntil(lambda: history.table.item(row, 6).text() == "+$967.50",
                            timeout=30_000)
            assert today.text() == f"Today {fmt_money(before + 7.5)}"
        finally:
            win.bridge.stop()
            remote.stop()
            win.close()


def test_the_daily_summary_counts_the_corrected_pnl() -> None:
    sent: list[Alert] = []
    now = 1_000_000.0
    n = Notifier(NotifyConfig(urls=("json://unused",), min_interval=0),
                 send=lambda a: sent.append(a) or True, clock=lambda: now)
    pos = _closed(now)
    n.on_event(PositionRemoved(pos, now))
    assert "realized P/L +960.00" in n.summary(now).body
    n.on_event(PositionCorrected(pos.evolve(realized_pnl=967.5, fees_paid=32.5), now + 1,
                                 "the venue's fee"))
    body = n.summary(now).body
    assert "1 closed today (1 won), realized P/L +967.50" in body
    # the close's alert only: a correction is no alert of its own
    assert [a.key for a in n._queue.queue if a is not None] == [f"close:{PID}"]


def test_the_headless_console_logs_a_correction_in_one_line(caplog) -> None:
    class Engine:
        def market(self, _symbol: str):
            return None

    pos = _closed(1_000_000.0).evolve(realized_pnl=967.5, fees_paid=32.5)
    with caplog.at_level(logging.INFO, logger="pmgui"):
        console_listener(Engine())(PositionCorrected(pos, 1.0, "the venue's fee of 1 of "
                                                               "order pmg-corr"))
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"corrected closed {PID} {SYM} long: exit 41000")
    assert "fees 32.5" in line and "P/L 967.50" in line and "(the venue's fee of 1" in line
    assert "\n" not in line
