"""Property test: any sequence of orders and prices keeps the venue's books consistent."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmgui.domain.enums import OrderSide, OrderType, Side
from pmgui.domain.errors import ExchangeError
from tests.paper_support import BTC, Driver, req, venue

_op = st.one_of(
    st.tuples(st.just("tick"), st.floats(50_000, 70_000)),
    st.tuples(st.sampled_from(["buy", "sell"]), st.floats(0.0005, 0.3), st.booleans()),
    st.tuples(st.sampled_from(["stop", "tp", "limit"]), st.sampled_from(["buy", "sell"]),
              st.floats(0.001, 0.3), st.floats(-0.05, 0.05), st.booleans()),
)


async def _run(ops) -> None:
    d = Driver(venue(slippage=0.0003, balance=5_000.0))
    await d.ex.set_leverage(BTC, 20)
    await d.tick(60_000.0)
    for i, op in enumerate(ops):
        try:
            if op[0] == "tick":
                await d.tick(round(op[1], 1))
            elif op[0] in ("buy", "sell"):
                await d.ex.create_order(req(f"m{i}", op[0], amount=op[1], reduce_only=op[2]))
            else:
                kind, side, amount, offset, reduce = op
                last = (await d.ex.fetch_price(BTC)).price
                otype = {"stop": OrderType.STOP_MARKET, "tp": OrderType.TAKE_PROFIT_MARKET,
                         "limit": OrderType.LIMIT}[kind]
                price = last * (1 + offset)
                kw = {"price": price} if kind == "limit" else {"trigger_price": price}
                await d.ex.create_order(req(f"c{i}", side, otype, amount, reduce_only=reduce,
                                            **kw))
        except ExchangeError:
            pass  # refusals are fine; they must change nothing (checked by other tests)
        _check(d)


def _check(d: Driver) -> None:
    ex = d.ex
    # Rebuild positions and the wallet from the fills alone.
    book: dict[Side, list[float]] = {}
    wallet = 5_000.0
    for f in ex.fills():
        o = ex._orders[f.order_client_id]
        reduce = o.reduce_only
        side = (Side.LONG if f.side is OrderSide.SELL else Side.SHORT) if reduce else \
            (Side.LONG if f.side is OrderSide.BUY else Side.SHORT)
        wallet -= f.fee
        qty, entry = book.get(side, [0.0, 0.0])
        if reduce:
            assert f.qty <= qty + 1e-9, "a reduce-only fill exceeded the position"
            wallet += side.dir * (f.price - entry) * f.qty
            qty = round(qty - f.qty, 9)
            book[side] = [qty, entry] if qty > 1e-9 else [0.0, 0.0]
        else:
            book[side] = [qty + f.qty, (qty * entry + f.qty * f.price) / (qty + f.qty)]
    venue_pos = {p.side: p for p in ex._positions.values()}
    for side, (qty, entry) in book.items():
        if qty <= 1e-9:
            assert side not in venue_pos
        else:
            assert venue_pos[side].qty == pytest.approx(qty)
            assert venue_pos[side].entry == pytest.approx(entry)
    assert ex._balance == pytest.approx(wallet)
    for p in ex._positions.values():
        assert p.qty > 0 and p.margin > 0 and math.isfinite(p.entry)
    used = sum(p.margin for p in ex._positions.values())
    assert ex._free() <= ex._balance - used + 1e-6
    assert all(math.isfinite(v) for v in (ex._balance, ex._free()))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_op, min_size=1, max_size=40))
def test_books_stay_consistent_under_any_sequence(ops):
    import asyncio

    asyncio.run(_run(ops))
