"""Bridge: real Outbox in, typed Qt signals out, newest value always wins."""

from __future__ import annotations

import pytest

from pmgui.domain.enums import Reason
from pmgui.engine.events import AccountEvent, ErrorEvent, PositionRemoved
from pmgui.engine.outbox import Outbox
from pmgui.ui.bridge import Bridge
from tests.gil_support import times_let_go
from tests.ui_doubles import BTC, ETH, T0, action, position, snapshot, tick


class Recorder:
    def __init__(self, bridge: Bridge) -> None:
        self.got: dict[str, list] = {}
        for name in ("positionsChanged", "positionRemoved", "ticks", "candles", "actions",
                     "connection", "account", "error", "orderChanged"):
            getattr(bridge, name).connect(lambda v, n=name: self.got.setdefault(n, []).append(v))

    def __getitem__(self, name: str) -> list:
        return self.got.get(name, [])


@pytest.fixture
def setup(qtbot):
    ob = Outbox()
    br = Bridge(ob)
    return ob, br, Recorder(br)


def test_ticks_coalesce_to_newest_per_symbol(setup):
    ob, br, rec = setup
    for i, p in enumerate((40_000.0, 40_010.0, 40_020.0)):
        ob.publish(tick(BTC.symbol, p, T0 + i))
    ob.publish(tick(ETH.symbol, 3000.0, T0))
    br.pump()
    assert len(rec["ticks"]) == 1  # one list per pump
    assert [(t.symbol, t.price) for t in rec["ticks"][0]] == [(BTC.symbol, 40_020.0),
                                                              (ETH.symbol, 3000.0)]


def test_positions_wait_for_the_table_flush_and_carry_the_newest(setup):
    ob, br, rec = setup
    p = position()
    ob.publish(snapshot(p, 40_100.0, T0))
    br.pump()
    assert rec["positionsChanged"] == []  # table rate: not on the fast pump
    ob.publish(snapshot(p, 40_200.0, T0 + 1))
    br.pump()
    br.flush_table()
    assert len(rec["positionsChanged"]) == 1
    (snaps,) = rec["positionsChanged"]
    assert [s.mark for s in snaps] == [40_200.0]
    br.flush_table()
    assert len(rec["positionsChanged"]) == 1  # nothing new, nothing emitted


def test_removed_position_is_not_resurrected(setup):
    ob, br, rec = setup
    p = position()
    ob.publish(snapshot(p, 40_100.0, T0))
    br.pump()  # snapshot now pending inside the bridge
    ob.publish(PositionRemoved(p, T0 + 1))
    ob.publish(snapshot(p, 40_050.0, T0 + 0.5))  # a late, older snapshot
    br.flush_now()
    assert [r.position.id for r in rec["positionRemoved"]] == ["p1"]
    assert rec["positionsChanged"] == []


def test_unkeyed_events_are_never_dropped_and_keep_order(setup):
    ob, br, rec = setup
    for i in range(5):
        ob.publish(action("p1", BTC.symbol, reason=Reason.TRAILING, price=40_000.0 + i))
    ob.publish(ErrorEvent("exchange said no", T0))
    br.pump()
    (batch,) = rec["actions"]  # one list per pump
    assert [a.action.price for a in batch] == [40_000.0 + i for i in range(5)]
    assert [e.message for e in rec["error"]] == ["exchange said no"]


def test_account_keeps_the_newest_by_time(setup):
    ob, br, rec = setup
    ob.publish(AccountEvent(100.0, 100.0, "USDT", T0 + 5))
    br.pump()
    ob.publish(AccountEvent(90.0, 90.0, "USDT", T0 + 1))  # older: must not win
    br.flush_now()
    assert [a.equity for a in rec["account"]] == [100.0]


def test_timers_deliver_without_manual_pumping(setup, qtbot):
    ob, br, rec = setup
    br.start()
    try:
        ob.publish(snapshot(position(), 40_123.0, T0))
        qtbot.waitUntil(lambda: len(rec["positionsChanged"]) == 1, timeout=3000)
        assert rec["positionsChanged"][0][0].mark == 40_123.0
    finally:
        br.stop()
    assert not br.running


def test_rates_above_the_caps_are_refused():
    with pytest.raises(ValueError, match="rates"):
        Bridge(Outbox(), table_hz=60)
    with pytest.raises(ValueError, match="rates"):
        Bridge(Outbox(), chart_hz=0)


def test_lists_are_handed_on_as_made_not_converted_per_receiver(setup):
    """A storm's lists (hundreds of snapshots, prices, actions) go to every receiver as the
    one list the bridge made: a Qt list signal converted each element to a QVariant and
    back per receiver."""
    ob, br, rec = setup
    again: dict[str, list] = {}
    for name in ("positionsChanged", "ticks", "actions"):
        getattr(br, name).connect(lambda v, n=name: again.setdefault(n, []).append(v))
    p = position()
    ob.publish(snapshot(p, 40_100.0, T0))
    ob.publish(tick(BTC.symbol, 40_100.0, T0))
    ob.publish(action(p.id, BTC.symbol))
    br.flush_now()
    for name in ("positionsChanged", "ticks", "actions"):
        (first,) = rec[name]
        (second,) = again[name]
        assert type(first) is list and len(first) == 1
        assert first is second, name  # the same list, not a copy for each receiver


def test_a_pump_hands_its_lists_on_without_letting_the_interpreter_lock_go(setup):
    """A Qt signal lets the interpreter lock go inside each emit and around each Python
    slot, and the engine's busy thread takes it there (tests.gil_support): the bridge hands
    a storm's pumps to its receivers (five here, as in the window) without letting it go."""
    ob, br, rec = setup
    for name in ("positionsChanged", "ticks", "actions"):
        getattr(br, name).connect(lambda _v: None)
    p = position()

    def pumps() -> None:
        for i in range(200):
            ob.publish(snapshot(p, 40_000.0 + i, T0 + i))
            ob.publish(tick(BTC.symbol, 40_000.0 + i, T0 + i))
            ob.publish(action(p.id, BTC.symbol, ts=T0 + i))
            br.pump()
            br.flush_table()

    assert times_let_go(pumps) == 0
    assert len(rec["positionsChanged"]) == 200 and len(rec["ticks"]) == 200
