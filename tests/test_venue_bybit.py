"""Bybit through the whole engine: EngineCore over the Bybit adapter over the local Bybit
v5 emulator (real ccxt.pro `bybit`, REST and websockets on 127.0.0.1).

Protection covering a whole position is the position's own TP/SL (trading-stop), so the
Bybit app shows it; it is read on adoption and never doubled by conditional orders."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pmgui.domain.enums import Protection, Side
from pmgui.engine import commands as cmd
from pmgui.engine.events import ErrorEvent
from tests.fakes.bybit_server import BybitServer
from tests.venue_support import VenueRig, monitor, until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def server() -> AsyncIterator[BybitServer]:
    srv = BybitServer()
    await srv.start()
    yield srv
    await srv.stop()


def conditional(server: BybitServer, symbol: str = "BTCUSDT") -> list:
    return [o for o in server.core.open_orders(symbol) if o.conditional]


def tpsl(server: BybitServer, leg: str, symbol: str = "BTCUSDT") -> tuple:
    pos = server.core.positions[(symbol, leg)]
    return float(pos.sl), float(pos.tp), pos.sl_ref, pos.tp_ref


def creates(server: BybitServer) -> list[dict]:
    return server.sent("/v5/order/create")


async def test_adoption_protects_once_as_position_tpsl_and_restart(
        server: BybitServer, tmp_path: Path) -> None:
    server.core.set_position("BTCUSDT", "long", "0.02", "50000")
    rig = VenueRig("bybit", server, tmp_path / "db.sqlite")
    try:
        await rig.start()
        (pos,) = rig.open_positions()
        assert (pos.side, pos.qty) == (Side.LONG, 0.02)
        assert tpsl(server, "net") == (49_500.0, 51_000.0, "mark", "mark")
        assert not conditional(server) and not creates(server)
        assert {(t["positionIdx"], t["tpslMode"]) for t in server.trading_stops} == \
            {(0, "Full")}
        assert rig.engine.protection(pos) is Protection.ON_EXCHANGE
        await rig.engine.reconcile()
        assert tpsl(server, "net")[:2] == (49_500.0, 51_000.0) and not conditional(server)
        n = len(server.trading_stops)
    finally:
        await rig.stop()
    rig2 = VenueRig("bybit", server, tmp_path / "db.sqlite")
    try:
        await rig2.start()
        (pos,) = rig2.open_positions()
        assert tpsl(server, "net")[:2] == (49_500.0, 51_000.0)
        assert not conditional(server) and not creates(server)
        assert rig2.engine.protection(pos) is Protection.ON_EXCHANGE
        assert len(server.trading_stops) == n  # recognised as pmgui's: nothing re-set
        assert not [e for e in rig2.of(ErrorEvent) if "missing" in e.message]
    finally:
        await rig2.stop()


async def test_tpsl_set_in_the_bybit_app_is_read_on_adoption(server: BybitServer,
                                                             tmp_path: Path) -> None:
    pos = server.core.set_position("BTCUSDT", "long", "0.01", "50000")
    pos.sl, pos.tp = server.core.prices["BTCUSDT"] - 800, server.core.prices["BTCUSDT"] + 1500
    rig = VenueRig("bybit", server, tmp_path / "db.sqlite")
    try:
        await rig.start()
        (p,) = rig.open_positions()
        assert (p.sl, p.tp) == (49_200.0, 51_500.0)  # the app's levels, not the preset's
        assert tpsl(server, "net")[:2] == (49_200.0, 51_500.0)
        assert not conditional(server) and not creates(server)
        assert rig.engine.protection(p) is Protection.ON_EXCHANGE
    finally:
        await rig.stop()


async def test_hedge_mode_both_legs_protected_and_a_mark_stop_filling(
        server: BybitServer, tmp_path: Path) -> None:
    server.core.hedge_mode = True
    server.core.set_position("BTCUSDT", "long", "0.01", "50000")
    server.core.set_position("BTCUSDT", "short", "0.02", "50000")
    rig = VenueRig("bybit", server, tmp_path / "db.sqlite")
    try:
        await rig.start()
        legs = {p.side: p for p in rig.open_positions()}
        assert set(legs) == {Side.LONG, Side.SHORT}
        assert tpsl(server, "long") == (49_500.0, 51_000.0, "mark", "mark")
        assert tpsl(server, "short") == (50_500.0, 49_000.0, "mark", "mark")
        assert {t["positionIdx"] for t in server.trading_stops} == {1, 2}
        assert all(rig.engine.protection(p) is Protection.ON_EXCHANGE for p in legs.values())

        await until(lambda: server._private, what="the private stream")
        await server.set_price("BTCUSDT", "49400", mark="49800")  # a wick of the last price
        assert len(rig.open_positions()) == 2 and not creates(server)
        await server.set_mark("BTCUSDT", "49450")  # the mark reaches the long leg's stop
        await until(lambda: [p.side for p in rig.open_positions()] == [Side.SHORT],
                    what="the long leg closed by its stop")
        assert not creates(server)  # nothing sent to close it
        assert float(server.core.positions[("BTCUSDT", "short")].qty) == 0.02
        assert tpsl(server, "short")[:2] == (50_500.0, 49_000.0)
        (closed,) = rig.store.closed_positions()
        assert closed.side is Side.LONG and closed.exit_reason != "reconcile"
    finally:
        await rig.stop()


async def test_isolated_account_and_last_price_trigger(server: BybitServer,
                                                       tmp_path: Path) -> None:
    server.account_margin_mode = "ISOLATED_MARGIN"
    server.core.set_position("BTCUSDT", "short", "0.01", "50000")
    rig = VenueRig("bybit", server, tmp_path / "db.sqlite", settings=monitor("last"))
    try:
        await rig.start()
        (remote,) = await rig.exchange.fetch_positions()
        assert remote.margin_mode == "isolated"
        assert tpsl(server, "net") == (50_500.0, 49_000.0, "last", "last")
        await server.set_price("BTCUSDT", "50600", mark="50100")  # last crosses the stop
        await until(lambda: not rig.open_positions(), what="short closed by its stop")
        rejected = [o for o in server.core.orders.values()
                    if o.extra.get("cancel_reason") == "reduce_only"]
        assert len(creates(server)) <= 1 and not rejected  # never a storm of closes
    finally:
        await rig.stop()


async def test_open_entry_and_its_protection(server: BybitServer, tmp_path: Path) -> None:
    from pmgui.engine import commands as cmd

    rig = VenueRig("bybit", server, tmp_path / "db.sqlite")
    try:
        await rig.start()
        res = await rig.engine.handle(cmd.OpenPosition("BTC/USDT:USDT", Side.LONG, 0.01, 10))
        assert res.ok, res
        await until(lambda: tpsl(server, "net")[:2] == (49_500.0, 51_000.0),
                    what="position TP/SL set after the entry")
        assert [c["orderType"] for c in creates(server)] == ["Market"]
    finally:
        await rig.stop()


def fired(server: BybitServer, symbol: str = "BTCUSDT") -> list:
    """The market orders Bybit created for fired position TP/SLs, oldest first."""
    return sorted((o for o in server.core.orders.values() if o.symbol == symbol
                   and str(o.extra.get("create_type", "")).startswith("CreateBy")
                   and o.extra.get("create_type") != "CreateByUser"),
                  key=lambda o: (o.created, o.id))


async def test_a_position_stop_that_fired_while_pmgui_was_down_is_booked_at_its_fill(
        server: BybitServer, tmp_path: Path) -> None:
    """The position's stop (trading-stop) fired while pmgui was down: the level is gone from
    the position and the market order Bybit created for it is in the order history. The
    restart books that order's fill, not "closed outside pmgui" at the last price."""
    server.core.set_position("BTCUSDT", "long", "0.02", "50000")
    rig = VenueRig("bybit", server, tmp_path / "db.sqlite")
    try:
        await rig.start()
        assert tpsl(server, "net")[:2] == (49_500.0, 51_000.0)
    finally:
        await rig.stop()
    await server.set_price("BTCUSDT", "49400")  # through the stop: filled at 49,400
    (order,) = fired(server)
    assert float(order.avg) == 49_400.0 and server.core.positions[("BTCUSDT", "net")].qty == 0
    await server.set_price("BTCUSDT", "48000")  # the market moves on
    rig2 = VenueRig("bybit", server, tmp_path / "db.sqlite")
    try:
        await rig2.start()
        assert rig2.open_positions() == []
        (closed,) = rig2.store.closed_positions()
        assert (closed.exit_reason, closed.exit_price) == ("stop_loss", 49_400.0)
    finally:
        await rig2.stop()


@pytest.mark.parametrize("how", ["stream away", "restart"])
async def test_an_old_fired_stop_in_the_history_is_not_booked_on_a_new_position(
        server: BybitServer, tmp_path: Path, how: str) -> None:
    """The order history still holds the market order an earlier position's stop created
    (same symbol, same leg). When the new position's stop fires while the order stream is
    away (or pmgui is down), only its own market order is its fill: the old one (another
    size, another price) is not booked on the new position; its fee is the venue's."""
    server.core.set_position("BTCUSDT", "long", "0.05", "50000")
    rig = VenueRig("bybit", server, tmp_path / "db.sqlite")
    try:
        await rig.start()
        await until(lambda: server._private, what="the private stream")
        await server.set_price("BTCUSDT", "49400")  # the first position's stop fires
        await until(lambda: not rig.open_positions(), what="the first position closed")
        await server.set_price("BTCUSDT", "50000")
        server.core.set_position("BTCUSDT", "long", "0.02", "50000")  # opened in the app
        await rig.engine.reconcile()  # adopted, its stop set on the position
        (pos,) = rig.open_positions()
        assert pos.qty == 0.02 and tpsl(server, "net")[:2] == (49_500.0, 51_000.0)
        if how == "restart":
            await rig.stop()
        server.faults.private_stream_stalled = True  # the order stream hears nothing
        await server.set_price("BTCUSDT", "49300")  # the new position's stop fires
        first, second = fired(server)
        assert (float(first.qty), float(second.qty)) == (0.05, 0.02)
        server.faults.private_stream_stalled = False
        if how == "restart":
            rig = VenueRig("bybit", server, tmp_path / "db.sqlite")
            await rig.start()
        else:
            await server.drop_websockets()  # the stream is back: what it missed is resynced
        await until(lambda: not rig.open_positions(), what="the new position closed")
        closed = rig.store.load_position(pos.id)
        assert (closed.exit_reason, closed.exit_price, closed.initial_qty) == \
            ("stop_loss", 49_300.0, 0.02)
        assert closed.realized_pnl == pytest.approx(-0.02 * 700 - float(second.fee))
        fills = rig.store.fills(pos.id)
        assert [(f.qty, f.price) for f in fills] == [(0.02, 49_300.0)], fills
    finally:
        await rig.stop()


async def test_a_close_after_the_position_stop_fired_unheard_books_its_fill(
        server: BybitServer, tmp_path: Path) -> None:
    """The position's stop fired on Bybit while the order stream said nothing (stalled): the
    level is gone from the position. A close the trader asks for looks the stop up first:
    it finds the market order Bybit created for it and books that fill (its price, its
    fee); nothing is sent, and the position is not "closed outside pmgui" at the last
    price."""
    server.core.set_position("BTCUSDT", "long", "0.02", "50000")
    rig = VenueRig("bybit", server, tmp_path / "db.sqlite")
    try:
        await rig.start()
        (pos,) = rig.open_positions()
        await until(lambda: server._private, what="the private stream")
        server.faults.private_stream_stalled = True
        await server.set_price("BTCUSDT", "49400")  # through the stop: filled at 49,400
        (order,) = fired(server)
        await server.set_price("BTCUSDT", "48000")  # the market moves on
        before = len(creates(server))
        result = await rig.engine.handle(cmd.ClosePosition(pos.id))
        assert len(creates(server)) == before  # nothing sent
        closed = rig.store.load_position(pos.id)
        assert (closed.exit_reason, closed.exit_price) == ("stop_loss", 49_400.0), result
        assert closed.realized_pnl == pytest.approx(-0.02 * 600 - float(order.fee))
        assert result.ok and "49400" in result.message, result.message
    finally:
        await rig.stop()
