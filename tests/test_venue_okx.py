"""OKX through the whole engine: EngineCore over the OKX adapter over the local OKX v5
emulator (real ccxt.pro `okx`: REST, the private `orders` and business `orders-algo`
websockets on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pmgui.domain.enums import Protection, Side
from tests.fakes.okx_server import OkxServer
from tests.venue_support import VenueRig, monitor, until

pytestmark = pytest.mark.timeout(120)
INST = "BTC-USDT-SWAP"


@pytest.fixture
async def server() -> AsyncIterator[OkxServer]:
    srv = OkxServer()
    await srv.start()
    yield srv
    await srv.stop()


def algos(server: OkxServer) -> list:
    return server.algo_orders(INST)


def market_orders(server: OkxServer) -> list:
    return [p for p in server.sent("/api/v5/trade/order")]


async def test_adoption_protects_once_with_algo_orders_and_restart(
        server: OkxServer, tmp_path: Path) -> None:
    server.core.set_position(INST, "short", "2", "50000")
    rig = VenueRig("okx", server, tmp_path / "db.sqlite")
    try:
        await rig.start()
        (pos,) = rig.open_positions()
        assert (pos.side, pos.qty) == (Side.SHORT, 2.0)
        got = sorted((o.kind, float(o.trigger), float(o.qty), o.side, o.trigger_ref)
                     for o in algos(server))
        assert got == [("stop", 50_500.0, 2.0, "buy", "mark"),
                       ("take_profit", 49_000.0, 2.0, "buy", "mark")]
        sent = server.sent("/api/v5/trade/order-algo")
        assert {p["tdMode"] for p in sent} == {"cross"} and "posSide" not in sent[0]
        assert rig.engine.protection(pos) is Protection.ON_EXCHANGE
        await rig.engine.reconcile()  # lists conditional algo orders: sees its own
        assert len(algos(server)) == 2 and len(sent) == 2
    finally:
        await rig.stop()
    rig2 = VenueRig("okx", server, tmp_path / "db.sqlite")
    try:
        await rig2.start()
        assert len(rig2.open_positions()) == 1
        assert len(algos(server)) == 2 and len(server.sent("/api/v5/trade/order-algo")) == 2
    finally:
        await rig2.stop()


async def test_hedge_isolated_both_legs_and_a_mark_stop_filling(
        server: OkxServer, tmp_path: Path) -> None:
    server.core.hedge_mode = True
    server.core.margin_modes[INST] = "isolated"
    server.core.set_position(INST, "long", "1", "50000")
    server.core.set_position(INST, "short", "3", "50000")
    rig = VenueRig("okx", server, tmp_path / "db.sqlite")
    try:
        await rig.start()
        legs = {p.side: p for p in rig.open_positions()}
        assert set(legs) == {Side.LONG, Side.SHORT}
        assert {(p.margin_mode, p.hedge) for p in legs.values()} == {("isolated", True)}
        by_leg = {(o.leg, o.kind): (float(o.trigger), float(o.qty)) for o in algos(server)}
        assert by_leg == {("long", "stop"): (49_500.0, 1.0),
                          ("long", "take_profit"): (51_000.0, 1.0),
                          ("short", "stop"): (50_500.0, 3.0),
                          ("short", "take_profit"): (49_000.0, 3.0)}
        sent = server.sent("/api/v5/trade/order-algo")
        assert {p["tdMode"] for p in sent} == {"isolated"}
        assert {p["posSide"] for p in sent} == {"long", "short"}
        assert all(rig.engine.protection(p) is Protection.ON_EXCHANGE for p in legs.values())

        await server.set_price(INST, "49400", mark="49700")  # a wick: the mark holds
        assert len(algos(server)) == 4
        before = len(market_orders(server))
        await server.set_mark(INST, "49450")  # the long leg's stop fires on the venue
        await until(lambda: [p.side for p in rig.open_positions()] == [Side.SHORT],
                    what="the long leg closed by its algo stop")
        await until(lambda: {(o.leg, o.kind) for o in algos(server)} ==
                    {("short", "stop"), ("short", "take_profit")},
                    what="the long leg's TP cancelled")
        assert len(market_orders(server)) == before  # no close sent after the stop
        assert float(server.core.positions[(INST, "short")].qty) == 3.0
        closed = rig.store.closed_positions()
        assert len(closed) == 1 and closed[0].side is Side.LONG
        assert closed[0].exit_reason != "reconcile"  # matched to our stop, not foreign
    finally:
        await rig.stop()


async def test_last_price_trigger_and_no_close_storm(server: OkxServer,
                                                      tmp_path: Path) -> None:
    server.core.set_position(INST, "long", "1", "50000")
    rig = VenueRig("okx", server, tmp_path / "db.sqlite", settings=monitor("last"))
    try:
        await rig.start()
        sent = server.sent("/api/v5/trade/order-algo")
        assert {p.get("slTriggerPxType") or p.get("tpTriggerPxType") for p in sent} == \
            {"last"}
        before = len(market_orders(server))
        await server.set_price(INST, "49400", mark="49900")
        await until(lambda: not rig.open_positions(), what="closed by the last-price stop")
        await until(lambda: not algos(server), what="TP cancelled")
        assert len(market_orders(server)) - before <= 1  # never a storm of closes
    finally:
        await rig.stop()


async def test_a_stop_that_fired_while_pmgui_was_down_is_booked_at_its_fill(
        server: OkxServer, tmp_path: Path) -> None:
    """The stop fired while pmgui was down: its algo order says `effective` (it carries no
    fill; `ordId` names the market order it created). The restart's reconcile books that
    market order's fill — its price and fee — not "closed outside pmgui" at the last price."""
    server.core.set_position(INST, "long", "1", "50000")
    rig = VenueRig("okx", server, tmp_path / "db.sqlite")
    try:
        await rig.start()
        assert len(rig.open_positions()) == 1
        assert {(o.kind, float(o.trigger)) for o in algos(server)} >= {("stop", 49_500.0)}
    finally:
        await rig.stop()
    await server.set_price(INST, "49400", mark="49400")  # the stop fires: fills at 49,400
    (stop,) = [o for o in server.core.orders.values() if o.algo and o.kind == "stop"]
    assert stop.child is not None and server.core.positions[(INST, "net")].qty == 0
    await server.set_price(INST, "48000", mark="48000")  # the market moves on
    rig2 = VenueRig("okx", server, tmp_path / "db.sqlite")
    try:
        await rig2.start()
        assert rig2.open_positions() == []
        (closed,) = rig2.store.closed_positions()
        assert (closed.exit_reason, closed.exit_price) == ("stop_loss", 49_400.0)
        child = server.core.orders[stop.child]
        (fill,) = [f for f in rig2.store.fills() if f.exchange_order_id is not None
                   and f.price == 49_400.0]
        assert fill.fee == pytest.approx(float(child.fee))  # the venue's fee
    finally:
        await rig2.stop()


async def test_a_stop_s_fill_on_the_stream_is_booked_at_its_price(server: OkxServer,
                                                                  tmp_path: Path) -> None:
    """OKX swaps are counted in contracts (BTC-USDT-SWAP: 0.01 BTC): the stop's fill is
    booked at the price it filled at — not the trigger price (the algo record's quantity
    without a price), not the quote value per contract (ccxt's cost / filled, 100× low)."""
    server.core.set_position(INST, "long", "1", "50000")
    rig = VenueRig("okx", server, tmp_path / "db.sqlite", settings=monitor("last"))
    try:
        await rig.start()
        await server.set_price(INST, "49400", mark="49900")  # through the stop at 49,500
        await until(lambda: not rig.open_positions(), what="closed by its stop")
        (closed,) = rig.store.closed_positions()
        assert (closed.exit_reason, closed.exit_price) == ("stop_loss", 49_400.0)
        (stop,) = [o for o in server.core.orders.values() if o.algo and o.kind == "stop"]
        child = server.core.orders[stop.child]
        (fill,) = rig.store.fills()
        assert (fill.qty, fill.price) == (1.0, 49_400.0)
        assert fill.fee == pytest.approx(float(child.fee))
        # 1 contract of 0.01 BTC from 50,000 to 49,400, less the entry's (adopted: none)
        # and the stop's fee
        assert closed.realized_pnl == pytest.approx(-6.0 - float(child.fee))
    finally:
        await rig.stop()
