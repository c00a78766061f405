"""CommandRunner: results come back on the GUI thread, never blocking it; keys dedupe."""

from __future__ import annotations

import concurrent.futures
import threading

from PySide6.QtCore import QThread

from pmgui.domain.errors import InsufficientFunds
from pmgui.engine.commands import ClosePosition, CommandResult, SetAutomation
from pmgui.ui.runner import CommandRunner, submit_async
from tests.ui_doubles import EngineDouble


def test_result_from_another_thread_arrives_on_the_gui_thread(qtbot):
    eng = EngineDouble(hold=True)
    runner = CommandRunner(eng)
    seen = []
    gui = QThread.currentThread()
    runner.submit(SetAutomation("p1", False),
                  lambda res, err: seen.append((res, err, QThread.currentThread() is gui)))
    assert seen == []  # nothing waited for: submit returned at once
    worker = threading.Thread(target=lambda: eng.held[0].set_result(CommandResult(True, "ok")))
    with qtbot.waitSignal(runner.finished, timeout=5000):
        worker.start()
    worker.join()
    assert seen == [(CommandResult(True, "ok"), None, True)]


def test_typed_errors_refusals_and_cancellation_become_messages(qtbot):
    eng = EngineDouble(hold=True)
    runner = CommandRunner(eng)
    got = []
    for _ in range(3):
        runner.submit(ClosePosition("p1"), lambda res, err: got.append(err))
    eng.held[0].set_exception(InsufficientFunds("margin is insufficient for this order"))
    eng.held[1].set_result(CommandResult(False, "position p1 is not open"))
    eng.held[2].cancel()
    assert got == ["margin is insufficient for this order", "position p1 is not open",
                   "the command was cancelled"]
    assert runner.in_flight() == 0


def test_a_key_in_flight_is_not_sent_twice(qtbot):
    eng = EngineDouble(hold=True)
    runner = CommandRunner(eng)
    assert runner.submit(ClosePosition("p1"), key=("close", "p1"))
    assert not runner.submit(ClosePosition("p1"), key=("close", "p1"))
    assert runner.submit(ClosePosition("p2"), key=("close", "p2"))
    assert len(eng.submitted) == 2 and runner.busy(("close", "p1"))
    eng.held[0].set_result(CommandResult(True))
    assert not runner.busy(("close", "p1"))
    assert runner.submit(ClosePosition("p1"), key=("close", "p1"))


def test_a_broken_engine_is_reported_not_raised(qtbot):
    class Broken(EngineDouble):
        def submit(self, cmd):
            raise RuntimeError("engine thread is not running")
    runner = CommandRunner(Broken())
    got = []
    runner.submit(ClosePosition("p1"), lambda res, err: got.append(err))
    assert got == ["the engine did not accept the command: engine thread is not running"]


async def test_submit_async_awaits_the_engine():
    eng = EngineDouble()
    res = await submit_async(eng, ClosePosition("p1"))
    assert res == CommandResult(True, "ok")
    assert isinstance(eng.submit(ClosePosition("p2")), concurrent.futures.Future)
