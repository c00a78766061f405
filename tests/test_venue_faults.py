"""Faults on Bybit and OKX through the whole engine (EngineCore → venue adapter → local
emulator): a 429 storm while protecting, a create that is placed but whose answer never
arrives, and the private stream dropping while a stop fills."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pmgui.domain.enums import Protection, Side
from pmgui.engine import commands as cmd
from tests.fakes.bybit_server import BybitServer
from tests.fakes.okx_server import OkxServer
from tests.venue_support import BTC, VenueRig, until

pytestmark = pytest.mark.timeout(120)

VENUES = {
    "bybit": (BybitServer, "BTCUSDT", "/v5/order/create", "0.01"),
    "okx": (OkxServer, "BTC-USDT-SWAP", "/api/v5/trade/order-algo", "1"),
}


@pytest.fixture(params=sorted(VENUES))
async def venue(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, Any]]:
    cls = VENUES[request.param][0]
    srv = cls()
    await srv.start()
    yield request.param, srv
    await srv.stop()


def protective(server: Any, inst: str) -> list:
    """Every protective level resting on the venue: conditional / algo orders, and the
    positions' own TP/SL (Bybit trading-stop)."""
    out: list[Any] = [(o.kind, o.trigger) for o in server.core.open_orders(inst)
                      if o.conditional]
    for pos in server.core.open_positions():
        if pos.symbol == inst:
            out += [("stop", pos.sl)] if pos.sl else []
            out += [("take_profit", pos.tp)] if pos.tp else []
    return out


def client_ids(server: Any) -> list[str]:
    return [o.client_id for o in server.core.orders.values() if o.client_id and not o.parent]


async def test_429_storm_while_protecting_places_each_order_once(
        venue: tuple[str, Any], tmp_path: Path) -> None:
    name, server = venue
    _, inst, _, qty = VENUES[name]
    server.core.set_position(inst, "long", qty, "50000")
    server.faults.http_429 = 3  # the start-up's first requests are refused
    rig = VenueRig(name, server, tmp_path / "db.sqlite")
    try:
        await rig.start()
        (pos,) = rig.open_positions()
        await until(lambda: len(protective(server, inst)) == 2, what="SL and TP placed")
        assert rig.engine.protection(pos) is Protection.ON_EXCHANGE
        ids = client_ids(server)
        assert len(ids) == len(set(ids))
        assert sorted(k for k, _ in protective(server, inst)) == ["stop", "take_profit"]
    finally:
        await rig.stop()


async def test_create_placed_but_unanswered_is_found_not_resent(
        venue: tuple[str, Any], tmp_path: Path) -> None:
    name, server = venue
    _, inst, _, qty = VENUES[name]
    rig = VenueRig(name, server, tmp_path / "db.sqlite")
    try:
        await rig.start()
        server.faults.response_delay = 3.0  # past the client's 2 s timeout
        server.faults.create_timeouts = 1
        res = await rig.engine.handle(cmd.OpenPosition(BTC, Side.LONG, float(qty), 10))
        assert res.ok, res
        await until(lambda: len(protective(server, inst)) == 2, what="protected")
        ids = client_ids(server)
        assert len(ids) == len(set(ids)) == (3 if name == "okx" else 1)  # each sent once
        assert sorted(k for k, _ in protective(server, inst)) == ["stop", "take_profit"]
        legs = [p for p in server.core.open_positions()]
        assert len(legs) == 1 and float(abs(legs[0].qty)) == float(qty)
    finally:
        await rig.stop()


async def test_stream_drop_while_the_stop_fills(venue: tuple[str, Any],
                                                tmp_path: Path) -> None:
    name, server = venue
    _, inst, _, qty = VENUES[name]
    server.core.set_position(inst, "long", qty, "50000")
    rig = VenueRig(name, server, tmp_path / "db.sqlite")
    try:
        await rig.start()
        await until(lambda: len(protective(server, inst)) == 2, what="protected")
        server.faults.private_stream_stalled = True
        await server.drop_websockets()
        await server.set_price(inst, "49400")  # mark and last through the stop
        server.faults.private_stream_stalled = False
        await until(lambda: not rig.open_positions(), what="the fill found after the drop")
        await until(lambda: not protective(server, inst), what="the TP cancelled")
        closed = rig.store.closed_positions()
        assert len(closed) == 1
        assert not server.core.open_positions()
    finally:
        await rig.stop()
