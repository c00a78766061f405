"""Fanout: the bridge's per-pump lists go to their receivers as a Qt direct connection
would hand them on, called in Python."""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject

from pmgui.ui.fanout import Fanout


class Receiver(QObject):
    def __init__(self, got: list) -> None:
        super().__init__()
        self.got = got

    def on_value(self, v: object) -> None:
        self.got.append(("receiver", v))


def test_receivers_get_the_value_in_the_order_connected(qtbot):
    f = Fanout()
    got: list = []
    f.connect(lambda v: got.append(("first", v)))
    f.connect(Receiver(got).on_value)
    f.connect(lambda v: got.append(("last", v)))
    value = [1, 2]
    f.emit(value)
    assert got == [("first", value), ("receiver", value), ("last", value)]
    assert all(v is value for _n, v in got)


def test_disconnect_removes_the_receiver_and_says_whether_it_was_there(qtbot):
    f = Fanout()
    got: list = []
    r = Receiver(got)
    f.connect(r.on_value)
    assert f.disconnect(r.on_value) is True  # an equal bound method, as Qt compares them
    assert f.disconnect(r.on_value) is False
    f.emit(1)
    assert got == [] and f.receivers == 0


def test_a_receiver_disconnecting_while_called_does_not_upset_the_emit(qtbot):
    f = Fanout()
    got: list = []

    def once(v: object) -> None:
        got.append(("once", v))
        f.disconnect(once)

    f.connect(once)
    f.connect(lambda v: got.append(("always", v)))
    f.emit(1)
    f.emit(2)
    assert got == [("once", 1), ("always", 1), ("always", 2)]


def test_a_deleted_qt_receiver_is_dropped_not_called(qtbot):
    f = Fanout()
    got: list = []
    r = Receiver(got)
    f.connect(r.on_value)
    f.connect(lambda v: got.append(("other", v)))
    import shiboken6

    shiboken6.delete(r)  # the C++ object is gone; the Python wrapper is still referenced
    f.emit(1)
    assert got == [("other", 1)]
    assert f.receivers == 1


def test_an_exception_in_one_receiver_is_reported_and_the_others_still_get_the_value(
        qtbot, monkeypatch):
    f = Fanout()
    got: list = []
    reported: list = []

    def broken(_v: object) -> None:
        raise ValueError("boom")

    f.connect(broken)
    f.connect(lambda v: got.append(v))
    monkeypatch.setattr(sys, "excepthook", lambda t, e, tb: reported.append(e))
    f.emit(7)
    assert got == [7]
    assert [str(e) for e in reported] == ["boom"]
