"""Store: exact round trips, the order journal, idempotent fills, actions, equity, settings."""

from __future__ import annotations

import json
import math
import sqlite3
import tempfile
from dataclasses import fields, replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmgui.domain.enums import (
    ActionType,
    OrderRole,
    OrderSide,
    OrderStatus,
    OrderType,
    PositionStatus,
    Reason,
    Side,
    StopKind,
)
from pmgui.domain.errors import StoreError, ValidationError
from pmgui.domain.models import (
    Action,
    Fill,
    Order,
    OrderRequest,
    Position,
    Tranche,
    frozen_map,
)
from pmgui.store import Store
from pmgui.store.serialize import ACTION_COLUMNS, action_from_record


@pytest.fixture
def store(db_path):
    s = Store.open(db_path)
    yield s
    s.close()


def full_position(pid: str = "p1", **kw) -> Position:
    """A position with every field set to a non-default value."""
    base = dict(
        id=pid, symbol="BTC/USDT:USDT", side=Side.SHORT, qty=0.125, entry=43251.7,
        leverage=12.5, opened_at=1_700_000_000.123456, initial_qty=0.25, sl=44000.1,
        tp=41000.0, initial_sl=44500.5, sl_kind=StopKind.TRAILING, trailing=43900.3,
        liquidation=46789.01, fee_rate=0.0004, contract_size=0.001, preset="breakout",
        overrides=frozen_map({"trailing.mode": "chandelier", "trailing.atr_mult": 2.5,
                              "r_targets.tp1_r": 1, "add_on.enabled": False,
                              "x.none": None}),
        automation=False, status=PositionStatus.OPEN, peak_roi=0.1834,
        best_price=42000.25, flags=frozenset({"tp1_done", "breakeven_set"}),
        realized_pnl=-12.345678901234, fees_paid=3.1e-3,
        tranches=(
            Tranche("t1", 0.2, 43300.0, 1_700_000_000.0, sl=44500.5, tp=41000.0),
            Tranche("t2", 0.05, 43056.5, 1_700_000_100.5, source="add_on"),
        ),
        closed_at=None, exit_price=None, exit_reason=None, exchange="binanceusdm",
    )
    base.update(kw)
    return Position(**base)


def minimal_position(pid: str = "m1") -> Position:
    return Position(id=pid, symbol="ETH/USDT:USDT", side=Side.LONG, qty=1.0, entry=2000.0,
                    leverage=5, opened_at=1_700_000_500.0, initial_qty=1.0)


def test_position_round_trip_every_field(store):
    pos = full_position()
    store.save_position(pos)
    loaded = store.load_position("p1")
    assert loaded == pos
    for f in fields(Position):  # field by field, so a failure names the field
        assert getattr(loaded, f.name) == getattr(pos, f.name), f.name
    assert isinstance(loaded.side, Side) and isinstance(loaded.sl_kind, StopKind)
    assert isinstance(loaded.flags, frozenset) and isinstance(loaded.tranches, tuple)
    tp1_r = loaded.overrides["r_targets.tp1_r"]
    assert tp1_r == 1 and type(tp1_r) is int
    assert loaded.overrides["add_on.enabled"] is False
    with pytest.raises(TypeError):
        loaded.overrides["x"] = 1  # type: ignore[index]


def test_position_round_trip_defaults_and_none_fields(store):
    pos = minimal_position()
    store.save_position(pos)
    assert store.load_position("m1") == pos
    assert store.load_position("nope") is None


def test_save_position_updates_and_replaces_tranches(store):
    pos = full_position()
    store.save_position(pos)
    moved = pos.evolve(sl=43800.0, sl_kind=StopKind.BREAKEVEN, tranches=pos.tranches[:1],
                       flags=pos.flags | {"add_on_executed"}, qty=0.2)
    store.save_position(moved)
    assert store.load_position("p1") == moved
    assert store.db["tranches"].count == 1
    assert store.db["positions"].count == 1


def test_load_open_and_closed_positions(store):
    a = full_position("a", opened_at=10.0)
    b = minimal_position("b")
    c = full_position("c", opened_at=5.0, status=PositionStatus.CLOSED, closed_at=50.0,
                      exit_price=41000.0, exit_reason="take_profit", qty=0.0)
    d = minimal_position("d").evolve(status=PositionStatus.CLOSED, closed_at=60.0,
                                     exit_price=1900.0, exit_reason="stop_loss")
    for p in (b, a, c, d):
        store.save_position(p)
    assert store.load_open_positions() == [a, b]
    assert store.closed_positions() == [d, c]
    assert store.closed_positions(limit=1) == [d]
    with pytest.raises(ValidationError):
        store.closed_positions(limit=-1)


@pytest.mark.parametrize("field,value", [("entry", math.nan), ("qty", math.inf),
                                         ("sl", -math.inf), ("best_price", math.nan)])
def test_non_finite_position_refused_and_nothing_written(store, field, value):
    good = full_position()
    store.save_position(good)
    with pytest.raises(ValidationError) as ei:
        store.save_position(good.evolve(**{field: value}))
    assert field in str(ei.value)
    assert store.load_position("p1") == good


def test_bad_overrides_and_tranches_refused(store):
    with pytest.raises(ValidationError):
        store.save_position(full_position(overrides=frozen_map({"a": math.nan})))
    with pytest.raises(ValidationError):
        store.save_position(full_position(overrides={"a": [1, 2]}))  # type: ignore[dict-item]
    dup = (Tranche("t", 1.0, 1.0, 1.0), Tranche("t", 1.0, 1.0, 1.0))
    with pytest.raises(ValidationError):
        store.save_position(full_position(tranches=dup))
    with pytest.raises(ValidationError):
        store.save_position(full_position(tranches=(Tranche("t", 1.0, math.nan, 1.0),)))
    assert store.db["positions"].count == 0 and store.db["tranches"].count == 0


_floats = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(qty=_floats, entry=_floats, sl=st.none() | _floats, peak=_floats,
       flags=st.frozensets(st.text(max_size=12), max_size=4),
       overrides=st.dictionaries(st.text(max_size=10),
                                 st.none() | st.booleans() | st.integers(-2**53, 2**53)
                                 | _floats | st.text(max_size=10), max_size=4))
def test_position_round_trip_property(qty, entry, sl, peak, flags, overrides):
    with tempfile.TemporaryDirectory() as d, Store.open(Path(d) / "h.db") as s:
        pos = full_position(qty=qty, entry=entry, sl=sl, peak_roi=peak, flags=flags,
                            overrides=frozen_map(overrides))
        s.save_position(pos)
        assert s.load_position(pos.id) == pos


# ---------------------------------------------------------------- orders / journal

def sl_request(cid: str = "c-sl-1", pid: str | None = "p1") -> OrderRequest:
    return OrderRequest(client_id=cid, symbol="BTC/USDT:USDT", side=OrderSide.BUY,
                        type=OrderType.STOP_MARKET, amount=0.125, trigger_price=44000.1,
                        reduce_only=True, position_id=pid, role=OrderRole.STOP_LOSS,
                        reason="stop_loss")


def test_journal_order_is_pending_and_linked(store):
    o = store.journal_order(sl_request(), ts=1000.5)
    assert o.status is OrderStatus.PENDING and o.created_at == 1000.5
    assert store.order("c-sl-1") == o
    assert store.pending_orders() == [o]
    assert store.open_orders() == [o]
    assert store.open_orders("p1") == [o]
    assert store.open_orders("other") == []
    assert store.linked_orders("p1") == [o]


def test_journal_same_request_twice_is_idempotent_but_conflicts_refused(store):
    first = store.journal_order(sl_request(), ts=1.0)
    again = store.journal_order(sl_request(), ts=2.0)
    assert again == first and store.db["orders"].count == 1
    other = OrderRequest(client_id="c-sl-1", symbol="BTC/USDT:USDT", side=OrderSide.SELL,
                         type=OrderType.MARKET, amount=1.0)
    with pytest.raises(ValidationError, match="already used"):
        store.journal_order(other, ts=3.0)
    assert store.order("c-sl-1") == first
    acked = Order(**{**{f.name: getattr(first, f.name) for f in fields(Order)},
                     "status": OrderStatus.OPEN, "exchange_id": "E"})
    store.save_order(acked)
    with pytest.raises(ValidationError, match="already sent"):
        store.journal_order(sl_request(), ts=4.0)
    assert store.order("c-sl-1") == acked


def test_order_lifecycle_and_round_trip(store):
    o = store.journal_order(sl_request(), ts=1.0)
    acked = Order(client_id=o.client_id, symbol=o.symbol, side=o.side, type=o.type,
                  amount=o.amount, status=OrderStatus.OPEN, exchange_id="ex-77",
                  price=None, trigger_price=44000.1, filled=0.0, average=None,
                  reduce_only=True, position_id="p1", role=OrderRole.STOP_LOSS,
                  reason="stop_loss", created_at=1.0, updated_at=2.5, error=None)
    store.save_order(acked)
    assert store.order(o.client_id) == acked
    assert store.pending_orders() == []
    assert store.open_orders("p1") == [acked]
    done = acked.__class__(**{**{f.name: getattr(acked, f.name) for f in fields(Order)},
                              "status": OrderStatus.FILLED, "filled": 0.125,
                              "average": 44001.2, "updated_at": 3.0, "error": "x"})
    store.save_order(done)
    assert store.order(o.client_id) == done
    assert store.open_orders() == []
    assert store.linked_orders("p1") == [done]


def test_every_order_field_round_trips(store):
    o = Order(client_id="c9", symbol="SOL/USDT:USDT", side=OrderSide.SELL,
              type=OrderType.LIMIT, amount=3.3, status=OrderStatus.REJECTED, exchange_id="e9",
              price=101.25, trigger_price=100.5, filled=1.1, average=101.2, reduce_only=True,
              position_id="pX", role=OrderRole.ADD, reason="add_on", created_at=5.5,
              updated_at=6.5, error="margin is insufficient")
    store.save_order(o)
    assert store.order("c9") == o
    bare = Order(client_id="c10", symbol="S", side=OrderSide.BUY, type=OrderType.MARKET,
                 amount=1.0, status=OrderStatus.OPEN)
    store.save_order(bare)
    assert store.order("c10") == bare
    assert store.linked_orders("pX") == [o]


def test_save_order_keeps_a_links_role_unless_relinked(store):
    """An order report keeps the role its position link has; a bound entry or an adopted
    order (`relink`) gives the link the order's role, in the same write."""
    def role() -> str:
        return store.db.execute("SELECT role FROM order_links WHERE position_id = 'p1' "
                                "AND client_id = 'c-sl-1'").fetchone()[0]

    o = store.journal_order(sl_request(), ts=1.0)
    assert role() == OrderRole.STOP_LOSS.value
    as_tp = Order(**{**{f.name: getattr(o, f.name) for f in fields(Order)},
                     "status": OrderStatus.OPEN, "role": OrderRole.TAKE_PROFIT})
    store.save_order(as_tp)
    assert role() == OrderRole.STOP_LOSS.value
    store.save_order(as_tp, relink=True)
    assert role() == OrderRole.TAKE_PROFIT.value
    assert store.db["order_links"].count == 1


def test_link_order_requires_a_journaled_order(store):
    with pytest.raises(ValidationError, match="not in the journal"):
        store.link_order("p1", "ghost", OrderRole.TAKE_PROFIT)
    store.journal_order(sl_request("c-tp", pid=None), ts=1.0)
    store.link_order("p1", "c-tp", OrderRole.TAKE_PROFIT)
    assert [o.client_id for o in store.linked_orders("p1")] == ["c-tp"]
    assert store.open_orders("p1")[0].client_id == "c-tp"
    with pytest.raises(ValidationError):
        store.link_order("p1", "c-tp", "bogus")  # type: ignore[arg-type]


def test_non_finite_order_refused(store):
    bad = OrderRequest(client_id="c", symbol="S", side=OrderSide.BUY, type=OrderType.LIMIT,
                       amount=1.0, price=math.nan)
    with pytest.raises(ValidationError, match="price"):
        store.journal_order(bad, ts=1.0)
    assert store.order("c") is None


# ---------------------------------------------------------------- fills

def fill(fid: str = "f1", **kw) -> Fill:
    base = dict(id=fid, order_client_id="c-sl-1", symbol="BTC/USDT:USDT",
                side=OrderSide.BUY, qty=0.125, price=44001.2, fee=2.2000600000000003,
                ts=1234.5, exchange_order_id="ex-77", liquidation=True)
    base.update(kw)
    return Fill(**base)


def test_fill_round_trip_and_idempotent(store):
    f = fill()
    assert store.record_fill(f, "p1") is True
    assert store.record_fill(f, "p1") is False
    assert store.record_fill(fill(qty=9.0), "p1") is False  # same id: ignored, not updated
    assert store.fills() == [f]
    assert store.fills("p1") == [f]
    g = fill("f2", order_client_id=None, exchange_order_id=None, liquidation=False, ts=1.0)
    assert store.record_fill(g, None) is True
    assert store.fills() == [g, f]
    assert store.fills("p1") == [f]
    # a fill first seen without a position is attached to it later, still "not new"
    assert store.record_fill(g, "p2") is False
    assert store.fills("p2") == [g]


def test_bad_fill_refused(store):
    with pytest.raises(ValidationError, match="price"):
        store.record_fill(fill(price=math.inf), "p1")
    assert store.fills() == []


# ---------------------------------------------------------------- actions

def test_action_round_trip(store):
    a = Action(type=ActionType.MOVE_SL, reason=Reason.TRAILING, position_id="p1",
               price=43123.4, qty=None, sl=43900.3, tp=None, rule="trailing",
               priority=7, ts=1700.25,
               inputs=frozen_map({"roi": 0.123, "mode": "adaptive", "n": 3, "ok": True,
                                  "none": None}),
               flags=frozenset({"x", "y"}), stop_kind=StopKind.TRAILING, limit=True)
    aid = store.record_action(a, symbol="BTC/USDT:USDT", ok=False, detail="exchange refused")
    [rec] = store.actions("p1")
    assert rec["id"] == aid and rec["symbol"] == "BTC/USDT:USDT"
    assert rec["ok"] is False and rec["detail"] == "exchange refused"
    assert action_from_record(rec) == a
    json.dumps(rec, allow_nan=False)  # plain JSON for the UI/CLI


def test_actions_newest_first_limit_and_filter(store):
    for i in range(5):
        store.record_action(Action(type=ActionType.CLOSE, reason=Reason.MANUAL,
                                   position_id=f"p{i % 2}", price=100.0 + i, qty=1.0, ts=i),
                            symbol="S")
    assert [r["price"] for r in store.actions()] == [104.0, 103.0, 102.0, 101.0, 100.0]
    assert [r["price"] for r in store.actions(limit=2)] == [104.0, 103.0]
    assert [r["price"] for r in store.actions("p1")] == [103.0, 101.0]
    assert action_from_record(store.actions("p0", limit=1)[0]).stop_kind is None


def test_action_non_finite_inputs_become_null_but_price_must_be_finite(store):
    a = Action(type=ActionType.CLOSE, reason=Reason.SMART_TAKE_PROFIT, position_id="p",
               price=1.0, inputs=frozen_map({"tp_distance": math.inf, "m": 0.2}))
    store.record_action(a, symbol="S")
    assert store.actions()[0]["inputs"] == {"tp_distance": None, "m": 0.2}
    with pytest.raises(ValidationError):
        store.record_action(Action(type=ActionType.CLOSE, reason=Reason.MANUAL,
                                   position_id="p", price=math.nan), symbol="S")
    assert len(store.actions()) == 1


# ---------------------------------------------------------------- equity, settings

def test_equity_curve(store):
    store.record_equity(10.0, 10_000.0, 9_000.0)
    store.record_equity(5.0, 9_990.5, 9_000.0)
    store.record_equity(20.0, 10_050.0, 9_100.0)
    store.record_equity(20.0, 10_060.0, 9_100.0)  # same ts: replaced
    assert store.equity_curve() == [(5.0, 9990.5), (10.0, 10000.0), (20.0, 10060.0)]
    assert store.equity_curve(since=10.0) == [(10.0, 10000.0), (20.0, 10060.0)]
    with pytest.raises(ValidationError):
        store.record_equity(30.0, math.nan, 1.0)
    assert len(store.equity_curve()) == 3


def test_settings(store):
    assert store.get_setting("ui.theme") is None
    assert store.get_setting("ui.theme", "dark") == "dark"
    store.set_setting("ui.theme", "light")
    store.set_setting("layout", {"splitter": [1, 2], "visible": True, "zoom": 1.5})
    assert store.get_setting("ui.theme") == "light"
    assert store.get_setting("layout") == {"splitter": [1, 2], "visible": True, "zoom": 1.5}
    store.set_setting("ui.theme", None)
    assert store.get_setting("ui.theme", "dark") is None  # stored null is not "missing"
    with pytest.raises(ValidationError):
        store.set_setting("bad", math.inf)
    with pytest.raises(ValidationError):
        store.set_setting("bad", object())
    with pytest.raises(ValidationError):
        store.set_setting("", 1)
    assert store.get_setting("bad", "absent") == "absent"


# ---------------------------------------------------------------- transactions

def test_transaction_groups_writes_and_rolls_back_on_error(store):
    with pytest.raises(RuntimeError), store.transaction():
        store.save_position(full_position())
        store.journal_order(sl_request(), ts=1.0)
        raise RuntimeError("boom")
    assert store.load_position("p1") is None and store.order("c-sl-1") is None
    with store.transaction():
        store.save_position(full_position())
        with pytest.raises(ValidationError), store.transaction():  # nested: savepoint
            store.journal_order(sl_request(), ts=1.0)
            store.record_fill(fill(price=math.nan), "p1")
        store.record_fill(fill(), "p1")
    assert store.load_position("p1") is not None
    assert store.order("c-sl-1") is None  # the inner block alone was rolled back
    assert store.fills() == [fill()]


def test_savepoints_are_named_by_depth_so_their_statements_stay_prepared(store):
    """Each savepoint statement is compiled once and kept in the connection's statement
    cache only if its text comes back: many nested blocks use one name per depth, and a
    block rolled back at depth 2 still leaves depth 1's writes (the innermost name wins)."""
    seen: list[str] = []
    store.db.conn.set_trace_callback(seen.append)
    try:
        for k in range(5):
            with store.transaction():
                store.save_position(full_position(f"p{k}"))
                with store.transaction():  # depth 1, inside it depth 2 rolled back
                    store.record_fill(fill(f"f{k}"), f"p{k}")
                    with pytest.raises(ValidationError), store.transaction():
                        store.journal_order(sl_request(f"c{k}", f"p{k}"), ts=1.0)
                        store.record_fill(fill(price=math.nan), f"p{k}")
    finally:
        store.db.conn.set_trace_callback(None)
    names = {s.split()[-1] for s in seen if s.startswith(("SAVEPOINT", "RELEASE"))}
    assert names == {"pmgui_sp1", "pmgui_sp2", "pmgui_sp3"}
    assert all(store.load_position(f"p{k}") is not None for k in range(5))
    assert sorted(f.id for f in store.fills()) == [f"f{k}" for k in range(5)]
    assert all(store.order(f"c{k}") is None for k in range(5))


def test_a_whole_block_opens_no_savepoints_and_commits_all_or_nothing(store):
    """`transaction(whole=True)`: its writes run without savepoints of their own (nested
    blocks included); a write that fails inside rolls the whole block back, even when the
    body caught the error and went on; nested inside another block it is an ordinary one."""
    seen: list[str] = []
    store.db.conn.set_trace_callback(seen.append)
    try:
        with store.transaction(whole=True):
            store.save_position(full_position("p1"))
            with store.transaction():
                store.journal_order(sl_request("c1", "p1"), ts=1.0)
                store.record_fill(fill("f1"), "p1")
    finally:
        store.db.conn.set_trace_callback(None)
    assert not [s for s in seen if "SAVEPOINT" in s]
    assert seen.count("BEGIN") == 1 and seen.count("COMMIT") == 1
    assert store.load_position("p1") is not None and store.order("c1") is not None
    assert [f.id for f in store.fills()] == ["f1"]

    with pytest.raises(StoreError, match="nothing of it was written"), \
            store.transaction(whole=True):
        store.save_position(full_position("p2"))
        with pytest.raises(ValidationError):  # c1 is taken: caught, the block fails whole
            store.journal_order(sl_request("c1", "p2"), ts=2.0)
        store.record_fill(fill("f3"), "p2")
    assert store.load_position("p2") is None
    assert [f.id for f in store.fills()] == ["f1"]

    with store.transaction(), store.transaction(whole=True):  # nested: savepoints as ever
        store.save_position(full_position("p3"))
        with pytest.raises(ValidationError):
            store.journal_order(sl_request("c1", "p3"), ts=3.0)
    assert store.load_position("p3") is not None


def test_writes_are_committed_when_the_method_returns(store, db_path):
    store.save_position(full_position())
    other = sqlite3.connect(db_path)  # a second connection sees it without any close/commit
    try:
        assert other.execute("SELECT count(*) FROM positions").fetchone()[0] == 1
    finally:
        other.close()


# ---------------------------------------------------------------- restore / report

def test_restore_and_positions_report(store):
    pos = full_position()
    store.save_position(pos)
    store.save_position(full_position("closed", status=PositionStatus.CLOSED, closed_at=9.0))
    sl = store.journal_order(sl_request(), ts=1.0)
    store.save_order(Order(**{**{f.name: getattr(sl, f.name) for f in fields(Order)},
                              "status": OrderStatus.OPEN, "exchange_id": "E1"}))
    tp = store.journal_order(OrderRequest(
        client_id="c-tp-1", symbol=pos.symbol, side=OrderSide.BUY,
        type=OrderType.TAKE_PROFIT_MARKET, amount=0.125, trigger_price=41000.0,
        reduce_only=True, position_id="p1", role=OrderRole.TAKE_PROFIT), ts=2.0)
    store.journal_order(OrderRequest(  # a market close is not a protective order
        client_id="c-close", symbol=pos.symbol, side=OrderSide.BUY, type=OrderType.MARKET,
        amount=0.1, reduce_only=True, position_id="p1", role=OrderRole.REDUCE), ts=3.0)
    state = store.restore()
    assert state.positions == (pos,)
    assert [o.client_id for o in state.pending_orders] == ["c-tp-1", "c-close"]
    assert [o.client_id for o in state.open_orders] == ["c-sl-1", "c-tp-1", "c-close"]

    [rep] = store.positions_report()
    json.dumps(rep, allow_nan=False)
    assert {k: rep[k] for k in ("id", "symbol", "side", "qty", "entry", "leverage", "sl", "tp",
                                "trailing", "liquidation", "preset", "automation",
                                "opened_at")} == {
        "id": "p1", "symbol": "BTC/USDT:USDT", "side": "short", "qty": 0.125,
        "entry": 43251.7, "leverage": 12.5, "sl": 44000.1, "tp": 41000.0,
        "trailing": 43900.3, "liquidation": 46789.01, "preset": "breakout",
        "automation": False, "opened_at": 1_700_000_000.123456}
    assert rep["orders"] == [
        {"client_id": "c-sl-1", "role": "stop_loss", "type": "stop_market", "side": "buy",
         "amount": 0.125, "trigger_price": 44000.1, "status": "open", "exchange_id": "E1"},
        {"client_id": tp.client_id, "role": "take_profit", "type": "take_profit_market",
         "side": "buy", "amount": 0.125, "trigger_price": 41000.0, "status": "pending",
         "exchange_id": None},
    ]


def test_closed_store_refuses_use(db_path):
    s = Store.open(db_path)
    s.close()
    s.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        s.save_position(minimal_position())
    with pytest.raises(StoreError, match="closed"):
        s.load_open_positions()


def test_disk_full_is_a_store_error_and_loses_nothing_committed(store):
    store.save_position(full_position("keep"))
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages}")  # the "disk" is now full
    big = full_position("big", overrides=frozen_map({f"k{i}": "x" * 200 for i in range(100)}))
    with pytest.raises(StoreError, match="save_position.*full"):
        store.save_position(big)
    with pytest.raises(StoreError, match="transaction.*full"), store.transaction():
        store.db["settings"].insert({"key": "k", "value": json.dumps("y" * 50_000)})
    assert store.load_position("big") is None
    assert store.load_position("keep") == full_position("keep")
    assert not store.db.conn.in_transaction
    store.db.execute("PRAGMA max_page_count = 1073741823")
    store.save_position(big)  # usable again once there is room
    assert store.load_position("big") == big


def test_undecodable_stored_data_is_a_store_error(store):
    store.save_position(full_position())
    store.db.execute("UPDATE positions SET side = 'sideways' WHERE id = 'p1'")
    with pytest.raises(StoreError, match="load_open_positions.*sideways"):
        store.load_open_positions()
    store.db.execute("UPDATE positions SET side = 'short', flags = '{broken' WHERE id = 'p1'")
    with pytest.raises(StoreError, match="load_position"):
        store.load_position("p1")


def test_journal_synced_off_the_loop_is_committed_before_its_wal_sync(tmp_path):
    """`journal_order(sync=False)` commits (a killed process keeps it) and `sync_wal` then
    fsyncs it; inside an open transaction the WAL sync is not offered (it would come before
    the commit)."""
    from pmgui.domain.enums import OrderRole, OrderSide, OrderType
    from pmgui.domain.models import OrderRequest
    from pmgui.store import Store

    store = Store.open(tmp_path / "j.db")
    req = OrderRequest("c-1", "BTC/USDT:USDT", OrderSide.SELL, OrderType.STOP_MARKET, 1.0,
                       trigger_price=90.0, reduce_only=True, role=OrderRole.STOP_LOSS)
    store.journal_order(req, 1.0, sync=False)
    assert store.can_sync_wal
    store.sync_wal()
    with Store.open(tmp_path / "j.db", readonly=True) as reader:  # committed, visible
        assert reader.order("c-1") is not None
    with store.transaction():
        assert not store.can_sync_wal
    store.close()
    assert not store.can_sync_wal


def test_checkpoints_run_in_the_background_and_stop_with_the_store(tmp_path):
    """`checkpoint_in_background`: SQLite's inline checkpoint (a stall of the writing thread
    at an arbitrary commit) becomes a backstop; a thread of its own copies the WAL into the
    database once enough pages wait there, and stops when the store closes."""
    import os
    import time

    store = Store.open(tmp_path / "c.db")
    assert store.checkpoint_in_background(pages=8, interval=0.005)
    assert store.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] > 1000
    worker = store._checkpointer
    assert worker is not None and worker.is_alive()
    for i in range(50):  # each commit appends pages to the WAL
        store.set_setting(f"k{i}", "x" * 2000)
    shm = os.open(str(tmp_path / "c.db-shm"), os.O_RDONLY)
    deadline = time.monotonic() + 30
    while worker.checkpoints == 0 or worker.waiting(shm) >= 8:  # wait for the condition
        assert time.monotonic() < deadline, "no background checkpoint"
        time.sleep(0.005)
    os.close(shm)
    assert store.get_setting("k49") == "x" * 2000
    store.close()
    assert not worker.is_alive()
    assert not (tmp_path / "c.db-wal").exists()  # the last connection removed the WAL
    with Store.open(tmp_path / "c.db", readonly=True) as reader:
        assert reader.get_setting("k0") == "x" * 2000
    readonly = Store.open(tmp_path / "c.db", readonly=True)
    assert not readonly.checkpoint_in_background()
    readonly.close()


def _peek(db_path) -> Store:
    """What another process would read now (committed rows only)."""
    return Store.open(db_path, readonly=True)


def _move(pid: str, price: float, ts: float) -> Action:
    return Action(type=ActionType.MOVE_SL, reason=Reason.TRAILING, position_id=pid,
                  price=price, sl=price - 1, rule="trailing", ts=ts,
                  stop_kind=StopKind.TRAILING)


def test_a_due_window_is_written_behind_in_chunks_in_the_order_recorded(store, db_path):
    """A storm's backlog is written a chunk per call (no long commit holds up the loop); the
    log keeps the order of the decisions (ids are taken when recorded)."""
    store.behind_chunk = 16
    for i in range(40):
        store.save_position(minimal_position(f"m{i}"))
    for i in range(40):  # as the engine does: the decision's line, then the state after it
        store.record_action_behind(_move(f"m{i}", 2000.0 + i, float(i)), symbol="ETH")
        store.save_position_behind(minimal_position(f"m{i}").evolve(sl=1900.0 + i))
    assert store.flush_behind(older_than=3600.0) == 0  # the window is not due yet
    store._behind_since -= 7200.0  # it is now (white-box: no waiting in tests)
    written = []
    while store.behind:
        n = store.flush_behind(older_than=3600.0)
        assert 0 < n <= 16
        written.append(n)
    assert sum(written) == 80 and len(written) == 5
    with _peek(db_path) as reader:
        assert {p.id: p.sl for p in reader.load_open_positions()} == \
            {f"m{i}": 1900.0 + i for i in range(40)}
        assert [r["price"] for r in reader.actions(limit=100)] == \
            [2000.0 + i for i in reversed(range(40))]


def test_a_chunked_write_behind_takes_the_positions_in_their_rows_order(store, db_path):
    """The chunks of a due window take the queued positions in the order of their rows in
    the table, not the queue's (each chunk's rows on neighbouring pages: fewer pages per
    commit); a position queued again after the pass began waits for the next pass, and the
    queue still drains whole with every row at its last state."""
    store.behind_chunk = 8
    for i in range(24):
        store.save_position(minimal_position(f"m{i}"))
    for i in reversed(range(24)):  # queued in the reverse of the rows' order
        store.save_position_behind(minimal_position(f"m{i}").evolve(sl=1900.0 + i))
    store._behind_since -= 7200.0  # the window is due (white-box: no waiting in tests)

    def written() -> dict[str, float]:
        with _peek(db_path) as reader:
            return {p.id: p.sl for p in reader.load_open_positions() if p.sl is not None}

    assert store.flush_behind(older_than=3600.0) == 8
    assert set(written()) == {f"m{i}" for i in range(8)}  # the first rows, not m23..m16
    store.save_position_behind(minimal_position("m0").evolve(sl=1800.0))  # queued again
    store._behind_resume = 0.0
    assert store.flush_behind(older_than=3600.0) == 8
    assert written() == {f"m{i}": 1900.0 + i for i in range(16)}  # the pass goes on
    while store.behind:
        store._behind_resume = 0.0
        store.flush_behind(older_than=3600.0)
    with _peek(db_path) as reader:
        assert {p.id: p.sl for p in reader.load_open_positions()} == \
            {f"m{i}": 1800.0 if i == 0 else 1900.0 + i for i in range(24)}


def test_the_tick_paths_chunks_are_spaced_not_written_on_consecutive_ticks(store, db_path):
    """After a chunk, `behind_due` holds the next one back for BEHIND_PACE times what the
    chunk took (a run of chunks on consecutive ticks is a backlog every tick behind it waits
    out); once the pause is over the next chunk is due, and the queue still drains whole."""
    store.behind_chunk = 8
    for i in range(20):
        store.save_position(minimal_position(f"m{i}"))
        store.save_position_behind(minimal_position(f"m{i}").evolve(sl=1900.0 + i))
    store._behind_since -= 7200.0  # the window is due (white-box: no waiting in tests)
    assert store.behind_due(3600.0)
    assert store.flush_behind(older_than=3600.0) == 8
    assert store.behind == 12 and not store.behind_due(3600.0)  # paced: not on the next tick
    chunks = 1
    while store.behind:
        store._behind_resume -= 7200.0  # the pause is over (white-box)
        assert store.behind_due(3600.0)
        assert 0 < store.flush_behind(older_than=3600.0) <= 8
        chunks += 1
    assert chunks == 3 and not store.behind_due(0.0)
    with _peek(db_path) as reader:
        assert {p.id: p.sl for p in reader.load_open_positions()} == \
            {f"m{i}": 1900.0 + i for i in range(20)}


def test_a_queue_past_the_backlog_limit_is_written_without_pauses(store, monkeypatch):
    """Pacing never lets the queue grow without bound: past BEHIND_BACKLOG rows the next
    chunk is due at once."""
    import pmgui.store.db as db

    monkeypatch.setattr(db, "BEHIND_BACKLOG", 10)
    store.behind_chunk = 4
    for i in range(20):
        store.save_position(minimal_position(f"m{i}"))
        store.save_position_behind(minimal_position(f"m{i}").evolve(sl=1900.0 + i))
    store._behind_since -= 7200.0
    assert store.flush_behind(older_than=3600.0) == 4
    assert store.behind == 16 and store.behind_due(3600.0)  # over the limit: no pause
    assert store.flush_behind(older_than=3600.0) == 4
    assert store.flush_behind(older_than=3600.0) == 4
    assert store.behind == 8 and not store.behind_due(3600.0)  # under it: paced again


def _storm_inputs(i: int) -> dict:
    """A trailing move's inputs as the rule logs them (19 plain scalars)."""
    return {"price": 100.0 + i / 7, "roi": -0.0065 + i / 1e5, "peak": 0.0, "move": -3e-4,
            "mode": "adaptive", "timeframe": "4h", "base_distance": 0.02, "volatility": None,
            "volatility_mult": 1.0, "profit_mult": 1.0, "momentum": None, "momentum_mult": 1,
            "raw_distance": 0.02, "min_distance": 0.004, "max_distance": 0.04,
            "distance": 0.02, "best_price": 100.02 + i, "level": 98.0196 + i / 3,
            "previous_sl": 95.0, "flag": i % 2 == 0}


def _storm_behind(path, build: bool) -> tuple[list, list, int]:
    """A storm-shaped sequence written behind (level moves of 30 positions and their log
    lines, several a position, chunks of 8 rows as the tick path writes them), with or
    without `build_behind` before each chunk; the positions' and actions' rows afterwards
    (updated_at aside: the clock) and the number of commits."""
    store = Store.open(path)
    store.behind_chunk = 8
    for i in range(30):
        store.save_position(minimal_position(f"m{i}"))
    commits = []
    store.db.conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    for rnd in range(4):
        for i in range(30):
            if (i + rnd) % 3:
                store.save_position_behind(
                    minimal_position(f"m{i}").evolve(sl=1900.0 + i + rnd, best_price=2e3 + rnd))
            k = rnd * 30 + i
            store.record_action_behind(
                replace(_move(f"m{i}", 2000.0 + k, float(k)), inputs=frozen_map(_storm_inputs(k)),
                        flags=frozenset({"a", "b"} if k % 2 else set())), symbol="ETH")
        store._behind_since -= 7200.0  # the window is due (white-box: no waiting)
        while store.behind:
            if build:
                before = store.behind
                assert store.build_behind() > 0  # the tick that finds the window due builds
                assert store.build_behind() == 0 and store.behind == before
            store.flush_behind(older_than=3600.0)
    store.db.conn.set_trace_callback(None)
    conn = store.db.conn
    pos = conn.execute("SELECT * FROM positions ORDER BY id").fetchall()
    names = [d[0] for d in conn.execute("SELECT * FROM positions").description]
    u = names.index("updated_at")
    acts = conn.execute("SELECT * FROM actions ORDER BY id").fetchall()
    store.close()
    return [r[:u] + r[u + 1:] for r in pos], acts, len(commits)


def test_rows_built_ahead_of_their_chunk_are_written_as_they_would_have_been(tmp_path):
    """`build_behind` (the tick path's step before a due chunk) changes nothing on disk: the
    same positions and log rows, byte for byte, in the same number of commits."""
    plain = _storm_behind(tmp_path / "a.db", build=False)
    built = _storm_behind(tmp_path / "b.db", build=True)
    assert plain[1] and len(plain[1]) == 120
    assert built == plain
    assert plain[2] == 4 * 7  # (20 moves + 30 lines) a round, in chunks of 8


def test_a_chunk_built_ahead_is_written_without_building_a_row(store, monkeypatch):
    """After `build_behind` the next chunk's log lines are rows already (no SQL was run to
    build them): the chunk's write builds none, and the chunk after it was left as it was."""
    import pmgui.store.db as db

    store.behind_chunk = 4
    for i in range(6):
        store.save_position(minimal_position(f"m{i}"))
        store.record_action_behind(
            replace(_move(f"m{i}", 2000.0 + i, float(i)), inputs=frozen_map(_storm_inputs(i))),
            symbol="ETH")
    store._behind_since -= 7200.0
    statements = []
    store.db.conn.set_trace_callback(statements.append)
    assert store.build_behind() == 4 and statements == [] and store.behind == 6

    def no_build(self):
        raise AssertionError("a row built in the chunk's write")

    monkeypatch.setattr(db._LaterRow, "row", no_build)
    assert store.flush_behind(older_than=3600.0) == 4
    assert store.behind == 2
    with pytest.raises(AssertionError):  # the next chunk was not built ahead
        store.flush_behind()
    monkeypatch.undo()
    store.flush_behind()
    assert [r["price"] for r in store.actions(limit=10)] == [2000.0 + i for i in range(5, -1, -1)]


def test_the_next_pass_is_prepared_in_bounded_build_steps_not_in_the_chunks_write(
        store, db_path, monkeypatch):
    """The rowids that order a chunked write's pass are looked up by the tick path's build
    steps, at most PASS_STEP a step, the sort in a step of its own: no single step (tick)
    does a whole pass over a large book, and the chunk's write looks up nothing; the queue
    still drains whole, in the rows' order, every row at its last state."""
    import pmgui.store.db as db

    monkeypatch.setattr(db, "PASS_STEP", 8)
    store.behind_chunk = 8
    for i in range(40):
        store.save_position(minimal_position(f"m{i:02}"))
    for i in reversed(range(40)):  # queued in the reverse of the rows' order
        store.save_position_behind(minimal_position(f"m{i:02}").evolve(sl=1900.0 + i))
    store._behind_since -= 7200.0  # the window is due (white-box: no waiting in tests)
    lookups: list[str] = []
    store.db.conn.set_trace_callback(
        lambda sql: lookups.append(sql) if "rowid FROM positions" in sql else None)
    order, steps = [], 0
    while store.behind:
        while True:
            before = len(lookups)
            work = store.build_behind()
            assert len(lookups) - before <= 1
            if lookups[before:]:
                assert lookups[-1].count("'m") <= 8  # ids inlined by the trace
            if not work:
                break
            steps += 1
            assert steps < 100
        before = len(lookups)
        queued = set(store._behind_positions)
        store._behind_resume = 0.0
        assert store.flush_behind(older_than=3600.0) == 8
        assert len(lookups) == before  # the chunk's write looked nothing up
        order += sorted(queued - set(store._behind_positions))
    store.db.conn.set_trace_callback(None)
    assert len(lookups) == 5 and steps == 6  # 40 rowids, 8 a step; then the sort
    assert order == [f"m{i:02}" for i in range(40)]
    with _peek(db_path) as reader:
        assert {p.id: p.sl for p in reader.load_open_positions()} == \
            {f"m{i:02}": 1900.0 + i for i in range(40)}


def test_a_synced_write_carries_only_its_own_positions_state_behind(store, db_path):
    """An order journaled for a position lands with that position's newer levels, not with
    the whole queue; a line recorded at once after lines queued behind still comes after
    them in the log."""
    for pid in ("p1", "p2"):
        store.save_position(full_position(pid))
    store.save_position_behind(full_position("p1", sl=44100.0))
    store.record_action_behind(_move("p2", 43000.0, 1.0), symbol="BTC")
    store.save_position_behind(full_position("p2", sl=44200.0))  # a state after that line
    store.journal_order(sl_request("c-1", "p1"), 2.0)
    with _peek(db_path) as reader:
        assert reader.load_position("p1").sl == 44100.0  # its own state came along
        assert reader.load_position("p2").sl == 44000.1  # the rest waits for its window
        assert reader.actions() == []
    close = Action(type=ActionType.CLOSE, reason=Reason.MANUAL, position_id="p2",
                   price=43001.0, qty=0.125, ts=3.0)
    aid = store.record_action(close, symbol="BTC")
    assert store.behind == 1  # its levels came along; the move line waits for its window
    store.flush_behind()
    assert [r["type"] for r in store.actions()] == ["close", "move_sl"]  # newest first
    assert store.actions()[0]["id"] == aid
    assert store.load_position("p2").sl == 44200.0


def test_a_rolled_back_write_leaves_its_positions_state_waiting_behind(store):
    store.save_position(full_position("p1"))
    store.save_position_behind(full_position("p1", sl=44100.0))
    with pytest.raises(RuntimeError), store.transaction():
        store.save_order(Order.from_request(sl_request("c-1", "p1"), 1.0))
        raise RuntimeError("boom")
    assert store.behind == 1
    assert store.load_position("p1").sl == 44100.0  # a read writes the queue first



# ---------------------------------------------------------------- a batch of positions

def _book(n: int) -> list[Position]:
    return [full_position(f"p{i:03d}", symbol=f"S{i:03d}/USDT:USDT", sl=44000.0 + i)
            for i in range(n)]


def test_save_positions_writes_the_whole_book_in_one_synced_commit(store, db_path):
    """A shutdown's save of the book: every position as given, in one fsynced commit (one per
    position before: ~500 fsyncs at 500 positions), read back from the file by another
    connection."""
    book = _book(40)
    for pos in book:
        store.save_position(pos)
    later = [p.evolve(sl=p.sl + 1.5, peak_roi=0.25, best_price=41000.5 - i)
             if i % 3 else p.evolve(tranches=p.tranches[:1], qty=0.2)
             for i, p in enumerate(book)]
    with store.audit_commits() as audit:
        assert store.save_positions(later) == len(later)
    assert audit.total() == 1 and audit.synced() == 1
    store.close()
    with Store.open(db_path, readonly=True) as reader:
        assert sorted(reader.load_open_positions(), key=lambda p: p.id) == later


def test_save_positions_is_all_or_none_and_keeps_what_was_persisted(store, db_path):
    """A write failing midway (here SQLite itself refuses the 26th row) rolls the whole
    batch back: the file holds exactly what it held before, and the states that waited
    behind for positions of the batch wait there again (written at the close)."""
    book = _book(40)
    for pos in book:
        store.save_position(pos)
    waiting = book[3].evolve(sl=44100.25)
    store.save_position_behind(waiting)
    store.db.conn.execute(
        "CREATE TRIGGER refuse_p025 BEFORE UPDATE ON positions WHEN NEW.id = 'p025' "
        "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")
    later = [p.evolve(sl=p.sl + 2.0) for p in book]
    with pytest.raises(StoreError, match="refused by the test"):
        store.save_positions(later)
    with _peek(db_path) as reader:
        assert sorted(reader.load_open_positions(), key=lambda p: p.id) == book
    assert store.behind == 1  # the superseded state waits behind again
    store.db.conn.execute("DROP TRIGGER refuse_p025")
    store.close()
    with Store.open(db_path, readonly=True) as reader:
        expected = [waiting if p.id == waiting.id else p for p in book]
        assert sorted(reader.load_open_positions(), key=lambda p: p.id) == expected


def test_save_positions_validates_every_position_before_writing_any(store, db_path):
    book = _book(10)
    for pos in book:
        store.save_position(pos)
    later = [p.evolve(sl=p.sl + 2.0) for p in book]
    later[6] = later[6].evolve(best_price=math.nan)
    with store.audit_commits() as audit, pytest.raises(ValidationError):
        store.save_positions(later)
    assert audit.total() == 0
    with _peek(db_path) as reader:
        assert sorted(reader.load_open_positions(), key=lambda p: p.id) == book
    assert store.save_positions([]) == 0

# ---------------------------------------------------------------- what the store remembers
# A level move rewrites only the columns that changed and leaves equal tranches alone: the
# store remembers what it last wrote per position. These fail if that memory goes stale.

def test_a_level_move_after_a_rolled_back_one_is_written(store, db_path):
    """The rollback undid a write the store had remembered: the same write again must reach
    the file (a stale memory would find "nothing changed" and skip it)."""
    pos = full_position("p1")
    store.save_position(pos)
    moved = pos.evolve(sl=43700.0, trailing=43700.0, peak_roi=0.25,
                       tranches=pos.tranches[:1])
    with pytest.raises(RuntimeError), store.transaction():
        store.save_position(moved)
        raise RuntimeError("boom")
    assert store.load_position("p1") == pos
    store.save_position(moved)
    with _peek(db_path) as reader:
        assert reader.load_position("p1") == moved
        assert reader.db["tranches"].count == 1


def test_a_level_move_rolled_back_in_a_savepoint_is_written_again(store, db_path):
    pos = full_position("p1")
    store.save_position(pos)
    moved = pos.evolve(sl=43750.0, tranches=pos.tranches[1:])
    with store.transaction():
        with pytest.raises(ValidationError), store.transaction():
            store.save_position(moved)
            store.record_fill(fill(price=math.nan), "p1")
    store.save_position(moved)
    with _peek(db_path) as reader:
        assert reader.load_position("p1") == moved


def test_moves_written_behind_reach_the_file_column_by_column(store, db_path):
    """Successive moves (a few columns each, tranches unchanged) and then a change of the
    tranches, of flags and back to an earlier value: each state read back exactly."""
    pos = full_position("p1")
    store.save_position(pos)
    states = [pos.evolve(sl=44000.1 - i, trailing=44000.1 - i, best_price=42000.0 - i)
              for i in range(1, 4)]
    states.append(states[-1].evolve(flags=frozenset({"tp1_done"}), peak_roi=0.0))
    states.append(states[-1].evolve(tranches=(*pos.tranches, Tranche(
        "t3", 0.01, 43000.0, 1_700_000_200.0, source="add_on")), qty=0.135))
    states.append(states[-1].evolve(sl=pos.sl, flags=pos.flags, tranches=pos.tranches,
                                    qty=pos.qty, peak_roi=pos.peak_roi))
    for s in states:
        store.save_position_behind(s)
        store.flush_behind()
        with _peek(db_path) as reader:
            loaded = reader.load_position("p1")
            assert loaded == s and loaded.tranches == s.tranches


def test_a_row_changed_behind_the_stores_back_is_written_whole(store):
    """Rows removed by someone else (not the engine's store) are not assumed present."""
    pos = full_position("p1")
    store.save_position(pos)
    store.db.conn.execute("DELETE FROM tranches")
    store.db.conn.execute("DELETE FROM positions")
    store.db.conn.commit()
    store._forget_written()  # what a new Store (a restart) would know
    moved = pos.evolve(sl=43800.0)
    store.save_position(moved)
    assert store.load_position("p1") == moved


def test_an_update_of_a_row_that_vanished_inserts_it(store):
    pos = full_position("p1")
    store.save_position(pos)
    store.db.conn.execute("DELETE FROM tranches")
    store.db.conn.execute("DELETE FROM positions")
    store.db.conn.commit()
    store.save_position(pos.evolve(sl=43800.0))  # its row is gone: inserted whole
    assert store.load_position("p1").sl == 43800.0


def test_equal_flag_sets_and_actions_are_encoded_alike(store):
    """The flag-set encodings are remembered per set: equal sets, the same text; a set
    of anything but text is still refused."""
    a = full_position("p1", flags=frozenset({"b", "a"}))
    b = full_position("p2", flags=frozenset(["a", "b"]))
    store.save_position(a)
    store.save_position(b)
    rows = {r["id"]: r["flags"] for r in store.db["positions"].rows}
    assert rows["p1"] == rows["p2"] == '["a","b"]'
    with pytest.raises(ValidationError):
        store.save_position(full_position("p3", flags=frozenset({1})))
    mv = _move("p1", 43000.0, 1.0)
    mv = Action(**{**{f.name: getattr(mv, f.name) for f in fields(Action)},
                   "inputs": frozen_map({"b": 1.5, "a": math.inf, "c": None, "d": "x",
                                         "e": True, "f": 2})})
    store.record_action(mv, symbol="BTC")
    assert store.actions()[0]["inputs"] == {"a": None, "b": 1.5, "c": None, "d": "x",
                                            "e": True, "f": 2}


# ---------------------------------------------------------------- incremental writes
# A queued or synced save writes only the columns whose objects changed since the state this
# connection last wrote (and validates only those): the file must hold exactly what a whole
# rewrite of the latest state would, and bad input must still be refused with nothing changed.

_VARIANTS: dict[str, list] = {
    "sl": [None, 44000.1, 43999.0, 44000, 0.0, -0.0],
    "trailing": [None, 43900.3, 43000.25],
    "peak_roi": [0.1834, 0.0, -0.0, 0, 0.25],
    "best_price": [None, 42000.25, 41999.75],
    "sl_kind": [StopKind.TRAILING, StopKind.BREAKEVEN, StopKind.MANUAL],
    "flags": [frozenset(), frozenset({"tp1_done"}), frozenset({"b", "a"})],
    "overrides": [frozen_map(), frozen_map({"a": 1}), frozen_map({"a": 1.0})],
    "qty": [0.125, 0.1, 1],
    "automation": [True, False],
    "exit_reason": [None, "why"],
}
_TRANCHES = [
    (Tranche("t1", 0.2, 43300.0, 1_700_000_000.0, sl=44500.5, tp=41000.0),),
    (Tranche("t1", 0.2, 43300.0, 1_700_000_000.0, sl=44500.5, tp=41000.0),),  # equal copy
    (Tranche("t1", 0.2, 43300.0, 1_700_000_000.0, sl=-0.0, tp=41000.0),),
    (Tranche("t1", 0.2, 43300.0, 1_700_000_000.0, sl=0.0, tp=41000.0),
     Tranche("t2", 0.05, 43056.5, 1_700_000_100.5, source="add_on")),
]


def _disk(store: Store) -> tuple:
    """The positions and tranches tables with each value's SQLite type (not updated_at)."""
    conn = store.db.conn
    pcols = [r[1] for r in conn.execute("PRAGMA table_info(positions)") if r[1] != "updated_at"]
    tcols = [r[1] for r in conn.execute("PRAGMA table_info(tranches)")]

    def typed(table, cols, order):
        sel = ", ".join(f"{c}, typeof({c}), quote({c})" for c in cols)
        return [tuple(r) for r in conn.execute(f"SELECT {sel} FROM {table} ORDER BY {order}")]
    return typed("positions", pcols, "id"), typed("tranches", tcols, "position_id, seq")


@settings(max_examples=40, deadline=None)
@given(steps=st.lists(st.tuples(
    st.sampled_from(["behind", "behind", "sync", "flush", "rollback"]),
    st.sampled_from(["p1", "p2"]),
    st.lists(st.tuples(st.sampled_from([*_VARIANTS, "tranches"]), st.integers(0, 5)),
             max_size=4)), max_size=25))
def test_incremental_writes_leave_the_file_as_whole_rewrites_would(steps):
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "a.db")
        ref = Store.open(Path(tmp) / "b.db")
        latest = {pid: full_position(pid) for pid in ("p1", "p2")}
        for pos in latest.values():
            store.save_position(pos)
        for op, pid, changes in steps:
            kw = {}
            for name, i in changes:
                options = _TRANCHES if name == "tranches" else _VARIANTS[name]
                kw[name] = options[i % len(options)]
            new = latest[pid].evolve(**kw)
            if op == "behind":
                store.save_position_behind(new)
            elif op == "sync":
                store.save_position(new)
            elif op == "flush":
                store.flush_behind()
                continue
            else:
                with pytest.raises(RuntimeError), store.transaction():
                    store.save_position(new)
                    raise RuntimeError("rolled back")
                continue
            latest[pid] = new
        store.flush_behind()
        for pos in latest.values():
            ref._forget_written()  # the whole row and tranches
            ref.save_position(pos)
        assert _disk(store) == _disk(ref)
        for pid, pos in latest.items():
            loaded = store.load_position(pid)
            assert loaded == pos and loaded.tranches == pos.tranches
        store.close()
        ref.close()


@pytest.mark.parametrize("bad", [
    {"sl": math.nan}, {"trailing": math.inf}, {"peak_roi": None}, {"qty": "1"},
    {"flags": frozenset({1})}, {"overrides": frozen_map({"a": [1]})},
    {"sl_kind": "sideways"}, {"symbol": None},
    {"tranches": (Tranche("t1", 0.1, 1.0, 1.0), Tranche("t1", 0.1, 1.0, 1.0))},
    {"tranches": (Tranche("t9", math.nan, 1.0, 1.0),)},
])
@pytest.mark.parametrize("queued", [False, True])
def test_a_bad_value_after_valid_saves_is_refused_and_changes_nothing(store, db_path, bad,
                                                                      queued):
    """Validation checks only the objects that changed since a state already checked: a
    bad one among them is still refused, queued or synced, and nothing is written."""
    pos = full_position("p1")
    store.save_position(pos)
    moved = pos.evolve(sl=43800.0)
    if queued:
        store.save_position_behind(moved)  # the reference is now the queued state
    for save in (store.save_position_behind, store.save_position):
        with pytest.raises(ValidationError):
            save(moved.evolve(**bad))
    assert store.behind == (1 if queued else 0)
    store.flush_behind()
    assert store.load_position("p1") == (moved if queued else pos)


def _inputs_reference(m) -> str:
    """What the log stores for an action's inputs (serialize's documented rule)."""
    clean = {}
    for k, v in m.items():
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        elif not (v is None or isinstance(v, (str, bool, int, float))):
            v = str(v)
        clean[str(k)] = v
    return json.dumps(clean, sort_keys=True, separators=(",", ":"), allow_nan=False)


_input_values = st.one_of(
    st.floats(), st.sampled_from([0.0, -0.0, 0.02, 1.0, 98.17645193999999, 1e300, 5e-324]),
    st.integers(), st.booleans(), st.none(), st.text(max_size=6),
    st.sampled_from([Side.LONG, StopKind.TRAILING, (1, 2), [3], {"a": 1}]))


@settings(max_examples=300, deadline=None)
@given(maps=st.lists(st.dictionaries(
    st.sampled_from(["price", "level", "é", "a\"b", "previous_sl", "mode", "z", "A", 7, None]),
    _input_values, max_size=8), min_size=1, max_size=4))
def test_action_inputs_are_stored_as_the_reference_text(maps):
    """The inputs' text (templates per key set, float texts remembered) is exactly the
    documented encoding, call after call (a remembered 0.0 never stands for -0.0)."""
    from pmgui.store.serialize import _sanitized_inputs
    for m in maps * 2:
        assert _sanitized_inputs(frozen_map(m)) == _inputs_reference(m)
        assert _sanitized_inputs(m) == _inputs_reference(m)


@pytest.mark.parametrize("odd", [
    {}, {"qty": 2}, {"sl": 7}, {"priority": True}, {"ts": 5}, {"price": 101},
    {"type": "move_sl"}, {"reason": "trailing"}, {"stop_kind": "trailing"},
    {"flags": frozenset({"b", "a"})}, {"limit": 1},
])
def test_an_action_row_is_the_documented_row_whatever_the_value_types(store, odd):
    """The common action takes a shortcut to its row; values of other types (an int level,
    an enum's text) go the long way: the same stored row either way."""
    from pmgui.store.serialize import action_to_row, action_values

    base = Action(type=ActionType.MOVE_SL, reason=Reason.TRAILING, position_id="p1",
                  price=100.5, qty=None, sl=99.25, tp=None, rule="trailing", priority=7,
                  ts=1.5, inputs=frozen_map({"level": 99.25, "mode": "atr"}),
                  stop_kind=StopKind.TRAILING)
    a = Action(**{**{f.name: getattr(base, f.name) for f in fields(Action)}, **odd})
    want = {"id": 3, **action_to_row(a, symbol="BTC", ok=False, detail="d")}
    got = dict(zip(ACTION_COLUMNS, action_values(a, 3, symbol="BTC", ok=False, detail="d"),
                   strict=True))
    assert got == want
    assert all(type(got[k]) is type(want[k]) for k in want)


@pytest.mark.parametrize("bad", [{"price": math.nan}, {"ts": math.inf}, {"sl": "x"},
                                 {"type": "jump"}, {"position_id": None},
                                 {"flags": frozenset({1})}])
def test_a_bad_action_is_refused_and_takes_no_id(store, bad):
    base = _move("p1", 100.0, 1.0)
    ok = store.record_action(base, symbol="BTC")
    a = Action(**{**{f.name: getattr(base, f.name) for f in fields(Action)}, **bad})
    with pytest.raises(ValidationError):
        store.record_action_behind(a, symbol="BTC")
    with pytest.raises(ValidationError):
        store.record_action(a, symbol="BTC")
    assert store.behind == 0
    assert store.record_action(base, symbol="BTC") == ok + 1


def test_a_line_written_behind_is_the_row_written_at_once(store):
    """The usual log line queued behind has its row built when the window is written: the
    row (every column, every type, the inputs' text) is the one `record_action` writes at
    once for the same decision, odd inputs included."""
    odd_inputs = [{}, {"price": 1.5, "roi": 0.1, "mode": "adaptive", "on": True, "n": 3,
                       "none": None}, {"nan": math.nan, "inf": -math.inf, "zero": -0.0},
                  {"z": 1.0, "a": "é\n\"x\"", 7: "seven"}, {"obj": object.__name__}]
    base = _move("p1", 100.0, 1.0)
    made = []
    for i, inputs in enumerate(odd_inputs):
        made.append(replace(base, ts=float(i), inputs=frozen_map(inputs),
                            flags=frozenset({"tp1_done"}) if i % 2 else frozenset()))
    for a in made:
        store.record_action(a, symbol="BTC", ok=False, detail="at once")
    for a in made:
        store.record_action_behind(a, symbol="BTC", ok=False, detail="at once")
    assert store.behind == len(made)
    store.flush_behind()
    rows = store.db.conn.execute(f"SELECT {', '.join(ACTION_COLUMNS[1:])} FROM actions "
                                 "ORDER BY id").fetchall()
    n = len(made)
    assert rows[:n] == rows[n:]
    assert [tuple(map(type, r)) for r in rows[:n]] == [tuple(map(type, r)) for r in rows[n:]]


def _commit_levels(store: Store) -> list[tuple[str, str]]:
    """(the statement, the synchronous level in force) for every COMMIT and synchronous
    PRAGMA the store's connection runs from now on (level "?" until one is set)."""
    seen: list[tuple[str, str]] = []
    level = ["?"]

    def trace(sql: str) -> None:
        if sql.startswith("PRAGMA synchronous"):
            if "=" in sql:
                level[0] = sql.split("=")[1].strip()
            seen.append((sql, level[0]))
        elif sql == "COMMIT":
            seen.append((sql, level[0]))

    store.db.conn.set_trace_callback(trace)
    return seen


def test_a_synced_write_commits_at_full_after_relaxed_ones_and_after_anyone_else(store):
    """A relaxed block leaves the connection at NORMAL (see the next test); every write that
    must survive a power cut sets FULL itself before its commit — also when someone else
    sharing the connection (the paper venue, a bench's set-up) lowered the level."""
    seen = _commit_levels(store)
    store.record_equity(1.0, 100.0, 100.0)  # relaxed
    store.save_position(full_position())  # synced
    store.db.conn.execute("PRAGMA synchronous = NORMAL")  # someone else's statement
    store.record_action(Action(ActionType.CLOSE, Reason.MANUAL, "p1", 100.0, qty=1.0,
                               rule="manual", ts=2.0), symbol="BTC/USDT:USDT")
    store.set_setting("k", 1)
    commits = [level for sql, level in seen if sql == "COMMIT"]
    assert commits[0] == "NORMAL"
    assert commits[1:] == ["FULL"] * (len(commits) - 1) and len(commits) >= 4


def test_relaxed_writes_in_a_row_set_the_level_once(store):
    """Relaxed blocks one after the other (a close booked in two, the write-behind windows
    between ticks) neither put FULL back after each nor set NORMAL again: each such PRAGMA
    cost a statement on the close's path."""
    seen = _commit_levels(store)
    for i in range(4):
        store.record_equity(float(i), 100.0, 100.0)
    pragmas = [sql for sql, _ in seen if sql.startswith("PRAGMA")]
    assert pragmas == ["PRAGMA synchronous = NORMAL"]
    assert [level for sql, level in seen if sql == "COMMIT"] == ["NORMAL"] * 4


def test_a_level_set_elsewhere_is_forgotten_on_request(store):
    """Someone else (a bench's set-up) sets FULL behind the store's back: relaxed blocks of
    the next LEVEL_RECHECK s would trust the NORMAL the store set itself and commit fsynced
    (on the engine's loop, at a storm's start). `forget_level` makes the next one set it."""
    store.record_equity(1.0, 100.0, 100.0)  # sets NORMAL, trusted for LEVEL_RECHECK s
    seen = _commit_levels(store)
    store.db.conn.execute("PRAGMA synchronous = FULL")  # someone else's statement
    store.record_equity(2.0, 100.0, 100.0)
    assert [lv for sql, lv in seen if sql == "COMMIT"] == ["FULL"]  # why it is needed
    store.db.conn.execute("PRAGMA synchronous = FULL")
    store.forget_level()
    store.record_equity(3.0, 100.0, 100.0)
    store.record_equity(4.0, 100.0, 100.0)
    assert [lv for sql, lv in seen if sql == "COMMIT"][1:] == ["NORMAL", "NORMAL"]


def test_the_checkpointer_follows_up_until_nothing_waits(tmp_path):
    """A checkpoint pass under a steady writer leaves the frames appended meanwhile: the
    WAL can start over only after a checkpoint that left nothing, so the thread checkpoints
    again at once while frames wait (at most FOLLOW_UPS more), instead of waiting for its
    next round while the WAL grows towards the inline backstop on the writer's thread."""
    from pmgui.store import db as dbmod

    class Conn:
        def __init__(self, left: list[int]) -> None:
            self.left, self.calls = left, 0

        def execute(self, sql: str):
            assert sql == "PRAGMA wal_checkpoint(PASSIVE)"
            self.calls += 1
            return self

        def fetchall(self) -> list:
            return []

    def worker(left: list[int], size: int = dbmod.RESTART_PAGES) -> dbmod._Checkpointer:
        w = dbmod._Checkpointer(Conn(left), tmp_path / "x.db", 8, 1.0)  # type: ignore[arg-type]
        w.frames = lambda shm: (size, w.conn.left[min(w.conn.calls, len(w.conn.left)) - 1])
        return w

    w = worker([700, 40, 0])  # frames waiting after each pass
    w.run_pass(0)
    assert w.conn.calls == 3 and w.checkpoints == 3
    w = worker([0])  # nothing left after the first: done
    w.run_pass(0)
    assert w.conn.calls == 1
    w = worker([5] * 50)  # a writer that always gets in between: bounded
    w.run_pass(0)
    assert w.conn.calls == 1 + dbmod.FOLLOW_UPS
    # a WAL still small is not pressed to start over (each start over costs the writer
    # an fsync of the WAL's new header): one pass per round
    w = worker([700, 40, 0], size=dbmod.RESTART_PAGES - 1)
    w.run_pass(0)
    assert w.conn.calls == 1


def test_under_a_steady_writer_the_wal_starts_over_before_the_backstop(tmp_path,
                                                                       monkeypatch):
    """A writer that commits every ~2 ms (a storm's loop) with the checkpoints in the
    background: the WAL starts over again and again (its frame count drops) and never
    reaches the inline backstop, whose checkpoint would run on the writer's thread."""
    import os
    import struct
    import time

    from pmgui.store import db as dbmod

    store = Store.open(tmp_path / "w.db")
    try:
        monkeypatch.setattr(dbmod, "RESTART_PAGES", 50)
        assert store.checkpoint_in_background(pages=50, interval=0.01)
        shm = os.open(str(tmp_path / "w.db-shm"), os.O_RDONLY)
        frames, starts_over, peak = 0, 0, 0
        deadline = time.monotonic() + 30
        i = 0
        while starts_over < 3:
            assert time.monotonic() < deadline, f"the WAL never started over (peak {peak})"
            store.record_equity(float(i), 100.0 + i, 100.0)
            store.set_setting(f"k{i % 50}", "x" * 3000)
            i += 1
            now = struct.unpack_from("=I", os.pread(shm, 100, 0), 16)[0]
            starts_over += now < frames
            frames, peak = now, max(peak, now)
            time.sleep(0.002)
        os.close(shm)
        assert peak < 20000  # dbmod.BACKSTOP_PAGES
    finally:
        store.close()


def test_the_pause_after_a_chunk_covers_the_building_done_ahead_of_it(store):
    """The pause `behind_due` keeps after a chunk (BEHIND_PACE times its cost) counts the
    time `build_behind` spent on it too: split into two steps, the written-behind work keeps
    the same share of the loop."""
    import time as _time

    import pmgui.store.db as db

    for i in range(3):
        store.save_position(minimal_position(f"m{i}"))
        store.record_action_behind(_move(f"m{i}", 2000.0 + i, float(i)), symbol="ETH")
    store._behind_since -= 7200.0
    assert store.build_behind() == 3
    assert store._built_cost > 0.0
    store._built_cost = 10.0  # white-box: building took 10 s
    assert store.flush_behind(older_than=3600.0) == 3
    assert store._built_cost == 0.0
    assert store._behind_resume >= _time.monotonic() + db.BEHIND_PACE * 10.0 - 1.0


def test_rule_moves_logged_after_a_row_are_replayed_on_load(store, db_path):
    """A rule's level move rewrites no row (the engine logs it and saves the row with its
    next save): whoever loads the position — the engine after a crash, another process —
    gets the row with the moves logged after it applied in order. The trader's own moves
    (saved at once), moves not carried out, other positions' lines and lines logged before
    the row was written are not replayed; a closed position is its final row."""
    store.save_position(minimal_position("m1"))
    store.save_position(full_position("p1"))
    tp_move = Action(type=ActionType.MOVE_TP, reason=Reason.DYNAMIC_TP,
                     position_id="m1", price=2010.0, tp=2100.0, rule="dynamic_tp", ts=1.0,
                     flags=frozenset({"tp_moved"}))
    store.record_action_behind(_move("m1", 1990.0, 1.0), symbol="ETH")  # sl 1989
    store.record_action_behind(tp_move, symbol="ETH")
    store.record_action_behind(_move("m1", 1995.0, 2.0), symbol="ETH")  # sl 1994
    store.record_action_behind(_move("p1", 43000.0, 2.0), symbol="BTC")  # another position
    manual = Action(type=ActionType.MOVE_SL, reason=Reason.MANUAL, position_id="m1",
                    price=2000.0, sl=1500.0, rule="manual", ts=3.0)
    store.record_action(manual, symbol="ETH")  # its state is saved at once by the engine
    store.record_action(_move("m1", 1999.0, 4.0), symbol="ETH", ok=False, detail="refused")
    store.flush_behind()
    with _peek(db_path) as reader:
        m1 = reader.load_position("m1")
        assert (m1.sl, m1.sl_kind, m1.trailing, m1.initial_sl) == \
            (1994.0, StopKind.TRAILING, 1994.0, 1989.0)  # R's stop: the first one it got
        assert (m1.tp, m1.flags) == (2100.0, frozenset({"tp_moved"}))
        assert reader.load_position("p1").sl == 42999.0
        assert {p.id: p.sl for p in reader.load_open_positions()} == \
            {"m1": 1994.0, "p1": 42999.0}
    # a row saved after the lines holds them: they are not applied a second time
    store.save_position(minimal_position("m1").evolve(sl=1950.0))
    assert store.load_position("m1").sl == 1950.0
    store.save_position(full_position("p1").evolve(status=PositionStatus.CLOSED,
                                                   closed_at=1_700_000_900.0))
    assert [p.id for p in store.closed_positions()] == ["p1"]
    assert store.closed_positions()[0].sl == full_position("p1").sl


def test_a_row_queued_before_a_move_is_written_with_its_watermark(store, db_path):
    """A state queued behind, then a move logged, then the chunk written: the row is the
    older state and the move is replayed over it (the watermark is taken when the state is
    queued, not when it is written)."""
    store.save_position(minimal_position("m1"))
    store.save_position_behind(minimal_position("m1").evolve(best_price=2050.0))
    store.record_action_behind(_move("m1", 2050.0, 1.0), symbol="ETH")
    store.flush_behind()
    with _peek(db_path) as reader:
        m1 = reader.load_position("m1")
        assert (m1.best_price, m1.sl) == (2050.0, 2049.0)


def test_rows_of_schema_2_replay_nothing(db_path):
    """Rows written before schema 3 carry no watermark (NULL): they were rewritten at every
    move, so nothing is replayed over them."""
    with Store.open(db_path) as s:
        s.save_position(minimal_position("m1"))
        s.record_action(_move("m1", 1990.0, 1.0), symbol="ETH")
        s.db.conn.execute("UPDATE positions SET level_action_id = NULL")
        s.db.conn.commit()
    with _peek(db_path) as reader:
        assert reader.load_position("m1").sl is None
