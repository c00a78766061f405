"""Write-behind state and rolled-back savepoints (DESIGN §6: state written behind is
written, or waits; it is never dropped).

A synced write of a position's order or fill first writes the state waiting behind for
that position (the order is never on disk without its levels). Inside a nested
`transaction()` that write is a savepoint: when the savepoint rolls back, that state is
undone with it and must wait behind again, whatever the enclosing transaction does next.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pmgui.domain.enums import OrderRole, OrderSide, OrderType, Side
from pmgui.domain.models import Order, OrderRequest, Position
from pmgui.store import Store


def _pos(**kw: object) -> Position:
    base = dict(id="p1", symbol="BTC/USDT:USDT", side=Side.LONG, qty=1.0, entry=100.0,
                leverage=5, opened_at=1.0, initial_qty=1.0, sl=90.0)
    base.update(kw)
    return Position(**base)  # type: ignore[arg-type]


def _stop(cid: str) -> Order:
    return Order.from_request(OrderRequest(
        cid, "BTC/USDT:USDT", OrderSide.SELL, OrderType.STOP_MARKET, 1.0, trigger_price=95.0,
        reduce_only=True, position_id="p1", role=OrderRole.STOP_LOSS), 1.0)


def test_state_carried_by_a_rolled_back_savepoint_waits_behind_again(tmp_path: Path) -> None:
    path = tmp_path / "pm.db"
    with Store.open(path) as store:
        store.save_position(_pos())
        store.save_position_behind(_pos(sl=95.0, best_price=120.0))
        with store.transaction():
            with pytest.raises(RuntimeError), store.transaction():
                store.save_order(_stop("c-1"))  # carries p1's queued state
                raise RuntimeError("the booking failed")
            store.set_setting("k", 1)  # the enclosing transaction goes on and commits
        assert store.behind == 1
    with Store.open(path, readonly=True) as reader:
        pos = reader.load_position("p1")
        assert pos is not None
        assert (pos.sl, pos.best_price) == (95.0, 120.0)
        assert reader.order("c-1") is None
